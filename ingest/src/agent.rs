//! `relive agent`: tails log files on a host and ships their events to the
//! collector, losing nothing across restarts and outages.
//!
//! Two threads and a local spool (a [`Wal`]) between them:
//!
//! - the **reader** finds files by glob (woken by `notify`, and polling
//!   every `poll_ms` for shares where notifications do not arrive), parses
//!   what is new with `parsers` (ECS and NXLog JSON lines, which stand
//!   alone, are shipped as read, with their path and offset, and parsed
//!   only by the collector), appends the batches to the spool
//!   (durable), then moves the file's checkpoint; it stops reading while
//!   the spool is over its size limit (the files are the buffer then);
//! - the **shipper** connects (TLS when a CA is configured), says hello
//!   with the agent's token, sends every spool record after the last
//!   acknowledged one as a batch whose number is its spool sequence number,
//!   keeps up to `window` in flight, and on each ack records the position
//!   and deletes shipped segments. After a failure it reconnects with
//!   exponential backoff and jitter and resends everything unacknowledged.
//!
//! Checkpoints (`checkpoints.json`, replaced atomically) hold each file's
//! identity (device, inode, a hash of its first bytes) and how far it was
//! read: a byte offset for line formats, an event count for formats read
//! whole (EVTX, XML, Event Viewer text, CSV, PowerShell JSON). A rotated
//! file (renamed) is read to its end through the handle kept open; a
//! truncated file is read again from the start.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parsers::{Event, Format, Metric, ParseOptions, RecordError, Sink};
use serde::{Deserialize, Serialize};

use crate::protocol::{Frame, VERSION};
use crate::record::Kind;
use crate::wal::{self, Wal, WalOptions, WalReader};
use crate::IngestError;

/// `agent.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Agent name sent to the collector (default: the host name).
    pub name: Option<String>,
    /// Collector address, `host:port` (port 7301 by default).
    pub collector: String,
    /// Secret for this agent.
    pub token: String,
    /// CA certificate (PEM) to trust; TLS is on when set.
    pub ca: Option<PathBuf>,
    /// This agent's certificate (PEM), for a collector with `client_ca`.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Name in the collector's certificate (default: the collector host).
    pub server_name: Option<String>,
    /// Checkpoints and spool.
    pub state_dir: PathBuf,
    /// Largest spool before the reader pauses.
    pub spool_max_bytes: u64,
    /// Events per batch.
    pub batch_events: usize,
    /// Batches in flight without an ack.
    pub window: usize,
    /// Rescan interval (the polling fallback), in milliseconds.
    pub poll_ms: u64,
    /// Longest wait between reconnect attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Files to tail.
    pub watch: Vec<WatchSpec>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: None,
            collector: "127.0.0.1:7301".into(),
            token: String::new(),
            ca: None,
            cert: None,
            key: None,
            server_name: None,
            state_dir: PathBuf::from("relive-agent"),
            spool_max_bytes: 1 << 30,
            batch_events: 2000,
            window: 32,
            poll_ms: 250,
            max_backoff_ms: 5000,
            watch: Vec::new(),
        }
    }
}

/// One `[[watch]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    /// Globs (`C:/Windows/Cluster/Reports/*.log`, `/logs/**/*.evtx`) or folders.
    pub paths: Vec<String>,
    /// Force a format instead of detecting it.
    #[serde(default)]
    pub format: Option<String>,
}

/// What the agent is doing, written to `status.json` and shown by the CLI.
#[derive(Debug, Default)]
pub struct AgentStatus {
    /// Connected to the collector now.
    pub connected: AtomicBool,
    /// Spool records not yet acknowledged.
    pub spooled: AtomicU64,
    /// Events read from files.
    pub events_read: AtomicU64,
    /// Batches acknowledged.
    pub acked: AtomicU64,
    /// Reading is paused because the spool is full.
    pub spool_full: AtomicBool,
    /// Last refusal or connection error.
    pub last_error: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Checkpoint {
    path: PathBuf,
    dev: u64,
    ino: u64,
    fingerprint: u64,
    /// How many leading bytes `fingerprint` covers (up to 256: it is taken
    /// again while the file is shorter).
    #[serde(default = "full_fingerprint")]
    fingerprint_len: usize,
    /// Bytes consumed (line formats).
    offset: u64,
    /// Events shipped (formats read whole).
    events: u64,
    /// Size and mtime when last read whole.
    size: u64,
    mtime_ns: i128,
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Bytes a fingerprint covers once the file is long enough.
const FINGERPRINT_BYTES: usize = 256;

fn full_fingerprint() -> usize {
    FINGERPRINT_BYTES
}

/// FNV-1a of the first `len` bytes (at most 256) and how many there were:
/// tells a new file that got a recycled inode from the one a checkpoint
/// was about.
fn fingerprint(file: &mut File, len: usize) -> std::io::Result<(u64, usize)> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let len = len.min(FINGERPRINT_BYTES);
    let pos = file.stream_position()?;
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < len {
        let k = file.read(&mut head[n..len])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    file.seek(SeekFrom::Start(pos))?;
    // FNV-1a: stable across versions, as stored checkpoints need.
    let mut h = fnv::FnvHasher::default();
    std::hash::Hasher::write(&mut h, &head[..n]);
    Ok((std::hash::Hasher::finish(&h), n))
}

/// Detects a tracked file's format from its first 64 KiB (once; a file with
/// no format after 4 KiB is skipped to its end with a warning). False while
/// the format is not known.
fn detect_format(t: &mut Tracked, size: u64) -> bool {
    if t.format.is_some() {
        return true;
    }
    if size == 0 {
        return false;
    }
    let mut head = vec![0u8; 64 * 1024];
    let at = t.file.stream_position().unwrap_or(0);
    let _ = t.file.seek(SeekFrom::Start(0));
    let n = read_up_to(&mut t.file, &mut head);
    let _ = t.file.seek(SeekFrom::Start(at));
    t.format = t.forced.or_else(|| parsers::detect(&head[..n]));
    t.utf16 = looks_utf16le(&head[..n]);
    if t.format.is_none() && (n >= 4096 || size > 4096) {
        tracing::warn!(
            "agent: {}: unknown format; not shipped",
            t.cp.path.display()
        );
        t.cp.offset = size;
    }
    t.format.is_some()
}

/// The file starts with the bytes the checkpoint's fingerprint covers.
fn same_file(file: &mut File, cp: &Checkpoint) -> bool {
    fingerprint(file, cp.fingerprint_len)
        .is_ok_and(|(fp, n)| n == cp.fingerprint_len.min(FINGERPRINT_BYTES) && fp == cp.fingerprint)
}

/// UTF-16LE text: a BOM, or zero high bytes in most of the first 256
/// odd positions.
fn looks_utf16le(head: &[u8]) -> bool {
    if head.starts_with(&[0xFF, 0xFE]) {
        return true;
    }
    let n = head.len().min(512) & !1;
    n >= 8 && head[..n].chunks_exact(2).filter(|c| c[1] == 0).count() * 4 >= n * 3 / 2
}

/// True when `buf[i]` (file offset `at + i`) is the `\n` of a UTF-16LE
/// line end: on a unit boundary, with a zero high byte.
fn utf16_newline(buf: &[u8], at: u64, i: usize) -> bool {
    (at + i as u64).is_multiple_of(2) && buf.get(i + 1) == Some(&0)
}

/// Just past the first line end in `buf`, which starts at file offset `at`.
fn line_end(buf: &[u8], at: u64, utf16: bool) -> Option<usize> {
    if !utf16 {
        return memchr::memchr(b'\n', buf).map(|i| i + 1);
    }
    memchr::memchr_iter(b'\n', buf)
        .find(|&i| utf16_newline(buf, at, i))
        .map(|i| i + 2)
}

/// Just past the last line end in `buf`, which starts at file offset `at`.
fn last_line_end(buf: &[u8], at: u64, utf16: bool) -> Option<usize> {
    if !utf16 {
        return memchr::memrchr(b'\n', buf).map(|i| i + 1);
    }
    memchr::memrchr_iter(b'\n', buf)
        .find(|&i| utf16_newline(buf, at, i))
        .map(|i| i + 2)
}

fn line_format(format: Format) -> bool {
    use Format::*;
    matches!(
        format,
        EcsJson | NxlogJson | OtlpJson | Syslog | Snare | ClusterLog | MetricsJson
    )
}

/// Collects parsed events and metrics as NDJSON.
#[derive(Default)]
struct Ndjson {
    out: Vec<u8>,
    events: u64,
    skip: u64,
    base: u64,
    errors: u64,
}

impl Sink for Ndjson {
    fn event(&mut self, mut event: Event) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        event.origin.offset += self.base;
        event.write_json(&mut self.out);
        self.out.push(b'\n');
        self.events += 1;
    }
    fn metric(&mut self, metric: Metric) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        self.out.extend_from_slice(metric.to_json().as_bytes());
        self.out.push(b'\n');
        self.events += 1;
    }
    fn error(&mut self, mut error: RecordError) {
        error.offset += self.base;
        self.errors += 1;
        tracing::warn!("skipped a record: {error}");
    }
}

/// A tracked file: its open handle (kept across renames) and checkpoint.
struct Tracked {
    file: File,
    cp: Checkpoint,
    format: Option<Format>,
    forced: Option<Format>,
    /// Matched by a glob in the last scan; a file that is not (rotated
    /// away or deleted) is read through its handle until drained.
    seen: bool,
    /// The last read stopped at its size cap: more is waiting.
    pending: bool,
    /// UTF-16LE text (lines end in `\n\0` at an even offset).
    utf16: bool,
    /// Inside a line too long to ship, dropping bytes up to its end.
    skip_line: bool,
}

/// The running agent.
pub struct Agent {
    stop: Arc<AtomicBool>,
    status: Arc<AgentStatus>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Agent {
    /// Starts the reader and the shipper.
    pub fn start(config: AgentConfig) -> Result<Agent, IngestError> {
        let name = config.name.clone().unwrap_or_else(host_name);
        std::fs::create_dir_all(&config.state_dir).map_err(|source| IngestError::Io {
            what: format!("cannot create {}", config.state_dir.display()),
            source,
        })?;
        let spool_dir = config.state_dir.join("spool");
        let (spool, recovery) = Wal::open(
            &spool_dir,
            WalOptions {
                // Segments small against the bound: acknowledged ones are
                // deleted whole, so the spool shrinks as the collector acks.
                segment_bytes: (config.spool_max_bytes / 8).clamp(64 << 10, 16 << 20),
                sync: true,
            },
        )?;
        if let Some(damage) = recovery.damage {
            tracing::warn!("agent spool: dropped a torn tail: {damage}");
        }
        let client = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => {
                return Err(IngestError::Config(
                    "agent: a client certificate needs both cert and key".into(),
                ))
            }
        };
        let tls = match &config.ca {
            Some(ca) => Some(crate::tls::client_config(ca, client)?),
            None if client.is_some() => {
                return Err(IngestError::Config(
                    "agent: cert and key are used over TLS: set ca (the collector's CA)".into(),
                ))
            }
            None => None,
        };
        let mut specs = Vec::new();
        for spec in &config.watch {
            let forced = match &spec.format {
                Some(f) => Some(
                    f.parse::<Format>()
                        .map_err(|e| IngestError::Config(format!("[[watch]] format {f:?}: {e}")))?,
                ),
                None => None,
            };
            for p in &spec.paths {
                let pattern = if Path::new(p).is_dir() {
                    format!("{}/*", p.trim_end_matches(['/', '\\']))
                } else {
                    p.clone()
                };
                glob::Pattern::new(&pattern)
                    .map_err(|e| IngestError::Config(format!("[[watch]] glob {p:?}: {e}")))?;
                specs.push((pattern, forced));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(AgentStatus::default());
        let acked_path = config.state_dir.join("acked");
        let acked = Arc::new(AtomicU64::new(wal::load_u64(&acked_path).unwrap_or(0)));
        let durable = Arc::new(AtomicU64::new(spool.next_seq()));
        status.spooled.store(
            spool
                .next_seq()
                .saturating_sub(acked.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        let wake = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let mut threads = Vec::new();
        let reader = Reader {
            specs,
            config: config.clone(),
            spool,
            tracked: HashMap::new(),
            checkpoints_path: config.state_dir.join("checkpoints.json"),
            stop: stop.clone(),
            status: status.clone(),
            acked: acked.clone(),
            durable: durable.clone(),
            wake: wake.clone(),
            room: 0,
        };
        threads.push(
            std::thread::Builder::new()
                .name("agent-reader".into())
                .spawn(move || reader.run())
                .map_err(IngestError::Thread)?,
        );
        let shipper = Shipper {
            name,
            config,
            tls,
            spool_dir,
            acked_path,
            acked,
            durable,
            stop: stop.clone(),
            status: status.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("agent-shipper".into())
                .spawn(move || shipper.run())
                .map_err(IngestError::Thread)?,
        );
        // notify wakes the reader early; polling covers what it misses.
        Ok(Agent {
            stop,
            status,
            threads,
        })
    }

    /// Live status.
    pub fn status(&self) -> &Arc<AgentStatus> {
        &self.status
    }

    /// Stops both threads (what is spooled stays spooled).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The host name (`HOSTNAME`, `COMPUTERNAME`, `/etc/hostname`).
pub fn host_name() -> String {
    std::env::var("COMPUTERNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

struct Reader {
    specs: Vec<(String, Option<Format>)>,
    config: AgentConfig,
    spool: Wal,
    tracked: HashMap<(u64, u64), Tracked>,
    checkpoints_path: PathBuf,
    stop: Arc<AtomicBool>,
    status: Arc<AgentStatus>,
    acked: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    wake: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// Spool bytes left under `spool_max_bytes` before this scan: a line
    /// file is read in parts no larger, so the bound holds within a file.
    room: u64,
}

impl Reader {
    fn run(mut self) {
        let mut saved: HashMap<(u64, u64), Checkpoint> = std::fs::read(&self.checkpoints_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<Checkpoint>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|c| ((c.dev, c.ino), c))
            .collect();
        let _watcher = self.watch();
        let mut first_scan = true;
        while !self.stop.load(Ordering::Acquire) {
            let spool_bytes = spool_size(self.spool.dir());
            let full = spool_bytes > self.config.spool_max_bytes;
            self.room = self.config.spool_max_bytes.saturating_sub(spool_bytes);
            if full != self.status.spool_full.swap(full, Ordering::Relaxed) && full {
                tracing::warn!(
                    "agent spool is full ({spool_bytes} bytes): reading paused until the collector catches up"
                );
            }
            let mut more = false;
            if !full {
                match self.scan(&mut saved) {
                    Ok(m) => more = m,
                    Err(e) => tracing::warn!("agent: {e}"),
                }
                if first_scan {
                    first_scan = false;
                    self.recover_rotated(&mut saved);
                    more = true;
                }
            }
            if more {
                // A file read only in part: go on without waiting.
                continue;
            }
            let (lock, cvar) = &*self.wake;
            let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let (mut woken, _) = cvar
                .wait_timeout_while(guard, Duration::from_millis(self.config.poll_ms), |w| !*w)
                .unwrap_or_else(|p| p.into_inner());
            *woken = false;
        }
    }

    fn watch(&self) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        let wake = self.wake.clone();
        let state_dir = std::fs::canonicalize(&self.config.state_dir)
            .unwrap_or_else(|_| self.config.state_dir.clone());
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = &res {
                // The reader's own opens and reads (inotify IN_OPEN,
                // IN_ACCESS, IN_CLOSE_NOWRITE) and the spool's writes
                // would wake it again and again: only changes to the
                // watched files count.
                if matches!(event.kind, notify::EventKind::Access(_))
                    || (!event.paths.is_empty()
                        && event.paths.iter().all(|p| p.starts_with(&state_dir)))
                {
                    return;
                }
            }
            let (lock, cvar) = &*wake;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cvar.notify_one();
        })
        .ok()?;
        for (pattern, _) in &self.specs {
            // Watch the fixed folder part of the glob.
            let fixed: PathBuf = Path::new(pattern)
                .components()
                .take_while(|c| {
                    let s = c.as_os_str().to_string_lossy();
                    !s.contains(['*', '?', '['])
                })
                .collect();
            let dir = if fixed.is_dir() {
                fixed
            } else {
                fixed.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::Recursive) {
                tracing::info!(
                    "agent: no change notifications for {} ({e}); polling",
                    dir.display()
                );
            }
        }
        Some(watcher)
    }

    /// Finds, reads and checkpoints every watched file; true if a file
    /// still has more to read than one pass takes.
    fn scan(&mut self, saved: &mut HashMap<(u64, u64), Checkpoint>) -> Result<bool, IngestError> {
        for t in self.tracked.values_mut() {
            t.seen = false;
        }
        let mut paths = Vec::new();
        for (pattern, forced) in &self.specs {
            if let Ok(found) = glob::glob(pattern) {
                for p in found.flatten() {
                    if p.is_file() {
                        paths.push((p, *forced));
                    }
                }
            }
        }
        paths.sort();
        for (path, forced) in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = identity(&meta);
            if let Some(t) = self.tracked.get_mut(&id) {
                t.seen = true;
                t.cp.path = path;
                continue;
            }
            let Ok(mut file) = File::open(&path) else {
                continue;
            };
            let mut cp = match saved.remove(&id) {
                Some(cp) if same_file(&mut file, &cp) => cp,
                _ => {
                    let Ok((fingerprint, fingerprint_len)) =
                        fingerprint(&mut file, FINGERPRINT_BYTES)
                    else {
                        continue;
                    };
                    Checkpoint {
                        dev: id.0,
                        ino: id.1,
                        fingerprint,
                        fingerprint_len,
                        ..Checkpoint::default()
                    }
                }
            };
            cp.path = path;
            self.tracked.insert(
                id,
                Tracked {
                    file,
                    cp,
                    format: None,
                    forced,
                    seen: true,
                    pending: false,
                    utf16: false,
                    skip_line: false,
                },
            );
        }
        let mut changed = false;
        for id in self.read_order() {
            changed |= self.read_file(id)?;
        }
        // Forget files that were rotated away once read to their end.
        let before = self.tracked.len();
        self.tracked.retain(|_, t| t.seen || t.pending);
        changed |= self.tracked.len() != before;
        if changed {
            let all: Vec<&Checkpoint> = self.tracked.values().map(|t| &t.cp).collect();
            let bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
            wal::store_bytes(&self.checkpoints_path, &bytes)?;
        }
        Ok(self.tracked.values().any(|t| t.pending))
    }

    /// After a restart: a checkpointed file that no glob matches any more
    /// may have been rotated (renamed) while the agent was down, with
    /// lines it never read. Looks for the same file (device, inode and
    /// first bytes) in the folder it was in and drains it.
    fn recover_rotated(&mut self, saved: &mut HashMap<(u64, u64), Checkpoint>) {
        for (id, cp) in saved.drain() {
            if self.tracked.contains_key(&id) {
                continue;
            }
            let Some(dir) = cp.path.parent() else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() || identity(&meta) != id {
                    continue;
                }
                let Ok(mut file) = File::open(&path) else {
                    break;
                };
                if !same_file(&mut file, &cp) {
                    break;
                }
                tracing::info!(
                    "agent: {} was renamed to {} while the agent was down; reading the rest",
                    cp.path.display(),
                    path.display()
                );
                let forced = self
                    .specs
                    .iter()
                    .find(|(pattern, _)| {
                        glob::Pattern::new(pattern).is_ok_and(|p| p.matches_path(&cp.path))
                    })
                    .and_then(|(_, f)| *f);
                self.tracked.insert(
                    id,
                    Tracked {
                        file,
                        cp: Checkpoint { path, ..cp },
                        format: None,
                        forced,
                        seen: false,
                        // Read at least once before it can be forgotten.
                        pending: true,
                        utf16: false,
                        skip_line: false,
                    },
                );
                break;
            }
        }
    }

    /// The order files are read in: formats that keep UTC before those
    /// that write local time (so the collector learns each host's offset
    /// from a UTC copy before the local copies need it, as `relive ingest`
    /// does), then by path.
    fn read_order(&mut self) -> Vec<(u64, u64)> {
        let mut order: Vec<(bool, PathBuf, (u64, u64))> = self
            .tracked
            .iter_mut()
            .map(|(id, t)| {
                if t.format.is_none() {
                    let size = t.file.metadata().map_or(0, |m| m.len());
                    detect_format(t, size);
                }
                let local = t.format.is_none_or(Format::writes_local_time);
                (local, t.cp.path.clone(), *id)
            })
            .collect();
        order.sort();
        order.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Reads what is new in one file; true if its checkpoint moved.
    fn read_file(&mut self, id: (u64, u64)) -> Result<bool, IngestError> {
        let t = self.tracked.get_mut(&id).expect("tracked");
        t.pending = false;
        let meta = match t.file.metadata() {
            Ok(m) => m,
            Err(_) => return Ok(false),
        };
        let size = meta.len();
        if t.cp.fingerprint_len < FINGERPRINT_BYTES && size > t.cp.fingerprint_len as u64 {
            // Written to since the fingerprint was taken: take it again, so
            // it stays recognizable after a restart or a rename.
            if let Ok((fingerprint, len)) = fingerprint(&mut t.file, FINGERPRINT_BYTES) {
                t.cp.fingerprint = fingerprint;
                t.cp.fingerprint_len = len;
            }
        }
        if !detect_format(t, size) {
            return Ok(false);
        }
        let format = t.format.expect("detected");
        let mut opts = ParseOptions {
            format: Some(format),
            ..ParseOptions::default()
        };
        let name = t.cp.path.to_string_lossy().to_string();
        let mut sink = Ndjson::default();
        let mut next_offset = t.cp.offset;
        let mut raw: Option<(u64, Vec<u8>)> = None;
        if line_format(format) {
            if size < t.cp.offset {
                tracing::warn!(
                    "agent: {} was truncated ({} → {size} bytes); reading it again from the start",
                    name,
                    t.cp.offset
                );
                t.cp.offset = 0;
            }
            if size == t.cp.offset {
                return Ok(false);
            }
            const PART: u64 = 8 << 20;
            // No more than the spool has room for, so its bound holds
            // within a file too; a line longer than the room is read whole
            // (up to PART, beyond which it is skipped).
            let mut part = PART.min(self.room.max(64 * 1024));
            let mut buf = loop {
                let _ = t.file.seek(SeekFrom::Start(t.cp.offset));
                t.pending = size - t.cp.offset > part;
                let want = (size - t.cp.offset).min(part) as usize;
                let mut buf = vec![0u8; want];
                let n = read_up_to(&mut t.file, &mut buf);
                buf.truncate(n);
                if !t.skip_line
                    && part < PART
                    && buf.len() as u64 == part
                    && last_line_end(&buf, t.cp.offset, t.utf16).is_none()
                {
                    part = PART;
                    continue;
                }
                break buf;
            };
            if t.skip_line {
                // The rest of a line too long to ship.
                match line_end(&buf, t.cp.offset, t.utf16) {
                    Some(end) => {
                        t.skip_line = false;
                        t.cp.offset += end as u64;
                    }
                    None => t.cp.offset += buf.len() as u64,
                }
                t.pending = t.cp.offset < size;
                return Ok(true);
            }
            // Only whole lines.
            let Some(end) = last_line_end(&buf, t.cp.offset, t.utf16) else {
                if buf.len() as u64 == part && part == PART {
                    tracing::warn!(
                        "agent: {name}: line at byte {} is longer than {} MiB; skipped",
                        t.cp.offset,
                        PART >> 20
                    );
                    t.skip_line = true;
                    t.cp.offset += buf.len() as u64;
                    t.pending = t.cp.offset < size;
                    return Ok(true);
                }
                return Ok(false);
            };
            buf.truncate(end);
            let mut start = 0;
            if t.cp.offset == 0 && buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                start = 3;
            }
            sink.base = t.cp.offset + start as u64;
            if format == Format::ClusterLog {
                opts.default_host = cluster_log_host(&t.cp.path);
            }
            if raw_lines(format) {
                // Shipped as read; the collector parses them once.
                raw = Some((sink.base, buf.split_off(start)));
            } else {
                parsers::parse_reader(&buf[start..], Some(&name), &opts, &mut sink);
            }
            next_offset = t.cp.offset + buf.len() as u64;
        } else {
            let mtime = mtime_ns(&meta);
            if size == t.cp.size && mtime == t.cp.mtime_ns {
                return Ok(false);
            }
            if size < t.cp.size {
                t.cp.events = 0;
            }
            sink.skip = t.cp.events;
            let _ = t.file.seek(SeekFrom::Start(0));
            parsers::parse_reader(BufReader::new(&mut t.file), Some(&name), &opts, &mut sink);
            t.cp.size = size;
            t.cp.mtime_ns = mtime;
        }
        if let Some((base, lines)) = raw {
            // `buf` was split: what it still holds is the BOM, if any.
            next_offset += lines.len() as u64;
            let n_lines = self.spool_lines(&name, format, base, &lines)?;
            let t = self.tracked.get_mut(&id).expect("tracked");
            t.cp.events += n_lines;
            t.cp.offset = next_offset;
            return Ok(true);
        }
        let events = sink.events;
        if events > 0 {
            // One spool record per batch of events.
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut cur = Vec::new();
            let mut in_cur = 0;
            for line in sink.out.split_inclusive(|&b| b == b'\n') {
                cur.extend_from_slice(line);
                in_cur += 1;
                if in_cur >= self.config.batch_events || cur.len() >= 4 << 20 {
                    batch.push(spool_body(std::mem::take(&mut cur)));
                    in_cur = 0;
                }
            }
            if !cur.is_empty() {
                batch.push(spool_body(cur));
            }
            self.spool.append(&batch)?;
            self.durable.store(self.spool.next_seq(), Ordering::Release);
            self.status.spooled.store(
                self.spool.next_seq() - self.acked.load(Ordering::Acquire),
                Ordering::Relaxed,
            );
            self.status.events_read.fetch_add(events, Ordering::Relaxed);
        }
        let t = self.tracked.get_mut(&id).expect("tracked");
        t.cp.events += events;
        let moved = next_offset != t.cp.offset || events > 0 || !line_format(format);
        t.cp.offset = next_offset;
        Ok(moved)
    }
}

impl Reader {
    /// Spools whole lines as [`Kind::Lines`] batches; returns how many
    /// non-blank lines they hold.
    fn spool_lines(
        &mut self,
        path: &str,
        format: Format,
        base: u64,
        lines: &[u8],
    ) -> Result<u64, IngestError> {
        let format_code = Format::ALL
            .iter()
            .position(|f| *f == format)
            .map_or(0, |i| i as u8 + 1);
        let mut batches: Vec<Vec<u8>> = Vec::new();
        let mut n_lines = 0u64;
        let mut batch_start = 0usize;
        let mut in_batch = 0usize;
        let mut at = 0usize;
        let flush = |from: usize, to: usize, batches: &mut Vec<Vec<u8>>| {
            let mut body = vec![Kind::Lines as u8, format_code];
            body.extend_from_slice(&crate::record::lines_payload(
                path,
                base + from as u64,
                &lines[from..to],
            ));
            batches.push(body);
        };
        for end in memchr::memchr_iter(b'\n', lines) {
            if lines[at..end].iter().any(|b| !b.is_ascii_whitespace()) {
                n_lines += 1;
                in_batch += 1;
            }
            at = end + 1;
            if in_batch >= self.config.batch_events || at - batch_start >= 4 << 20 {
                flush(batch_start, at, &mut batches);
                batch_start = at;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            flush(batch_start, lines.len(), &mut batches);
        }
        if !batches.is_empty() {
            self.spool.append(&batches)?;
            self.durable.store(self.spool.next_seq(), Ordering::Release);
            self.status.spooled.store(
                self.spool.next_seq() - self.acked.load(Ordering::Acquire),
                Ordering::Relaxed,
            );
            self.status
                .events_read
                .fetch_add(n_lines, Ordering::Relaxed);
        }
        Ok(n_lines)
    }
}

/// Line formats whose every line stands alone (no header, no host in the
/// file name): shipped as read and parsed only by the collector, as
/// Filebeat ships lines to Logstash.
fn raw_lines(format: Format) -> bool {
    matches!(format, Format::EcsJson | Format::NxlogJson)
}

fn cluster_log_host(path: &Path) -> Option<String> {
    let stem = path.file_name()?.to_str()?;
    let lower = stem.to_ascii_lowercase();
    let at = lower.find("_cluster")?;
    (at > 0).then(|| stem[..at].to_string())
}

fn spool_body(ndjson: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + ndjson.len());
    body.push(Kind::Text as u8);
    // The collector reads agent batches as ECS JSON lines (events and
    // metrics, classified per line).
    body.push(
        Format::ALL
            .iter()
            .position(|f| *f == Format::EcsJson)
            .map_or(0, |i| i as u8 + 1),
    );
    body.extend_from_slice(&ndjson);
    body
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    n
}

fn spool_size(dir: &Path) -> u64 {
    wal::segments(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

struct Shipper {
    name: String,
    config: AgentConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    spool_dir: PathBuf,
    acked_path: PathBuf,
    acked: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    status: Arc<AgentStatus>,
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

impl Shipper {
    fn run(self) {
        let mut backoff = Duration::from_millis(100);
        let mut rng = seed();
        while !self.stop.load(Ordering::Acquire) {
            let started = Instant::now();
            match self.session() {
                Ok(()) => {}
                Err(e) => {
                    self.status.connected.store(false, Ordering::Relaxed);
                    let spooled = self.status.spooled.load(Ordering::Relaxed);
                    tracing::warn!(
                        "agent: collector {}: {e}; {spooled} batches spooled, retrying",
                        self.config.collector
                    );
                    *self
                        .status
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            // Exponential backoff with full jitter: a sleep drawn evenly
            // from zero to the current cap, so agents that lost the same
            // collector do not come back in step.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let cap = backoff.as_millis().max(1) as u64;
            let sleep = Duration::from_millis(rng % (cap + 1));
            let until = Instant::now() + sleep;
            while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(Duration::from_millis(self.config.max_backoff_ms));
        }
    }

    fn connect(&self) -> Result<Box<dyn Conn>, String> {
        let addr = if self.config.collector.contains(':') {
            self.config.collector.clone()
        } else {
            format!("{}:7301", self.config.collector)
        };
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr} resolves to nothing"))?;
        let tcp = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(config) => {
                let host = self.config.server_name.clone().unwrap_or_else(|| {
                    addr.rsplit_once(':').map_or(addr.clone(), |(h, _)| {
                        h.trim_matches(['[', ']']).to_string()
                    })
                });
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("bad TLS server name {host:?}: {e}"))?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| format!("TLS: {e}"))?;
                Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        }
    }

    fn session(&self) -> Result<(), String> {
        let mut conn = self.connect()?;
        Frame::Hello {
            version: VERSION,
            agent: self.name.clone(),
            token: self.config.token.clone(),
        }
        .write_to(&mut conn)
        .map_err(|e| format!("sending hello: {e}"))?;
        let mut reader = FrameReader::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let welcome = loop {
            match reader.poll(&mut conn)? {
                Some(frame) => break frame,
                None if Instant::now() > deadline => return Err("no answer to hello".into()),
                None => {}
            }
        };
        match welcome {
            Frame::Welcome { .. } => {}
            Frame::Refused { reason } => return Err(format!("refused: {reason}")),
            other => return Err(format!("unexpected answer to hello: {other:?}")),
        }
        self.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(
            "agent {}: connected to {}",
            self.name,
            self.config.collector
        );
        let mut next = self.acked.load(Ordering::Acquire);
        let mut spool = WalReader::new(&self.spool_dir, next);
        let mut last_store = Instant::now();
        let mut dirty = false;
        while !self.stop.load(Ordering::Acquire) {
            let acked = self.acked.load(Ordering::Acquire);
            // Send while the window has room.
            let mut sent = false;
            while next < acked + self.config.window as u64 {
                match spool.next_record().map_err(|e| e.to_string())? {
                    Some((seq, body)) if body.len() >= 2 => {
                        Frame::Batch {
                            seq,
                            kind: body[0],
                            format: body[1],
                            payload: body[2..].to_vec(),
                        }
                        .write_to(&mut conn)
                        .map_err(|e| format!("sending batch {seq}: {e}"))?;
                        next = seq + 1;
                        sent = true;
                    }
                    Some((seq, _)) => next = seq + 1,
                    None => break,
                }
            }
            if sent {
                conn.flush().map_err(|e| e.to_string())?;
            }
            // Acks (the read timeout paces this loop).
            match reader.poll(&mut conn)? {
                Some(Frame::Ack { seq }) => {
                    self.acked.store(seq + 1, Ordering::Release);
                    self.status.acked.fetch_add(1, Ordering::Relaxed);
                    self.status.spooled.store(
                        self.durable.load(Ordering::Acquire).saturating_sub(seq + 1),
                        Ordering::Relaxed,
                    );
                    dirty = true;
                }
                Some(Frame::Nack { seq, reason }) => {
                    return Err(format!("batch {seq} not stored by the collector: {reason}"));
                }
                Some(other) => return Err(format!("unexpected frame {other:?}")),
                None => {}
            }
            if dirty
                && (last_store.elapsed() > Duration::from_millis(100)
                    || next == self.acked.load(Ordering::Acquire))
            {
                let acked = self.acked.load(Ordering::Acquire);
                wal::store_u64(&self.acked_path, acked).map_err(|e| e.to_string())?;
                let _ = wal::release_before(&self.spool_dir, acked, u64::MAX);
                last_store = Instant::now();
                dirty = false;
            }
        }
        if dirty {
            let _ = wal::store_u64(&self.acked_path, self.acked.load(Ordering::Acquire));
        }
        Ok(())
    }
}

/// Reads frames from a blocking connection with a short read timeout,
/// keeping partial frames across timeouts.
#[derive(Default)]
struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    fn poll(&mut self, conn: &mut Box<dyn Conn>) -> Result<Option<Frame>, String> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4")) as usize;
                if len > crate::protocol::MAX_FRAME as usize {
                    return Err(format!("collector sent a {len}-byte frame"));
                }
                if self.buf.len() >= 4 + len {
                    let frame = Frame::decode(&self.buf[4..4 + len]).map_err(|e| e.to_string())?;
                    self.buf.drain(..4 + len);
                    return Ok(Some(frame));
                }
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) => return Err("the collector closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading from the collector: {e}")),
            }
        }
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    (t ^ u64::from(std::process::id())) | 1
}
