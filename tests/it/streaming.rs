//! `relive serve` as a streaming pipeline, through the real binary: a
//! failure becomes an incident within seconds with no traffic after it,
//! and a `kill -9` at any point between the log and the incident store
//! loses nothing and doubles nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, relive, Procs};

const SEED: &str = "../shared/samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt";

/// The seed's chain as ECS JSON lines, from `relive parse --json`.
pub(crate) fn seed_lines(data: &Path) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED);
    let out = relive(data, &["parse", "--json", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub(crate) fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("relive.toml");
    let free = |_: u16| free_port();
    std::fs::write(
        &path,
        format!(
            "[receivers.agent]\nlisten = \"127.0.0.1:{}\"\n\
             [receivers.syslog]\ntcp = \"127.0.0.1:{}\"\nudp = \"127.0.0.1:{}\"\n\
             [receivers.es_bulk]\nlisten = \"127.0.0.1:{port}\"\n\
             [receivers.otlp]\nlisten = \"127.0.0.1:{}\"\n\
             [receivers.lumberjack]\nlisten = \"127.0.0.1:{}\"\n",
            free(0),
            free(1),
            free(2),
            free(3),
            free(4),
        ),
    )
    .unwrap();
    path
}

/// Starts `relive serve`; `fault` sets `RELIVE_FAULT` (a crash point).
pub(crate) fn serve(config: &Path, data: &Path, fault: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relive"));
    command
        .arg("--data")
        .arg(data)
        .args(["serve", "--http-listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(fault) = fault {
        command.env("RELIVE_FAULT", fault);
    }
    let mut child = command.spawn().expect("start relive serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    child
}

/// POSTs NDJSON to `_bulk`; Err when the server went away before answering.
pub(crate) fn bulk(port: u16, lines: &[String]) -> Result<String, std::io::Error> {
    let mut body = String::new();
    for line in lines {
        body.push_str("{\"create\":{}}\n");
        body.push_str(line);
        body.push('\n');
    }
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST /_bulk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if answer.starts_with("HTTP/1.1 200") {
        Ok(answer)
    } else {
        Err(std::io::Error::other(format!("not accepted: {answer}")))
    }
}

fn incidents(data: &Path) -> Vec<Value> {
    let out = relive(data, &["incidents", "--json"]);
    if !out.status.success() {
        return Vec::new();
    }
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Polls the incident store until `want` holds or `limit` passes; returns
/// the incidents and how long it took (None: timed out).
fn wait_incidents(
    data: &Path,
    limit: Duration,
    want: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, Option<Duration>) {
    let start = Instant::now();
    loop {
        let list = incidents(data);
        if want(&list) {
            return (list, Some(start.elapsed()));
        }
        if start.elapsed() > limit {
            return (list, None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_cause(list: &[Value], cause: &str, vm: &str) -> bool {
    list.iter()
        .any(|i| i["root_cause"] == cause && i["vm_name"] == vm)
}

fn indexed(data: &Path) -> usize {
    index::EventIndex::open(&data.join("index")).map_or(0, |index| index.len() as usize)
}

#[test]
fn the_seed_chain_posted_once_becomes_an_incident_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines = seed_lines(dir.path());
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let port = free_port();
    let cfg = config(dir.path(), port);
    let mut procs = Procs(vec![serve(&cfg, &data, None)]);
    bulk(port, &lines).expect("accepted");
    // Nothing else is sent.
    let (list, took) = wait_incidents(&data, Duration::from_secs(2), |l| {
        has_cause(l, "shared-storage-path-missing", "ADFS1")
    });
    assert!(took.is_some(), "no incident within 2 s: {list:#?}");
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["source_host"], "NODE-B");
    assert_eq!(list[0]["destination_host"], "NODE-A");
    // A lone 21502 for another VM, nothing after it: `unknown` once its
    // settle time (10 s) has passed on the wall clock.
    let lone = r#"{"@timestamp":"2026-12-01T03:00:00Z","host":{"name":"HV07"},"winlog":{"channel":"Microsoft-Windows-Hyper-V-High-Availability-Admin","provider_name":"Microsoft-Windows-Hyper-V-High-Availability","event_id":21502,"record_id":4711},"log":{"level":"error"},"message":"Live migration of 'Virtual Machine SQL7' failed."}"#;
    let sent = Instant::now();
    bulk(port, &[lone.to_string()]).expect("accepted");
    let (list, took) = wait_incidents(&data, Duration::from_secs(14), |l| {
        has_cause(l, "unknown", "SQL7")
    });
    assert!(
        took.is_some(),
        "no unknown incident within settle + 4 s: {list:#?}"
    );
    let after = sent.elapsed();
    assert!(
        after >= Duration::from_secs(9) && after <= Duration::from_secs(12),
        "decided {after:?} after the event (settle is 10 s)"
    );
    // SIGTERM: the pipeline drains and the process ends cleanly.
    let mut child = procs.0.pop().unwrap();
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert_eq!(indexed(&data), 8);
}

/// The incidents of an uninterrupted run over the seed chain.
fn reference(dir: &Path, lines: &[String]) -> Vec<Value> {
    let data = dir.join("reference");
    let port = free_port();
    let cfg_dir = dir.join("reference-cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let cfg = config(&cfg_dir, port);
    let _procs = Procs(vec![serve(&cfg, &data, None)]);
    bulk(port, lines).expect("accepted");
    let (list, took) = wait_incidents(&data, Duration::from_secs(5), |l| !l.is_empty());
    assert!(took.is_some());
    list
}

#[test]
fn kill_9_at_every_point_between_the_log_and_the_store_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = seed_lines(dir.path());
    let want = reference(dir.path(), &lines);
    assert_eq!(want.len(), 1);
    for point in [
        "after-wal-sync",
        "after-commit",
        "after-correlate",
        "during-store-write",
    ] {
        let case = dir.path().join(point);
        std::fs::create_dir_all(&case).unwrap();
        let data = case.join("data");
        let port = free_port();
        let cfg = config(&case, port);
        let mut crashing = serve(&cfg, &data, Some(point));
        // A shipper resends what was not acknowledged.
        let first = bulk(port, &lines);
        let status = wait_exit(&mut crashing, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{point}: the crash point was never reached"));
        assert!(!status.success(), "{point}: {status:?}");
        let _procs = Procs(vec![serve(&cfg, &data, None)]);
        if first.is_err() {
            bulk(port, &lines).expect("accepted after the restart");
        }
        let (got, took) = wait_incidents(&data, Duration::from_secs(5), |l| {
            has_cause(l, "shared-storage-path-missing", "ADFS1")
        });
        assert!(took.is_some(), "{point}: {got:#?}");
        assert_eq!(
            got, want,
            "{point}: not the incidents of an uninterrupted run"
        );
        assert_eq!(
            indexed(&data),
            lines.len(),
            "{point}: events lost or doubled"
        );
    }
}

pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// One routine VMMS event per record id (a start, not a failure), as ECS.
fn routine(record_id: u64) -> String {
    format!(
        "{{\"@timestamp\":\"2026-12-02T{:02}:{:02}:{:02}.{:03}Z\",\"host\":{{\"name\":\"HV{:02}\"}},\"winlog\":{{\"channel\":\"Microsoft-Windows-Hyper-V-VMMS-Admin\",\"provider_name\":\"Microsoft-Windows-Hyper-V-VMMS\",\"event_id\":18500,\"record_id\":{record_id}}},\"log\":{{\"level\":\"information\"}},\"message\":\"'VM{}' started successfully. (Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)\"}}",
        (record_id / 3_600_000) % 24,
        (record_id / 60_000) % 60,
        (record_id / 1000) % 60,
        record_id % 1000,
        record_id % 16,
        record_id % 997,
    )
}

#[test]
fn sigterm_during_a_million_event_stream_stops_within_5_s_and_keeps_every_acked_event() {
    const TOTAL: u64 = 1_000_000;
    const PER_REQUEST: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let cfg = config(dir.path(), port);
    let mut procs = Procs(vec![serve(&cfg, &data, None)]);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Two senders stream the million events; each counts what was answered 200.
    let senders: Vec<_> = (0..2u64)
        .map(|sender| {
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                let mut first = sender * PER_REQUEST;
                while first < TOTAL {
                    let lines: Vec<String> = (first..first + PER_REQUEST).map(routine).collect();
                    match bulk(port, &lines) {
                        Ok(_) => {
                            acked.fetch_add(PER_REQUEST, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(_) => break,
                    }
                    sent += PER_REQUEST;
                    first += 2 * PER_REQUEST;
                }
                sent
            })
        })
        .collect();
    // SIGTERM in the middle of the stream.
    let start = Instant::now();
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 100_000 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the stream did not get going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = procs.0.pop().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let stopped = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let took = stopped.elapsed();
    let status = status.expect("relive serve did not exit within 30 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    assert!((100_000..TOTAL).contains(&acked), "{acked}");
    // Restart: what was durable but not yet parsed is handled now.
    let _procs = Procs(vec![serve(&cfg, &data, None)]);
    let start = Instant::now();
    let mut count = indexed(&data);
    while (count as u64) < acked && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
        count = indexed(&data);
    }
    assert!(
        count as u64 >= acked,
        "{count} events indexed after the restart, {acked} were acknowledged"
    );
    eprintln!("SIGTERM after {acked} acknowledged events: exit in {took:?}; {count} indexed after the restart");
    // Requests cut by the stop were not acknowledged but may have been
    // stored: at most one request per sender beyond what was acknowledged
    // (the index keeps each record id once).
    assert!(
        count as u64 <= acked + 2 * PER_REQUEST,
        "{count} indexed > {acked} acknowledged + what was in flight"
    );
}

/// What the comparison of ingest and serve looks at.
fn summary(list: &[Value]) -> Vec<String> {
    summary_with(list, true)
}

/// `summary` without the ids (see the test below for why).
fn summary_without_ids(list: &[Value]) -> Vec<String> {
    summary_with(list, false)
}

fn summary_with(list: &[Value], ids: bool) -> Vec<String> {
    let mut out: Vec<String> = list
        .iter()
        .map(|i| {
            let evidence: Vec<String> = i["evidence"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .map(|e| format!("{} {} {}", e["timestamp"], e["host"], e["record_id"]))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} {} {} {} {} {} {:?}",
                if ids {
                    i["id"].to_string()
                } else {
                    String::new()
                },
                i["root_cause"],
                i["vm_name"],
                i["first_seen"],
                i["last_seen"],
                i["status"],
                evidence
            )
        })
        .collect();
    out.sort();
    out
}

/// Every scenario of `samples/` at once (25 scenarios, 13 formats, local
/// and UTC times, records exported two and three times) through `relive
/// ingest`, and dropped into the watched folder of `relive serve` (shipped
/// file by file by its agent, exact-time formats first): the same incidents,
/// causes, first and last seen, status and evidence; ids the same but for
/// at most two (see below).
#[test]
fn the_same_files_through_ingest_and_through_serve_give_the_same_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut copied = 0;
    let mut stack = vec![samples.clone()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            if name.ends_with(".md") || name.ends_with(".py") || name == "expected.json" {
                continue;
            }
            let to = files.join(path.strip_prefix(&samples).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&path, &to).unwrap();
            copied += 1;
        }
    }
    assert!(copied > 80, "{copied}");
    let ingested = dir.path().join("ingested");
    let out = relive(&ingested, &["ingest", files.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = summary(&incidents(&ingested));
    assert!(want.len() >= 23, "{want:#?}");

    let served = dir.path().join("served");
    let cfg = config(dir.path(), free_port());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[receivers.watch]\npaths = [\"{}/**/*\"]\n",
        files.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let _procs = Procs(vec![serve(&cfg, &served, None)]);
    // Everything but the ids must match. An id is fixed when the incident is
    // first decided (VM key + first failure); when a busy machine delivers
    // a chain's records in another order, serve may decide it under the
    // VM's other key first, so its id can differ from ingest's while the
    // incident is the same (a known limit, noted on the pipeline issue).
    let want_content = summary_without_ids(&incidents(&ingested));
    let (got, took) = wait_incidents(&served, Duration::from_secs(60), |l| {
        summary_without_ids(l) == want_content
    });
    assert!(
        took.is_some(),
        "serve did not reach ingest's incidents in 60 s:\nserve:  {:#?}\ningest: {want:#?}",
        summary(&got)
    );
    // And stays there.
    std::thread::sleep(Duration::from_secs(2));
    let got = incidents(&served);
    assert_eq!(summary_without_ids(&got), want_content);
    let same_ids = summary(&got).iter().filter(|s| want.contains(s)).count();
    assert!(
        want.len() - same_ids <= 2,
        "{} of {} ids differ between ingest and serve",
        want.len() - same_ids,
        want.len()
    );
}
