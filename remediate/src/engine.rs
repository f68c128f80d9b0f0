//! The remediation engine: a subscriber of the incident change log that
//! plans each new incident, and in `auto` mode confirms the cause, runs
//! what may run unattended, waits for approvals, retries the migration by
//! the cause's policy and counts the retry only when its success shows in
//! the events (the incident resolved by the correlator).
//!
//! Every decision goes to the audit log before the engine moves on, with
//! the action's idempotency key. The log is the engine's memory: after a
//! restart (`kill -9` included) an incident planned and not finished is
//! taken up again, a finished action is not run again, an action that was
//! started and never finished is not run again either (the checks decide
//! whether it took; a retry asks the hosts where the VM is), and an
//! approval given while the engine was down is found in the log.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use correlate::changes::Subscription;
use correlate::incident::Status;
use correlate::{Incident, Knowledge};
use pipeline::Shutdown;

use crate::audit::{ActionState, AuditError, AuditLog, Entry, What};
use crate::config::{Mode, RemediationConfig};
use crate::executor::{Executor, VmPlace};
use crate::plan::{Action, Class, Facts, Plan, RetryPolicy, Stage};

/// The engine's name as a change-log subscriber.
pub const SUBSCRIBER: &str = "remediation";

/// Who the audit log names for the engine's own decisions.
pub const ENGINE: &str = "relive";

/// What the engine tells when a remediation did not work.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// The incident as it is now.
    pub incident: Incident,
    /// Why, and what was tried.
    pub reason: String,
}

/// Something told of escalations (the alert receivers).
pub type Escalate = Arc<dyn Fn(&Escalation) + Send + Sync>;

/// An action that starts waiting for approval.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    /// The incident as it is now.
    pub incident: Incident,
    /// The action's key.
    pub key: String,
    /// What it does.
    pub title: String,
    /// `approval` or `downtime`.
    pub class: Class,
    /// When the request expires.
    pub expires: chrono::DateTime<Utc>,
}

/// Something told of approval requests (the alert receivers, with signed
/// links).
pub type AskApproval = Arc<dyn Fn(&ApprovalRequest) + Send + Sync>;

/// What the engine is started with.
pub struct EngineOptions {
    /// `[remediation]`.
    pub config: RemediationConfig,
    /// The playbooks.
    pub kb: Knowledge,
    /// What runs actions (`None`: plans are only recorded).
    pub executor: Option<Arc<dyn Executor>>,
    /// Told of escalations.
    pub escalate: Option<Escalate>,
    /// Told when an action starts waiting for approval.
    pub ask: Option<AskApproval>,
}

/// Counters.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Incidents planned.
    pub planned: AtomicU64,
    /// Actions run (checks and fixes).
    pub actions_run: AtomicU64,
    /// Actions that failed.
    pub actions_failed: AtomicU64,
    /// Migrations retried.
    pub retries: AtomicU64,
    /// Retries verified.
    pub verified: AtomicU64,
    /// Remediations escalated.
    pub escalated: AtomicU64,
}

/// Errors that stop the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The audit log cannot be written.
    #[error("remediation audit log: {0}")]
    Audit(#[from] AuditError),
    /// The change log cannot be read.
    #[error("incident change log: {0}")]
    Changes(#[from] correlate::StoreError),
    /// A thread could not be started.
    #[error("cannot start a remediation thread: {0}")]
    Thread(std::io::Error),
}

/// How one incident's remediation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finish {
    /// The retry's success was seen.
    Verified(String),
    /// It did not work, or a human must act: told.
    Escalated(String),
    /// Nothing (more) to do, and why.
    Skipped(String),
    /// The engine is stopping: taken up again at the next start.
    Stopped,
}

struct Shared {
    audit: AuditLog,
    config: RemediationConfig,
    kb: Knowledge,
    facts: Facts,
    executor: Option<Arc<dyn Executor>>,
    escalate: Option<Escalate>,
    ask: Option<AskApproval>,
    incidents: Mutex<HashMap<String, Incident>>,
    changed: Condvar,
    stop: Shutdown,
    stats: Arc<EngineStats>,
    /// Source hosts with a retry of the engine's under way.
    busy_sources: Mutex<HashSet<String>>,
    busy_changed: Condvar,
}

/// The running engine.
pub struct Engine {
    dispatcher: JoinHandle<Result<(), EngineError>>,
    shared: Arc<Shared>,
    workers: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

impl Engine {
    /// Opens the audit log under `data`, takes up what a restart
    /// interrupted and starts following the change log.
    pub fn start(data: &Path, options: EngineOptions) -> Result<Engine, EngineError> {
        let audit = AuditLog::open(data)?;
        let subscription = Subscription::open(data, SUBSCRIBER)?;
        // What the store knows now: an incident planned before a restart
        // and not finished is taken up again from its latest snapshot.
        let known = correlate::IncidentStore::new(data)
            .load()
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            audit,
            facts: Facts {
                clusters: options.config.clusters.clone(),
            },
            config: options.config,
            kb: options.kb,
            executor: options.executor,
            escalate: options.escalate,
            ask: options.ask,
            incidents: Mutex::new(known.into_iter().map(|i| (i.id.clone(), i)).collect()),
            changed: Condvar::new(),
            stop: Shutdown::new(),
            stats: Arc::new(EngineStats::default()),
            busy_sources: Mutex::new(HashSet::new()),
            busy_changed: Condvar::new(),
        });
        let workers = Arc::new(Mutex::new(HashMap::new()));
        let read = shared.audit.read()?;
        let mut planned: HashSet<String> = HashSet::new();
        let mut finished: HashSet<String> = HashSet::new();
        for e in &read.entries {
            if e.key.is_none() {
                match e.what {
                    What::Planned => {
                        planned.insert(e.incident.clone());
                    }
                    What::Verified | What::Escalated | What::Skipped => {
                        finished.insert(e.incident.clone());
                    }
                    _ => {}
                }
            }
        }
        let resume: Vec<String> = planned.difference(&finished).cloned().collect();
        let mut dispatcher = Dispatcher {
            shared: shared.clone(),
            subscription,
            seen: planned,
            workers: workers.clone(),
        };
        for id in resume {
            tracing::info!(incident = %id, "remediation: taking up a plan a restart interrupted");
            dispatcher.spawn(&id, true)?;
        }
        let dispatcher = std::thread::Builder::new()
            .name("remediation".into())
            .spawn(move || dispatcher.run())
            .map_err(EngineError::Thread)?;
        Ok(Engine {
            dispatcher,
            shared,
            workers,
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<EngineStats> {
        self.shared.stats.clone()
    }

    /// Stops: no new plans; workers stop at their next step (waiting for
    /// approvals, backoffs, verification) or after `deadline`, and what
    /// they did not finish is taken up at the next start.
    pub fn stop(self, deadline: Duration) -> Result<Arc<EngineStats>, EngineError> {
        self.shared.stop.trigger();
        self.shared.changed.notify_all();
        self.shared.busy_changed.notify_all();
        let result = self.dispatcher.join().unwrap_or_else(|_| {
            tracing::error!("the remediation dispatcher panicked");
            Ok(())
        });
        let until = Instant::now() + deadline;
        let handles: Vec<JoinHandle<()>> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in handles {
            while !h.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!("remediation: a worker is still inside an action at shutdown; the audit log shows it as interrupted");
            }
        }
        result.map(|_| self.shared.stats.clone())
    }
}

struct Dispatcher {
    shared: Arc<Shared>,
    subscription: Subscription,
    /// Incidents planned (or being planned).
    seen: HashSet<String>,
    workers: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

impl Dispatcher {
    fn run(mut self) -> Result<(), EngineError> {
        loop {
            let stopping = self.shared.stop.is_triggered();
            let mut read = 0;
            while let Some(change) = self.subscription.next_change()? {
                read += 1;
                let incident = change.incident;
                let id = incident.id.clone();
                let open = incident.status == Status::Open;
                self.shared
                    .incidents
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone(), incident);
                self.shared.changed.notify_all();
                if open && !stopping && !self.seen.contains(&id) {
                    self.seen.insert(id.clone());
                    self.spawn(&id, false)?;
                }
                if read >= 1000 {
                    break;
                }
            }
            // The plan line is in the audit log before the change is
            // acknowledged: a restart in between takes the plan up again.
            self.subscription.ack()?;
            self.workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, h| !h.is_finished());
            if stopping && read == 0 {
                return Ok(());
            }
            if read == 0 {
                self.shared.stop.wait_timeout(Duration::from_millis(100));
            }
        }
    }

    /// Records the plan (synchronously, unless `planned` before a restart)
    /// and starts the incident's worker; in `suggest` mode, or with no
    /// executor, it finishes here without a thread.
    fn spawn(&mut self, id: &str, planned: bool) -> Result<(), EngineError> {
        let shared = self.shared.clone();
        let Some(incident) = shared.incident(id) else {
            tracing::warn!(incident = %id, "remediation: no snapshot of the incident to plan from");
            return Ok(());
        };
        if !planned {
            shared.plan_line(&incident)?;
        }
        if shared.mode_for(&incident) == Mode::Suggest || shared.executor.is_none() {
            let finish = shared.remediate(id);
            shared.finish(id, &finish)?;
            return Ok(());
        }
        let name = id.to_string();
        let handle = std::thread::Builder::new()
            .name(format!("remediate {}", &id[..id.len().min(8)]))
            .spawn(move || {
                let finish = shared.remediate(&name);
                if let Err(e) = shared.finish(&name, &finish) {
                    tracing::error!(incident = %name, error = %e, "remediation: cannot record how it ended");
                }
            })
            .map_err(EngineError::Thread)?;
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), handle);
        Ok(())
    }
}

/// Why a step stopped the remediation.
type Step<T> = Result<T, Finish>;

fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() % 10_000) as f64 / 10_000.0
}

impl Shared {
    fn incident(&self, id: &str) -> Option<Incident> {
        self.incidents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn mode_for(&self, incident: &Incident) -> Mode {
        let cluster = incident
            .source_host
            .as_deref()
            .and_then(|h| self.facts.cluster_of(h));
        self.config
            .mode_for(&incident.root_cause, cluster, incident.vm_name.as_deref())
    }

    fn record(
        &self,
        incident: &str,
        key: Option<&str>,
        what: What,
        detail: impl Into<String>,
    ) -> Step<()> {
        self.record_class(incident, key, what, detail, Class::Auto)
    }

    fn record_class(
        &self,
        incident: &str,
        key: Option<&str>,
        what: What,
        detail: impl Into<String>,
        class: Class,
    ) -> Step<()> {
        let entry = Entry {
            at: Utc::now(),
            incident: incident.to_string(),
            key: key.map(str::to_string),
            what,
            who: Some(ENGINE.into()),
            detail: detail.into(),
            class: (what == What::AwaitingApproval).then_some(class),
        };
        self.audit.append(&entry).map_err(|e| {
            // Nothing runs that the log cannot record.
            tracing::error!(incident, error = %e, "remediation: the audit log cannot be written; stopping this remediation");
            Finish::Stopped
        })
    }

    fn state(&self, key: &str) -> Step<ActionState> {
        self.audit.state_of(key).map_err(|e| {
            tracing::error!(key, error = %e, "remediation: the audit log cannot be read");
            Finish::Stopped
        })
    }

    /// The `planned` line: the plan in a sentence.
    fn plan_line(&self, incident: &Incident) -> Result<(), AuditError> {
        let mode = self.mode_for(incident);
        let detail = match Plan::for_incident(incident, &self.kb, &self.facts, 1) {
            Ok(plan) => describe(&plan, mode, self.executor.as_deref()),
            Err(e) => format!("{e}; mode {}", mode.as_str()),
        };
        self.stats.planned.fetch_add(1, Ordering::Relaxed);
        self.audit.append(&Entry {
            at: Utc::now(),
            incident: incident.id.clone(),
            key: None,
            what: What::Planned,
            who: Some(ENGINE.into()),
            detail,
            class: None,
        })
    }

    fn finish(&self, id: &str, finish: &Finish) -> Result<(), AuditError> {
        let (what, detail) = match finish {
            Finish::Stopped => return Ok(()),
            Finish::Verified(d) => {
                self.stats.verified.fetch_add(1, Ordering::Relaxed);
                (What::Verified, d)
            }
            Finish::Escalated(d) => {
                self.stats.escalated.fetch_add(1, Ordering::Relaxed);
                (What::Escalated, d)
            }
            Finish::Skipped(d) => (What::Skipped, d),
        };
        tracing::info!(incident = %id, what = ?what, detail = %detail, "remediation finished");
        self.audit.append(&Entry {
            at: Utc::now(),
            incident: id.to_string(),
            key: None,
            what,
            who: Some(ENGINE.into()),
            detail: detail.clone(),
            class: None,
        })?;
        if let (Finish::Escalated(reason), Some(escalate)) = (finish, &self.escalate) {
            if let Some(incident) = self.incident(id) {
                escalate(&Escalation {
                    incident,
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    fn remediate(&self, id: &str) -> Finish {
        match self.try_remediate(id) {
            Ok(f) | Err(f) => f,
        }
    }

    fn try_remediate(&self, id: &str) -> Step<Finish> {
        let Some(incident) = self.incident(id) else {
            return Ok(Finish::Skipped("the incident is not known".into()));
        };
        let mode = self.mode_for(&incident);
        if mode == Mode::Suggest {
            return Ok(Finish::Skipped(format!(
                "suggest mode: nothing runs; the plan is in the alert and in `relive remediate {id}`"
            )));
        }
        let plan = match Plan::for_incident(&incident, &self.kb, &self.facts, 1) {
            Ok(p) => p,
            Err(e) => return Ok(Finish::Escalated(format!("no plan: {e}"))),
        };
        let Some(executor) = self.executor.clone() else {
            return Ok(Finish::Skipped(
                "no executor configured ([remediation.hosts] or [remediation.powershell]): nothing runs".into(),
            ));
        };
        let executor = executor.as_ref();
        if let Err(e) = plan.runnable_by(|a| executor.can_run(a)) {
            return Ok(Finish::Escalated(e.to_string()));
        }
        // Nothing is checked, fixed or retried while the VM's last
        // migration is in doubt: which host runs it is not known yet.
        if let (Some(vm), Some(source)) = (
            incident.vm_name.as_deref().filter(|v| !v.is_empty()),
            incident.source_host.as_deref().filter(|s| !s.is_empty()),
        ) {
            if matches!(executor.vm_place(vm, source), Ok(VmPlace::InDoubt)) {
                return Ok(Finish::Escalated(format!(
                    "{vm}'s last migration from {source} is in doubt: nothing is checked, fixed or retried until it is settled (relive resolve)"
                )));
            }
        }
        // 1. Confirm the cause with the read-only checks.
        let mut findings = Vec::new();
        let mut checked = 0;
        for a in plan.actions.iter().filter(|a| a.stage == Stage::Confirm) {
            if let Some(seen) = self.run_check(&incident, a, executor)? {
                checked += 1;
                if !seen {
                    findings.push(a.title.clone());
                }
            }
        }
        let confirmed = checked == 0 || !findings.is_empty();
        if mode == Mode::DryRun {
            for a in plan.actions.iter().filter(|a| a.stage != Stage::Confirm) {
                let would = if !executor.can_run(a) {
                    "manual step (no operation on this executor)".to_string()
                } else if a.class == Class::Auto {
                    "would run".to_string()
                } else {
                    format!("would wait for approval ({})", class_name(a.class))
                };
                self.record(
                    &incident.id,
                    Some(&a.key),
                    What::Skipped,
                    format!("dry-run: {would}: {}", a.title),
                )?;
            }
            return Ok(Finish::Skipped(format!(
                "dry-run: the checks ran ({}), nothing changed",
                if confirmed {
                    "the cause is confirmed"
                } else {
                    "the cause is not seen now"
                }
            )));
        }
        // 2. Fix (for other-node the retry elsewhere is the remedy: the
        // fixes are left for a human).
        let fixes: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| a.stage == Stage::Fix)
            .collect();
        if plan.retry == RetryPolicy::OtherNode {
            for a in &fixes {
                self.skip_once(&incident, a, "other-node: the retry goes to a host that passes pre-flight; this fix is left for a human")?;
            }
        } else if !confirmed {
            for a in &fixes {
                self.skip_once(
                    &incident,
                    a,
                    "not needed: the checks do not see the cause now",
                )?;
            }
        } else {
            let mut fixed = false;
            for a in &fixes {
                if fixed {
                    self.skip_once(&incident, a, "not needed: the checks pass now")?;
                    continue;
                }
                if !executor.can_run(a) {
                    self.skip_once(
                        &incident,
                        a,
                        "manual step: for a human (no operation on this executor)",
                    )?;
                    continue;
                }
                if a.class != Class::Auto && !self.approved(&incident, a)? {
                    return Ok(Finish::Escalated(format!("not approved: {}", a.title)));
                }
                self.run_fix(&incident, a, executor)?;
                fixed = self.checks_pass(&plan, executor);
            }
        }
        // 3. Verify the fix.
        let mut failing = Vec::new();
        for a in plan.actions.iter().filter(|a| a.stage == Stage::Verify) {
            if self.run_check(&incident, a, executor)? == Some(false) {
                failing.push(a.title.clone());
            }
        }
        if plan.retry == RetryPolicy::AfterFix && !failing.is_empty() {
            return Ok(Finish::Escalated(format!(
                "the fix did not take; still failing: {}",
                failing.join("; ")
            )));
        }
        // 4. Retry and 5. verify the retry.
        if plan.retry == RetryPolicy::Never {
            return Ok(Finish::Escalated(format!(
                "{} is not retried (retrying cannot help); a human must move the VM",
                incident.root_cause
            )));
        }
        let destination = self.retry(&incident, &plan, executor)?;
        self.verify_retry(&incident, &plan, &destination)
    }

    /// Runs a read-only check once per key: `Some(healthy)`, `None` when
    /// the executor cannot run it or it only reports (nothing is decided
    /// on it).
    fn run_check(&self, incident: &Incident, a: &Action, ex: &dyn Executor) -> Step<Option<bool>> {
        if !ex.can_run(a) {
            return Ok(None);
        }
        // A check that only reports (no `healthy_if` where no host
        // operation does it) is run and recorded for a human; nothing is
        // decided on it.
        let judges = ex.judges(a);
        if let Some(e) = self.last_outcome(&a.key)? {
            // Checks only read: a finished one is reused, an interrupted one run again.
            if matches!(e.what, What::Ran | What::Failed) {
                return Ok(judges.then_some(e.what == What::Ran && e.detail.starts_with("healthy")));
            }
        }
        self.record(&incident.id, Some(&a.key), What::Started, a.title.clone())?;
        self.stats.actions_run.fetch_add(1, Ordering::Relaxed);
        match ex.check(a) {
            Ok(seen) => {
                let word = match (judges, seen.healthy) {
                    (false, _) => "report",
                    (true, true) => "healthy",
                    (true, false) => "finding",
                };
                self.record(
                    &incident.id,
                    Some(&a.key),
                    What::Ran,
                    format!("{word}: {}", seen.detail),
                )?;
                Ok(judges.then_some(seen.healthy))
            }
            Err(e) => {
                self.stats.actions_failed.fetch_add(1, Ordering::Relaxed);
                self.record(&incident.id, Some(&a.key), What::Failed, e.to_string())?;
                Ok(judges.then_some(false))
            }
        }
    }

    /// Whether every check the executor judges by passes now (not recorded:
    /// it decides whether another fix is needed).
    fn checks_pass(&self, plan: &Plan, ex: &dyn Executor) -> bool {
        let mut any = false;
        for a in plan
            .actions
            .iter()
            .filter(|a| a.stage == Stage::Verify && ex.judges(a))
        {
            any = true;
            if !ex.check(a).is_ok_and(|o| o.healthy) {
                return false;
            }
        }
        any
    }

    fn last_outcome(&self, key: &str) -> Step<Option<Entry>> {
        self.audit.last_of(key).map_err(|e| {
            tracing::error!(key, error = %e, "remediation: the audit log cannot be read");
            Finish::Stopped
        })
    }

    fn skip_once(&self, incident: &Incident, a: &Action, why: &str) -> Step<()> {
        if self.state(&a.key)? == ActionState::New {
            self.record(
                &incident.id,
                Some(&a.key),
                What::Skipped,
                format!("{why}: {}", a.title),
            )?;
        }
        Ok(())
    }

    /// Runs a fix at most once: a finished one is not run again, nor one a
    /// crash interrupted (the checks after it decide whether it took).
    fn run_fix(&self, incident: &Incident, a: &Action, ex: &dyn Executor) -> Step<()> {
        match self.state(&a.key)? {
            ActionState::Done(_) => return Ok(()),
            ActionState::Interrupted => {
                return self.record(
                    &incident.id,
                    Some(&a.key),
                    What::Skipped,
                    "interrupted by a restart: not run again; the checks decide whether it took",
                )
            }
            _ => {}
        }
        self.record(&incident.id, Some(&a.key), What::Started, a.title.clone())?;
        self.stats.actions_run.fetch_add(1, Ordering::Relaxed);
        let done = ex.fix(a);
        // A crash here: the fix ran and the log does not say so yet.
        pipeline::fault::point("remediation-after-fix");
        match done {
            Ok(done) => self.record(&incident.id, Some(&a.key), What::Ran, done),
            Err(e) => {
                self.stats.actions_failed.fetch_add(1, Ordering::Relaxed);
                self.record(&incident.id, Some(&a.key), What::Failed, e.to_string())
            }
        }
    }

    /// Waits for someone to approve `a` (`relive approve KEY`); false when
    /// rejected or expired.
    fn approved(&self, incident: &Incident, a: &Action) -> Step<bool> {
        let since = match self.state(&a.key)? {
            ActionState::Approved | ActionState::Interrupted => return Ok(true),
            ActionState::Done(What::Rejected) => return Ok(false),
            ActionState::Done(_) => return Ok(true),
            ActionState::AwaitingApproval => self
                .last_outcome(&a.key)?
                .map(|e| e.at)
                .unwrap_or_else(Utc::now),
            ActionState::New => {
                let window = if a.class == Class::Downtime {
                    match self.config.maintenance.as_slice() {
                        [] => "; a downtime action: no maintenance window is configured, so it cannot be approved".to_string(),
                        w => format!(
                            "; a downtime action: approvable in {}",
                            w.iter().map(|w| w.describe()).collect::<Vec<_>>().join(" or ")
                        ),
                    }
                } else {
                    String::new()
                };
                self.record_class(
                    &incident.id,
                    Some(&a.key),
                    What::AwaitingApproval,
                    format!(
                        "{} ({}): relive approve {}{window}",
                        a.title,
                        class_name(a.class),
                        a.key
                    ),
                    a.class,
                )?;
                tracing::info!(incident = %incident.id, key = %a.key, "remediation: waiting for approval");
                let now = Utc::now();
                if let Some(ask) = &self.ask {
                    ask(&ApprovalRequest {
                        incident: incident.clone(),
                        key: a.key.clone(),
                        title: a.title.clone(),
                        class: a.class,
                        expires: now
                            + chrono::Duration::hours(self.config.approval_expires_h as i64),
                    });
                }
                now
            }
        };
        let expires = since + chrono::Duration::hours(self.config.approval_expires_h as i64);
        loop {
            match self.state(&a.key)? {
                ActionState::Approved => return Ok(true),
                ActionState::Done(What::Rejected) => return Ok(false),
                _ => {}
            }
            if Utc::now() >= expires {
                self.record(
                    &incident.id,
                    Some(&a.key),
                    What::Skipped,
                    "the approval request expired",
                )?;
                return Ok(false);
            }
            if self.stop.wait_timeout(Duration::from_millis(200)) {
                return Err(Finish::Stopped);
            }
        }
    }

    /// Retries by the plan's policy; the destination the VM went to.
    fn retry(&self, incident: &Incident, plan: &Plan, ex: &dyn Executor) -> Step<String> {
        let vm = incident.vm_name.clone().unwrap_or_default();
        let source = incident.source_host.clone().unwrap_or_default();
        let original = incident.destination_host.clone().unwrap_or_default();
        let retry_key = |n: u32| format!("{}/retry/1/{n}", incident.id);
        if vm.is_empty()
            || source.is_empty()
            || (original.is_empty() && plan.retry != RetryPolicy::OtherNode)
        {
            return Err(Finish::Escalated(
                "the incident does not name the VM, its source and its destination: relive cannot retry it".into(),
            ));
        }
        let mut last_signature: Option<String> = None;
        for n in 1..=self.config.max_attempts {
            let key = retry_key(n);
            match self.state(&key)? {
                ActionState::Done(_) => {
                    let e = self
                        .last_outcome(&key)?
                        .unwrap_or_else(|| unreachable_entry(&key));
                    if e.detail.starts_with("completed") {
                        return Ok(e
                            .detail
                            .rsplit(" to ")
                            .next()
                            .unwrap_or(&original)
                            .trim()
                            .to_string());
                    }
                    last_signature = signature_of(&e.detail);
                    continue;
                }
                ActionState::Interrupted => {
                    // Where is the VM? Moved: the retry worked. Still on the
                    // source: it did not (a new attempt). In doubt: stop.
                    let place = ex.vm_place(&vm, &source).map_err(|e| {
                        Finish::Escalated(format!(
                            "a retry was interrupted and {source} cannot say where {vm} is: {e}"
                        ))
                    })?;
                    match place {
                        VmPlace::Absent => {
                            self.record(&incident.id, Some(&key), What::Retried, format!("completed (seen after a restart: {vm} is no longer on {source}) to {original}"))?;
                            return Ok(original);
                        }
                        VmPlace::InDoubt => {
                            return Err(Finish::Escalated(format!("{vm}'s migration from {source} is in doubt: no retry until it is settled (relive resolve)")))
                        }
                        _ => {
                            self.record(&incident.id, Some(&key), What::Retried, "failed (interrupted by a restart before it ended)")?;
                            continue;
                        }
                    }
                }
                _ => {}
            }
            self.guard(incident, &vm, &source, ex, n - 1)?;
            let destination = match plan.retry {
                RetryPolicy::OtherNode => self.choose(incident, &vm, &source, &original, n, ex)?,
                _ => {
                    self.wait_for_slot(incident, &vm, &source, &original, n, ex)?;
                    original.clone()
                }
            };
            let _slot = self.take_source(&source)?;
            self.record(
                &incident.id,
                Some(&key),
                What::Started,
                format!("migrate {vm} from {source} to {destination}"),
            )?;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let outcome = ex.migrate(&vm, &source, &destination);
            // A crash here: the VM moved and the log does not say so yet.
            pipeline::fault::point("remediation-after-migrate");
            drop(_slot);
            match outcome {
                Ok(m) if m.ok => {
                    self.record(
                        &incident.id,
                        Some(&key),
                        What::Retried,
                        format!(
                            "completed: {}{} to {destination}",
                            m.detail,
                            m.blackout_ms
                                .map(|b| format!(" (blackout {b} ms)"))
                                .unwrap_or_default()
                        ),
                    )?;
                    return Ok(destination);
                }
                Ok(m) => {
                    let sig = m.signature.clone().unwrap_or_else(|| "unknown".into());
                    self.record(
                        &incident.id,
                        Some(&key),
                        What::Retried,
                        format!("failed [{sig}]: {}", m.detail),
                    )?;
                    if last_signature.as_deref() == Some(sig.as_str()) {
                        return Err(Finish::Escalated(format!(
                            "the retry failed the same way twice ({sig}): {}",
                            m.detail
                        )));
                    }
                    last_signature = Some(sig);
                }
                Err(e) => {
                    self.record(
                        &incident.id,
                        Some(&key),
                        What::Retried,
                        format!("failed [unreachable]: {e}"),
                    )?;
                    if last_signature.as_deref() == Some("unreachable") {
                        return Err(Finish::Escalated(format!(
                            "the retry failed the same way twice: {e}"
                        )));
                    }
                    last_signature = Some("unreachable".into());
                }
            }
            if n < self.config.max_attempts {
                let wait = self.config.backoff(n, jitter());
                self.record(
                    &incident.id,
                    None,
                    What::Decided,
                    format!(
                        "backing off {} ms before attempt {}",
                        wait.as_millis(),
                        n + 1
                    ),
                )?;
                if self.stop.wait_timeout(wait) {
                    return Err(Finish::Stopped);
                }
            }
        }
        Err(Finish::Escalated(format!(
            "{} retries failed (max_attempts); last: {}",
            self.config.max_attempts,
            last_signature.unwrap_or_default()
        )))
    }

    /// Refuses a retry when it is not safe or not wanted now.
    /// `made`: the retries this remediation made so far (each failed one
    /// may have added an attempt to the incident).
    fn guard(
        &self,
        incident: &Incident,
        vm: &str,
        source: &str,
        ex: &dyn Executor,
        made: u32,
    ) -> Step<()> {
        let held = self
            .incidents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|i| {
                i.root_cause == "failover-threshold"
                    && i.status == Status::Open
                    && i.id != incident.id
            })
            .map(|i| i.id.clone());
        if let Some(held) = held {
            return Err(Finish::Escalated(format!(
                "retries stop cluster-wide while failover-threshold incident {held} is open"
            )));
        }
        if self
            .incident(&incident.id)
            .is_some_and(|i| i.status == Status::Resolved)
        {
            return Err(Finish::Skipped(
                "resolved meanwhile (a migration succeeded): no retry needed".into(),
            ));
        }
        // Someone else tried meanwhile: the events show more failed
        // attempts than this remediation made (an operator is on it).
        if let Some(now) = self.incident(&incident.id) {
            let others = now
                .count
                .saturating_sub(incident.count.saturating_add(made));
            if others > 0 {
                return Err(Finish::Skipped(format!(
                    "{vm} was migrated by someone else since the plan was made: the events show {others} more failed attempt(s) than relive made; not retried"
                )));
            }
        }
        match ex.vm_place(vm, source) {
            Ok(VmPlace::Running) => Ok(()),
            Ok(VmPlace::InDoubt) => Err(Finish::Escalated(format!(
                "{vm}'s last migration from {source} is in doubt: no retry until it is settled (relive resolve)"
            ))),
            Ok(VmPlace::Absent) => Err(Finish::Skipped(format!(
                "{vm} is no longer on {source}: moved since the incident (by an operator?); not retried"
            ))),
            Ok(VmPlace::Migrating) => Err(Finish::Skipped(format!(
                "a migration of {vm} is already under way on {source} (started by someone else); not retried"
            ))),
            Err(e) => Err(Finish::Escalated(format!("cannot tell where {vm} is: {e}"))),
        }
    }

    /// other-node: the best other host that passes pre-flight, and why
    /// the others were not chosen.
    fn choose(
        &self,
        incident: &Incident,
        vm: &str,
        source: &str,
        failed: &str,
        n: u32,
        ex: &dyn Executor,
    ) -> Step<String> {
        let candidates = ex
            .candidates(vm, source, &[failed])
            .map_err(|e| Finish::Escalated(format!("cannot ask the other hosts: {e}")))?;
        let why: Vec<String> = candidates
            .iter()
            .map(|c| match &c.answer {
                Ok(free) => format!("{} accepts ({free} MiB free)", c.host),
                Err(r) => format!("{} refuses: {r}", c.host),
            })
            .collect();
        let Some(chosen) = candidates.iter().find(|c| c.answer.is_ok()) else {
            return Err(Finish::Escalated(format!(
                "no other host passes pre-flight for {vm}: {}",
                if why.is_empty() {
                    "no other host is configured".to_string()
                } else {
                    why.join("; ")
                }
            )));
        };
        self.record(
            &incident.id,
            Some(&format!("{}/retry/choose/{n}", incident.id)),
            What::Decided,
            format!(
                "chose {} (not {failed}, which failed): {}",
                chosen.host,
                why.join("; ")
            ),
        )?;
        Ok(chosen.host.clone())
    }

    /// Waits (with backoff) while the destination has no free migration
    /// slot, up to `wait_for_slot_s`.
    fn wait_for_slot(
        &self,
        incident: &Incident,
        vm: &str,
        source: &str,
        destination: &str,
        n: u32,
        ex: &dyn Executor,
    ) -> Step<()> {
        let deadline = Instant::now() + Duration::from_secs(self.config.wait_for_slot_s);
        let mut told = false;
        let mut round = 1;
        loop {
            let busy = ex
                .offer(vm, source, destination)
                .is_ok_and(|a| a.is_err_and(|r| r.starts_with("limit_reached")));
            if !busy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Finish::Escalated(format!(
                    "{destination} had no free migration slot for {} s",
                    self.config.wait_for_slot_s
                )));
            }
            if !told {
                self.record(
                    &incident.id,
                    Some(&format!("{}/retry/wait/{n}", incident.id)),
                    What::Decided,
                    format!("{destination} has no free migration slot: backing off until one is free (up to {} s)", self.config.wait_for_slot_s),
                )?;
                told = true;
            }
            let wait = self.config.backoff(round, jitter());
            round += 1;
            if self.stop.wait_timeout(wait) {
                return Err(Finish::Stopped);
            }
        }
    }

    /// One engine retry per source host at a time.
    fn take_source(&self, source: &str) -> Step<SourceSlot<'_>> {
        let mut busy = self.busy_sources.lock().unwrap_or_else(|p| p.into_inner());
        while busy.contains(source) {
            if self.stop.is_triggered() {
                return Err(Finish::Stopped);
            }
            busy = self
                .busy_changed
                .wait_timeout(busy, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        busy.insert(source.to_string());
        Ok(SourceSlot {
            shared: self,
            source: source.to_string(),
        })
    }

    /// The retry counts when the correlator resolves the incident from the
    /// events the hosts wrote (20415 / 21307 for the VM) within the deadline.
    fn verify_retry(&self, incident: &Incident, plan: &Plan, destination: &str) -> Step<Finish> {
        let key = plan
            .actions
            .iter()
            .find(|a| a.stage == Stage::VerifyRetry)
            .map(|a| a.key.clone())
            .unwrap_or_else(|| format!("{}/verify-retry/1/1", incident.id));
        if self.state(&key)? == ActionState::New {
            self.record(
                &incident.id,
                Some(&key),
                What::Started,
                format!(
                    "waiting up to {} s for the events of {}'s migration to {destination}",
                    self.config.verify_deadline_s,
                    incident.vm_name.as_deref().unwrap_or("?")
                ),
            )?;
        }
        let deadline = Instant::now() + Duration::from_secs(self.config.verify_deadline_s);
        let mut incidents = self.incidents.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(i) = incidents
                .get(&incident.id)
                .filter(|i| i.status == Status::Resolved)
            {
                let at = i.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default();
                drop(incidents);
                let detail = format!("resolved by the events of the retry to {destination} ({at})");
                self.record(&incident.id, Some(&key), What::Verified, detail.clone())?;
                return Ok(Finish::Verified(detail));
            }
            let now = Instant::now();
            if now >= deadline {
                drop(incidents);
                self.record(
                    &incident.id,
                    Some(&key),
                    What::Failed,
                    "the retry's success was not seen in the events within the deadline",
                )?;
                return Ok(Finish::Escalated(format!(
                    "the migration to {destination} reported success but no success event resolved the incident within {} s",
                    self.config.verify_deadline_s
                )));
            }
            if self.stop.is_triggered() {
                return Err(Finish::Stopped);
            }
            incidents = self
                .changed
                .wait_timeout(incidents, (deadline - now).min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

struct SourceSlot<'a> {
    shared: &'a Shared,
    source: String,
}

impl Drop for SourceSlot<'_> {
    fn drop(&mut self) {
        self.shared
            .busy_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.source);
        self.shared.busy_changed.notify_all();
    }
}

fn unreachable_entry(key: &str) -> Entry {
    Entry {
        at: Utc::now(),
        incident: String::new(),
        key: Some(key.to_string()),
        what: What::Retried,
        who: None,
        detail: String::new(),
        class: None,
    }
}

fn signature_of(detail: &str) -> Option<String> {
    let start = detail.find('[')?;
    let end = detail[start..].find(']')?;
    Some(detail[start + 1..start + end].to_string())
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Auto => "auto",
        Class::Approval => "approval",
        Class::Downtime => "downtime",
    }
}

/// A plan in one line: its steps, classes and what this mode does.
pub fn describe(plan: &Plan, mode: Mode, executor: Option<&dyn Executor>) -> String {
    let count = |s: Stage| plan.actions.iter().filter(|a| a.stage == s).count();
    let runnable = executor.map_or(0, |e| plan.actions.iter().filter(|a| e.can_run(a)).count());
    format!(
        "{}: {} checks, {} fixes ({}), retry {}; mode {}; {}",
        plan.root_cause,
        count(Stage::Confirm),
        count(Stage::Fix),
        class_name(plan.class),
        serde_json::to_value(plan.retry)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        mode.as_str(),
        match executor {
            Some(e) => format!(
                "{} of {} actions runnable by {}",
                runnable,
                plan.actions.len(),
                e.name()
            ),
            None => "no executor".into(),
        }
    )
}

/// One action of a plan as a dry run sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DryRunStep {
    /// The action.
    pub action: Action,
    /// What its check saw (read-only checks only), or why it could not run.
    pub observed: Option<Result<crate::executor::Observation, String>>,
    /// What `auto` mode would do with it.
    pub would: String,
}

/// Runs a plan's read-only checks through `executor` and says what `auto`
/// mode would do with every other action. Changes nothing, records nothing.
pub fn dry_run(plan: &Plan, executor: Option<&dyn Executor>) -> Vec<DryRunStep> {
    plan.actions
        .iter()
        .map(|a| {
            let runs = executor.is_some_and(|e| e.can_run(a));
            let check = matches!(a.stage, Stage::Confirm | Stage::Verify);
            let observed = match executor {
                Some(e) if runs && a.stage == Stage::Confirm => {
                    Some(e.check(a).map_err(|err| err.to_string()))
                }
                _ => None,
            };
            let would = if !a.missing.is_empty() {
                format!("cannot run: {} unknown", a.missing.join(", "))
            } else if matches!(a.stage, Stage::Retry | Stage::VerifyRetry) {
                match plan.retry {
                    RetryPolicy::OtherNode => "retry to another host that passes pre-flight".into(),
                    RetryPolicy::AfterFix => "retry once the checks pass after the fix".into(),
                    RetryPolicy::Auto => "retry with backoff".into(),
                    RetryPolicy::Never => "not retried".into(),
                }
            } else if executor.is_none() {
                "no executor configured".into()
            } else if !runs {
                "manual step: for a human".into()
            } else if check {
                "run (read-only)".into()
            } else if a.class == Class::Auto {
                "run unattended".into()
            } else {
                format!("wait for approval ({})", class_name(a.class))
            };
            DryRunStep {
                action: a.clone(),
                observed,
                would,
            }
        })
        .collect()
}
