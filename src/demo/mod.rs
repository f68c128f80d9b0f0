//! `relive demo`: the whole story on one machine. Three relive migration
//! hosts (the `examples/lab/` configurations), the collector with an agent
//! per host and the web UI, as child processes on loopback; healthy
//! migrations; the cluster broken as the seed was (a node's shared storage
//! path removed) and a virtual switch renamed; the failures detected,
//! alerted, repaired (demo mode approves what would wait for a person, and
//! says so), retried, verified and resolved. Everything lives under one
//! data folder. The CLI only wires this.

mod lab;
pub mod story;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use migrate_core::control::{ControlClient, Setting};
use migrate_core::report::{MigrationParams, MigrationReport, Status};
use remediate::audit::{Entry, What};
use serde::Serialize;

use crate::display::clean;
pub use lab::{Lab, LabHost, COLLECTOR_TEMPLATE, HOST_TEMPLATES};
use story::{Mark, Story};

/// Who approves in demo mode (the audit log says so).
pub const DEMO_APPROVER: &str = "relive demo (auto-approved: demo mode)";

/// The healthy migrations: VM, source, destination.
pub const HEALTHY: [(&str, &str, &str); 2] = [("SQL1", "HV01", "HV02"), ("WEB1", "HV01", "HV03")];

/// A failure the demo causes, and the cause relive must name.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// The VM.
    pub vm: &'static str,
    /// From.
    pub source: &'static str,
    /// To.
    pub destination: &'static str,
    /// The root cause relive must find.
    pub cause: &'static str,
}

/// The failures: the seed's (004: the shared storage path removed on the
/// destination) and a renamed switch.
pub const FAILURES: [Failure; 2] = [
    Failure {
        vm: "FS1",
        source: "HV01",
        destination: "HV02",
        cause: "shared-storage-path-missing",
    },
    Failure {
        vm: "APP1",
        source: "HV01",
        destination: "HV03",
        cause: "vswitch-mismatch",
    },
];

/// The switch renamed on the failures' destination (Hyper-V compares
/// switch names case-sensitively: `external` is not `External`).
pub const RENAMED_SWITCH: (&str, &str, &str) = ("HV03", "External", "external");

/// What `relive demo` needs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The relive binary the children run.
    pub exe: PathBuf,
    /// Everything goes under this folder (new or empty).
    pub data: PathBuf,
    /// Extra rule folders for the collector.
    pub rules: Vec<PathBuf>,
    /// Alerts to this SMTP server and recipient instead of `.eml` files.
    pub smtp: Option<(String, String)>,
    /// Leave everything running after the story until `stop` is set.
    pub keep_running: bool,
    /// Set on Ctrl-C or SIGTERM: every wait ends and the children stop.
    pub stop: Arc<AtomicBool>,
    /// Longest wait for the failures to be repaired and proven.
    pub deadline: Duration,
}

/// Why the demo failed: the step, and why.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A step failed.
    #[error("step `{step}` failed: {why}")]
    Step {
        /// The step.
        step: &'static str,
        /// Why.
        why: String,
    },
    /// Ctrl-C or SIGTERM.
    #[error("stopped (Ctrl-C or SIGTERM) during `{step}`")]
    Interrupted {
        /// The step it stopped in.
        step: &'static str,
    },
}

impl DemoError {
    fn step(step: &'static str, why: impl std::fmt::Display) -> DemoError {
        DemoError::Step {
            step,
            why: why.to_string(),
        }
    }
}

/// One migration the demo ran.
#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    /// The VM.
    pub vm: String,
    /// From.
    pub source: String,
    /// To.
    pub destination: String,
    /// completed, failed, cancelled.
    pub status: String,
    /// Blackout, ms.
    pub blackout_ms: Option<u64>,
    /// Pre-copy passes.
    pub passes: usize,
    /// Bytes sent.
    pub bytes: u64,
    /// Total time, ms.
    pub total_ms: u64,
    /// The error's kind and message, when it failed.
    pub error: Option<String>,
}

/// What became of one failure.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// The VM.
    pub vm: String,
    /// The cause the demo expects.
    pub expected_cause: String,
    /// The incident relive opened.
    pub incident: Option<String>,
    /// Its root cause.
    pub root_cause: Option<String>,
    /// Seconds from the failure to the incident.
    pub detected_after_s: Option<f64>,
    /// Subject of the first alert email about it.
    pub email: Option<String>,
    /// Fix actions that ran (their words).
    pub fixes: Vec<String>,
    /// Actions demo mode approved.
    pub approved: Vec<String>,
    /// The retry's words.
    pub retried: Option<String>,
    /// Seconds from the failure to the verified retry.
    pub verified_after_s: Option<f64>,
    /// Seconds from the failure to the incident's resolution.
    pub resolved_after_s: Option<f64>,
}

impl Outcome {
    fn finished(&self, need_email: bool) -> bool {
        self.verified_after_s.is_some()
            && self.resolved_after_s.is_some()
            && (!need_email || self.email.is_some())
    }
}

/// The demo's result (also `DATA/summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The data folder.
    pub data: PathBuf,
    /// The collector's data folder (`relive --data`).
    pub collector: PathBuf,
    /// The web UI.
    pub url: String,
    /// Where its tokens are.
    pub tokens_file: Option<PathBuf>,
    /// The healthy migrations.
    pub healthy: Vec<Migration>,
    /// The failed ones.
    pub failed: Vec<Migration>,
    /// What relive did about each.
    pub outcomes: Vec<Outcome>,
    /// Alert emails sent (written by the file transport, or accepted by
    /// the SMTP server).
    pub emails: usize,
    /// Seconds the story took.
    pub seconds: f64,
}

/// Runs the demo: the story on `out`; with `keep_running`, everything
/// stays up until `options.stop` is set. Every child is stopped before
/// this returns, on success, failure or interruption.
pub fn run(options: &DemoOptions, out: &mut dyn Story) -> Result<Summary, DemoError> {
    let start = Instant::now();
    let smtp = options.smtp.as_ref().map(|(s, t)| (s.as_str(), t.as_str()));
    let mut lab = Lab::prepare(
        &options.data,
        &options.exe,
        &options.rules,
        smtp,
        options.stop.clone(),
    )?;
    out.say(
        Mark::Step,
        &format!(
            "relive demo: everything under {} (kept when the demo ends)",
            clean(&lab.root.display().to_string())
        ),
    );
    let result = story(options, &mut lab, out, start);
    let result = match result {
        Ok(summary) if options.keep_running => {
            out.say(
                Mark::Note,
                "--keep-running: the hosts, the collector and the web UI stay up; Ctrl-C stops them all",
            );
            out.waiting("running; Ctrl-C stops everything");
            while !options.stop.load(Ordering::Acquire) {
                if let Err(e) = lab.check_children("keep running") {
                    out.done();
                    lab.stop_all(Duration::from_secs(10));
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(summary)
        }
        other => other,
    };
    out.waiting("stopping the agents, the collector and the hosts");
    let killed = lab.stop_all(Duration::from_secs(10));
    out.done();
    if !killed.is_empty() {
        tracing::warn!(killed = ?killed, "demo: these did not stop within 10 s and were killed");
    }
    result
}

fn story(
    options: &DemoOptions,
    lab: &mut Lab,
    out: &mut dyn Story,
    start: Instant,
) -> Result<Summary, DemoError> {
    out.waiting("starting three migration hosts");
    lab.start_hosts()?;
    out.say(
        Mark::Ok,
        &format!(
            "3 migration hosts on loopback: {} (configs: {})",
            lab.hosts
                .iter()
                .map(|h| format!("{} {}", h.name, h.control))
                .collect::<Vec<_>>()
                .join(", "),
            clean(&lab.root.join("hosts").display().to_string())
        ),
    );
    for host in &lab.hosts {
        let vms = client(host, "start the hosts")?
            .list_vms()
            .map_err(|e| DemoError::step("start the hosts", e))?;
        if !vms.is_empty() {
            out.say(
                Mark::Note,
                &format!(
                    "{} runs {}",
                    host.name,
                    vms.iter()
                        .map(|v| format!("{} ({} MiB)", clean(&v.name), v.memory_mib))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    out.waiting("starting the collector and the web UI");
    lab.start_collector()?;
    out.waiting("starting an agent per host");
    lab.start_agents()?;
    let url = format!("http://{}/", lab.http);
    out.say(
        Mark::Ok,
        &format!(
            "collector and web UI up ({url}); an agent on each host ships its event log and migration metrics"
        ),
    );

    // Healthy migrations.
    let mut healthy = Vec::new();
    for (vm, from, to) in HEALTHY {
        out.waiting(&format!("live-migrating {vm} from {from} to {to}"));
        let m = migrate(lab, options, vm, from, to, "healthy migrations")?;
        if m.status != "completed" {
            return Err(DemoError::step(
                "healthy migrations",
                format!(
                    "{vm} {from} -> {to} {}: {}",
                    m.status,
                    m.error.clone().unwrap_or_default()
                ),
            ));
        }
        out.say(
            Mark::Ok,
            &format!(
                "{vm} live-migrated {from} -> {to}: blackout {} ms, {} pre-copy passes, {:.0} MB sent in {:.2} s",
                m.blackout_ms.unwrap_or(0),
                m.passes,
                m.bytes as f64 / 1e6,
                m.total_ms as f64 / 1000.0
            ),
        );
        healthy.push(m);
    }

    // Break the cluster.
    out.waiting("breaking the cluster");
    let storage = lab.host(FAILURES[0].destination).shared_storage.clone();
    std::fs::remove_dir_all(&storage).map_err(|e| {
        DemoError::step(
            "break the cluster",
            format!("cannot remove {}: {e}", storage.display()),
        )
    })?;
    out.say(
        Mark::Fail,
        &format!(
            "broke the cluster as the seed did: removed {}'s shared storage path {}",
            FAILURES[0].destination,
            clean(&storage.display().to_string())
        ),
    );
    let (host, from, to) = RENAMED_SWITCH;
    client(lab.host(host), "break the cluster")?
        .set(Setting::RenameSwitch {
            from: from.into(),
            to: to.into(),
        })
        .map_err(|e| DemoError::step("break the cluster", e))?;
    out.say(
        Mark::Fail,
        &format!(
            "renamed {host}'s virtual switch '{from}' to '{to}' (switch names are case-sensitive)"
        ),
    );
    let mut failed = Vec::new();
    let mut failed_at = Vec::new();
    for f in FAILURES {
        out.waiting(&format!(
            "live-migrating {} from {} to {}",
            f.vm, f.source, f.destination
        ));
        let m = migrate(
            lab,
            options,
            f.vm,
            f.source,
            f.destination,
            "failing migrations",
        )?;
        failed_at.push(Instant::now());
        if m.status == "completed" {
            return Err(DemoError::step(
                "failing migrations",
                format!(
                    "{} {} -> {} completed: the break did not take",
                    f.vm, f.source, f.destination
                ),
            ));
        }
        out.say(
            Mark::Fail,
            &format!(
                "{} {} -> {} failed: {}",
                f.vm,
                f.source,
                f.destination,
                clean(m.error.as_deref().unwrap_or("no error given"))
            ),
        );
        failed.push(m);
    }

    // relive takes over.
    let outcomes = follow(options, lab, out, &failed_at)?;
    let emails = count_sent(&lab.collector);
    let seconds = start.elapsed().as_secs_f64();
    let summary = Summary {
        data: lab.root.clone(),
        collector: lab.collector.clone(),
        url: url.clone(),
        tokens_file: lab.tokens_file.clone(),
        healthy,
        failed,
        outcomes,
        emails,
        seconds,
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(lab.root.join("summary.json"), json)
        .map_err(|e| DemoError::step("summary", e))?;
    print_summary(&summary, lab, out);
    Ok(summary)
}

fn client(host: &LabHost, step: &'static str) -> Result<ControlClient, DemoError> {
    let token = host.token().map_err(|e| DemoError::step(step, e))?;
    ControlClient::connect(host.control, &token)
        .map_err(|e| DemoError::step(step, format!("{}'s control API: {e}", host.name)))
}

/// Runs one live migration to its end through the source's control API.
fn migrate(
    lab: &mut Lab,
    options: &DemoOptions,
    vm: &str,
    from: &str,
    to: &str,
    step: &'static str,
) -> Result<Migration, DemoError> {
    let mut source = client(lab.host(from), step)?;
    let id = source
        .migrate(vm, to, None, MigrationParams::default())
        .map_err(|e| DemoError::step(step, format!("{vm} {from} -> {to}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if options.stop.load(Ordering::Acquire) {
            return Err(DemoError::Interrupted { step });
        }
        lab.check_children(step)?;
        let info = source
            .query(&id)
            .map_err(|e| DemoError::step(step, format!("{vm}: {e}")))?;
        if info.status.is_final() {
            break;
        }
        if Instant::now() > deadline {
            return Err(DemoError::step(
                step,
                format!("{vm} {from} -> {to} did not end within 60 s"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report: MigrationReport = source
        .wait(&id)
        .map_err(|e| DemoError::step(step, format!("{vm}: {e}")))?;
    let status = match report.info.status {
        Status::Completed => "completed",
        Status::Cancelled => "cancelled",
        _ => "failed",
    };
    Ok(Migration {
        vm: vm.to_string(),
        source: from.to_string(),
        destination: to.to_string(),
        status: status.to_string(),
        blackout_ms: report.info.downtime,
        passes: report.passes.len(),
        bytes: report.info.ram.transferred,
        total_ms: report.info.total_time,
        error: report
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.kind.name(), e.message)),
    })
}

/// What the follower has shown so far.
#[derive(Default)]
struct Seen {
    audit_lines: usize,
    journal_lines: usize,
    mails: BTreeSet<PathBuf>,
    wrong_cause: BTreeMap<String, String>,
}

/// Follows relive until every failure is repaired, retried, verified and
/// resolved: incidents, the audit log, the emails; approves what waits for
/// approval (demo mode).
fn follow(
    options: &DemoOptions,
    lab: &mut Lab,
    out: &mut dyn Story,
    failed_at: &[Instant],
) -> Result<Vec<Outcome>, DemoError> {
    let mut outcomes: Vec<Outcome> = FAILURES
        .iter()
        .map(|f| Outcome {
            vm: f.vm.to_string(),
            expected_cause: f.cause.to_string(),
            ..Outcome::default()
        })
        .collect();
    let need_email = options.smtp.is_none();
    let store = correlate::IncidentStore::new(&lab.collector);
    let audit_path = lab.collector.join("remediation").join("audit.jsonl");
    let remediation = remediate::config::RemediationConfig::default();
    let mut seen = Seen::default();
    let begin = Instant::now();
    let secs = |i: usize| failed_at[i].elapsed().as_secs_f64();
    while !outcomes.iter().all(|o| o.finished(need_email)) {
        let step = current_step(&outcomes);
        if options.stop.load(Ordering::Acquire) {
            return Err(DemoError::Interrupted { step });
        }
        lab.check_children(step)?;
        if begin.elapsed() > options.deadline {
            return Err(DemoError::step(
                step,
                format!(
                    "not done {:.0} s after the failures: {}",
                    options.deadline.as_secs_f64(),
                    outcomes
                        .iter()
                        .map(|o| format!("{} {}", o.vm, missing(o, need_email)))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
        out.waiting(&format!("relive at work: {step}"));
        // Incidents.
        let incidents = store.load().unwrap_or_default();
        for (i, f) in FAILURES.iter().enumerate() {
            let mine = incidents.iter().filter(|inc| {
                inc.vm_name
                    .as_deref()
                    .is_some_and(|v| v.eq_ignore_ascii_case(f.vm))
            });
            for inc in mine {
                if inc.root_cause != f.cause {
                    if seen
                        .wrong_cause
                        .insert(inc.id.clone(), inc.root_cause.clone())
                        .is_none()
                    {
                        out.say(
                            Mark::Note,
                            &format!(
                                "{}: relive first names {} (waiting for the rest of the evidence)",
                                f.vm,
                                clean(&inc.root_cause)
                            ),
                        );
                    }
                    continue;
                }
                let o = &mut outcomes[i];
                if o.incident.is_none() {
                    o.incident = Some(inc.id.clone());
                    o.root_cause = Some(inc.root_cause.clone());
                    o.detected_after_s = Some(secs(i));
                    out.say(Mark::Found, &detection(inc, secs(i)));
                }
                if o.incident.as_deref() == Some(inc.id.as_str())
                    && inc.status == correlate::incident::Status::Resolved
                    && o.resolved_after_s.is_none()
                {
                    o.resolved_after_s = Some(secs(i));
                    out.say(
                            Mark::Ok,
                            &format!(
                                "{}: incident {} resolved: the retry's success was seen in the hosts' events ({:.1} s after the failure)",
                                f.vm,
                                &inc.id[..inc.id.len().min(8)],
                                secs(i)
                            ),
                        );
                }
            }
        }
        // Alert emails.
        for (path, mail) in new_mails(&lab.mail, &mut seen.mails) {
            let subject = clean(&mail.subject);
            let about = FAILURES.iter().position(|f| {
                mail.subject.contains(f.vm) || mail.text.contains(&format!("{} failed", f.vm))
            });
            let first = about.is_some_and(|i| outcomes[i].email.is_none());
            if first {
                let i = about.expect("checked");
                outcomes[i].email = Some(mail.subject.clone());
                let lines: Vec<String> = mail
                    .text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .take(4)
                    .map(clean)
                    .collect();
                out.say(
                    Mark::Mail,
                    &format!(
                        "alert email \"{subject}\" ({})\n{}",
                        clean(&path.file_name().unwrap_or_default().to_string_lossy()),
                        lines.join("\n")
                    ),
                );
            } else {
                out.say(Mark::Mail, &format!("email \"{subject}\""));
            }
        }
        // The alerting journal: what was held back, and (with --smtp) sent.
        let journal =
            std::fs::read_to_string(lab.collector.join("alerts").join("notifications.jsonl"))
                .unwrap_or_default();
        let complete: Vec<&str> = journal
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .collect();
        for line in complete.iter().skip(seen.journal_lines) {
            let Ok(d) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let subject = d["subject"].as_str().unwrap_or_default();
            let about = FAILURES.iter().position(|f| subject.contains(f.vm));
            match d["decision"].as_str() {
                Some("inhibited") => out.say(
                    Mark::Mail,
                    &format!(
                        "an alert held back (inhibited): {}; a cluster-wide cause mutes the per-VM alerts of its cluster ([[alerts.inhibit]]), its approval request still goes out",
                        clean(d["reason"].as_str().unwrap_or("no reason given"))
                    ),
                ),
                Some("sent") if !need_email => {
                    if let Some(i) = about.filter(|i| outcomes[*i].email.is_none()) {
                        outcomes[i].email = Some(subject.to_string());
                    }
                    out.say(
                        Mark::Mail,
                        &format!("email \"{}\" accepted by the SMTP server", clean(subject)),
                    );
                }
                Some("failed") => out.say(
                    Mark::Fail,
                    &format!(
                        "email \"{}\" failed: {}",
                        clean(subject),
                        clean(d["reason"].as_str().unwrap_or("?"))
                    ),
                ),
                _ => {}
            }
        }
        seen.journal_lines = complete.len();
        // The remediation engine's audit log.
        let entries = remediate::audit::read(&audit_path)
            .map(|r| r.entries)
            .unwrap_or_default();
        let fresh: Vec<Entry> = entries.iter().skip(seen.audit_lines).cloned().collect();
        seen.audit_lines = entries.len();
        for e in fresh {
            let Some(i) = outcomes
                .iter()
                .position(|o| o.incident.as_deref() == Some(e.incident.as_str()))
            else {
                if incidents.iter().any(|inc| inc.id == e.incident) {
                    // Another incident's remediation: not part of the story.
                    continue;
                }
                // An incident not loaded yet: this line and the rest wait.
                seen.audit_lines = entries
                    .iter()
                    .position(|x| x == &e)
                    .unwrap_or(seen.audit_lines);
                break;
            };
            let vm = FAILURES[i].vm;
            let stage = e
                .key
                .as_deref()
                .and_then(|k| k.split('/').nth(1))
                .unwrap_or("");
            let detail = clean(&e.detail);
            match e.what {
                What::Planned => out.say(Mark::Act, &format!("{vm}: plan: {detail}")),
                What::Started if stage == "fix" => {
                    out.say(Mark::Act, &format!("{vm}: fixing: {detail}"))
                }
                What::Ran if stage == "fix" => {
                    outcomes[i].fixes.push(e.detail.clone());
                    out.say(Mark::Ok, &format!("{vm}: fixed: {detail}"));
                }
                What::Ran => out.say(Mark::Note, &format!("{vm}: {stage} {detail}")),
                What::Failed => out.say(Mark::Fail, &format!("{vm}: {stage} failed: {detail}")),
                What::AwaitingApproval => {
                    let key = e.key.clone().unwrap_or_default();
                    out.say(Mark::Act, &format!("{vm}: waits for approval: {detail}"));
                    let decided = remediate::approval::decide(
                        &remediate::audit::AuditLog::open(&lab.collector)
                            .map_err(|e| DemoError::step("approve", e))?,
                        &remediation,
                        &remediate::approval::Decision {
                            key: &key,
                            incident: Some(&e.incident),
                            who: DEMO_APPROVER,
                            approve: true,
                            reason: "relive demo approves every action; a real deployment waits for a person (relive approve, the web UI, the email's signed link)",
                            now: chrono::Utc::now(),
                        },
                    );
                    match decided {
                        Ok(_) => {
                            outcomes[i].approved.push(key.clone());
                            out.say(
                                Mark::Demo,
                                &format!(
                                    "{vm}: AUTO-APPROVED by demo mode ({}); a real deployment waits for a person: relive approve, the web UI or the email's signed link",
                                    clean(&key)
                                ),
                            );
                        }
                        Err(err) => out.say(
                            Mark::Note,
                            &format!("{vm}: not approved: {}", clean(&err.to_string())),
                        ),
                    }
                }
                What::Retried => {
                    outcomes[i].retried = Some(e.detail.clone());
                    out.say(Mark::Act, &format!("{vm}: retried: {detail}"));
                }
                What::Verified if e.key.is_some() => {}
                What::Verified => {
                    outcomes[i].verified_after_s = Some(secs(i));
                    out.say(
                        Mark::Ok,
                        &format!(
                            "{vm}: retry verified {:.1} s after the failure: {detail}",
                            secs(i)
                        ),
                    );
                }
                What::Escalated => {
                    return Err(DemoError::step(
                        "repair",
                        format!("{vm}'s remediation was escalated: {detail}"),
                    ))
                }
                What::Skipped if e.key.is_none() => {
                    return Err(DemoError::step(
                        "repair",
                        format!("{vm}'s remediation was skipped: {detail}"),
                    ))
                }
                What::Decided => out.say(Mark::Note, &format!("{vm}: {detail}")),
                What::Rejected => {
                    return Err(DemoError::step(
                        "repair",
                        format!("{vm}: an action was rejected: {detail}"),
                    ))
                }
                What::Started | What::Approved | What::Skipped => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(outcomes)
}

/// The step a failure's story is in (for errors and the spinner).
fn current_step(outcomes: &[Outcome]) -> &'static str {
    if outcomes.iter().any(|o| o.incident.is_none()) {
        "detect the failures"
    } else if outcomes.iter().any(|o| o.verified_after_s.is_none()) {
        "repair and retry"
    } else if outcomes.iter().any(|o| o.resolved_after_s.is_none()) {
        "resolve the incidents"
    } else {
        "deliver the alert emails"
    }
}

fn missing(o: &Outcome, need_email: bool) -> String {
    let mut not = Vec::new();
    if o.incident.is_none() {
        not.push(format!("not detected as {}", o.expected_cause));
    }
    if need_email && o.email.is_none() {
        not.push("no email".to_string());
    }
    if o.fixes.is_empty() {
        not.push("not fixed".to_string());
    }
    if o.verified_after_s.is_none() {
        not.push("no verified retry".to_string());
    }
    if o.resolved_after_s.is_none() {
        not.push("not resolved".to_string());
    }
    if not.is_empty() {
        "done".into()
    } else {
        not.join(", ")
    }
}

fn detection(inc: &correlate::Incident, after: f64) -> String {
    let mut text = format!(
        "{}: relive found {} ({:.1} s after the failure): {}",
        clean(inc.vm_name.as_deref().unwrap_or("?")),
        clean(&inc.root_cause),
        after,
        clean(&inc.title)
    );
    let failures: Vec<&correlate::incident::Evidence> = inc
        .evidence
        .iter()
        .filter(|e| !e.rule.is_empty())
        .take(3)
        .collect();
    let shown = if failures.is_empty() {
        inc.evidence.iter().take(3).collect()
    } else {
        failures
    };
    for e in shown {
        let message: String = clean(&e.message).chars().take(110).collect();
        text.push_str(&format!(
            "\n  {} event {} on {}: {message}",
            clean(&e.provider),
            e.event_id,
            clean(&e.host)
        ));
    }
    text.push_str(&format!(
        "\n  {} evidence event(s) from {} host(s)",
        inc.evidence.len(),
        {
            let hosts: BTreeSet<&str> = inc.evidence.iter().map(|e| e.host.as_str()).collect();
            hosts.len()
        }
    ));
    text
}

fn new_mails(
    dir: &Path,
    seen: &mut BTreeSet<PathBuf>,
) -> Vec<(PathBuf, remediate::alert::email::Delivered)> {
    let Ok(list) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = list
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml") && !seen.contains(p))
        .map(|p| {
            (
                p.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH),
                p,
            )
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for (_, path) in files {
        // A message is complete once it parses; otherwise read it next time.
        if let Some(mail) = std::fs::read(&path)
            .ok()
            .and_then(|b| remediate::alert::email::read_delivered(&b))
        {
            seen.insert(path.clone());
            out.push((path, mail));
        }
    }
    out
}

/// Notifications the alerting journal records as sent (accepted by the
/// SMTP server, or written by the file transport).
fn count_sent(collector: &Path) -> usize {
    std::fs::read_to_string(collector.join("alerts").join("notifications.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d["decision"] == "sent")
        .count()
}

fn print_summary(s: &Summary, lab: &Lab, out: &mut dyn Story) {
    let found = s.outcomes.iter().filter(|o| o.incident.is_some()).count();
    let fixed = s.outcomes.iter().filter(|o| !o.fixes.is_empty()).count();
    let retried = s
        .outcomes
        .iter()
        .filter(|o| o.verified_after_s.is_some())
        .count();
    let resolved = s
        .outcomes
        .iter()
        .filter(|o| o.resolved_after_s.is_some())
        .count();
    let mut text = format!(
        "Summary: {} healthy migrations; {} failures caused; incidents found {found}, fixed {fixed}, retried and verified {retried}, resolved {resolved}",
        s.healthy.len(),
        s.failed.len()
    );
    for o in &s.outcomes {
        text.push_str(&format!(
            "\n  {:<5} {:<28} found after {:>4.1} s, fixed ({} approved by demo mode), retry verified {:>4.1} s after the failure",
            o.vm,
            o.root_cause.as_deref().unwrap_or("-"),
            o.detected_after_s.unwrap_or(f64::NAN),
            o.approved.len(),
            o.verified_after_s.unwrap_or(f64::NAN)
        ));
    }
    let token = lab.admin_token();
    text.push_str(&format!(
        "\nweb UI: {}  token: {}{}",
        s.url,
        token.as_deref().unwrap_or("(see the token file)"),
        s.tokens_file
            .as_ref()
            .map(|f| format!("  (in {})", clean(&f.display().to_string())))
            .unwrap_or_default()
    ));
    text.push_str(&format!(
        "\nemails: {} sent{}",
        s.emails,
        if lab.smtp {
            " to the SMTP server".to_string()
        } else {
            format!(" into {}", clean(&lab.mail.display().to_string()))
        }
    ));
    let data = clean(&s.collector.display().to_string());
    text.push_str(&format!(
        "\nexplore: relive --data {data} incidents | explain ID | actions | search 'vm_name:FS1'"
    ));
    text.push_str(&format!("\nthe story took {:.1} s", s.seconds));
    out.say(Mark::Step, &text);
}

/// Runs [`run`] with a story on standard output and a handler that turns
/// Ctrl-C and SIGTERM into a clean stop.
pub fn run_from_cli(options: DemoOptions) -> Result<Summary, DemoError> {
    let stop = options.stop.clone();
    let watcher = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DemoError::step("prepare", format!("cannot watch for Ctrl-C: {e}")))?;
    std::thread::spawn(move || {
        watcher.block_on(crate::wait_for_signal());
        stop.store(true, Ordering::Release);
    });
    let mut out = story::for_stdout();
    run(&options, out.as_mut())
}
