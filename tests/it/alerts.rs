//! Alerts through `relive serve`, delivered to real servers started here on
//! loopback: aiosmtpd (STARTTLS, AUTH), Postfix's smtp-sink for faults, a
//! real Alertmanager, and a small HTTP server for the webhooks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::streaming::{bulk, config, seed_lines, serve, wait_exit};
use crate::{certificates, free_port, relive, Procs};

const HELPERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/helpers");
const SEED_VM_ID: &str = "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7";

/// aiosmtpd, capturing every accepted message into `dir`.
pub(crate) struct Smtp {
    child: Child,
    pub(crate) port: u16,
    dir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn smtp(dir: &Path, args: &[&str]) -> Smtp {
    std::fs::create_dir_all(dir).unwrap();
    let mut child = Command::new("python3")
        .arg(format!("{HELPERS}/smtp_capture.py"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd (scripts/test installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("smtp_capture did not start: {line:?}"))
        .parse()
        .unwrap();
    Smtp {
        child,
        port,
        dir: dir.to_path_buf(),
    }
}

/// Messages received so far: (envelope, path of the raw message), in order.
pub(crate) fn received(dir: &Path) -> Vec<(Value, PathBuf)> {
    let mut out: Vec<(Value, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .map(|p| {
                    let envelope =
                        serde_json::from_slice(&std::fs::read(p.with_extension("json")).unwrap())
                            .unwrap();
                    (envelope, p)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Waits until at least `n` messages arrived; None when `limit` passed first.
fn wait_received(dir: &Path, n: usize, limit: Duration) -> Option<Vec<(Value, PathBuf)>> {
    let start = Instant::now();
    loop {
        let got = received(dir);
        if got.len() >= n {
            return Some(got);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A received message decoded by Python's email package.
pub(crate) fn parts(eml: &Path) -> Value {
    let out = Command::new("python3")
        .arg(format!("{HELPERS}/mail_parts.py"))
        .arg(eml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn header<'a>(parts: &'a Value, name: &str) -> &'a str {
    parts["headers"][name].as_str().unwrap_or("")
}

/// The seed chain for another VM: same hosts and times, its own name, id
/// and record ids.
fn variant(lines: &[String], vm: &str, vm_id: &str, record_offset: u64) -> Vec<String> {
    let name = serde_json::to_string(vm).unwrap();
    let name = &name[1..name.len() - 1];
    lines
        .iter()
        .map(|line| {
            let line = line.replace("ADFS1", name).replace(SEED_VM_ID, vm_id);
            let mut event: Value = serde_json::from_str(&line).unwrap();
            if let Some(r) = event["winlog"]["record_id"].as_u64() {
                event["winlog"]["record_id"] = (r + record_offset).into();
            }
            event.to_string()
        })
        .collect()
}

/// High-Availability 21301: the VM moved (closes its incident).
fn success(vm: &str, vm_id: &str, record_id: u64) -> String {
    serde_json::json!({
        "@timestamp": "2018-09-27T16:00:00Z",
        "host": {"name": "NODE-B.datawisetech.corp"},
        "winlog": {
            "channel": "Microsoft-Windows-Hyper-V-High-Availability-Admin",
            "provider_name": "Microsoft-Windows-Hyper-V-High-Availability",
            "event_id": 21301,
            "record_id": record_id,
        },
        "log": {"level": "information"},
        "message": format!("Completed live migration on the source node, time 4.2 s (VM resource 'Virtual Machine {vm}', VMID {vm_id})."),
    })
    .to_string()
}

/// relive.toml with loopback receivers and `alerts` appended; returns it
/// and the `_bulk` port.
fn alert_config(dir: &Path, alerts: &str) -> (PathBuf, u16) {
    let port = free_port();
    let path = config(dir, port);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(alerts);
    std::fs::write(&path, text).unwrap();
    (path, port)
}

fn journal(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("alerts/notifications.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn decisions(data: &Path, decision: &str) -> usize {
    journal(data)
        .iter()
        .filter(|e| e["decision"] == decision)
        .count()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(
        wait_exit(&mut child, Duration::from_secs(20)).is_some(),
        "relive serve did not stop"
    );
}

#[test]
fn email_over_starttls_and_auth_groups_two_vms_then_resolves_in_the_same_thread() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ca, cert, key) = certificates(dir.path());
    let server = smtp(
        &dir.path().join("mail"),
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--user",
            "relive",
            "--password",
            "s3cret",
        ],
    );
    let (config, port) = alert_config(
        dir.path(),
        &format!(
            "[alerts]\nexternal_url = \"http://relive.example:7300\"\n\
             [alerts.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\n\
             to = [\"oncall@example.com\", \"hyperv-team@example.com\"]\nstarttls = true\n\
             username = \"relive\"\npassword = \"s3cret\"\nca_file = \"{}\"\n\
             [alerts.route]\ngroup_wait = \"3s\"\ngroup_interval = \"1s\"\n",
            server.port,
            ca.display()
        ),
    );
    let child = serve(&config, &data, None);
    let procs = Procs(vec![child]);
    let seed = seed_lines(&data);
    let second = variant(
        &seed,
        "ADFS2",
        "0D1E2F30-4152-6374-8596-A7B8C9D0E1F2",
        1_000_000,
    );
    let posted = Instant::now();
    bulk(port, &seed).unwrap();
    bulk(port, &second).unwrap();

    let first =
        wait_received(&server.dir, 1, Duration::from_secs(30)).expect("an email within 30 s");
    let took = posted.elapsed();
    // group_wait is 3 s; the message must not wait much longer than that.
    assert!(took < Duration::from_secs(8), "first email after {took:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        received(&server.dir).len(),
        1,
        "both VMs in one grouped email"
    );
    let (envelope, eml) = &first[0];
    assert_eq!(envelope["mail_from"], "relive@example.com");
    assert_eq!(
        envelope["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "hyperv-team@example.com"])
    );
    let mail = parts(eml);
    let subject = header(&mail, "Subject");
    assert!(
        subject.starts_with("[relive] ADFS1 NODE-B→NODE-A: "),
        "{subject}"
    );
    assert!(subject.contains("SharedStoragePath"), "{subject}");
    assert!(subject.ends_with("(2 VMs)"), "{subject}");
    let text = mail["text"].as_str().unwrap();
    for want in [
        "ADFS1 failed to live-migrate from NODE-B to NODE-A.",
        "ADFS2 failed to live-migrate from NODE-B to NODE-A.",
        // The seed is Event Viewer text read as UTC (no --timezone given).
        "When:       2018-09-27 15:36:44 UTC",
        "Attempts:   1 failed",
        "Root cause: Cluster SharedStoragePath",
        "(shared-storage-path-missing), confidence ",
        "Evidence (",
        // A 21502's line is the one that says why, not its headline.
        "NODE-B       21502  Failed to verify collection registry for virtual machine ‘ADFS1’",
        "Could also be storage-unreachable; what settles it: The folder the cluster's SharedStoragePath names",
        "NODE-A        1106  ",
        "Checks:",
        "Proposed fix (approval: waits for an admin to approve):",
        "Incident: http://relive.example:7300/incidents/",
        "Approve:  http://relive.example:7300/incidents/",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // The order the issue asks for: who/where, when, how many, cause, evidence, checks, fix, links.
    let at = |s: &str| text.find(s).unwrap();
    assert!(at("failed to live-migrate") < at("When:"));
    assert!(at("When:") < at("Attempts:"));
    assert!(at("Attempts:") < at("Root cause:"));
    assert!(at("Root cause:") < at("Evidence ("));
    assert!(at("Evidence (") < at("Checks:"));
    assert!(at("Checks:") < at("Proposed fix"));
    assert!(at("Proposed fix") < at("Incident: http"));
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains("<table") && html.contains("ADFS2"), "{html}");
    let thread = header(&mail, "Message-ID").to_string();
    assert!(
        thread.starts_with("<relive-") && thread.ends_with("@example.com>"),
        "{thread}"
    );

    // Both VMs migrate: one resolved notice, in the same thread.
    bulk(
        port,
        &[
            success("ADFS1", SEED_VM_ID, 90_001),
            success("ADFS2", "0D1E2F30-4152-6374-8596-A7B8C9D0E1F2", 90_002),
        ],
    )
    .unwrap();
    let both = wait_received(&server.dir, 2, Duration::from_secs(30)).expect("a resolved notice");
    let resolved = parts(&both[1].1);
    let subject = header(&resolved, "Subject");
    assert!(
        subject.starts_with("[relive] RESOLVED ADFS1 NODE-B→NODE-A: "),
        "{subject}"
    );
    assert_eq!(header(&resolved, "In-Reply-To"), thread);
    assert_eq!(header(&resolved, "References"), thread);
    assert_ne!(header(&resolved, "Message-ID"), thread);
    assert!(resolved["text"].as_str().unwrap().contains("Resolved:"));
    // Exactly once: nothing more arrives, and the journal agrees.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(received(&server.dir).len(), 2);
    assert_eq!(decisions(&data, "sent"), 2, "{:#?}", journal(&data));
    let listed = relive(&data, &["alerts", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["status"] == "sent"));
    let mut procs = procs;
    stop(procs.0.remove(0));
}

#[test]
fn hostile_vm_names_never_add_a_header_a_recipient_or_markup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = smtp(&dir.path().join("mail"), &[]);
    let (config, port) = alert_config(
        dir.path(),
        &format!(
            "[alerts.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
             [alerts.route]\ngroup_wait = \"0s\"\n",
            server.port
        ),
    );
    let mut procs = Procs(vec![serve(&config, &data, None)]);
    let hostile =
        "ADFS<script>alert(1)</script>\r\nBcc: evil@example.com\r\n\r\nÖlfeld-😀\u{1b}[31m";
    let seed = seed_lines(&data);
    bulk(port, &variant(&seed, hostile, SEED_VM_ID, 0)).unwrap();
    let got = wait_received(&server.dir, 1, Duration::from_secs(30)).expect("an email");
    let (envelope, eml) = &got[0];
    assert_eq!(
        envelope["rcpt_tos"],
        serde_json::json!(["oncall@example.com"])
    );
    let mail = parts(eml);
    let mut names: Vec<String> = mail["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_ascii_lowercase())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "content-type",
            "date",
            "from",
            "message-id",
            "mime-version",
            "subject",
            "to",
            "x-relive-status"
        ],
        "the headers relive sets, no more"
    );
    let subject = header(&mail, "Subject");
    assert!(
        !subject.contains('\r') && !subject.contains('\n') && !subject.contains('\u{1b}'),
        "{subject:?}"
    );
    let raw = std::fs::read(eml).unwrap();
    let head = &raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
    assert!(
        head.is_ascii(),
        "headers are ASCII on the wire (RFC 2047 encoded)"
    );
    let html = mail["html"].as_str().unwrap();
    assert!(!html.contains("<script>"), "escaped in HTML");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    let text = mail["text"].as_str().unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "no terminal escapes in the text part"
    );
    assert!(text.contains("Ölfeld-😀"), "non-ASCII kept: {text}");
    stop(procs.0.remove(0));
}

#[test]
fn kill_9_between_the_outbox_and_the_smtp_accept_sends_exactly_one_email() {
    for point in ["after-alert-recorded", "after-alert-pending"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = smtp(&dir.path().join("mail"), &[]);
        let (config, port) = alert_config(
            dir.path(),
            &format!(
                "[alerts.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
                 [alerts.route]\ngroup_wait = \"0s\"\n",
                server.port
            ),
        );
        let mut crashing = serve(&config, &data, Some(point));
        bulk(port, &seed_lines(&data)).unwrap();
        let status =
            wait_exit(&mut crashing, Duration::from_secs(30)).expect("the crash point is reached");
        assert!(!status.success(), "{point}: aborted");
        assert!(
            received(&server.dir).is_empty(),
            "{point}: nothing sent before the crash"
        );
        let mut procs = Procs(vec![serve(&config, &data, None)]);
        let got = wait_received(&server.dir, 1, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{point}: the email after the restart"));
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(received(&server.dir).len(), 1, "{point}: exactly one");
        let mail = parts(&got[0].1);
        assert!(header(&mail, "Subject").starts_with("[relive] ADFS1 "));
        if point == "after-alert-pending" {
            assert_eq!(
                decisions(&data, "resumed"),
                1,
                "{point}: resent from the outbox"
            );
        }
        // And a clean restart after delivery sends nothing again.
        stop(procs.0.remove(0));
        let mut procs = Procs(vec![serve(&config, &data, None)]);
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            received(&server.dir).len(),
            1,
            "{point}: nothing twice after a restart"
        );
        stop(procs.0.remove(0));
    }
}

/// A loopback HTTP server recording every POST body; answers `status`.
struct Hook {
    port: u16,
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
}

fn hook() -> Hook {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            if let Ok(json) = serde_json::from_slice(&body) {
                seen.lock().unwrap().push((path, json));
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    Hook { port, bodies }
}

#[test]
fn webhooks_in_slack_teams_and_alertmanager_shapes_and_a_dead_one_never_blocks_email() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = smtp(&dir.path().join("mail"), &[]);
    let hooks = hook();
    let dead = free_port();
    let (config, port) = alert_config(
        dir.path(),
        &format!(
            "[alerts.route]\nreceiver = \"oncall\"\ngroup_wait = \"0s\"\n\
             [[alerts.receivers]]\nname = \"oncall\"\nretry_for = \"1h\"\n\
             [[alerts.receivers.webhooks]]\nurl = \"http://127.0.0.1:{dead}/dead\"\ntimeout = \"2s\"\n\
             [alerts.receivers.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
             [[alerts.receivers.webhooks]]\nurl = \"http://127.0.0.1:{p}/generic\"\n\
             [[alerts.receivers.webhooks]]\nurl = \"http://127.0.0.1:{p}/slack\"\nshape = \"slack\"\n\
             [[alerts.receivers.webhooks]]\nurl = \"http://127.0.0.1:{p}/teams\"\nshape = \"teams\"\n",
            server.port,
            p = hooks.port,
        ),
    );
    let mut procs = Procs(vec![serve(&config, &data, None)]);
    bulk(port, &seed_lines(&data)).unwrap();
    wait_received(&server.dir, 1, Duration::from_secs(15))
        .expect("the email, though a webhook is dead");
    let start = Instant::now();
    while hooks.bodies.lock().unwrap().len() < 3 && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(25));
    }
    let bodies = hooks.bodies.lock().unwrap().clone();
    let body = |path: &str| {
        bodies
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("no POST to {path}: {bodies:?}"))
    };
    // Alertmanager webhook payload, version 4.
    let generic = body("/generic");
    for key in [
        "receiver",
        "status",
        "alerts",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "version",
        "groupKey",
        "truncatedAlerts",
    ] {
        assert!(
            generic.get(key).is_some(),
            "generic payload lacks {key}: {generic}"
        );
    }
    assert_eq!(generic["version"], "4");
    assert_eq!(generic["status"], "firing");
    let alert = &generic["alerts"][0];
    assert_eq!(alert["labels"]["root_cause"], "shared-storage-path-missing");
    assert_eq!(alert["labels"]["vm"], "ADFS1");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        alert["fingerprint"].is_string()
            && alert["startsAt"].is_string()
            && alert["generatorURL"].is_string()
    );
    assert_eq!(
        generic["relive"]["incidents"][0]["root_cause"],
        "shared-storage-path-missing"
    );
    // Slack incoming webhook: `text` and blocks of known types, text objects typed.
    let slack = body("/slack");
    assert!(slack["text"].as_str().unwrap().contains("ADFS1"));
    for block in slack["blocks"].as_array().unwrap() {
        let kind = block["type"].as_str().unwrap();
        assert!(["header", "section", "context"].contains(&kind), "{block}");
        if let Some(text) = block.get("text") {
            assert!(["plain_text", "mrkdwn"].contains(&text["type"].as_str().unwrap()));
            assert!(text["text"].as_str().unwrap().chars().count() <= 3000);
        }
    }
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert!(
        slack["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 150
    );
    // Teams: a message with one Adaptive Card attachment.
    let teams = body("/teams");
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert!(card["version"].is_string());
    for element in card["body"].as_array().unwrap() {
        assert!(
            ["TextBlock", "FactSet"].contains(&element["type"].as_str().unwrap()),
            "{element}"
        );
    }
    for action in card["actions"].as_array().unwrap() {
        assert_eq!(action["type"], "Action.OpenUrl");
    }
    // Checked by the platforms' own libraries too: Slack's Block Kit
    // models (slack_sdk) and Microsoft's Adaptive Cards parser.
    checked_by(
        "python3",
        &[&format!("{HELPERS}/slack_blocks_check.py")],
        &slack,
    );
    let card_check = std::env::var_os("RELIVE_ADAPTIVE_CARD_CHECK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/relive-node/adaptive_card_check.js")
        });
    assert!(
        card_check.exists(),
        "{} is missing: scripts/test bundles it",
        card_check.display()
    );
    checked_by("node", &[card_check.to_str().unwrap()], &teams);
    // The dead webhook is retried (journal), not given up, and held nothing up.
    assert!(decisions(&data, "retry") >= 1, "{:#?}", journal(&data));
    assert_eq!(decisions(&data, "failed"), 0);
    stop(procs.0.remove(0));
    // Its notification stays in the outbox: `relive alerts` shows it pending.
    let listed = relive(&data, &["alerts", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let dead_one = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["target"] == "oncall/webhook[1]")
        .expect("the dead webhook's notification");
    assert_ne!(dead_one["status"], "sent");
}

/// Runs a checker with `payload` on its stdin; it must print `ok`.
fn checked_by(program: &str, args: &[&str], payload: &Value) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim() == "ok",
        "{program} {args:?} rejects the payload:\n{said}{}\n{payload}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Postfix's smtp-sink on `port` with fault options; messages it accepts
/// are dumped into `dump` (one file each).
fn smtp_sink(port: u16, dump: &Path, faults: &[&str]) -> Child {
    std::fs::create_dir_all(dump).unwrap();
    // smtp-sink drops root privileges to `nobody`, which must write the dumps.
    let _ = Command::new("chmod").arg("0777").arg(dump).status();
    let mut command = Command::new("/usr/sbin/smtp-sink");
    if is_root() {
        command.args(["-u", "nobody"]);
    }
    let child = command
        .args(faults)
        .arg("-d")
        .arg(dump.join("msg."))
        .arg(format!("127.0.0.1:{port}"))
        .arg("16")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (Debian postfix; scripts/test installs it)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "smtp-sink did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn dumped(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().count())
}

fn wait_for(limit: Duration, what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn smtp_faults_4xx_is_retried_once_delivered_5xx_is_recorded_a_cut_data_is_retried() {
    // (smtp-sink options for the first server, whether relive retries)
    for (faults, retried) in [
        (&["-r", "."][..], true),
        (&["-f", "."][..], false),
        (&["-q", "."][..], true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let smtp_port = free_port();
        let mut first = smtp_sink(smtp_port, &dir.path().join("first"), faults);
        let (config, port) = alert_config(
            dir.path(),
            &format!(
                "[alerts.email]\nsmtp = \"127.0.0.1:{smtp_port}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\ntimeout = \"3s\"\n\
                 [alerts.route]\ngroup_wait = \"0s\"\n"
            ),
        );
        let mut procs = Procs(vec![serve(&config, &data, None)]);
        bulk(port, &seed_lines(&data)).unwrap();
        if retried {
            wait_for(
                Duration::from_secs(30),
                "two retries in the journal",
                || decisions(&data, "retry") >= 2,
            );
            assert_eq!(decisions(&data, "failed"), 0, "{faults:?}: not given up");
            let _ = first.kill();
            let _ = first.wait();
            let mut second = smtp_sink(smtp_port, &dir.path().join("second"), &[]);
            wait_for(Duration::from_secs(30), "the delivery", || {
                decisions(&data, "sent") == 1
            });
            std::thread::sleep(Duration::from_secs(2));
            assert_eq!(
                dumped(&dir.path().join("second")),
                1,
                "{faults:?}: exactly one delivery"
            );
            assert_eq!(decisions(&data, "sent"), 1);
            let _ = second.kill();
            let _ = second.wait();
        } else {
            wait_for(
                Duration::from_secs(30),
                "the failure in the journal",
                || decisions(&data, "failed") == 1,
            );
            std::thread::sleep(Duration::from_secs(3));
            assert_eq!(decisions(&data, "retry"), 0, "5xx: no retry storm");
            assert_eq!(decisions(&data, "failed"), 1);
            let out = relive(&data, &["alerts", "--status", "failed"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("FAILED") && text.contains("SMTP 5"), "{text}");
            let _ = first.kill();
            let _ = first.wait();
        }
        stop(procs.0.remove(0));
    }
}

#[test]
fn a_real_alertmanager_receives_relives_alerts_and_a_relive_silence_keeps_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let am_port = free_port();
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am = Command::new("prometheus-alertmanager")
        .arg(format!(
            "--config.file={}",
            dir.path().join("am.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("am").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (scripts/test installs it)");
    let mut procs = Procs(vec![am]);
    let client = |path: &str| -> Option<Value> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", am_port)).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let body = answer.split_once("\r\n\r\n")?.1;
        // Chunked or not, the JSON is the part between the first [ or { and the last ] or }.
        let start = body.find(['[', '{'])?;
        let end = body.rfind([']', '}'])?;
        serde_json::from_str(&body[start..=end]).ok()
    };
    wait_for(Duration::from_secs(30), "Alertmanager to answer", || {
        client("/api/v2/status").is_some()
    });
    let (config, port) = alert_config(
        dir.path(),
        &format!(
            "[alerts.route]\nreceiver = \"am\"\ngroup_wait = \"0s\"\n\
             [[alerts.receivers]]\nname = \"am\"\n[alerts.receivers.alertmanager]\nurl = \"http://127.0.0.1:{am_port}\"\n"
        ),
    );
    let silenced = relive(
        &data,
        &[
            "silence",
            "add",
            "vm=ADFS2",
            "--for",
            "1h",
            "--author",
            "test",
            "--comment",
            "ADFS2 is being rebuilt",
        ],
    );
    assert!(
        silenced.status.success(),
        "{}",
        String::from_utf8_lossy(&silenced.stderr)
    );
    procs.0.push(serve(&config, &data, None));
    let seed = seed_lines(&data);
    bulk(port, &seed).unwrap();
    bulk(
        port,
        &variant(
            &seed,
            "ADFS2",
            "0D1E2F30-4152-6374-8596-A7B8C9D0E1F2",
            1_000_000,
        ),
    )
    .unwrap();
    wait_for(Duration::from_secs(30), "the alert in Alertmanager", || {
        client("/api/v2/alerts").is_some_and(|a| a.as_array().is_some_and(|a| !a.is_empty()))
    });
    std::thread::sleep(Duration::from_secs(2));
    let alerts = client("/api/v2/alerts").unwrap();
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "ADFS2 is silenced in relive: {alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["labels"]["alertname"], "LiveMigrationFailed");
    assert_eq!(alert["labels"]["vm"], "ADFS1");
    assert_eq!(alert["labels"]["root_cause"], "shared-storage-path-missing");
    assert_eq!(alert["labels"]["source_host"], "NODE-B");
    assert_eq!(alert["status"]["state"], "active");
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("ADFS1 NODE-B→NODE-A"));
    assert!(alert["generatorURL"]
        .as_str()
        .unwrap()
        .contains("/incidents/"));
    assert_eq!(decisions(&data, "silenced"), 1, "{:#?}", journal(&data));
    let serve = procs.0.pop().unwrap();
    stop(serve);
}

#[test]
fn email_over_implicit_tls_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ca, cert, key) = certificates(dir.path());
    let server = smtp(
        &dir.path().join("mail"),
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--implicit-tls",
            "--user",
            "relive",
            "--password",
            "pw",
        ],
    );
    let password_file = dir.path().join("smtp-password");
    std::fs::write(&password_file, "pw\n").unwrap();
    let (config, port) = alert_config(
        dir.path(),
        &format!(
            "[alerts.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
             tls = true\nusername = \"relive\"\npassword_file = \"{}\"\nca_file = \"{}\"\n\
             [alerts.route]\ngroup_wait = \"0s\"\n",
            server.port,
            password_file.display(),
            ca.display()
        ),
    );
    let mut procs = Procs(vec![serve(&config, &data, None)]);
    bulk(port, &seed_lines(&data)).unwrap();
    let got =
        wait_received(&server.dir, 1, Duration::from_secs(30)).expect("an email over implicit TLS");
    assert!(header(&parts(&got[0].1), "Subject").starts_with("[relive] ADFS1 "));
    stop(procs.0.remove(0));
}

/// A failed migration that names no VM and arrives without its text (a
/// damaged 21502 from Winlogbeat: only the data) still becomes an
/// incident, `unknown`, for its host, and its alert goes out: no failure
/// goes unreported (the correlation invariant, issue 19).
#[test]
fn a_failure_with_no_text_and_no_vm_alerts_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = smtp(&dir.path().join("mail"), &[]);
    let (config, port) = alert_config(
        dir.path(),
        &format!(
            "[alerts.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
             [alerts.route]\ngroup_wait = \"0s\"\n",
            server.port
        ),
    );
    let mut procs = Procs(vec![serve(&config, &data, None)]);
    let bare = serde_json::json!({
        "@timestamp": "2026-11-03T08:00:00Z",
        "host": {"name": "HV-LONE7.contoso.local"},
        "winlog": {
            "channel": "Microsoft-Windows-Hyper-V-High-Availability-Admin",
            "provider_name": "Microsoft-Windows-Hyper-V-High-Availability",
            "event_id": 21502,
            "version": 0,
            "record_id": 77,
            "event_data": {"Parameter1": "", "Parameter2": "", "Parameter3": "Live migration failed."},
        },
        "log": {"level": "error"},
    });
    bulk(port, &[bare.to_string()]).unwrap();
    let got = wait_received(&server.dir, 1, Duration::from_secs(60))
        .expect("an alert for the failure without a VM (timed out)");
    let subject = header(&parts(&got[0].1), "Subject").to_string();
    assert!(
        subject.starts_with("[relive] an unnamed VM HV-LONE7"),
        "{subject}"
    );
    assert!(subject.contains("does not recognise"), "{subject}");
    let incidents: Vec<Value> =
        serde_json::from_slice(&std::fs::read(data.join("incidents.json")).unwrap()).unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["root_cause"], "unknown");
    assert_eq!(
        incidents[0]["evidence"][0]["message"],
        "Live migration failed."
    );
    stop(procs.0.remove(0));
}

#[test]
fn config_default_shows_both_forms_and_render_is_a_dry_run_of_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = relive(dir.path(), &["config", "default"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: toml::Table = toml::from_str(&text).expect("the default is valid TOML as printed");
    assert!(parsed.contains_key("alerts"));
    for want in [
        "# [alerts.email]",
        "# [alerts.route]",
        "# [[alerts.receivers]]",
        "# [[alerts.inhibit]]",
        "# [receivers.es_bulk]",
    ] {
        assert!(text.contains(want), "{want}");
    }
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
    assert!(relive(dir.path(), &["ingest", seed.to_str().unwrap()])
        .status
        .success());
    let incidents: Value =
        serde_json::from_slice(&relive(dir.path(), &["incidents", "--json"]).stdout).unwrap();
    let id = incidents[0]["id"].as_str().unwrap();
    let email = relive(dir.path(), &["alerts", "--render", &id[..6]]);
    assert!(
        email.status.success(),
        "{}",
        String::from_utf8_lossy(&email.stderr)
    );
    let email = String::from_utf8(email.stdout).unwrap();
    assert!(
        email.contains("Subject: ") && email.contains("multipart/alternative"),
        "{email}"
    );
    let slack = relive(dir.path(), &["alerts", "--render", id, "--shape", "slack"]);
    let slack: Value = serde_json::from_slice(&slack.stdout).unwrap();
    assert!(slack["text"].as_str().unwrap().contains("ADFS1"));
    // Nothing was sent: a render writes no journal.
    assert!(!dir.path().join("alerts/notifications.jsonl").exists());
}

/// `relive actions` prints the remediation audit log, one line per
/// decision, log text escaped, one incident's lines with --incident.
#[test]
fn actions_prints_the_audit_log_and_filters_by_incident() {
    use remediate::audit::{AuditLog, Entry, What};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let empty = relive(&data, &["actions"]);
    assert!(String::from_utf8_lossy(&empty.stdout).contains("no remediation actions"));
    let log = AuditLog::open(&data).unwrap();
    let at = chrono::Utc::now();
    for (incident, key, what, detail) in [
        (
            "aaa111",
            "aaa111/fix/1/1",
            What::AwaitingApproval,
            "rename the switch",
        ),
        ("aaa111", "aaa111/fix/1/1", What::Approved, ""),
        (
            "bbb222",
            "bbb222/retry/1/1",
            What::Skipped,
            "VM \u{1b}[31mred\u{1b}[0m; suggest mode",
        ),
    ] {
        log.append(&Entry {
            at,
            incident: incident.into(),
            key: Some(key.into()),
            what,
            who: (what == What::Approved).then(|| "alice".to_string()),
            detail: detail.into(),
            class: None,
        })
        .unwrap();
    }
    let out = relive(&data, &["actions"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("awaiting_approval") && text.contains("by alice"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "terminal escapes are shown escaped: {text:?}"
    );
    let one = relive(&data, &["actions", "--incident", "bbb"]);
    let one = String::from_utf8(one.stdout).unwrap();
    assert_eq!(one.lines().count(), 1, "{one}");
    let json = relive(&data, &["actions", "--json", "--incident", "aaa"]);
    let list: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["what"], "approved");
}
