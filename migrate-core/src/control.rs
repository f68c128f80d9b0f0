//! The host's control API: JSON lines over TCP on loopback, each request
//! carrying the host's control token. `relive migrate`, the remediation
//! engine and `relive demo` use it through [`ControlClient`].
//!
//! ```text
//! > {"token":"…","op":"migrate","vm":"ADFS1","destination":"HV02"}
//! < {"ok":true,"result":{"id":"hv01-3"}}
//! > {"token":"…","op":"query","id":"hv01-3"}
//! < {"ok":true,"result":{"status":"active","total-time":812,…}}
//! > {"token":"wrong","op":"list_vms"}
//! < {"ok":false,"error":{"kind":"credentials_not_recognized","message":"…"}}
//! ```

use std::io::{BufRead, BufReader, Write};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{AuthMode, VmConfig};
use crate::error::{ErrorKind, MigrationError};
use crate::host::Host;
use crate::report::MigrationParams;
use crate::source::MigrateRequest;

/// Longest request line accepted.
const MAX_LINE: u64 = 1 << 20;

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The VMs on the host.
    ListVms,
    /// Starts a VM.
    StartVm {
        /// Its configuration.
        vm: VmConfig,
    },
    /// Turns a VM off.
    StopVm {
        /// Name or id.
        vm: String,
    },
    /// Pauses a VM's workload.
    PauseVm {
        /// Name or id.
        vm: String,
    },
    /// Resumes a VM's workload.
    ResumeVm {
        /// Name or id.
        vm: String,
    },
    /// Starts a migration; answers with its id at once.
    Migrate {
        /// Name or id.
        vm: String,
        /// Destination host name.
        destination: String,
        /// Its migration address (default: the host's `peers` entry, or
        /// the name itself as `host:port`).
        #[serde(default)]
        address: Option<SocketAddr>,
        /// Parameters.
        #[serde(default)]
        params: MigrationParams,
    },
    /// `query-migrate` for one migration.
    Query {
        /// Migration id.
        id: String,
    },
    /// Changes a running migration's parameters.
    SetParams {
        /// Migration id.
        id: String,
        /// New parameters.
        params: MigrationParams,
    },
    /// Cancels a migration.
    Cancel {
        /// Migration id.
        id: String,
    },
    /// Waits for a migration to end and returns its report.
    Wait {
        /// Migration id.
        id: String,
    },
    /// An operator settles an in-doubt migration of a VM on this (source)
    /// host: `resume_here` (only safe when the destination does not run
    /// it) or `discard_here` (the destination runs it).
    ResolveInDoubt {
        /// Name or id.
        vm: String,
        /// What to do.
        decision: crate::host::InDoubtDecision,
    },
    /// The host's ledger: VMs in doubt, moved away, arrived.
    Ledger,
    /// The host's configuration (secrets left out).
    Settings,
    /// Changes a host setting (a playbook's fix).
    Set(Setting),
    /// A VM's configuration (what a destination is asked about).
    VmConfig {
        /// Name or id.
        vm: String,
    },
    /// Would this host accept the VM now? Read-only: migration enabled, a
    /// free slot, version, processor, switches, shared storage, memory and
    /// NUMA; nothing is reserved and no page moves.
    Preflight {
        /// The VM's configuration (from its host's `vm_config`).
        vm: VmConfig,
    },
}

/// A host setting the control API changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "setting", rename_all = "snake_case", deny_unknown_fields)]
pub enum Setting {
    /// Enables or disables live migration.
    MigrationEnabled {
        /// On or off.
        value: bool,
    },
    /// Enables or disables NUMA spanning.
    NumaSpanning {
        /// On or off.
        value: bool,
    },
    /// Creates a virtual switch.
    AddSwitch {
        /// Its name.
        name: String,
    },
    /// Renames a virtual switch.
    RenameSwitch {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
    /// Sets (and with `create`, creates) the shared storage path.
    SharedStorage {
        /// The root.
        path: PathBuf,
        /// Create it (and `subdir` below it) when missing.
        #[serde(default)]
        create: bool,
        /// A folder to create below the root (a VM's folder).
        #[serde(default)]
        subdir: Option<PathBuf>,
    },
    /// Opens or closes the migration listener.
    Listener {
        /// Open or closed.
        open: bool,
    },
    /// Simultaneous migrations allowed.
    MaxMigrations {
        /// The limit.
        value: usize,
    },
    /// Authentication mode.
    AuthMode {
        /// Direct (CredSSP) or delegated (Kerberos).
        mode: AuthMode,
    },
    /// Trusts a machine to initiate migrations here (constrained delegation).
    TrustInitiator {
        /// The machine.
        name: String,
    },
    /// Adds an accepted migration network.
    AddMigrationNetwork {
        /// CIDR.
        cidr: String,
    },
    /// Adds a supported configuration version.
    AddConfigVersion {
        /// Version.
        version: String,
    },
}

/// The settings `relive host set` knows, with the words their values take.
pub const SETTING_USAGE: &[(&str, &str)] = &[
    ("migration_enabled", "true|false"),
    ("numa_spanning", "true|false"),
    ("add_switch", "NAME"),
    ("rename_switch", "FROM TO"),
    ("shared_storage", "PATH [create]"),
    ("listener", "open|closed"),
    ("max_migrations", "N"),
    ("auth_mode", "direct|delegated"),
    ("trust_initiator", "MACHINE"),
    ("add_migration_network", "CIDR"),
    ("add_config_version", "VERSION"),
];

impl Setting {
    /// A setting from its name and the words of its value, as typed on a
    /// command line (`migration_enabled true`, `rename_switch External LAN`).
    pub fn from_words(name: &str, values: &[String]) -> Result<Setting, String> {
        let key = name.trim().to_ascii_lowercase().replace('-', "_");
        let Some((_, usage)) = SETTING_USAGE.iter().find(|(n, _)| *n == key) else {
            let known: Vec<&str> = SETTING_USAGE.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown setting {name:?}; the settings are {}",
                known.join(", ")
            ));
        };
        let wrong = || format!("{key} takes {usage}, not {:?}", values.join(" "));
        let one = || match values {
            [v] if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ => Err(wrong()),
        };
        let flag = |yes: &[&str], no: &[&str]| {
            let v = one()?.to_ascii_lowercase();
            if yes.contains(&v.as_str()) {
                Ok(true)
            } else if no.contains(&v.as_str()) {
                Ok(false)
            } else {
                Err(wrong())
            }
        };
        let boolean = || flag(&["true", "on", "yes", "1"], &["false", "off", "no", "0"]);
        Ok(match key.as_str() {
            "migration_enabled" => Setting::MigrationEnabled { value: boolean()? },
            "numa_spanning" => Setting::NumaSpanning { value: boolean()? },
            "add_switch" => Setting::AddSwitch { name: one()? },
            "rename_switch" => match values {
                [from, to] if !from.is_empty() && !to.is_empty() => Setting::RenameSwitch {
                    from: from.clone(),
                    to: to.clone(),
                },
                _ => return Err(wrong()),
            },
            "shared_storage" => match values {
                [path] => Setting::SharedStorage {
                    path: path.into(),
                    create: false,
                    subdir: None,
                },
                [path, create] if create.eq_ignore_ascii_case("create") => Setting::SharedStorage {
                    path: path.into(),
                    create: true,
                    subdir: None,
                },
                _ => return Err(wrong()),
            },
            "listener" => Setting::Listener {
                open: flag(
                    &["open", "true", "on"],
                    &["closed", "close", "false", "off"],
                )?,
            },
            "max_migrations" => Setting::MaxMigrations {
                value: one()?.parse().map_err(|_| wrong())?,
            },
            "auth_mode" => Setting::AuthMode {
                mode: match one()?.to_ascii_lowercase().as_str() {
                    "direct" | "credssp" => AuthMode::Direct,
                    "delegated" | "kerberos" => AuthMode::Delegated,
                    _ => return Err(wrong()),
                },
            },
            "trust_initiator" => Setting::TrustInitiator { name: one()? },
            "add_migration_network" => Setting::AddMigrationNetwork { cidr: one()? },
            "add_config_version" => Setting::AddConfigVersion { version: one()? },
            _ => return Err(wrong()),
        })
    }
}

#[derive(Debug, Deserialize)]
struct Envelope {
    token: String,
    #[serde(default)]
    initiator: Option<String>,
    #[serde(flatten)]
    request: Request,
}

/// A running control API.
#[derive(Debug)]
pub struct ControlServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Host {
    /// Serves the control API on the configured `control` address (must
    /// be loopback).
    pub fn serve_control(&self) -> std::io::Result<ControlServer> {
        let addr = self.config().control;
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the control API only listens on loopback, not {addr}"),
            ));
        }
        let listener = TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("the control API cannot listen on {addr}: {e}"),
            )
        })?;
        let bound = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&self.inner);
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("control-api".into())
            .spawn(move || {
                crate::host::accept_loop(&weak, &listener, &flag, "control", serve_connection)
            })?;
        Ok(ControlServer { addr: bound, stop })
    }

    /// The migration address of host `name`: the `peers` entry, or `name`
    /// itself resolved as `host:port` (port 6600 when missing).
    pub fn resolve_peer(&self, name: &str) -> Result<SocketAddr, MigrationError> {
        let config = self.config();
        if let Some((_, addr)) = config
            .peers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Ok(*addr);
        }
        use std::net::ToSocketAddrs;
        let with_port = if name.contains(':') {
            name.to_string()
        } else {
            format!("{name}:{}", crate::config::DEFAULT_PORT)
        };
        with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                MigrationError::new(
                    ErrorKind::NameResolution,
                    format!("The Virtual Machine Management Service failed to establish a connection for a Virtual Machine migration with host '{name}': No such host is known. (0x80072AF9)."),
                )
            })
    }

    fn handle(&self, envelope: Envelope) -> Result<Value, MigrationError> {
        match envelope.request {
            Request::ListVms => Ok(value(&self.list_vms())),
            Request::StartVm { vm } => self.start_vm(vm).map(|s| value(&s)),
            Request::StopVm { vm } => self.stop_vm(&vm).map(|()| json!({})),
            Request::PauseVm { vm } => self.pause_vm(&vm).map(|()| json!({})),
            Request::ResumeVm { vm } => self.resume_vm(&vm).map(|()| json!({})),
            Request::Migrate {
                vm,
                destination,
                address,
                params,
            } => {
                let address = match address {
                    Some(a) => a,
                    None => self.resolve_peer(&destination)?,
                };
                let handle = self.migrate(MigrateRequest {
                    vm,
                    destination,
                    address,
                    initiator: envelope.initiator,
                    params,
                })?;
                Ok(json!({ "id": handle.id }))
            }
            Request::Query { id } => Ok(value(&self.handle_of(&id)?.info())),
            Request::SetParams { id, params } => {
                self.handle_of(&id)?.set_params(params);
                Ok(json!({}))
            }
            Request::Cancel { id } => {
                self.handle_of(&id)?.cancel();
                Ok(json!({}))
            }
            Request::Wait { id } => Ok(value(&self.handle_of(&id)?.wait())),
            Request::ResolveInDoubt { vm, decision } => self
                .decide_in_doubt(&vm, decision)
                .map(|id| json!({"vm_id": id, "decision": decision})),
            Request::Ledger => Ok(value(&self.ledger().entries())),
            Request::Settings => {
                let mut config = value(&self.config());
                if let Some(auth) = config.get_mut("auth") {
                    auth["peers"] = json!({});
                    auth["default_secret"] = json!("<hidden>");
                    auth["control_token"] = json!("<hidden>");
                }
                Ok(config)
            }
            Request::Set(setting) => self.apply(setting).map(|()| json!({})),
            Request::VmConfig { vm } => {
                let id = self.find_vm(&vm)?;
                self.vm_config(&id).map(|c| value(&c)).ok_or_else(|| {
                    MigrationError::new(
                        ErrorKind::VmNotFound,
                        format!("No virtual machine '{vm}' runs on host '{}'.", self.name()),
                    )
                })
            }
            Request::Preflight { vm } => self.preflight_offer(&vm).map(|p| value(&p)),
        }
    }

    fn handle_of(&self, id: &str) -> Result<crate::source::MigrationHandle, MigrationError> {
        self.migration(id).ok_or_else(|| {
            MigrationError::new(
                ErrorKind::VmNotFound,
                format!("No migration '{id}' on host '{}'.", self.name()),
            )
        })
    }

    /// Applies a setting and records it.
    pub fn apply(&self, setting: Setting) -> Result<(), MigrationError> {
        let io = |e: std::io::Error| MigrationError::new(ErrorKind::Io, format!("{e}"));
        match setting {
            Setting::MigrationEnabled { value } => {
                self.update_config("VirtualMachineMigrationEnabled", &value.to_string(), |c| {
                    c.migration_enabled = value
                })
            }
            Setting::NumaSpanning { value } => {
                self.update_config("NumaSpanningEnabled", &value.to_string(), |c| {
                    c.numa_spanning = value
                })
            }
            Setting::AddSwitch { name } => {
                self.update_config("VirtualSwitch", &name.clone(), |c| {
                    if !c.switches.contains(&name) {
                        c.switches.push(name)
                    }
                })
            }
            Setting::RenameSwitch { from, to } => {
                if !self.config().switches.contains(&from) {
                    return Err(MigrationError::new(
                        ErrorKind::SwitchMissing,
                        format!(
                            "The virtual switch '{from}' was not found on host '{}'.",
                            self.name()
                        ),
                    ));
                }
                self.update_config("VirtualSwitch", &format!("{from} -> {to}"), |c| {
                    for s in c.switches.iter_mut() {
                        if *s == from {
                            *s = to.clone();
                        }
                    }
                })
            }
            Setting::SharedStorage {
                path,
                create,
                subdir,
            } => {
                if create {
                    std::fs::create_dir_all(path.join(subdir.unwrap_or_default())).map_err(io)?;
                }
                let shown = path.display().to_string();
                self.update_config("SharedStoragePath", &shown, |c| {
                    c.shared_storage = Some(path)
                })
            }
            Setting::Listener { open } => {
                if open {
                    self.open_listener().map_err(io)?;
                } else {
                    self.close_listener();
                }
                self.update_config(
                    "MigrationListener",
                    if open { "open" } else { "closed" },
                    |_| {},
                )
            }
            Setting::MaxMigrations { value } => {
                self.update_config("MaximumVirtualMachineMigrations", &value.to_string(), |c| {
                    c.max_migrations = value
                })
            }
            Setting::AuthMode { mode } => {
                let name = match mode {
                    AuthMode::Direct => "CredSSP",
                    AuthMode::Delegated => "Kerberos",
                };
                self.update_config("VirtualMachineMigrationAuthenticationType", name, |c| {
                    c.auth.mode = mode
                })
            }
            Setting::TrustInitiator { name } => {
                self.update_config("TrustedInitiator", &name.clone(), |c| {
                    if !c.auth.trusted_initiators.contains(&name) {
                        c.auth.trusted_initiators.push(name)
                    }
                })
            }
            Setting::AddMigrationNetwork { cidr } => {
                self.update_config("MigrationNetwork", &cidr.clone(), |c| {
                    if !c.migration_networks.contains(&cidr) {
                        c.migration_networks.push(cidr)
                    }
                })
            }
            Setting::AddConfigVersion { version } => {
                self.update_config("SupportedVersion", &version.clone(), |c| {
                    if !c.config_versions.contains(&version) {
                        c.config_versions.push(version)
                    }
                })
            }
        }
        Ok(())
    }
}

fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn serve_connection(host: &Host, stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::Read::take(&mut reader, MAX_LINE).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 == MAX_LINE {
            let answer = json!({"ok": false, "error": {"kind": "protocol", "message": "request line too long"}});
            writeln!(writer, "{answer}")?;
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Envelope>(&line) {
            Err(e) => {
                json!({"ok": false, "error": {"kind": "protocol", "message": format!("bad request: {e}")}})
            }
            Ok(envelope) => {
                let token = host.config().auth.control_token;
                if token.is_empty()
                    || !crate::protocol::mac_eq(envelope.token.as_bytes(), token.as_bytes())
                {
                    tracing::warn!(host = %host.name(), %peer, "control request refused: wrong token");
                    json!({"ok": false, "error": {"kind": "credentials_not_recognized", "message": "The control token was not recognized."}})
                } else {
                    match host.handle(envelope) {
                        Ok(result) => json!({"ok": true, "result": result}),
                        Err(e) => json!({"ok": false, "error": e}),
                    }
                }
            }
        };
        writeln!(writer, "{answer}")?;
    }
}

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The host could not be reached.
    #[error("cannot reach the host's control API at {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed mid-request.
    #[error("control API connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The host answered with an error.
    #[error("{0}")]
    Host(MigrationError),
    /// The host answered something unreadable.
    #[error("unreadable answer from the control API: {0}")]
    Answer(String),
}

/// A client of a host's control API.
#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    token: String,
    initiator: Option<String>,
}

impl ControlClient {
    /// Connects to the control API at `addr` with `token`.
    pub fn connect(addr: SocketAddr, token: &str) -> Result<ControlClient, ControlError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|source| ControlError::Connect { addr, source })?;
        Ok(ControlClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            token: token.to_string(),
            initiator: None,
        })
    }

    /// Names the machine that initiates what follows (delegated migrations).
    pub fn initiator(mut self, name: &str) -> Self {
        self.initiator = Some(name.to_string());
        self
    }

    /// Sends a typed request and reads its typed answer.
    pub fn request<T: serde::de::DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<T, ControlError> {
        let value =
            serde_json::to_value(request).map_err(|e| ControlError::Answer(e.to_string()))?;
        let answer = self.call(value)?;
        serde_json::from_value(answer.clone())
            .map_err(|e| ControlError::Answer(format!("{e}: {answer}")))
    }

    /// The VMs on the host.
    pub fn list_vms(&mut self) -> Result<Vec<crate::host::VmSummary>, ControlError> {
        self.request(&Request::ListVms)
    }

    /// A VM's configuration (name or id).
    pub fn vm_config(&mut self, vm: &str) -> Result<VmConfig, ControlError> {
        self.request(&Request::VmConfig { vm: vm.to_string() })
    }

    /// Would the host accept this VM now? (Read-only; see [`Request::Preflight`].)
    pub fn preflight(&mut self, vm: &VmConfig) -> Result<crate::host::Preflight, ControlError> {
        self.request(&Request::Preflight { vm: vm.clone() })
    }

    /// The host's configuration, secrets left out.
    pub fn settings(&mut self) -> Result<crate::config::HostConfig, ControlError> {
        self.request(&Request::Settings)
    }

    /// The host's ledger: VMs in doubt, moved away, arrived.
    pub fn ledger(&mut self) -> Result<Vec<crate::ledger::Entry>, ControlError> {
        self.request(&Request::Ledger)
    }

    /// Changes a host setting.
    pub fn set(&mut self, setting: Setting) -> Result<(), ControlError> {
        self.request::<Value>(&Request::Set(setting)).map(|_| ())
    }

    /// Starts a migration (to `address`, or the destination's `peers`
    /// entry); its id.
    pub fn migrate(
        &mut self,
        vm: &str,
        destination: &str,
        address: Option<SocketAddr>,
        params: crate::report::MigrationParams,
    ) -> Result<String, ControlError> {
        #[derive(Deserialize)]
        struct Started {
            id: String,
        }
        let started: Started = self.request(&Request::Migrate {
            vm: vm.to_string(),
            destination: destination.to_string(),
            address,
            params,
        })?;
        Ok(started.id)
    }

    /// A migration's progress (`query-migrate`).
    pub fn query(&mut self, id: &str) -> Result<crate::report::MigrationInfo, ControlError> {
        self.request(&Request::Query { id: id.to_string() })
    }

    /// Waits for a migration to end; its report.
    pub fn wait(&mut self, id: &str) -> Result<crate::report::MigrationReport, ControlError> {
        self.request(&Request::Wait { id: id.to_string() })
    }

    /// Sends a request (`{"op": …, …}`) and returns its result.
    pub fn call(&mut self, mut request: Value) -> Result<Value, ControlError> {
        request["token"] = json!(self.token);
        if let Some(i) = &self.initiator {
            request["initiator"] = json!(i);
        }
        writeln!(self.writer, "{request}")?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| ControlError::Answer(format!("{e}: {line}")))?;
        if answer["ok"] == json!(true) {
            Ok(answer["result"].clone())
        } else {
            let error = serde_json::from_value::<MigrationError>(answer["error"].clone())
                .unwrap_or_else(|_| {
                    MigrationError::new(ErrorKind::Protocol, answer["error"].to_string())
                });
            Err(ControlError::Host(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn settings_from_the_words_an_admin_types() {
        let cases: &[(&str, &[&str], serde_json::Value)] = &[
            (
                "migration_enabled",
                &["off"],
                json!({"setting": "migration_enabled", "value": false}),
            ),
            (
                "numa-spanning",
                &["TRUE"],
                json!({"setting": "numa_spanning", "value": true}),
            ),
            (
                "rename_switch",
                &["External", "LAN 2"],
                json!({"setting": "rename_switch", "from": "External", "to": "LAN 2"}),
            ),
            (
                "listener",
                &["closed"],
                json!({"setting": "listener", "open": false}),
            ),
            (
                "max_migrations",
                &["4"],
                json!({"setting": "max_migrations", "value": 4}),
            ),
            (
                "auth_mode",
                &["Kerberos"],
                json!({"setting": "auth_mode", "mode": "delegated"}),
            ),
            (
                "shared_storage",
                &["/srv/csv", "create"],
                json!({"setting": "shared_storage", "path": "/srv/csv", "create": true, "subdir": null}),
            ),
        ];
        for (name, values, want) in cases {
            let got = Setting::from_words(name, &words(values)).unwrap();
            assert_eq!(&serde_json::to_value(got).unwrap(), want, "{name}");
        }
        for (name, values, says) in [
            ("migration_enabled", &["maybe"][..], "true|false"),
            ("max_migrations", &["-1"][..], "N"),
            ("rename_switch", &["External"][..], "FROM TO"),
            ("listener", &[][..], "open|closed"),
            ("colour", &["red"][..], "the settings are migration_enabled"),
        ] {
            let error = Setting::from_words(name, &words(values)).unwrap_err();
            assert!(error.contains(says), "{name}: {error}");
        }
    }
}
