//! The index as a pipeline stage: [`EventBatch`]es in, [`Committed`] out.
//!
//! Batches are added as they come and committed when the input goes quiet
//! or every `commit_interval` under load, whichever is first; only then are
//! their events handed on (a correlator never sees an event a search could
//! not find) together with the batches' acks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parsers::{Event, Metric};
use pipeline::{Ack, Committed, EventBatch, Recv, Sink, Source, StageMetrics};

use crate::{EventIndex, MetricStore};

/// How the stage commits.
#[derive(Debug, Clone)]
pub struct IndexStageOptions {
    /// Longest time an added event waits for its commit under steady load.
    pub commit_interval: Duration,
    /// A commit happens once the input has been quiet this long.
    pub quiet: Duration,
}

impl Default for IndexStageOptions {
    fn default() -> Self {
        IndexStageOptions {
            commit_interval: Duration::from_millis(250),
            quiet: Duration::from_millis(20),
        }
    }
}

/// The index stage: owns the index and the metric store while it runs.
pub struct IndexStage {
    index: EventIndex,
    metric_store: MetricStore,
    options: IndexStageOptions,
    metrics: Arc<StageMetrics>,
    commits: u64,
    metrics_stored: usize,
}

/// What the index stage hands back when its input closes.
pub struct IndexStageEnd {
    /// The index, committed.
    pub index: EventIndex,
    /// Migration metric samples that were new to the store.
    pub metrics_stored: usize,
}

/// What has been added and not yet committed.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    metrics: Vec<Metric>,
    ack: Ack,
    upto: u64,
    read_at: Option<Instant>,
    since: Option<Instant>,
}

impl IndexStage {
    /// A stage over an opened index and metric store.
    pub fn new(
        index: EventIndex,
        metric_store: MetricStore,
        options: IndexStageOptions,
        metrics: Arc<StageMetrics>,
    ) -> IndexStage {
        IndexStage {
            index,
            metric_store,
            options,
            metrics,
            commits: 0,
            metrics_stored: 0,
        }
    }

    /// Runs until `input` closes; commits what it holds, then returns the
    /// index (its output closes when this returns).
    pub fn run(
        mut self,
        mut input: Box<dyn Source<EventBatch>>,
        mut output: Box<dyn Sink<Committed>>,
    ) -> IndexStageEnd {
        let mut pending = Pending::default();
        loop {
            let wait = match pending.since {
                Some(since) => self
                    .options
                    .commit_interval
                    .saturating_sub(since.elapsed())
                    .min(self.options.quiet),
                None => Duration::from_millis(200),
            };
            match input.recv(wait) {
                Recv::Item(batch) => {
                    self.add(batch, &mut pending);
                    let due = pending
                        .since
                        .is_some_and(|s| s.elapsed() >= self.options.commit_interval);
                    if due && !self.commit(&mut pending, output.as_mut()) {
                        return self.end();
                    }
                }
                Recv::Idle => {
                    if pending.since.is_some() && !self.commit(&mut pending, output.as_mut()) {
                        return self.end();
                    }
                }
                Recv::Closed => {
                    if pending.since.is_some() {
                        self.commit(&mut pending, output.as_mut());
                    }
                    return self.end();
                }
            }
        }
    }

    fn end(self) -> IndexStageEnd {
        IndexStageEnd {
            index: self.index,
            metrics_stored: self.metrics_stored,
        }
    }

    fn add(&mut self, batch: EventBatch, pending: &mut Pending) {
        self.metrics
            .items_in
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        for event in &batch.events {
            if let Err(e) = self.index.add(event) {
                // Not acknowledged past this batch: read again after a restart.
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "indexing failed");
            }
        }
        pending.events.extend(batch.events);
        pending.metrics.extend(batch.metrics);
        pending.ack.merge(batch.ack);
        pending.upto = pending.upto.max(batch.to);
        pending.read_at = Some(
            pending
                .read_at
                .map_or(batch.read_at, |r| r.min(batch.read_at)),
        );
        pending.since.get_or_insert_with(Instant::now);
    }

    /// Commits and hands the committed events on; false when the next
    /// stage is gone.
    fn commit(&mut self, pending: &mut Pending, output: &mut dyn Sink<Committed>) -> bool {
        let done = std::mem::take(pending);
        if !done.metrics.is_empty() {
            match self.metric_store.append(&done.metrics) {
                Ok(n) => self.metrics_stored += n,
                Err(e) => tracing::error!(error = %e, "storing migration metrics failed"),
            }
        }
        if let Err(e) = self.index.commit() {
            // Not handed on, so not acknowledged: the log is read again from
            // before these records after a restart.
            tracing::error!(error = %e, "index commit failed");
            return true;
        }
        pipeline::fault::point("after-commit");
        self.commits += 1;
        self.metrics.committed_now();
        let read_at = done.read_at.unwrap_or_else(Instant::now);
        self.metrics
            .lag_ms
            .store(read_at.elapsed().as_millis() as u64, Ordering::Relaxed);
        let n = done.events.len() as u64;
        let committed = Committed {
            commit: self.commits,
            upto: done.upto,
            events: done.events,
            read_at,
            committed_at: Instant::now(),
            ack: done.ack,
        };
        if output.send(committed).is_err() {
            tracing::error!("the correlator stopped; the index stage stops too");
            return false;
        }
        self.metrics.items_out.fetch_add(n, Ordering::Relaxed);
        true
    }
}

impl pipeline::EventLookup for EventIndex {
    fn events_between(
        &self,
        event_ids: Option<&[u32]>,
        since: Option<chrono::DateTime<chrono::Utc>>,
        until: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> Result<(Vec<Event>, usize), pipeline::LookupError> {
        let query = match event_ids {
            Some(ids) if !ids.is_empty() => ids
                .iter()
                .map(|id| format!("event_id:{id}"))
                .collect::<Vec<_>>()
                .join(" OR "),
            _ => "*".to_string(),
        };
        let request = crate::SearchRequest {
            query,
            since,
            until,
            limit,
        };
        // Another handle may have committed since this one last looked.
        self.refresh()
            .map_err(|e| pipeline::LookupError(e.to_string()))?;
        self.events(&request)
            .map_err(|e| pipeline::LookupError(e.to_string()))
    }
}
