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
