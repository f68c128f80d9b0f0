//! Incident changes as a stream: what the correlator decided, kind by kind,
//! in a durable log that every consumer reads at its own pace.
//!
//! The correlator appends [`IncidentChange`]s to the change log under
//! `--data/changes` (the same checksummed segmented log as the collector's
//! write-ahead log, one sync per batch). Each consumer (the incident store,
//! alerts, remediation, the HTTP API's live stream) is a [`Subscription`]
//! with its own durable cursor: a slow one falls behind on its own cursor
//! and never holds back the correlator or another consumer; segments are
//! deleted only once every registered cursor has passed them. Delivery is
//! at-least-once (a crash between handling a change and storing the cursor
//! hands it over again), so consumers upsert by incident id or dedup by
//! [`IncidentChange::dedup_key`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pipeline::wal::{self, Wal, WalOptions, WalReader};
use pipeline::{Cursor, Message};
use serde::{Deserialize, Serialize};

use crate::incident::{Incident, Status};
use crate::StoreError;

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new incident.
    Opened,
    /// More evidence, a named host, a better confidence: same cause.
    EvidenceAdded,
    /// Late evidence changed the root cause.
    CauseChanged,
    /// Another failed attempt folded into it (its count went up).
    Folded,
    /// A successful migration closed it.
    Resolved,
}

impl ChangeKind {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::EvidenceAdded => "evidence_added",
            ChangeKind::CauseChanged => "cause_changed",
            ChangeKind::Folded => "folded",
            ChangeKind::Resolved => "resolved",
        }
    }

    /// What changed between two snapshots of one incident (`None` when
    /// nothing did).
    pub fn between(before: Option<&Incident>, after: &Incident) -> Option<ChangeKind> {
        let Some(before) = before else {
            return Some(ChangeKind::Opened);
        };
        if before == after {
            return None;
        }
        Some(
            if before.status == Status::Open && after.status == Status::Resolved {
                ChangeKind::Resolved
            } else if after.count > before.count {
                ChangeKind::Folded
            } else if after.root_cause != before.root_cause {
                ChangeKind::CauseChanged
            } else {
                ChangeKind::EvidenceAdded
            },
        )
    }
}

/// One change, with the whole incident as it is now (consumers upsert).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentChange {
    /// Wire version of this message.
    pub version: u16,
    /// What happened.
    pub kind: ChangeKind,
    /// When the correlator decided it (wall clock).
    pub decided_at: DateTime<Utc>,
    /// The incident after the change.
    pub incident: Incident,
}

impl Message for IncidentChange {
    const VERSION: u16 = 1;
    fn dedup_key(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.incident.id,
            self.kind.as_str(),
            self.incident.count,
            self.incident.root_cause,
            self.incident.last_seen.timestamp_micros()
        )
    }
}

impl IncidentChange {
    /// A change of `kind` to `incident`, decided now.
    pub fn new(kind: ChangeKind, incident: Incident) -> IncidentChange {
        IncidentChange {
            version: <IncidentChange as Message>::VERSION,
            kind,
            decided_at: Utc::now(),
            incident,
        }
    }
}

/// Where the change log lives under `--data`.
pub fn log_dir(data: &Path) -> PathBuf {
    data.join("changes")
}

fn cursor_path(data: &Path, subscriber: &str) -> PathBuf {
    log_dir(data).join(format!("cursor-{subscriber}"))
}

fn log_error(e: pipeline::WalError) -> StoreError {
    StoreError::Log(e)
}

/// The writing end: only the correlator appends.
pub struct ChangeLog {
    wal: Wal,
    data: PathBuf,
}

impl ChangeLog {
    /// Opens (or creates) the change log under `data`.
    pub fn open(data: &Path) -> Result<ChangeLog, StoreError> {
        let dir = log_dir(data);
        let (wal, recovery) = Wal::open(&dir, WalOptions::default()).map_err(log_error)?;
        if let Some(damage) = recovery.damage {
            tracing::warn!(
                dropped_bytes = recovery.truncated_bytes,
                "incident change log: dropped a torn tail: {damage}"
            );
        }
        Ok(ChangeLog {
            wal,
            data: data.to_path_buf(),
        })
    }

    /// Appends `changes` with one sync; returns the sequence number after them.
    pub fn append(&mut self, changes: &[IncidentChange]) -> Result<u64, StoreError> {
        if changes.is_empty() {
            return Ok(self.wal.next_seq());
        }
        let bodies: Vec<Vec<u8>> = changes
            .iter()
            .map(|c| serde_json::to_vec(c).expect("an incident change serializes"))
            .collect();
        self.wal.append(&bodies).map_err(log_error)?;
        pipeline::fault::point("after-changes-written");
        Ok(self.wal.next_seq())
    }

    /// The latest snapshot of every incident still in the log (what was
    /// written last, which the store may not have caught up with yet).
    pub fn latest(&self) -> Result<Vec<Incident>, StoreError> {
        let dir = log_dir(&self.data);
        let first = wal::segments(&dir)
            .map_err(log_error)?
            .first()
            .map_or(0, |s| s.0);
        let mut reader = WalReader::new(&dir, first);
        let mut latest: std::collections::HashMap<String, Incident> =
            std::collections::HashMap::new();
        while let Some((_, body)) = reader.next_record().map_err(log_error)? {
            if let Ok(change) = serde_json::from_slice::<IncidentChange>(body) {
                latest.insert(change.incident.id.clone(), change.incident);
            }
        }
        Ok(latest.into_values().collect())
    }

    /// Sequence number after the last change.
    pub fn next_seq(&self) -> u64 {
        self.wal.next_seq()
    }

    /// Deletes segments every registered subscriber has read past.
    pub fn release(&self) -> Result<usize, StoreError> {
        let dir = log_dir(&self.data);
        let mut slowest: Option<u64> = None;
        let entries = std::fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("cursor-")
                && !name.to_string_lossy().ends_with(".tmp")
            {
                let at = wal::load_u64(&entry.path()).unwrap_or(0);
                slowest = Some(slowest.map_or(at, |s| s.min(at)));
            }
        }
        match slowest {
            Some(at) => self.wal.release_before(at).map_err(log_error),
            None => Ok(0),
        }
    }
}

/// A consumer of the change log with its own durable cursor
/// (`changes/cursor-<name>`).
pub struct Subscription {
    reader: WalReader,
    cursor: Arc<Cursor>,
}

impl Subscription {
    /// Registers (or resumes) the subscriber `name`: it reads from where it
    /// last acknowledged, or from the start of the log the first time.
    pub fn open(data: &Path, name: &str) -> Result<Subscription, StoreError> {
        let dir = log_dir(data);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = cursor_path(data, name);
        let cursor = Cursor::open(&path);
        if !path.exists() {
            // Registered now, so the log keeps what this subscriber has not read.
            wal::store_u64(&path, cursor.position()).map_err(log_error)?;
        }
        let first = wal::segments(&dir)
            .map_err(log_error)?
            .first()
            .map_or(0, |s| s.0);
        let from = cursor.position().max(first);
        Ok(Subscription {
            reader: WalReader::new(&dir, from),
            cursor,
        })
    }

    /// The next change, if one is in the log now (never waits). A change
    /// that does not decode is skipped with a warning.
    pub fn next_change(&mut self) -> Result<Option<IncidentChange>, StoreError> {
        loop {
            let Some((seq, body)) = self.reader.next_record().map_err(log_error)? else {
                return Ok(None);
            };
            match serde_json::from_slice(body) {
                Ok(change) => return Ok(Some(change)),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "skipped an incident change that does not decode")
                }
            }
        }
    }

    /// Everything read so far is handled: stores the cursor.
    pub fn ack(&self) -> Result<(), StoreError> {
        self.cursor
            .advance(self.reader.position())
            .map_err(log_error)
    }

    /// Position after the last change read.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }
}
