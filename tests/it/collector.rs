//! `relive serve` and `relive agent` as real processes on loopback: agents
//! stream events from files that grow and rotate while the collector is
//! killed with SIGKILL twice and an agent once; the index ends with every
//! event exactly once. Then the real Elasticsearch and OpenTelemetry
//! Python clients ship to the same collector unchanged.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Procs};

fn serve(config: &Path, data: &Path) -> (Child, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(data)
        .args(["serve", "--http-listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relive serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("the listening line");
    (child, v)
}

fn agent(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["agent", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relive agent")
}

fn count(data: &Path) -> usize {
    // Opens the index read-only in this process, as `relive search` does.
    index::EventIndex::open(&data.join("index")).map_or(0, |index| index.len() as usize)
}

fn line(host: &str, record_id: u64) -> String {
    format!(
        "{{\"@timestamp\":\"2026-11-22T{:02}:{:02}:{:02}Z\",\"host\":{{\"name\":\"{host}\"}},\"winlog\":{{\"channel\":\"Microsoft-Windows-Hyper-V-VMMS-Admin\",\"event_id\":21502,\"record_id\":{record_id}}},\"message\":\"Live migration of 'VM{record_id}' failed.\"}}\n",
        (record_id / 3600) % 24,
        (record_id / 60) % 60,
        record_id % 60
    )
}

fn append(path: &Path, host: &str, ids: std::ops::Range<u64>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = ids.map(|i| line(host, i)).collect();
    f.write_all(text.as_bytes()).unwrap();
}

fn wait_count(data: &Path, want: usize, limit: Duration) -> usize {
    let start = Instant::now();
    let mut n = count(data);
    while n < want && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(200));
        n = count(data);
    }
    n
}

#[test]
fn agents_stream_through_collector_crashes_rotation_and_an_agent_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let relive_toml = dir.path().join("relive.toml");
    std::fs::write(
        &relive_toml,
        format!(
            "[receivers.agent]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"lab-token\"\n\
             [receivers.syslog]\nenabled = false\n[receivers.es_bulk]\nenabled = false\n\
             [receivers.otlp]\nenabled = false\n[receivers.lumberjack]\nenabled = false\n\
             [collector]\ncommit_ms = 100\n"
        ),
    )
    .unwrap();
    let mut procs = Procs(Vec::new());
    let (collector, _) = serve(&relive_toml, &data);
    procs.0.push(collector);
    let hosts = ["NODE-A", "NODE-B", "NODE-C"];
    let mut agent_configs = Vec::new();
    for host in hosts {
        let logs = dir.path().join(host);
        std::fs::create_dir_all(&logs).unwrap();
        let cfg = dir.path().join(format!("{host}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"{host}\"\ncollector = \"127.0.0.1:{port}\"\ntoken = \"lab-token\"\n\
                 state_dir = \"{host}-state\"\npoll_ms = 50\nmax_backoff_ms = 500\n\
                 [[watch]]\npaths = [\"{}/*.log\"]\n",
                logs.display()
            ),
        )
        .unwrap();
        procs.0.push(agent(&cfg));
        agent_configs.push((host, logs, cfg));
    }
    // 3 hosts × 6 rounds × 55,556 = 1,000,008 events.
    let per_round = 55_556u64;
    let rounds = 6u64;
    for round in 0..rounds {
        for (host, logs, _) in &agent_configs {
            let log = logs.join("vmms.log");
            let from = round * per_round;
            // Written in pieces so agents read partial files.
            for part in 0..4 {
                let a = from + part * per_round / 4;
                append(&log, host, a..a + per_round / 4);
            }
            if round == 2 {
                // Rotation: rename, then a new file under the old name.
                std::fs::rename(&log, logs.join("vmms.log.1")).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        if round == 1 || round == 3 {
            // SIGKILL the collector mid-stream, then restart it on the same port.
            let mut old = procs.0.remove(0);
            old.kill().unwrap();
            old.wait().unwrap();
            let (collector, _) = serve(&relive_toml, &data);
            procs.0.insert(0, collector);
        }
        if round == 4 {
            // SIGKILL one agent and start it again.
            let mut old = procs.0.remove(1);
            old.kill().unwrap();
            old.wait().unwrap();
            procs.0.insert(1, agent(&agent_configs[0].2));
        }
    }
    let want = (hosts.len() as u64 * per_round * rounds) as usize;
    let got = wait_count(&data, want, Duration::from_secs(900));
    std::thread::sleep(Duration::from_millis(800));
    let got_later = count(&data);
    assert_eq!(got, want, "every event arrives");
    assert_eq!(got_later, want, "and none twice");
    // The agents say what they did.
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("NODE-B-state/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["connected"], true, "{status}");
}

fn python_ok(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn elasticsearch_py_and_the_opentelemetry_sdk_ship_to_relive_unchanged() {
    for m in ["elasticsearch", "opentelemetry.exporter.otlp.proto.http"] {
        assert!(
            python_ok(m),
            "python3 module {m} is required (scripts/test installs it)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let relive_toml = dir.path().join("relive.toml");
    std::fs::write(
        &relive_toml,
        "[receivers.agent]\nlisten = \"127.0.0.1:0\"\n[receivers.syslog]\nenabled = false\n\
         [receivers.es_bulk]\nlisten = \"127.0.0.1:0\"\n[receivers.otlp]\nlisten = \"127.0.0.1:0\"\n\
         [receivers.lumberjack]\nenabled = false\n\
         [collector]\ncommit_ms = 100\n",
    )
    .unwrap();
    let (collector, listening) = serve(&relive_toml, &data);
    let _procs = Procs(vec![collector]);
    let es = listening["listening"]["es_bulk"]
        .as_str()
        .unwrap()
        .to_string();
    let otlp = listening["listening"]["otlp"].as_str().unwrap().to_string();
    let script = format!(
        r#"
import logging
from elasticsearch import Elasticsearch, helpers
es = Elasticsearch("http://{es}")
assert es.info()["version"]["number"].startswith("8."), es.info()
docs = [{{"_op_type": "create", "_index": "relive-events", "_id": f"NODE-A:vmms:{{i}}",
         "_source": {{"@timestamp": "2026-11-22T19:16:18Z",
                     "winlog": {{"event_id": 21502, "computer_name": "NODE-A", "record_id": i,
                                 "channel": "Microsoft-Windows-Hyper-V-VMMS-Admin"}},
                     "message": f"Live migration of 'VM{{i}}' failed. (0x80072746)"}}}} for i in range(50)]
ok, errors = helpers.bulk(es, docs)
assert ok == 50 and not errors, (ok, errors)

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.resources import Resource
provider = LoggerProvider(resource=Resource.create({{"service.name": "relive-agent", "host.name": "NODE-B"}}))
provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint="http://{otlp}/v1/logs")))
log = logging.getLogger("Microsoft-Windows-Hyper-V-VMMS-Admin")
log.addHandler(LoggingHandler(logger_provider=provider))
log.setLevel(logging.INFO)
for i in range(5):
    log.error("Failed to receive data for a Virtual Machine migration (0x80072746).",
              extra={{"winlog.event_id": 21066, "winlog.channel": "Microsoft-Windows-Hyper-V-VMMS-Admin",
                      "winlog.record_id": 9000 + i}})
provider.shutdown()
print("sent")
"#
    );
    run_python(&script);
    assert_eq!(wait_count(&data, 55, Duration::from_secs(20)), 55);
    let index = index::EventIndex::open(&data.join("index")).unwrap();
    let hits = index
        .search(&index::SearchRequest::new("event_id:21066"))
        .unwrap();
    assert_eq!(hits.total, 5);
    let e: serde_json::Value = serde_json::from_str(&hits.hits[0].json).unwrap();
    assert_eq!(e["host"]["name"], "NODE-B", "{e}");
    assert_eq!(
        e["winlog"]["channel"],
        "Microsoft-Windows-Hyper-V-VMMS-Admin"
    );
    let hits = index
        .search(&index::SearchRequest::new("event_id:21502"))
        .unwrap();
    assert_eq!(hits.total, 50);
    drop(TcpStream::connect(es));
}

fn rsyslog_conf(work: &Path, fwd_in: u16, es_in: u16, syslog: &str, es: &str) -> String {
    let (syslog_host, syslog_port) = syslog.rsplit_once(':').unwrap();
    let (es_host, es_port) = es.rsplit_once(':').unwrap();
    format!(
        r#"global(workDirectory="{work}")
module(load="imtcp")
module(load="omelasticsearch")
input(type="imtcp" port="{fwd_in}" address="127.0.0.1" ruleset="fwd")
input(type="imtcp" port="{es_in}" address="127.0.0.1" ruleset="es")
template(name="ecsjson" type="list" option.jsonf="on") {{
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host.name" name="hostname" format="jsonf")
  property(outname="log.syslog.appname" name="app-name" format="jsonf")
  property(outname="log.syslog.severity.code" name="syslogseverity" format="jsonf" datatype="number")
  property(outname="message" name="msg" format="jsonf")
}}
ruleset(name="fwd") {{
  action(type="omfwd" target="{syslog_host}" port="{syslog_port}" protocol="tcp"
         template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
}}
ruleset(name="es") {{
  action(type="omelasticsearch" server="{es_host}" serverport="{es_port}"
         searchIndex="relive-events" template="ecsjson" bulkmode="on"
         errorFile="{work}/es-errors.json")
}}
"#,
        work = work.display()
    )
}

fn run_python(script: &str) {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hits(data: &Path, query: &str) -> usize {
    index::EventIndex::open(&data.join("index"))
        .and_then(|i| i.search(&index::SearchRequest::new(query)))
        .map_or(0, |h| h.total)
}

fn wait_hits(data: &Path, query: &str, want: usize) -> usize {
    let start = Instant::now();
    let mut n = hits(data, query);
    while n < want && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
        n = hits(data, query);
    }
    n
}

/// rsyslog (`omfwd` octet-counted and `omelasticsearch`), opensearch-py,
/// pylogbeat (Lumberjack v2) and a file dropped into a watched folder, all
/// into one `relive serve`.
#[test]
fn rsyslog_opensearch_py_pylogbeat_and_a_watched_folder_reach_the_index() {
    for m in ["opensearchpy", "pylogbeat"] {
        assert!(
            python_ok(m),
            "python3 module {m} is required (scripts/test installs it)"
        );
    }
    let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("rsyslogd is required (scripts/test installs rsyslog)");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let drop_dir = dir.path().join("drop");
    std::fs::create_dir_all(&drop_dir).unwrap();
    let relive_toml = dir.path().join("relive.toml");
    std::fs::write(
        &relive_toml,
        format!(
            "[receivers.agent]\nenabled = false\n[receivers.syslog]\ntcp = \"127.0.0.1:0\"\nudp = \"127.0.0.1:0\"\n\
             [receivers.es_bulk]\nlisten = \"127.0.0.1:0\"\n[receivers.otlp]\nenabled = false\n\
             [receivers.lumberjack]\nlisten = \"127.0.0.1:0\"\n\
             [receivers.watch]\npaths = [{:?}]\n[collector]\ncommit_ms = 100\n",
            drop_dir.display().to_string()
        ),
    )
    .unwrap();
    let (collector, listening) = serve(&relive_toml, &data);
    let mut procs = Procs(vec![collector]);
    let addr = |k: &str| listening["listening"][k].as_str().unwrap().to_string();
    let (syslog, es, lumberjack) = (addr("syslog_tcp"), addr("es_bulk"), addr("lumberjack"));

    // Beats' Logstash protocol: two windows, acked only once durable
    // (pylogbeat's send returns after the ack).
    let (lj_host, lj_port) = lumberjack.rsplit_once(':').unwrap();
    run_python(&format!(
        r#"
from pylogbeat import PyLogBeatClient
def ev(i):
    return {{"@timestamp": "2026-11-22T19:20:%02d.000Z" % (i % 60), "message": "Live migration of 'LJ%d' failed." % i,
            "host": {{"name": "NODE-LJ"}},
            "winlog": {{"event_id": 21502, "channel": "Microsoft-Windows-Hyper-V-VMMS-Admin", "record_id": 100 + i,
                        "computer_name": "NODE-LJ"}}}}
with PyLogBeatClient("{lj_host}", {lj_port}, ssl_enable=False, timeout=10) as client:
    client.send([ev(i) for i in range(20)])
    client.send([ev(i) for i in range(20, 30)])
print("sent")
"#
    ));
    let n = wait_hits(&data, "host:NODE-LJ", 30);
    assert_eq!(n, 30);

    // opensearch-py's bulk helper (no product check, `application/json`).
    let (es_host, es_port) = es.rsplit_once(':').unwrap();
    run_python(&format!(
        r#"
from opensearchpy import OpenSearch, helpers
client = OpenSearch(hosts=[{{"host": "{es_host}", "port": {es_port}}}])
docs = [{{"_index": "relive-events", "_source": {{"@timestamp": "2026-11-22T19:21:00Z",
          "winlog": {{"event_id": 21066, "computer_name": "NODE-OS", "record_id": i,
                      "channel": "Microsoft-Windows-Hyper-V-VMMS-Admin"}},
          "message": "Failed to receive data for a Virtual Machine migration (0x80072746)."}}}} for i in range(20)]
ok, errors = helpers.bulk(client, docs)
assert ok == 20 and not errors, (ok, errors)
"#
    ));
    assert_eq!(wait_hits(&data, "host:NODE-OS", 20), 20);

    // rsyslog relaying what `logger` sends it: omfwd to the syslog receiver,
    // omelasticsearch to `_bulk`.
    let work = dir.path().join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let (fwd_in, es_in) = (free_port(), free_port());
    let conf = work.join("rsyslog.conf");
    std::fs::write(&conf, rsyslog_conf(&work, fwd_in, es_in, &syslog, &es)).unwrap();
    let rsyslog = Command::new(rsyslogd)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rsyslogd");
    procs.0.push(rsyslog);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", es_in)).is_err()
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (port, marker) in [(fwd_in, "viafwd"), (es_in, "viaes")] {
        for i in 0..5 {
            let status = Command::new("logger")
                .args(["--tcp", "-n", "127.0.0.1", "-P", &port.to_string()])
                .args(["-t", "Hyper-V-VMMS", "-p", "user.err"])
                .arg(format!(
                    "Virtual machine migration operation for VM{i} failed at migration source NODE-A. {marker} {i}"
                ))
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    assert_eq!(wait_hits(&data, "message:viafwd", 5), 5, "omfwd");
    assert_eq!(wait_hits(&data, "message:viaes", 5), 5, "omelasticsearch");

    // A file dropped into the watched folder.
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/failover-threshold/HVN-11");
    let dropped = [
        "events-System-HVN-11.xml",
        "winlogbeat-HyperV-HVN-11.ndjson",
    ];
    for name in dropped {
        std::fs::copy(samples.join(name), drop_dir.join(name)).unwrap();
    }
    let parsed = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["parse", "--json"])
        .arg(&drop_dir)
        .output()
        .unwrap();
    let expected = String::from_utf8_lossy(&parsed.stdout).lines().count();
    assert!(expected > 10, "{expected}");
    let total = 30 + 20 + 10 + expected;
    assert_eq!(wait_count(&data, total, Duration::from_secs(30)), total);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&data), total, "nothing counted twice");
}

/// Who may send: HTTP receivers take Basic, ApiKey or header credentials
/// from the real Elasticsearch and OpenTelemetry clients and refuse
/// requests without them; syslog drops sources outside its allow-list;
/// Lumberjack (pylogbeat) and the agent protocol (relive agent) take only
/// clients whose certificate the configured CA signed; and a receiver on
/// a non-loopback address without any of these does not start.
#[test]
fn receivers_check_who_sends_with_the_real_clients() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ca, cert, key) = crate::certificates(dir.path());
    let (client_cert, client_key) = crate::client_certificate(dir.path(), "beats");
    // A certificate from a CA the collector does not trust.
    let rogue = dir.path().join("rogue");
    std::fs::create_dir_all(&rogue).unwrap();
    crate::certificates(&rogue);
    let (rogue_cert, rogue_key) = crate::client_certificate(&rogue, "rogue");
    let syslog_port = crate::free_port();
    let relive_toml = dir.path().join("relive.toml");
    std::fs::write(
        &relive_toml,
        format!(
            "[receivers.agent]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca}\"\n\
             [receivers.syslog]\ntcp = \"127.0.0.1:{syslog_port}\"\nudp = \"127.0.0.1:{syslog_port}\"\nallow = [\"10.0.0.0/8\"]\n\
             [receivers.es_bulk]\nlisten = \"127.0.0.1:0\"\n\
             [receivers.es_bulk.auth]\nbasic = {{ beats = \"beats-password-123\" }}\napi_keys = [\"winlogbeat:api-key-secret-456\"]\n\
             [receivers.otlp]\nlisten = \"127.0.0.1:0\"\n[receivers.otlp.auth]\nheaders = {{ \"x-api-key\" = \"otlp-secret-789\" }}\n\
             [receivers.lumberjack]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca}\"\n\
             [collector]\ncommit_ms = 100\n",
            cert = cert.display(),
            key = key.display(),
            ca = ca.display()
        ),
    )
    .unwrap();
    let (collector, listening) = serve(&relive_toml, &data);
    let mut procs = Procs(vec![collector]);
    let addr = |k: &str| listening["listening"][k].as_str().unwrap().to_string();
    let (es, otlp, lumberjack, agent_addr) = (
        addr("es_bulk"),
        addr("otlp"),
        addr("lumberjack"),
        addr("agent"),
    );
    let (lj_host, lj_port) = lumberjack.rsplit_once(':').unwrap();
    run_python(&format!(
        r#"
import logging
from elasticsearch import Elasticsearch, helpers, AuthenticationException
def docs(prefix, n):
    return [{{"_op_type": "create", "_index": "relive-events", "_source": {{"@timestamp": "2026-11-22T19:16:18Z",
             "host": {{"name": prefix}}, "winlog": {{"event_id": 21502, "record_id": i, "channel": "Microsoft-Windows-Hyper-V-VMMS-Admin"}},
             "message": "Live migration of 'VM%d' failed." % i}}}} for i in range(n)]
ok, _ = helpers.bulk(Elasticsearch("http://{es}", basic_auth=("beats", "beats-password-123")), docs("NODE-BASIC", 10))
assert ok == 10
ok, _ = helpers.bulk(Elasticsearch("http://{es}", api_key=("winlogbeat", "api-key-secret-456")), docs("NODE-APIKEY", 10))
assert ok == 10
for client in [Elasticsearch("http://{es}"), Elasticsearch("http://{es}", basic_auth=("beats", "wrong")),
               Elasticsearch("http://{es}", api_key=("winlogbeat", "wrong"))]:
    try:
        helpers.bulk(client, docs("NODE-NOBODY", 5))
        raise SystemExit("accepted without valid credentials")
    except AuthenticationException:
        pass

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import LogExportResult
from opentelemetry.sdk.resources import Resource
def otlp(headers, host):
    exporter = OTLPLogExporter(endpoint="http://{otlp}/v1/logs", headers=headers)
    provider = LoggerProvider(resource=Resource.create({{"host.name": host}}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log = logging.getLogger(host)
    log.addHandler(LoggingHandler(logger_provider=provider))
    for i in range(3):
        log.error("Failed to receive data for a Virtual Machine migration (0x80072746).",
                  extra={{"winlog.event_id": 21066, "winlog.record_id": 100 + i}})
    provider.shutdown()
otlp({{"x-api-key": "otlp-secret-789"}}, "NODE-OTLP")
otlp({{}}, "NODE-OTLP-NOBODY")

from pylogbeat import PyLogBeatClient
def lj(cert, key, host):
    with PyLogBeatClient("{lj_host}", {lj_port}, ssl_enable=True, ssl_verify=True, ca_certs="{ca}",
                         certfile=cert, keyfile=key, timeout=10) as client:
        client.send([{{"@timestamp": "2026-11-22T19:20:00.000Z", "message": "Live migration of 'LJ' failed.",
                      "host": {{"name": host}}, "winlog": {{"event_id": 21502, "record_id": 7, "channel": "Microsoft-Windows-Hyper-V-VMMS-Admin"}}}}])
lj("{client_cert}", "{client_key}", "NODE-LJ")
try:
    lj("{rogue_cert}", "{rogue_key}", "NODE-LJ-ROGUE")
    raise SystemExit("a certificate from another CA was accepted")
except SystemExit:
    raise
except Exception:
    pass
print("sent")
"#,
        ca = ca.display(),
        client_cert = client_cert.display(),
        client_key = client_key.display(),
        rogue_cert = rogue_cert.display(),
        rogue_key = rogue_key.display(),
    ));
    // Syslog from loopback, which is outside the allow-list: dropped.
    let _ = Command::new("logger")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &syslog_port.to_string(),
            "--tcp",
            "--rfc5424",
            "-t",
            "relive-test",
        ])
        .arg("NODE-SYSLOG Live migration of 'SYS1' failed.")
        .status();
    // The agent protocol: a client certificate from the trusted CA.
    let log = dir.path().join("agent.ndjson");
    std::fs::write(
        &log,
        "{\"@timestamp\":\"2026-11-22T19:30:00Z\",\"host\":{\"name\":\"NODE-AGENT\"},\"winlog\":{\"channel\":\"Microsoft-Windows-Hyper-V-VMMS-Admin\",\"event_id\":21502,\"record_id\":1},\"message\":\"Live migration of 'AG1' failed.\"}\n",
    )
    .unwrap();
    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "collector = \"{agent_addr}\"\ntoken = \"\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nserver_name = \"127.0.0.1\"\n\
             state_dir = \"{}/agent-state\"\npoll_ms = 50\n[[watch]]\npaths = [\"{}\"]\n",
            ca.display(),
            client_cert.display(),
            client_key.display(),
            dir.path().display(),
            log.display()
        ),
    )
    .unwrap();
    procs.0.push(agent(&agent_toml));
    assert_eq!(
        wait_hits(&data, "host:NODE-AGENT", 1),
        1,
        "the agent with a trusted client certificate"
    );
    assert_eq!(wait_hits(&data, "host:NODE-BASIC", 10), 10);
    assert_eq!(wait_hits(&data, "host:NODE-APIKEY", 10), 10);
    assert_eq!(wait_hits(&data, "host:NODE-OTLP", 3), 3);
    assert_eq!(wait_hits(&data, "host:NODE-LJ", 1), 1);
    std::thread::sleep(Duration::from_secs(1));
    for refused in [
        "NODE-NOBODY",
        "NODE-OTLP-NOBODY",
        "NODE-LJ-ROGUE",
        "NODE-SYSLOG",
    ] {
        assert_eq!(
            hits(&data, &format!("host:{refused}")),
            0,
            "{refused} was let in"
        );
    }
    assert_eq!(
        hits(&data, "message:SYS1"),
        0,
        "syslog from outside the allow-list"
    );
    drop(procs);

    // On an address other than loopback, a receiver without a way to tell
    // who sends refuses to start (checked before anything binds).
    let exposed = dir.path().join("exposed.toml");
    std::fs::write(
        &exposed,
        "[receivers.agent]\nenabled = false\n[receivers.syslog]\nenabled = false\n[receivers.otlp]\nenabled = false\n\
         [receivers.lumberjack]\nenabled = false\n[receivers.es_bulk]\nlisten = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(dir.path().join("data2"))
        .args(["serve", "--http-listen", "127.0.0.1:0", "--config"])
        .arg(&exposed)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("not loopback") && text.contains("allow_unauthenticated"),
        "{text}"
    );
}

/// The OpenTelemetry SDK's exporter with gzip, carrying a body map shaped
/// like the collector's `windowseventlog` receiver's (event_id.id,
/// provider.name, system_time, computer, channel, record_id, event_data)
/// as protobuf: the event comes out with those fields.
#[test]
fn otlp_protobuf_with_gzip_and_a_windowseventlog_body_map() {
    assert!(
        python_ok("opentelemetry.exporter.otlp.proto.http"),
        "python3 module opentelemetry-exporter-otlp-proto-http is required (scripts/test installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let relive_toml = dir.path().join("relive.toml");
    std::fs::write(
        &relive_toml,
        "[receivers.agent]\nenabled = false\n[receivers.syslog]\nenabled = false\n\
         [receivers.es_bulk]\nenabled = false\n[receivers.otlp]\nlisten = \"127.0.0.1:0\"\n\
         [receivers.lumberjack]\nenabled = false\n[collector]\ncommit_ms = 100\n",
    )
    .unwrap();
    let (collector, listening) = serve(&relive_toml, &data);
    let _procs = Procs(vec![collector]);
    let otlp = listening["listening"]["otlp"].as_str().unwrap().to_string();
    run_python(&format!(
        r#"
import logging
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
exporter = OTLPLogExporter(endpoint="http://{otlp}/v1/logs", compression=Compression.Gzip)
provider = LoggerProvider()
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
log = logging.getLogger("windowseventlog")
log.addHandler(LoggingHandler(logger_provider=provider))
log.propagate = False
for i in range(3):
    log.error({{
        "channel": "Microsoft-Windows-Hyper-V-High-Availability-Admin",
        "computer": "NODE-W.example.corp",
        "event_id": {{"id": 21502, "qualifiers": 0}},
        "provider": {{"name": "Microsoft-Windows-Hyper-V-High-Availability"}},
        "record_id": 4240 + i,
        "level": "Error",
        "system_time": "2026-11-22T19:40:0%d.000000000Z" % i,
        "message": "Live migration of 'Virtual Machine WIN%d' failed." % i,
        "event_data": {{"data": [{{"VmName": "WIN%d" % i}}]}},
    }})
provider.shutdown()
print("sent")
"#
    ));
    assert_eq!(wait_hits(&data, "host:NODE-W", 3), 3);
    let index = index::EventIndex::open(&data.join("index")).unwrap();
    let hits = index
        .search(&index::SearchRequest::new("host:NODE-W AND record_id:4241"))
        .unwrap();
    assert_eq!(hits.total, 1);
    let e: serde_json::Value = serde_json::from_str(&hits.hits[0].json).unwrap();
    assert_eq!(e["winlog"]["event_id"], 21502, "{e}");
    assert_eq!(
        e["winlog"]["provider_name"],
        "Microsoft-Windows-Hyper-V-High-Availability"
    );
    assert_eq!(
        e["winlog"]["channel"],
        "Microsoft-Windows-Hyper-V-High-Availability-Admin"
    );
    // The receiver's time (system_time), at its nanosecond precision.
    assert_eq!(e["@timestamp"], "2026-11-22T19:40:01.000000000Z", "{e}");
    assert_eq!(e["winlog"]["event_data"]["VmName"], "WIN1");
    assert_eq!(
        e["message"],
        "Live migration of 'Virtual Machine WIN1' failed."
    );
}
