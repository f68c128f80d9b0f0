//! The remediation engine end to end: three real `relive host` processes
//! on loopback, their event logs read by `relive serve` (a watched folder),
//! the cluster broken for real, and relive detecting, repairing (after an
//! approval where the class says so) and retrying until the VM runs on a
//! destination and the incident is resolved, every step in the audit log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, relive, Procs};

struct Lab {
    dir: PathBuf,
    data: PathBuf,
    logs: PathBuf,
    shared: PathBuf,
    control: Vec<(String, SocketAddr)>,
    /// The web UI's port (approval links point at it).
    http: u16,
}

impl Lab {
    fn control_of(&self, host: &str) -> String {
        self.control
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, a)| a.to_string())
            .unwrap()
    }

    fn relive(&self, args: &[&str]) -> std::process::Output {
        relive(&self.data, args)
    }

    /// `relive migrate VM --to DST` on the host `from` (its outcome).
    fn migrate(&self, vm: &str, from: &str, to: &str, extra: &[&str]) -> std::process::Output {
        let control = self.control_of(from);
        let mut args = vec![
            "migrate",
            vm,
            "--to",
            to,
            "--token",
            crate::HOST_SECRET,
            "--control",
            &control,
        ];
        args.extend_from_slice(extra);
        self.relive(&args)
    }

    fn vms(&self, host: &str) -> Vec<String> {
        let control = self.control_of(host);
        let out = self.relive(&[
            "vms",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &control,
            "--json",
        ]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|v| v["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn audit(&self) -> Vec<Value> {
        let out = self.relive(&["actions", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn incidents(&self) -> Vec<Value> {
        let out = self.relive(&["incidents", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The incident of `vm` with `cause`, waiting up to `limit`.
    fn incident(&self, vm: &str, cause: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let list = self.incidents();
            if let Some(i) = list
                .iter()
                .find(|i| i["vm_name"] == vm && i["root_cause"] == cause)
            {
                return i.clone();
            }
            assert!(
                start.elapsed() < limit,
                "no {cause} incident for {vm} within {limit:?}: {list:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for an audit line of `incident` that `want` accepts.
    fn wait_audit(
        &self,
        incident: &str,
        limit: Duration,
        what: &str,
        want: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let lines = self.audit();
            if let Some(l) = lines.iter().find(|l| l["incident"] == incident && want(l)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what} of {incident}: {:#?}",
                lines
                    .iter()
                    .filter(|l| l["incident"] == incident)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The incident's remediation ended `verified`; its lines.
    fn verified(&self, incident: &str, limit: Duration) -> Vec<Value> {
        let end = self.wait_audit(incident, limit, "the end of the remediation", |l| {
            l["key"].is_null()
                && matches!(
                    l["what"].as_str(),
                    Some("verified" | "escalated" | "skipped")
                )
        });
        let lines: Vec<Value> = self
            .audit()
            .into_iter()
            .filter(|l| l["incident"] == incident)
            .collect();
        assert_eq!(end["what"], "verified", "{lines:#?}");
        lines
    }
}

fn host_config(lab: &Lab, name: &str, peers: &[(String, u16)], body: &str) -> String {
    let mut text = format!(
        "name = \"{name}\"\nstate_dir = \"{state}\"\nevent_log = \"{logs}/{name}/events.ndjson\"\n\
         metrics_log = \"{logs}/{name}/migrations.ndjson\"\nshared_storage = \"{shared}\"\n{body}\n",
        state = lab.dir.join(format!("{name}-state")).display(),
        logs = lab.logs.display(),
        shared = lab.shared.display(),
    );
    text.push_str("[peers]\n");
    for (peer, port) in peers {
        if peer != name {
            text.push_str(&format!("{peer} = \"127.0.0.1:{port}\"\n"));
        }
    }
    text.push_str(&crate::host_auth());
    text
}

/// Starts one `relive host` per name with its body (after its own
/// addresses), waits until each control API listens; the hosts' entries
/// for `[remediation.hosts]`.
fn start_hosts(lab: &mut Lab, names: &[&str], bodies: &[String], procs: &mut Procs) -> String {
    let migration: Vec<(String, u16)> =
        names.iter().map(|n| (n.to_string(), free_port())).collect();
    let mut hosts_toml = String::new();
    for (i, name) in names.iter().enumerate() {
        let control = free_port();
        let body = format!(
            "listen = \"127.0.0.1:{}\"\ncontrol = \"127.0.0.1:{control}\"\n{}",
            migration[i].1, bodies[i]
        );
        let path = lab.dir.join(format!("{name}.toml"));
        std::fs::write(&path, host_config(lab, name, &migration, &body)).unwrap();
        procs.0.push(spawn(&path));
        let addr: SocketAddr = format!("127.0.0.1:{control}").parse().unwrap();
        lab.control.push((name.to_string(), addr));
        hosts_toml.push_str(&format!(
            "{name} = {{ control = \"127.0.0.1:{control}\", token = \"{}\" }}\n",
            crate::HOST_SECRET
        ));
    }
    for (_, addr) in &lab.control {
        wait_listening(*addr);
    }
    hosts_toml
}

/// relive.toml for `relive serve`: only the agent receiver listens (on a
/// port the system picks) for the watched folder of the hosts' logs, then
/// `sections`, then the hosts.
fn serve_config(lab: &Lab, sections: &str, hosts_toml: &str) -> PathBuf {
    let path = lab.dir.join("relive.toml");
    std::fs::write(
        &path,
        format!(
            "[receivers.agent]\nlisten = \"127.0.0.1:0\"\n[receivers.syslog]\nenabled = false\n\
             [receivers.es_bulk]\nenabled = false\n[receivers.otlp]\nenabled = false\n\
             [receivers.lumberjack]\nenabled = false\n\
             [receivers.watch]\npaths = [\"{}/**/*.ndjson\"]\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             {sections}[remediation.hosts]\n{hosts_toml}",
            lab.logs.display(),
            lab.http
        ),
    )
    .unwrap();
    path
}

fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_relive"))
        .args(["host", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relive host")
}

fn serve(lab: &Lab, config: &Path) -> Child {
    serve_with(lab, config, None)
}

/// `relive serve`; `fault` sets `RELIVE_FAULT` (a crash point).
fn serve_with(lab: &Lab, config: &Path, fault: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relive"));
    command
        .arg("--data")
        .arg(&lab.data)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(fault) = fault {
        command.env("RELIVE_FAULT", fault);
    }
    let mut child = command.spawn().expect("start relive serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("listening"), "{line}");
    child
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn relive_detects_repairs_retries_and_verifies_on_real_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab {
        dir: dir.path().to_path_buf(),
        data: dir.path().join("data"),
        logs: dir.path().join("logs"),
        shared: dir.path().join("ClusterStorage").join("Volume1"),
        control: Vec::new(),
        http: free_port(),
    };
    std::fs::create_dir_all(&lab.shared).unwrap();
    let names = ["HV01", "HV02", "HV03"];
    let vm = |name: &str, mib: u64, nics: &str| {
        format!(
            "[[vm]]\nname = \"{name}\"\nmemory_mib = {mib}\nfill_mib = 8\nnics = [{nics}]\nworkload = {{ pages = 512, rate = 2000 }}\n"
        )
    };
    let bodies = [
        // HV01: the source of every VM.
        format!(
            "memory_mib = 4096\nswitches = [\"External\", \"Backup\"]\n{}{}{}{}{}",
            vm("APP1", 32, ""),
            vm("WEB1", 32, "{ switch = \"External\" }"),
            vm("BIG1", 512, ""),
            vm("LIM1", 32, ""),
            vm("BLOCKER", 32, ""),
        ) + &vm("DIS1", 32, "")
            + &vm("WEB2", 32, "{ switch = \"Backup\" }")
            + &vm("OPS1", 32, "{ switch = \"External\" }"),
        // HV02: its switch named in another case; one migration at a time.
        "memory_mib = 4096\nswitches = [\"external\", \"Storage\"]\nmax_migrations = 1\n"
            .to_string(),
        // HV03: too little memory for BIG1.
        "memory_mib = 256\n".to_string(),
    ];
    let mut procs = Procs(Vec::new());
    let hosts_toml = start_hosts(&mut lab, &names, &bodies, &mut procs);
    let mail_dir = dir.path().join("mail");
    let mail = crate::alerts::smtp(&mail_dir, &[]);
    // relive serve reads the hosts' event logs from their folder; it acts
    // on the hosts in `auto` mode, except migration-disabled (suggest).
    let config = serve_config(
        &lab,
        &format!(
            "[correlate]\nattempt_gap = \"3s\"\n[alerts]\nexternal_url = \"http://127.0.0.1:{}\"\n\
             [alerts.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
             [alerts.route]\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\n\
             [remediation]\nmode = \"auto\"\nbackoff_initial_s = 0.5\nbackoff_max_s = 2.0\nverify_deadline_s = 30\n\
             [[remediation.override]]\ncause = \"migration-disabled\"\nmode = \"suggest\"\n",
            lab.http,
            mail.port
        ),
        &hosts_toml,
    );
    procs.0.push(serve(&lab, &config));
    let limit = Duration::from_secs(30);

    // 1. shared-storage-path-missing (the seed): the cluster's storage
    // folder removed; the fix (recreate it) waits for an approval.
    std::fs::remove_dir_all(dir.path().join("ClusterStorage")).unwrap();
    let out = lab.migrate("APP1", "HV01", "HV02", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("shared_storage_missing"),
        "{}",
        text(&out)
    );
    let incident = lab.incident("APP1", "shared-storage-path-missing", limit);
    let id = incident["id"].as_str().unwrap().to_string();
    let waiting = lab.wait_audit(&id, limit, "a request for approval", |l| {
        l["what"] == "awaiting_approval"
    });
    let key = waiting["key"].as_str().unwrap().to_string();
    assert!(
        waiting["detail"]
            .as_str()
            .unwrap()
            .contains("relive approve"),
        "{waiting}"
    );
    assert!(!lab.shared.exists(), "nothing changes before the approval");
    // Wrong, other-incident approvals are refused; the right one is taken.
    let wrong = lab.relive(&["approve", &format!("{id}/fix/9/1")]);
    assert!(!wrong.status.success(), "{}", text(&wrong));
    let other = lab.relive(&["approve", &key, "--incident", "ffffffff"]);
    assert!(!other.status.success(), "{}", text(&other));
    // relive serve is killed (SIGKILL) while it waits; the approval given
    // while it is down is found after the restart, and the fix runs once.
    let serve_at = procs.0.len() - 1;
    procs.0[serve_at].kill().unwrap();
    procs.0[serve_at].wait().unwrap();
    let ok = lab.relive(&["approve", &key, "--by", "alice"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let reused = lab.relive(&["approve", &key, "--by", "alice"]);
    assert!(!reused.status.success(), "{}", text(&reused));
    assert!(
        text(&reused).contains("already approved"),
        "{}",
        text(&reused)
    );
    procs.0[serve_at] = serve(&lab, &config);
    let lines = lab.verified(&id, Duration::from_secs(60));
    let started = lines
        .iter()
        .filter(|l| l["key"] == key.as_str() && l["what"] == "started")
        .count();
    assert_eq!(started, 1, "the approved fix ran once: {lines:#?}");
    let planned = lines.iter().filter(|l| l["what"] == "planned").count();
    assert_eq!(planned, 1, "planned once across the restart: {lines:#?}");
    assert!(lab.shared.exists(), "the fix recreated the folder");
    assert!(lab.vms("HV02").contains(&"APP1".to_string()));
    assert!(!lab.vms("HV01").contains(&"APP1".to_string()));
    let whats: Vec<&str> = lines.iter().filter_map(|l| l["what"].as_str()).collect();
    for want in [
        "planned",
        "started",
        "ran",
        "awaiting_approval",
        "approved",
        "retried",
        "verified",
    ] {
        assert!(whats.contains(&want), "{want} missing: {lines:#?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["what"] == "approved" && l["who"] == "alice"),
        "{lines:#?}"
    );

    // 2. vswitch-mismatch: HV02's switch is `external`; the fix renames it
    // after an approval.
    let out = lab.migrate("WEB1", "HV01", "HV02", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let incident = lab.incident("WEB1", "vswitch-mismatch", limit);
    let id = incident["id"].as_str().unwrap().to_string();
    let waiting = lab.wait_audit(&id, limit, "a request for approval", |l| {
        l["what"] == "awaiting_approval"
    });
    // This one is approved from the approval request's email: its signed
    // link opens a page (which decides nothing), whose button approves.
    let key = waiting["key"].as_str().unwrap().to_string();
    let mail = wait_mail(&mail_dir, &["APPROVAL NEEDED", "WEB1"], limit);
    let link = mail
        .lines()
        .find_map(|l| l.trim().strip_prefix("Approve: "))
        .unwrap_or_else(|| panic!("no approve link in {mail}"))
        .trim()
        .to_string();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/approve?", lab.http)),
        "{link}"
    );
    let web = reqwest::blocking::Client::new();
    let opened = web.get(&link).send().unwrap();
    assert_eq!(opened.status(), 200);
    assert!(opened.text().unwrap().contains("Approve this action?"));
    assert_eq!(
        lab.relive(&["actions", "--json"]).status.code(),
        Some(0),
        "opening the link decided nothing"
    );
    let form = link.split_once('?').unwrap().1.to_string();
    let approved = web
        .post(format!("http://127.0.0.1:{}/approve", lab.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.text().unwrap());
    let again = web
        .post(format!("http://127.0.0.1:{}/approve", lab.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    assert_eq!(again.status(), 409, "a link decides once");
    let lines = lab.verified(&id, Duration::from_secs(60));
    assert!(lab.vms("HV02").contains(&"WEB1".to_string()));
    let decided = lines
        .iter()
        .find(|l| l["key"] == key.as_str() && l["what"] == "approved")
        .unwrap_or_else(|| panic!("no approval of {key}: {lines:#?}"));
    assert!(
        decided["who"].as_str().unwrap().ends_with("(signed link)"),
        "{decided}"
    );

    // 3. destination-out-of-memory: retried to the other node that passes
    // pre-flight, unattended.
    let out = lab.migrate("BIG1", "HV01", "HV03", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let incident = lab.incident("BIG1", "destination-out-of-memory", limit);
    let id = incident["id"].as_str().unwrap().to_string();
    let lines = lab.verified(&id, Duration::from_secs(60));
    assert!(lab.vms("HV02").contains(&"BIG1".to_string()));
    let chose = lines
        .iter()
        .find(|l| l["what"] == "decided")
        .expect("the choice is recorded");
    let why = chose["detail"].as_str().unwrap();
    assert!(why.contains("chose HV02"), "{why}");
    assert!(
        !lines.iter().any(|l| l["what"] == "awaiting_approval"),
        "{lines:#?}"
    );

    // 4. migration-limit-reached: HV02 takes one migration at a time; a
    // slow one holds the slot, relive backs off until it is free.
    let control = lab.control_of("HV01");
    let blocker = Command::new(env!("CARGO_BIN_EXE_relive"))
        .args([
            "migrate",
            "BLOCKER",
            "--to",
            "HV02",
            "--token",
            crate::HOST_SECRET,
            "--control",
            &control,
            "--max-bandwidth",
            "6MiB",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut blocker = Procs(vec![blocker]);
    std::thread::sleep(Duration::from_millis(500));
    let out = lab.migrate("LIM1", "HV01", "HV02", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let incident = lab.incident("LIM1", "migration-limit-reached", limit);
    let id = incident["id"].as_str().unwrap().to_string();
    let lines = lab.verified(&id, Duration::from_secs(90));
    assert!(
        lines.iter().any(|l| l["what"] == "decided"
            && l["detail"]
                .as_str()
                .unwrap()
                .contains("no free migration slot")),
        "{lines:#?}"
    );
    assert!(lab.vms("HV02").contains(&"LIM1".to_string()));
    let _ = blocker.0[0].wait();
    blocker.0.clear();

    // 5. migration-disabled in suggest mode: nothing changes.
    let control3 = lab.control_of("HV03");
    set_on(
        &control3,
        r#"{"setting":"migration_enabled","value":false}"#,
    );
    let out = lab.migrate("DIS1", "HV01", "HV03", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let incident = lab.incident("DIS1", "migration-disabled", limit);
    let id = incident["id"].as_str().unwrap().to_string();
    let end = lab.wait_audit(&id, limit, "the suggestion", |l| {
        l["key"].is_null() && l["what"] == "skipped"
    });
    assert!(
        end["detail"].as_str().unwrap().contains("suggest mode"),
        "{end}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let lines: Vec<Value> = lab
        .audit()
        .into_iter()
        .filter(|l| l["incident"] == id.as_str())
        .collect();
    assert_eq!(lines.len(), 2, "planned and skipped only: {lines:#?}");
    assert!(lab.vms("HV01").contains(&"DIS1".to_string()));
    let plan = lab.relive(&["remediate", &id]);
    assert!(
        text(&plan).contains("Enable-VMMigration"),
        "{}",
        text(&plan)
    );
    assert!(text(&plan).contains("enable-migration"), "{}", text(&plan));
    // A dry run asks the hosts, changes nothing, records nothing.
    let config_arg = config.display().to_string();
    let dry = lab.relive(&["remediate", &id, "--config", &config_arg, "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("finding: HV03 refuses DIS1: migration_disabled"),
        "{}",
        text(&dry)
    );
    assert!(text(&dry).contains("wait for approval"), "{}", text(&dry));
    // The alert carries the plan.
    let alert = wait_mail_text(&mail_dir, "DIS1", limit);
    assert!(alert.contains("Enable-VMMigration"), "{alert}");
    assert!(alert.contains("Proposed fix"), "{alert}");

    // 6. A rejected fix stops the remediation and escalates: a second
    // email says what was tried.
    let out = lab.migrate("WEB2", "HV01", "HV02", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let incident = lab.incident("WEB2", "vswitch-mismatch", limit);
    let id = incident["id"].as_str().unwrap().to_string();
    let waiting = lab.wait_audit(&id, limit, "a request for approval", |l| {
        l["what"] == "awaiting_approval"
    });
    let no = lab.relive(&[
        "reject",
        waiting["key"].as_str().unwrap(),
        "--by",
        "carol",
        "--comment",
        "change freeze",
    ]);
    assert!(no.status.success(), "{}", text(&no));
    let end = lab.wait_audit(&id, limit, "the escalation", |l| {
        l["key"].is_null() && l["what"] == "escalated"
    });
    assert!(
        end["detail"].as_str().unwrap().contains("not approved"),
        "{end}"
    );
    let raw = wait_mail(&mail_dir, &["ESCALATED", "WEB2"], limit);
    assert!(raw.contains("could not finish the repair"), "{raw}");
    assert!(
        lab.vms("HV01").contains(&"WEB2".to_string()),
        "nothing moved"
    );

    // 7. An operator tries again while relive waits for an approval: the
    // events show an attempt relive did not make, so relive fixes what it
    // was approved to fix and leaves the migration to the operator.
    let control3 = lab.control_of("HV03");
    set_on(&control3, r#"{"setting":"migration_enabled","value":true}"#);
    set_on(
        &control3,
        r#"{"setting":"rename_switch","from":"External","to":"external"}"#,
    );
    let out = lab.migrate("OPS1", "HV01", "HV03", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let incident = lab.incident("OPS1", "vswitch-mismatch", limit);
    let id = incident["id"].as_str().unwrap().to_string();
    let waiting = lab.wait_audit(&id, limit, "a request for approval", |l| {
        l["what"] == "awaiting_approval"
    });
    // Past the attempt gap (3 s here), a second failed attempt of its own.
    std::thread::sleep(Duration::from_secs(4));
    let again = lab.migrate("OPS1", "HV01", "HV03", &[]);
    assert!(!again.status.success(), "{}", text(&again));
    let start = Instant::now();
    while !lab
        .incidents()
        .iter()
        .any(|i| i["id"] == id.as_str() && i["count"].as_u64() >= Some(2))
    {
        assert!(
            start.elapsed() < limit,
            "the operator's attempt never reached the incident: {:#?}",
            lab.incidents()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ok = lab.relive(&["approve", waiting["key"].as_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok));
    let end = lab.wait_audit(&id, Duration::from_secs(60), "the end", |l| {
        l["key"].is_null()
            && matches!(
                l["what"].as_str(),
                Some("verified" | "escalated" | "skipped")
            )
    });
    assert_eq!(end["what"], "skipped", "{end}");
    assert!(
        end["detail"].as_str().unwrap().contains("someone else"),
        "{end}"
    );
    assert!(lab.vms("HV01").contains(&"OPS1".to_string()), "not retried");
}

/// Waits for a received message whose subject contains every word; its
/// decoded text.
fn wait_mail(dir: &Path, words: &[&str], limit: Duration) -> String {
    let start = Instant::now();
    loop {
        for (envelope, eml) in crate::alerts::received(dir) {
            let parts = crate::alerts::parts(&eml);
            let subject = parts["headers"]["Subject"].as_str().unwrap_or("");
            if words.iter().all(|w| subject.contains(w)) {
                assert_eq!(envelope["rcpt_tos"][0], "oncall@example.com");
                return parts["text"].as_str().unwrap_or("").to_string();
            }
        }
        assert!(
            start.elapsed() < limit,
            "no message with {words:?} within {limit:?}; received: {:?}",
            crate::alerts::received(dir)
                .iter()
                .map(|(_, eml)| crate::alerts::parts(eml)["headers"]["Subject"].clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a received message whose text tells of `vm`; its text.
fn wait_mail_text(dir: &Path, vm: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        for (_, eml) in crate::alerts::received(dir) {
            let parts = crate::alerts::parts(&eml);
            let text = parts["text"].as_str().unwrap_or("");
            if text.contains(&format!("{vm} failed to live-migrate")) {
                return text.to_string();
            }
        }
        assert!(
            start.elapsed() < limit,
            "no message about {vm} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One control `set` request (raw JSON over TCP).
fn set_on(control: &str, setting: &str) {
    use std::io::{BufRead, Write};
    let stream = std::net::TcpStream::connect(control).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut request: Value = serde_json::from_str(setting).unwrap();
    request["op"] = "set".into();
    request["token"] = crate::HOST_SECRET.into();
    writeln!(writer, "{request}").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"ok\":true"), "{line}");
}

#[test]
fn a_crash_after_a_fix_or_a_migration_never_runs_it_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab {
        dir: dir.path().to_path_buf(),
        data: dir.path().join("data"),
        logs: dir.path().join("logs"),
        shared: dir.path().join("ClusterStorage"),
        control: Vec::new(),
        http: free_port(),
    };
    std::fs::create_dir_all(&lab.shared).unwrap();
    let names = ["HV01", "HV02"];
    let vm = |name: &str, nics: &str| {
        format!("[[vm]]\nname = \"{name}\"\nmemory_mib = 32\nfill_mib = 8\nnics = [{nics}]\n")
    };
    let bodies = [
        vm("APP1", "{ switch = \"External\" }") + &vm("APP2", ""),
        "switches = [\"external\"]\n".to_string(),
    ];
    let mut procs = Procs(Vec::new());
    let hosts_toml = start_hosts(&mut lab, &names, &bodies, &mut procs);
    let config = serve_config(
        &lab,
        "[remediation]\nmode = \"auto\"\nverify_deadline_s = 30\n",
        &hosts_toml,
    );
    let limit = Duration::from_secs(30);
    let crash = |procs: &mut Procs, fault: &str| {
        let mut crashing = procs.0.pop().unwrap();
        let status = crate::streaming::wait_exit(&mut crashing, limit)
            .unwrap_or_else(|| panic!("{fault}: the crash point was never reached"));
        assert!(!status.success(), "{fault}: {status:?}");
    };

    // 1. The fix ran, then the process died before the log said so.
    procs
        .0
        .push(serve_with(&lab, &config, Some("remediation-after-fix")));
    let out = lab.migrate("APP1", "HV01", "HV02", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let id = lab.incident("APP1", "vswitch-mismatch", limit)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let waiting = lab.wait_audit(&id, limit, "a request for approval", |l| {
        l["what"] == "awaiting_approval"
    });
    let key = waiting["key"].as_str().unwrap().to_string();
    assert!(lab.relive(&["approve", &key]).status.success());
    crash(&mut procs, "remediation-after-fix");
    procs.0.push(serve(&lab, &config));
    let lines = lab.verified(&id, Duration::from_secs(60));
    let of_key: Vec<&str> = lines
        .iter()
        .filter(|l| l["key"] == key.as_str())
        .filter_map(|l| l["what"].as_str())
        .collect();
    assert_eq!(
        of_key,
        ["awaiting_approval", "approved", "started", "skipped"],
        "started once, never again; the checks decided it took: {lines:#?}"
    );
    assert!(lab.vms("HV02").contains(&"APP1".to_string()));

    // 2. The migration ran, then the process died before the log said so.
    if let Some(mut running) = procs.0.pop() {
        let _ = running.kill();
        let _ = running.wait();
    }
    procs
        .0
        .push(serve_with(&lab, &config, Some("remediation-after-migrate")));
    set_on(
        &lab.control_of("HV02"),
        r#"{"setting":"migration_enabled","value":false}"#,
    );
    let out = lab.migrate("APP2", "HV01", "HV02", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let id = lab.incident("APP2", "migration-disabled", limit)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let waiting = lab.wait_audit(&id, limit, "a request for approval", |l| {
        l["what"] == "awaiting_approval"
    });
    assert!(lab
        .relive(&["approve", waiting["key"].as_str().unwrap()])
        .status
        .success());
    crash(&mut procs, "remediation-after-migrate");
    procs.0.push(serve(&lab, &config));
    let lines = lab.verified(&id, Duration::from_secs(60));
    assert!(
        lines.iter().any(|l| l["what"] == "retried"
            && l["detail"]
                .as_str()
                .unwrap()
                .contains("seen after a restart")),
        "{lines:#?}"
    );
    let completed = std::fs::read_to_string(lab.logs.join("HV01/migrations.ndjson"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["vm_name"] == "APP2" && m["phase"] == "completed")
        .count();
    assert_eq!(completed, 1, "APP2 migrated exactly once");
    assert!(lab.vms("HV02").contains(&"APP2".to_string()));
}
