//! `relive host` (a migration host: VMs, migration listener, control API,
//! a Hyper-V-shaped event log and migration metrics), `relive migrate` and
//! `relive vms` (clients of its control API).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use migrate_core::config::{AuthMode, HostConfig};
use migrate_core::control::ControlClient;
use migrate_core::host::{Host, Notice, NoticeSink, Role};
use migrate_core::report::{Audit, MigrationInfo, MigrationReport, Status, VerifyMode};
use parsers::{Event, Level, Metric, Outcome, Phase};
use serde_json::json;

use crate::cli::{ControlArgs, HostArgs, MigrateArgs};

const HA: &str = "Microsoft-Windows-Hyper-V-High-Availability";
const HA_CHANNEL: &str = "Microsoft-Windows-Hyper-V-High-Availability-Admin";
const VMMS: &str = "Microsoft-Windows-Hyper-V-VMMS";
const VMMS_CHANNEL: &str = "Microsoft-Windows-Hyper-V-VMMS-Admin";
const WORKER: &str = "Microsoft-Windows-Hyper-V-Worker";
const WORKER_CHANNEL: &str = "Microsoft-Windows-Hyper-V-Worker-Admin";

/// Writes a host's notices as the events Hyper-V writes for them (ECS JSON
/// lines) and its migration reports as metric lines.
struct EventLog {
    host: Host2,
    events: Option<Mutex<std::fs::File>>,
    metrics: Option<Mutex<std::fs::File>>,
}

/// What the log needs of the host's configuration (read at each notice:
/// settings change).
type Host2 = Arc<Mutex<Option<Host>>>;

fn open_append(path: &PathBuf) -> anyhow::Result<Mutex<std::fs::File>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
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
fn host_facts(config: &HostConfig) -> Event {
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

impl EventLog {
    fn write(&self, events: &[Event]) {
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
fn metrics_of(report: &MigrationReport) -> Vec<Metric> {
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
fn audit_event(host: &str, vm_name: &str, vm_id: &str, audit: &Audit) -> Event {
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
                let mut first = event(
                    host,
                    HA,
                    HA_CHANNEL,
                    21502,
                    Level::Error,
                    format!("Live migration of 'Virtual Machine {vm}' failed.\n\nVirtual machine migration operation for '{vm}' failed at migration {where_} '{host}'{id}. Peer: '{peer}'.\n{}", error.message),
                );
                first.data.push_static("Hresult", error.hresult());
                if !vm_name.is_empty() {
                    first.data.push_static("VmName", vm_name.as_str());
                }
                if !vm_id.is_empty() {
                    first.data.push_static("VmId", vm_id.as_str());
                }
                self.write(&[first]);
                if let Some(report) = report {
                    self.metrics(report);
                }
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

/// `relive host --config FILE`.
pub fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config: HostConfig = toml::from_str(&text)
        .with_context(|| format!("{}: invalid host configuration", args.config.display()))?;
    let slot: Host2 = Arc::new(Mutex::new(None));
    let log = Arc::new(EventLog {
        host: slot.clone(),
        events: config.event_log.as_ref().map(open_append).transpose()?,
        metrics: config.metrics_log.as_ref().map(open_append).transpose()?,
    });
    let vms = config.vms.clone();
    let host = Host::new(config.clone(), log.clone());
    *slot.lock().expect("host slot") = Some(host.clone());
    log.write(&[host_facts(&config)]);
    let listen = match config.listen {
        Some(_) => Some(
            host.open_listener()
                .context("opening the migration listener")?,
        ),
        None => None,
    };
    // VMs first, so a client that reaches the control API finds them.
    for vm in vms {
        let name = vm.name.clone();
        host.start_vm(vm)
            .with_context(|| format!("starting VM {name}"))?;
    }
    let control = host.serve_control().context("opening the control API")?;
    eprintln!(
        "relive host {}: migrations on {}, control API on {}, {} VM(s) running",
        host.name(),
        listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(listener closed)".into()),
        control.addr,
        host.list_vms().len()
    );
    tracing::info!(host = %host.name(), "host running");
    loop {
        std::thread::park();
    }
}

/// Parses `128MiB`, `1Gbit`, `1000000` into bytes per second.
fn parse_rate(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .with_context(|| format!("bad rate {text:?}"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        other => anyhow::bail!("unknown rate unit {other:?} (use KiB, MiB, GiB, Mbit, Gbit)"),
    };
    Ok((n * factor) as u64)
}

/// `relive migrate VM --to HOST`.
pub fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let (codec, streams) = match args.transport.as_str() {
        "tcp" => ("none", 1),
        "compress" => ("lz4", 1),
        "multi" => ("none", args.streams.max(1)),
        other => anyhow::bail!("unknown transport {other:?} (tcp, compress or multi)"),
    };
    let params = json!({
        "downtime-limit": args.downtime_limit,
        "max-bandwidth": parse_rate(&args.max_bandwidth)?,
        "timeout": args.timeout * 1000,
        "timeout-strategy": if args.force_on_timeout { "force" } else { "cancel" },
        "auto-converge": args.auto_converge,
        "codec": codec,
        "streams": streams,
        "verify": args.verify,
        "extra-passes": args.extra_passes,
    });
    let mut client = ControlClient::connect(args.control.control, &args.control.token)?;
    if let Some(initiator) = &args.initiator {
        client = client.initiator(initiator);
    }
    let mut request =
        json!({ "op": "migrate", "vm": args.vm, "destination": args.to, "params": params });
    if let Some(address) = args.address {
        request["address"] = json!(address.to_string());
    }
    let started = client.call(request)?;
    let id = started["id"].as_str().unwrap_or_default().to_string();
    let mut last = String::new();
    let report = loop {
        let info: MigrationInfo =
            serde_json::from_value(client.call(json!({"op": "query", "id": id}))?)?;
        if info.status.is_final() {
            let report: MigrationReport =
                serde_json::from_value(client.call(json!({"op": "wait", "id": id}))?)?;
            break report;
        }
        if !args.control.json {
            let line = format!(
                "{:?} pass {} sent {:.1} MB remaining {:.1} MB expected blackout {} ms",
                info.status,
                info.ram.dirty_sync_count + 1,
                info.ram.transferred as f64 / 1e6,
                info.ram.remaining as f64 / 1e6,
                info.expected_downtime.unwrap_or(0)
            );
            if line != last {
                eprintln!("{line}");
                last = line;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if args.control.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.info.status == Status::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(r: &MigrationReport) {
    let status = match r.info.status {
        Status::Completed => "completed",
        Status::Cancelled => "cancelled",
        _ => "failed",
    };
    println!(
        "migration {} of {} {} -> {}: {status}",
        r.id, r.vm_name, r.source, r.destination
    );
    println!(
        "  total {} ms, setup {} ms, blackout {}, {} passes, {:.1} MB sent ({} pages, {} zero), {:.0} Mbit/s, transport {}",
        r.info.total_time,
        r.info.setup_time,
        r.info.downtime.map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into()),
        r.passes.len(),
        r.info.ram.transferred as f64 / 1e6,
        r.info.ram.normal,
        r.info.ram.duplicate,
        r.info.ram.mbps,
        r.transport
    );
    if let Some(v) = &r.verification {
        let mode = match v.mode {
            VerifyMode::Sent => "as sent",
            VerifyMode::Full => "paused memory",
        };
        println!(
            "  verified {} pages ({mode}): {}",
            v.pages,
            if v.digest_ok { "equal" } else { "DIFFERENT" }
        );
        if let Some(a) = &v.audit {
            if a.differing == 0 {
                println!(
                    "  audit after the commit: the paused source memory equals what was sent ({:.0} ms)",
                    a.ms
                );
            } else {
                let first: Vec<String> = a.first.iter().map(|p| format!("{p:#x}")).collect();
                println!(
                    "  AUDIT after the commit: the paused source memory differs from what was sent in {} pages (first: {}): writes the dirty tracker missed; the VM runs on {} without them",
                    a.differing,
                    first.join(", "),
                    r.destination
                );
            }
        }
    }
    if let Some(e) = &r.error {
        println!("  error ({}): {}", e.kind.name(), e.message);
        println!("  the VM keeps running on {}", r.source);
    }
}

/// `relive vms`.
pub fn vms(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let mut client = ControlClient::connect(args.control, &args.token)?;
    let vms = client.call(json!({"op": "list_vms"}))?;
    if args.json {
        println!("{vms}");
    } else {
        println!(
            "{:<20} {:<38} {:>8} {:<10} {:>8}",
            "NAME", "ID", "MB", "STATE", "COUNTER"
        );
        for vm in vms.as_array().into_iter().flatten() {
            println!(
                "{:<20} {:<38} {:>8} {:<10} {:>8}",
                vm["name"].as_str().unwrap_or_default(),
                vm["id"].as_str().unwrap_or_default(),
                vm["memory_mib"],
                vm["state"].as_str().unwrap_or_default(),
                vm["counter"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
