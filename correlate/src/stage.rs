//! The correlator as a pipeline stage.
//!
//! [`CorrelatorStage`] owns a [`Correlator`], feeds it every committed
//! event and writes what it decides to the change log as typed
//! [`IncidentChange`]s. Two clockings:
//!
//! - [`Clocking::Live`] (`relive serve`): the watermark is the newest event
//!   time plus the wall-clock time since it arrived, minus a short hold
//!   that orders events arriving together. A complete chain is decided as
//!   soon as the watermark passes it (within the hold); a lone failure
//!   when its settle time has passed in wall-clock time, with no further
//!   traffic; late evidence re-decides and updates the incident.
//! - [`Clocking::EndOfInput`] (`relive ingest`): the input is finite, so
//!   the stage only notes the span it covers and, when the input closes,
//!   reads the committed events around that span back (the same
//!   [`warm_up`](CorrelatorStage::warm_up) a live stage runs after a
//!   restart), in time order, and decides everything.
//!
//! Restarts: the correlator's memory is rebuilt from the committed events
//! themselves. A live stage warms up from the store over the reach of a
//! decision (fold window + longest chain + hold) before the newest
//! committed event, and back to the first evidence of the oldest open
//! incident, so folding continues; the write-ahead log then hands over
//! again whatever was not acknowledged (an event seen twice is dropped by
//! the engine's record and content keys). Incident ids depend only on the
//! VM and the first failure's time, and the store upserts by id, so a
//! restart yields the same incidents with the same ids. The stage
//! acknowledges a batch only after the changes it caused are synced.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use parsers::Event;
use pipeline::{Committed, EventLookup, Recv, Source, StageMetrics};

use crate::changes::{ChangeKind, ChangeLog, IncidentChange};
use crate::incident::{Incident, IncidentStore, Status};
use crate::{Config, Correlator, Knowledge, RuleSet, StoreError};

/// What drives the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clocking {
    /// Event time extrapolated by the wall clock, minus `hold`.
    Live {
        /// How long events that arrive together wait to be put in order.
        hold: Duration,
    },
    /// Decide everything once the input ends.
    EndOfInput,
}

/// At most this many events are read back for a warm-up; past it the
/// oldest are left out and the stage says so.
pub const WARM_UP_LIMIT: usize = 2_000_000;

/// How often a live stage looks at the clock when no events arrive.
const TICK: Duration = Duration::from_millis(50);
/// How often an idle correlator deletes change-log segments every
/// subscriber has read (it also does after each append).
const RELEASE_EVERY: Duration = Duration::from_secs(10);

/// What a stage run produced.
#[derive(Debug, Clone, Default)]
pub struct StageSummary {
    /// Events pushed (warm-up included).
    pub events: u64,
    /// Changes written to the log.
    pub changes: u64,
    /// Events read back for the warm-up.
    pub warmed_up: u64,
    /// The warm-up was cut by [`WARM_UP_LIMIT`].
    pub warm_up_cut: bool,
    /// Incidents opened in this run.
    pub opened: u64,
    /// Incidents the correlator decided in this run (changed or not), last
    /// snapshot each.
    pub incidents: Vec<Incident>,
}

/// The correlator stage.
pub struct CorrelatorStage {
    correlator: Correlator,
    clocking: Clocking,
    log: ChangeLog,
    /// The last snapshot of each incident written, to classify the next.
    last: HashMap<String, Incident>,
    /// Newest event time and when (wall clock) it arrived.
    newest: Option<(DateTime<Utc>, Instant)>,
    /// Span of the input (end-of-input clocking).
    span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    metrics: Arc<StageMetrics>,
    summary: StageSummary,
    changed: HashMap<String, Incident>,
    /// When fully read change-log segments were last deleted.
    released_at: Instant,
}

impl CorrelatorStage {
    /// A stage writing to the change log under `data`. In live clocking the
    /// engine's lateness is the hold.
    pub fn new(
        rules: Arc<RuleSet>,
        kb: Arc<Knowledge>,
        mut config: Config,
        clocking: Clocking,
        data: &Path,
        metrics: Arc<StageMetrics>,
    ) -> Result<CorrelatorStage, StoreError> {
        if let Clocking::Live { hold } = clocking {
            config.lateness = hold;
        }
        let log = ChangeLog::open(data)?;
        // What was last decided: the store, overlaid with the log's tail
        // (newer when the store had not caught up before a crash), so a
        // restart writes no change for an incident that did not change.
        let mut last: HashMap<String, Incident> = IncidentStore::new(data)
            .load()?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        for incident in log.latest()? {
            last.insert(incident.id.clone(), incident);
        }
        Ok(CorrelatorStage {
            correlator: Correlator::new(rules, kb, config),
            clocking,
            log,
            last,
            newest: None,
            span: None,
            metrics,
            summary: StageSummary::default(),
            changed: HashMap::new(),
            released_at: Instant::now(),
        })
    }

    /// Rebuilds the engine's memory from committed events. `around` is the
    /// span of new input (end-of-input clocking); without it (a live stage
    /// starting) the window ends at the newest committed event the rules
    /// look at and reaches back to the oldest open incident.
    pub fn warm_up(
        &mut self,
        lookup: &dyn EventLookup,
        around: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<(), StoreError> {
        let reach = TimeDelta::from_std(self.correlator.reach()).unwrap_or(TimeDelta::hours(2));
        let span =
            TimeDelta::from_std(self.correlator.max_timespan()).unwrap_or(TimeDelta::hours(1));
        let ids = self.correlator.event_ids();
        let lookup_err = |e: pipeline::LookupError| StoreError::Lookup(e.to_string());
        let (since, until) = match around {
            Some((first, last)) => (Some(first - reach), Some(last + reach)),
            None => {
                let (newest, _) = lookup
                    .events_between(ids.as_deref(), None, None, 1)
                    .map_err(lookup_err)?;
                let Some(newest) = newest.first().map(|e| e.timestamp) else {
                    return Ok(());
                };
                let oldest_open = self
                    .last
                    .values()
                    .filter(|i| i.status == Status::Open)
                    .map(|i| i.first_seen - span)
                    .min();
                let from = newest - reach;
                (Some(oldest_open.map_or(from, |o| o.min(from))), None)
            }
        };
        let (mut events, total) = lookup
            .events_between(ids.as_deref(), since, until, WARM_UP_LIMIT)
            .map_err(lookup_err)?;
        if total > events.len() {
            self.summary.warm_up_cut = true;
            tracing::warn!(
                matched = total,
                read = events.len(),
                "correlator warm-up: more events than the warm-up reads; the oldest are left out"
            );
        }
        events.sort_by_key(|e| e.timestamp);
        self.summary.warmed_up += events.len() as u64;
        tracing::info!(events = events.len(), since = ?since, "correlator warm-up");
        for event in events {
            self.push(event);
        }
        if around.is_some() {
            self.correlator.flush();
        }
        self.publish()?;
        Ok(())
    }

    fn push(&mut self, event: Event) {
        let ts = event.timestamp;
        if self.newest.is_none_or(|(n, _)| ts > n) {
            self.newest = Some((ts, Instant::now()));
        }
        self.span = Some(match self.span {
            Some((a, b)) => (a.min(ts), b.max(ts)),
            None => (ts, ts),
        });
        self.summary.events += 1;
        self.correlator.push(event);
    }

    /// Moves the watermark by the wall clock (live clocking).
    fn tick(&mut self) {
        let Clocking::Live { hold } = self.clocking else {
            return;
        };
        let Some((newest, arrived)) = self.newest else {
            return;
        };
        let now = newest + TimeDelta::from_std(arrived.elapsed()).unwrap_or(TimeDelta::zero())
            - TimeDelta::from_std(hold).unwrap_or(TimeDelta::zero());
        self.correlator.advance_to(now);
    }

    /// Writes the changes the engine has decided; returns how many.
    fn publish(&mut self) -> Result<usize, StoreError> {
        let mut changes = Vec::new();
        for incident in self.correlator.drain() {
            self.changed.insert(incident.id.clone(), incident.clone());
            let Some(kind) = ChangeKind::between(self.last.get(&incident.id), &incident) else {
                continue;
            };
            if kind == ChangeKind::Opened {
                self.summary.opened += 1;
            }
            self.last.insert(incident.id.clone(), incident.clone());
            changes.push(IncidentChange::new(kind, incident));
        }
        if !changes.is_empty() {
            self.log.append(&changes)?;
            if let Err(e) = self.log.release() {
                tracing::warn!(error = %e, "cannot delete read incident change segments");
            }
        }
        self.summary.changes += changes.len() as u64;
        self.metrics
            .items_out
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        Ok(changes.len())
    }

    /// Runs until `input` closes. Returns what it did; fails only when the
    /// change log cannot be written (nothing after that is acknowledged).
    pub fn run(
        mut self,
        mut input: Box<dyn Source<Committed>>,
        lookup: Option<Box<dyn EventLookup + Send>>,
    ) -> Result<StageSummary, StoreError> {
        loop {
            match input.recv(TICK) {
                Recv::Item(mut batch) => {
                    self.metrics
                        .items_in
                        .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                    match self.clocking {
                        Clocking::Live { .. } => {
                            batch.events.sort_by_key(|e| e.timestamp);
                            for event in std::mem::take(&mut batch.events) {
                                self.push(event);
                            }
                            self.tick();
                        }
                        Clocking::EndOfInput => {
                            for event in &batch.events {
                                let ts = event.timestamp;
                                self.span = Some(match self.span {
                                    Some((a, b)) => (a.min(ts), b.max(ts)),
                                    None => (ts, ts),
                                });
                            }
                        }
                    }
                    self.publish()?;
                    pipeline::fault::point("after-correlate");
                    self.metrics.delay_ms.store(
                        batch.committed_at.elapsed().as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    self.metrics.lag_ms.store(
                        batch.read_at.elapsed().as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    self.metrics.committed_now();
                    batch.ack.done()?;
                }
                Recv::Idle => {
                    self.tick();
                    self.publish()?;
                    if self.released_at.elapsed() >= RELEASE_EVERY {
                        // Subscribers that caught up since the last append.
                        if let Err(e) = self.log.release() {
                            tracing::warn!(error = %e, "cannot delete read incident change segments");
                        }
                        self.released_at = Instant::now();
                    }
                }
                Recv::Closed => break,
            }
        }
        if self.clocking == Clocking::EndOfInput {
            if let (Some(span), Some(lookup)) = (self.span, lookup.as_deref()) {
                self.warm_up(lookup, Some(span))?;
            }
        }
        self.publish()?;
        let mut summary = std::mem::take(&mut self.summary);
        let mut incidents: Vec<Incident> = self.changed.into_values().collect();
        incidents.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then(a.id.cmp(&b.id)));
        summary.incidents = incidents;
        Ok(summary)
    }
}

/// Follows the change log as the subscriber `store` and upserts every
/// change into the incident store (`incidents.json`), until `stop` is
/// given and the log is read to its end.
///
/// Counts changes read (in) and incidents written (out) in `metrics`.
pub fn run_store(
    data: &Path,
    stop: &pipeline::Shutdown,
    metrics: &StageMetrics,
) -> Result<u64, StoreError> {
    let mut subscription = crate::changes::Subscription::open(data, STORE_SUBSCRIBER)?;
    let store = IncidentStore::new(data);
    let mut written = 0u64;
    loop {
        let stopping = stop.is_triggered();
        let mut batch: Vec<Incident> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        while let Some(change) = subscription.next_change()? {
            metrics.items_in.fetch_add(1, Ordering::Relaxed);
            match at.get(&change.incident.id) {
                Some(&i) => batch[i] = change.incident,
                None => {
                    at.insert(change.incident.id.clone(), batch.len());
                    batch.push(change.incident);
                }
            }
            if batch.len() >= 10_000 {
                break;
            }
        }
        if !batch.is_empty() {
            store.upsert(&batch)?;
            written += batch.len() as u64;
            metrics
                .items_out
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            metrics.committed_now();
            subscription.ack()?;
            continue;
        }
        if stopping {
            return Ok(written);
        }
        stop.wait_timeout(Duration::from_millis(20));
    }
}

/// The incident store's subscriber name in the change log.
pub const STORE_SUBSCRIBER: &str = "store";
