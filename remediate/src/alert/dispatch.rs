//! The alerting stage: one dispatcher thread follows the incident change log
//! (subscriber `alerts`), keeps the alerts and their aggregation groups,
//! and decides notifications; one worker thread per target delivers them,
//! retrying temporary failures with backoff, within its rate limit, so a
//! dead webhook never holds up the email.
//!
//! A change is acknowledged only after its alert is in the state log; a
//! notification is in the outbox before a worker sees it; the notification
//! log says what each target was told, so after a restart the same groups
//! are rebuilt, compared with it, and nothing already told is told again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use correlate::changes::Subscription;
use pipeline::{Shutdown, StageMetrics};

use super::config::{Built, Integration, Target, LOG_RECEIVER};
use super::inhibit::muted_by;
use super::journal::{Decision, Journal, JournalEntry};
use super::matcher::all_match;
use super::route::Route;
use super::silence::{Silence, SilenceStore};
use super::state::{nflog_key, Covered, NflogEntry, Notification, StateLog};
use super::{render, Alert, AlertContext, AlertState, ConfigError, NotifyError, StateError};

/// The change log subscriber name of the alerting stage.
pub const SUBSCRIBER: &str = "alerts";

/// Something that delivers notifications (one per target, on its own thread).
pub trait Notifier: Send {
    /// Delivers one notification; `Ok` once the receiver accepted it.
    fn send(&mut self, notification: &Notification) -> Result<(), NotifyError>;
    /// Called about twice a second while idle (periodic refreshes).
    fn tick(&mut self) {}
}

/// Builds the notifier for a target.
pub fn notifier_for(target: &Target) -> Result<Box<dyn Notifier>, ConfigError> {
    Ok(match &target.integration {
        Integration::Email(c) => Box::new(super::email::Email::new(&target.receiver, c)?),
        Integration::Webhook(c) => Box::new(super::webhook::Webhook::new(&target.receiver, c)?),
        Integration::Alertmanager(c) => {
            Box::new(super::alertmanager::Alertmanager::new(&target.receiver, c)?)
        }
    })
}

/// Counters of the alerting stage.
#[derive(Debug, Default)]
pub struct AlerterStats {
    /// Incident changes read.
    pub changes: AtomicU64,
    /// Notifications decided and written to the outbox.
    pub queued: AtomicU64,
    /// Accepted by their receiver.
    pub sent: AtomicU64,
    /// Given up.
    pub failed: AtomicU64,
    /// Temporary failures retried.
    pub retries: AtomicU64,
    /// Alerts not told because of a silence or an inhibition (each once per group).
    pub suppressed: AtomicU64,
}

/// Why the alerting stage cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A receiver cannot be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state log or journal cannot be opened.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The running alerting stage.
pub struct Alerter {
    dispatcher: JoinHandle<Result<(), StateError>>,
    workers: Vec<JoinHandle<()>>,
    stop: Shutdown,
    stats: Arc<AlerterStats>,
}

struct Slot {
    name: String,
    send_resolved: bool,
    worker: Option<mpsc::Sender<Notification>>,
}

struct Group {
    route: usize,
    labels: super::Labels,
    alerts: BTreeSet<String>,
    flush_at: Option<Instant>,
    last_flush: Option<Instant>,
}

impl Alerter {
    /// Opens the state under `data`, hands pending notifications to their
    /// receivers again, and starts following the change log.
    pub fn start(
        data: &Path,
        built: Built,
        context: AlertContext,
        metrics: Arc<StageMetrics>,
    ) -> Result<Alerter, StartError> {
        let (state, recovered) = StateLog::open(data)?;
        if recovered.skipped > 0 {
            tracing::warn!(
                skipped = recovered.skipped,
                "alert state log: records that do not decode were skipped"
            );
        }
        let state = Arc::new(Mutex::new(state));
        let journal = Arc::new(Journal::open(data)?);
        let subscription = Subscription::open(data, SUBSCRIBER).map_err(StateError::from)?;
        let stats = Arc::new(AlerterStats::default());
        let stop = Shutdown::new();
        let mut slots = vec![Slot {
            name: LOG_RECEIVER.into(),
            send_resolved: true,
            worker: None,
        }];
        let mut by_receiver: HashMap<String, Vec<usize>> = HashMap::new();
        by_receiver.insert(LOG_RECEIVER.into(), vec![0]);
        let mut workers = Vec::new();
        for target in &built.targets {
            let notifier = notifier_for(target)?;
            let (tx, rx) = mpsc::channel();
            let worker = Worker {
                target: target.clone(),
                notifier,
                state: state.clone(),
                journal: journal.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                sent_times: VecDeque::new(),
                metrics: metrics.clone(),
            };
            workers.push(
                std::thread::Builder::new()
                    .name(format!("alert {}", target.name))
                    .spawn(move || worker.run(rx))
                    .map_err(|source| StateError::Io {
                        path: data.to_path_buf(),
                        source,
                    })?,
            );
            by_receiver
                .entry(target.receiver.clone())
                .or_default()
                .push(slots.len());
            slots.push(Slot {
                name: target.name.clone(),
                send_resolved: target.integration.send_resolved(),
                worker: Some(tx),
            });
        }
        // What was written to the outbox and never answered goes out again
        // (same id, so the same Message-ID).
        for notification in recovered.pending {
            match slots.iter().find(|s| s.name == notification.target) {
                Some(Slot {
                    worker: Some(tx), ..
                }) => {
                    let mut entry = entry_for(Decision::Resumed, &notification);
                    entry.reason =
                        Some("written to the outbox before a restart, never accepted".into());
                    journal.write(&entry);
                    let _ = tx.send(notification);
                }
                _ => {
                    let reason = "its receiver is no longer configured";
                    state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record_failed(&notification.id, reason)?;
                    let mut entry = entry_for(Decision::Failed, &notification);
                    entry.reason = Some(reason.into());
                    journal.write(&entry);
                }
            }
        }
        let routes: Vec<Route> = built.route.walk().into_iter().cloned().collect();
        let mut dispatcher = Dispatcher {
            routes,
            built,
            context,
            subscription,
            state,
            journal,
            silences: SilenceStore::new(data),
            silence_list: Vec::new(),
            silences_seen: None,
            silences_checked: None,
            alerts: HashMap::new(),
            nflog: recovered.nflog,
            groups: BTreeMap::new(),
            slots,
            by_receiver,
            told_suppressed: HashMap::new(),
            stats: stats.clone(),
            metrics,
        };
        for alert in recovered.alerts.into_values() {
            dispatcher.absorb(alert);
        }
        let stop_dispatch = stop.clone();
        let dispatcher = std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || dispatcher.run(&stop_dispatch))
            .map_err(|source| StateError::Io {
                path: data.to_path_buf(),
                source,
            })?;
        Ok(Alerter {
            dispatcher,
            workers,
            stop,
            stats,
        })
    }

    /// The stage's counters.
    pub fn stats(&self) -> Arc<AlerterStats> {
        self.stats.clone()
    }

    /// Stops: the dispatcher reads the change log to its end and tells what
    /// is due; workers try what is queued once more until `deadline`. What
    /// is not accepted by then stays in the outbox for the next start.
    pub fn stop(self, deadline: Duration) -> Result<Arc<AlerterStats>, StateError> {
        let until = Instant::now() + deadline;
        self.stop.trigger();
        let result = self
            .dispatcher
            .join()
            .unwrap_or_else(|_| Err(StateError::Silence("the alert dispatcher panicked".into())));
        for worker in self.workers {
            while !worker.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                tracing::warn!("an alert receiver is still busy at shutdown; its notification stays in the outbox");
            }
        }
        result.map(|()| self.stats)
    }
}

fn entry_for(decision: Decision, n: &Notification) -> JournalEntry {
    let mut entry = JournalEntry::new(decision);
    entry.notification = Some(n.id.clone());
    entry.target = Some(n.target.clone());
    entry.group = Some(n.group_key.clone());
    entry.alerts = n.fingerprints();
    entry.subject = Some(render::subject(n));
    entry
}

struct Dispatcher {
    routes: Vec<Route>,
    built: Built,
    context: AlertContext,
    subscription: Subscription,
    state: Arc<Mutex<StateLog>>,
    journal: Arc<Journal>,
    silences: SilenceStore,
    silence_list: Vec<Silence>,
    silences_seen: Option<std::time::SystemTime>,
    silences_checked: Option<Instant>,
    alerts: HashMap<String, Alert>,
    nflog: HashMap<String, NflogEntry>,
    groups: BTreeMap<String, Group>,
    slots: Vec<Slot>,
    by_receiver: HashMap<String, Vec<usize>>,
    /// (group, alert) → the suppression already written to the journal.
    told_suppressed: HashMap<(String, String), Decision>,
    stats: Arc<AlerterStats>,
    metrics: Arc<StageMetrics>,
}

/// How often the dispatcher looks for changes and due groups.
const TICK: Duration = Duration::from_millis(20);

impl Dispatcher {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, StateLog> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(mut self, stop: &Shutdown) -> Result<(), StateError> {
        loop {
            let stopping = stop.is_triggered();
            let read = self.read_changes()?;
            self.reload_silences(false);
            self.flush_due(Instant::now())?;
            if self.lock_state().wants_compaction() {
                let released = {
                    let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    state.compact(self.alerts.values(), &self.nflog)?
                };
                tracing::debug!(released, "alert state log compacted");
            }
            if stopping && read == 0 {
                return Ok(());
            }
            if read == 0 {
                let next = self
                    .groups
                    .values()
                    .filter_map(|g| g.flush_at)
                    .min()
                    .map_or(TICK, |at| at.saturating_duration_since(Instant::now()));
                stop.wait_timeout(next.clamp(Duration::from_millis(1), TICK));
            }
        }
    }

    /// Reads what the change log holds now; returns how many changes.
    fn read_changes(&mut self) -> Result<usize, StateError> {
        let mut batch = Vec::new();
        while let Some(change) = self.subscription.next_change()? {
            batch.push(Alert::from_incident(
                change.incident,
                change.decided_at,
                &self.context,
            ));
            if batch.len() >= 1000 {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        self.lock_state().record_alerts(&batch)?;
        pipeline::fault::point("after-alert-recorded");
        self.subscription.ack()?;
        self.stats.changes.fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.items_in.fetch_add(n as u64, Ordering::Relaxed);
        for alert in batch {
            self.absorb(alert);
        }
        Ok(n)
    }

    fn reload_silences(&mut self, force: bool) {
        if !force
            && self
                .silences_checked
                .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.silences_checked = Some(Instant::now());
        let modified = self.silences.modified();
        if !force && modified == self.silences_seen {
            return;
        }
        match self.silences.load() {
            Ok(list) => {
                self.silence_list = list;
                self.silences_seen = modified;
                // A silence added or ended changes what groups would say.
                let now = Instant::now();
                for group in self.groups.values_mut() {
                    if group.last_flush.is_some() {
                        group.flush_at = Some(now);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the silences; keeping the previous ones")
            }
        }
    }

    /// Puts an alert (new or changed) into its groups.
    fn absorb(&mut self, mut alert: Alert) {
        let now = Instant::now();
        if let Some(old) = self.alerts.get(&alert.fingerprint) {
            if old.incident.root_cause != alert.incident.root_cause {
                alert.previous_cause = Some(old.incident.root_cause.clone());
            } else if alert.previous_cause.is_none() {
                alert.previous_cause = old.previous_cause.clone();
            }
        }
        let fingerprint = alert.fingerprint.clone();
        let mut keys = Vec::new();
        for route in self.built.route.matching(&alert.labels) {
            let index = self
                .routes
                .iter()
                .position(|r| r.id == route.id)
                .expect("every route is in the walk");
            let (key, labels) = route.group_key(&alert.labels, &fingerprint);
            let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                route: index,
                labels,
                alerts: BTreeSet::new(),
                flush_at: Some(now + route.group_wait),
                last_flush: None,
            });
            group.alerts.insert(fingerprint.clone());
            if let Some(last) = group.last_flush {
                let at = (last + route.group_interval).max(now);
                group.flush_at = Some(group.flush_at.map_or(at, |f| f.min(at)));
            }
            keys.push(key);
        }
        // A changed cause can move the alert to other groups: it leaves the old ones.
        for (key, group) in self.groups.iter_mut() {
            if group.alerts.contains(&fingerprint) && !keys.contains(key) {
                group.alerts.remove(&fingerprint);
            }
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        self.alerts.insert(fingerprint, alert);
    }

    fn silenced_by(&self, alert: &Alert) -> Option<&Silence> {
        let now = Utc::now();
        self.silence_list
            .iter()
            .find(|s| s.mutes(&alert.labels, now))
    }

    fn flush_due(&mut self, now: Instant) -> Result<(), StateError> {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.flush_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut notifications = Vec::new();
        let mut journal_sent = Vec::new();
        for key in &due {
            self.decide(key, &mut notifications);
        }
        for n in &notifications {
            if n.target == LOG_RECEIVER {
                journal_sent.push(n.id.clone());
            }
        }
        if !notifications.is_empty() {
            self.lock_state()
                .record_pending(&notifications, &journal_sent)?;
        }
        for n in notifications {
            self.nflog
                .insert(nflog_key(&n.target, &n.group_key), NflogEntry::after(&n));
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            self.journal.write(&entry_for(Decision::Queued, &n));
            tracing::info!(
                notification = %n.id,
                target = %n.target,
                group = %n.group_key,
                firing = n.firing.len(),
                resolved = n.resolved.len(),
                "alert notification queued"
            );
            let slot = self.slots.iter().find(|s| s.name == n.target);
            match slot.and_then(|s| s.worker.as_ref()) {
                Some(tx) => {
                    let _ = tx.send(n);
                }
                None => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    self.metrics.items_out.fetch_add(1, Ordering::Relaxed);
                    self.journal.write(&entry_for(Decision::Sent, &n));
                }
            }
        }
        for key in &due {
            self.after_flush(key, now)?;
        }
        self.metrics.committed_now();
        Ok(())
    }

    /// The notifications a group's targets need now (none when each was
    /// already told this state and the repeat interval has not passed).
    fn decide(&mut self, key: &str, out: &mut Vec<Notification>) {
        let Some(group) = self.groups.get(key) else {
            return;
        };
        let route = &self.routes[group.route];
        // Only alerts that can mute others are searched for a muting one
        // (usually a handful of cluster-wide causes among many alerts).
        let rules = &self.built.inhibit;
        let is_source = |a: &Alert| {
            a.state == AlertState::Firing && rules.iter().any(|r| all_match(&r.source, &a.labels))
        };
        let sources: Vec<&Alert> = self.alerts.values().filter(|a| is_source(a)).collect();
        let mut firing = Vec::new();
        let mut resolved_alerts = Vec::new();
        let mut suppressed = Vec::new();
        for fingerprint in &group.alerts {
            let Some(alert) = self.alerts.get(fingerprint) else {
                continue;
            };
            match alert.state {
                AlertState::Firing => {
                    if let Some(silence) = self.silenced_by(alert) {
                        suppressed.push((
                            alert,
                            Decision::Silenced,
                            format!(
                                "silence {} ({}): {}",
                                silence.id, silence.created_by, silence.comment
                            ),
                        ));
                    } else if let Some(by) = muted_by(rules, alert, sources.iter().copied()) {
                        suppressed.push((
                            alert,
                            Decision::Inhibited,
                            format!("explained by incident {by}"),
                        ));
                    } else {
                        firing.push(alert);
                    }
                }
                AlertState::Resolved => resolved_alerts.push(alert),
            }
        }
        firing.sort_by(|a, b| {
            (a.incident.first_seen, a.vm(), &a.fingerprint).cmp(&(
                b.incident.first_seen,
                b.vm(),
                &b.fingerprint,
            ))
        });
        resolved_alerts.sort_by(|a, b| {
            (a.incident.first_seen, a.vm(), &a.fingerprint).cmp(&(
                b.incident.first_seen,
                b.vm(),
                &b.fingerprint,
            ))
        });
        let mut still_suppressed = Vec::new();
        for (alert, decision, reason) in suppressed {
            let k = (key.to_string(), alert.fingerprint.clone());
            still_suppressed.push(k.clone());
            if self.told_suppressed.get(&k) != Some(&decision) {
                let mut entry = JournalEntry::new(decision);
                entry.group = Some(key.to_string());
                entry.alerts = vec![alert.fingerprint.clone()];
                entry.reason = Some(reason);
                self.journal.write(&entry);
                self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                self.told_suppressed.insert(k, decision);
            }
        }
        self.told_suppressed
            .retain(|(g, f), _| g != key || still_suppressed.iter().any(|(_, sf)| sf == f));
        let ours: Vec<&Alert> = firing.iter().copied().filter(|a| is_source(a)).collect();
        let covers: Vec<Covered> = self
            .alerts
            .values()
            .filter(|a| !ours.is_empty() && a.state == AlertState::Firing)
            .filter_map(|target| {
                let by = muted_by(rules, target, ours.iter().copied())?;
                Some(Covered {
                    fingerprint: target.fingerprint.clone(),
                    vm: target.vm().to_string(),
                    root_cause: target.incident.root_cause.clone(),
                    by: by.to_string(),
                })
            })
            .collect();
        let wall = Utc::now();
        let slots = self
            .by_receiver
            .get(&route.receiver)
            .cloned()
            .unwrap_or_default();
        for index in slots {
            let slot = &self.slots[index];
            let nkey = nflog_key(&slot.name, key);
            let told = self.nflog.get(&nkey);
            let resolved: Vec<Alert> = resolved_alerts
                .iter()
                .filter(|a| {
                    slot.send_resolved
                        && told.is_some_and(|t| t.firing.contains_key(&a.fingerprint))
                })
                .map(|a| (*a).clone())
                .collect();
            let changed = firing
                .iter()
                .any(|a| told.and_then(|t| t.firing.get(&a.fingerprint)) != Some(&a.version()));
            let repeat = !firing.is_empty()
                && told.is_some_and(|t| {
                    (wall - t.sent_at).to_std().unwrap_or_default() >= route.repeat_interval
                });
            if !(changed || repeat || !resolved.is_empty()) {
                continue;
            }
            let open_thread = told.filter(|t| !t.firing.is_empty());
            let id = notification_id(&slot.name, key, wall);
            out.push(Notification {
                thread: open_thread.map_or_else(|| id.clone(), |t| t.thread.clone()),
                sequence: open_thread.map_or(0, |t| t.sequence + 1),
                id,
                target: slot.name.clone(),
                receiver: route.receiver.clone(),
                group_key: key.to_string(),
                group_labels: group.labels.clone(),
                created_at: wall,
                firing: firing.iter().map(|a| (*a).clone()).collect(),
                resolved,
                covers: covers.clone(),
                external_url: self.built.external_url.clone(),
            });
        }
    }

    /// Sets the group's next flush; drops resolved alerts every target was
    /// told about (or need not be), and empty groups.
    fn after_flush(&mut self, key: &str, now: Instant) -> Result<(), StateError> {
        let Some(group) = self.groups.get(key) else {
            return Ok(());
        };
        let route = &self.routes[group.route];
        let slots = self
            .by_receiver
            .get(&route.receiver)
            .cloned()
            .unwrap_or_default();
        let mut done = Vec::new();
        let mut any_firing = false;
        for fingerprint in &group.alerts {
            let Some(alert) = self.alerts.get(fingerprint) else {
                done.push(fingerprint.clone());
                continue;
            };
            if alert.state == AlertState::Firing {
                any_firing = true;
                continue;
            }
            let told_everyone = slots.iter().all(|&i| {
                let slot = &self.slots[i];
                let told = self.nflog.get(&nflog_key(&slot.name, key));
                !slot.send_resolved
                    || told.is_none_or(|t| {
                        !t.firing.contains_key(fingerprint) || t.resolved.contains(fingerprint)
                    })
            });
            if told_everyone {
                done.push(fingerprint.clone());
            }
        }
        let repeat = route.repeat_interval;
        let group = self.groups.get_mut(key).expect("checked above");
        group.last_flush = Some(now);
        group.flush_at = any_firing.then(|| now + repeat);
        for fingerprint in &done {
            group.alerts.remove(fingerprint);
        }
        if group.alerts.is_empty() {
            self.groups.remove(key);
        }
        let forgotten: Vec<String> = done
            .into_iter()
            .filter(|f| !self.groups.values().any(|g| g.alerts.contains(f)))
            .collect();
        if !forgotten.is_empty() {
            for f in &forgotten {
                self.alerts.remove(f);
            }
            self.lock_state().forget(&forgotten)?;
        }
        Ok(())
    }
}

fn notification_id(target: &str, group: &str, at: chrono::DateTime<Utc>) -> String {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(target.as_bytes());
    h.write_u8(0);
    h.write(group.as_bytes());
    h.write_u8(0);
    h.write_i64(at.timestamp_nanos_opt().unwrap_or_default());
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// Makes ids made in the same nanosecond differ.
static NEXT: AtomicU64 = AtomicU64::new(0);

struct Worker {
    target: Target,
    notifier: Box<dyn Notifier>,
    state: Arc<Mutex<StateLog>>,
    journal: Arc<Journal>,
    stats: Arc<AlerterStats>,
    stop: Shutdown,
    sent_times: VecDeque<Instant>,
    metrics: Arc<StageMetrics>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Notification>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(n) => self.deliver(&n),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.stop.is_triggered() {
                        return;
                    }
                    self.notifier.tick();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Waits for the rate limit; false when stopping instead.
    fn wait_for_rate(&mut self, n: &Notification) -> bool {
        let max = self.target.max_per_minute as usize;
        if max == 0 {
            return true;
        }
        let mut told = false;
        loop {
            while self
                .sent_times
                .front()
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(60))
            {
                self.sent_times.pop_front();
            }
            if self.sent_times.len() < max {
                return true;
            }
            if !told {
                let mut entry = entry_for(Decision::RateLimited, n);
                entry.reason = Some(format!(
                    "{} notifications in the last minute (max_per_minute = {max}); this one waits its turn",
                    self.sent_times.len()
                ));
                self.journal.write(&entry);
                told = true;
            }
            if self.stop.wait_timeout(Duration::from_millis(200)) {
                return false;
            }
        }
    }

    fn deliver(&mut self, n: &Notification) {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 0u32;
        loop {
            if !self.wait_for_rate(n) {
                return;
            }
            attempt += 1;
            let result = self.notifier.send(n);
            let mut entry = entry_for(Decision::Sent, n);
            entry.attempt = Some(attempt);
            match result {
                Ok(()) => {
                    self.sent_times.push_back(Instant::now());
                    if let Err(e) = self
                        .state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record_sent(&n.id)
                    {
                        tracing::error!(notification = %n.id, error = %e, "sent, but cannot record it: it may be sent again after a restart");
                    }
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    self.metrics.items_out.fetch_add(1, Ordering::Relaxed);
                    self.journal.write(&entry);
                    tracing::info!(notification = %n.id, target = %n.target, attempt, "alert notification sent");
                    return;
                }
                Err(e)
                    if e.is_transient()
                        && started.elapsed() < self.target.retry_for
                        && !self.stop.is_triggered() =>
                {
                    entry.decision = Decision::Retry;
                    entry.reason = Some(e.to_string());
                    self.journal.write(&entry);
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(notification = %n.id, target = %n.target, attempt, error = %e, "alert notification not accepted; retrying");
                    let wait = jitter(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    if self.stop.wait_timeout(wait) {
                        return;
                    }
                }
                Err(e) if e.is_transient() && self.stop.is_triggered() => {
                    entry.decision = Decision::Retry;
                    entry.reason = Some(format!(
                        "{e}; stopping: left in the outbox for the next start"
                    ));
                    self.journal.write(&entry);
                    return;
                }
                Err(e) => {
                    let reason = if e.is_transient() {
                        format!("{e} (retried for {:?})", self.target.retry_for)
                    } else {
                        e.to_string()
                    };
                    if let Err(e) = self
                        .state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record_failed(&n.id, &reason)
                    {
                        tracing::error!(notification = %n.id, error = %e, "cannot record a failed notification");
                    }
                    entry.decision = Decision::Failed;
                    entry.reason = Some(reason);
                    self.journal.write(&entry);
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(notification = %n.id, target = %n.target, attempt, error = %e, "alert notification failed");
                    return;
                }
            }
        }
    }
}

/// Full jitter: a random wait between half and all of `backoff`.
fn jitter(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let fraction = (h.finish() % 1000) as f64 / 1000.0;
    backoff.mul_f64(0.5 + fraction / 2.0)
}
