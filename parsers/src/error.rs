//! Errors: every one carries where it happened (file, byte offset, line).

use std::fmt;
use std::sync::Arc;

/// Why a record (or the rest of a file) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The file could not be opened or read.
    #[error("i/o error: {0}")]
    Io(String),
    /// No parser recognises the content.
    #[error("unrecognised format (not EVTX, event XML, Event Viewer text, PowerShell CSV/JSON, ECS/NXLog/OTLP JSON, syslog, Snare, cluster.log or metrics)")]
    UnknownFormat,
    /// A line or record is longer than the configured limit; it was skipped.
    #[error("record longer than {limit} bytes skipped")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The record does not have the shape its format requires.
    #[error("{0}")]
    Malformed(String),
    /// The EVTX reader reported a damaged chunk or record.
    #[error("evtx: {0}")]
    Evtx(String),
    /// Broken XML.
    #[error("xml: {0}")]
    Xml(String),
    /// Broken JSON.
    #[error("json: {0}")]
    Json(String),
    /// Broken CSV.
    #[error("csv: {0}")]
    Csv(String),
}

/// One record that could not be parsed, or the point where a file stopped
/// being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The file (or stream name).
    pub path: Option<Arc<str>>,
    /// Byte offset of the bad record in the original bytes.
    pub offset: u64,
    /// 1-based line number, for text formats.
    pub line: Option<u64>,
    /// What is wrong.
    pub reason: Reason,
    /// False when nothing after this point of the file could be read.
    pub can_continue: bool,
}

impl RecordError {
    /// A recoverable error at `offset`.
    pub fn new(path: Option<Arc<str>>, offset: u64, line: Option<u64>, reason: Reason) -> Self {
        RecordError {
            path,
            offset,
            line,
            reason,
            can_continue: true,
        }
    }

    /// Marks the error as the end of what could be read from the file.
    pub fn fatal(mut self) -> Self {
        self.can_continue = false;
        self
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path.as_deref().unwrap_or("<input>"))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, " (byte {}): {}", self.offset, self.reason)?;
        if !self.can_continue {
            f.write_str("; the rest of the file was not read")?;
        }
        Ok(())
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}
