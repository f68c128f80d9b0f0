//! The README's configuration blocks for shippers, as written: the
//! collector's receivers run with them, rsyslogd runs with its block, and
//! what Winlogbeat, NXLog and the OpenTelemetry collector send is sent with
//! the settings of theirs; every event must be searchable.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Procs};

/// The code block after each `<!-- check: NAME -->` line, by name.
fn blocks() -> BTreeMap<String, String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut out = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- check: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{name}: no code block after the marker"
        );
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        out.insert(name.to_string(), body.join("\n") + "\n");
    }
    out
}

fn hits(data: &Path, query: &str) -> usize {
    index::EventIndex::open(&data.join("index"))
        .and_then(|i| i.search(&index::SearchRequest::new(query)))
        .map_or(0, |h| h.total)
}

#[test]
fn the_readmes_shipper_configurations_reach_the_index() {
    let blocks = blocks();
    for name in [
        "relive.toml",
        "winlogbeat.yml",
        "nxlog.conf",
        "otelcol.yaml",
        "rsyslog.conf",
        "agent.toml",
    ] {
        assert!(blocks.contains_key(name), "README has no `{name}` block");
    }
    let agent: ingest::agent::AgentConfig = toml::from_str(&blocks["agent.toml"]).unwrap();
    assert!(!agent.watch.is_empty() && !agent.token.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (es, syslog, otlp, relay) = (free_port(), free_port(), free_port(), free_port());
    // The collector as the README configures it, on loopback ports, with
    // this machine added to the syslog allow-list.
    let collector = blocks["relive.toml"].clone();
    assert!(collector.contains("0.0.0.0:9200") && collector.contains("api_keys"));
    let collector = collector
        .replace("0.0.0.0:9200", &format!("127.0.0.1:{es}"))
        .replace("0.0.0.0:1514", &format!("127.0.0.1:{syslog}"))
        .replace("0.0.0.0:4318", &format!("127.0.0.1:{otlp}"))
        .replace("allow = [\"", "allow = [\"127.0.0.1/32\", \"")
        + "[receivers.agent]\nlisten = \"127.0.0.1:0\"\n[receivers.lumberjack]\nenabled = false\n\
           [http]\nenabled = false\n[collector]\ncommit_ms = 100\n";
    let config = dir.path().join("relive.toml");
    std::fs::write(&config, collector).unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(&data)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut procs = Procs(vec![serve]);
    assert!(line.contains(&format!("127.0.0.1:{es}")), "{line}");

    // The shippers' blocks, pointed at those ports.
    let to_here = |text: &str| {
        text.replace("relive.example.net:9200", &format!("127.0.0.1:{es}"))
            .replace("relive.example.net:1514", &format!("127.0.0.1:{syslog}"))
            .replace("relive.example.net:4318", &format!("127.0.0.1:{otlp}"))
    };
    for name in ["winlogbeat.yml", "nxlog.conf", "otelcol.yaml"] {
        let text = to_here(&blocks[name]);
        assert!(text.contains("127.0.0.1"), "{name} names no relive address");
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/helpers/readme_shippers.py"))
        .args(["winlogbeat.yml", "nxlog.conf", "otelcol.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // rsyslogd with the README's block: its input on a loopback port, its
    // omfwd at the syslog receiver.
    let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("rsyslogd is required (scripts/test installs rsyslog)");
    let work = dir.path().join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let block = &blocks["rsyslog.conf"];
    assert!(
        block.contains("input(type=\"imtcp\" port=\"514\")"),
        "{block}"
    );
    let conf = format!("global(workDirectory=\"{}\")\n", work.display())
        + &block
            .replace(
                "input(type=\"imtcp\" port=\"514\")",
                &format!("input(type=\"imtcp\" port=\"{relay}\" address=\"127.0.0.1\")"),
            )
            .replace(
                "target=\"relive.example.net\" port=\"1514\"",
                &format!("target=\"127.0.0.1\" port=\"{syslog}\""),
            );
    std::fs::write(work.join("rsyslog.conf"), conf).unwrap();
    procs.0.push(
        Command::new(rsyslogd)
            .args(["-n", "-f"])
            .arg(work.join("rsyslog.conf"))
            .arg("-i")
            .arg(work.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", relay)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rsyslogd never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = Command::new("logger")
        .args(["--tcp", "-n", "127.0.0.1", "-P", &relay.to_string()])
        .args(["-t", "Hyper-V-VMMS", "-p", "user.err"])
        .arg("Virtual machine migration operation for 'SQL9' failed at migration source. readmersyslog")
        .status()
        .unwrap();
    assert!(sent.success());

    for (query, shipper) in [
        ("message:readmewinlogbeat AND host:wlb-hv01", "Winlogbeat"),
        ("message:readmenxlog AND event_id:21066", "NXLog"),
        (
            "message:readmeotel AND host:otel-hv03",
            "the OpenTelemetry collector",
        ),
        ("message:readmersyslog", "rsyslog"),
    ] {
        let start = Instant::now();
        while hits(&data, query) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "what {shipper} sent is not searchable ({query})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(procs);
}
