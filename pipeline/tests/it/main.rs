//! pipeline's integration tests: the log on disk, cursors, channels.

mod wal;
