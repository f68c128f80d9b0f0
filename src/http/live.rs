//! Live pages: a watcher notices what changed in the incident store and
//! the audit log (written by the pipeline in this process, or by `relive
//! ingest` and `relive approve` in another) and tells every open stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use correlate::{IncidentStore, Status};
use serde::Serialize;

use super::api::IncidentSummary;
use super::AppState;

/// How often the stores are looked at.
const POLL: Duration = Duration::from_millis(250);

/// One change a live page hears of.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Change {
    /// A new incident.
    Opened { incident: IncidentSummary },
    /// More evidence, another attempt, a new cause.
    Updated { incident: IncidentSummary },
    /// A success closed it.
    Resolved { incident: IncidentSummary },
    /// The remediation audit log grew (an action's state changed).
    Actions { incident: String },
}

impl Change {
    fn name(&self) -> &'static str {
        match self {
            Change::Opened { .. } => "opened",
            Change::Updated { .. } => "updated",
            Change::Resolved { .. } => "resolved",
            Change::Actions { .. } => "actions",
        }
    }
}

/// The watcher's handle.
pub(crate) struct Live {
    tx: tokio::sync::broadcast::Sender<Change>,
    poke: Arc<tokio::sync::Notify>,
    started: Mutex<Vec<(String, String)>>,
}

/// What a change is judged by.
#[derive(PartialEq)]
struct Seen {
    status: Status,
    count: u32,
    last_seen: chrono::DateTime<chrono::Utc>,
    root_cause: String,
    evidence: usize,
}

impl Live {
    /// Starts watching `data` until `stop` is notified.
    pub(crate) fn start(data: &Path, mut stop: tokio::sync::watch::Receiver<bool>) -> Live {
        let (tx, _) = tokio::sync::broadcast::channel(1024);
        let poke = Arc::new(tokio::sync::Notify::new());
        let watcher = Watcher {
            data: data.to_path_buf(),
            tx: tx.clone(),
            incidents_mtime: None,
            audit_len: 0,
            seen: HashMap::new(),
            primed: false,
        };
        let wake = poke.clone();
        tokio::spawn(async move {
            let mut watcher = watcher;
            loop {
                watcher = match tokio::task::spawn_blocking(move || {
                    watcher.look();
                    watcher
                })
                .await
                {
                    Ok(w) => w,
                    Err(_) => return,
                };
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return,
                    _ = tokio::time::sleep(POLL) => {}
                    _ = wake.notified() => {}
                }
            }
        });
        Live {
            tx,
            poke,
            started: Mutex::new(Vec::new()),
        }
    }

    /// Looks now (after a change made over HTTP).
    pub(crate) fn poke(&self) {
        self.poke.notify_one();
    }

    pub(crate) fn migration_started(&self, host: &str, id: &str) {
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        started.push((host.to_string(), id.to_string()));
        let excess = started.len().saturating_sub(100);
        started.drain(..excess);
    }

    pub(crate) fn started_migrations(&self) -> Vec<(String, String)> {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct Watcher {
    data: PathBuf,
    tx: tokio::sync::broadcast::Sender<Change>,
    incidents_mtime: Option<SystemTime>,
    audit_len: u64,
    seen: HashMap<String, Seen>,
    primed: bool,
}

impl Watcher {
    fn look(&mut self) {
        let store = IncidentStore::new(&self.data);
        let path = self.data.join("incidents.json");
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if mtime != self.incidents_mtime {
            self.incidents_mtime = mtime;
            if let Ok(incidents) = store.load() {
                for i in &incidents {
                    let now = Seen {
                        status: i.status,
                        count: i.count,
                        last_seen: i.last_seen,
                        root_cause: i.root_cause.clone(),
                        evidence: i.evidence.len(),
                    };
                    let change = match self.seen.get(&i.id) {
                        None => Some(Change::Opened { incident: i.into() }),
                        Some(before) if *before == now => None,
                        Some(before)
                            if before.status != now.status && now.status == Status::Resolved =>
                        {
                            Some(Change::Resolved { incident: i.into() })
                        }
                        Some(_) => Some(Change::Updated { incident: i.into() }),
                    };
                    self.seen.insert(i.id.clone(), now);
                    if self.primed {
                        if let Some(c) = change {
                            let _ = self.tx.send(c);
                        }
                    }
                }
            }
        }
        let audit = self.data.join("remediation/audit.jsonl");
        let len = std::fs::metadata(&audit).map_or(0, |m| m.len());
        if len != self.audit_len {
            let from = self.audit_len;
            self.audit_len = len;
            if self.primed && len > from {
                for incident in incidents_in(&audit, from) {
                    let _ = self.tx.send(Change::Actions { incident });
                }
            }
        }
        self.primed = true;
    }
}

/// The incidents named by audit lines after byte `from`.
fn incidents_in(path: &Path, from: u64) -> Vec<String> {
    use std::io::{Read as _, Seek as _};
    let mut out: Vec<String> = Vec::new();
    let Ok(mut f) = std::fs::File::open(path) else {
        return out;
    };
    if f.seek(std::io::SeekFrom::Start(from)).is_err() {
        return out;
    }
    let mut text = String::new();
    // At most 4 MB of new lines per look; the rest is named next time.
    if f.take(4 << 20).read_to_string(&mut text).is_err() {
        return out;
    }
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(id) = v["incident"].as_str() {
                if !out.iter().any(|o| o == id) {
                    out.push(id.to_string());
                }
            }
        }
    }
    out
}

/// `GET /api/v1/stream`: server-sent events, one per change
/// (`opened`, `updated`, `resolved`, `actions`), JSON data.
pub(crate) async fn stream(
    State(state): State<Arc<AppState>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = state.live.tx.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(change) => Event::default()
                .event(change.name())
                .json_data(&change)
                .unwrap_or_else(|_| Event::default().event("error")),
            // Too slow a reader: told to reload rather than dropped silently.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
