//! `examples/lab/` as a new user runs it: the three host configurations
//! and the collector's relive.toml, unchanged, from a copy of the folder;
//! the README's commands work (so the files never rot).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Procs;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().filter_map(|e| e.ok()) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `relive ARGS` in `dir` (the lab's folder).
fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_example_lab_runs_as_documented() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lab");
    let tmp = tempfile::tempdir().unwrap();
    let lab = tmp.path().join("lab");
    copy_dir(&source, &lab);
    for stale in ["state", "secrets", "data", "mail"] {
        let _ = std::fs::remove_dir_all(lab.join(stale));
    }
    let mut procs = Procs(Vec::new());
    for host in ["hv01.toml", "hv02.toml", "hv03.toml"] {
        procs.0.push(
            Command::new(env!("CARGO_BIN_EXE_relive"))
                .args(["host", "--config", host])
                .current_dir(&lab)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let serve = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["--data", "data", "serve", "--config", "relive.toml"])
        .current_dir(&lab)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(serve);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(procs.0[3].stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("\"http\":\"127.0.0.1:7300\""), "{line}");
    // The hosts listen where the README says, with one shared secret.
    let start = Instant::now();
    loop {
        let all = run_in(&lab, &["vms", "--all", "--config", "relive.toml"]);
        if all.status.success() {
            let said = text(&all);
            for vm in ["SQL1", "FS1", "APP1", "WEB1"] {
                assert!(said.contains(vm), "{said}");
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the lab's hosts did not answer: {}",
            text(&all)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let secret = std::fs::read_to_string(lab.join("secrets/lab-secret")).unwrap();
    assert_eq!(secret.trim().len(), 64);
    let migrate = run_in(
        &lab,
        &[
            "migrate",
            "WEB1",
            "--to",
            "HV02",
            "--control",
            "127.0.0.1:6611",
            "--token-file",
            "state/HV01/secrets/control-token",
        ],
    );
    assert!(migrate.status.success(), "{}", text(&migrate));
    assert!(text(&migrate).contains("completed"), "{}", text(&migrate));
    let set = run_in(
        &lab,
        &[
            "host",
            "set",
            "HV03",
            "rename_switch",
            "External",
            "external",
            "--config",
            "relive.toml",
        ],
    );
    assert!(set.status.success(), "{}", text(&set));
    // The collector reads the hosts' logs (the watched state/*/ files).
    let start = Instant::now();
    loop {
        let found = run_in(
            &lab,
            &[
                "--data",
                "data",
                "search",
                "vm_name:WEB1 AND event_id:20415",
                "--json",
            ],
        );
        if found.status.success() && !found.stdout.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the collector never indexed WEB1's migration: {}",
            text(&found)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
