//! `migrate-core` will own relive's embedded live-migration engine: the host
//! daemon, the wire protocol, pre-copy memory iterations with a convergence
//! policy passed in as a value, transports (TCP, compressed, multi-stream) and
//! a QEMU driver. Its principal type will be `Migration`, and it reports a
//! `MigrationReport` that the binary turns into a metric. It knows nothing of
//! events or rules.
//!
//! Nothing is implemented yet; see the migration-core issue.
#![deny(missing_docs)]
