//! The collector over real loopback sockets: the agent protocol, syslog
//! from util-linux `logger`, the `_bulk` and OTLP endpoints, and hostile
//! peers that must not disturb anyone else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ingest::protocol::{Frame, VERSION};
use ingest::{CollectorOptions, Receivers};

use crate::{indexed, indexed_count, wait_until, Indexed};

struct Running {
    runtime: Option<tokio::runtime::Runtime>,
    collector: Option<Indexed>,
    bound: ingest::server::Bound,
    data: tempfile::TempDir,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn start(token: Option<&str>) -> Running {
    let data = tempfile::tempdir().unwrap();
    start_in(data, token)
}

fn start_in(data: tempfile::TempDir, token: Option<&str>) -> Running {
    start_with(data, token, |_| {})
}

/// A collector on loopback ports; `configure` changes the receivers first.
fn start_with(
    data: tempfile::TempDir,
    token: Option<&str>,
    configure: impl FnOnce(&mut Receivers),
) -> Running {
    let mut receivers = Receivers::default();
    receivers.agent.listen = loopback();
    receivers.agent.token = token.map(str::to_string);
    receivers.syslog.tcp = Some(loopback());
    receivers.syslog.udp = Some(loopback());
    receivers.syslog.max_message = 8192;
    receivers.es_bulk.listen = Some(loopback());
    receivers.es_bulk.max_body = 1 << 20;
    receivers.otlp.listen = Some(loopback());
    receivers.lumberjack.listen = Some(loopback());
    configure(&mut receivers);
    let options = CollectorOptions::new(data.path());
    let collector = Indexed::start(options, Duration::from_millis(50));
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
        runtime: Some(runtime),
        collector: Some(collector),
        bound,
        data,
    }
}

impl Running {
    fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let data = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data, data)
    }
    fn shutdown(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        if let Some(c) = self.collector.take() {
            c.shutdown();
        }
    }
    fn events(&self) -> Vec<serde_json::Value> {
        indexed(self.data.path())
    }
    fn wait_events(&self, n: usize) -> Vec<serde_json::Value> {
        let mut last = Vec::new();
        wait_until(Duration::from_secs(20), || {
            last = self.events();
            last.len() >= n
        });
        // Nothing more than expected arrives either.
        std::thread::sleep(Duration::from_millis(150));
        self.events()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn event_line(host: &str, record_id: u64, event_id: u32, message: &str) -> String {
    let event = parsers::Event {
        timestamp: chrono::DateTime::from_timestamp(1_795_375_000 + record_id as i64, 0).unwrap(),
        host: host.into(),
        channel: "Microsoft-Windows-Hyper-V-VMMS-Admin".into(),
        provider: "Microsoft-Windows-Hyper-V-VMMS".into(),
        event_id,
        level: parsers::Level::Error,
        record_id: Some(record_id),
        message: message.into(),
        ..parsers::Event::default()
    };
    event.to_json()
}

fn batch(seq: u64, lines: &[String]) -> Frame {
    let mut payload = lines.join("\n").into_bytes();
    payload.push(b'\n');
    Frame::Batch {
        seq,
        kind: ingest::record::Kind::Text as u8,
        format: 0,
        payload,
    }
}

fn connect(addr: SocketAddr, agent: &str, token: &str) -> (TcpStream, Frame) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Frame::Hello {
        version: VERSION,
        agent: agent.into(),
        token: token.into(),
    }
    .write_to(&mut s)
    .unwrap();
    let answer = Frame::read_from(&mut s)
        .unwrap()
        .expect("an answer to hello");
    (s, answer)
}

#[test]
fn agent_batches_are_acked_once_durable_and_a_resend_is_not_counted_twice() {
    let c = start(Some("s3cret"));
    let addr = c.bound.agent.unwrap();
    let (mut s, answer) = connect(addr, "NODE-A", "s3cret");
    assert_eq!(answer, Frame::Welcome { version: VERSION });
    let lines: Vec<String> = (0..30)
        .map(|i| {
            event_line(
                "NODE-A",
                i,
                21502,
                &format!("Live migration of 'VM{i}' failed."),
            )
        })
        .collect();
    for (n, chunk) in lines.chunks(10).enumerate() {
        batch(n as u64, chunk).write_to(&mut s).unwrap();
    }
    for n in 0..3 {
        assert_eq!(
            Frame::read_from(&mut s).unwrap(),
            Some(Frame::Ack { seq: n })
        );
    }
    // Acked means durable: it is in the write-ahead log before it is indexed.
    assert!(
        c.collector
            .as_ref()
            .unwrap()
            .collector()
            .stats()
            .records_durable
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    // The agent lost the ack of batch 1 and resends it after a reconnect.
    drop(s);
    let (mut s, _) = connect(addr, "NODE-A", "s3cret");
    batch(1, &lines[10..20]).write_to(&mut s).unwrap();
    assert_eq!(
        Frame::read_from(&mut s).unwrap(),
        Some(Frame::Ack { seq: 1 })
    );
    let events = c.wait_events(30);
    assert_eq!(events.len(), 30, "each event once");
    assert!(events.iter().all(|e| e["host"]["name"] == "NODE-A"));
}

#[test]
fn a_wrong_or_missing_token_is_refused_with_a_reason() {
    let c = start(Some("s3cret"));
    let addr = c.bound.agent.unwrap();
    let (_, answer) = connect(addr, "NODE-B", "guess");
    assert_eq!(
        answer,
        Frame::Refused {
            reason: "wrong token for agent NODE-B".into()
        }
    );
    let (_, answer) = connect(addr, "NODE-B", "");
    assert!(matches!(answer, Frame::Refused { reason } if reason.contains("missing token")));
    // An old protocol version is refused too.
    let mut s = TcpStream::connect(addr).unwrap();
    Frame::Hello {
        version: 99,
        agent: "NODE-B".into(),
        token: "s3cret".into(),
    }
    .write_to(&mut s)
    .unwrap();
    assert!(
        matches!(Frame::read_from(&mut s).unwrap(), Some(Frame::Refused { reason }) if reason.contains("version 99"))
    );
}

#[test]
fn hostile_peers_are_dropped_and_everyone_else_is_served() {
    let c = start(None);
    let agent = c.bound.agent.unwrap();
    // A frame claiming 4 GB: closed without allocating it.
    let mut huge = TcpStream::connect(agent).unwrap();
    huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    huge.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_closed(&mut huge);
    // Garbage after a good hello.
    let (mut garbage, _) = connect(agent, "NODE-X", "");
    garbage.write_all(&[0, 0, 0, 3, 0x77, 1, 2]).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_closed(&mut garbage);
    // Slowloris clients: half a frame, half a syslog line, half an HTTP request.
    let mut slow = TcpStream::connect(agent).unwrap();
    slow.write_all(&[0, 0]).unwrap();
    let mut slow_syslog = TcpStream::connect(c.bound.syslog_tcp.unwrap()).unwrap();
    slow_syslog
        .write_all(b"<11>1 2026-11-22T19:15:25Z vm app - - - no end")
        .unwrap();
    let mut slow_http = TcpStream::connect(c.bound.es_bulk.unwrap()).unwrap();
    slow_http
        .write_all(b"POST /_bulk HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    // Meanwhile a good agent is served at once.
    let (mut good, answer) = connect(agent, "NODE-A", "");
    assert_eq!(answer, Frame::Welcome { version: VERSION });
    batch(0, &[event_line("NODE-A", 1, 21502, "failed")])
        .write_to(&mut good)
        .unwrap();
    assert_eq!(
        Frame::read_from(&mut good).unwrap(),
        Some(Frame::Ack { seq: 0 })
    );
    // An oversized syslog message is skipped; the next one on the same connection is kept.
    let mut syslog = TcpStream::connect(c.bound.syslog_tcp.unwrap()).unwrap();
    let big = format!(
        "9000 <11>1 2026-11-22T19:15:25Z vm app - - - {}",
        "x".repeat(9000 - 40)
    );
    syslog.write_all(&big.as_bytes()[..9005]).unwrap();
    syslog
        .write_all(b"<11>1 2026-11-22T19:16:00Z NODE-C Hyper-V-VMMS - 21502 - after the big one\n")
        .unwrap();
    drop(syslog);
    let events = c.wait_events(2);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(events.iter().any(|e| e["message"] == "after the big one"));
    drop((slow, slow_syslog, slow_http));
}

fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

fn post(addr: SocketAddr, path: &str, headers: &str, body: &[u8]) -> (u16, String, String) {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: relive\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http(addr, &req)
}

#[test]
fn a_gzip_bomb_on_bulk_is_refused_and_a_good_bulk_is_indexed() {
    let c = start(None);
    let addr = c.bound.es_bulk.unwrap();
    // 64 MiB of zeros compress to ~64 KiB; the limit here is 1 MiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 64 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let (status, head, body) = post(
        addr,
        "/_bulk",
        "Content-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n",
        &bomb,
    );
    assert_eq!(status, 413, "{body}");
    assert!(head
        .to_ascii_lowercase()
        .contains("x-elastic-product: elasticsearch"));
    assert!(body.contains("limit"));
    let bulk = "{\"index\":{\"_index\":\"relive-events\",\"_type\":\"events\"}}\n{\"@timestamp\":\"2026-11-22T19:16:18.360378+00:00\", \"host.name\":\"NODE-A\", \"winlog.event_id\":21502, \"message\":\"Virtual machine migration operation for VM01 failed at migration source NODE-A.\"}\n\n{\"create\":{\"_id\":\"k1\"}}\nnot json\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bulk.as_bytes()).unwrap();
    let (status, _, body) = post(
        addr,
        "/relive-events/_bulk",
        "Content-Type: application/json; charset=utf-8\r\nContent-Encoding: gzip\r\n",
        &gz.finish().unwrap(),
    );
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"], true);
    assert_eq!(v["items"][0]["index"]["status"], 201);
    assert_eq!(v["items"][1]["create"]["status"], 400);
    let events = c.wait_events(1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["winlog"]["event_id"], 21502);
    assert_eq!(events[0]["host"]["name"], "NODE-A");
}

#[test]
fn syslog_from_logger_over_tcp_octet_counted_lf_framed_and_udp() {
    if Command::new("logger").arg("--version").output().is_err() {
        panic!("util-linux logger is required (scripts/test installs bsdutils)");
    }
    let c = start(None);
    let tcp = c.bound.syslog_tcp.unwrap();
    let udp = c.bound.syslog_udp.unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("logger").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "logger {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let port = tcp.port().to_string();
    run(&[
        "--tcp",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "--rfc5424",
        "--octet-count",
        "-t",
        "Hyper-V-VMMS",
        "--msgid",
        "21502",
        "--sd-id",
        "win@32473",
        "--sd-param",
        "EventID=\"21502\"",
        "--sd-param",
        "Channel=\"Microsoft-Windows-Hyper-V-VMMS-Admin\"",
        "-p",
        "user.err",
        "Live migration of 'VM01' failed. (0x80072746)",
    ]);
    run(&[
        "--tcp",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "--rfc5424",
        "-t",
        "Hyper-V-VMMS",
        "--msgid",
        "21066",
        "-p",
        "user.err",
        "Failed to receive data for a Virtual Machine migration (0x80072746).",
    ]);
    let uport = udp.port().to_string();
    run(&[
        "-d",
        "-n",
        "127.0.0.1",
        "-P",
        &uport,
        "--rfc3164",
        "-t",
        "vmms",
        "Event 21502 VM02",
    ]);
    let events = c.wait_events(3);
    assert_eq!(events.len(), 3, "{events:#?}");
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["winlog"]["event_id"].as_i64().unwrap_or(0))
        .collect();
    assert!(ids.contains(&21502) && ids.contains(&21066), "{ids:?}");
    let vm01 = events
        .iter()
        .find(|e| e["message"].as_str().unwrap_or("").contains("VM01"))
        .unwrap();
    assert_eq!(
        vm01["winlog"]["channel"],
        "Microsoft-Windows-Hyper-V-VMMS-Admin"
    );
    assert_eq!(vm01["error"]["code"], "0x80072746");
}

#[test]
fn what_was_acked_survives_a_crash_before_indexing() {
    // Acked records are in the log; a new collector on the same data
    // replays and indexes them even though the old one never committed.
    let data = tempfile::tempdir().unwrap();
    {
        let (mut wal, _) =
            ingest::Wal::open(&data.path().join("wal"), ingest::WalOptions::default()).unwrap();
        let lines: Vec<String> = (0..5)
            .map(|i| event_line("NODE-B", 100 + i, 21066, "lost?"))
            .collect();
        let record = ingest::record::Record::text(
            None,
            "agent NODE-B",
            (lines.join("\n") + "\n").into_bytes(),
        );
        wal.append(&[record.encode()]).unwrap();
    }
    let c = start_in(data, None);
    assert_eq!(c.wait_events(5).len(), 5);
    let data = c.stop();
    // And a second start indexes nothing again (the checkpoint moved).
    let c = start_in(data, None);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.events().len(), 5);
    assert!(Path::new(&c.data.path().join("wal/consumed")).exists());
}

/// An agent config for tests: fast polling and reconnects, one glob.
fn test_agent(
    name: &str,
    collector: String,
    state: &Path,
    glob: String,
) -> ingest::agent::AgentConfig {
    ingest::agent::AgentConfig {
        name: Some(name.into()),
        collector,
        state_dir: state.to_path_buf(),
        poll_ms: 20,
        max_backoff_ms: 200,
        watch: vec![ingest::agent::WatchSpec {
            paths: vec![glob],
            format: None,
        }],
        ..ingest::agent::AgentConfig::default()
    }
}

/// Forwards agent → collector frame by frame and cuts both connections
/// in the middle of every `every`-th frame; the collector's answers go back
/// untouched. Returns the proxy's address and the number of cuts so far.
fn cutting_proxy(
    upstream: SocketAddr,
    every: u64,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = std::sync::Arc::new(AtomicU64::new(0));
    let frames = std::sync::Arc::new(AtomicU64::new(0));
    let cuts_out = cuts.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (mut client_rd, mut server_wr) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let back = std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
            });
            let (frames, cuts) = (frames.clone(), cuts.clone());
            std::thread::spawn(move || {
                loop {
                    let mut len = [0u8; 4];
                    if client_rd.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                    if client_rd.read_exact(&mut body).is_err() {
                        break;
                    }
                    let n = frames.fetch_add(1, Ordering::SeqCst) + 1;
                    if n % every == 0 {
                        // Half a frame, then the line goes dead.
                        let _ = server_wr.write_all(&len);
                        let _ = server_wr.write_all(&body[..body.len() / 2]);
                        cuts.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if server_wr.write_all(&len).is_err() || server_wr.write_all(&body).is_err() {
                        break;
                    }
                }
                let _ = server_wr.shutdown(std::net::Shutdown::Both);
                let _ = client_rd.shutdown(std::net::Shutdown::Both);
                let _ = back.join();
            });
        }
    });
    (addr, cuts_out)
}

#[test]
fn a_proxy_cutting_the_connection_every_few_hundred_frames_loses_and_doubles_nothing() {
    let c = start(Some("cut-token"));
    let (proxy, cuts) = cutting_proxy(c.bound.agent.unwrap(), 150);
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let agent = ingest::agent::Agent::start(ingest::agent::AgentConfig {
        token: "cut-token".into(),
        batch_events: 20,
        window: 8,
        ..test_agent(
            "NODE-CUT",
            proxy.to_string(),
            state.path(),
            format!("{}/*.ndjson", logs.path().display()),
        )
    })
    .unwrap();
    let hosts = ["NODE-P1", "NODE-P2", "NODE-P3"];
    let per_host = 8_000u64;
    for chunk in 0..8u64 {
        for host in hosts {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.path().join(format!("{host}.ndjson")))
                .unwrap();
            let from = chunk * per_host / 8;
            let text: String = (from..from + per_host / 8)
                .map(|i| event_line(host, i, 21502, &format!("cut test {i}")) + "\n")
                .collect();
            f.write_all(text.as_bytes()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = hosts.len() * per_host as usize;
    let mut events = Vec::new();
    wait_until(Duration::from_secs(120), || {
        events = c.events();
        events.len() >= want
    });
    std::thread::sleep(Duration::from_millis(300));
    let events = c.events();
    agent.stop();
    let n_cuts = cuts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n_cuts >= 5, "the proxy cut only {n_cuts} times");
    let mut keys: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["host"]["name"].as_str().unwrap().to_string(),
                e["winlog"]["record_id"].as_u64().unwrap(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), events.len(), "no event twice");
    assert_eq!(events.len(), want, "every event, through {n_cuts} cuts");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_agents_with_the_admins_ca_are_served_and_a_bad_handshake_is_dropped() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path();
    openssl(
        p,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=relive test CA",
        ],
    );
    openssl(
        p,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        p.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        p,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    // A CA the agent was not given.
    openssl(
        p,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-days",
            "2",
            "-subj",
            "/CN=someone else",
        ],
    );

    let c = start_with(tempfile::tempdir().unwrap(), Some("tls-token"), |r| {
        r.agent.cert = Some(p.join("server.pem"));
        r.agent.key = Some(p.join("server.key"));
    });
    let data = c.data.path();
    let addr = c.bound.agent.unwrap();

    // Plain text to the TLS port: the handshake fails and the socket closes.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    Frame::Hello {
        version: VERSION,
        agent: "NODE-PLAIN".into(),
        token: "tls-token".into(),
    }
    .write_to(&mut plain)
    .unwrap();
    let mut buf = [0u8; 64];
    match plain.read(&mut buf) {
        Ok(0) => {}
        Ok(_) => assert_eq!(buf[0], 0x15, "a TLS alert or a close, not a welcome"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("neither an alert nor a close within the read timeout: {e}"),
    }

    let run_agent = |name: &str, ca: &str, logs: &Path| {
        std::fs::write(
            logs.join("vmms.ndjson"),
            (0..50u64)
                .map(|i| event_line(name, i, 21502, "over TLS") + "\n")
                .collect::<String>(),
        )
        .unwrap();
        ingest::agent::Agent::start(ingest::agent::AgentConfig {
            token: "tls-token".into(),
            ca: Some(p.join(ca)),
            ..test_agent(
                name,
                format!("localhost:{}", addr.port()),
                &logs.join("state"),
                format!("{}/*.ndjson", logs.display()),
            )
        })
        .unwrap()
    };
    let (good_logs, bad_logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bad = run_agent("NODE-UNTRUSTED", "other.pem", bad_logs.path());
    let good = run_agent("NODE-TLS", "ca.pem", good_logs.path());
    assert!(wait_until(Duration::from_secs(20), || indexed(data).len() >= 50));
    std::thread::sleep(Duration::from_millis(300));
    let events = indexed(data);
    assert_eq!(events.len(), 50);
    assert!(events.iter().all(|e| e["host"]["name"] == "NODE-TLS"));
    // The agent that does not trust the collector's certificate says why.
    assert!(!bad
        .status()
        .connected
        .load(std::sync::atomic::Ordering::Relaxed));
    let why = bad
        .status()
        .last_error
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_default();
    assert!(
        why.contains("certificate") || why.contains("Certificate") || why.contains("issuer"),
        "{why}"
    );
    good.stop();
    bad.stop();
}

fn lj_window(first_seq: u32, jsons: &[String]) -> Vec<u8> {
    let mut inner = Vec::new();
    for (i, json) in jsons.iter().enumerate() {
        inner.extend([b'2', b'J']);
        inner.extend((first_seq + i as u32).to_be_bytes());
        inner.extend((json.len() as u32).to_be_bytes());
        inner.extend(json.as_bytes());
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&inner).unwrap();
    let z = z.finish().unwrap();
    let mut out = vec![b'2', b'W'];
    out.extend((jsons.len() as u32).to_be_bytes());
    out.extend([b'2', b'C']);
    out.extend((z.len() as u32).to_be_bytes());
    out.extend(z);
    out
}

#[test]
fn lumberjack_windows_pipelined_v1_data_frames_and_bad_peers() {
    let c = start(None);
    let addr = c.bound.lumberjack.unwrap();
    // A bad version byte and a window of 4 billion events: both closed.
    for bad in [&b"3W\0\0\0\x01"[..], &b"2W\xff\xff\xff\xff"[..]] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bad).unwrap();
        assert_closed(&mut s);
    }
    // Two windows sent back to back; their acks come in order, each once
    // its window is durable.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let jsons = |from: u64, n: u64| -> Vec<String> {
        (from..from + n)
            .map(|i| event_line("NODE-LJ", i, 21502, "lj"))
            .collect()
    };
    s.write_all(&lj_window(1, &jsons(0, 100))).unwrap();
    s.write_all(&lj_window(101, &jsons(100, 50))).unwrap();
    let mut ack = [0u8; 6];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [b'2', b'A', 0, 0, 0, 100]);
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [b'2', b'A', 0, 0, 0, 150]);
    // logstash-forwarder's v1 key/value frames, acked in v1.
    let mut v1 = vec![b'1', b'W', 0, 0, 0, 1, b'1', b'D', 0, 0, 0, 7, 0, 0, 0, 2];
    for (k, v) in [
        ("line", "Live migration of 'VM7' failed."),
        ("host", "NODE-V1"),
    ] {
        v1.extend((k.len() as u32).to_be_bytes());
        v1.extend(k.as_bytes());
        v1.extend((v.len() as u32).to_be_bytes());
        v1.extend(v.as_bytes());
    }
    s.write_all(&v1).unwrap();
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [b'1', b'A', 0, 0, 0, 7]);
    // A resent window (the client did not see the ack) is not counted twice.
    s.write_all(&lj_window(1, &jsons(0, 100))).unwrap();
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [b'2', b'A', 0, 0, 0, 100]);
    drop(s);
    let events = c.wait_events(151);
    assert_eq!(events.len(), 151);
    assert!(events
        .iter()
        .any(|e| e["message"] == "Live migration of 'VM7' failed."));
}

fn samples_real(name: &str) -> std::path::PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("../../shared/samples-real"),
        here.join("../../../shared/samples-real"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .expect("shared/samples-real next to the repository")
    .join(name)
}

/// What a whole-file parse of `bytes` finds: (host, time, message) per event.
fn whole_parse(bytes: &[u8], path: &Path) -> Vec<(String, String, String)> {
    let mut out = parsers::ParseOutput::default();
    let opts = parsers::ParseOptions {
        default_host: path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once("_cluster").map(|(h, _)| h.to_string())),
        ..parsers::ParseOptions::default()
    };
    parsers::parse_reader(bytes, Some(&path.display().to_string()), &opts, &mut out);
    let mut v: Vec<_> = out
        .events
        .iter()
        .map(|e| {
            (
                e.host.to_string(),
                e.timestamp.to_rfc3339(),
                e.message.to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_agent_tails_a_growing_evtx_and_a_utf16_cluster_log_read_in_parts() {
    let c = start(None);
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let agent = ingest::agent::Agent::start(test_agent(
        "NODE-TAIL",
        c.bound.agent.unwrap().to_string(),
        state.path(),
        format!("{}/*", logs.path().display()),
    ))
    .unwrap();
    // An EVTX file that grows by chunks: the header and 3 chunks, then all.
    let evtx = std::fs::read(samples_real("evtx/omerbenamram-evtx__system.evtx")).unwrap();
    let evtx_path = logs.path().join("System.evtx");
    let part = &evtx[..4096 + 3 * 65536];
    let n_part = whole_parse(part, &evtx_path).len();
    assert!(n_part > 100, "{n_part}");
    std::fs::write(&evtx_path, part).unwrap();
    assert!(wait_until(Duration::from_secs(30), || c.events().len() >= n_part));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&evtx_path)
        .unwrap();
    f.write_all(&evtx).unwrap();
    drop(f);
    let n_evtx = whole_parse(&evtx, &evtx_path).len();
    assert_eq!(n_evtx, 1881, "the manifest's count");
    assert!(wait_until(Duration::from_secs(30), || c.events().len() >= n_evtx));

    // A UTF-16 cluster.log written in two parts, cut at a line end: the
    // second part, read on its own (no BOM), gives the events the whole
    // file does.
    let cluster = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../samples/failover-threshold/HVN-11/HVN-11_cluster.log"),
    )
    .unwrap();
    assert!(cluster.starts_with(&[0xFF, 0xFE]), "the sample is UTF-16");

    let line_ends: Vec<usize> = (0..cluster.len() - 1)
        .step_by(2)
        .filter(|&i| cluster[i] == b'\n' && cluster[i + 1] == 0)
        .map(|i| i + 2)
        .collect();
    let cut = line_ends[line_ends.len() / 2 + 3];
    let cluster_path = logs.path().join("HVN-11_cluster.log");
    std::fs::write(&cluster_path, &cluster[..cut]).unwrap();
    let first = n_evtx + whole_parse(&cluster[..cut], &cluster_path).len();
    assert!(wait_until(Duration::from_secs(30), || c.events().len() >= first));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&cluster_path)
        .unwrap();
    f.write_all(&cluster[cut..]).unwrap();
    drop(f);
    let want_cluster = whole_parse(&cluster, &cluster_path);
    assert!(want_cluster.len() > 5);
    let total = n_evtx + want_cluster.len();
    assert!(wait_until(Duration::from_secs(30), || c.events().len() >= total));
    std::thread::sleep(Duration::from_millis(300));
    let events = c.events();
    assert_eq!(events.len(), total, "nothing lost, nothing twice");
    let mut got_cluster: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["winlog"]["channel"] == "cluster.log")
        .map(|e| {
            let t =
                chrono::DateTime::parse_from_rfc3339(e["@timestamp"].as_str().unwrap()).unwrap();
            (
                e["host"]["name"].as_str().unwrap().to_string(),
                t.with_timezone(&chrono::Utc).to_rfc3339(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got_cluster.sort();
    assert_eq!(
        got_cluster, want_cluster,
        "same events, hosts and times as the whole file"
    );
    // The agent read each event once.
    assert_eq!(
        agent
            .status()
            .events_read
            .load(std::sync::atomic::Ordering::Relaxed),
        total as u64
    );
    agent.stop();
}

/// Appends ECS lines `ids` for `host` to `path`.
fn append_lines(path: &Path, host: &str, ids: std::ops::Range<u64>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for i in ids {
        text.push_str(&event_line(
            host,
            i,
            21502,
            &format!("Live migration of 'VM{i}' failed."),
        ));
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_file_rotated_with_much_unread_is_drained_live_and_after_a_restart() {
    let c = start(None);
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = test_agent(
        "NODE-ROT",
        c.bound.agent.unwrap().to_string(),
        state.path(),
        format!("{}/*.log", logs.path().display()),
    );
    let count = || indexed_count(c.data.path());
    let log = logs.path().join("vmms.log");
    let rotated = logs.path().join("vmms.log.1");
    let agent = ingest::agent::Agent::start(config.clone()).unwrap();
    append_lines(&log, "NODE-ROT", 0..10);
    assert!(wait_until(Duration::from_secs(30), || count() >= 10));

    // Live: far more than one read (8 MiB) lands, with a 9 MiB line in
    // the middle, and the file is renamed out of the glob at once.
    append_lines(&log, "NODE-ROT", 10..40_000);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&vec![b'x'; 9 << 20]).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    append_lines(&log, "NODE-ROT", 40_000..70_000);
    std::fs::rename(&log, &rotated).unwrap();
    assert!(
        wait_until(Duration::from_secs(120), || count() >= 70_000),
        "{}",
        count()
    );

    // Restart: the agent is down while its file grows and is rotated.
    append_lines(&log, "NODE-ROT", 70_000..70_010);
    assert!(wait_until(Duration::from_secs(30), || count() >= 70_010));
    agent.stop();
    append_lines(&log, "NODE-ROT", 70_010..110_000);
    std::fs::rename(&log, &rotated).unwrap();
    append_lines(&log, "NODE-ROT", 110_000..110_005);
    let agent = ingest::agent::Agent::start(config).unwrap();
    assert!(
        wait_until(Duration::from_secs(120), || count() >= 110_005),
        "{}",
        count()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), 110_005, "nothing lost, nothing twice");
    agent.stop();
}

/// The server closed the connection: end of stream or a reset, not a
/// read that timed out (the stream must have a read timeout set).
fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the server answered {n} bytes instead of closing"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed within the read timeout: {e}"),
    }
}

/// Writes `prefix`, then one `byte` every 200 ms, never finishing; returns
/// how long after the first byte the server closed the connection (and
/// what it answered, if anything). Fails after `limit`.
fn dribble(addr: SocketAddr, prefix: &[u8], byte: u8, limit: Duration) -> (Duration, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let start = std::time::Instant::now();
    stream.write_all(prefix).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (start.elapsed(), answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (start.elapsed(), answer),
        }
        assert!(
            start.elapsed() < limit,
            "a slow client kept its connection for {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        if stream.write_all(&[byte]).is_err() {
            return (start.elapsed(), answer);
        }
    }
}

/// Slowloris, one protocol after another: a client that sends a byte every
/// 200 ms (each read well inside any per-read deadline) is cut when its
/// message, frame or request is not whole by the deadline, while a
/// well-behaved client is served meanwhile; past the connection cap, a new
/// connection is closed at once.
#[test]
fn slow_clients_are_cut_at_the_message_deadline_and_connections_are_capped() {
    let c = start_with(tempfile::tempdir().unwrap(), None, |r| {
        r.limits.message_timeout_ms = 1000;
        r.limits.header_timeout_ms = 1000;
        r.limits.request_timeout_ms = 2000;
        r.limits.max_connections = 6;
    });
    let limit = Duration::from_secs(6);
    let (agent, syslog, es, lj) = (
        c.bound.agent.unwrap(),
        c.bound.syslog_tcp.unwrap(),
        c.bound.es_bulk.unwrap(),
        c.bound.lumberjack.unwrap(),
    );
    let cases: Vec<(&str, SocketAddr, Vec<u8>, u8, Duration)> = vec![
        ("agent hello", agent, vec![0, 0, 0, 60, 1], b'x', Duration::from_millis(1000)),
        ("syslog message", syslog, b"<11>1 2026-11-22T19:15:25Z vm app - - - ".to_vec(), b'x', Duration::from_millis(1000)),
        ("HTTP headers", es, b"POST /_bulk HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec(), b'x', Duration::from_millis(1000)),
        (
            "HTTP body",
            es,
            b"POST /_bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{".to_vec(),
            b' ',
            Duration::from_millis(2000),
        ),
        ("Lumberjack frame", lj, vec![b'2', b'J', 0, 0, 0, 1, 0, 0, 0, 200], b'x', Duration::from_millis(1000)),
    ];
    let threads: Vec<_> = cases
        .into_iter()
        .map(|(what, addr, prefix, byte, deadline)| {
            std::thread::spawn(move || {
                let (took, answer) = dribble(addr, &prefix, byte, limit);
                (what, took, deadline, answer)
            })
        })
        .collect();
    // Meanwhile a good agent is served at once.
    let (mut good, answer) = connect(agent, "NODE-A", "");
    assert_eq!(answer, Frame::Welcome { version: VERSION });
    batch(0, &[event_line("NODE-A", 1, 21502, "failed")])
        .write_to(&mut good)
        .unwrap();
    assert_eq!(
        Frame::read_from(&mut good).unwrap(),
        Some(Frame::Ack { seq: 0 })
    );
    for t in threads {
        let (what, took, deadline, answer) = t.join().unwrap();
        assert!(
            took >= deadline.mul_f64(0.8) && took < deadline + Duration::from_millis(1500),
            "{what}: cut after {took:?}, deadline {deadline:?}"
        );
        if what == "HTTP body" {
            assert!(
                String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
                "{what}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    // Before it has authenticated, an agent may not claim a large frame:
    // 1 MiB (under the 16 MiB frame limit) is refused at once.
    let (took, _) = dribble(agent, &[0, 0x10, 0, 0, 1], b'x', limit);
    assert!(
        took < Duration::from_millis(500),
        "a large hello refused at once, not after {took:?}"
    );
    // The cap: six idle syslog connections are kept; the seventh is closed at once.
    let mut idle: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(syslog).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (took, _) = dribble(
        syslog,
        b"<11>1 2026-11-22T19:15:25Z vm app - - - x",
        b'x',
        limit,
    );
    assert!(
        took < Duration::from_millis(500),
        "over the cap: closed at once, not after {took:?}"
    );
    // One leaves: a new connection is served again.
    idle.pop();
    std::thread::sleep(Duration::from_millis(200));
    let mut fresh = TcpStream::connect(syslog).unwrap();
    fresh
        .write_all(
            b"<11>1 2026-11-22T19:16:00Z NODE-C Hyper-V-VMMS - 21502 - served after one left\n",
        )
        .unwrap();
    drop(fresh);
    let events = c.wait_events(2);
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "served after one left"),
        "{events:#?}"
    );
    drop(idle);
}

/// With no collector to take its batches, the agent's spool grows to its
/// bound and reading pauses (`spool_full`); when a collector comes, the
/// spool drains and every event arrives once.
#[test]
fn a_full_spool_pauses_reading_and_drains_when_a_collector_comes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let total = 20_000u64;
    let text: String = (0..total)
        .map(|i| event_line("NODE-SPOOL", i, 21502, &format!("spool test {i}")) + "\n")
        .collect();
    std::fs::write(logs.path().join("a.ndjson"), text.as_bytes()).unwrap();
    let bound = 256 * 1024u64;
    let agent = ingest::agent::Agent::start(ingest::agent::AgentConfig {
        spool_max_bytes: bound,
        batch_events: 200,
        ..test_agent(
            "NODE-SPOOL",
            format!("127.0.0.1:{port}"),
            state.path(),
            format!("{}/*.ndjson", logs.path().display()),
        )
    })
    .unwrap();
    let status = agent.status().clone();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    wait_until(Duration::from_secs(20), || status.spool_full.load(relaxed));
    let read = status.events_read.load(relaxed);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        status.events_read.load(relaxed),
        read,
        "reading paused while the spool is full"
    );
    assert!(read < total, "stopped at the bound: {read} of {total} read");
    let spooled: u64 = std::fs::read_dir(state.path().join("spool"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    assert!(
        spooled <= bound + 512 * 1024,
        "spool {spooled} bytes for a {bound}-byte bound"
    );
    // A collector arrives on the agent's address: everything drains.
    let c = start_with(tempfile::tempdir().unwrap(), None, |r| {
        r.agent.listen = format!("127.0.0.1:{port}").parse().unwrap();
    });
    let events = c.wait_events(total as usize);
    assert_eq!(events.len(), total as usize, "every event, once");
    wait_until(Duration::from_secs(10), || !status.spool_full.load(relaxed));
    agent.stop();
}

/// Backpressure on `_bulk`: when the pipeline behind the collector stops
/// taking batches, requests get `429 Too Many Requests` with
/// `Retry-After` (what Beats and the ES clients back off on) instead of
/// piling up; once it moves again, the same request is accepted.
#[test]
fn a_stalled_pipeline_answers_bulk_with_429_and_retry_after() {
    let data = tempfile::tempdir().unwrap();
    let mut options = CollectorOptions::new(data.path());
    options.max_lag_records = 1;
    options.queue = 1;
    // The stage after the collector takes nothing until told to.
    let (out, taken) = pipeline::bounded::<pipeline::EventBatch>(1, Default::default());
    let collector = ingest::Collector::start(options, Box::new(out)).unwrap();
    let mut receivers = Receivers::default();
    receivers.agent.enabled = false;
    receivers.syslog.enabled = false;
    receivers.otlp.enabled = false;
    receivers.lumberjack.enabled = false;
    receivers.es_bulk.listen = Some(loopback());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sub = collector.submitter();
    let es = runtime
        .block_on(ingest::server::start(
            &receivers,
            &sub,
            &pipeline::Shutdown::new(),
        ))
        .unwrap()
        .bound
        .es_bulk
        .unwrap();
    let body = |i: u64| {
        format!(
            "{{\"create\":{{}}}}\n{}\n",
            event_line("NODE-429", i, 21502, "busy")
        )
    };
    // Requests until the stall shows: some are taken and wait for
    // durability (they finish once the stage moves), then 429s come.
    let (results_tx, results) = std::sync::mpsc::channel::<(u16, String)>();
    let mut senders = Vec::new();
    let mut busy: Vec<String> = Vec::new();
    for i in 0..200u64 {
        let tx = results_tx.clone();
        senders.push(std::thread::spawn(move || {
            let (status, head, _) = post(
                es,
                "/_bulk",
                "Content-Type: application/x-ndjson\r\n",
                body(i).as_bytes(),
            );
            let _ = tx.send((status, head));
        }));
        std::thread::sleep(Duration::from_millis(10));
        while let Ok((status, head)) = results.try_recv() {
            if status == 429 {
                busy.push(head);
            } else {
                assert_eq!(status, 200, "{head}");
            }
        }
        if busy.len() >= 3 {
            break;
        }
    }
    assert!(!busy.is_empty(), "a stalled pipeline answers 429");
    assert!(
        busy.iter()
            .all(|head| head.to_ascii_lowercase().contains("retry-after: 1")),
        "{busy:?}"
    );
    // The stage moves again: a retried request is accepted.
    let drain = std::thread::spawn(move || {
        use pipeline::Source as _;
        let mut taken = taken;
        let mut n = 0;
        while n < 1000 {
            match taken.recv(Duration::from_millis(100)) {
                pipeline::Recv::Item(batch) => {
                    let _ = batch.ack.done();
                    n += 1;
                }
                pipeline::Recv::Idle => {}
                pipeline::Recv::Closed => break,
            }
        }
    });
    let mut accepted = false;
    for _ in 0..50 {
        let (status, _, _) = post(
            es,
            "/_bulk",
            "Content-Type: application/x-ndjson\r\n",
            body(999).as_bytes(),
        );
        if status == 200 {
            accepted = true;
            break;
        }
        assert_eq!(status, 429);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(accepted, "accepted once the pipeline moves");
    // The requests that were waiting finish too.
    for sender in senders {
        sender.join().unwrap();
    }
    drop(results_tx);
    for (status, head) in results.iter() {
        assert!(status == 200 || status == 429, "{head}");
    }
    drop(runtime);
    drop(sub);
    collector.shutdown();
    let _ = drain.join();
}
