//! What alerting must remember across a restart, in one checksummed log
//! under `--data/alerts/state` (`pipeline::Wal`, one sync per append):
//!
//! - the alerts (the latest of each, written before the incident change is
//!   acknowledged, so no change is lost between the change log and here);
//! - the outbox: a [`Notification`] is written here *before* it is handed
//!   to its receiver and marked sent or failed after the receiver answers;
//!   what is still pending after a restart is handed over again, with the
//!   same id (and so the same `Message-ID`);
//! - the notification log (Alertmanager's nflog): per target and group,
//!   which alerts in which version were last told. A group whose state
//!   equals the log's is not told again (until `repeat_interval`), which is
//!   why a restart sends nothing twice.
//!
//! The log is compacted by writing a snapshot of what is live and deleting
//! the segments before it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pipeline::wal::{self, Wal, WalOptions, WalReader};
use serde::{Deserialize, Serialize};

use super::{Alert, AlertState, Labels, StateError};

/// One message to one target about one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique id (16 hex digits).
    pub id: String,
    /// `receiver/kind[i]`.
    pub target: String,
    /// Receiver name.
    pub receiver: String,
    /// Group key.
    pub group_key: String,
    /// The group-by labels and their values.
    pub group_labels: Labels,
    /// When it was decided.
    pub created_at: DateTime<Utc>,
    /// The id of the first notification of this group's thread.
    pub thread: String,
    /// 0 for the first in the thread.
    pub sequence: u32,
    /// Alerts firing (not silenced, not inhibited).
    pub firing: Vec<Alert>,
    /// Alerts resolved since the last notice.
    pub resolved: Vec<Alert>,
    /// Alerts the firing ones inhibit (explain), not told on their own.
    pub covers: Vec<Covered>,
    /// Base of links.
    pub external_url: String,
}

impl Notification {
    /// A notification of one alert alone, first in its thread (what a group
    /// of one would send; for previews and baselines).
    pub fn preview(alert: Alert, external_url: &str) -> Notification {
        let id = alert.fingerprint.clone();
        Notification {
            target: "preview".into(),
            receiver: "preview".into(),
            group_key: format!("preview:{{}}/{id}"),
            group_labels: alert.labels.clone(),
            created_at: alert.updated_at,
            thread: id.clone(),
            sequence: 0,
            id,
            resolved: if alert.state == AlertState::Resolved {
                vec![alert.clone()]
            } else {
                Vec::new()
            },
            firing: if alert.state == AlertState::Firing {
                vec![alert]
            } else {
                Vec::new()
            },
            covers: Vec::new(),
            external_url: external_url.trim_end_matches('/').to_string(),
        }
    }

    /// `firing` when anything fires, else `resolved`.
    pub fn status(&self) -> AlertState {
        if self.firing.is_empty() {
            AlertState::Resolved
        } else {
            AlertState::Firing
        }
    }

    /// Fingerprints of every alert in it.
    pub fn fingerprints(&self) -> Vec<String> {
        self.firing
            .iter()
            .chain(&self.resolved)
            .map(|a| a.fingerprint.clone())
            .collect()
    }
}

/// An alert muted by one in the notification (inhibition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Covered {
    /// Its incident id.
    pub fingerprint: String,
    /// Its VM.
    pub vm: String,
    /// Its own root cause.
    pub root_cause: String,
    /// The alert that explains it.
    pub by: String,
}

/// What a target was last told about a group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NflogEntry {
    /// Firing alerts told, with their version.
    pub firing: BTreeMap<String, String>,
    /// Alerts told resolved.
    pub resolved: BTreeSet<String>,
    /// When.
    pub sent_at: DateTime<Utc>,
    /// The thread it belongs to.
    pub thread: String,
    /// Its sequence in the thread.
    pub sequence: u32,
}

impl NflogEntry {
    /// What the log says once `notification` is decided.
    pub fn after(notification: &Notification) -> NflogEntry {
        NflogEntry {
            firing: notification
                .firing
                .iter()
                .map(|a| (a.fingerprint.clone(), a.version()))
                .collect(),
            resolved: notification
                .resolved
                .iter()
                .map(|a| a.fingerprint.clone())
                .collect(),
            sent_at: notification.created_at,
            thread: notification.thread.clone(),
            sequence: notification.sequence,
        }
    }
}

/// The notification log's key: target + group.
pub fn nflog_key(target: &str, group_key: &str) -> String {
    format!("{target}|{group_key}")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Alert {
        alert: Box<Alert>,
    },
    Forget {
        fingerprint: String,
    },
    Pending {
        notification: Box<Notification>,
    },
    Sent {
        id: String,
        at: DateTime<Utc>,
    },
    Failed {
        id: String,
        at: DateTime<Utc>,
        reason: String,
    },
    Nflog {
        key: String,
        entry: NflogEntry,
    },
    Snapshot {
        at: DateTime<Utc>,
    },
}

/// What the log held at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Latest alert by fingerprint.
    pub alerts: HashMap<String, Alert>,
    /// The notification log.
    pub nflog: HashMap<String, NflogEntry>,
    /// Notifications written but never answered, oldest first.
    pub pending: Vec<Notification>,
    /// Records that did not decode (skipped).
    pub skipped: u64,
}

/// The writing end.
#[derive(Debug)]
pub struct StateLog {
    wal: Wal,
    pending: BTreeMap<String, Notification>,
    since_snapshot: u64,
}

/// Records appended since the last snapshot before the log is compacted.
const COMPACT_AFTER: u64 = 20_000;

/// Where the log lives.
pub fn dir(data: &Path) -> PathBuf {
    data.join("alerts").join("state")
}

fn encode(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("an alert state record serializes")
}

impl StateLog {
    /// Opens the log and replays it.
    pub fn open(data: &Path) -> Result<(StateLog, Recovered), StateError> {
        let dir = dir(data);
        let recovered = replay(&dir)?;
        let (wal, recovery) = Wal::open(
            &dir,
            WalOptions {
                segment_bytes: 16 * 1024 * 1024,
                sync: true,
            },
        )?;
        if let Some(damage) = recovery.damage {
            tracing::warn!(
                dropped_bytes = recovery.truncated_bytes,
                "alert state log: dropped a torn tail: {damage}"
            );
        }
        let pending = recovered
            .pending
            .iter()
            .map(|n| (n.id.clone(), n.clone()))
            .collect();
        Ok((
            StateLog {
                wal,
                pending,
                since_snapshot: recovery.records,
            },
            recovered,
        ))
    }

    fn append(&mut self, records: &[Record]) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let bodies: Vec<Vec<u8>> = records.iter().map(encode).collect();
        self.wal.append(&bodies)?;
        self.since_snapshot += records.len() as u64;
        Ok(())
    }

    /// Alerts as they now are (one sync).
    pub fn record_alerts(&mut self, alerts: &[Alert]) -> Result<(), StateError> {
        let records: Vec<Record> = alerts
            .iter()
            .map(|a| Record::Alert {
                alert: Box::new(a.clone()),
            })
            .collect();
        self.append(&records)
    }

    /// Alerts no longer kept (resolved and told).
    pub fn forget(&mut self, fingerprints: &[String]) -> Result<(), StateError> {
        let records: Vec<Record> = fingerprints
            .iter()
            .map(|f| Record::Forget {
                fingerprint: f.clone(),
            })
            .collect();
        self.append(&records)
    }

    /// Notifications decided (one sync). `sent` ones (the journal-only
    /// target) are marked sent in the same append.
    pub fn record_pending(
        &mut self,
        notifications: &[Notification],
        sent: &[String],
    ) -> Result<(), StateError> {
        let now = Utc::now();
        let mut records: Vec<Record> = notifications
            .iter()
            .map(|n| Record::Pending {
                notification: Box::new(n.clone()),
            })
            .collect();
        records.extend(sent.iter().map(|id| Record::Sent {
            id: id.clone(),
            at: now,
        }));
        self.append(&records)?;
        for n in notifications {
            if !sent.contains(&n.id) {
                self.pending.insert(n.id.clone(), n.clone());
            }
        }
        pipeline::fault::point("after-alert-pending");
        Ok(())
    }

    /// The receiver accepted it.
    pub fn record_sent(&mut self, id: &str) -> Result<(), StateError> {
        self.append(&[Record::Sent {
            id: id.to_string(),
            at: Utc::now(),
        }])?;
        self.pending.remove(id);
        Ok(())
    }

    /// Given up on it.
    pub fn record_failed(&mut self, id: &str, reason: &str) -> Result<(), StateError> {
        self.append(&[Record::Failed {
            id: id.to_string(),
            at: Utc::now(),
            reason: reason.to_string(),
        }])?;
        self.pending.remove(id);
        Ok(())
    }

    /// Notifications not answered yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the log has grown enough to compact.
    pub fn wants_compaction(&self) -> bool {
        self.since_snapshot >= COMPACT_AFTER
    }

    /// Writes what is live (alerts, notification log, pending) and deletes
    /// the segments before it.
    pub fn compact<'a>(
        &mut self,
        alerts: impl Iterator<Item = &'a Alert>,
        nflog: &HashMap<String, NflogEntry>,
    ) -> Result<usize, StateError> {
        let start = self.wal.next_seq();
        let mut records = vec![Record::Snapshot { at: Utc::now() }];
        records.extend(alerts.map(|a| Record::Alert {
            alert: Box::new(a.clone()),
        }));
        records.extend(nflog.iter().map(|(key, entry)| Record::Nflog {
            key: key.clone(),
            entry: entry.clone(),
        }));
        records.extend(self.pending.values().map(|n| Record::Pending {
            notification: Box::new(n.clone()),
        }));
        let n = records.len() as u64;
        self.append(&records)?;
        self.since_snapshot = n;
        // Replay keeps, per key, the notification-log entry decided last,
        // so the order of records inside the snapshot does not matter.
        let released = self.wal.release_before(start)?;
        Ok(released)
    }
}

fn replay(dir: &Path) -> Result<Recovered, StateError> {
    let mut recovered = Recovered::default();
    if !dir.exists() {
        return Ok(recovered);
    }
    let first = wal::segments(dir)?.first().map_or(0, |s| s.0);
    let mut reader = WalReader::new(dir, first);
    let mut pending: BTreeMap<String, (u64, Notification)> = BTreeMap::new();
    let mut order = 0u64;
    loop {
        let body = match reader.next_record() {
            Ok(Some((_, body))) => body,
            Ok(None) => break,
            // A torn tail: what was read is what was durable.
            Err(e) => {
                tracing::warn!(error = %e, "alert state log: stopped reading at damage");
                break;
            }
        };
        let record: Record = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(_) => {
                recovered.skipped += 1;
                continue;
            }
        };
        match record {
            Record::Alert { alert } => {
                recovered.alerts.insert(alert.fingerprint.clone(), *alert);
            }
            Record::Forget { fingerprint } => {
                recovered.alerts.remove(&fingerprint);
            }
            Record::Pending { notification } => {
                let key = nflog_key(&notification.target, &notification.group_key);
                let entry = NflogEntry::after(&notification);
                let newer = recovered
                    .nflog
                    .get(&key)
                    .is_none_or(|e| e.sent_at <= entry.sent_at);
                if newer {
                    recovered.nflog.insert(key, entry);
                }
                order += 1;
                pending.insert(notification.id.clone(), (order, *notification));
            }
            Record::Sent { id, .. } | Record::Failed { id, .. } => {
                pending.remove(&id);
            }
            Record::Nflog { key, entry } => {
                let newer = recovered
                    .nflog
                    .get(&key)
                    .is_none_or(|e| e.sent_at <= entry.sent_at);
                if newer {
                    recovered.nflog.insert(key, entry);
                }
            }
            Record::Snapshot { .. } => {}
        }
    }
    let mut pending: Vec<(u64, Notification)> = pending.into_values().collect();
    pending.sort_by_key(|(order, _)| *order);
    recovered.pending = pending.into_iter().map(|(_, n)| n).collect();
    Ok(recovered)
}
