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
        let mut out = format!(
            "{{\"type\":\"relive.event_batch\",\"version\":{},\"dedup_key\":\"{}\",\"from\":{},\"to\":{},\"events\":{},\"metrics\":{}}}\n",
            Self::VERSION,
            self.dedup_key(),
            self.from,
            self.to,
            self.events.len(),
            self.metrics.len()
        )
        .into_bytes();
        for event in &self.events {
            event.write_json(&mut out);
            out.push(b'\n');
        }
        for metric in &self.metrics {
            out.extend_from_slice(metric.to_json().as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Reads [`EventBatch::to_wire`] back; `ack` is what delivering it
    /// acknowledges on this side.
    pub fn from_wire(bytes: &[u8], ack: Ack) -> Result<EventBatch, WireError> {
        let (head, body) = match memchr_newline(bytes) {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => return Err(WireError::Header("no header line".into())),
        };
        let header: serde_json::Value =
            serde_json::from_slice(head).map_err(|e| WireError::Header(e.to_string()))?;
        if header["type"] != "relive.event_batch" {
            return Err(WireError::Header(format!("type {}", header["type"])));
        }
        let version = header["version"].as_u64().unwrap_or(0);
        if version != u64::from(Self::VERSION) {
            return Err(WireError::Version(version, Self::VERSION));
        }
        let number = |key: &str| {
            header[key]
                .as_u64()
                .ok_or_else(|| WireError::Header(format!("no {key}")))
        };
        let (from, to) = (number("from")?, number("to")?);
        let (n_events, n_metrics) = (number("events")? as usize, number("metrics")? as usize);
        let mut lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let mut events = Vec::with_capacity(n_events);
        let mut metrics = Vec::with_capacity(n_metrics);
        let ecs = parsers::ParseOptions {
            format: Some(parsers::Format::EcsJson),
            ..parsers::ParseOptions::default()
        };
        let metric_lines = parsers::ParseOptions {
            format: Some(parsers::Format::MetricsJson),
            ..parsers::ParseOptions::default()
        };
        for (n, expected) in [(n_events, true), (n_metrics, false)] {
            for _ in 0..n {
                let Some(line) = lines.next() else {
                    return Err(WireError::Body(format!(
                        "{} events and {} metrics announced, the body ends early",
                        n_events, n_metrics
                    )));
                };
                let opts = if expected { &ecs } else { &metric_lines };
                let mut out = parsers::parse_bytes(line, opts);
                if let Some(e) = out.errors.pop() {
                    return Err(WireError::Body(e.to_string()));
                }
                match (expected, out.events.pop(), out.metrics.pop()) {
                    (true, Some(e), None) => events.push(e),
                    (false, None, Some(m)) => metrics.push(m),
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

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
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
