//! `relive demo` end to end: the real binary tells the whole story; the
//! test checks every step from its output and from the data folder, then
//! stops it with SIGINT and checks nothing it started is left.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Procs;

/// Processes whose command line names `dir` (the demo's children do).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(&needle) {
            found.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// Standard output line by line, on a channel.
fn lines(child: &mut std::process::Child) -> Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `want`; every line read so far.
fn wait_line(rx: &Receiver<String>, seen: &mut Vec<String>, want: &str, limit: Duration) {
    let start = Instant::now();
    while !seen.iter().any(|l| l.contains(want)) {
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "timed out after {limit:?} waiting for {want:?}:\n{}",
                    seen.join("\n")
                )
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the demo ended before {want:?}:\n{}", seen.join("\n"))
            }
        }
    }
}

fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_demo_tells_the_whole_story_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(&data)
        .args(["demo", "--keep-running"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut procs = Procs(vec![child]);
    let rx = lines(&mut procs.0[0]);
    let mut seen = Vec::new();
    wait_line(&rx, &mut seen, "--keep-running", Duration::from_secs(90));
    let story_took = started.elapsed();
    let out = seen.join("\n");
    // Plain lines (not a terminal): no escape sequences, no spinner.
    assert!(!out.contains('\u{1b}'), "{out}");
    for want in [
        "3 migration hosts on loopback",
        "collector and web UI up",
        "SQL1 live-migrated HV01 -> HV02: blackout",
        "WEB1 live-migrated HV01 -> HV03: blackout",
        "removed HV02's shared storage path",
        "renamed HV03's virtual switch 'External' to 'external'",
        "FS1 HV01 -> HV02 failed: shared_storage_missing",
        "APP1 HV01 -> HV03 failed: switch_missing",
        "FS1: relive found shared-storage-path-missing",
        "APP1: relive found vswitch-mismatch",
        "alert email \"[relive] ",
        "FS1: plan: shared-storage-path-missing",
        "AUTO-APPROVED by demo mode",
        "FS1: fixed: recreated the shared storage path",
        "APP1: fixed: renamed switch 'external' to 'External' on HV03",
        "FS1: retry verified",
        "APP1: retry verified",
        "incidents found 2, fixed 2, retried and verified 2, resolved 2",
        "web UI: http://127.0.0.1:",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    // Each verification is told once.
    assert_eq!(out.matches("FS1: retry verified").count(), 1, "{out}");

    // The data folder agrees.
    let summary: Value =
        serde_json::from_slice(&std::fs::read(data.join("summary.json")).unwrap()).unwrap();
    let outcomes = summary["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    for o in outcomes {
        assert_eq!(o["root_cause"], o["expected_cause"], "{o}");
        assert!(!o["fixes"].as_array().unwrap().is_empty(), "{o}");
        assert!(
            o["retried"].as_str().unwrap().starts_with("completed"),
            "{o}"
        );
        assert!(o["verified_after_s"].as_f64().is_some(), "{o}");
        assert!(o["resolved_after_s"].as_f64().is_some(), "{o}");
        assert!(o["email"].as_str().is_some(), "{o}");
    }
    for h in summary["healthy"].as_array().unwrap() {
        assert_eq!(h["status"], "completed", "{h}");
        assert!(h["passes"].as_u64().unwrap() >= 1, "{h}");
    }
    let collector = data.join("collector");
    let incidents: Value =
        serde_json::from_slice(&std::fs::read(collector.join("incidents.json")).unwrap()).unwrap();
    for (vm, cause) in [
        ("FS1", "shared-storage-path-missing"),
        ("APP1", "vswitch-mismatch"),
    ] {
        assert!(
            incidents
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["vm_name"] == vm
                    && i["root_cause"] == cause
                    && i["status"] == "resolved"),
            "{vm} {cause} resolved: {incidents:#}"
        );
    }
    let audit = std::fs::read_to_string(collector.join("remediation/audit.jsonl")).unwrap();
    let approvals: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["what"] == "approved")
        .collect();
    assert_eq!(approvals.len(), 2, "{audit}");
    assert!(approvals
        .iter()
        .all(|a| a["who"].as_str().unwrap().contains("demo mode")));
    // The alert emails were delivered (lettre's file transport).
    let mails: Vec<String> = std::fs::read_dir(data.join("mail"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: ") && m.contains("FS1")),
        "{} messages",
        mails.len()
    );
    // The web UI answers while it keeps running, with the printed token.
    let url = out
        .lines()
        .find_map(|l| l.split("web UI: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let token = out
        .lines()
        .find_map(|l| l.split("token: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let web = reqwest::blocking::Client::new();
    let api = web
        .get(format!("{url}api/v1/incidents"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(api.status(), 200);
    assert!(!processes_under(&data).is_empty(), "the children run");

    // Ctrl-C: everything stops, nothing is left, nothing listens.
    interrupt(procs.0[0].id());
    let status = wait_exit(&mut procs.0[0], Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    procs.0.clear();
    assert_eq!(processes_under(&data), Vec::<String>::new());
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} still listens"
    );
    assert!(
        story_took < Duration::from_secs(90),
        "the story took {story_took:?}"
    );
}

#[test]
fn ctrl_c_in_the_middle_stops_every_child_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(&data)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut procs = Procs(vec![child]);
    let rx = lines(&mut procs.0[0]);
    let mut seen = Vec::new();
    wait_line(&rx, &mut seen, "3 migration hosts", Duration::from_secs(60));
    assert!(!processes_under(&data).is_empty());
    interrupt(procs.0[0].id());
    let status = wait_exit(&mut procs.0[0], Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(procs.0[0].stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("stopped during"), "{stderr}");
    procs.0.clear();
    assert_eq!(processes_under(&data), Vec::<String>::new());
}

#[test]
fn a_used_data_folder_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let out = crate::relive(dir.path(), &["demo"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("step `prepare` failed"), "{said}");
    assert!(said.contains("is not empty"), "{said}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn the_demo_mails_a_real_smtp_server_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("received");
    let server = crate::alerts::smtp(&mail, &[]);
    let data = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(&data)
        .args(["demo", "--smtp", &format!("127.0.0.1:{}", server.port)])
        .args(["--mail-to", "oncall@example.com"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("accepted by the SMTP server"), "{said}");
    assert!(!data.join("mail").exists(), "no .eml files with --smtp");
    let got = crate::alerts::received(&mail);
    assert!(
        got.iter().any(
            |(envelope, eml)| envelope["rcpt_tos"][0] == "oncall@example.com"
                && std::fs::read_to_string(eml).unwrap().contains("FS1")
        ),
        "{} messages",
        got.len()
    );
    assert_eq!(processes_under(&data), Vec::<String>::new());
}
