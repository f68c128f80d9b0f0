//! The remediation audit log: one JSON line per decision under
//! `--data/remediation/audit.jsonl` (a plan made, an action started, run,
//! skipped and why, waiting for approval, approved or rejected by whom, a
//! retry, its verification, an escalation), with the action's idempotency
//! key. Append-only: the file is opened for appending, never rewritten,
//! and each line is synced before the call returns, so what the log says
//! happened survives `kill -9`. Reading tolerates a torn last line (a
//! crash mid-write) and says how many lines it could not read.
//!
//! An action is recorded `started` before it runs and `ran` (or `failed`)
//! after: a key with a `started` line and no outcome is an action a crash
//! interrupted, which the engine must not simply run again
//! ([`AuditLog::state_of`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read as _, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an audit line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// A plan was made (or shown, in `suggest` mode).
    Planned,
    /// An action is about to run.
    Started,
    /// It ran and succeeded.
    Ran,
    /// It ran and failed.
    Failed,
    /// It was not run, and why (the mode, a class not allowed, a check).
    Skipped,
    /// It waits for someone to approve it.
    AwaitingApproval,
    /// Someone approved it.
    Approved,
    /// Someone rejected it.
    Rejected,
    /// The migration was retried.
    Retried,
    /// The retry's success was seen.
    Verified,
    /// Someone was told what was tried and did not work.
    Escalated,
    /// A choice the engine made and why (a destination, a backoff).
    Decided,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The incident.
    pub incident: String,
    /// The action's idempotency key (`None`: about the whole plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What happened.
    pub what: What,
    /// Who decided (an approver, `relive` for the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    /// Details in plain words (log text stays a JSON string).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The action's class, on a request for approval (what an approval
    /// must satisfy: a `downtime` one needs a maintenance window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<crate::plan::Class>,
}

/// Where an action stands, from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    /// Nothing recorded for the key.
    New,
    /// Waiting for approval.
    AwaitingApproval,
    /// Approved, not started.
    Approved,
    /// Started and not finished: a crash interrupted it.
    Interrupted,
    /// Finished (ran, failed, skipped or rejected): never run again.
    Done(What),
}

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened, written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The append-only audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    /// What was read so far (another process appends too: approvals).
    seen: Mutex<Seen>,
}

/// The lines read so far, indexed by key; only what was appended since is
/// read again.
#[derive(Debug, Default)]
struct Seen {
    offset: u64,
    partial: Vec<u8>,
    entries: Vec<Entry>,
    by_key: std::collections::HashMap<String, Vec<usize>>,
    unreadable: usize,
}

/// What [`AuditLog::read`] found.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// Every whole line, in order.
    pub entries: Vec<Entry>,
    /// Lines that could not be read (a torn last line after a crash).
    pub unreadable: usize,
}

impl AuditLog {
    /// Opens (creating) `data/remediation/audit.jsonl`, owner-only.
    pub fn open(data: &Path) -> Result<AuditLog, AuditError> {
        let dir = data.join("remediation");
        let path = dir.join("audit.jsonl");
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        // A line a crash cut short is ended here, so the next line starts
        // on its own and stays readable.
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            let mut reader = File::open(&path).map_err(io)?;
            reader.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            reader.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
                file.sync_data().map_err(io)?;
            }
        }
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
            seen: Mutex::new(Seen::default()),
        })
    }

    /// Reads what was appended since the last call (by any process) and
    /// runs `f` over everything read so far.
    fn with_seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> Result<R, AuditError> {
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(seen.offset)).map_err(io)?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh).map_err(io)?;
        seen.offset += fresh.len() as u64;
        let mut bytes = std::mem::take(&mut seen.partial);
        bytes.extend_from_slice(&fresh);
        let mut start = 0;
        while let Some(n) = memchr_newline(&bytes[start..]) {
            let line = &bytes[start..start + n];
            start += n + 1;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Entry>(line) {
                Ok(e) => {
                    let at = seen.entries.len();
                    if let Some(k) = &e.key {
                        seen.by_key.entry(k.clone()).or_default().push(at);
                    }
                    seen.entries.push(e);
                }
                Err(_) => seen.unreadable += 1,
            }
        }
        seen.partial = bytes[start..].to_vec();
        Ok(f(&seen))
    }

    /// The last line recorded for `key`.
    pub fn last_of(&self, key: &str) -> Result<Option<Entry>, AuditError> {
        self.with_seen(|s| {
            s.by_key
                .get(key)
                .and_then(|ix| ix.last())
                .map(|&i| s.entries[i].clone())
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and syncs it before returning.
    pub fn append(&self, entry: &Entry) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)
    }

    /// Every line so far.
    pub fn read(&self) -> Result<Read, AuditError> {
        read(&self.path)
    }

    /// Where the action with this key stands (reading only what was
    /// appended since the last look).
    pub fn state_of(&self, key: &str) -> Result<ActionState, AuditError> {
        self.with_seen(|s| {
            let lines: Vec<Entry> = s
                .by_key
                .get(key)
                .map(|ix| ix.iter().map(|&i| s.entries[i].clone()).collect())
                .unwrap_or_default();
            state_in(&lines, key)
        })
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

/// Reads an audit log file (missing: empty).
pub fn read(path: &Path) -> Result<Read, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::default()),
        Err(source) => {
            return Err(AuditError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Read::default();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(&line) {
            Ok(e) => out.entries.push(e),
            Err(_) => out.unreadable += 1,
        }
    }
    Ok(out)
}

/// Where the action with `key` stands in `entries`.
pub fn state_in(entries: &[Entry], key: &str) -> ActionState {
    let mut state = ActionState::New;
    for e in entries.iter().filter(|e| e.key.as_deref() == Some(key)) {
        state = match e.what {
            What::AwaitingApproval => ActionState::AwaitingApproval,
            What::Approved => ActionState::Approved,
            What::Started => ActionState::Interrupted,
            w @ (What::Ran
            | What::Failed
            | What::Skipped
            | What::Rejected
            | What::Retried
            | What::Verified) => ActionState::Done(w),
            _ => state,
        };
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, what: What) -> Entry {
        Entry {
            at: Utc::now(),
            incident: "inc1".into(),
            key: Some(key.into()),
            what,
            who: None,
            detail: String::new(),
            class: None,
        }
    }

    #[test]
    fn appended_lines_read_back_and_a_torn_one_is_counted_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let mut hostile = entry("k1", What::Skipped);
        hostile.detail = "VM \"x'; Remove-Item C:\\ -Recurse\"\n<script>".into();
        log.append(&hostile).unwrap();
        log.append(&entry("k2", What::Started)).unwrap();
        // A crash mid-write leaves half a line.
        {
            let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
            f.write_all(b"{\"at\":\"2026-12-07T00:00:00Z\",\"inci")
                .unwrap();
        }
        let read = log.read().unwrap();
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.entries[0], hostile);
        assert_eq!(read.unreadable, 1);
        // One line per entry: the newline in the detail is escaped.
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 3);
        // Reopened after the crash: the torn line is ended, so the next
        // entry is whole and readable.
        drop(log);
        let log = AuditLog::open(dir.path()).unwrap();
        log.append(&entry("k3", What::Ran)).unwrap();
        let read = log.read().unwrap();
        assert_eq!((read.entries.len(), read.unreadable), (3, 1));
        assert_eq!(log.state_of("k3").unwrap(), ActionState::Done(What::Ran));
        assert_eq!(log.last_of("k1").unwrap().unwrap(), hostile);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner-only");
        }
    }

    #[test]
    fn an_action_started_and_not_finished_is_interrupted_and_a_finished_one_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.state_of("a").unwrap(), ActionState::New);
        log.append(&entry("a", What::AwaitingApproval)).unwrap();
        assert_eq!(log.state_of("a").unwrap(), ActionState::AwaitingApproval);
        log.append(&entry("a", What::Approved)).unwrap();
        assert_eq!(log.state_of("a").unwrap(), ActionState::Approved);
        log.append(&entry("a", What::Started)).unwrap();
        // Reopened after a crash: the approval is not forgotten, and the
        // action is not simply run again.
        drop(log);
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.state_of("a").unwrap(), ActionState::Interrupted);
        log.append(&entry("a", What::Ran)).unwrap();
        assert_eq!(log.state_of("a").unwrap(), ActionState::Done(What::Ran));
        assert_eq!(log.state_of("b").unwrap(), ActionState::New);
    }

    #[test]
    fn two_writers_leave_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..200 {
                        log.append(&entry(&format!("t{t}-{n}"), What::Ran)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let read = log.read().unwrap();
        assert_eq!((read.entries.len(), read.unreadable), (400, 0));
    }
}
