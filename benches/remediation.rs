//! Failure → verified successful retry, end to end, on real processes:
//! three `relive host`s on loopback (a 256 MiB VM with a dirtying
//! workload), `relive serve` reading their event logs from a watched
//! folder with the remediation engine in `auto` mode. Each round migrates
//! the VM to a host too small for it (`destination-out-of-memory`, an
//! `auto`-class cause retried to another node); relive detects it, decides,
//! retries to the host that passes pre-flight and verifies the retry from
//! the events. The phases come from the hosts' event logs and the audit
//! log's timestamps (one clock: this machine's):
//!
//! - detection: the failure event → the plan line (incident decided),
//! - decision: plan → the retry starts (checks, pre-flight of candidates),
//! - fix: none for this cause (the retry elsewhere is the remedy),
//! - migration: the retry's start → its end,
//! - verification: the retry's end → the incident resolved by its events.
//!
//! The same-run baseline is the bare migration of the same VM between the
//! same hosts with `relive migrate` (what the migration part costs with no
//! relive around it), interleaved with the rounds.
//!
//! `cargo bench --bench remediation` (RELIVE_BENCH_ROUNDS, default 5).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relive");
const SECRET: &str = "bench-host-secret-0123456789";

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn relive(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run relive")
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit(data: &Path) -> Vec<Value> {
    serde_json::from_slice(&relive(data, &["actions", "--json"]).stdout).unwrap_or_default()
}

fn at(v: &Value) -> DateTime<Utc> {
    v["at"].as_str().unwrap().parse().unwrap()
}

/// The newest 21502 of `vm` in a host's event log.
fn failure_time(log: &Path, vm: &str) -> DateTime<Utc> {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["winlog"]["event_id"] == 21502
                && e["message"].as_str().is_some_and(|m| m.contains(vm))
        })
        .map(|e| e["@timestamp"].as_str().unwrap().parse().unwrap())
        .max()
        .expect("a failure event")
}

struct Phases {
    detection: f64,
    decision: f64,
    migration: f64,
    verification: f64,
    total: f64,
}

fn median_range(v: &mut [f64]) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{:.2} s ({:.2}–{:.2})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

fn main() {
    let rounds: usize = std::env::var("RELIVE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    let names = ["HV01", "HV02", "HV03"];
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let mut procs = Procs(Vec::new());
    let mut hosts_toml = String::new();
    for (i, name) in names.iter().enumerate() {
        let mut text = format!(
            "name = \"{name}\"\nlisten = \"127.0.0.1:{}\"\ncontrol = \"127.0.0.1:{}\"\n\
             state_dir = \"{}\"\nevent_log = \"{}/{name}/events.ndjson\"\nmetrics_log = \"{}/{name}/migrations.ndjson\"\n\
             memory_mib = {}\n",
            ports[i].0,
            ports[i].1,
            dir.path().join(format!("{name}-state")).display(),
            logs.display(),
            logs.display(),
            if *name == "HV03" { 128 } else { 4096 },
        );
        if *name == "HV01" {
            text.push_str(
                "[[vm]]\nname = \"BENCH1\"\nmemory_mib = 256\nfill_mib = 128\n\
                 workload = { pages = 4096, rate = 20000 }\n",
            );
        }
        text.push_str("[peers]\n");
        for (j, peer) in names.iter().enumerate() {
            if j != i {
                text.push_str(&format!("{peer} = \"127.0.0.1:{}\"\n", ports[j].0));
            }
        }
        text.push_str(&format!(
            "[auth]\ndefault_secret = \"{SECRET}\"\ncontrol_token = \"{SECRET}\"\n"
        ));
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        procs.0.push(
            Command::new(BIN)
                .args(["host", "--config"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        hosts_toml.push_str(&format!(
            "{name} = {{ control = \"127.0.0.1:{}\", token = \"{SECRET}\" }}\n",
            ports[i].1
        ));
    }
    for (_, c) in &ports {
        wait_listening(format!("127.0.0.1:{c}").parse().unwrap());
    }
    let config = dir.path().join("relive.toml");
    std::fs::write(
        &config,
        format!(
            "[receivers.agent]\nlisten = \"127.0.0.1:0\"\n[receivers.syslog]\nenabled = false\n\
             [receivers.es_bulk]\nenabled = false\n[receivers.otlp]\nenabled = false\n\
             [receivers.lumberjack]\nenabled = false\n\
             [receivers.watch]\npaths = [\"{}/**/*.ndjson\"]\n\
             [remediation]\nmode = \"auto\"\nverify_deadline_s = 60\n[remediation.hosts]\n{hosts_toml}",
            logs.display()
        ),
    )
    .unwrap();
    let mut serve = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["serve", "--http-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    procs.0.push(serve);

    let control = |host: &str| {
        let i = names.iter().position(|n| *n == host).unwrap();
        format!("127.0.0.1:{}", ports[i].1)
    };
    let migrate = |from: &str, to: &str| {
        let c = control(from);
        relive(
            &data,
            &[
                "migrate",
                "BENCH1",
                "--to",
                to,
                "--token",
                SECRET,
                "--control",
                &c,
                "--json",
            ],
        )
    };
    let mut phases = Vec::new();
    let mut baseline = Vec::new();
    // The VM sits on `at`; the other big host is `other`.
    let (mut at_host, mut other) = ("HV01", "HV02");
    for round in 0..rounds {
        // Baseline: the bare migration there and back (same VM, hosts, clock).
        for (from, to) in [(at_host, other), (other, at_host)] {
            let start = Instant::now();
            let out = migrate(from, to);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            baseline.push(start.elapsed().as_secs_f64());
        }
        // relive: a failure it must repair.
        let before = audit(&data).len();
        let out = migrate(at_host, "HV03");
        assert!(!out.status.success(), "HV03 is too small");
        let failed_at = failure_time(&logs.join(at_host).join("events.ndjson"), "BENCH1");
        let deadline = Instant::now() + Duration::from_secs(120);
        let lines = loop {
            let all = audit(&data);
            let new: Vec<Value> = all.into_iter().skip(before).collect();
            if new.iter().any(|l| {
                l["key"].is_null() && matches!(l["what"].as_str(), Some("verified" | "escalated"))
            }) {
                break new;
            }
            assert!(Instant::now() < deadline, "round {round}: no end: {new:#?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let find = |what: &str, key_part: &str| {
            lines
                .iter()
                .find(|l| {
                    l["what"] == what && l["key"].as_str().is_some_and(|k| k.contains(key_part))
                })
                .unwrap_or_else(|| panic!("round {round}: no {what} {key_part}: {lines:#?}"))
        };
        let planned = lines.iter().find(|l| l["what"] == "planned").unwrap();
        let retry_start = find("started", "/retry/1/");
        let retried = find("retried", "/retry/1/");
        let verified = find("verified", "/verify-retry/");
        let secs =
            |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap() as f64 / 1e6;
        phases.push(Phases {
            detection: secs(failed_at, at(planned)),
            decision: secs(at(planned), at(retry_start)),
            migration: secs(at(retry_start), at(retried)),
            verification: secs(at(retried), at(verified)),
            total: secs(failed_at, at(verified)),
        });
        std::mem::swap(&mut at_host, &mut other);
        eprintln!(
            "round {round}: total {:.2} s (detect {:.2}, decide {:.2}, migrate {:.2}, verify {:.2})",
            phases[round].total,
            phases[round].detection,
            phases[round].decision,
            phases[round].migration,
            phases[round].verification
        );
    }
    let col = |f: fn(&Phases) -> f64| median_range(&mut phases.iter().map(f).collect::<Vec<_>>());
    println!("failure -> verified retry, 256 MiB VM with a dirtying workload, destination-out-of-memory (auto, other-node), {rounds} rounds, median (min–max):");
    println!("  detection    {}", col(|p| p.detection));
    println!("  decision     {}", col(|p| p.decision));
    println!("  fix          none (the retry elsewhere is the remedy)");
    println!("  migration    {}", col(|p| p.migration));
    println!("  verification {}", col(|p| p.verification));
    println!("  total        {}", col(|p| p.total));
    println!(
        "  baseline: the bare `relive migrate` of the same VM between the same hosts, {} runs interleaved: {}",
        baseline.len(),
        median_range(&mut baseline)
    );
}
