//! `ingest` is relive's path from a host's log files to the index.
//!
//! - The collector's durable core ([`collector`]): receivers submit
//!   [`record::Record`]s; one writer appends them to the write-ahead log
//!   ([`wal`], checksummed records, one sync per group) and only then
//!   acknowledges; one parse stage reads the log behind it, parses with
//!   `parsers`, corrects host zones and hands event batches to the next
//!   stage (the binary wires the index there; this crate knows no index),
//!   and deletes segments the last stage has acknowledged.
//! - The receivers ([`server`]): relive's agent protocol ([`protocol`],
//!   optionally in TLS), syslog over TCP (octet counting or LF framing,
//!   per message) and UDP, an Elasticsearch-compatible `_bulk` endpoint
//!   OTLP/HTTP logs (JSON and protobuf, gzip) and Lumberjack v2, Beats'
//!   Logstash protocol ([`lumberjack`]).
//! - The agent ([`agent`]): tails files and folders, keeps durable
//!   checkpoints, spools batches to a bounded local log and ships them with
//!   acks, resending what was not acknowledged after a reconnect.
#![deny(missing_docs)]

pub mod agent;
pub mod collector;
pub mod config;
pub mod lumberjack;
pub mod otlp;
pub mod protocol;
pub mod record;
pub mod server;
pub mod tls;
/// The write-ahead log (kept in `pipeline`, shared with the agent's spool
/// and the incident change log).
pub use pipeline::wal;

use std::net::SocketAddr;

pub use collector::{Collector, CollectorOptions, Stats, Submitter};
pub use config::Receivers;
pub use wal::{Wal, WalError, WalOptions, WalReader};

/// What can go wrong in ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A batch could not be made durable.
    #[error("not stored: {0}")]
    Durability(String),
    /// The collector is stopping.
    #[error("the collector is shutting down")]
    ShuttingDown,
    /// A listener could not be bound.
    #[error("cannot listen for the {what} on {addr}: {source}")]
    Bind {
        /// Which receiver.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A configuration problem.
    #[error("{0}")]
    Config(String),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
