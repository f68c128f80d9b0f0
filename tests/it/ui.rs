//! The HTTP API and the web UI through the real binary (`relive ui` over
//! a data folder `relive ingest` filled): tokens, sessions and CSRF, every
//! API operation against its OpenAPI document (schemathesis), `/metrics`
//! through `promtool`, log text that stays text, and the pages in a real
//! Chromium driven by Playwright.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{free_port, relive, Procs};

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A data folder with the seed's incident (shared-storage-path-missing,
/// ADFS1 NODE-B → NODE-A) and the vswitch scenario with its VM renamed to
/// markup.
fn filled(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hostile = dir.join("hostile");
    copy_renamed(
        &root.join("samples/vswitch-mismatch"),
        &hostile,
        "APP-WEB02",
        HOSTILE,
    );
    ingest(
        &data,
        &[&root.join("samples/shared-storage-path-missing"), &hostile],
    );
    data
}

/// `relive ingest` of the folders into `data`; it must succeed.
fn ingest(data: &Path, folders: &[&Path]) {
    let mut args = vec!["ingest".to_string()];
    args.extend(folders.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = relive(data, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_renamed(from: &Path, to: &Path, old: &str, new: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_renamed(&entry.path(), &target, old, new);
        } else if entry.file_name() != "expected.json" && entry.file_name() != "README.md" {
            let bytes = std::fs::read(entry.path()).unwrap();
            // XML (a file, or the XML view in an Event Viewer copy) needs
            // the markup escaped to stay well-formed; the name it carries
            // is the same.
            let xml = entry.path().extension().is_some_and(|e| e == "xml");
            let rename = |text: &str| -> String {
                let mut in_xml = xml;
                let mut out = String::new();
                for line in text.split_inclusive('\n') {
                    in_xml |= line.contains("<Event ") || line.contains("<Event>");
                    if in_xml {
                        out.push_str(
                            &line.replace(old, &new.replace('<', "&lt;").replace('>', "&gt;")),
                        );
                    } else {
                        out.push_str(&line.replace(old, new));
                    }
                    in_xml &= xml || !line.contains("</Event>");
                }
                out
            };
            // Exports in UTF-16 (Event Viewer, PowerShell) stay UTF-16.
            let out = if bytes.starts_with(&[0xFF, 0xFE]) {
                let units: Vec<u16> = bytes[2..]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let text = rename(&String::from_utf16(&units).unwrap());
                let mut out = vec![0xFF, 0xFE];
                out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
                out
            } else {
                rename(&String::from_utf8(bytes).unwrap()).into_bytes()
            };
            std::fs::write(target, out).unwrap();
        }
    }
}

/// A running `relive ui`: its address and tokens.
pub(crate) struct Ui {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) read: String,
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_ui(data: &Path, extra: &[&str]) -> Ui {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(data)
        .args(["ui", "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relive ui");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("relive ui printed `{line}`: {e}"));
    let base = format!("http://{}", started["listening"]["http"].as_str().unwrap());
    let tokens_path = started["tokens"].as_str().expect("a generated token file");
    let tokens: toml::Table = std::fs::read_to_string(tokens_path)
        .unwrap()
        .parse()
        .unwrap();
    Ui {
        child,
        base,
        admin: tokens["admin_token"].as_str().unwrap().to_string(),
        read: tokens["read_token"].as_str().unwrap().to_string(),
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn get(ui: &Ui, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
    let mut r = client().get(format!("{}{path}", ui.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap()
}

fn get_json(ui: &Ui, path: &str, token: &str) -> Value {
    let r = get(ui, path, Some(token));
    let status = r.status();
    let body = r.text().unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// An action of the incident waiting for approval, as the engine records it.
fn awaiting_approval(data: &Path, incident: &str) -> String {
    let key = format!("{incident}/fix/1/1");
    let audit = remediate::audit::AuditLog::open(data).unwrap();
    audit
        .append(&remediate::audit::Entry {
            at: chrono::Utc::now(),
            incident: incident.to_string(),
            key: Some(key.clone()),
            what: remediate::audit::What::AwaitingApproval,
            who: Some("relive".into()),
            detail: "create the SharedStoragePath folder on the cluster volume".into(),
            class: Some(remediate::plan::Class::Approval),
        })
        .unwrap();
    key
}

fn seed_incident(ui: &Ui) -> Value {
    let list = get_json(
        ui,
        "/api/v1/incidents?root_cause=shared-storage-path-missing",
        &ui.read,
    );
    let incidents = list["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{list:#}");
    incidents[0].clone()
}

#[test]
fn the_api_answers_with_tokens_only_and_keeps_log_text_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let data = filled(dir.path());
    let ui = start_ui(&data, &[]);

    // Only /healthz is open; the rest wants a token.
    let health = get(&ui, "/healthz", None);
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().unwrap(), json!({"status": "ok"}));
    let denied = get(&ui, "/api/v1/incidents", None);
    assert_eq!(denied.status(), 401);
    assert!(denied.headers().contains_key("www-authenticate"));
    assert_eq!(get(&ui, "/api/v1/incidents", Some("wrong")).status(), 401);
    assert_eq!(get(&ui, "/metrics", None).status(), 401);
    let page = get(&ui, "/incidents", None);
    assert_eq!(page.status(), 303, "a browser is sent to the login form");
    assert_eq!(
        page.headers()["location"].to_str().unwrap(),
        "/login?next=/incidents"
    );

    // The seed's incident with its three lanes.
    let seed = seed_incident(&ui);
    assert_eq!(seed["vm_name"], "ADFS1");
    let id = seed["id"].as_str().unwrap().to_string();
    let x = get_json(&ui, &format!("/api/v1/incidents/{id}/explain"), &ui.read);
    let evidence = x["incident"]["evidence"].as_array().unwrap();
    let lanes = x["lanes"].as_array().unwrap();
    assert_eq!(evidence.len(), lanes.len());
    let in_lane = |lane: &str| -> Vec<(String, u64)> {
        evidence
            .iter()
            .zip(lanes)
            .filter(|(_, l)| *l == lane)
            .map(|(e, _)| {
                (
                    e["host"].as_str().unwrap().to_string(),
                    e["event_id"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let source = in_lane("source");
    let destination = in_lane("destination");
    let cluster = in_lane("cluster");
    assert!(
        source
            .iter()
            .any(|(h, id)| h.starts_with("NODE-B") && *id == 21502),
        "the source lane has NODE-B's 21502: {source:?}"
    );
    assert!(
        destination.iter().all(|(h, _)| h.starts_with("NODE-A"))
            && [21066, 1106]
                .iter()
                .all(|id| destination.iter().any(|(_, e)| e == id)),
        "the destination lane has NODE-A's 21066 and 1106: {destination:?}"
    );
    let cluster_channels: Vec<&str> = evidence
        .iter()
        .zip(lanes)
        .filter(|(_, l)| *l == "cluster")
        .map(|(e, _)| e["channel"].as_str().unwrap())
        .collect();
    assert!(
        !cluster.is_empty() && cluster_channels.iter().all(|c| *c == "cluster.log"),
        "the cluster lane has the cluster log's failed migration: {cluster:?} {cluster_channels:?}"
    );
    assert!(x["why"]["explanation"].as_str().unwrap().len() > 40);
    // Titles read with the plan's values; commands keep placeholders.
    let retry = x["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["stage"] == "retry")
        .expect("a retry action");
    assert!(
        retry["title"].as_str().unwrap().contains("ADFS1"),
        "{retry}"
    );
    assert!(!x["incident"]["remediation"]["steps"]
        .as_array()
        .unwrap()
        .is_empty());

    // Search: hits, counts, a histogram that adds up, a query's caret.
    let r = get_json(
        &ui,
        "/api/v1/search?q=event_id:21502&count_by=host,event_id&histogram=auto&limit=5",
        &ui.read,
    );
    let total = r["total"].as_u64().unwrap();
    assert!(total >= 3, "{r:#}");
    assert!(r["hits"].as_array().unwrap().len() <= 5);
    for hit in r["hits"].as_array().unwrap() {
        assert_eq!(hit["event"]["winlog"]["event_id"], 21502);
    }
    let by_event: u64 = r["counts"]["event_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(by_event, total);
    let charted: u64 = r["histogram"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(charted, total, "every match is in one bar");
    let bad = get(&ui, "/api/v1/search?q=event_id:(21502", Some(&ui.read));
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().unwrap();
    assert!(bad["position"].is_u64(), "{bad}");
    assert_eq!(
        get(&ui, "/api/v1/search?limit=100000", Some(&ui.read)).status(),
        400,
        "no silent cap: too large a limit is refused"
    );

    // The read-only token changes nothing; the admin token does.
    let silence = json!({"matchers": ["vm=ADFS1"], "duration": "2h", "comment": "CSV rebuild"});
    let post = |path: &str, token: &str, body: &Value| {
        client()
            .post(format!("{}{path}", ui.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .unwrap()
    };
    assert_eq!(post("/api/v1/silences", &ui.read, &silence).status(), 403);
    let added = post("/api/v1/silences", &ui.admin, &silence);
    assert_eq!(added.status(), 201);
    let added: Value = added.json().unwrap();
    let sid = added["id"].as_str().unwrap();
    let listed = get_json(&ui, "/api/v1/silences", &ui.read);
    assert_eq!(listed["silences"][0]["state"], "active");
    let expire = |sid: &str| {
        client()
            .delete(format!("{}/api/v1/silences/{sid}", ui.base))
            .bearer_auth(&ui.admin)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(expire(sid), 200);
    assert_eq!(expire(sid), 409, "already expired");
    assert_eq!(expire("nosuchsilence"), 404);

    // Approvals through the API go to the same audit log the engine reads.
    let key = awaiting_approval(&data, &id);
    assert_eq!(
        post("/api/v1/actions/nokey/approve", &ui.admin, &json!({})).status(),
        404
    );
    let url = format!("/api/v1/actions/{}/approve", key.replace('/', "%2F"));
    assert_eq!(post(&url, &ui.read, &json!({})).status(), 403);
    let approved = post(&url, &ui.admin, &json!({"by": "alice", "comment": "go"}));
    assert_eq!(approved.status(), 200);
    assert_eq!(
        post(&url, &ui.admin, &json!({})).status(),
        409,
        "decided once"
    );
    let read = remediate::audit::read(&data.join("remediation/audit.jsonl")).unwrap();
    let last = read.entries.last().unwrap();
    assert_eq!(last.what, remediate::audit::What::Approved);
    assert!(last.who.as_deref().unwrap().starts_with("alice via admin"));
    let x = get_json(&ui, &format!("/api/v1/incidents/{id}/explain"), &ui.read);
    let action = x["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key.as_str())
        .unwrap();
    assert_eq!(action["state"], "approved");

    // A browser: login form, session cookie, CSRF on changes.
    let login = client()
        .post(format!("{}/login", ui.base))
        .form(&[("token", ui.admin.as_str()), ("next", "/incidents")])
        .send()
        .unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/incidents");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_string();
    let bad_login = client()
        .post(format!("{}/login", ui.base))
        .form(&[("token", "nope")])
        .send()
        .unwrap();
    assert_eq!(bad_login.status(), 401);
    let page = client()
        .get(format!("{}/incidents", ui.base))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    let html = page.text().unwrap();
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the hostile VM is listed as text"
    );
    assert!(!html.contains(HOSTILE), "and never as markup");
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let with_cookie = |csrf: Option<&str>| {
        let mut r = client()
            .post(format!("{}/api/v1/silences", ui.base))
            .header("cookie", &session)
            .json(&silence);
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send().unwrap().status()
    };
    assert_eq!(with_cookie(None), 403, "no CSRF token, no change");
    assert_eq!(with_cookie(Some("0000")), 403);
    assert_eq!(with_cookie(Some(&csrf)), 201);
    let hostile_incident = get_json(&ui, "/api/v1/incidents?sort=vm", &ui.read)["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["vm_name"] == HOSTILE)
        .cloned()
        .expect("an incident for the VM named with markup");
    assert_eq!(
        hostile_incident["root_cause"], "vswitch-mismatch",
        "a name with markup is still the VM's name: {hostile_incident}"
    );
    let page = client()
        .get(format!(
            "{}/incidents/{}",
            ui.base,
            hostile_incident["id"].as_str().unwrap()
        ))
        .header("cookie", &session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!page.contains(HOSTILE) && page.contains("&lt;img src=x"));

    // /metrics passes promtool.
    let metrics = get(&ui, "/metrics", Some(&ui.read)).text().unwrap();
    assert!(
        metrics.contains("relive_incidents_open{root_cause=\"shared-storage-path-missing\"} 1"),
        "{metrics}"
    );
    promtool(&metrics);

    // Every operation against the document, by schemathesis.
    let doc = dir.path().join("openapi.json");
    std::fs::write(
        &doc,
        get(&ui, "/openapi.json", Some(&ui.read)).text().unwrap(),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new("schemathesis")
        .arg("run")
        .arg(&doc)
        .args(["--url", &ui.base])
        .args(["--header", &format!("Authorization: Bearer {}", ui.admin)])
        // Every check but positive_data_acceptance: a string the schema
        // allows can still be a query with a syntax error or a time that
        // does not parse, which is a 400 with the reason, by design.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "25"])
        // The event stream never ends: `the_event_stream_tells_of_a_new_incident`.
        .args(["--exclude-path", "/api/v1/stream"])
        .args(["--request-timeout", "20"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path())
        .output()
        .expect("schemathesis (PyPI; ./scripts/test installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems after {:?}:\n{said}",
        started.elapsed()
    );
}

/// Where `./scripts/test` installs playwright-core (npm).
fn node_modules() -> PathBuf {
    match std::env::var_os("RELIVE_NODE_DIR") {
        Some(dir) => PathBuf::from(dir).join("node_modules"),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/relive-node/node_modules"),
    }
}

#[test]
fn the_pages_work_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let data = filled(dir.path());
    let ui = start_ui(&data, &[]);
    let seed = seed_incident(&ui);
    let id = seed["id"].as_str().unwrap().to_string();
    let key = awaiting_approval(&data, &id);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&out_dir);
    let modules = node_modules();
    assert!(
        modules.join("playwright-core").exists(),
        "playwright-core is not installed in {} (./scripts/test installs it)",
        modules.display()
    );
    let started = Instant::now();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/helpers/ui_browser.js"))
        .env("NODE_PATH", &modules)
        .env("RELIVE_URL", &ui.base)
        .env("RELIVE_TOKEN", &ui.admin)
        .env("RELIVE_OUT", &out_dir)
        .env("RELIVE_SEED_ID", &id)
        .env("RELIVE_APPROVE_KEY", &key)
        .env("RELIVE_HOSTILE", HOSTILE)
        .env("RELIVE_BIN", env!("CARGO_BIN_EXE_relive"))
        .env("RELIVE_DATA", &data)
        .env(
            "RELIVE_NEW_LOGS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/migration-disabled"),
        )
        .current_dir(dir.path())
        .output()
        .expect("node");
    drop(ui);
    assert!(
        out.status.success(),
        "the browser test failed after {:?} (screenshots in {}):\n{}{}",
        started.elapsed(),
        out_dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in [
        "login.png",
        "incidents.png",
        "search.png",
        "incident.png",
        "incident-approved.png",
        "incident-phone.png",
    ] {
        let bytes = std::fs::read(out_dir.join(shot)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5000,
            "{shot}"
        );
    }
    // README's pictures come from here: RELIVE_README_SCREENSHOTS=1 copies them.
    if std::env::var_os("RELIVE_README_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        for shot in ["incident.png", "search.png"] {
            std::fs::copy(out_dir.join(shot), docs.join(shot)).unwrap();
        }
    }
}

/// The live stream: a change made while a client listens reaches it.
#[test]
fn the_event_stream_tells_of_a_new_incident() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ui = start_ui(&data, &[]);
    let addr = ui.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /api/v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        ui.read
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Give the watcher its first look before the change.
    std::thread::sleep(Duration::from_millis(600));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = relive(
        &data,
        &[
            "ingest",
            root.join("samples/vswitch-mismatch").to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let text = loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!("the stream ended: {}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
        let text = String::from_utf8_lossy(&got).to_string();
        if text.contains("event: opened") && text.contains("vswitch-mismatch") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 10 s without the opened event: {text}"
        );
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");
}

/// Two real relive hosts behind `[remediation.hosts]`: the API lists their
/// VMs, starts a live migration and follows its progress to the end.
#[test]
fn migrations_start_and_report_progress_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (m1, c1, m2, c2) = (free_port(), free_port(), free_port(), free_port());
    let logs = dir.path().join("logs");
    let host = |name: &str, listen: u16, control: u16, peer: &str, peer_port: u16, vm: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"name = "{name}"
listen = "127.0.0.1:{listen}"
control = "127.0.0.1:{control}"
state_dir = "{logs}/../{name}-state"
event_log = "{logs}/{name}/events.ndjson"
metrics_log = "{logs}/{name}/migrations.ndjson"
switches = ["External"]
[peers]
{peer} = "127.0.0.1:{peer_port}"
{vm}
{auth}"#,
                logs = logs.display(),
                auth = crate::host_auth()
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_relive"))
            .args(["host", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start relive host")
    };
    let vm = r#"[[vm]]
name = "APP1"
memory_mib = 64
fill_mib = 32
nics = [{ switch = "External" }]
workload = { pages = 4096, rate = 20000 }"#;
    let _hosts = Procs(vec![
        host("HV01", m1, c1, "HV02", m2, vm),
        host("HV02", m2, c2, "HV01", m1, ""),
    ]);
    for port in [c1, c2] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "host control port {port} never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let config = dir.path().join("relive.toml");
    std::fs::write(
        &config,
        format!(
            "[remediation.hosts]\nHV01 = {{ control = \"127.0.0.1:{c1}\", token = \"{t}\" }}\nHV02 = {{ control = \"127.0.0.1:{c2}\", token = \"{t}\" }}\n",
            t = crate::HOST_SECRET
        ),
    )
    .unwrap();
    let ui = start_ui(&data, &["--config", config.to_str().unwrap()]);
    let listed = get_json(&ui, "/api/v1/migrations", &ui.read);
    let hosts = listed["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{listed:#}");
    assert!(hosts.iter().all(|h| h["reachable"] == true), "{listed:#}");
    assert_eq!(hosts[0]["vms"][0]["name"], "APP1");
    let post = |token: &str, body: Value| {
        client()
            .post(format!("{}/api/v1/migrations", ui.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap()
    };
    let body = json!({"source": "HV01", "vm": "APP1", "destination": "HV02"});
    assert_eq!(post(&ui.read, body.clone()).status(), 403);
    let unknown = post(
        &ui.admin,
        json!({"source": "NOWHERE", "vm": "APP1", "destination": "HV02"}),
    );
    assert_eq!(unknown.status(), 404, "a host not configured");
    let started = post(&ui.admin, body);
    assert_eq!(started.status(), 202);
    let started: Value = started.json().unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut statuses = Vec::new();
    let last = loop {
        let p = get_json(&ui, &format!("/api/v1/migrations/HV01/{id}"), &ui.read);
        let status = p["progress"]["status"].as_str().unwrap().to_string();
        if statuses.last() != Some(&status) {
            statuses.push(status.clone());
        }
        if status == "completed" || status == "failed" || status == "cancelled" {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 60 s; statuses seen: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(last["progress"]["status"], "completed", "{last:#}");
    let ram = &last["progress"]["ram"];
    assert!(ram["transferred"].as_u64().unwrap() >= 32 << 20, "{last:#}");
    assert!(ram["dirty-sync-count"].as_u64().unwrap() >= 1, "{last:#}");
    // The list follows it: the VM now runs on HV02, and the migration is listed.
    let listed = get_json(&ui, "/api/v1/migrations", &ui.read);
    let hv02 = listed["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "HV02")
        .unwrap();
    assert_eq!(hv02["vms"][0]["name"], "APP1", "{listed:#}");
    assert_eq!(hv02["vms"][0]["state"], "running", "{listed:#}");
    assert_eq!(listed["started"][0]["id"], id.as_str());
}

/// `relive serve` serves the same API with the pipeline's counters: its
/// `/metrics` (stages, collector, WAL) passes promtool and the status API
/// names the stages.
#[test]
fn serve_has_the_api_and_metrics_of_its_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = crate::streaming::config(dir.path(), crate::free_port());
    // A watched folder: read by an in-process agent, listed in the status.
    let drop = dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[receivers.watch]\npaths = [{:?}]\n",
        drop.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(&data)
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
    let _serve = Procs(vec![child]);
    let started: Value = serde_json::from_str(&line).unwrap();
    let tokens: toml::Table = std::fs::read_to_string(started["tokens"].as_str().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let ui = Ui {
        child: Command::new("true").spawn().unwrap(),
        base: format!("http://{}", started["listening"]["http"].as_str().unwrap()),
        admin: tokens["admin_token"].as_str().unwrap().to_string(),
        read: tokens["read_token"].as_str().unwrap().to_string(),
    };
    let status = get_json(&ui, "/api/v1/status", &ui.read);
    assert_eq!(status["mode"], "serve");
    let stages: Vec<&str> = status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for stage in ["index", "correlate", "store"] {
        assert!(stages.contains(&stage), "{stages:?}");
    }
    // The watched folder's events arrive; its agent and their host are listed.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/vswitch-mismatch/HV-NORTH2/nxlog-HV-NORTH2.json"),
        drop.join("nxlog-HV-NORTH2.json"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = get_json(&ui, "/api/v1/status", &ui.read);
        if status["hosts"].as_array().is_some_and(|h| !h.is_empty()) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 20 s: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let agent = &status["agents"][0];
    assert_eq!(agent["name"], "relive-serve-watch", "{status:#}");
    assert_eq!(agent["connected"], true);
    assert!(agent["batches"].as_u64().unwrap() >= 1);
    let host = &status["hosts"][0];
    assert!(
        host["host"].as_str().unwrap().starts_with("HV-NORTH2"),
        "{status:#}"
    );
    assert!(host["events"].as_u64().unwrap() >= 1 && host["newest_event"].is_string());
    let metrics = get(&ui, "/metrics", Some(&ui.read)).text().unwrap();
    for family in [
        "relive_stage_items_in_total",
        "relive_stage_queue_depth",
        "relive_collector_parse_errors_total",
        "relive_collector_lag_records",
        "relive_wal_bytes",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family}: {metrics}"
        );
    }
    promtool(&metrics);
}

/// `promtool check metrics` accepts the text.
fn promtool(metrics: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian prometheus; ./scripts/test installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// A signed approval link: opening it decides nothing; its page's button
/// decides once; altered, expired or cross-site it is refused.
#[test]
fn a_signed_link_approves_once_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ingest(&data, &[&root.join("samples/shared-storage-path-missing")]);
    let ui = start_ui(&data, &[]);
    let id = seed_incident(&ui)["id"].as_str().unwrap().to_string();
    let key = awaiting_approval(&data, &id);
    let signer = remediate::link::LinkSigner::open(&data).unwrap();
    let link = |approve: bool, expires: chrono::DateTime<chrono::Utc>| remediate::link::Link {
        key: key.clone(),
        incident: id.clone(),
        approve,
        expires,
        to: "oncall-email".into(),
    };
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let url = signer.url(&ui.base, &link(true, later));
    let opened = client().get(&url).send().unwrap();
    assert_eq!(opened.status(), 200);
    let page = opened.text().unwrap();
    assert!(
        page.contains("Approve this action?")
            && page.contains("<form method=\"post\" action=\"/approve\">")
    );
    let state = || {
        remediate::audit::AuditLog::open(&data)
            .unwrap()
            .state_of(&key)
            .unwrap()
    };
    assert_eq!(
        state(),
        remediate::audit::ActionState::AwaitingApproval,
        "opening decided nothing"
    );
    // Altered (approve turned into reject under the same signature): refused.
    let altered = url.replace("do=approve", "do=reject");
    assert_eq!(client().get(&altered).send().unwrap().status(), 403);
    // Expired: refused, and says so.
    let expired = signer.url(
        &ui.base,
        &link(true, chrono::Utc::now() - chrono::Duration::minutes(1)),
    );
    let gone = client().get(&expired).send().unwrap();
    assert_eq!(gone.status(), 410);
    assert!(gone.text().unwrap().contains("expired"));
    let form = url.split_once('?').unwrap().1.to_string();
    let post = |origin: Option<&str>| {
        let mut r = client()
            .post(format!("{}/approve", ui.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().unwrap().status()
    };
    assert_eq!(post(Some("http://evil.example")), 403, "from another site");
    assert_eq!(state(), remediate::audit::ActionState::AwaitingApproval);
    assert_eq!(post(None), 200);
    assert_eq!(state(), remediate::audit::ActionState::Approved);
    let read = remediate::audit::read(&data.join("remediation/audit.jsonl")).unwrap();
    assert_eq!(
        read.entries.last().unwrap().who.as_deref(),
        Some("oncall-email (signed link)")
    );
    assert_eq!(post(None), 409, "a link decides once");
    assert_eq!(client().get(&url).send().unwrap().status(), 409);
}
