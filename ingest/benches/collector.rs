//! Collector throughput and latency, all in one process on loopback:
//!
//! 1. sustained events/s from local agents (real `Agent`s tailing files)
//!    into a collector that indexes (write-ahead log synced, tantivy
//!    committed), goal ≥ 100 k events/s on 2 cores;
//! 2. latency from a line appended to a watched file until a search finds
//!    it, p50/p99 (goal p99 < 1 s);
//! 3. the `_bulk` and OTLP/JSON receivers' throughput over the same kind of
//!    events, against the agent protocol's, in the same run.
//!
//! `cargo bench -p ingest --bench collector` (`RELIVE_BENCH_QUICK=1` for a
//! short run, `RELIVE_BENCH_AGENTS_ONLY=1` to stop after the agent figure).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ingest::agent::{Agent, AgentConfig, WatchSpec};

/// The allocator the `relive` binary (and so `relive serve`) runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ingest::{CollectorOptions, Receivers};

#[path = "../tests/it/indexed.rs"]
mod indexed;

struct Running {
    runtime: tokio::runtime::Runtime,
    collector: indexed::Indexed,
    bound: ingest::server::Bound,
}

fn start(data: &Path) -> Running {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut receivers = Receivers::default();
    receivers.agent.listen = any;
    receivers.syslog.enabled = false;
    receivers.es_bulk.listen = Some(any);
    receivers.otlp.listen = Some(any);
    receivers.lumberjack.enabled = false;
    let options = CollectorOptions::new(data);
    // `RELIVE_BENCH_COMMIT_MS` overrides the commit interval, for A/B runs.
    let commit = std::env::var("RELIVE_BENCH_COMMIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(250), Duration::from_millis);
    let collector = indexed::Indexed::start(options, commit);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sub = collector.collector().submitter();
    let bound = runtime.block_on(async {
        // The receivers live as long as the runtime.
        ingest::server::start(&receivers, &sub, &pipeline::Shutdown::new())
            .await
            .unwrap()
            .bound
    });
    Running {
        runtime,
        collector,
        bound,
    }
}

fn ecs(host: &str, id: u64) -> String {
    format!(
        "{{\"@timestamp\":\"2026-11-22T{:02}:{:02}:{:02}.{:03}Z\",\"host\":{{\"name\":\"{host}\"}},\"winlog\":{{\"channel\":\"Microsoft-Windows-Hyper-V-VMMS-Admin\",\"provider_name\":\"Microsoft-Windows-Hyper-V-VMMS\",\"event_id\":21502,\"record_id\":{id}}},\"log\":{{\"level\":\"error\"}},\"message\":\"Virtual machine migration operation for 'VM{}' failed at migration source '{host}'. (Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)\"}}",
        (id / 3_600_000) % 24,
        (id / 60_000) % 60,
        (id / 1000) % 60,
        id % 1000,
        id % 500
    )
}

fn indexed(r: &Running) -> u64 {
    r.collector
        .collector()
        .stats()
        .events_parsed
        .load(Ordering::Acquire)
}

fn wait_indexed(r: &Running, n: u64) {
    while indexed(r) < n
        || r.collector
            .collector()
            .stats()
            .consumed_seq
            .load(Ordering::Acquire)
            < r.collector
                .collector()
                .stats()
                .durable_seq
                .load(Ordering::Acquire)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn agent_config(dir: &Path, name: &str, addr: SocketAddr) -> AgentConfig {
    AgentConfig {
        name: Some(name.into()),
        collector: addr.to_string(),
        state_dir: dir.join(format!("{name}-state")),
        poll_ms: 20,
        batch_events: 4000,
        watch: vec![WatchSpec {
            paths: vec![format!("{}/{name}/*.log", dir.display())],
            format: None,
        }],
        ..AgentConfig::default()
    }
}

/// Events/s from `agents` agents, each with `per_agent` events in a file.
fn agents_throughput(agents: usize, per_agent: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let r = start(&dir.path().join("data"));
    for a in 0..agents {
        let name = format!("NODE-{a}");
        std::fs::create_dir_all(dir.path().join(&name)).unwrap();
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.path().join(&name).join("vmms.log")).unwrap(),
        );
        for i in 0..per_agent {
            writeln!(f, "{}", ecs(&name, i)).unwrap();
        }
    }
    let total = agents as u64 * per_agent;
    let started = Instant::now();
    let running: Vec<Agent> = (0..agents)
        .map(|a| {
            Agent::start(agent_config(
                dir.path(),
                &format!("NODE-{a}"),
                r.bound.agent.unwrap(),
            ))
            .unwrap()
        })
        .collect();
    wait_indexed(&r, total);
    let secs = started.elapsed().as_secs_f64();
    for a in running {
        a.stop();
    }
    drop(r.runtime);
    r.collector.shutdown();
    total as f64 / secs
}

/// Milliseconds from an appended line to a search that finds it.
fn latency(samples: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let r = start(&data);
    std::fs::create_dir_all(dir.path().join("NODE-L")).unwrap();
    let log = dir.path().join("NODE-L").join("vmms.log");
    std::fs::write(&log, "").unwrap();
    let agent = Agent::start(AgentConfig {
        poll_ms: 250,
        ..agent_config(dir.path(), "NODE-L", r.bound.agent.unwrap())
    })
    .unwrap();
    let index = index::EventIndex::open(&data.join("index")).unwrap();
    let mut out = Vec::new();
    for i in 0..samples as u64 {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let t0 = Instant::now();
        writeln!(f, "{}", ecs("NODE-L", 1_000_000 + i)).unwrap();
        drop(f);
        let query = index::SearchRequest::new(&format!("record_id:{}", 1_000_000 + i));
        loop {
            index.refresh().unwrap();
            if index.search(&query).unwrap().total > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(30));
    }
    agent.stop();
    drop(r.runtime);
    r.collector.shutdown();
    out
}

fn http_post(
    stream: &mut BufReader<TcpStream>,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> u16 {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: relive\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let s = stream.get_mut();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut status = String::new();
    stream.read_line(&mut status).unwrap();
    let code: u16 = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    code
}

/// Events/s through an HTTP receiver: `clients` connections, each sending
/// its share in requests of `per_request` events.
fn http_throughput(kind: &str, total: u64, per_request: u64, clients: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let r = start(&dir.path().join("data"));
    let addr = if kind == "bulk" {
        r.bound.es_bulk.unwrap()
    } else {
        r.bound.otlp.unwrap()
    };
    let share = total / clients as u64;
    // Bodies are built before the clock starts.
    let bodies: Vec<Vec<Vec<u8>>> = (0..clients)
        .map(|c| {
            let host = format!("NODE-H{c}");
            (0..share / per_request)
                .map(|k| {
                    let ids = k * per_request..(k + 1) * per_request;
                    if kind == "bulk" {
                        let mut b = String::new();
                        for i in ids {
                            b.push_str("{\"create\":{\"_index\":\"relive-events\"}}\n");
                            b.push_str(&ecs(&host, i));
                            b.push('\n');
                        }
                        b.into_bytes()
                    } else {
                        let records: Vec<String> = ids
                            .map(|i| format!(
                                "{{\"timeUnixNano\":\"{}\",\"severityNumber\":17,\"body\":{{\"stringValue\":\"Virtual machine migration operation for 'VM{}' failed at migration source '{host}'.\"}},\"attributes\":[{{\"key\":\"winlog.event_id\",\"value\":{{\"intValue\":21502}}}},{{\"key\":\"winlog.channel\",\"value\":{{\"stringValue\":\"Microsoft-Windows-Hyper-V-VMMS-Admin\"}}}},{{\"key\":\"winlog.record_id\",\"value\":{{\"intValue\":{i}}}}}]}}",
                                1_795_375_000_000_000_000u64 + i * 1_000_000, i % 500))
                            .collect();
                        format!("{{\"resourceLogs\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"host.name\",\"value\":{{\"stringValue\":\"{host}\"}}}}]}},\"scopeLogs\":[{{\"scope\":{{\"name\":\"Microsoft-Windows-Hyper-V-VMMS-Admin\"}},\"logRecords\":[{}]}}]}}]}}", records.join(",")).into_bytes()
                    }
                })
                .collect()
        })
        .collect();
    let sent = (share / per_request) * per_request * clients as u64;
    let started = Instant::now();
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|mine| {
            let kind = kind.to_string();
            std::thread::spawn(move || {
                let mut s = BufReader::new(TcpStream::connect(addr).unwrap());
                for body in mine {
                    loop {
                        let code = if kind == "bulk" {
                            http_post(&mut s, "/_bulk", "application/x-ndjson", &body)
                        } else {
                            http_post(&mut s, "/v1/logs", "application/json", &body)
                        };
                        match code {
                            200 => break,
                            429 => std::thread::sleep(Duration::from_millis(20)),
                            other => panic!("HTTP {other}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wait_indexed(&r, sent);
    let secs = started.elapsed().as_secs_f64();
    drop(r.runtime);
    r.collector.shutdown();
    sent as f64 / secs
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let quick = std::env::var_os("RELIVE_BENCH_QUICK").is_some();
    let total: u64 = if quick { 200_000 } else { 1_000_000 };
    println!(
        "collector benchmark ({} events per throughput run, 2 cores, loopback)",
        total
    );
    let agents = agents_throughput(2, total / 2);
    println!("agents (2) → collector → index: {agents:>10.0} events/s  (goal ≥ 100000)");
    if std::env::var_os("RELIVE_BENCH_AGENTS_ONLY").is_some() {
        // For profiling the agent path alone.
        return;
    }
    let bulk = http_throughput("bulk", total, 5000, 2);
    println!("_bulk (2 connections, 5000/request): {bulk:>10.0} events/s  = {:.2}x of the agent protocol", bulk / agents);
    let otlp = http_throughput("otlp", total, 2000, 2);
    println!("OTLP/JSON (2 connections, 2000/request): {otlp:>10.0} events/s  = {:.2}x of the agent protocol", otlp / agents);
    let mut lat = latency(if quick { 40 } else { 200 });
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "append → searchable latency over {} lines: p50 {:.0} ms, p99 {:.0} ms (goal p99 < 1000 ms)",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    let _ = std::io::stdout().flush();
}
