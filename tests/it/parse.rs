//! `relive parse` end to end: the real binary on real and sample files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn relive(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RELIVE_LOG", "error")
        .output()
        .expect("run relive")
}

fn shared() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [root.join("../shared"), root.join("../../shared")]
        .into_iter()
        .find(|p| p.is_dir())
        .expect("shared/ next to the repository")
}

#[test]
fn summary_of_the_samples_folder() {
    let out = relive(&["parse", "samples/"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("errors:  0"), "{stdout}");
    for format in [
        "viewer-text",
        "event-xml",
        "ps-csv",
        "ps-json",
        "ecs-json",
        "nxlog-json",
        "otlp-json",
        "syslog",
        "snare",
        "cluster-log",
        "perfmon-csv",
        "metrics-json",
    ] {
        assert!(stdout.contains(format), "{format} missing from\n{stdout}");
    }
    assert!(stdout.contains("NODE-B.datawisetech.corp"));
}

#[test]
fn json_lines_carry_ecs_fields() {
    let seed = shared().join("samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
    let out = relive(&[
        "parse",
        "--json",
        "--timezone",
        "+02:00",
        seed.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    let first = &lines[0];
    assert_eq!(first["@timestamp"], "2018-09-27T13:36:44.000000000Z");
    assert_eq!(first["host"]["name"], "NODE-B.datawisetech.corp");
    assert_eq!(first["winlog"]["channel"], "System");
    assert_eq!(
        first["winlog"]["provider_name"],
        "Microsoft-Windows-Hyper-V-High-Availability"
    );
    assert_eq!(first["winlog"]["event_id"], 21502);
    assert_eq!(first["event"]["code"], "21502");
    assert_eq!(first["log"]["level"], "error");
    assert_eq!(first["winlog"]["event_data"]["VmName"], "ADFS1");
    assert_eq!(
        first["winlog"]["event_data"]["VmId"],
        "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7"
    );
    assert_eq!(first["error"]["code"], "0x80070002");
    assert_eq!(first["log"]["offset"], 0);
    assert!(first["log"]["file"]["path"]
        .as_str()
        .unwrap()
        .ends_with("chain.txt"));
    assert_eq!(first["relive"]["zone_assumed"], true);
    assert!(lines
        .iter()
        .all(|l| l["winlog"]["event_data"]["VmId"] == "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7"));
}

#[test]
fn malformed_records_are_reported_with_position_and_the_rest_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.ndjson");
    std::fs::write(
        &path,
        "{\"@timestamp\":\"2018-09-27T13:36:44Z\",\"winlog\":{\"event_id\":21502}}\nnot json at all\n{\"@timestamp\":\"2018-09-27T13:36:45Z\",\"winlog\":{\"event_id\":21066}}\n",
    )
    .unwrap();
    let out = relive(&["parse", "--json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mixed.ndjson:2 (byte 66)"), "{stderr}");
}

#[test]
fn stdin_and_forced_format() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["parse", "--json", "--format", "syslog", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"<12>Nov 22 19:15:26 vm vmms: Event 21502 VM01\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["winlog"]["event_id"], 21502);
}

#[test]
fn bad_arguments_fail_clearly() {
    let out = relive(&["parse", "--format", "nope", "samples/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format \"nope\""));
    let out = relive(&["parse", "--timezone", "Mars/Olympus", "samples/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown time zone"));
    let out = relive(&["parse", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
}
