//! The collector's durable core: receivers submit records, one writer
//! thread appends them to the write-ahead log with one sync per group and
//! only then answers, and one parse stage reads the log behind it, parses,
//! corrects host zones and hands [`EventBatch`]es to whatever sink the
//! caller wires (the index stage in `relive serve`). Each batch carries an
//! ack; the last stage downstream calls it, which moves the consumer cursor
//! (`wal/consumed`); a restart reads the log again from there, and
//! segments wholly before it are deleted.
//!
//! Flow control: the submission queue is bounded, and the writer stops
//! taking submissions while the parse stage is more than
//! [`CollectorOptions::max_lag_records`] records behind (it is itself held
//! back by the bounded queue in front of the next stage), so a receiver
//! awaiting `submit` slows its sender down (TCP) or answers 429 (HTTP,
//! through [`Submitter::try_submit`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parsers::{Event, Metric, ParseOptions, RecordError, Sink};
use pipeline::EventBatch;
use tokio::sync::{mpsc, oneshot};

use crate::record::Record;
use crate::wal::{self, Wal, WalOptions, WalReader};
use crate::IngestError;

/// Tuning of the collector core.
#[derive(Debug, Clone)]
pub struct CollectorOptions {
    /// `--data`: the log is in `wal/`, learned host zones in `zones`.
    pub data: PathBuf,
    /// Write-ahead log sizing.
    pub wal: WalOptions,
    /// Submissions waiting for the writer.
    pub queue: usize,
    /// Records the parse stage may fall behind the log before receivers wait.
    pub max_lag_records: u64,
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
    /// Sequence number after the last record the parse stage handed on.
    pub read_seq: AtomicU64,
    /// Sequence number after the last record the last stage downstream
    /// finished (the consumer cursor).
    pub consumed_seq: AtomicU64,
    /// Events parsed and handed on.
    pub events_parsed: AtomicU64,
    /// Records (lines, messages) that did not parse.
    pub parse_errors: AtomicU64,
    /// Submissions refused because the queue was full.
    pub busy: AtomicU64,
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

/// The running core: the log writer and the parse stage.
pub struct Collector {
    submitter: Submitter,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    parser: Option<JoinHandle<()>>,
}

impl Collector {
    /// Opens the log and starts the writer and the parse stage, which reads
    /// the log from the consumer cursor (`wal/consumed`: everything before
    /// it was handled by the last stage downstream), parses, learns and
    /// corrects host zones, and hands [`EventBatch`]es to `output`; each
    /// batch's [`pipeline::Ack`] moves the cursor when the last stage calls it.
    pub fn start(
        options: CollectorOptions,
        output: Box<dyn pipeline::Sink<EventBatch>>,
    ) -> Result<Self, IngestError> {
        let wal_dir = options.data.join("wal");
        let (wal, recovery) = Wal::open(&wal_dir, options.wal)?;
        if let Some(damage) = &recovery.damage {
            tracing::warn!(
                dropped_bytes = recovery.truncated_bytes,
                "write-ahead log: dropped a torn tail: {damage}"
            );
        }
        let cursor_path = wal_dir.join(CURSOR_FILE);
        if !cursor_path.exists() {
            // Data folders from before the cursor: the indexer's checkpoint.
            if let Some(old) = wal::load_u64(&wal_dir.join("indexed")) {
                wal::store_u64(&cursor_path, old)?;
            }
        }
        let cursor = pipeline::Cursor::open(&cursor_path);
        let consumed = cursor.position().min(wal.next_seq());
        if wal.next_seq() > consumed {
            tracing::info!(
                records = wal.next_seq() - consumed,
                from = consumed,
                "replaying write-ahead log records not yet handled downstream"
            );
        }
        let stats = Arc::new(Stats::default());
        stats.durable_seq.store(wal.next_seq(), Ordering::Release);
        stats.read_seq.store(consumed, Ordering::Release);
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
        let parser = {
            let stats = stats.clone();
            let stop = stop.clone();
            let zones_path = options.data.join(ZONES_FILE);
            let mut zones = parsers::time::OffsetLearner::default();
            load_zones(&zones_path, &mut zones);
            let state = ParseStage {
                reader: WalReader::new(&wal_dir, consumed),
                wal_dir,
                cursor,
                zones,
                zones_path,
                stats,
                output,
                options,
            };
            std::thread::Builder::new()
                .name("parse".into())
                .spawn(move || state.run(&stop))
                .map_err(IngestError::Thread)?
        };
        Ok(Collector {
            submitter: Submitter { tx, stats },
            stop,
            writer: Some(writer),
            parser: Some(parser),
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

    /// Stops taking records, hands on what is durable (a backlog for at
    /// most half a second; the rest stays in the log, behind the consumer
    /// cursor, for the next start), and returns once the parse stage has
    /// closed its output (downstream stages then drain and stop in turn).
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
        if let Some(p) = self.parser.take() {
            let _ = p.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The consumer cursor's file in `wal/`.
pub const CURSOR_FILE: &str = "consumed";

/// Learned host offsets under `--data`, one `host seconds` line each.
pub const ZONES_FILE: &str = "zones";

/// Reads offsets stored by [`store_zones`] into `zones` (nothing when absent).
pub fn load_zones(path: &Path, zones: &mut parsers::time::OffsetLearner) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(host), Some(Ok(seconds))) = (parts.next(), parts.next().map(str::parse::<i64>))
        {
            zones.restore(host, chrono::TimeDelta::seconds(seconds));
        }
    }
}

/// Stores the offsets `zones` has learned (atomically).
pub fn store_zones(
    path: &Path,
    zones: &parsers::time::OffsetLearner,
) -> Result<(), pipeline::WalError> {
    let mut lines: Vec<String> = zones
        .offsets()
        .map(|(host, offset)| format!("{host} {}\n", offset.num_seconds()))
        .collect();
    lines.sort();
    wal::store_bytes(path, lines.concat().as_bytes())
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
        // Backpressure: wait for the parse stage, which itself waits on
        // the bounded queue in front of the index.
        while !stop.load(Ordering::Acquire)
            && stats.durable_seq.load(Ordering::Acquire)
                > stats.read_seq.load(Ordering::Acquire) + max_lag
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
                pipeline::fault::point("after-wal-sync");
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

struct ParseStage {
    reader: WalReader,
    wal_dir: PathBuf,
    cursor: Arc<pipeline::Cursor>,
    zones: parsers::time::OffsetLearner,
    zones_path: PathBuf,
    stats: Arc<Stats>,
    output: Box<dyn pipeline::Sink<EventBatch>>,
    options: CollectorOptions,
}

/// Collects one batch's events, learning host zones on the way (the same
/// learner `relive ingest` uses); the batch is corrected once it is whole,
/// so a local-time copy learns from a UTC copy later in the same batch.
struct BatchSink<'a> {
    events: &'a mut Vec<Event>,
    metrics: &'a mut Vec<Metric>,
    zones: &'a mut parsers::time::OffsetLearner,
    learned: usize,
    errors: u64,
}

impl Sink for BatchSink<'_> {
    fn event(&mut self, event: Event) {
        let before = self.zones.known();
        self.zones.learn(&event);
        self.learned += self.zones.known() - before;
        self.events.push(event);
    }
    fn metric(&mut self, metric: Metric) {
        self.metrics.push(metric);
    }
    fn error(&mut self, error: RecordError) {
        self.errors += 1;
        tracing::warn!("skipped a record: {error}");
    }
}

/// How long the parse stage keeps reading a backlog after the stop signal;
/// what is left waits in the log for the next start.
const STOP_DRAIN: Duration = Duration::from_millis(500);

/// A batch is handed on at this many events, or when the log has no more.
const BATCH_EVENTS: usize = 8192;

impl ParseStage {
    fn run(mut self, stop: &AtomicBool) {
        let mut released = self.cursor.position();
        let mut stopping_since: Option<Instant> = None;
        loop {
            let stopping = stop.load(Ordering::Acquire);
            if stopping && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
            }
            let from = self.reader.position();
            let mut events = Vec::new();
            let mut metrics = Vec::new();
            let mut learned = 0;
            let mut read_any = false;
            let read_at = Instant::now();
            while events.len() < BATCH_EVENTS {
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
                let Some(record) = record else {
                    tracing::warn!("skipped a write-ahead log record that does not decode");
                    continue;
                };
                let mut sink = BatchSink {
                    events: &mut events,
                    metrics: &mut metrics,
                    zones: &mut self.zones,
                    learned: 0,
                    errors: 0,
                };
                crate::record::parse(&record, &self.options.parse, &mut sink);
                learned += sink.learned;
                self.stats
                    .parse_errors
                    .fetch_add(sink.errors, Ordering::Relaxed);
            }
            // Corrected once the whole batch was learned from: a folder of
            // exports arriving at once is corrected as `relive ingest`
            // corrects it (it reads the files twice).
            for event in &mut events {
                self.zones.correct(event);
            }
            if learned > 0 {
                if let Err(e) = store_zones(&self.zones_path, &self.zones) {
                    tracing::warn!(error = %e, "cannot store the learned host zones");
                }
            }
            let to = self.reader.position();
            if read_any {
                self.stats
                    .events_parsed
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                self.stats.read_seq.store(to, Ordering::Release);
                let batch = EventBatch {
                    from,
                    to,
                    events,
                    metrics,
                    read_at,
                    ack: pipeline::Ack::new(self.cursor.clone(), to),
                };
                if self.output.send(batch).is_err() {
                    tracing::error!("the index stage stopped; the parse stage stops too");
                    return;
                }
            }
            let consumed = self.cursor.position();
            self.stats.consumed_seq.store(consumed, Ordering::Release);
            if consumed > released {
                let durable = self.stats.durable_seq.load(Ordering::Acquire);
                if let Err(e) = wal::release_before(&self.wal_dir, consumed, durable) {
                    tracing::warn!("deleting handled write-ahead log segments: {e}");
                }
                released = consumed;
            }
            let caught_up = !read_any
                && self.reader.position() >= self.stats.durable_seq.load(Ordering::Acquire);
            let out_of_time = stopping_since.is_some_and(|t| t.elapsed() >= STOP_DRAIN);
            if stopping && (caught_up || out_of_time) {
                if !caught_up {
                    tracing::info!(
                        from = self.reader.position(),
                        to = self.stats.durable_seq.load(Ordering::Acquire),
                        "stopping with write-ahead log records not yet parsed; the next start handles them"
                    );
                }
                // Dropping the output closes the next stage's input.
                return;
            }
            if !read_any {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
