//! The collector's durable core: receivers submit records, one writer
//! thread appends them to the write-ahead log with one sync per group and
//! only then answers, and one indexer thread reads the log behind it,
//! parses, indexes, commits and checkpoints.
//!
//! Flow control: the submission queue is bounded, and the writer stops
//! taking submissions while the indexer is more than
//! [`CollectorOptions::max_lag_records`] records behind, so a receiver
//! awaiting `submit` slows its sender down (TCP) or answers 429 (HTTP,
//! through [`Submitter::try_submit`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parsers::{Event, Metric, ParseOptions, RecordError, Sink};
use tokio::sync::{mpsc, oneshot};

use crate::record::Record;
use crate::wal::{self, Wal, WalOptions, WalReader};
use crate::IngestError;

/// Tuning of the collector core.
#[derive(Debug, Clone)]
pub struct CollectorOptions {
    /// `--data`: the index is in `index/`, metrics in `metrics/`, the log in `wal/`.
    pub data: PathBuf,
    /// Write-ahead log sizing.
    pub wal: WalOptions,
    /// Submissions waiting for the writer.
    pub queue: usize,
    /// Records the indexer may fall behind the log before receivers wait.
    pub max_lag_records: u64,
    /// Longest time an indexed event waits for a commit (search latency).
    pub commit_interval: Duration,
    /// How records are parsed.
    pub parse: ParseOptions,
}

impl CollectorOptions {
    /// Defaults for a data folder.
    pub fn new(data: &Path) -> Self {
        CollectorOptions {
            data: data.to_path_buf(),
            wal: WalOptions::default(),
            queue: 256,
            max_lag_records: 4096,
            commit_interval: Duration::from_millis(250),
            parse: ParseOptions::default(),
        }
    }
}

/// Counters, shared with the receivers and the status API.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records made durable.
    pub records_durable: AtomicU64,
    /// Sequence number after the last durable record.
    pub durable_seq: AtomicU64,
    /// Sequence number after the last indexed and committed record.
    pub indexed_seq: AtomicU64,
    /// Events added to the index.
    pub events_indexed: AtomicU64,
    /// Metric samples stored.
    pub metrics_stored: AtomicU64,
    /// Records (lines, messages) that did not parse.
    pub parse_errors: AtomicU64,
    /// Submissions refused because the queue was full.
    pub busy: AtomicU64,
    /// Index commits.
    pub commits: AtomicU64,
}

struct Submission {
    records: Vec<Record>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// A handle receivers use to hand records over.
#[derive(Clone)]
pub struct Submitter {
    tx: mpsc::Sender<Submission>,
    stats: Arc<Stats>,
}

/// Resolves when queued records are durable (see [`Submitter::enqueue`]).
pub struct Durable(oneshot::Receiver<Result<u64, String>>);

impl Durable {
    /// Waits; returns the sequence number of the last record.
    pub async fn wait(self) -> Result<u64, IngestError> {
        self.0
            .await
            .map_err(|_| IngestError::ShuttingDown)?
            .map_err(IngestError::Durability)
    }
}

/// The queue is full: the HTTP receivers answer 429.
#[derive(Debug)]
pub struct Busy;

impl Submitter {
    /// Submits records and waits until they are durable. Returns the
    /// sequence number of the last.
    pub async fn submit(&self, records: Vec<Record>) -> Result<u64, IngestError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Submission { records, done })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        wait.await
            .map_err(|_| IngestError::ShuttingDown)?
            .map_err(IngestError::Durability)
    }

    /// Queues records (waiting for queue space, which is the backpressure)
    /// and returns a receiver that resolves once they are durable; lets a
    /// connection keep reading while earlier batches are being synced.
    pub async fn enqueue(&self, records: Vec<Record>) -> Result<Durable, IngestError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Submission { records, done })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        Ok(Durable(wait))
    }

    /// Submits without waiting for queue space; `Err(Busy)` when full.
    pub async fn try_submit(&self, records: Vec<Record>) -> Result<Result<u64, IngestError>, Busy> {
        let (done, wait) = oneshot::channel();
        match self.tx.try_send(Submission { records, done }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                return Err(Busy);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Ok(Err(IngestError::ShuttingDown));
            }
        }
        Ok(match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(IngestError::Durability(e)),
            Err(_) => Err(IngestError::ShuttingDown),
        })
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// What a commit added: the hook's input.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Events indexed since the previous commit.
    pub events: u64,
    /// Earliest and latest event time among them.
    pub first: Option<chrono::DateTime<chrono::Utc>>,
    /// See `first`.
    pub last: Option<chrono::DateTime<chrono::Utc>>,
}

/// Called by the indexer after each commit (the binary runs correlation here).
pub type CommitHook = Box<dyn FnMut(&mut index::EventIndex, &Committed) + Send>;

/// The running core.
pub struct Collector {
    submitter: Submitter,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    indexer: Option<JoinHandle<()>>,
}

impl Collector {
    /// Opens the log (replaying what was not indexed yet) and the index,
    /// and starts the writer and indexer threads.
    pub fn start(options: CollectorOptions, hook: Option<CommitHook>) -> Result<Self, IngestError> {
        let wal_dir = options.data.join("wal");
        let (wal, recovery) = Wal::open(&wal_dir, options.wal)?;
        if let Some(damage) = &recovery.damage {
            tracing::warn!(
                dropped_bytes = recovery.truncated_bytes,
                "write-ahead log: dropped a torn tail: {damage}"
            );
        }
        let checkpoint = wal_dir.join("indexed");
        let indexed = wal::load_u64(&checkpoint).unwrap_or(0).min(wal.next_seq());
        if wal.next_seq() > indexed {
            tracing::info!(
                records = wal.next_seq() - indexed,
                "replaying write-ahead log records not yet indexed"
            );
        }
        let index_dir = options.data.join("index");
        let index = index::EventIndex::open(&index_dir)?;
        let stats = Arc::new(Stats::default());
        stats.durable_seq.store(wal.next_seq(), Ordering::Release);
        stats.indexed_seq.store(indexed, Ordering::Release);
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stats = stats.clone();
            let max_lag = options.max_lag_records;
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wal-writer".into())
                .spawn(move || write_loop(wal, rx, &stats, max_lag, &stop))
                .map_err(IngestError::Thread)?
        };
        let indexer = {
            let stats = stats.clone();
            let stop = stop.clone();
            let metrics = index::MetricStore::open(&options.data.join("metrics"));
            let state = Indexer {
                reader: WalReader::new(&wal_dir, indexed),
                wal_dir,
                checkpoint,
                index,
                metrics,
                stats,
                hook,
                options,
            };
            std::thread::Builder::new()
                .name("indexer".into())
                .spawn(move || state.run(&stop))
                .map_err(IngestError::Thread)?
        };
        Ok(Collector {
            submitter: Submitter { tx, stats },
            stop,
            writer: Some(writer),
            indexer: Some(indexer),
        })
    }

    /// A handle for receivers.
    pub fn submitter(&self) -> Submitter {
        self.submitter.clone()
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.submitter.stats
    }

    /// Stops taking records, indexes what is durable, commits and returns.
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Receivers may still hold senders: wake the writer so it sees `stop`.
        let (done, _) = oneshot::channel();
        let _ = self.submitter.tx.try_send(Submission {
            records: Vec::new(),
            done,
        });
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(i) = self.indexer.take() {
            let _ = i.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_loop(
    mut wal: Wal,
    mut rx: mpsc::Receiver<Submission>,
    stats: &Stats,
    max_lag: u64,
    stop: &AtomicBool,
) {
    let mut group: Vec<Submission> = Vec::new();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    loop {
        if stop.load(Ordering::Acquire) {
            // Refuse new submissions; write what is queued, then end.
            rx.close();
        }
        // An empty submission is the wake-up `shutdown` sends.
        let first = match rx.blocking_recv() {
            Some(s) if s.records.is_empty() => {
                let _ = s.done.send(Ok(wal.next_seq().saturating_sub(1)));
                continue;
            }
            other => other,
        };
        let Some(first) = first else { return };
        // Backpressure: wait for the indexer.
        while !stop.load(Ordering::Acquire)
            && stats.durable_seq.load(Ordering::Acquire)
                > stats.indexed_seq.load(Ordering::Acquire) + max_lag
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        group.clear();
        bodies.clear();
        let mut bytes = 0usize;
        group.push(first);
        while bytes < 16 << 20 {
            match rx.try_recv() {
                Ok(s) => group.push(s),
                Err(_) => break,
            }
            bytes = group
                .iter()
                .flat_map(|s| s.records.iter())
                .map(|r| r.payload.len())
                .sum();
        }
        for s in &group {
            bodies.extend(s.records.iter().map(Record::encode));
        }
        match wal.append(&bodies) {
            Ok(first_seq) => {
                let mut next = first_seq;
                stats
                    .records_durable
                    .fetch_add(bodies.len() as u64, Ordering::Relaxed);
                stats.durable_seq.store(wal.next_seq(), Ordering::Release);
                for s in group.drain(..) {
                    next += s.records.len() as u64;
                    let _ = s.done.send(Ok(next.saturating_sub(1)));
                }
            }
            Err(e) => {
                tracing::error!("write-ahead log append failed: {e}");
                for s in group.drain(..) {
                    let _ = s.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

struct Indexer {
    reader: WalReader,
    wal_dir: PathBuf,
    checkpoint: PathBuf,
    index: index::EventIndex,
    metrics: index::MetricStore,
    stats: Arc<Stats>,
    hook: Option<CommitHook>,
    options: CollectorOptions,
}

struct IndexSink<'a> {
    index: &'a mut index::EventIndex,
    metrics: &'a mut Vec<Metric>,
    committed: &'a mut Committed,
    events: u64,
    errors: u64,
    failure: Option<index::IndexError>,
}

impl Sink for IndexSink<'_> {
    fn event(&mut self, event: Event) {
        if self.failure.is_some() {
            return;
        }
        match self.index.add(&event) {
            Ok(()) => {
                self.events += 1;
                let c = &mut *self.committed;
                c.events += 1;
                c.first = Some(c.first.map_or(event.timestamp, |f| f.min(event.timestamp)));
                c.last = Some(c.last.map_or(event.timestamp, |l| l.max(event.timestamp)));
            }
            Err(e) => self.failure = Some(e),
        }
    }
    fn metric(&mut self, metric: Metric) {
        self.metrics.push(metric);
    }
    fn error(&mut self, error: RecordError) {
        self.errors += 1;
        tracing::warn!("skipped a record: {error}");
    }
}

impl Indexer {
    fn run(mut self, stop: &AtomicBool) {
        let mut pending = 0u64;
        let mut metrics: Vec<Metric> = Vec::new();
        let mut committed = Committed::default();
        let mut last_commit = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let mut read_any = false;
            let mut batch = 0;
            while batch < 512 {
                let record = match self.reader.next_record() {
                    Ok(Some((_, body))) => Record::decode(body),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("reading the write-ahead log: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                };
                read_any = true;
                batch += 1;
                pending += 1;
                let Some(record) = record else {
                    tracing::warn!("skipped a write-ahead log record that does not decode");
                    continue;
                };
                let mut sink = IndexSink {
                    index: &mut self.index,
                    metrics: &mut metrics,
                    committed: &mut committed,
                    events: 0,
                    errors: 0,
                    failure: None,
                };
                crate::record::parse(&record, &self.options.parse, &mut sink);
                let (events, errors, failure) = (sink.events, sink.errors, sink.failure);
                self.stats
                    .events_indexed
                    .fetch_add(events, Ordering::Relaxed);
                self.stats.parse_errors.fetch_add(errors, Ordering::Relaxed);
                if let Some(e) = failure {
                    tracing::error!("indexing failed: {e}");
                }
            }
            let due = last_commit.elapsed() >= self.options.commit_interval;
            if pending > 0
                && (due
                    || (!read_any && last_commit.elapsed() >= Duration::from_millis(50))
                    || stopping)
            {
                self.commit(&mut metrics, &mut committed);
                pending = 0;
                last_commit = Instant::now();
            }
            if stopping
                && !read_any
                && self.reader.position() >= self.stats.durable_seq.load(Ordering::Acquire)
            {
                self.commit(&mut metrics, &mut committed);
                return;
            }
            if !read_any {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn commit(&mut self, metrics: &mut Vec<Metric>, committed: &mut Committed) {
        if !metrics.is_empty() {
            match self.metrics.append(metrics) {
                Ok(n) => {
                    self.stats
                        .metrics_stored
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::error!("storing metrics failed: {e}"),
            }
            metrics.clear();
        }
        if let Err(e) = self.index.commit() {
            // Not checkpointed: the records are read again after a restart.
            tracing::error!("index commit failed: {e}");
            return;
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        let position = self.reader.position();
        if let Err(e) = wal::store_u64(&self.checkpoint, position) {
            tracing::error!("storing the indexer checkpoint failed: {e}");
            return;
        }
        self.stats.indexed_seq.store(position, Ordering::Release);
        let durable = self.stats.durable_seq.load(Ordering::Acquire);
        if let Err(e) = wal::release_before(&self.wal_dir, position, durable) {
            tracing::warn!("deleting indexed write-ahead log segments: {e}");
        }
        let done = std::mem::take(committed);
        if let Some(hook) = self.hook.as_mut() {
            hook(&mut self.index, &done);
        }
    }
}
