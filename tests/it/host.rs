//! Two real `relive host` processes on loopback: a migration refused by a
//! pre-flight check, found by the correlator from the hosts' own event
//! logs, fixed through the control API, retried, and a destination killed
//! with SIGKILL mid-migration.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::relive;

use crate::{free_port, Procs as Hosts};

fn spawn_host(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["host", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relive host")
}

/// A one-host config `HV09` in `dir` (listen, control, state folder) with
/// `extra` appended; its path.
fn minimal_host(
    dir: &Path,
    file: &str,
    listen: u16,
    control: u16,
    extra: &str,
) -> std::path::PathBuf {
    let config = dir.join(file);
    std::fs::write(
        &config,
        format!(
            "name = \"HV09\"\nlisten = \"127.0.0.1:{listen}\"\ncontrol = \"127.0.0.1:{control}\"\nstate_dir = \"{}/state\"\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    config
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One control API request, as raw JSON lines over TCP.
fn control(addr: SocketAddr, request: serde_json::Value) -> serde_json::Value {
    let stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    writeln!(writer, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn hosts_migrate_fail_get_diagnosed_fixed_retried_and_survive_a_killed_destination() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (m1, c1, m2, c2) = (free_port(), free_port(), free_port(), free_port());
    let hv01 = dir.path().join("hv01.toml");
    let hv02 = dir.path().join("hv02.toml");
    let logs = dir.path().join("logs");
    std::fs::write(
        &hv01,
        format!(
            r#"name = "HV01"
listen = "127.0.0.1:{m1}"
control = "127.0.0.1:{c1}"
state_dir = "{logs}/../HV01-state"
event_log = "{logs}/HV01/events.ndjson"
metrics_log = "{logs}/HV01/migrations.ndjson"
[peers]
HV02 = "127.0.0.1:{m2}"
[[vm]]
name = "ADFS1"
memory_mib = 48
fill_mib = 24
nics = [{{ switch = "External" }}]
workload = {{ pages = 2048, rate = 5000 }}
{auth}"#,
            logs = logs.display(),
            auth = crate::host_auth()
        ),
    )
    .unwrap();
    std::fs::write(
        &hv02,
        format!(
            r#"name = "HV02"
listen = "127.0.0.1:{m2}"
control = "127.0.0.1:{c2}"
state_dir = "{logs}/../HV02-state"
switches = ["external"]
event_log = "{logs}/HV02/events.ndjson"
metrics_log = "{logs}/HV02/migrations.ndjson"
[peers]
HV01 = "127.0.0.1:{m1}"
{auth}"#,
            logs = logs.display(),
            auth = crate::host_auth()
        ),
    )
    .unwrap();
    let mut hosts = Hosts(vec![spawn_host(&hv01), spawn_host(&hv02)]);
    let control1: SocketAddr = format!("127.0.0.1:{c1}").parse().unwrap();
    let control2: SocketAddr = format!("127.0.0.1:{c2}").parse().unwrap();
    wait_listening(control1);
    wait_listening(control2);
    let c1s = control1.to_string();
    let c2s = control2.to_string();

    // 1. The switch names differ in case: refused before any page moves.
    let out = relive(
        &data,
        &[
            "migrate",
            "ADFS1",
            "--to",
            "HV02",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &c1s,
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("switch_missing"), "{}", text(&out));
    assert!(
        text(&out).contains("the VM keeps running on HV01"),
        "{}",
        text(&out)
    );

    // 2. The hosts' own event logs tell the correlator why.
    let out = relive(&data, &["ingest", logs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = relive(&data, &["incidents", "--json"]);
    let incidents: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let causes: Vec<&str> = incidents
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["root_cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["vswitch-mismatch"], "{incidents}");
    assert_eq!(incidents[0]["vm_name"], "ADFS1");

    // 3. A wrong control token is refused.
    let refused = control(
        control2,
        serde_json::json!({"token": "nope", "op": "list_vms"}),
    );
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"]["kind"], "credentials_not_recognized");

    // 4. The playbook's fix through the control API, then the retry works.
    let fixed = control(
        control2,
        serde_json::json!({"token": crate::HOST_SECRET, "op": "set", "setting": "add_switch", "name": "External"}),
    );
    assert_eq!(fixed["ok"], true, "{fixed}");
    let out = relive(
        &data,
        &[
            "migrate",
            "ADFS1",
            "--to",
            "HV02",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &c1s,
            "--max-bandwidth",
            "256MiB",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("completed"), "{}", text(&out));
    assert!(text(&out).contains("equal"), "verified: {}", text(&out));
    assert!(
        text(&out)
            .contains("audit after the commit: the paused source memory equals what was sent"),
        "audited: {}",
        text(&out)
    );
    let out = relive(
        &data,
        &[
            "vms",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &c2s,
            "--json",
        ],
    );
    let vms: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(vms[0]["name"], "ADFS1", "{vms}");
    assert_eq!(vms[0]["state"], "running");

    // 5. The success resolves the incident; the metrics feed `relive stats`.
    let out = relive(&data, &["ingest", logs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = relive(&data, &["incidents", "--json"]);
    let incidents: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(incidents[0]["status"], "resolved", "{incidents}");
    let out = relive(&data, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["source"], "metrics", "{stats}");
    assert_eq!(
        stats["total"]["migrations"], 2,
        "the refused attempt and the retry: {stats}"
    );
    assert_eq!(stats["total"]["failures"], 1, "{stats}");
    // Throughput: the successful migration's bytes over its total time, as
    // its own final sample reports them (the refused attempt and the
    // per-pass figures are not averaged in).
    let done: Vec<serde_json::Value> = std::fs::read_to_string(logs.join("HV01/migrations.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|m: &serde_json::Value| m["phase"] == "completed")
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    let want = done[0]["bytes_sent"].as_f64().unwrap() * 8.0
        / (done[0]["total_ms"].as_f64().unwrap() / 1000.0)
        / 1e6;
    let got = stats["total"]["throughput_mbps"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}: {stats}");
    assert!(
        stats["top_failing_vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| !v["name"].as_str().unwrap().trim().is_empty()),
        "{stats}"
    );
    let causes: u64 = stats["top_root_causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(causes, 1, "as many root causes as failures: {stats}");

    // 6. Back to HV01, slowly; HV01 (the destination) is killed mid-run.
    let migrate_back = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args([
            "migrate",
            "ADFS1",
            "--to",
            "HV01",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &c2s,
            "--max-bandwidth",
            "4MiB",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    hosts.0[0].kill().unwrap(); // SIGKILL
    hosts.0[0].wait().unwrap();
    let out = migrate_back.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("connection_reset"), "{}", text(&out));
    let listed = control(
        control2,
        serde_json::json!({"token": crate::HOST_SECRET, "op": "list_vms"}),
    );
    assert_eq!(listed["result"][0]["name"], "ADFS1", "{listed}");
    assert_eq!(
        listed["result"][0]["state"], "running",
        "the VM never left HV02"
    );
    let before = listed["result"][0]["pages_written"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let listed = control(
        control2,
        serde_json::json!({"token": crate::HOST_SECRET, "op": "list_vms"}),
    );
    assert!(
        listed["result"][0]["pages_written"].as_u64().unwrap() > before,
        "its workload runs"
    );
}

#[test]
fn a_host_without_secrets_generates_them_and_never_accepts_the_old_default() {
    let dir = tempfile::tempdir().unwrap();
    let (m, c) = (free_port(), free_port());
    let config = minimal_host(dir.path(), "hv09.toml", m, c, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["host", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    for _ in 0..2 {
        stderr.read_line(&mut said).unwrap();
    }
    let mut hosts = Hosts(vec![child]);
    let token_file = dir.path().join("state/secrets/control-token");
    assert!(said.contains("generated default_secret"), "{said}");
    assert!(said.contains(&token_file.display().to_string()), "{said}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only");
    let control_addr: SocketAddr = format!("127.0.0.1:{c}").parse().unwrap();
    wait_listening(control_addr);
    let old = control(
        control_addr,
        serde_json::json!({"token": "relive-lab-secret", "op": "list_vms"}),
    );
    assert_eq!(old["ok"], false, "{old}");
    let data = dir.path().join("data");
    let out = relive(
        &data,
        &[
            "vms",
            "--token-file",
            token_file.to_str().unwrap(),
            "--control",
            &control_addr.to_string(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = relive(&data, &["vms", "--control", &control_addr.to_string()]);
    assert!(
        !out.status.success() && text(&out).contains("--token-file"),
        "{}",
        text(&out)
    );
    for child in &mut hosts.0 {
        let _ = child.kill();
        let _ = child.wait();
    }
    // A configuration that names the old published default is refused.
    std::fs::write(
        &config,
        format!(
            "name = \"HV09\"\nlisten = \"127.0.0.1:{m}\"\ncontrol = \"127.0.0.1:{c}\"\n[auth]\ncontrol_token = \"relive-lab-secret\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["host", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("never accepted"), "{}", text(&out));
}

/// A port someone else holds: the error says which address, for either
/// listener.
#[test]
fn a_taken_port_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (listen, control, what) in [
        (free_port(), port, "control API"),
        (port, free_port(), "migration listener"),
    ] {
        let config = minimal_host(
            dir.path(),
            &format!("hv-{what}.toml").replace(' ', "-"),
            listen,
            control,
            &crate::host_auth(),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_relive"))
            .args(["host", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains(&format!("the {what} cannot listen on 127.0.0.1:{port}")),
            "{said}"
        );
    }
    drop(taken);
}

/// A mistyped VM name: the line names the VM asked for and says plainly
/// that the host has none by that name.
#[test]
fn a_mistyped_vm_is_named_and_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let (m, c) = (free_port(), free_port());
    let peers = format!(
        "[peers]\nHV10 = \"127.0.0.1:{}\"\n{}",
        free_port(),
        crate::host_auth()
    );
    let config = minimal_host(dir.path(), "hv09.toml", m, c, &peers);
    let _host = Hosts(vec![spawn_host(&config)]);
    let control: SocketAddr = format!("127.0.0.1:{c}").parse().unwrap();
    wait_listening(control);
    let out = relive(
        &dir.path().join("data"),
        &[
            "migrate",
            "ADFS-1",
            "--to",
            "HV10",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &control.to_string(),
        ],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("of ADFS-1 HV09 -> HV10"), "{said}");
    assert!(said.contains("HV09 has no VM named 'ADFS-1'"), "{said}");
    assert!(!said.contains("keeps running"), "{said}");
}

/// A host given only its name, ports and secret logs events and metrics
/// under its state folder and says where (and where its token is); an
/// admin changes settings and lists every host's VMs without writing JSON;
/// a destination missing from [peers] gets a hint.
#[test]
fn a_new_users_host_logs_by_default_and_is_run_without_json() {
    let dir = tempfile::tempdir().unwrap();
    let (m, c) = (free_port(), free_port());
    let vm = "[[vm]]\nname = \"WEB9\"\nmemory_mib = 1024\n";
    // No control_token: it is generated; the start line says where.
    let auth = format!("{vm}[auth]\ndefault_secret = \"{}\"\n", crate::HOST_SECRET);
    let config = minimal_host(dir.path(), "hv09.toml", m, c, &auth);
    let mut child = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["host", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _host = Hosts(vec![child]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, so the host never writes to a closed pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("control API on") {
                let _ = tx.send(line);
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the host's start-up line");
    let state = dir.path().join("state");
    let token_file = state.join("secrets/control-token");
    assert!(
        first.contains(&format!("token in {}", token_file.display())),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "events to {}",
            state.join("events.ndjson").display()
        )),
        "{first}"
    );
    assert!(first.contains("metrics to"), "{first}");
    let events = std::fs::read_to_string(state.join("events.ndjson")).unwrap();
    assert!(events.contains("relive-hostfacts"), "{events}");

    // relive.toml naming the host, for `host set` and `vms --all`.
    let relive_toml = dir.path().join("relive.toml");
    std::fs::write(
        &relive_toml,
        format!(
            "[remediation.hosts]\nHV09 = {{ control = \"127.0.0.1:{c}\", token_file = \"{}\" }}\n\
             GONE = {{ control = \"127.0.0.1:{}\", token = \"nothing-listens-here\" }}\n",
            token_file.display(),
            free_port()
        ),
    )
    .unwrap();
    let cfg = relive_toml.display().to_string();
    let data = dir.path().join("data");
    let set = relive(
        &data,
        &[
            "host",
            "set",
            "hv09",
            "rename_switch",
            "External",
            "LAN 2",
            "--config",
            &cfg,
        ],
    );
    assert!(set.status.success(), "{}", text(&set));
    assert!(
        text(&set).contains("HV09: rename_switch set to External LAN 2"),
        "{}",
        text(&set)
    );
    let by_addr = relive(
        &data,
        &[
            "host",
            "set",
            &format!("127.0.0.1:{c}"),
            "max_migrations",
            "3",
            "--token-file",
            &token_file.display().to_string(),
        ],
    );
    assert!(by_addr.status.success(), "{}", text(&by_addr));
    let settings = control(
        format!("127.0.0.1:{c}").parse().unwrap(),
        serde_json::json!({"op": "settings", "token": std::fs::read_to_string(&token_file).unwrap().trim()}),
    );
    assert_eq!(
        settings["result"]["switches"],
        serde_json::json!(["LAN 2"]),
        "{settings}"
    );
    assert_eq!(settings["result"]["max_migrations"], 3, "{settings}");
    for (args, says) in [
        (
            vec!["host", "set", "HV09", "colour", "red", "--config", &cfg],
            "the settings are migration_enabled",
        ),
        (
            vec![
                "host",
                "set",
                "HV09",
                "max_migrations",
                "many",
                "--config",
                &cfg,
            ],
            "max_migrations takes N",
        ),
        (
            vec!["host", "set", "HV77", "listener", "open", "--config", &cfg],
            "no host \"HV77\" in [remediation.hosts]",
        ),
    ] {
        let out = relive(&data, &args);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    // Every configured host's VMs; the one that does not answer is named.
    let all = relive(&data, &["vms", "--all", "--config", &cfg]);
    let said = text(&all);
    assert!(!all.status.success(), "GONE cannot be reached: {said}");
    assert!(said.contains("cannot list GONE"), "{said}");
    let row = said
        .lines()
        .find(|l| l.starts_with("HV09"))
        .unwrap_or_else(|| panic!("{said}"));
    let header = said.lines().next().unwrap();
    assert!(header.starts_with("HOST"), "{said}");
    // Columns line up: MIB ends where the header's MIB ends.
    let end = header.find("MIB").unwrap() + 3;
    assert_eq!(&row[end - 4..end], "1024", "{said}");

    // A destination the host has no [peers] entry for: a hint, not only
    // Windows' words.
    let out = relive(
        &data,
        &[
            "migrate",
            "WEB9",
            "--to",
            "NOSUCHHOST",
            "--token-file",
            &token_file.display().to_string(),
            "--control",
            &format!("127.0.0.1:{c}"),
        ],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("No such host is known"), "{said}");
    assert!(
        said.contains("NOSUCHHOST is not in the source host's [peers]"),
        "{said}"
    );

    // The commented host template shown by --help and config default.
    let template = relive(&data, &["config", "default", "--host"]);
    let template = String::from_utf8_lossy(&template.stdout).to_string();
    assert!(template.contains("default_secret_file"), "{template}");
    let help = relive(&data, &["host", "--help"]);
    assert!(text(&help).contains("# [[vm]]"), "{}", text(&help));
    let bare = relive(&data, &["host"]);
    assert!(
        text(&bare).contains("relive config default --host"),
        "{}",
        text(&bare)
    );
}
