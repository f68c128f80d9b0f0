//! The one place the pipeline's stages are wired together, for `relive
//! serve` (live) and `relive ingest` (a finite file source):
//!
//! ```text
//! source ─► [parse] ─► EventBatch ─► [index] ─► Committed ─► [correlate] ─► change log ─► [store]
//! ```
//!
//! Every arrow is a bounded queue behind `pipeline::{Sink, Source}`; each
//! stage is a thread with one job. Stopping is front to back: the source
//! stops, each stage drains its input, hands on what it holds and closes its
//! output, and the store subscriber reads the change log to its end.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use correlate::{Clocking, CorrelatorStage, Knowledge, RuleSet};
use pipeline::{Committed, EventBatch, Registry, Shutdown};

/// Batches that may wait in front of the index, and commits in front of the correlator.
const QUEUE: usize = 16;

/// How the wired stages behave.
pub struct TopologyOptions {
    /// Correlation timing.
    pub correlate: correlate::Config,
    /// Live clocking (serve) or end of input (ingest).
    pub clocking: Clocking,
    /// How the index commits.
    pub index: index::stage::IndexStageOptions,
    /// Whether the correlator runs. Off, committed events are acknowledged
    /// as soon as they are searchable (an index-only collector; a
    /// correlator elsewhere can read the index).
    pub correlation: bool,
}

/// The stages after the source, running.
pub struct Topology {
    /// Where the source hands its batches.
    pub input: pipeline::Sender<EventBatch>,
    /// Every stage's counters.
    pub registry: Registry,
    index: JoinHandle<index::stage::IndexStageEnd>,
    correlator: JoinHandle<Result<correlate::stage::StageSummary, correlate::StoreError>>,
    store: JoinHandle<Result<u64, correlate::StoreError>>,
    store_stop: Shutdown,
}

/// What a finished topology did.
pub struct Finished {
    /// The index, back from its stage.
    pub index: index::EventIndex,
    /// Metric samples new to the store.
    pub metrics_stored: usize,
    /// What the correlator decided.
    pub correlation: correlate::stage::StageSummary,
}

/// Opens the index under `data`, warms the correlator up (live clocking)
/// and starts the index, correlator and store stages.
pub fn start(
    data: &Path,
    rules: Arc<RuleSet>,
    kb: Arc<Knowledge>,
    options: TopologyOptions,
) -> anyhow::Result<Topology> {
    let registry = Registry::new();
    let index_dir = data.join("index");
    let index = index::EventIndex::open(&index_dir)
        .with_context(|| format!("cannot open the index in {}", index_dir.display()))?;
    let lookup = index::EventIndex::open(&index_dir)
        .with_context(|| format!("cannot open the index in {}", index_dir.display()))?;
    let correlate_metrics = registry.stage("correlate");
    let mut stage = CorrelatorStage::new(
        rules,
        kb,
        options.correlate,
        options.clocking,
        data,
        correlate_metrics.clone(),
    )
    .context("cannot open the incident change log")?;
    if matches!(options.clocking, Clocking::Live { .. }) && options.correlation {
        stage
            .warm_up(&lookup, None)
            .context("cannot warm the correlator up from the index")?;
    }
    let index_metrics = registry.stage("index");
    let (input, index_rx) =
        pipeline::bounded::<EventBatch>(QUEUE, index_metrics.queue_depth.clone());
    let (committed_tx, committed_rx) =
        pipeline::bounded::<Committed>(QUEUE, correlate_metrics.queue_depth.clone());
    let metric_store = index::MetricStore::open(&data.join("metrics"));
    let index_stage =
        index::stage::IndexStage::new(index, metric_store, options.index, index_metrics);
    let index = std::thread::Builder::new()
        .name("index".into())
        .spawn(move || index_stage.run(Box::new(index_rx), Box::new(committed_tx)))
        .context("cannot start the index stage")?;
    let end_of_input = options.clocking == Clocking::EndOfInput;
    let correlation = options.correlation;
    let correlator = std::thread::Builder::new()
        .name("correlate".into())
        .spawn(move || {
            if !correlation {
                return Ok(acknowledge_only(committed_rx, &correlate_metrics));
            }
            let lookup: Option<Box<dyn pipeline::EventLookup + Send>> =
                end_of_input.then(|| Box::new(lookup) as Box<dyn pipeline::EventLookup + Send>);
            stage.run(Box::new(committed_rx), lookup)
        })
        .context("cannot start the correlator stage")?;
    let store_stop = Shutdown::new();
    let store = {
        let data = data.to_path_buf();
        let stop = store_stop.clone();
        let metrics = registry.stage("store");
        std::thread::Builder::new()
            .name("incident-store".into())
            .spawn(move || correlate::stage::run_store(&data, &stop, &metrics))
            .context("cannot start the incident store")?
    };
    Ok(Topology {
        input,
        registry,
        index,
        correlator,
        store,
        store_stop,
    })
}

impl Topology {
    /// Waits for every stage to drain and stop; the source must have
    /// stopped (and dropped every clone of `input`) first.
    pub fn finish(self) -> anyhow::Result<Finished> {
        drop(self.input);
        let end = self
            .index
            .join()
            .map_err(|_| anyhow::anyhow!("the index stage panicked"))?;
        let correlation = self
            .correlator
            .join()
            .map_err(|_| anyhow::anyhow!("the correlator stage panicked"))?
            .context("the correlator stage failed");
        self.store_stop.trigger();
        let stored = self
            .store
            .join()
            .map_err(|_| anyhow::anyhow!("the incident store panicked"))?
            .context("the incident store failed");
        let correlation = correlation?;
        stored?;
        Ok(Finished {
            index: end.index,
            metrics_stored: end.metrics_stored,
            correlation,
        })
    }
}

/// The correlator's place when correlation is off: acknowledges each
/// committed batch (the consumer cursor moves) and counts it.
fn acknowledge_only(
    input: pipeline::Receiver<Committed>,
    metrics: &pipeline::StageMetrics,
) -> correlate::stage::StageSummary {
    use pipeline::Source as _;
    use std::sync::atomic::Ordering;
    let mut input = input;
    let mut summary = correlate::stage::StageSummary::default();
    loop {
        match input.recv(Duration::from_millis(100)) {
            pipeline::Recv::Item(batch) => {
                let n = batch.events.len() as u64;
                metrics.items_in.fetch_add(n, Ordering::Relaxed);
                summary.events += n;
                if let Err(e) = batch.ack.done() {
                    tracing::error!(error = %e, "cannot move the consumer cursor");
                }
            }
            pipeline::Recv::Idle => {}
            pipeline::Recv::Closed => return summary,
        }
    }
}

/// A default live hold: events arriving within it are put in time order.
pub const LIVE_HOLD: Duration = Duration::from_millis(250);
