//! Executors: what runs a plan's actions, behind one trait.
//!
//! - [`ReliveHosts`]: relive migration hosts (the embedded migration core)
//!   through their control API and its typed client: read-only checks
//!   (`preflight`, the VM's place), fixes (typed [`Setting`]s), the retry
//!   (`migrate` + `wait`), and candidate destinations asked with
//!   `preflight` so nothing moves until one says yes.
//! - [`crate::powershell::PowerShell`]: Hyper-V through PowerShell over a
//!   configured transport, each value passed as data.
//!
//! A playbook step names its host operation in `relive = "…"` ([`HostOp`]);
//! the values the operation needs come from the plan's parameters and the
//! hosts' own settings, never from text.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use migrate_core::config::{HostConfig, VmConfig};
use migrate_core::control::{ControlClient, ControlError, Setting};
use migrate_core::ledger::Placement;
use serde::{Deserialize, Serialize};

use crate::plan::Action;

/// What a playbook step does on a relive migration host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostOp {
    /// Read-only: would the destination accept the VM now?
    Preflight,
    /// Turns live migration on at the destination.
    EnableMigration,
    /// Turns NUMA spanning on at the destination.
    EnableNumaSpanning,
    /// Recreates the destination's shared storage root (its configured
    /// path, nothing else).
    CreateSharedStorage,
    /// Renames destination switches that differ from the VM's only in case.
    MatchSwitches,
    /// Creates on the destination the VM's switches it lacks.
    AddMissingSwitches,
    /// Opens the destination's migration listener.
    OpenListener,
    /// Trusts the source to initiate migrations to the destination.
    TrustSource,
}

impl HostOp {
    /// Reads a playbook's `relive = "…"`.
    pub fn parse(name: &str) -> Option<HostOp> {
        serde_json::from_value(serde_json::Value::String(name.trim().to_string())).ok()
    }

    /// Whether it only reads.
    pub fn reads_only(self) -> bool {
        self == HostOp::Preflight
    }
}

/// What a check saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// Nothing wrong (for a confirming check: the cause is not there now).
    pub healthy: bool,
    /// What it saw, in plain words.
    pub detail: String,
}

/// Where a VM is, seen from a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmPlace {
    /// It runs there, not migrating.
    Running,
    /// A migration of it is under way there.
    Migrating,
    /// Its last migration's outcome is unknown: nothing may move it.
    InDoubt,
    /// It is not there (moved away, or never was).
    Absent,
}

/// A candidate destination and its pre-flight answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The host.
    pub host: String,
    /// Free memory in MiB when it accepts, or why it refuses.
    pub answer: Result<u64, String>,
}

/// How a retry ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Migrated {
    /// The migration id (the host's).
    pub id: String,
    /// It completed.
    pub ok: bool,
    /// The failure's signature (error kind) when it did not.
    pub signature: Option<String>,
    /// What happened, in plain words.
    pub detail: String,
    /// Blackout, ms.
    pub blackout_ms: Option<u64>,
    /// Whole migration, ms.
    pub total_ms: Option<u64>,
}

/// Errors of an executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The action names no operation this executor can run.
    #[error("{0}")]
    Unsupported(String),
    /// A value the action needs is not known.
    #[error("missing value: {0}")]
    Missing(String),
    /// The host is not configured.
    #[error("host `{0}` is not in [remediation.hosts]")]
    UnknownHost(String),
    /// The host answered with an error or could not be reached.
    #[error("{host}: {source}")]
    Host {
        /// Which host.
        host: String,
        /// What it said.
        source: ControlError,
    },
    /// The transport failed (PowerShell).
    #[error("{0}")]
    Transport(String),
}

/// Runs a plan's actions somewhere.
pub trait Executor: Send + Sync {
    /// Its name in the audit log.
    fn name(&self) -> &'static str;
    /// Whether it can run this action (manual steps it cannot).
    fn can_run(&self, action: &Action) -> bool;
    /// Whether a check it runs says healthy or not (false: it only
    /// reports what it saw, for a human; the engine does not decide on it).
    fn judges(&self, action: &Action) -> bool {
        self.can_run(action)
    }
    /// Runs a read-only check.
    fn check(&self, action: &Action) -> Result<Observation, ExecError>;
    /// Runs a fix; what it did.
    fn fix(&self, action: &Action) -> Result<String, ExecError>;
    /// Where `vm` is, seen from `host`.
    fn vm_place(&self, vm: &str, host: &str) -> Result<VmPlace, ExecError>;
    /// Every other host `vm` could go to from `source`, each with its
    /// pre-flight answer, best first (accepting, most free memory).
    fn candidates(
        &self,
        vm: &str,
        source: &str,
        exclude: &[&str],
    ) -> Result<Vec<Candidate>, ExecError>;
    /// Would `destination` take `vm` from `source` now: free memory in MiB,
    /// or why not (the same answer [`Executor::candidates`] gives each
    /// host). An executor that cannot ask says yes and lets the retry tell.
    fn offer(
        &self,
        vm: &str,
        source: &str,
        destination: &str,
    ) -> Result<Result<u64, String>, ExecError>;
    /// Migrates `vm` from `source` to `destination` and waits for the end.
    fn migrate(&self, vm: &str, source: &str, destination: &str) -> Result<Migrated, ExecError>;
}

/// The executor `[remediation]` configures: relive hosts when `hosts` are
/// given, else PowerShell when `powershell` is, else none.
pub fn from_config(
    config: &crate::config::RemediationConfig,
) -> Option<std::sync::Arc<dyn Executor>> {
    if !config.hosts.is_empty() {
        Some(std::sync::Arc::new(ReliveHosts::new(config.hosts.clone())))
    } else {
        config.powershell.clone().map(|p| {
            std::sync::Arc::new(crate::powershell::PowerShell::new(p))
                as std::sync::Arc<dyn Executor>
        })
    }
}

/// How to reach one relive host's control API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostAccess {
    /// Its control address.
    pub control: SocketAddr,
    /// Its control token.
    #[serde(default)]
    pub token: Option<String>,
    /// Or a file holding it (a host's generated token).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl HostAccess {
    fn token(&self) -> Result<String, String> {
        match (&self.token, &self.token_file) {
            (Some(t), _) if !t.is_empty() => Ok(t.clone()),
            (_, Some(path)) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            _ => Err("no token or token_file".into()),
        }
    }

    /// A control client for the host (its token read now).
    pub fn connect(&self) -> Result<ControlClient, String> {
        let token = self.token()?;
        ControlClient::connect(self.control, &token).map_err(|e| e.to_string())
    }
}

/// The relive-host executor.
#[derive(Debug, Clone)]
pub struct ReliveHosts {
    hosts: BTreeMap<String, HostAccess>,
    /// Longest wait for one migration.
    pub migration_timeout: Duration,
}

impl ReliveHosts {
    /// Over these hosts (names as the events give them; any case).
    pub fn new(hosts: BTreeMap<String, HostAccess>) -> ReliveHosts {
        ReliveHosts {
            hosts,
            migration_timeout: Duration::from_secs(600),
        }
    }

    /// The configured name of `host` (short name, any case).
    fn name_of(&self, host: &str) -> Option<&str> {
        let short = parsers::event::short_host(host);
        self.hosts
            .keys()
            .find(|h| h.eq_ignore_ascii_case(short) || h.eq_ignore_ascii_case(host))
            .map(String::as_str)
    }

    fn client(&self, host: &str) -> Result<(String, ControlClient), ExecError> {
        let name = self
            .name_of(host)
            .ok_or_else(|| ExecError::UnknownHost(host.to_string()))?
            .to_string();
        let access = &self.hosts[&name];
        let token = access
            .token()
            .map_err(|e| ExecError::Transport(format!("{name}: {e}")))?;
        let client =
            ControlClient::connect(access.control, &token).map_err(|source| ExecError::Host {
                host: name.clone(),
                source,
            })?;
        Ok((name, client))
    }

    fn on<T>(
        &self,
        host: &str,
        f: impl FnOnce(&mut ControlClient) -> Result<T, ControlError>,
    ) -> Result<T, ExecError> {
        let (name, mut client) = self.client(host)?;
        f(&mut client).map_err(|source| ExecError::Host { host: name, source })
    }

    fn settings(&self, host: &str) -> Result<HostConfig, ExecError> {
        self.on(host, |c| c.settings())
    }

    fn vm_config(&self, vm: &str, source: &str) -> Result<VmConfig, ExecError> {
        self.on(source, |c| c.vm_config(vm))
    }

    fn preflight_answer(
        &self,
        vm: &VmConfig,
        host: &str,
    ) -> Result<Result<u64, String>, ExecError> {
        let (name, mut client) = self.client(host)?;
        match client.preflight(vm) {
            Ok(p) => Ok(Ok(p.free_mib)),
            Err(ControlError::Host(e)) => Ok(Err(format!("{}: {}", kind_name(&e.kind), e.message))),
            Err(source) => Err(ExecError::Host { host: name, source }),
        }
    }
}

fn kind_name(kind: &migrate_core::ErrorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

fn param<'a>(action: &'a Action, name: &str) -> Result<&'a str, ExecError> {
    action
        .params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ExecError::Missing(format!("{{{name}}}")))
}

impl Executor for ReliveHosts {
    fn name(&self) -> &'static str {
        "relive-hosts"
    }

    fn can_run(&self, action: &Action) -> bool {
        action.op.is_some()
    }

    fn check(&self, action: &Action) -> Result<Observation, ExecError> {
        match action.op {
            Some(HostOp::Preflight) => {
                let vm = param(action, "vm_name")?;
                let source = param(action, "source_host")?;
                let destination = param(action, "destination_host")?;
                let config = self.vm_config(vm, source)?;
                Ok(match self.preflight_answer(&config, destination)? {
                    Ok(free) => Observation {
                        healthy: true,
                        detail: format!("{destination} would accept {vm} now ({free} MiB free)"),
                    },
                    Err(why) => Observation {
                        healthy: false,
                        detail: format!("{destination} refuses {vm}: {why}"),
                    },
                })
            }
            Some(op) => Err(ExecError::Unsupported(format!(
                "`{}` changes a host; it is not a check",
                serde_json::to_value(op).unwrap_or_default()
            ))),
            None => Err(ExecError::Unsupported(
                "no host operation for this step (a manual step)".into(),
            )),
        }
    }

    fn fix(&self, action: &Action) -> Result<String, ExecError> {
        let op = action.op.ok_or_else(|| {
            ExecError::Unsupported("no host operation for this step (a manual step)".into())
        })?;
        let destination = param(action, "destination_host")?;
        let settings = |s: Setting| self.on(destination, |c| c.set(s));
        match op {
            HostOp::Preflight => {
                let seen = self.check(action)?;
                if seen.healthy {
                    Ok(seen.detail)
                } else {
                    Err(ExecError::Transport(seen.detail))
                }
            }
            HostOp::EnableMigration => {
                settings(Setting::MigrationEnabled { value: true })?;
                Ok(format!("live migration enabled on {destination}"))
            }
            HostOp::EnableNumaSpanning => {
                settings(Setting::NumaSpanning { value: true })?;
                Ok(format!("NUMA spanning enabled on {destination}"))
            }
            HostOp::OpenListener => {
                settings(Setting::Listener { open: true })?;
                Ok(format!("migration listener opened on {destination}"))
            }
            HostOp::TrustSource => {
                let source = param(action, "source_host")?;
                let name = self
                    .name_of(source)
                    .map(str::to_string)
                    .unwrap_or_else(|| source.to_string());
                settings(Setting::TrustInitiator { name: name.clone() })?;
                Ok(format!(
                    "{destination} now trusts {name} to initiate migrations"
                ))
            }
            HostOp::CreateSharedStorage => {
                let config = self.settings(destination)?;
                let Some(path) = config.shared_storage else {
                    return Err(ExecError::Missing(format!(
                        "{destination} has no shared storage path configured"
                    )));
                };
                let shown = path.display().to_string();
                settings(Setting::SharedStorage {
                    path,
                    create: true,
                    subdir: None,
                })?;
                Ok(format!(
                    "recreated the shared storage path {shown} on {destination}"
                ))
            }
            HostOp::MatchSwitches | HostOp::AddMissingSwitches => {
                let vm = param(action, "vm_name")?;
                let source = param(action, "source_host")?;
                let wanted = self.vm_config(vm, source)?;
                let have = self.settings(destination)?.switches;
                let mut done = Vec::new();
                for nic in &wanted.nics {
                    let want = &nic.switch;
                    if have.contains(want) {
                        continue;
                    }
                    if op == HostOp::MatchSwitches {
                        if let Some(from) = have.iter().find(|h| h.eq_ignore_ascii_case(want)) {
                            settings(Setting::RenameSwitch {
                                from: from.clone(),
                                to: want.clone(),
                            })?;
                            done.push(format!("renamed switch '{from}' to '{want}'"));
                        }
                    } else if !have.iter().any(|h| h.eq_ignore_ascii_case(want)) {
                        settings(Setting::AddSwitch { name: want.clone() })?;
                        done.push(format!("created switch '{want}'"));
                    }
                }
                Ok(if done.is_empty() {
                    format!("nothing to change on {destination}")
                } else {
                    format!("{} on {destination}", done.join(", "))
                })
            }
        }
    }

    fn vm_place(&self, vm: &str, host: &str) -> Result<VmPlace, ExecError> {
        let (vms, ledger) = self.on(host, |c| Ok((c.list_vms()?, c.ledger()?)))?;
        let in_doubt = ledger.iter().any(|e| {
            (e.vm_name == vm || e.vm_id.eq_ignore_ascii_case(vm))
                && matches!(e.placement, Placement::InDoubt { .. })
        });
        if in_doubt {
            return Ok(VmPlace::InDoubt);
        }
        let Some(summary) = vms
            .iter()
            .find(|s| s.name == vm || s.id.eq_ignore_ascii_case(vm))
        else {
            return Ok(VmPlace::Absent);
        };
        Ok(match summary.state {
            migrate_core::host::VmState::Running => VmPlace::Running,
            migrate_core::host::VmState::InDoubt => VmPlace::InDoubt,
            _ => VmPlace::Migrating,
        })
    }

    fn candidates(
        &self,
        vm: &str,
        source: &str,
        exclude: &[&str],
    ) -> Result<Vec<Candidate>, ExecError> {
        let config = self.vm_config(vm, source)?;
        let source_name = self.name_of(source).unwrap_or(source).to_string();
        let mut out = Vec::new();
        for host in self.hosts.keys() {
            if host.eq_ignore_ascii_case(&source_name)
                || exclude.iter().any(|x| {
                    host.eq_ignore_ascii_case(parsers::event::short_host(x))
                        || host.eq_ignore_ascii_case(x)
                })
            {
                continue;
            }
            let answer = match self.preflight_answer(&config, host) {
                Ok(a) => a,
                Err(e) => Err(format!("unreachable: {e}")),
            };
            out.push(Candidate {
                host: host.clone(),
                answer,
            });
        }
        // Accepting hosts first, most free memory first; then the refusals.
        out.sort_by(|a, b| match (&a.answer, &b.answer) {
            (Ok(x), Ok(y)) => y.cmp(x).then(a.host.cmp(&b.host)),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            _ => a.host.cmp(&b.host),
        });
        Ok(out)
    }

    fn offer(
        &self,
        vm: &str,
        source: &str,
        destination: &str,
    ) -> Result<Result<u64, String>, ExecError> {
        let config = self.vm_config(vm, source)?;
        self.preflight_answer(&config, destination)
    }

    fn migrate(&self, vm: &str, source: &str, destination: &str) -> Result<Migrated, ExecError> {
        let destination = self.name_of(destination).unwrap_or(destination).to_string();
        let (name, mut client) = self.client(source)?;
        let id = match client.migrate(vm, &destination, None, Default::default()) {
            Ok(id) => id,
            Err(ControlError::Host(e)) => {
                return Ok(Migrated {
                    id: String::new(),
                    ok: false,
                    signature: Some(kind_name(&e.kind)),
                    detail: e.message,
                    blackout_ms: None,
                    total_ms: None,
                })
            }
            Err(source) => return Err(ExecError::Host { host: name, source }),
        };
        let report = client
            .wait(&id)
            .map_err(|source| ExecError::Host { host: name, source })?;
        let ok =
            report.error.is_none() && report.info.status == migrate_core::report::Status::Completed;
        Ok(Migrated {
            id,
            ok,
            signature: report.error.as_ref().map(|e| kind_name(&e.kind)),
            detail: match &report.error {
                Some(e) => e.message.clone(),
                None => format!(
                    "{} migrated from {} to {}",
                    report.vm_name, report.source, report.destination
                ),
            },
            blackout_ms: report.info.downtime,
            total_ms: Some(report.info.total_time),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_playbook_step_names_a_known_host_operation() {
        let kb = correlate::shipped::knowledge().unwrap();
        let mut named = 0;
        for id in kb.ids() {
            let playbook = kb.get(id).unwrap();
            for step in playbook.confirm.iter().chain(&playbook.fix) {
                if let Some(op) = &step.relive {
                    assert!(
                        HostOp::parse(op).is_some(),
                        "{}: unknown relive op `{op}`",
                        playbook.id
                    );
                    named += 1;
                }
            }
            for step in &playbook.confirm {
                if let Some(op) = step.relive.as_deref().and_then(HostOp::parse) {
                    assert!(op.reads_only(), "{}: a check that changes", playbook.id);
                }
            }
        }
        assert!(named >= 10, "{named}");
    }
}
