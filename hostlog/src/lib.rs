//! What a relive host writes about itself: each migration-core notice as
//! the event Hyper-V writes for the same thing (so the correlator reads
//! relive's own failures as it reads Hyper-V's), its configuration as a
//! host-facts event, and each migration report as metric samples. Used by
//! `relive host`; the demo and the remediation engine run hosts the same way.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use migrate_core::config::{AuthMode, HostConfig};
use migrate_core::host::{Host, InDoubtOutcome, Notice, NoticeSink, Role};
use migrate_core::report::{Audit, MigrationReport, Status};
use parsers::{Event, Level, Metric, Outcome, Phase};

const HA: &str = "Microsoft-Windows-Hyper-V-High-Availability";
const HA_CHANNEL: &str = "Microsoft-Windows-Hyper-V-High-Availability-Admin";
const VMMS: &str = "Microsoft-Windows-Hyper-V-VMMS";
const VMMS_CHANNEL: &str = "Microsoft-Windows-Hyper-V-VMMS-Admin";
const WORKER: &str = "Microsoft-Windows-Hyper-V-Worker";
const WORKER_CHANNEL: &str = "Microsoft-Windows-Hyper-V-Worker-Admin";

/// Writes a host's notices as the events Hyper-V writes for them (ECS JSON
/// lines) and its migration reports as metric lines.
pub struct EventLog {
    host: HostSlot,
    events: Option<Mutex<std::fs::File>>,
    metrics: Option<Mutex<std::fs::File>>,
}

/// What the log needs of the host's configuration (read at each notice:
/// settings change).
pub type HostSlot = Arc<Mutex<Option<Host>>>;

fn open_append(path: &Path) -> std::io::Result<Mutex<std::fs::File>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Mutex::new(file))
}

fn event(
    host: &str,
    provider: &str,
    channel: &str,
    id: u32,
    level: Level,
    message: String,
) -> Event {
    let mut e = Event {
        timestamp: Utc::now(),
        host: host.into(),
        channel: channel.into(),
        provider: provider.into(),
        event_id: id,
        level,
        message,
        ..Event::default()
    };
    e.origin.format = Some(parsers::Format::EcsJson);
    e
}

/// The `Get-VMHost` snapshot the correlator's host-fact rules read.
pub fn host_facts(config: &HostConfig) -> Event {
    let mut e = event(
        &config.name,
        "relive-hostfacts",
        "relive/HostFacts",
        1,
        Level::Information,
        "Get-VMHost snapshot".into(),
    );
    let facts = [
        ("ComputerName", config.name.clone()),
        ("MemoryCapacity", (config.memory_mib << 20).to_string()),
        ("NumaSpanningEnabled", title(config.numa_spanning)),
        ("NumaNodeCount", config.numa_nodes().len().to_string()),
        (
            "VirtualMachineMigrationEnabled",
            title(config.migration_enabled),
        ),
        (
            "VirtualMachineMigrationAuthenticationType",
            match config.auth.mode {
                AuthMode::Direct => "CredSSP".into(),
                AuthMode::Delegated => "Kerberos".into(),
            },
        ),
        (
            "MaximumVirtualMachineMigrations",
            config.max_migrations.to_string(),
        ),
        ("VirtualSwitches", config.switches.join(",")),
        ("SupportedVersions", config.config_versions.join(",")),
        ("MigrationNetworks", config.migration_networks.join(",")),
        (
            "MigrationListener",
            config
                .listen
                .map(|a| a.to_string())
                .unwrap_or_else(|| "closed".into()),
        ),
        ("ProcessorVendor", config.processor.vendor.clone()),
        ("ProcessorFeatures", config.processor.features.join(",")),
    ];
    for (name, value) in facts {
        e.data.push_static(name, value);
    }
    e
}

fn title(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

/// A host's event or metrics log that cannot be opened for appending.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {}: {source}", path.display())]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl EventLog {
    /// A log for the host in `slot`, appending events (ECS JSON lines) to
    /// `events` and migration metrics to `metrics` when given; the error
    /// names the file that cannot be opened.
    pub fn open(
        slot: HostSlot,
        events: Option<&Path>,
        metrics: Option<&Path>,
    ) -> Result<EventLog, OpenError> {
        let open = |p: &Path| {
            open_append(p).map_err(|source| OpenError {
                path: p.to_path_buf(),
                source,
            })
        };
        Ok(EventLog {
            host: slot,
            events: events.map(open).transpose()?,
            metrics: metrics.map(open).transpose()?,
        })
    }

    /// Appends `events` (enriched as parsers enrich what they read).
    pub fn write(&self, events: &[Event]) {
        let Some(file) = &self.events else { return };
        let mut out = Vec::new();
        for e in events {
            let mut e = e.clone();
            parsers::extract::enrich(&mut e);
            e.write_json(&mut out);
            out.push(b'\n');
        }
        let mut file = file.lock().expect("event log lock");
        if let Err(err) = file.write_all(&out).and_then(|_| file.flush()) {
            tracing::error!(error = %err, "cannot write the host event log");
        }
    }

    fn metrics(&self, report: &MigrationReport) {
        let Some(file) = &self.metrics else { return };
        let mut out = String::new();
        for m in metrics_of(report) {
            out.push_str(&m.to_json());
            out.push('\n');
        }
        let mut file = file.lock().expect("metrics log lock");
        if let Err(err) = file.write_all(out.as_bytes()).and_then(|_| file.flush()) {
            tracing::error!(error = %err, "cannot write the host metrics log");
        }
    }
}

/// One metric per pre-copy pass and one for the end.
pub fn metrics_of(report: &MigrationReport) -> Vec<Metric> {
    let start = report
        .started_at
        .split_once('.')
        .and_then(|(s, ns)| chrono::DateTime::from_timestamp(s.parse().ok()?, ns.parse().ok()?))
        .unwrap_or_else(Utc::now);
    let base = Metric {
        timestamp: start,
        migration_id: report.id.clone(),
        vm_name: Some(report.vm_name.clone()),
        vm_id: Some(report.vm_id.clone()),
        source_host: Some(report.source.clone()),
        destination_host: Some(report.destination.clone()),
        phase: Phase::Started,
        pass: None,
        bytes_sent: None,
        dirty_pages: None,
        throughput_mbps: None,
        blackout_ms: None,
        total_ms: None,
        transport: Some(report.transport.clone()),
        outcome: None,
        origin: Default::default(),
    };
    let mut out = Vec::new();
    let mut sent = 0u64;
    for pass in &report.passes {
        sent += pass.bytes;
        out.push(Metric {
            timestamp: start
                + chrono::TimeDelta::milliseconds((pass.start_ms + pass.duration_ms) as i64),
            phase: Phase::Precopy,
            pass: Some(pass.pass as u32),
            bytes_sent: Some(sent),
            dirty_pages: Some(pass.dirty_pages),
            throughput_mbps: Some(pass.bandwidth as f64 * 8.0 / 1e6),
            ..base.clone()
        });
    }
    let ok = report.info.status == Status::Completed;
    out.push(Metric {
        timestamp: start + chrono::TimeDelta::milliseconds(report.info.total_time as i64),
        phase: if ok { Phase::Completed } else { Phase::Failed },
        bytes_sent: Some(report.info.ram.transferred),
        throughput_mbps: Some(report.info.ram.mbps),
        blackout_ms: report.info.downtime,
        total_ms: Some(report.info.total_time),
        outcome: Some(if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        }),
        ..base
    });
    out
}

/// A `verify = sent` migration whose source memory, read after the commit,
/// differs from what was sent: relive's own event (Hyper-V has none), a
/// warning the correlator and an admin can find by id.
pub fn audit_event(host: &str, vm_name: &str, vm_id: &str, audit: &Audit) -> Event {
    let first: Vec<String> = audit.first.iter().map(|p| format!("{p:#x}")).collect();
    let mut e = event(
        host,
        "relive-migrate",
        "relive/Migration",
        2,
        Level::Warning,
        format!("After the live migration of virtual machine '{vm_name}' committed, its paused memory on the source differed from what was sent in {} of {} pages (first: {}): writes the dirty tracker did not see. The virtual machine runs on the destination without them; restart it if its state is in doubt. (VMID {vm_id})", audit.differing, audit.pages, first.join(", ")),
    );
    e.data.push_static("VmName", vm_name);
    e.data.push_static("VmId", vm_id);
    e.data
        .push_static("DifferingPages", audit.differing.to_string());
    e
}

/// High-Availability 21502 for a failed (or in-doubt) migration: the
/// headline, the sub-message naming where it failed, `note` when given,
/// then the error's own Hyper-V text; HRESULT, VM name and id as data.
fn failure_event(
    host: &str,
    vm_name: &str,
    vm_id: &str,
    where_: &str,
    peer: &str,
    error: &migrate_core::MigrationError,
    note: Option<&str>,
) -> Event {
    let vm = if vm_name.is_empty() {
        "<unknown>"
    } else {
        vm_name
    };
    let id = if vm_id.is_empty() {
        String::new()
    } else {
        format!(" (Virtual machine ID {vm_id})")
    };
    let note = note.map(|n| format!("{n}\n")).unwrap_or_default();
    let mut e = event(
        host,
        HA,
        HA_CHANNEL,
        21502,
        Level::Error,
        format!("Live migration of 'Virtual Machine {vm}' failed.\n\nVirtual machine migration operation for '{vm}' failed at migration {where_} '{host}'{id}. Peer: '{peer}'.\n{note}{}", error.message),
    );
    e.data.push_static("Hresult", error.hresult());
    if !vm_name.is_empty() {
        e.data.push_static("VmName", vm_name);
    }
    if !vm_id.is_empty() {
        e.data.push_static("VmId", vm_id);
    }
    e
}

impl NoticeSink for EventLog {
    fn notice(&self, host: &str, notice: &Notice) {
        match notice {
            Notice::VmStarted { vm_name, vm_id } => self.write(&[event(
                host,
                WORKER,
                WORKER_CHANNEL,
                18500,
                Level::Information,
                format!("'{vm_name}' started successfully. (Virtual machine ID {vm_id})"),
            )]),
            Notice::VmStopped { vm_name, vm_id } => self.write(&[event(
                host,
                WORKER,
                WORKER_CHANNEL,
                18502,
                Level::Information,
                format!("'{vm_name}' was turned off. (Virtual machine ID {vm_id})"),
            )]),
            Notice::MigrationStarted {
                vm_name,
                vm_id,
                role,
                peer,
            } => {
                let text = match role {
                    Role::Source => format!("The Virtual Machine Management Service initiated the live migration of virtual machine '{vm_name}' to destination host '{peer}' (VMID {vm_id})."),
                    Role::Destination => format!("The Virtual Machine Management Service is receiving the live migration of virtual machine '{vm_name}' from source host '{peer}' (VMID {vm_id})."),
                };
                self.write(&[event(
                    host,
                    VMMS,
                    VMMS_CHANNEL,
                    20413,
                    Level::Information,
                    text,
                )]);
            }
            Notice::MigrationSucceeded {
                vm_name,
                vm_id,
                role,
                blackout_ms,
                report,
                ..
            } => {
                let seconds = *blackout_ms as f64 / 1000.0;
                let events = match role {
                    Role::Source => {
                        let total = report.as_ref().map_or(0.0, |r| r.info.total_time as f64 / 1000.0);
                        vec![
                            event(host, VMMS, VMMS_CHANNEL, 20415, Level::Information, format!("The Virtual Machine Management service successfully completed the live migration of virtual machine '{vm_name}' with a blackout time of {seconds:.3} seconds (VMID {vm_id}).")),
                            event(host, HA, HA_CHANNEL, 21301, Level::Information, format!("Completed live migration on the source node, time {total:.3} s (VM resource 'Virtual Machine {vm_name}', VMID {vm_id}).")),
                        ]
                    }
                    Role::Destination => vec![event(host, HA, HA_CHANNEL, 21307, Level::Information, format!("Completed live migration on the target node, time {seconds:.3} s (VM resource 'Virtual Machine {vm_name}', VMID {vm_id})."))],
                };
                self.write(&events);
                if let Some(report) = report {
                    self.metrics(report);
                    if let Some(audit) = report
                        .verification
                        .as_ref()
                        .and_then(|v| v.audit.as_ref())
                        .filter(|a| a.differing > 0)
                    {
                        self.write(&[audit_event(host, vm_name, vm_id, audit)]);
                    }
                }
            }
            Notice::MigrationFailed {
                vm_name,
                vm_id,
                role,
                peer,
                error,
                report,
            } => {
                let where_ = match role {
                    Role::Source => "source",
                    Role::Destination => "destination",
                };
                let mut events = vec![failure_event(
                    host, vm_name, vm_id, where_, peer, error, None,
                )];
                // Hyper-V's VMMS logs the collection-registry failure on
                // both nodes next to the 21502 (the seed's 21066).
                if error.kind == migrate_core::ErrorKind::SharedStorageMissing {
                    let mut e = event(
                        host,
                        VMMS,
                        VMMS_CHANNEL,
                        21066,
                        Level::Error,
                        error.message.clone(),
                    );
                    e.data.push_static("VmName", vm_name.as_str());
                    e.data.push_static("VmId", vm_id.as_str());
                    events.push(e);
                }
                // The destination's worker cannot create the partition
                // (Hyper-V's Worker-Admin texts, hyperv-kb.md FM-03).
                if error.kind == migrate_core::ErrorKind::OutOfMemory
                    && matches!(role, Role::Destination)
                    && !vm_name.is_empty()
                {
                    for (id, text) in [
                        (3040, "Failed to create partition: Insufficient system resources exist to complete the requested service. (0x800705AA)".to_string()),
                        (3050, format!("'{vm_name}' could not initialize memory: Ran out of memory (0x8007000E).")),
                    ] {
                        let mut e = event(host, WORKER, WORKER_CHANNEL, id, Level::Error, text);
                        e.data.push_static("VmName", vm_name.as_str());
                        e.data.push_static("VmId", vm_id.as_str());
                        events.push(e);
                    }
                }
                // The source's High-Availability 21501 for a refusal by
                // the migration limit.
                if error.kind == migrate_core::ErrorKind::LimitReached
                    && matches!(role, Role::Source)
                    && !vm_name.is_empty()
                {
                    let limit = error
                        .message
                        .split("migration limit \"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("?");
                    let mut e = event(
                        host,
                        HA,
                        HA_CHANNEL,
                        21501,
                        Level::Error,
                        format!("Failed to perform migration on virtual machine \"{vm_name}\" because virtual machine migration limit \"{limit}\" was reached, please wait for completion of an ongoing migration operation."),
                    );
                    e.data.push_static("VmName", vm_name.as_str());
                    e.data.push_static("VmId", vm_id.as_str());
                    events.push(e);
                }
                self.write(&events);
                if let Some(report) = report {
                    self.metrics(report);
                }
            }
            Notice::MigrationInDoubt {
                vm_name,
                vm_id,
                peer,
                error,
            } => {
                // A failed attempt as far as the admin can tell (the VM is
                // not where it was sent), with what relive does about it.
                let doubt = format!("The answer to the commit was lost: the outcome is in doubt. The virtual machine stays paused on '{host}' until '{peer}' confirms whether it runs it (or an administrator runs `relive resolve`).");
                let mut first =
                    failure_event(host, vm_name, vm_id, "source", peer, error, Some(&doubt));
                first.data.push_static("InDoubt", "true");
                self.write(&[first]);
            }
            Notice::InDoubtResolved {
                vm_name,
                vm_id,
                peer,
                outcome,
            } => {
                let text = match outcome {
                    InDoubtOutcome::Committed => format!("'{peer}' confirmed that it committed the live migration of '{vm_name}': the virtual machine runs there; the paused copy on '{host}' was discarded (VMID {vm_id})."),
                    InDoubtOutcome::Aborted => format!("'{peer}' confirmed that it did not commit the live migration of '{vm_name}' and never will: the virtual machine resumed on '{host}' (VMID {vm_id})."),
                    InDoubtOutcome::OperatorResumedHere => format!("An administrator resolved the in-doubt live migration of '{vm_name}': the virtual machine resumed on '{host}' without word from '{peer}' (VMID {vm_id})."),
                    InDoubtOutcome::OperatorDiscardedHere => format!("An administrator resolved the in-doubt live migration of '{vm_name}': '{peer}' runs it; the paused copy on '{host}' was discarded (VMID {vm_id})."),
                };
                let mut e = event(
                    host,
                    "relive-migrate",
                    "relive/Migration",
                    3,
                    Level::Warning,
                    text,
                );
                e.data.push_static("VmName", vm_name.as_str());
                e.data.push_static("VmId", vm_id.as_str());
                self.write(&[e]);
            }
            Notice::SettingChanged { .. } => {
                let host = self.host.lock().expect("host slot").clone();
                if let Some(host) = host {
                    self.write(&[host_facts(&host.config())]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_audit_is_a_warning_naming_the_vm_and_the_pages() {
        let audit = Audit {
            pages: 8192,
            differing: 2,
            first: vec![5, 0x1f00],
            ms: 3.0,
        };
        let e = audit_event(
            "HV01",
            "ADFS1",
            "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7",
            &audit,
        );
        assert_eq!((e.event_id, e.level), (2, Level::Warning));
        assert_eq!(e.channel, "relive/Migration");
        assert!(
            e.message
                .contains("in 2 of 8192 pages (first: 0x5, 0x1f00)"),
            "{}",
            e.message
        );
        assert_eq!(e.data.get("VmName"), Some("ADFS1"));
        assert_eq!(e.data.get("DifferingPages"), Some("2"));
    }
}
