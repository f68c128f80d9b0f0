//! `pipeline` is the plumbing relive's stages share, so that a stage reads
//! from a [`Source`] and writes to a [`Sink`] and never to a concrete
//! neighbour.
//!
//! ```text
//! receivers ─► Wal ─► parse ─► index (commit) ─► committed events ─► correlator ─► change log ─► subscribers
//! ```
//!
//! - [`batch`]: the messages between collector, index and correlator
//!   ([`EventBatch`], [`Committed`]).
//! - [`wal`]: a segmented log of checksummed records (the collector's
//!   write-ahead log, the agent's spool, the incident change log).
//! - [`cursor`]: a durable consumer position in a log ([`Cursor`]) and the
//!   [`Ack`] a batch carries to the stage that finishes it; records before
//!   the slowest cursor may be deleted, records after it are read again
//!   after a restart (at-least-once; consumers make replays harmless).
//! - [`stage`]: the [`Source`]/[`Sink`] traits and the bounded in-process
//!   channel behind them, with its queue depth counted. Past one machine the
//!   same traits sit on a NATS JetStream consumer and publisher; what
//!   crosses them is a versioned message with a dedup key ([`Message`]).
//! - [`shutdown`]: one [`Shutdown`] signal handed to every stage that has no
//!   input to close (receivers, clocks); the others stop when their input
//!   closes, so a pipeline drains front to back.
//! - [`metrics`]: per-stage counters ([`StageMetrics`]) in one [`Registry`],
//!   rendered in the Prometheus text format.
//! - [`lookup`]: reading committed events back ([`EventLookup`]), what the
//!   correlator warms up from; the index implements it.
//! - [`fault`]: named crash points for restart tests (`RELIVE_FAULT`).
#![deny(missing_docs)]

pub mod batch;
pub mod cursor;
pub mod fault;
pub mod lookup;
pub mod metrics;
pub mod shutdown;
pub mod stage;
pub mod wal;

pub use batch::{Committed, EventBatch, WireError};
pub use cursor::{Ack, Cursor};
pub use lookup::{EventLookup, LookupError};
pub use metrics::{Registry, StageMetrics};
pub use shutdown::Shutdown;
pub use stage::{bounded, Message, Receiver, Recv, Sender, Sink, Source};
pub use wal::{Wal, WalError, WalOptions, WalReader};
