//! pipeline's integration tests: the log on disk, cursors, channels.

mod batch;
mod wal;
