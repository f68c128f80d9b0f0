//! Silences as Alertmanager has them: matchers, a start and an end, who made
//! it and why. Kept in `--data/alerts/silences.json` (replaced atomically,
//! changed under a lock file so the CLI, the HTTP API and a running
//! `relive serve` can all edit it); the dispatcher re-reads it when it
//! changes. Adding and expiring a silence is written to the journal.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::journal::{Decision, Journal, JournalEntry};
use super::matcher::{all_match, Matcher};
use super::{Labels, StateError};

/// One silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Random id (16 hex digits).
    pub id: String,
    /// Every one must match.
    pub matchers: Vec<Matcher>,
    /// From.
    pub starts_at: DateTime<Utc>,
    /// Until.
    pub ends_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl Silence {
    /// Whether it mutes now.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether it mutes these labels now.
    pub fn mutes(&self, labels: &Labels, now: DateTime<Utc>) -> bool {
        self.is_active(now) && all_match(&self.matchers, labels)
    }

    /// active, pending (starts later) or expired.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }
}

/// The silences file.
#[derive(Debug, Clone)]
pub struct SilenceStore {
    path: PathBuf,
    lock: PathBuf,
    data: PathBuf,
}

/// What a new silence says.
#[derive(Debug, Clone)]
pub struct NewSilence {
    /// Matchers (at least one must not match an empty label).
    pub matchers: Vec<Matcher>,
    /// From (now when None).
    pub starts_at: Option<DateTime<Utc>>,
    /// Until.
    pub ends_at: DateTime<Utc>,
    /// Author.
    pub created_by: String,
    /// Comment.
    pub comment: String,
}

impl SilenceStore {
    /// The store under `data/alerts`.
    pub fn new(data: &Path) -> SilenceStore {
        let dir = data.join("alerts");
        SilenceStore {
            path: dir.join("silences.json"),
            lock: dir.join("silences.lock"),
            data: data.to_path_buf(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> StateError {
        let path = path.to_path_buf();
        move |source| StateError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Every silence (expired ones included), oldest first.
    pub fn load(&self) -> Result<Vec<Silence>, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io(&self.path)(e)),
        }
    }

    /// When the file last changed (None when there is none).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }

    fn locked<T>(
        &self,
        change: impl FnOnce(&mut Vec<Silence>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(self.io(dir))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(self.io(&self.lock))?;
        lock.lock().map_err(self.io(&self.lock))?;
        let mut all = self.load()?;
        let out = change(&mut all)?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&all).expect("silences serialize");
        {
            let mut file = File::create(&tmp).map_err(self.io(&tmp))?;
            file.write_all(&bytes).map_err(self.io(&tmp))?;
            file.sync_all().map_err(self.io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(self.io(&self.path))?;
        drop(lock);
        Ok(out)
    }

    /// Adds a silence; returns it with its id.
    pub fn add(&self, new: NewSilence) -> Result<Silence, StateError> {
        if new.matchers.is_empty() {
            return Err(StateError::Silence(
                "a silence needs at least one matcher, e.g. vm=ADFS1 or root_cause=~\"shared.*\""
                    .into(),
            ));
        }
        let empty = Labels::new();
        if new.matchers.iter().all(|m| m.matches(&empty)) {
            return Err(StateError::Silence(
                "every matcher also matches an alert without that label: this silence would mute everything".into(),
            ));
        }
        let now = Utc::now();
        let starts_at = new.starts_at.unwrap_or(now);
        if new.ends_at <= starts_at {
            return Err(StateError::Silence(
                "a silence must end after it starts".into(),
            ));
        }
        let silence = Silence {
            id: random_id(),
            matchers: new.matchers,
            starts_at,
            ends_at: new.ends_at,
            created_by: super::display::one_line(&new.created_by, 100),
            comment: super::display::one_line(&new.comment, 500),
            created_at: now,
        };
        let added = silence.clone();
        self.locked(move |all| {
            all.push(added);
            Ok(())
        })?;
        let journal = Journal::open(&self.data)?;
        let mut entry = JournalEntry::new(Decision::SilenceAdded);
        entry.reason = Some(format!(
            "silence {} by {}: {} until {} ({})",
            silence.id,
            silence.created_by,
            silence
                .matchers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            silence.ends_at.to_rfc3339(),
            silence.comment
        ));
        journal.write(&entry);
        Ok(silence)
    }

    /// Ends a silence now (by id or a unique prefix of it).
    pub fn expire(&self, id: &str, by: &str) -> Result<Silence, StateError> {
        let id = id.trim();
        let expired = self.locked(|all| {
            let now = Utc::now();
            let found: Vec<usize> = all
                .iter()
                .enumerate()
                .filter(|(_, s)| s.id == id || (!id.is_empty() && s.id.starts_with(id)))
                .map(|(i, _)| i)
                .collect();
            let i = match found.as_slice() {
                [i] => *i,
                [] => return Err(StateError::Silence(format!("no silence `{id}`"))),
                _ => {
                    return Err(StateError::Silence(format!(
                        "`{id}` names several silences; give more of the id"
                    )))
                }
            };
            let silence = &mut all[i];
            if silence.ends_at <= now {
                return Err(StateError::Silence(format!(
                    "silence {} has already expired",
                    silence.id
                )));
            }
            silence.ends_at = now;
            if silence.starts_at > now {
                silence.starts_at = now;
            }
            Ok(silence.clone())
        })?;
        let journal = Journal::open(&self.data)?;
        let mut entry = JournalEntry::new(Decision::SilenceExpired);
        entry.reason = Some(format!(
            "silence {} expired by {}",
            expired.id,
            super::display::one_line(by, 100)
        ));
        journal.write(&entry);
        Ok(expired)
    }
}

/// 16 hex digits from the OS's random source.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_are_added_listed_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = SilenceStore::new(dir.path());
        let until = Utc::now() + chrono::Duration::hours(2);
        let added = store
            .add(NewSilence {
                matchers: vec!["vm=ADFS1".parse().unwrap()],
                starts_at: None,
                ends_at: until,
                created_by: "alice".into(),
                comment: "maintenance\r\nBcc: x".into(),
            })
            .unwrap();
        assert_eq!(added.comment, "maintenance Bcc: x");
        let mut labels = Labels::new();
        labels.insert("vm".into(), "ADFS1".into());
        let all = store.load().unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].mutes(&labels, Utc::now()));
        let everything = store.add(NewSilence {
            matchers: vec!["vm=~\".*\"".parse().unwrap()],
            starts_at: None,
            ends_at: until,
            created_by: "bob".into(),
            comment: String::new(),
        });
        assert!(
            everything.is_err(),
            "a silence that mutes everything is refused"
        );
        let expired = store.expire(&added.id[..6], "alice").unwrap();
        assert!(!expired.mutes(&labels, Utc::now() + chrono::Duration::milliseconds(1)));
        assert!(store.expire(&added.id, "alice").is_err(), "already expired");
        let journal = super::super::journal::read(dir.path()).unwrap();
        assert_eq!(
            journal.iter().map(|e| e.decision).collect::<Vec<_>>(),
            [Decision::SilenceAdded, Decision::SilenceExpired]
        );
    }
}
