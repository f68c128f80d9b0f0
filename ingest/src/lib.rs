//! `ingest` will own relive's path from a host's log files to the collector:
//! the agent (tailing files and folders, durable checkpoints, a bounded disk
//! spool, acked batches over TCP), the collector's receivers (relive's agent
//! protocol, syslog, an Elasticsearch-compatible `_bulk` endpoint, OTLP/HTTP,
//! Lumberjack v2, watched folders) and the write-ahead log that makes an
//! accepted batch durable before it is acknowledged. Its principal type will
//! be `Wal`.
//!
//! Nothing is implemented yet; see the agents-and-collector issue.
#![deny(missing_docs)]
