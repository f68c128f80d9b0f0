//! The demo's lab: the configurations of `examples/lab/` with ports the
//! system picks and paths under the data folder, and the child processes
//! (three `relive host`, one `relive serve`, an agent per host) started
//! from the relive binary and stopped in order.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use migrate_core::config::HostConfig;

use super::DemoError;

/// The lab's host configurations, as shipped in `examples/lab/`.
pub const HOST_TEMPLATES: [(&str, &str); 3] = [
    ("HV01", include_str!("../../examples/lab/hv01.toml")),
    ("HV02", include_str!("../../examples/lab/hv02.toml")),
    ("HV03", include_str!("../../examples/lab/hv03.toml")),
];

/// The lab's collector configuration, as shipped in `examples/lab/`.
pub const COLLECTOR_TEMPLATE: &str = include_str!("../../examples/lab/relive.toml");

/// One host of the lab.
#[derive(Debug, Clone)]
pub struct LabHost {
    /// Its name.
    pub name: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its migration listener.
    pub listen: SocketAddr,
    /// Its control API.
    pub control: SocketAddr,
    /// Its state folder.
    pub state: PathBuf,
    /// Its mount of the shared volume.
    pub shared_storage: PathBuf,
    /// Its event log.
    pub events: PathBuf,
    /// Its migration metrics.
    pub metrics: PathBuf,
}

impl LabHost {
    /// Where the host keeps its generated control token.
    pub fn token_file(&self) -> PathBuf {
        self.state.join("secrets").join("control-token")
    }

    /// Its control token (written by the host at its first start).
    pub fn token(&self) -> Result<String, String> {
        std::fs::read_to_string(self.token_file())
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("cannot read {}: {e}", self.token_file().display()))
    }
}

/// A child process and where its output goes.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Paths, addresses and child processes of one demo run.
pub struct Lab {
    /// The data folder.
    pub root: PathBuf,
    /// The hosts.
    pub hosts: Vec<LabHost>,
    /// The collector's data folder (`relive --data`).
    pub collector: PathBuf,
    /// Where alert emails are written (file transport).
    pub mail: PathBuf,
    /// Alert emails go to an SMTP server instead.
    pub smtp: bool,
    /// The collector's configuration.
    pub relive_toml: PathBuf,
    /// The web UI's address.
    pub http: SocketAddr,
    /// The agent receiver's address, once the collector runs.
    pub agent_receiver: Option<SocketAddr>,
    /// The web UI's token file, once the collector runs.
    pub tokens_file: Option<PathBuf>,
    agent_tokens: BTreeMap<String, String>,
    exe: PathBuf,
    rules: Vec<PathBuf>,
    procs: Vec<Proc>,
    stop: Arc<AtomicBool>,
}

/// Ports the system hands out now, all different.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn secret() -> Result<String, DemoError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| DemoError::step("prepare", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `text` readable by its owner only (it holds secrets).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    std::io::Write::write_all(&mut options.open(path)?, text.as_bytes())
}

/// What `relive serve` prints first.
#[derive(Debug, serde::Deserialize)]
struct Started {
    listening: BTreeMap<String, Option<String>>,
    tokens: Option<String>,
}

impl Lab {
    /// Writes every configuration under `root` (which must be new or
    /// empty): hosts from `examples/lab/` on free loopback ports, the
    /// collector with an agent token per host, email to `root/mail` or to
    /// `smtp` (server, recipient).
    pub fn prepare(
        root: &Path,
        exe: &Path,
        rules: &[PathBuf],
        smtp: Option<(&str, &str)>,
        stop: Arc<AtomicBool>,
    ) -> Result<Lab, DemoError> {
        let io = |e: std::io::Error| DemoError::step("prepare", e);
        if root.exists() && std::fs::read_dir(root).map_err(io)?.next().is_some() {
            return Err(DemoError::step(
                "prepare",
                format!(
                    "{} is not empty: the demo needs a new or empty folder (or no --data: a fresh temporary one)",
                    root.display()
                ),
            ));
        }
        std::fs::create_dir_all(root.join("logs")).map_err(io)?;
        let root = root.canonicalize().map_err(io)?;
        let ports = free_ports(2 * HOST_TEMPLATES.len() + 1).map_err(io)?;
        let mut configs = Vec::new();
        let mut hosts = Vec::new();
        for (i, (name, template)) in HOST_TEMPLATES.iter().enumerate() {
            let mut config: HostConfig = toml::from_str(template).map_err(|e| {
                DemoError::step("prepare", format!("examples/lab host {name}: {e}"))
            })?;
            let state = root.join("hosts").join(name);
            let shared = root.join("cluster-storage").join(name).join("Volume1");
            std::fs::create_dir_all(&shared).map_err(io)?;
            config.listen = Some(SocketAddr::from(([127, 0, 0, 1], ports[2 * i])));
            config.control = SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1]));
            config.state_dir = Some(state.clone());
            config.shared_storage = Some(shared.clone());
            config.auth.default_secret_file = Some(root.join("secrets").join("lab-secret"));
            config.event_log = None;
            config.metrics_log = None;
            hosts.push(LabHost {
                name: name.to_string(),
                config: root.join("hosts").join(format!("{name}.toml")),
                listen: config.listen.expect("set above"),
                control: config.control,
                events: config.event_log_path(),
                metrics: config.metrics_log_path(),
                state,
                shared_storage: shared,
            });
            configs.push(config);
        }
        std::fs::create_dir_all(root.join("hosts")).map_err(io)?;
        for (config, host) in configs.iter_mut().zip(&hosts) {
            config.peers = hosts
                .iter()
                .filter(|h| h.name != host.name)
                .map(|h| (h.name.clone(), h.listen))
                .collect();
            let text = toml::to_string(config)
                .map_err(|e| DemoError::step("prepare", format!("host {}: {e}", host.name)))?;
            std::fs::write(
                &host.config,
                format!(
                    "# Written by relive demo from examples/lab/{}.toml: its ports and paths.\n{text}",
                    host.name.to_ascii_lowercase()
                ),
            )
            .map_err(io)?;
        }
        let http = SocketAddr::from(([127, 0, 0, 1], ports[2 * HOST_TEMPLATES.len()]));
        let mut agent_tokens = BTreeMap::new();
        for host in &hosts {
            agent_tokens.insert(host.name.clone(), secret()?);
        }
        let mail = root.join("mail");
        let collector = root.join("collector");
        let relive_toml = root.join("relive.toml");
        let text = collector_config(&hosts, http, &agent_tokens, &mail, smtp)?;
        write_private(&relive_toml, &text).map_err(io)?;
        Ok(Lab {
            root,
            hosts,
            collector,
            mail,
            smtp: smtp.is_some(),
            relive_toml,
            http,
            agent_receiver: None,
            tokens_file: None,
            agent_tokens,
            exe: exe.to_path_buf(),
            rules: rules.to_vec(),
            procs: Vec::new(),
            stop,
        })
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .expect("a host of the lab")
    }

    fn stopped(&self, step: &'static str) -> Result<(), DemoError> {
        if self.stop.load(Ordering::Acquire) {
            Err(DemoError::Interrupted { step })
        } else {
            Ok(())
        }
    }

    fn spawn(
        &mut self,
        step: &'static str,
        name: &str,
        args: &[&std::ffi::OsStr],
        stdout: Stdio,
    ) -> Result<usize, DemoError> {
        let log = self.root.join("logs").join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|e| DemoError::step(step, e))?;
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(file)
            .env_remove("RELIVE_FAULT");
        // Its own process group: a Ctrl-C on the terminal reaches the demo
        // only, which stops the children in order (agents, collector, hosts).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|e| {
            DemoError::step(step, format!("cannot start {}: {e}", self.exe.display()))
        })?;
        tracing::debug!(name, pid = child.id(), "demo: started");
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
        });
        Ok(self.procs.len() - 1)
    }

    /// Fails `step` when the child `i` has exited, with the end of its log.
    fn alive(&mut self, step: &'static str, i: usize) -> Result<(), DemoError> {
        let proc = &mut self.procs[i];
        if let Ok(Some(status)) = proc.child.try_wait() {
            let tail = tail(&proc.log, 6);
            return Err(DemoError::step(
                step,
                format!(
                    "{} exited ({status}); the end of {}:\n{tail}",
                    proc.name,
                    proc.log.display()
                ),
            ));
        }
        Ok(())
    }

    /// Starts the three hosts and waits until each control API answers
    /// and its token is written.
    pub fn start_hosts(&mut self) -> Result<(), DemoError> {
        const STEP: &str = "start the hosts";
        let mut started = Vec::new();
        for host in self.hosts.clone() {
            let i = self.spawn(
                STEP,
                &host.name,
                &[
                    "host".as_ref(),
                    "--config".as_ref(),
                    host.config.as_os_str(),
                ],
                Stdio::null(),
            )?;
            started.push((i, host));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, host) in started {
            loop {
                self.stopped(STEP)?;
                self.alive(STEP, i)?;
                if TcpStream::connect_timeout(&host.control, Duration::from_millis(200)).is_ok()
                    && host.token().is_ok()
                {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(DemoError::step(
                        STEP,
                        format!(
                            "{}'s control API on {} did not answer within 30 s",
                            host.name, host.control
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Starts `relive serve` and reads the addresses it prints.
    pub fn start_collector(&mut self) -> Result<(), DemoError> {
        const STEP: &str = "start the collector";
        let mut args: Vec<std::ffi::OsString> =
            vec!["--data".into(), self.collector.clone().into()];
        for rule in &self.rules {
            args.push("--rules".into());
            args.push(rule.clone().into());
        }
        args.extend([
            "serve".into(),
            "--config".into(),
            self.relive_toml.clone().into(),
        ]);
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let i = self.spawn(STEP, "collector", &refs, Stdio::piped())?;
        let stdout = self.procs[i]
            .child
            .stdout
            .take()
            .ok_or_else(|| DemoError::step(STEP, "no standard output"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let rest = self.root.join("logs").join("collector.out");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            // The rest is kept, so the pipe never fills.
            if let Ok(mut file) = std::fs::File::create(rest) {
                let _ = std::io::copy(&mut reader, &mut file);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let line = loop {
            self.stopped(STEP)?;
            self.alive(STEP, i)?;
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    return Err(DemoError::step(
                        STEP,
                        "relive serve printed no start-up line within 60 s",
                    ))
                }
            }
        };
        let started: Started = serde_json::from_str(&line).map_err(|e| {
            DemoError::step(STEP, format!("relive serve's start-up line {line:?}: {e}"))
        })?;
        let addr = |key: &str| -> Result<SocketAddr, DemoError> {
            started
                .listening
                .get(key)
                .and_then(|a| a.as_deref())
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| {
                    DemoError::step(
                        STEP,
                        format!("relive serve did not say where {key} listens: {line}"),
                    )
                })
        };
        self.agent_receiver = Some(addr("agent")?);
        let http = addr("http")?;
        if http != self.http {
            return Err(DemoError::step(
                STEP,
                format!("the web UI listens on {http}, not {}", self.http),
            ));
        }
        self.tokens_file = started.tokens.map(PathBuf::from);
        Ok(())
    }

    /// Starts an agent per host, tailing its event log and metrics, and
    /// waits until each is connected.
    pub fn start_agents(&mut self) -> Result<(), DemoError> {
        const STEP: &str = "start the agents";
        let receiver = self
            .agent_receiver
            .ok_or_else(|| DemoError::step(STEP, "the collector is not running"))?;
        std::fs::create_dir_all(self.root.join("agents")).map_err(|e| DemoError::step(STEP, e))?;
        let mut started = Vec::new();
        for host in self.hosts.clone() {
            let state = self.root.join("agents").join(&host.name);
            let config = self.root.join("agents").join(format!("{}.toml", host.name));
            let mut table = toml::Table::new();
            table.insert("name".into(), host.name.clone().into());
            table.insert("collector".into(), receiver.to_string().into());
            table.insert("token".into(), self.agent_tokens[&host.name].clone().into());
            table.insert("state_dir".into(), state.display().to_string().into());
            table.insert("poll_ms".into(), 100.into());
            let mut watch = toml::Table::new();
            watch.insert(
                "paths".into(),
                toml::Value::Array(vec![
                    host.events.display().to_string().into(),
                    host.metrics.display().to_string().into(),
                ]),
            );
            table.insert("watch".into(), toml::Value::Array(vec![watch.into()]));
            let text = toml::to_string(&table).map_err(|e| DemoError::step(STEP, e))?;
            write_private(&config, &text).map_err(|e| DemoError::step(STEP, e))?;
            let name = format!("agent-{}", host.name);
            let i = self.spawn(
                STEP,
                &name,
                &["agent".as_ref(), "--config".as_ref(), config.as_os_str()],
                Stdio::null(),
            )?;
            started.push((i, state.join("status.json"), host.name));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, status, name) in started {
            loop {
                self.stopped(STEP)?;
                self.alive(STEP, i)?;
                let connected = std::fs::read(&status)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|s| s["connected"] == true);
                if connected {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(DemoError::step(
                        STEP,
                        format!("{name}'s agent did not connect to {receiver} within 30 s"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Every child still running, checked (a crash fails `step`).
    pub fn check_children(&mut self, step: &'static str) -> Result<(), DemoError> {
        for i in 0..self.procs.len() {
            self.alive(step, i)?;
        }
        Ok(())
    }

    /// The web UI's admin token.
    pub fn admin_token(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.tokens_file.as_ref()?).ok()?;
        let table: toml::Table = toml::from_str(&text).ok()?;
        table.get("admin_token")?.as_str().map(str::to_string)
    }

    /// Stops every child, newest first (agents, collector, hosts): SIGTERM,
    /// then SIGKILL after `grace`. The names of those that had to be killed.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<String> {
        let mut killed = Vec::new();
        while let Some(mut proc) = self.procs.pop() {
            if let Ok(Some(_)) = proc.child.try_wait() {
                continue;
            }
            #[cfg(unix)]
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&proc.child),
                rustix::process::Signal::TERM,
            );
            #[cfg(not(unix))]
            let _ = proc.child.kill();
            let deadline = Instant::now() + grace;
            loop {
                match proc.child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = proc.child.kill();
                        let _ = proc.child.wait();
                        killed.push(proc.name.clone());
                        break;
                    }
                }
            }
        }
        killed
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(10));
    }
}

/// The last `n` lines of a file, cleaned for the terminal.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {}", crate::display::clean(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The collector's relive.toml: `examples/lab/relive.toml` with the
/// demo's addresses, agents instead of the watched folder, and its mail.
fn collector_config(
    hosts: &[LabHost],
    http: SocketAddr,
    agent_tokens: &BTreeMap<String, String>,
    mail: &Path,
    smtp: Option<(&str, &str)>,
) -> Result<String, DemoError> {
    let bad = |e: &dyn std::fmt::Display| {
        DemoError::step("prepare", format!("examples/lab/relive.toml: {e}"))
    };
    let mut config: toml::Table = toml::from_str(COLLECTOR_TEMPLATE).map_err(|e| bad(&e))?;
    let table = |config: &mut toml::Table, key: &str| -> Result<toml::Table, DemoError> {
        match config.remove(key) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => Err(bad(&format!("[{key}] is not a table"))),
        }
    };
    // Agents ship each host's logs, as on real hosts.
    let mut receivers = table(&mut config, "receivers")?;
    receivers.remove("watch");
    let mut agent = toml::Table::new();
    agent.insert("listen".into(), "127.0.0.1:0".into());
    let tokens: toml::Table = agent_tokens
        .iter()
        .map(|(k, v)| (k.clone(), toml::Value::from(v.clone())))
        .collect();
    agent.insert("tokens".into(), tokens.into());
    receivers.insert("agent".into(), agent.into());
    config.insert("receivers".into(), receivers.into());
    let mut web = table(&mut config, "http")?;
    web.insert("listen".into(), http.to_string().into());
    config.insert("http".into(), web.into());
    let mut alerts = table(&mut config, "alerts")?;
    alerts.insert("external_url".into(), format!("http://{http}").into());
    let mut email = match alerts.remove("email") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    match smtp {
        Some((server, to)) => {
            email.remove("file_dir");
            email.insert("smtp".into(), server.into());
            email.insert("to".into(), toml::Value::Array(vec![to.into()]));
        }
        None => {
            email.insert("file_dir".into(), mail.display().to_string().into());
        }
    }
    alerts.insert("email".into(), email.into());
    config.insert("alerts".into(), alerts.into());
    let mut remediation = table(&mut config, "remediation")?;
    // Quick retries: the demo's failures are fixed in a second.
    remediation.insert("backoff_initial_s".into(), 0.5.into());
    remediation.insert("backoff_max_s".into(), 2.0.into());
    let access: toml::Table = hosts
        .iter()
        .map(|h| {
            let mut t = toml::Table::new();
            t.insert("control".into(), h.control.to_string().into());
            t.insert(
                "token_file".into(),
                h.token_file().display().to_string().into(),
            );
            (h.name.clone(), toml::Value::from(t))
        })
        .collect();
    remediation.insert("hosts".into(), access.into());
    config.insert("remediation".into(), remediation.into());
    let text = toml::to_string(&config).map_err(|e| bad(&e))?;
    Ok(format!(
        "# Written by relive demo from examples/lab/relive.toml: its addresses, agents, mail.\n{text}"
    ))
}
