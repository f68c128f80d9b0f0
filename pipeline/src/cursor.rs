//! Durable consumer positions over a log.
//!
//! A [`Cursor`] says "every record before this sequence number has been
//! handled by everything downstream"; it is stored in a small file (write,
//! sync, rename) so a restart resumes there. Records are handed on in
//! batches that carry an [`Ack`]; the last stage to handle a batch calls
//! [`Ack::done`], which moves the cursor. Stages hand batches on in order,
//! so the cursor only moves forward over batches that are finished.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::wal::{self, WalError};

/// A consumer's position in a log, kept in memory and in a file.
#[derive(Debug)]
pub struct Cursor {
    path: Option<PathBuf>,
    position: AtomicU64,
    stored: Mutex<u64>,
}

impl Cursor {
    /// The cursor stored at `path` (0 when there is none yet).
    pub fn open(path: &Path) -> Arc<Cursor> {
        let position = wal::load_u64(path).unwrap_or(0);
        Arc::new(Cursor {
            path: Some(path.to_path_buf()),
            position: AtomicU64::new(position),
            stored: Mutex::new(position),
        })
    }

    /// A cursor kept in memory only (tests, file sources).
    pub fn in_memory(position: u64) -> Arc<Cursor> {
        Arc::new(Cursor {
            path: None,
            position: AtomicU64::new(position),
            stored: Mutex::new(position),
        })
    }

    /// Everything before this has been handled.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Moves the position forward to `upto` (never back) and stores it.
    pub fn advance(&self, upto: u64) -> Result<(), WalError> {
        self.position.fetch_max(upto, Ordering::AcqRel);
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.position();
        if now > *stored {
            wal::store_u64(path, now)?;
            *stored = now;
        }
        Ok(())
    }
}

/// What a batch owes its log: when the batch is finished, everything before
/// `upto` is. Merging two acks keeps the later one (batches finish in order).
#[derive(Debug, Clone, Default)]
#[must_use = "a batch's ack must be done (or handed on) once the batch is finished"]
pub struct Ack {
    cursor: Option<Arc<Cursor>>,
    upto: u64,
}

impl Ack {
    /// An ack that moves `cursor` to `upto`.
    pub fn new(cursor: Arc<Cursor>, upto: u64) -> Ack {
        Ack {
            cursor: Some(cursor),
            upto,
        }
    }

    /// An ack that owes nothing (a file source, a test).
    pub fn none() -> Ack {
        Ack::default()
    }

    /// The position this ack moves its cursor to.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Folds a later ack into this one.
    pub fn merge(&mut self, later: Ack) {
        if later.cursor.is_some() && later.upto >= self.upto {
            *self = later;
        }
    }

    /// The batch is finished: moves and stores the cursor.
    pub fn done(self) -> Result<(), WalError> {
        match self.cursor {
            Some(cursor) => cursor.advance(self.upto),
            None => Ok(()),
        }
    }
}
