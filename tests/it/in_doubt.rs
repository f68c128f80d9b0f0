//! A VM never runs on two hosts: real `relive host` processes, a proxy in
//! the migration path that loses the answer to `Commit` and then makes the
//! destination unreachable, hosts killed with SIGKILL at the worst moments.
//! A sampler reads both hosts' VM lists every 50 ms through their control
//! APIs for the whole test and fails it if the VM ever runs on both.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{free_port, relive};

const PASS: u8 = 0;
/// Forward `Commit`, then drop everything both ways (the answer is lost,
/// the destination unreachable).
const CUT_AFTER_COMMIT: u8 = 1;
const CUT: u8 = 2;

/// A TCP proxy in front of the destination's migration port.
struct Proxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    commits: Arc<Mutex<u32>>,
}

impl Proxy {
    fn start(upstream: SocketAddr, mode: u8) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(mode));
        let commits = Arc::new(Mutex::new(0));
        let (m, c) = (mode.clone(), commits.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if m.load(Ordering::SeqCst) == CUT {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (m1, m2, c1) = (m.clone(), m.clone(), c.clone());
                let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || forward_frames(client, server, &m1, &c1));
                std::thread::spawn(move || copy_back(server2, client2, &m2));
            }
        });
        Proxy {
            addr,
            mode,
            commits,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

/// Source → destination, frame by frame: after a `Commit` (in
/// CUT_AFTER_COMMIT) nothing more passes either way.
fn forward_frames(client: TcpStream, mut server: TcpStream, mode: &AtomicU8, commits: &Mutex<u32>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut body = Vec::new();
    loop {
        if mode.load(Ordering::SeqCst) == CUT {
            break;
        }
        let Ok(Some(command)) = migrate_core::protocol::read_frame(&mut reader, &mut body) else {
            break;
        };
        let commit = command == migrate_core::protocol::Command::Commit;
        if commit && mode.load(Ordering::SeqCst) == CUT_AFTER_COMMIT {
            // Cut first, so the answer cannot come back, then let the
            // destination have the Commit.
            mode.store(CUT, Ordering::SeqCst);
        }
        if migrate_core::protocol::write_frame(&mut server, command, &[&body]).is_err() {
            break;
        }
        if commit {
            *commits.lock().unwrap() += 1;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = server.shutdown(std::net::Shutdown::Write);
}

fn copy_back(mut server: TcpStream, mut client: TcpStream, mode: &AtomicU8) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if mode.load(Ordering::SeqCst) == CUT || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = server.shutdown(std::net::Shutdown::Both);
}

struct Lab {
    dir: tempfile::TempDir,
    hv01: PathBuf,
    hv02: PathBuf,
    control1: SocketAddr,
    control2: SocketAddr,
    migration2: SocketAddr,
    procs: Vec<Child>,
    /// `relive migrate` clients.
    clients: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.procs.iter_mut().chain(self.clients.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_host(config: &Path, fault: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relive"));
    command
        .args(["host", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(fault) = fault {
        command.env("RELIVE_FAULT", fault);
    }
    command.spawn().expect("start relive host")
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ADFS1's state on the host behind `control` (None: not there, or the
/// host is down).
fn vm_state(control: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&control, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut writer = stream.try_clone().ok()?;
    writeln!(
        writer,
        "{}",
        serde_json::json!({"token": crate::HOST_SECRET, "op": "list_vms"})
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let answer: serde_json::Value = serde_json::from_str(&line).ok()?;
    answer["result"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == "ADFS1")
        .and_then(|v| v["state"].as_str().map(str::to_string))
}

/// Samples both hosts until stopped; fails on the first moment both run
/// the VM. Returns every (source state, destination state) seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Option<String>, Option<String>)>>,
}

fn running(state: &Option<String>) -> bool {
    matches!(state.as_deref(), Some("running" | "migrating"))
}

impl Sampler {
    fn start(source: SocketAddr, destination: SocketAddr) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen: Vec<(Option<String>, Option<String>)> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let s = vm_state(source);
                let d = vm_state(destination);
                assert!(
                    !(running(&s) && running(&d)),
                    "ADFS1 runs on both hosts: source {s:?}, destination {d:?}"
                );
                if seen.last() != Some(&(s.clone(), d.clone())) {
                    seen.push((s, d));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<(Option<String>, Option<String>)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("at most one copy ever ran")
    }
}

/// HV01 runs ADFS1 and reaches HV02 through `proxy` (set later).
fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let (m1, c1, m2, c2) = (free_port(), free_port(), free_port(), free_port());
    let hv02 = dir.path().join("hv02.toml");
    std::fs::write(
        &hv02,
        format!(
            "name = \"HV02\"\nlisten = \"127.0.0.1:{m2}\"\ncontrol = \"127.0.0.1:{c2}\"\n\
             state_dir = \"{}/HV02-state\"\nevent_log = \"{}/HV02-events.ndjson\"\n{}",
            dir.path().display(),
            dir.path().display(),
            crate::host_auth()
        ),
    )
    .unwrap();
    Lab {
        hv01: dir.path().join("hv01.toml"),
        hv02,
        control1: format!("127.0.0.1:{c1}").parse().unwrap(),
        control2: format!("127.0.0.1:{c2}").parse().unwrap(),
        migration2: format!("127.0.0.1:{m2}").parse().unwrap(),
        procs: Vec::new(),
        clients: Vec::new(),
        dir,
    }
    .with_source(m1)
}

impl Lab {
    fn with_source(self, m1: u16) -> Lab {
        // The proxy address is written once it exists (`route_through`).
        std::fs::write(self.dir.path().join("m1"), m1.to_string()).unwrap();
        self
    }

    fn route_through(&self, proxy: &Proxy) {
        let m1 = std::fs::read_to_string(self.dir.path().join("m1")).unwrap();
        std::fs::write(
            &self.hv01,
            format!(
                "name = \"HV01\"\nlisten = \"127.0.0.1:{m1}\"\ncontrol = \"{}\"\n\
                 state_dir = \"{d}/HV01-state\"\nevent_log = \"{d}/HV01-events.ndjson\"\n\
                 [peers]\nHV02 = \"{}\"\n\
                 [[vm]]\nname = \"ADFS1\"\nmemory_mib = 32\nfill_mib = 16\n\
                 workload = {{ pages = 1024, rate = 2000 }}\n{}",
                self.control1,
                proxy.addr,
                crate::host_auth(),
                d = self.dir.path().display()
            ),
        )
        .unwrap();
    }

    fn start_source(&mut self) {
        self.procs.push(spawn_host(&self.hv01, None));
        wait_listening(self.control1);
    }

    fn start_destination(&mut self, fault: Option<&str>) {
        self.procs.push(spawn_host(&self.hv02, fault));
        wait_listening(self.control2);
    }

    /// Starts `relive migrate` in the background (it waits for the end);
    /// returns its index in `clients`.
    fn migrate(&mut self) -> usize {
        self.clients.push(
            Command::new(env!("CARGO_BIN_EXE_relive"))
                .args([
                    "migrate",
                    "ADFS1",
                    "--to",
                    "HV02",
                    "--token",
                    crate::HOST_SECRET,
                    "--control",
                ])
                .arg(self.control1.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        self.clients.len() - 1
    }

    fn events(&self, host: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{host}-events.ndjson")))
            .unwrap_or_default()
    }

    fn ledger(&self, host: &str) -> String {
        let dir = self.dir.path().join(format!("{host}-state/ledger"));
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

fn wait_for(limit: Duration, what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_9(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn the_commit_answer_lost_and_the_destination_unreachable_past_every_timeout_never_runs_the_vm_twice(
) {
    let mut lab = lab();
    let proxy = Proxy::start(lab.migration2, CUT_AFTER_COMMIT);
    lab.route_through(&proxy);
    lab.start_destination(None);
    lab.start_source();
    let sampler = Sampler::start(lab.control1, lab.control2);
    let migrate = lab.migrate();
    wait_for(
        Duration::from_secs(30),
        "the commit to pass the proxy",
        || *proxy.commits.lock().unwrap() == 1,
    );
    // Longer than any timeout the source has (30 s for the answer to
    // Commit, and what used to be a 10 s grace before resuming).
    let cut_at = Instant::now();
    wait_for(
        Duration::from_secs(20),
        "the source to report the doubt",
        || vm_state(lab.control1).as_deref() == Some("in_doubt"),
    );
    while cut_at.elapsed() < Duration::from_secs(45) {
        assert_eq!(
            vm_state(lab.control1).as_deref(),
            Some("in_doubt"),
            "still paused, in doubt"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        lab.events("HV01").contains("the outcome is in doubt"),
        "a Hyper-V-shaped event says so"
    );
    // The destination is reachable again: it says it committed; the source
    // discards its copy.
    proxy.set(PASS);
    wait_for(Duration::from_secs(20), "the source to settle", || {
        vm_state(lab.control1).is_none()
    });
    let seen = sampler.finish();
    assert_eq!(vm_state(lab.control2).as_deref(), Some("running"));
    assert!(
        lab.ledger("HV01").contains("\"moved\""),
        "{}",
        lab.ledger("HV01")
    );
    assert!(lab.ledger("HV02").contains("\"arrived\""));
    assert!(
        seen.iter().any(|(s, _)| s.as_deref() == Some("in_doubt")),
        "{seen:?}"
    );
    let status = lab.clients[migrate].wait().unwrap();
    assert!(
        status.success(),
        "relive migrate reports the migration completed"
    );
}

#[test]
fn the_destination_killed_right_after_resuming_never_runs_the_vm_twice() {
    let mut lab = lab();
    let proxy = Proxy::start(lab.migration2, PASS);
    lab.route_through(&proxy);
    lab.start_destination(Some("destination-after-resume"));
    lab.start_source();
    let sampler = Sampler::start(lab.control1, lab.control2);
    lab.migrate();
    // The destination aborts right after the VM resumed there, before it
    // answers: the source cannot know, and waits.
    wait_for(Duration::from_secs(40), "the source to be in doubt", || {
        vm_state(lab.control1).as_deref() == Some("in_doubt")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(vm_state(lab.control1).as_deref(), Some("in_doubt"));
    // The destination comes back: its ledger says it committed, so the
    // source discards its (older) copy rather than resume it.
    let mut dead = lab.procs.remove(0);
    let _ = dead.wait();
    lab.start_destination(None);
    wait_for(Duration::from_secs(20), "the source to settle", || {
        vm_state(lab.control1).is_none()
    });
    std::thread::sleep(Duration::from_secs(1));
    let seen = sampler.finish();
    assert!(
        lab.ledger("HV01").contains("\"moved\""),
        "{}",
        lab.ledger("HV01")
    );
    assert!(lab.ledger("HV02").contains("\"arrived\""));
    // It ran on HV02 until HV02 died; now it runs nowhere until an admin starts it.
    assert_eq!(vm_state(lab.control2), None);
    assert!(
        seen.iter().any(|(s, _)| s.as_deref() == Some("in_doubt")),
        "{seen:?}"
    );
    assert!(lab.events("HV01").contains("confirmed that it committed"));
}

#[test]
fn the_source_killed_while_in_doubt_does_not_start_the_vm_again_until_settled() {
    let mut lab = lab();
    let proxy = Proxy::start(lab.migration2, CUT_AFTER_COMMIT);
    lab.route_through(&proxy);
    lab.start_destination(None);
    lab.start_source();
    let sampler = Sampler::start(lab.control1, lab.control2);
    lab.migrate();
    wait_for(
        Duration::from_secs(30),
        "the commit to pass the proxy",
        || *proxy.commits.lock().unwrap() == 1,
    );
    wait_for(Duration::from_secs(40), "the source to be in doubt", || {
        vm_state(lab.control1).as_deref() == Some("in_doubt")
    });
    let mut source = lab.procs.pop().unwrap();
    kill_9(&mut source);
    // Restarted with ADFS1 in its configuration: the ledger keeps it from
    // starting while the destination still cannot be asked.
    lab.start_source();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(vm_state(lab.control1).as_deref(), Some("in_doubt"));
    proxy.set(PASS);
    wait_for(
        Duration::from_secs(20),
        "the restarted source to settle",
        || vm_state(lab.control1).is_none(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let seen = sampler.finish();
    assert_eq!(vm_state(lab.control2).as_deref(), Some("running"));
    assert!(lab.ledger("HV01").contains("\"moved\""));
    assert!(
        seen.iter().any(|(s, _)| s.as_deref() == Some("in_doubt")),
        "{seen:?}"
    );
    // A second restart still does not start it: it moved.
    let mut source = lab.procs.pop().unwrap();
    kill_9(&mut source);
    lab.start_source();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vm_state(lab.control1), None);
}

#[test]
fn an_operator_settles_a_doubt_with_a_command_that_says_what_it_does() {
    let mut lab = lab();
    let proxy = Proxy::start(lab.migration2, CUT_AFTER_COMMIT);
    lab.route_through(&proxy);
    lab.start_destination(None);
    lab.start_source();
    let sampler = Sampler::start(lab.control1, lab.control2);
    lab.migrate();
    wait_for(Duration::from_secs(40), "the source to be in doubt", || {
        vm_state(lab.control1).as_deref() == Some("in_doubt")
    });
    let data = lab.dir.path().join("data");
    let out = relive(
        &data,
        &[
            "resolve",
            "ADFS1",
            "--destination-runs",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &lab.control1.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Discarding the paused copy of ADFS1"),
        "{text}"
    );
    wait_for(Duration::from_secs(10), "the copy to be discarded", || {
        vm_state(lab.control1).is_none()
    });
    let seen = sampler.finish();
    assert_eq!(vm_state(lab.control2).as_deref(), Some("running"));
    assert!(lab.events("HV01").contains("An administrator resolved"));
    assert!(seen.len() >= 2);
    // Nothing left to settle: the command says so.
    let again = relive(
        &data,
        &[
            "resolve",
            "ADFS1",
            "--resume-here",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &lab.control1.to_string(),
        ],
    );
    assert!(!again.status.success());
}

/// `relive serve` with remediation on, reading the source's events only
/// (the destination's agent is down): the in-doubt failure is an open
/// incident, and the engine checks, fixes and retries nothing while the VM
/// is in doubt; it says why in the audit log.
#[test]
fn the_remediation_engine_never_retries_a_migration_in_doubt() {
    let mut lab = lab();
    let proxy = Proxy::start(lab.migration2, CUT_AFTER_COMMIT);
    lab.route_through(&proxy);
    lab.start_destination(None);
    lab.start_source();
    let sampler = Sampler::start(lab.control1, lab.control2);
    let data = lab.dir.path().join("data");
    let relive_toml = lab.dir.path().join("relive.toml");
    std::fs::write(
        &relive_toml,
        format!(
            "[receivers.agent]\nlisten = \"127.0.0.1:0\"\n[receivers.syslog]\nenabled = false\n\
             [receivers.es_bulk]\nenabled = false\n[receivers.otlp]\nenabled = false\n\
             [receivers.lumberjack]\nenabled = false\n[http]\nenabled = false\n\
             [receivers.watch]\npaths = [\"{}/HV01-events.ndjson\"]\n\
             [remediation]\nmode = \"auto\"\nbackoff_initial_s = 0.5\nbackoff_max_s = 1.0\n\
             [remediation.hosts]\n\
             HV01 = {{ control = \"{}\", token = \"{secret}\" }}\n\
             HV02 = {{ control = \"{}\", token = \"{secret}\" }}\n",
            lab.dir.path().display(),
            lab.control1,
            lab.control2,
            secret = crate::HOST_SECRET
        ),
    )
    .unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(&data)
        .args(["serve", "--config"])
        .arg(&relive_toml)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    lab.procs.push(serve);
    lab.migrate();
    wait_for(Duration::from_secs(40), "the source to be in doubt", || {
        vm_state(lab.control1).as_deref() == Some("in_doubt")
    });
    let audit = || -> Vec<serde_json::Value> {
        serde_json::from_slice(&relive(&data, &["actions", "--json"]).stdout).unwrap_or_default()
    };
    let start = Instant::now();
    let end = loop {
        if let Some(end) = audit().into_iter().find(|l| {
            l["key"].is_null()
                && matches!(
                    l["what"].as_str(),
                    Some("verified" | "escalated" | "skipped")
                )
        }) {
            break end;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the remediation did not end: {:#?}\nincidents: {}\nevents: {}",
            audit(),
            String::from_utf8_lossy(&relive(&data, &["incidents", "--json"]).stdout),
            lab.events("HV01")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines = audit();
    assert_eq!(end["what"], "escalated", "{lines:#?}");
    assert!(
        end["detail"].as_str().unwrap().contains("in doubt"),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l["what"] == "retried"
            || l["detail"].as_str().unwrap_or("").starts_with("migrate ")),
        "nothing was retried: {lines:#?}"
    );
    assert_eq!(vm_state(lab.control1).as_deref(), Some("in_doubt"));
    sampler.finish();
}
