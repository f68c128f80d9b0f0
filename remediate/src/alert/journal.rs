//! The notification journal: one JSON line per decision in
//! `--data/alerts/notifications.jsonl` — queued, sent, retried, failed,
//! silenced, inhibited, rate-limited, silences added and expired — so
//! "why did (not) I get this alert" has an answer. `relive alerts` reads it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Written to the outbox, handed to its receiver.
    Queued,
    /// The receiver accepted it.
    Sent,
    /// A temporary failure; it is tried again.
    Retry,
    /// Given up: a permanent failure, or temporary ones for longer than `retry_for`.
    Failed,
    /// Handed to the receiver again after a restart (it was never accepted).
    Resumed,
    /// Not sent: a silence matches the alert.
    Silenced,
    /// Not sent: another alert explains it (inhibition).
    Inhibited,
    /// Waiting for the receiver's rate limit.
    RateLimited,
    /// A silence was created.
    SilenceAdded,
    /// A silence was ended early.
    SilenceExpired,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub decision: Decision,
    /// Notification id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
    /// `receiver/kind[i]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Group key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Alert fingerprints (incident ids) concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<String>,
    /// The message's subject line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why (the receiver's answer, the silence or the muting alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempt number (1 = first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

impl JournalEntry {
    /// An entry of `decision`, now, with nothing else set.
    pub fn new(decision: Decision) -> JournalEntry {
        JournalEntry {
            at: Utc::now(),
            decision,
            notification: None,
            target: None,
            group: None,
            alerts: Vec::new(),
            subject: None,
            reason: None,
            attempt: None,
        }
    }
}

/// Where the journal lives under `--data`.
pub fn path(data: &Path) -> PathBuf {
    data.join("alerts").join("notifications.jsonl")
}

/// The appending end (shared by the dispatcher and the receivers' workers;
/// the CLI appends silence changes to the same file).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Opens (creates) the journal under `data`.
    pub fn open(data: &Path) -> Result<Journal, StateError> {
        let path = path(data);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok(Journal {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends one line (one `write` call, so lines from several processes
    /// do not interleave). A journal that cannot be written is logged, not
    /// fatal: the outbox is what delivery depends on.
    pub fn write(&self, entry: &JournalEntry) {
        let mut line = serde_json::to_vec(entry).expect("a journal entry serializes");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the notification journal");
        }
    }
}

/// Every line of the journal, oldest first (lines that do not decode are skipped).
pub fn read(data: &Path) -> Result<Vec<JournalEntry>, StateError> {
    let path = path(data);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        if let Ok(entry) = serde_json::from_str(&line) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// A notification's latest state, for `relive alerts`.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationStatus {
    /// Notification id.
    pub notification: String,
    /// Target.
    pub target: String,
    /// Subject.
    pub subject: String,
    /// Alerts in it.
    pub alerts: Vec<String>,
    /// queued, sent, retry, failed or resumed (the last word on it).
    pub status: Decision,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// When the last word was said.
    pub updated_at: DateTime<Utc>,
    /// Attempts made.
    pub attempts: u32,
    /// The receiver's last answer when it was not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Folds the journal into one status per notification, newest first.
pub fn statuses(entries: &[JournalEntry]) -> Vec<NotificationStatus> {
    let mut by_id: std::collections::HashMap<String, NotificationStatus> =
        std::collections::HashMap::new();
    for entry in entries {
        let Some(id) = &entry.notification else {
            continue;
        };
        let status = by_id
            .entry(id.clone())
            .or_insert_with(|| NotificationStatus {
                notification: id.clone(),
                target: entry.target.clone().unwrap_or_default(),
                subject: entry.subject.clone().unwrap_or_default(),
                alerts: entry.alerts.clone(),
                status: entry.decision,
                queued_at: entry.at,
                updated_at: entry.at,
                attempts: 0,
                reason: None,
            });
        match entry.decision {
            Decision::Sent | Decision::Failed | Decision::Retry => {
                status.attempts = status.attempts.max(entry.attempt.unwrap_or(1));
                status.reason = entry
                    .reason
                    .clone()
                    .filter(|_| entry.decision != Decision::Sent);
            }
            _ => {}
        }
        if matches!(
            entry.decision,
            Decision::Queued
                | Decision::Sent
                | Decision::Retry
                | Decision::Failed
                | Decision::Resumed
        ) {
            status.status = entry.decision;
        }
        if status.subject.is_empty() {
            status.subject = entry.subject.clone().unwrap_or_default();
        }
        status.updated_at = entry.at;
    }
    let mut out: Vec<NotificationStatus> = by_id.into_values().collect();
    out.sort_by(|a, b| {
        b.queued_at
            .cmp(&a.queued_at)
            .then(a.notification.cmp(&b.notification))
    });
    out
}
