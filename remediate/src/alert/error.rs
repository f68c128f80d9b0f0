//! Errors of the alerting half.

use std::path::PathBuf;

/// `[alerts]` (or a silence) that cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A matcher such as `root_cause=~"shared.*"` that does not parse.
    #[error("matcher `{matcher}`: {reason}")]
    Matcher {
        /// The matcher as written.
        matcher: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration such as `group_wait = "30s"` that does not parse.
    #[error("{field} = \"{value}\": {reason}")]
    Duration {
        /// Which setting.
        field: String,
        /// Its value.
        value: String,
        /// Why it is not a duration.
        reason: String,
    },
    /// A route names a receiver that is not defined.
    #[error(
        "route {route} sends to receiver `{receiver}`, which is not defined (defined: {defined})"
    )]
    UnknownReceiver {
        /// Route path (`root`, `root.0`, …).
        route: String,
        /// The name it uses.
        receiver: String,
        /// The names that exist.
        defined: String,
    },
    /// Anything else wrong in a receiver's settings.
    #[error("receiver `{receiver}`: {reason}")]
    Receiver {
        /// Receiver name.
        receiver: String,
        /// What is wrong.
        reason: String,
    },
    /// A file the configuration names cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a receiver did not accept a notification.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Worth retrying (SMTP 4xx, a refused or cut connection, HTTP 429/5xx,
    /// a timeout).
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Retrying would not help (SMTP 5xx, HTTP 4xx, a message that cannot be built).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl NotifyError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, NotifyError::Transient(_))
    }
}

/// The alert state log or the silences file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The log under `--data/alerts/state`.
    #[error("alert state log: {0}")]
    Log(#[from] pipeline::WalError),
    /// A file under `--data/alerts`.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file under `--data/alerts` that does not decode.
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What does not decode.
        reason: String,
    },
    /// The incident change log.
    #[error("incident change log: {0}")]
    Changes(#[from] correlate::StoreError),
    /// A silence that does not exist or cannot be made.
    #[error("{0}")]
    Silence(String),
}
