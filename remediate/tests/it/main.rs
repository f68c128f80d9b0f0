//! The alerting stage over a real change log and the built-in journal
//! receiver: grouping, folding, repeat, inhibition, silences and restarts
//! decide what is told, and nothing is told twice.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use correlate::changes::{ChangeKind, ChangeLog, IncidentChange};
use correlate::{Incident, Remediation, Status};
use remediate::alert::journal::{self, Decision, JournalEntry};
use remediate::alert::silence::{NewSilence, SilenceStore};
use remediate::alert::{AlertContext, Alerter, AlertsConfig};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn incident(id: &str, cause: &str, vm: &str, minute: i64) -> Incident {
    Incident {
        id: id.into(),
        root_cause: cause.into(),
        title: format!("{vm} failed: {cause}"),
        vm_name: Some(vm.into()),
        vm_id: None,
        source_host: Some("NODE-A".into()),
        destination_host: Some("NODE-B".into()),
        first_seen: at(minute),
        last_seen: at(minute),
        status: Status::Open,
        resolved_at: None,
        count: 1,
        confidence: 0.9,
        alternatives: Vec::new(),
        related_vms: 0,
        evidence: Vec::new(),
        remediation: Remediation {
            playbook: cause.into(),
            fix_class: "approval".into(),
            retry: "after-fix".into(),
            ..Remediation::default()
        },
        warnings: Vec::new(),
        evidence_omitted: 0,
        lookalikes: Vec::new(),
    }
}

fn append(data: &Path, changes: &[(ChangeKind, Incident)]) {
    let mut log = ChangeLog::open(data).unwrap();
    let changes: Vec<IncidentChange> = changes
        .iter()
        .map(|(k, i)| IncidentChange::new(*k, i.clone()))
        .collect();
    log.append(&changes).unwrap();
}

fn config(text: &str) -> AlertsConfig {
    #[derive(serde::Deserialize)]
    struct File {
        alerts: AlertsConfig,
    }
    toml::from_str::<File>(&format!("[alerts]\n{text}"))
        .unwrap()
        .alerts
}

fn start(data: &Path, config: &AlertsConfig) -> Alerter {
    Alerter::start(
        data,
        config.build().unwrap(),
        AlertContext::new(&config.clusters, None),
        pipeline::StageMetrics::new("alerts"),
    )
    .unwrap()
}

fn sent(data: &Path) -> Vec<JournalEntry> {
    journal::read(data)
        .unwrap()
        .into_iter()
        .filter(|e| e.decision == Decision::Sent)
        .collect()
}

/// Waits until `n` notifications were sent (None: `limit` passed first).
fn wait_sent(data: &Path, n: usize, limit: Duration) -> Option<Vec<JournalEntry>> {
    let start = Instant::now();
    loop {
        let got = sent(data);
        if got.len() >= n {
            return Some(got);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn quiet(data: &Path, n: usize) {
    std::thread::sleep(Duration::from_millis(600));
    let got = sent(data);
    assert_eq!(got.len(), n, "{got:#?}");
}

const FAST: &str = "[alerts.route]\ngroup_wait = \"0s\"\ngroup_interval = \"0s\"\n";

#[test]
fn a_fold_and_a_cause_change_update_an_alert_more_evidence_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let alerter = start(data, &config(FAST));
    let mut web1 = incident("a1", "vswitch-mismatch", "WEB1", 0);
    append(data, &[(ChangeKind::Opened, web1.clone())]);
    wait_sent(data, 1, Duration::from_secs(5)).expect("opened");
    // More evidence, a better confidence: the same alert, nothing to tell.
    web1.last_seen += chrono::Duration::seconds(5);
    web1.confidence = 0.95;
    append(data, &[(ChangeKind::EvidenceAdded, web1.clone())]);
    quiet(data, 1);
    web1.count = 2;
    append(data, &[(ChangeKind::Folded, web1.clone())]);
    let got = wait_sent(data, 2, Duration::from_secs(5)).expect("folded");
    assert!(
        got[1].subject.as_deref().unwrap().ends_with("(2 attempts)"),
        "{got:?}"
    );
    // Late evidence changes the cause: told again, under the new cause.
    web1.root_cause = "numa-spanning-disabled".into();
    append(data, &[(ChangeKind::CauseChanged, web1.clone())]);
    let got = wait_sent(data, 3, Duration::from_secs(5)).expect("cause changed");
    assert_ne!(got[2].group, got[1].group, "{got:#?}");
    web1.status = Status::Resolved;
    web1.resolved_at = Some(at(30));
    append(data, &[(ChangeKind::Resolved, web1.clone())]);
    let got = wait_sent(data, 4, Duration::from_secs(5)).expect("resolved");
    assert!(got[3]
        .subject
        .as_deref()
        .unwrap()
        .starts_with("[relive] RESOLVED WEB1"));
    quiet(data, 4);
    alerter.stop(Duration::from_secs(2)).unwrap();
    // A restart tells nothing again.
    let alerter = start(data, &config(FAST));
    quiet(data, 4);
    alerter.stop(Duration::from_secs(2)).unwrap();
}

#[test]
fn same_cluster_and_cause_group_into_one_and_group_by_each_splits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let alerter = start(data, &config("[alerts.route]\ngroup_wait = \"300ms\"\n"));
    append(
        data,
        &[
            (
                ChangeKind::Opened,
                incident("b1", "vswitch-mismatch", "WEB1", 0),
            ),
            (
                ChangeKind::Opened,
                incident("b2", "vswitch-mismatch", "WEB2", 1),
            ),
            (
                ChangeKind::Opened,
                incident("b3", "numa-spanning-disabled", "SQL1", 1),
            ),
        ],
    );
    let got = wait_sent(data, 2, Duration::from_secs(5)).expect("two groups");
    quiet(data, 2);
    let mut sizes: Vec<usize> = got.iter().map(|e| e.alerts.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 2]);
    alerter.stop(Duration::from_secs(2)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let alerter = start(
        data,
        &config("[alerts.route]\ngroup_wait = \"0s\"\ngroup_by = [\"...\"]\n"),
    );
    append(
        data,
        &[
            (
                ChangeKind::Opened,
                incident("c1", "vswitch-mismatch", "WEB1", 0),
            ),
            (
                ChangeKind::Opened,
                incident("c2", "vswitch-mismatch", "WEB2", 1),
            ),
        ],
    );
    wait_sent(data, 2, Duration::from_secs(5)).expect("one each");
    quiet(data, 2);
    alerter.stop(Duration::from_secs(2)).unwrap();
}

#[test]
fn a_cluster_wide_cause_inhibits_the_per_vm_alerts_it_explains_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let alerter = start(
        data,
        &config("clusters = { PROD = [\"NODE-A\", \"NODE-B\"] }\n[alerts.route]\ngroup_wait = \"300ms\"\n"),
    );
    append(
        data,
        &[
            (
                ChangeKind::Opened,
                incident("d1", "shared-storage-path-missing", "ADFS1", 0),
            ),
            (ChangeKind::Opened, incident("d2", "unknown", "WEB1", 2)),
            (
                ChangeKind::Opened,
                incident("d3", "vswitch-mismatch", "WEB2", 3),
            ),
            // Two hours later: not explained by it.
            (
                ChangeKind::Opened,
                incident("d4", "vswitch-mismatch", "WEB3", 120),
            ),
        ],
    );
    let got = wait_sent(data, 2, Duration::from_secs(5)).expect("notifications");
    quiet(data, 2);
    let all: Vec<String> = got.iter().flat_map(|e| e.alerts.clone()).collect();
    assert!(
        all.contains(&"d1".to_string()) && all.contains(&"d4".to_string()),
        "{got:#?}"
    );
    assert!(
        !all.contains(&"d2".to_string()) && !all.contains(&"d3".to_string()),
        "{got:#?}"
    );
    let cluster = got.iter().find(|e| e.alerts == ["d1"]).unwrap();
    assert!(
        cluster
            .subject
            .as_deref()
            .unwrap()
            .ends_with("+2 explained"),
        "{cluster:?}"
    );
    let inhibited = journal::read(data)
        .unwrap()
        .into_iter()
        .filter(|e| e.decision == Decision::Inhibited)
        .count();
    assert_eq!(inhibited, 2);
    alerter.stop(Duration::from_secs(2)).unwrap();
}

#[test]
fn a_silence_mutes_until_it_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let silences = SilenceStore::new(data);
    let silence = silences
        .add(NewSilence {
            matchers: vec!["vm=~\"WEB.*\"".parse().unwrap()],
            starts_at: None,
            ends_at: Utc::now() + chrono::Duration::hours(1),
            created_by: "alice".into(),
            comment: "switch work".into(),
        })
        .unwrap();
    let alerter = start(data, &config(FAST));
    append(
        data,
        &[
            (
                ChangeKind::Opened,
                incident("e1", "vswitch-mismatch", "WEB1", 0),
            ),
            (
                ChangeKind::Opened,
                incident("e2", "numa-spanning-disabled", "SQL1", 0),
            ),
        ],
    );
    let got = wait_sent(data, 1, Duration::from_secs(5)).expect("SQL1");
    quiet(data, 1);
    assert_eq!(got[0].alerts, ["e2"]);
    silences.expire(&silence.id, "alice").unwrap();
    let got = wait_sent(data, 2, Duration::from_secs(5)).expect("WEB1 once the silence ended");
    assert_eq!(got[1].alerts, ["e1"]);
    alerter.stop(Duration::from_secs(2)).unwrap();
    let decisions: Vec<Decision> = journal::read(data)
        .unwrap()
        .iter()
        .map(|e| e.decision)
        .collect();
    assert!(decisions.contains(&Decision::Silenced));
    assert!(decisions.contains(&Decision::SilenceExpired));
}

#[test]
fn an_unchanged_firing_group_is_repeated_after_repeat_interval_in_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let alerter = start(
        data,
        &config("[alerts.route]\ngroup_wait = \"0s\"\nrepeat_interval = \"1s\"\n"),
    );
    append(
        data,
        &[(
            ChangeKind::Opened,
            incident("f1", "vswitch-mismatch", "WEB1", 0),
        )],
    );
    let first = wait_sent(data, 1, Duration::from_secs(5)).expect("first");
    let start_at = Instant::now();
    let got = wait_sent(data, 2, Duration::from_secs(5)).expect("repeat");
    assert!(
        start_at.elapsed() >= Duration::from_millis(500),
        "not before the interval"
    );
    assert_eq!(got[1].alerts, first[0].alerts);
    alerter.stop(Duration::from_secs(2)).unwrap();
    // The state log knows the thread: `relive alerts` shows both sent.
    let statuses = journal::statuses(&journal::read(data).unwrap());
    assert_eq!(statuses.len(), 2);
}

/// A loopback HTTP server answering 200 to every request; counts them.
fn webhook_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, hits)
}

#[test]
fn a_receivers_rate_limit_holds_notifications_back_without_dropping_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (addr, hits) = webhook_server();
    let alerter = start(
        data,
        &config(&format!(
            "[alerts.route]\nreceiver = \"hook\"\ngroup_wait = \"0s\"\ngroup_by = [\"...\"]\n\
             [[alerts.receivers]]\nname = \"hook\"\nmax_per_minute = 2\n\
             [[alerts.receivers.webhooks]]\nurl = \"http://{addr}/\"\n"
        )),
    );
    append(
        data,
        &(0..5)
            .map(|k| {
                (
                    ChangeKind::Opened,
                    incident(&format!("g{k}"), "vswitch-mismatch", &format!("WEB{k}"), k),
                )
            })
            .collect::<Vec<_>>(),
    );
    let start_at = Instant::now();
    while hits.load(std::sync::atomic::Ordering::SeqCst) < 2
        && start_at.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "two a minute, no more"
    );
    let journal = journal::read(data).unwrap();
    let count = |d: Decision| journal.iter().filter(|e| e.decision == d).count();
    assert_eq!(count(Decision::Queued), 5, "all five decided");
    assert_eq!(count(Decision::Sent), 2);
    assert_eq!(count(Decision::RateLimited), 1, "the wait is said once");
    assert_eq!(count(Decision::Failed), 0, "nothing dropped");
    // Stopping leaves the held-back ones in the outbox for the next start.
    alerter.stop(Duration::from_millis(500)).unwrap();
    let statuses = journal::statuses(&journal::read(data).unwrap());
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.status == Decision::Queued)
            .count(),
        3
    );
}

mod plan {
    //! Plans from the shipped playbooks: typed actions in order, values as
    //! data, unresolved placeholders named, keys unique per attempt.
    use super::incident;
    use remediate::plan::{placeholders, Class, Facts, Plan, PlanError, RetryPolicy, Stage};

    fn kb() -> correlate::Knowledge {
        correlate::shipped::knowledge().unwrap()
    }

    #[test]
    fn a_plan_confirms_fixes_verifies_and_retries_in_order_with_its_classes() {
        let kb = kb();
        let mut i = incident("inc1", "vswitch-mismatch", "APP-WEB02", 0);
        i.vm_id = Some("C46920C1-34DF-40DF-AA62-0B0A481EA7F4".into());
        let mut facts = Facts::default();
        facts.clusters.insert("node-a".into(), "PROD".into());
        let plan = Plan::for_incident(&i, &kb, &facts, 1).unwrap();
        let playbook = kb.get("vswitch-mismatch").unwrap();
        let stages: Vec<Stage> = plan.actions.iter().map(|a| a.stage).collect();
        let confirms = playbook.confirm.len();
        assert_eq!(
            &stages[..confirms],
            vec![Stage::Confirm; confirms].as_slice()
        );
        let first_fix = stages.iter().position(|s| *s == Stage::Fix).unwrap();
        let first_verify = stages.iter().position(|s| *s == Stage::Verify).unwrap();
        assert!(
            confirms <= first_fix && first_fix < first_verify,
            "{stages:?}"
        );
        assert!(stages[first_verify..]
            .iter()
            .all(|s| matches!(s, Stage::Verify | Stage::Retry | Stage::VerifyRetry)));
        // After the fix is verified: the retry, then its verification.
        assert_eq!(
            &stages[stages.len() - 2..],
            &[Stage::Retry, Stage::VerifyRetry]
        );
        let retry = &plan.actions[stages.len() - 2];
        assert_eq!(retry.target.as_deref(), Some("NODE-A"));
        assert_eq!(retry.params["destination_host"], "NODE-B");
        assert_eq!(plan.retry, RetryPolicy::AfterFix);
        assert!(plan
            .actions
            .iter()
            .filter(|a| a.stage == Stage::Confirm)
            .all(|a| a.class == Class::Auto));
        assert_eq!(plan.class, Class::Approval, "{plan:#?}");
        plan.runnable().unwrap();
        // Keys are unique and name the attempt.
        let mut keys: Vec<&str> = plan.actions.iter().map(|a| a.key.as_str()).collect();
        assert!(keys
            .iter()
            .all(|k| k.starts_with("inc1/") && k.ends_with("/1")));
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), plan.actions.len());
        let next = Plan::for_incident(&i, &kb, &facts, 2).unwrap();
        assert!(next.actions.iter().all(|a| a.key.ends_with("/2")));
        // Each action carries exactly the values its command uses, and a
        // relive host operation the VM and its two hosts.
        for a in plan.actions.iter().filter(|a| !a.command.is_empty()) {
            let mut used: Vec<&str> = placeholders(&a.command);
            if a.op.is_some() {
                for v in ["vm_name", "source_host", "destination_host"] {
                    if !used.contains(&v) {
                        used.push(v);
                    }
                }
            }
            assert_eq!(
                a.params
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .len(),
                used.len(),
                "{a:?}"
            );
            if used.contains(&"destination_host") && !used.contains(&"source_host") {
                assert_eq!(a.target.as_deref(), Some("NODE-B"));
            }
        }
    }

    #[test]
    fn an_unknown_value_makes_the_plan_unrunnable_and_is_named() {
        let kb = kb();
        // No cluster configured for these hosts, and no destination known.
        let mut i = incident("inc2", "shared-storage-path-missing", "ADFS1", 0);
        i.destination_host = None;
        let plan = Plan::for_incident(&i, &kb, &Facts::default(), 1).unwrap();
        match plan.runnable() {
            Err(PlanError::Unresolved { missing }) => {
                assert!(
                    missing.iter().any(|m| m.ends_with("{cluster}")),
                    "{missing:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let unknown = incident("inc3", "no-such-cause", "X", 0);
        assert!(matches!(
            Plan::for_incident(&unknown, &kb, &Facts::default(), 1),
            Err(PlanError::NoPlaybook(_))
        ));
    }

    #[test]
    fn a_hostile_vm_name_stays_one_value_never_part_of_a_command() {
        let kb = kb();
        let hostile = "x'; Remove-Item C:\\ -Recurse; '$(reboot)`whoami`\n<script>";
        let i = incident("inc4", "destination-out-of-memory", hostile, 0);
        let plan = Plan::for_incident(&i, &kb, &Facts::default(), 1).unwrap();
        let playbook = kb.get("destination-out-of-memory").unwrap();
        let mut carried = 0;
        for a in &plan.actions {
            assert!(!a.command.contains("Remove-Item C:"), "{}", a.command);
            assert!(playbook
                .confirm
                .iter()
                .chain(&playbook.fix)
                .any(|s| s.command == a.command));
            if let Some(v) = a.params.get("vm_name") {
                assert_eq!(v, hostile);
                carried += 1;
            }
        }
        assert!(carried > 0);
        // out of memory retries to another node: the move is the retry stage.
        assert_eq!(plan.retry, RetryPolicy::OtherNode);
    }
}

mod executors {
    //! What the executors send: values as data, whatever a VM is called.
    use super::incident;
    use remediate::executor::{Executor, HostAccess, ReliveHosts};
    use remediate::plan::{Facts, Plan, Stage};
    use remediate::powershell::{render, PowerShell, PowerShellConfig};
    use std::io::{BufRead, BufReader, Write};

    const HOSTILE: &str = "x'; Remove-Item C:\\ -Recurse; '$(reboot)`whoami`\n<script>\"";

    fn plan(cause: &str) -> Plan {
        let kb = correlate::shipped::knowledge().unwrap();
        let mut facts = Facts::default();
        facts.clusters.insert("node-a".into(), "PROD".into());
        let mut i = incident("inc9", cause, HOSTILE, 0);
        i.vm_id = Some("C46920C1-34DF-40DF-AA62-0B0A481EA7F4".into());
        Plan::for_incident(&i, &kb, &facts, 1).unwrap()
    }

    /// Decodes the Base64 JSON literal of a rendered script.
    fn values_of(script: &str) -> serde_json::Value {
        let start = script.find("FromBase64String('").unwrap() + "FromBase64String('".len();
        let end = start + script[start..].find('\'').unwrap();
        let b64 = &script[start..end];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = Vec::new();
        for c in b64.bytes().filter(|c| *c != b'=') {
            let v = alphabet.iter().position(|a| *a == c).unwrap();
            for i in (0..6).rev() {
                bits.push((v >> i) & 1);
            }
        }
        let bytes: Vec<u8> = bits
            .chunks(8)
            .filter(|c| c.len() == 8)
            .map(|c| c.iter().fold(0u8, |acc, b| (acc << 1) | *b as u8))
            .collect();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_rendered_script_carries_a_hostile_name_only_inside_its_base64_literal() {
        let plan = plan("vswitch-mismatch");
        let mut rendered = 0;
        for a in plan.actions.iter().filter(|a| !a.command.trim().is_empty()) {
            let script = render(a).unwrap();
            rendered += 1;
            for bad in ["Remove-Item", "reboot", "whoami", "<script>"] {
                assert!(!script.contains(bad), "{bad} in:\n{script}");
            }
            // Every placeholder became a variable; none is left.
            assert!(!script.contains("{vm_name}"), "{script}");
            if a.command.contains("{vm_name}") {
                assert!(script.contains("$vm_name = [string]$relive.vm_name"));
                assert_eq!(values_of(&script)["vm_name"], HOSTILE);
            }
        }
        assert!(rendered >= 4, "{rendered}");
    }

    #[test]
    fn the_transport_gets_the_host_as_one_argument_and_the_script_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("script.ps1");
        // A stand-in transport: records its argument and what it was sent.
        let ps = PowerShell::new(PowerShellConfig {
            transport: vec![
                "/bin/sh".into(),
                "-c".into(),
                "printf '%s' \"$1\" > \"$0.host\"; cat > \"$0\"; echo checked".into(),
                record.display().to_string(),
                "{host}".into(),
            ],
            timeout_s: 10,
        });
        let plan = plan("vswitch-mismatch");
        let a = plan
            .actions
            .iter()
            .find(|a| a.stage == Stage::Confirm && a.command.contains("{vm_name}"))
            .unwrap();
        let seen = ps.check(a).unwrap();
        assert_eq!(seen.detail, "checked");
        let sent = std::fs::read_to_string(&record).unwrap();
        assert_eq!(sent, render(a).unwrap());
        let host = std::fs::read_to_string(format!("{}.host", record.display())).unwrap();
        assert_eq!(host, "NODE-A");
        // A host name that is not one never reaches the transport.
        let mut bad = a.clone();
        bad.target = Some("-oProxyCommand=reboot".into());
        assert!(ps.check(&bad).is_err());
        // A failing transport is an error with its words, not a success.
        let failing = PowerShell::new(PowerShellConfig {
            transport: vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat >/dev/null; echo denied >&2; exit 3".into(),
            ],
            timeout_s: 10,
        });
        let err = failing.fix(a).unwrap_err().to_string();
        assert!(err.contains("denied"), "{err}");
    }

    #[test]
    fn a_powershell_check_judges_by_its_healthy_if_and_one_without_only_reports() {
        // A stand-in transport that answers what a host would print.
        let answering = |answer: &str| {
            PowerShell::new(PowerShellConfig {
                transport: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("cat >/dev/null; printf '{answer}'"),
                ],
                timeout_s: 10,
            })
        };
        let storage = plan("shared-storage-path-missing");
        let judge = storage
            .actions
            .iter()
            .find(|a| a.stage == Stage::Confirm && a.healthy_if.is_some())
            .expect("the playbook has a judging check");
        let report = storage
            .actions
            .iter()
            .find(|a| a.stage == Stage::Confirm && a.healthy_if.is_none() && !a.command.is_empty())
            .expect("and one that reports");
        let ps = answering("True\\r\\nTrue\\r\\n");
        assert!(ps.judges(judge) && !ps.judges(report));
        assert!(
            ps.check(judge).unwrap().healthy,
            "the folder is there on both nodes"
        );
        for (answer, why) in [
            ("True\\nFalse\\n", "missing on one node"),
            ("", "no answer is not healthy"),
            ("True\\n", "one node did not answer"),
        ] {
            assert!(!answering(answer).check(judge).unwrap().healthy, "{why}");
        }
        // The playbooks' judges, each against what Windows prints.
        for (cause, healthy, sick) in [
            (
                "migration-disabled",
                "HV01 VirtualMachineMigrationEnabled=True Authentication=Kerberos UseAnyNetwork=True Maximum=2\\nHV02 VirtualMachineMigrationEnabled=True Authentication=Kerberos UseAnyNetwork=True Maximum=2\\n",
                "HV01 VirtualMachineMigrationEnabled=True Authentication=Kerberos UseAnyNetwork=True Maximum=2\\nHV02 VirtualMachineMigrationEnabled=False Authentication=Kerberos UseAnyNetwork=True Maximum=2\\n",
            ),
            (
                "numa-spanning-disabled",
                "HV02 NumaSpanningEnabled=True\\n",
                "HV02 NumaSpanningEnabled=False\\n",
            ),
            (
                "vswitch-mismatch",
                "end of the incompatibilities\\n",
                "33012 Could not find Ethernet switch External.\\nend of the incompatibilities\\n",
            ),
        ] {
            let judged = plan(cause);
            let judge = judged
                .actions
                .iter()
                .find(|a| a.stage == Stage::Confirm && a.healthy_if.is_some())
                .unwrap_or_else(|| panic!("{cause}: no judging check"));
            assert!(answering(healthy).check(judge).unwrap().healthy, "{cause}");
            assert!(!answering(sick).check(judge).unwrap().healthy, "{cause}");
        }
    }

    #[test]
    fn a_relive_host_receives_a_hostile_name_as_one_json_string() {
        // A stand-in control API that records the request line it gets.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_until(b'\n', &mut line)
                .unwrap();
            let mut w = stream;
            writeln!(w, "{{\"ok\":false,\"error\":{{\"kind\":\"vm_not_found\",\"message\":\"no such VM\"}}}}").unwrap();
            line
        });
        let mut hosts = std::collections::BTreeMap::new();
        hosts.insert(
            "NODE-A".to_string(),
            HostAccess {
                control: addr,
                token: Some("t0ken-0123456789".into()),
                token_file: None,
            },
        );
        let ex = ReliveHosts::new(hosts);
        let outcome = ex.migrate(HOSTILE, "NODE-A", "NODE-B").unwrap();
        assert!(!outcome.ok);
        assert_eq!(outcome.signature.as_deref(), Some("vm_not_found"));
        let line = server.join().unwrap();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        let request: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(request["op"], "migrate");
        assert_eq!(request["vm"], HOSTILE);
        assert_eq!(request["destination"], "NODE-B");
    }
}

#[test]
fn email_into_a_folder_writes_each_message_as_an_eml_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mail = dir.path().join("mail");
    let config = config(&format!(
        "[alerts.email]\nfile_dir = {:?}\nfrom = \"relive@example.com\"\nto = [\"oncall@example.com\"]\n\
         [alerts.route]\ngroup_wait = \"0s\"\n",
        mail.display().to_string()
    ));
    let alerter = start(&data, &config);
    append(
        &data,
        &[(
            ChangeKind::Opened,
            incident("a1", "vswitch-mismatch", "APP1", 0),
        )],
    );
    let journal = wait_sent(&data, 1, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("timed out after 10 s: nothing sent"));
    alerter.stop(Duration::from_secs(2)).unwrap();
    assert_eq!(journal[0].decision, Decision::Sent);
    let files: Vec<_> = std::fs::read_dir(&mail)
        .unwrap()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|e| e == "eml"))
        .collect();
    assert_eq!(files.len(), 1, "one message, one file");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(text.contains("Subject: [relive]"), "{text}");
    assert!(text.contains("To: oncall@example.com"), "{text}");
    assert!(text.contains("APP1"), "{text}");
    // Both a server and a folder, or neither: refused.
    for bad in [
        "[alerts.email]\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
        "[alerts.email]\nsmtp = \"127.0.0.1:25\"\nfile_dir = \"/tmp/x\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
    ] {
        assert!(self::config(bad).build().is_err(), "{bad}");
    }
}
