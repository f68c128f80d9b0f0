//! Alerting, measured.
//!
//! 1. `latency`: the real `relive serve` (this build's binary) with email
//!    alerts to an SMTP sink in this process, grouping waits at zero. Each
//!    trial posts one complete failure chain of a new VM to `_bulk`; the
//!    clock starts when the collector's `200` (the acknowledgement: the
//!    events are durable) is read and stops when the sink reads the end of
//!    the message's DATA (the moment it would answer `250`). Trials run one
//!    at a time, so the n-th message belongs to the n-th trial; each
//!    chain carries the present time, as a live failure does.
//! 2. `throughput`: notifications per second through one SMTP connection.
//!    relive: the alerting stage in process, fed N opened incidents (each
//!    its own group) through the change log; time until the sink has read
//!    all N messages. Baseline: a plain lettre send loop over the same
//!    pooled transport settings, building the same N messages (the same
//!    renderer) and sending them. The difference is what relive adds per
//!    notification: the durable outbox (one fsync when decided, one when
//!    accepted), the journal and the dispatch. Runs alternate; medians
//!    with the range.
//!
//! Run: `cargo bench --bench alerts` (release); `-- latency` or
//! `-- throughput` for one. `RELIVE_BENCH_TRIALS` (latency, default 40),
//! `RELIVE_BENCH_MESSAGES` (throughput, default 300).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use correlate::changes::{ChangeKind, ChangeLog, IncidentChange};
use correlate::Incident;
use remediate::alert::{AlertContext, Alerter, AlertsConfig};

/// A minimal SMTP server: answers every command with success and records
/// when each message's DATA ends.
struct Sink {
    port: u16,
    accepted: Arc<Mutex<Vec<Instant>>>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let seen = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || session(stream, &seen));
            }
        });
        Sink { port, accepted }
    }

    fn count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    fn wait(&self, n: usize, limit: Duration) -> Option<Instant> {
        let start = Instant::now();
        loop {
            if let Some(t) = self.accepted.lock().unwrap().get(n - 1) {
                return Some(*t);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn session(stream: TcpStream, seen: &Mutex<Vec<Instant>>) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let _ = writer.write_all(b"220 sink ESMTP\r\n");
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 sink\r\n"
        } else if command.starts_with("DATA") {
            let _ = writer.write_all(b"354 go ahead\r\n");
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == b".\r\n" {
                    break;
                }
            }
            seen.lock().unwrap().push(Instant::now());
            b"250 accepted\r\n"
        } else if command.starts_with("QUIT") {
            let _ = writer.write_all(b"221 bye\r\n");
            return;
        } else {
            b"250 ok\r\n"
        };
        let _ = writer.write_all(reply);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn relive(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(data)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

const SEED: &str = "../shared/samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt";
const SEED_VM_ID: &str = "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7";

/// The seed chain as ECS lines for the VM `BENCHnnnn` with its own
/// records, moved to the present (a live failure: its events are the
/// newest the correlator has seen, as on a real collector).
fn chain(seed: &[String], n: u64) -> String {
    let time = |line: &str| {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        chrono::DateTime::parse_from_rfc3339(event["@timestamp"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let first = seed.iter().map(|l| time(l)).min().unwrap();
    let shift = chrono::Utc::now() - first;
    let mut body = String::new();
    for line in seed {
        let line = line
            .replace("ADFS1", &format!("BENCH{n:04}"))
            .replace(SEED_VM_ID, &format!("{n:08X}-0000-4000-8000-000000000000"));
        let mut event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(r) = event["winlog"]["record_id"].as_u64() {
            event["winlog"]["record_id"] = (r + n * 100_000).into();
        }
        let at = time(&line) + shift;
        event["@timestamp"] = at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into();
        body.push_str("{\"create\":{}}\n");
        body.push_str(&event.to_string());
        body.push('\n');
    }
    body
}

/// POSTs to `_bulk`; returns when the `200` has been read.
fn bulk(port: u16, body: &str) -> Instant {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /_bulk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    let at = Instant::now();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    at
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn serve(dir: &Path, smtp: u16) -> (Child, u16) {
    let port = free_port();
    let config = dir.join("relive.toml");
    std::fs::write(
        &config,
        format!(
            "[receivers.agent]\nlisten = \"127.0.0.1:{}\"\n[receivers.syslog]\nenabled = false\n\
             [receivers.es_bulk]\nlisten = \"127.0.0.1:{port}\"\n[receivers.otlp]\nenabled = false\n\
             [receivers.lumberjack]\nenabled = false\n\
             [alerts.email]\nsmtp = \"127.0.0.1:{smtp}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
             [alerts.route]\ngroup_wait = \"0s\"\ngroup_interval = \"0s\"\n",
            free_port()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(["serve", "--http-listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    (child, port)
}

fn latency() {
    let trials: u64 = std::env::var("RELIVE_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let seed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED);
    let out = relive(
        dir.path(),
        &["parse", "--json", seed_path.to_str().unwrap()],
    );
    let seed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let sink = Sink::start();
    let (mut child, port) = serve(dir.path(), sink.port);
    // One chain first, not counted: connection set-up, warm caches.
    bulk(port, &chain(&seed, 0));
    sink.wait(1, Duration::from_secs(30))
        .expect("the warm-up email");
    let mut ms = Vec::new();
    let mut timeouts = 0;
    for n in 1..=trials {
        let acked = bulk(port, &chain(&seed, n));
        let want = sink.count() + 1;
        match sink.wait(want, Duration::from_secs(20)) {
            Some(accepted) => ms.push(accepted.duration_since(acked).as_secs_f64() * 1000.0),
            None => timeouts += 1,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    ms.sort_by(f64::total_cmp);
    println!(
        "alert latency (collector ack → SMTP accepted, complete chain, group waits 0): \
         n={} timeouts={} p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms.len(),
        timeouts,
        pct(&ms, 0.5),
        pct(&ms, 0.9),
        pct(&ms, 0.99),
        ms[0],
        ms[ms.len() - 1]
    );
}

fn incidents(template: &Incident, n: usize) -> Vec<Incident> {
    (0..n)
        .map(|k| {
            let mut i = template.clone();
            i.id = format!("{k:016x}");
            i.vm_name = Some(format!("BENCH{k:04}"));
            i
        })
        .collect()
}

fn relive_run(template: &Incident, n: usize) -> f64 {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let config: AlertsConfig = toml::from_str(&format!(
        "[email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
         [route]\ngroup_wait = \"0s\"\ngroup_by = [\"...\"]\n",
        sink.port
    ))
    .unwrap();
    let alerter = Alerter::start(
        dir.path(),
        config.build().unwrap(),
        AlertContext::default(),
        pipeline::StageMetrics::new("alerts"),
    )
    .unwrap();
    let changes: Vec<IncidentChange> = incidents(template, n)
        .into_iter()
        .map(|i| IncidentChange::new(ChangeKind::Opened, i))
        .collect();
    let mut log = ChangeLog::open(dir.path()).unwrap();
    let start = Instant::now();
    log.append(&changes).unwrap();
    let last = sink
        .wait(n, Duration::from_secs(300))
        .expect("every message");
    let rate = n as f64 / last.duration_since(start).as_secs_f64();
    let stats = alerter.stop(Duration::from_secs(5)).unwrap();
    assert_eq!(
        stats.sent.load(std::sync::atomic::Ordering::Relaxed),
        n as u64,
        "relive sent them all"
    );
    assert_eq!(sink.count(), n);
    rate
}

fn lettre_run(template: &Incident, n: usize) -> f64 {
    use lettre::Transport;
    let sink = Sink::start();
    let transport = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(sink.port)
        .timeout(Some(Duration::from_secs(10)))
        .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(1))
        .build();
    let from: lettre::message::Mailbox = "relive@example.com".parse().unwrap();
    let to: Vec<lettre::message::Mailbox> = vec!["oncall@example.com".parse().unwrap()];
    let context = AlertContext::default();
    let start = Instant::now();
    for incident in incidents(template, n) {
        // The same message relive sends: one alert, rendered the same way.
        let alert = remediate::alert::Alert::from_incident(incident, chrono::Utc::now(), &context);
        let notification = remediate::alert::Notification::preview(alert, "http://127.0.0.1:7300");
        let message =
            remediate::alert::email::build_message(&notification, &from, &to, "example.com")
                .unwrap();
        transport.send(&message).unwrap();
    }
    let last = sink
        .wait(n, Duration::from_secs(300))
        .expect("every message");
    n as f64 / last.duration_since(start).as_secs_f64()
}

fn throughput() {
    let n: usize = std::env::var("RELIVE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    // A real incident: the seed's chain through `relive ingest`.
    let dir = tempfile::tempdir().unwrap();
    let seed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED);
    let out = relive(dir.path(), &["ingest", seed_path.to_str().unwrap()]);
    assert!(out.status.success());
    let template = correlate::IncidentStore::new(dir.path())
        .load()
        .unwrap()
        .remove(0);
    let mut ours = Vec::new();
    let mut base = Vec::new();
    for _ in 0..5 {
        ours.push(relive_run(&template, n));
        base.push(lettre_run(&template, n));
    }
    ours.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    println!(
        "alert throughput through one SMTP connection, {n} notifications × 5 runs alternating: \
         relive {:.0}/s (range {:.0}–{:.0}), plain lettre loop {:.0}/s (range {:.0}–{:.0}), ratio {:.2}",
        pct(&ours, 0.5),
        ours[0],
        ours[4],
        pct(&base, 0.5),
        base[0],
        base[4],
        pct(&ours, 0.5) / pct(&base, 0.5)
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "latency") {
        latency();
    }
    if all || which.iter().any(|w| w == "throughput") {
        throughput();
    }
}
