//! The messages between the collector, the index and the correlator.

use std::time::Instant;

use parsers::{Event, Metric};

use crate::cursor::Ack;
use crate::stage::Message;

/// Parsed events of a run of write-ahead log records (collector → index).
#[derive(Debug)]
pub struct EventBatch {
    /// Sequence number of the first record in the batch.
    pub from: u64,
    /// Sequence number after the last record.
    pub to: u64,
    /// The events, zone-corrected, in record order.
    pub events: Vec<Event>,
    /// Migration metric samples.
    pub metrics: Vec<Metric>,
    /// When the oldest record of the batch was read from the log.
    pub read_at: Instant,
    /// Finished once the last stage has handled these events.
    pub ack: Ack,
}

impl Message for EventBatch {
    const VERSION: u16 = 1;
    fn dedup_key(&self) -> String {
        format!("wal:{}-{}", self.from, self.to)
    }
}

/// A batch that cannot be read back from its wire form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first line is not the header.
    #[error("not an event batch: {0}")]
    Header(String),
    /// Written by a version this one does not read.
    #[error("event batch version {0}; this build reads version {1}")]
    Version(u64, u16),
    /// Fewer or more events or metrics than the header says, or a bad line.
    #[error("event batch body: {0}")]
    Body(String),
}

impl EventBatch {
    /// The batch as it crosses a process boundary (a NATS JetStream message
    /// later): a JSON header line (type, version, dedup key, log positions,
    /// counts), one ECS JSON line per event (the form agents ship, which
    /// reads back as the same event to dedup: same keys, same richness),
    /// then one metric line each. The ack stays behind: the receiving side
    /// acknowledges its delivery instead.
    pub fn to_wire(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "type": "relive.event_batch",
            "version": Self::VERSION,
            "dedup_key": self.dedup_key(),
            "from": self.from,
            "to": self.to,
            "events": self.events.len(),
            "metrics": self.metrics.len(),
        });
        wire(&header, &self.events, &self.metrics)
    }

    /// Reads [`EventBatch::to_wire`] back; `ack` is what delivering it
    /// acknowledges on this side.
    pub fn from_wire(bytes: &[u8], ack: Ack) -> Result<EventBatch, WireError> {
        let (header, body) = header(bytes, "relive.event_batch", Self::VERSION)?;
        let (from, to) = (number(&header, "from")?, number(&header, "to")?);
        let (events, metrics) = read_body(&header, body)?;
        Ok(EventBatch {
            from,
            to,
            events,
            metrics,
            read_at: Instant::now(),
            ack,
        })
    }
}

/// A header line, then one ECS JSON line per event and one line per metric.
fn wire(header: &serde_json::Value, events: &[Event], metrics: &[Metric]) -> Vec<u8> {
    let mut out = header.to_string().into_bytes();
    out.push(b'\n');
    for event in events {
        event.write_json(&mut out);
        out.push(b'\n');
    }
    for metric in metrics {
        out.extend_from_slice(metric.to_json().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The header of a wire form of `kind`, checked, and the body after it.
fn header<'a>(
    bytes: &'a [u8],
    kind: &str,
    version: u16,
) -> Result<(serde_json::Value, &'a [u8]), WireError> {
    let Some(i) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(WireError::Header("no header line".into()));
    };
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[..i]).map_err(|e| WireError::Header(e.to_string()))?;
    if header["type"] != kind {
        return Err(WireError::Header(format!("type {}", header["type"])));
    }
    let found = header["version"].as_u64().unwrap_or(0);
    if found != u64::from(version) {
        return Err(WireError::Version(found, version));
    }
    Ok((header, &bytes[i + 1..]))
}

fn number(header: &serde_json::Value, key: &str) -> Result<u64, WireError> {
    header[key]
        .as_u64()
        .ok_or_else(|| WireError::Header(format!("no {key}")))
}

/// Exactly the events and metrics the header announces.
fn read_body(
    header: &serde_json::Value,
    body: &[u8],
) -> Result<(Vec<Event>, Vec<Metric>), WireError> {
    let n_events = number(header, "events")? as usize;
    let n_metrics = number(header, "metrics")? as usize;
    let mut lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let mut events = Vec::with_capacity(n_events);
    let mut metrics = Vec::with_capacity(n_metrics);
    let options = |format| parsers::ParseOptions {
        format: Some(format),
        ..parsers::ParseOptions::default()
    };
    let (ecs, metric_lines) = (
        options(parsers::Format::EcsJson),
        options(parsers::Format::MetricsJson),
    );
    for (n, is_event) in [(n_events, true), (n_metrics, false)] {
        for _ in 0..n {
            let Some(line) = lines.next() else {
                return Err(WireError::Body(format!(
                    "{n_events} events and {n_metrics} metrics announced, the body ends early"
                )));
            };
            let opts = if is_event { &ecs } else { &metric_lines };
            let mut out = parsers::parse_bytes(line, opts);
            if let Some(e) = out.errors.pop() {
                return Err(WireError::Body(e.to_string()));
            }
            match (is_event, out.events.pop(), out.metrics.pop()) {
                (true, Some(e), None) => events.push(e),
                // A failed sample's `relive-metrics` event was made when the
                // sample was first read and travels among the events.
                (false, e, Some(m))
                    if e.as_ref()
                        .is_none_or(|e| e.provider == parsers::metric::METRICS_PROVIDER) =>
                {
                    metrics.push(m)
                }
                _ => {
                    return Err(WireError::Body(
                        "a line is not the event or metric announced".into(),
                    ))
                }
            }
        }
    }
    if lines.next().is_some() {
        return Err(WireError::Body("more lines than announced".into()));
    }
    Ok((events, metrics))
}

/// Events made durable and searchable by one index commit (index → correlator).
#[derive(Debug)]
pub struct Committed {
    /// The commit's number since the index stage started.
    pub commit: u64,
    /// Log position after the last record whose events are in this commit.
    pub upto: u64,
    /// The events added since the previous commit (duplicates of indexed
    /// events included: the correlator drops them by its own keys).
    pub events: Vec<Event>,
    /// When the oldest of these events was read from the log.
    pub read_at: Instant,
    /// When the commit finished.
    pub committed_at: Instant,
    /// Finished once the correlator has written the changes these events make.
    pub ack: Ack,
}

impl Message for Committed {
    const VERSION: u16 = 1;
    fn dedup_key(&self) -> String {
        format!("commit:upto:{}", self.upto)
    }
}

impl Committed {
    /// The commit as it crosses a process boundary (index → correlator),
    /// in the form of [`EventBatch::to_wire`]: a header (type
    /// `relive.committed`, version, dedup key, commit number, log position),
    /// then the events.
    pub fn to_wire(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "type": "relive.committed",
            "version": Self::VERSION,
            "dedup_key": self.dedup_key(),
            "commit": self.commit,
            "upto": self.upto,
            "events": self.events.len(),
            "metrics": 0,
        });
        wire(&header, &self.events, &[])
    }

    /// Reads [`Committed::to_wire`] back; `ack` is what delivering it
    /// acknowledges on this side.
    pub fn from_wire(bytes: &[u8], ack: Ack) -> Result<Committed, WireError> {
        let (header, body) = header(bytes, "relive.committed", Self::VERSION)?;
        let (events, _) = read_body(&header, body)?;
        let now = Instant::now();
        Ok(Committed {
            commit: number(&header, "commit")?,
            upto: number(&header, "upto")?,
            events,
            read_at: now,
            committed_at: now,
            ack,
        })
    }
}
