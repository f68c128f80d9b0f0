//! Text from logs never reaches the admin's terminal as a control
//! sequence: every command that prints log text escapes control, C1 and
//! bidi characters (see `relive::display::clean`). One hostile log, every
//! command that prints from it.

use crate::relive;

/// Bytes a terminal would act on (ESC, C1 CSI as UTF-8, a right-to-left
/// override as UTF-8) or that would reorder the line.
fn hostile_bytes(out: &[u8]) -> Option<&'static str> {
    if out.contains(&0x1b) {
        return Some("ESC");
    }
    if out.windows(2).any(|w| w == [0xc2, 0x9b]) {
        return Some("C1 CSI");
    }
    if out.windows(3).any(|w| w == [0xe2, 0x80, 0xae]) {
        return Some("RIGHT-TO-LEFT OVERRIDE");
    }
    if out.contains(&0x07) {
        return Some("BEL");
    }
    None
}

#[test]
fn every_command_that_prints_log_text_escapes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = "NODE-\u{1b}]0;pwned\u{7}\u{202e}B";
    let vm = "WEB\u{1b}[2J\u{9b}31m7";
    let line = serde_json::json!({
        "@timestamp": "2026-12-01T03:00:00Z",
        "host": {"name": host},
        "winlog": {
            "channel": "Microsoft-Windows-Hyper-V-High-Availability-Admin",
            "provider_name": "Microsoft-Windows-Hyper-V-High-Availability",
            "event_id": 21502,
            "record_id": 7,
            "event_data": {"VmName": vm},
        },
        "log": {"level": "error"},
        "message": format!("Live migration of 'Virtual Machine {vm}' failed.\u{1b}[8m hidden \u{1b}[0m"),
    });
    let log = dir.path().join("hostile.ndjson");
    std::fs::write(&log, format!("{line}\nnot json \u{1b}[5m at all\n")).unwrap();
    let log = log.to_str().unwrap();

    let ingest = relive(&data, &["ingest", log]);
    let incidents: serde_json::Value =
        serde_json::from_slice(&relive(&data, &["incidents", "--json"]).stdout).unwrap();
    let id = incidents[0]["id"]
        .as_str()
        .expect("the lone 21502 is an incident")
        .to_string();
    let runs = [
        ("parse", relive(&data, &["parse", log])),
        ("ingest", ingest),
        ("search", relive(&data, &["search", "*"])),
        (
            "search --count-by host",
            relive(&data, &["search", "*", "--count-by", "host"]),
        ),
        ("incidents", relive(&data, &["incidents"])),
        ("explain", relive(&data, &["explain", &id])),
        ("stats", relive(&data, &["stats"])),
    ];
    for (command, out) in &runs {
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert_eq!(
                hostile_bytes(bytes),
                None,
                "relive {command} {stream}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let shown = |i: usize| String::from_utf8_lossy(&runs[i].1.stdout).to_string();
    assert!(
        shown(0).contains("NODE-\\x1b]0;pwned\\x07\\u{202e}B"),
        "parse shows it escaped: {}",
        shown(0)
    );
    assert!(
        shown(2).contains("\\x1b[8m hidden"),
        "search shows it escaped: {}",
        shown(2)
    );
    assert!(
        shown(5).contains("WEB\\x1b[2J\\x9b31m7"),
        "explain shows it escaped: {}",
        shown(5)
    );
    let errors = String::from_utf8_lossy(&runs[0].1.stderr).to_string();
    assert!(
        errors.contains("error:"),
        "the bad line is reported: {errors}"
    );
}

/// The log on standard error is plain text when it is not a terminal (a
/// file, a pipe, a journal): no colour escapes.
#[test]
fn a_redirected_log_has_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["ingest", "samples/vswitch-mismatch"])
        .env("RELIVE_LOG", "info")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out.stderr.is_empty(), "info lines were logged");
    assert!(
        !out.stderr.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
