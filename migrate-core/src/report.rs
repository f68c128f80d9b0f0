//! Migration parameters (changeable while a migration runs), QEMU
//! `query-migrate`-compatible statistics, and the final report.

use serde::{Deserialize, Serialize};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{ErrorKind, MigrationError};
use crate::protocol::Codec;

/// What to do when the timeout passes before the migration converges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutStrategy {
    /// Give up: the VM keeps running on the source.
    #[default]
    Cancel,
    /// Switch over anyway, with a longer blackout.
    Force,
}

/// What is compared before the commit.
///
/// Both compare a digest of every page on both ends. They differ in what
/// the source's digest is of, which decides what the blackout costs:
/// `Sent` is the default because its blackout does not grow with the VM's
/// memory (reading all of a paused 64 GiB VM would add seconds to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Each page's digest is of the paused source memory, read in the
    /// blackout: also catches a write the dirty tracker missed, before the
    /// commit (the VM stays on the source). Costs reading all of the
    /// paused memory in the blackout.
    Full,
    /// Each page's digest is of the bytes last sent for it: catches
    /// anything lost or changed between the two memories, at no cost in
    /// the blackout. After the commit the source reads its paused memory
    /// once and compares it with what it sent ([`Audit`]): a write the
    /// tracker missed is then reported, no longer undone.
    #[default]
    Sent,
}

/// Migration parameters (QEMU's names where QEMU has the knob).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MigrationParams {
    /// Longest acceptable blackout, ms.
    #[serde(default = "default_downtime")]
    pub downtime_limit: u64,
    /// Bytes per second during pre-copy (0 = unlimited). The final pass
    /// is not limited, as in QEMU.
    #[serde(default)]
    pub max_bandwidth: u64,
    /// Give up (or force) after this many ms (0 = never).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Cancel or force at the timeout.
    #[serde(default)]
    pub timeout_strategy: TimeoutStrategy,
    /// Throttle the workload when it outruns the link.
    #[serde(default)]
    pub auto_converge: bool,
    /// Page batch compression (`compress` transport).
    #[serde(default)]
    pub codec: Codec,
    /// Parallel TCP streams (`multi` transport when > 1).
    #[serde(default = "one")]
    pub streams: u32,
    /// What is verified before commit.
    #[serde(default)]
    pub verify: VerifyMode,
    /// Pre-copy passes taken after the dirty set first fits
    /// `downtime-limit`, each sent to its end, as long as the link sends
    /// at least 1.25 times what the workload dirties and the set is more
    /// than 1 MiB: each costs at most the limit in total time and shrinks the
    /// blackout (0 = switch over as soon as it fits, as QEMU does).
    #[serde(default = "default_extra_passes")]
    pub extra_passes: u32,
}

fn default_downtime() -> u64 {
    300
}
fn default_timeout() -> u64 {
    600_000
}
fn one() -> u32 {
    1
}
fn default_extra_passes() -> u32 {
    3
}

impl Default for MigrationParams {
    fn default() -> Self {
        MigrationParams {
            downtime_limit: default_downtime(),
            max_bandwidth: 0,
            timeout: default_timeout(),
            timeout_strategy: TimeoutStrategy::Cancel,
            auto_converge: false,
            codec: Codec::None,
            streams: 1,
            verify: VerifyMode::default(),
            extra_passes: default_extra_passes(),
        }
    }
}

impl MigrationParams {
    /// The transport's name: `tcp`, `compress` or `multi`.
    pub fn transport(&self) -> &'static str {
        match (self.codec, self.streams) {
            (Codec::Lz4, _) => "compress",
            (_, n) if n > 1 => "multi",
            _ => "tcp",
        }
    }
}

/// Migration status, with QEMU's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not started.
    #[default]
    None,
    /// Connecting, authenticating, pre-flight.
    Setup,
    /// Pre-copy passes.
    Active,
    /// Blackout: final pages, device state, verification, commit.
    Device,
    /// The VM runs on the destination.
    Completed,
    /// Failed; the VM runs on the source.
    Failed,
    /// Cancelled; the VM runs on the source.
    Cancelled,
    /// The commit's answer was lost: the VM is paused on the source until
    /// the destination (or an operator) settles where it runs.
    InDoubt,
    /// A state only QEMU has (`cancelling`, `pre-switchover`, `postcopy-active` …).
    #[serde(other)]
    Other,
}

impl Status {
    /// True once the migration has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

/// `query-migrate`'s `ram` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RamStats {
    /// Bytes on the wire (headers included).
    pub transferred: u64,
    /// Dirty bytes still to send (at the last sync).
    pub remaining: u64,
    /// Guest memory bytes.
    pub total: u64,
    /// Zero pages sent as markers.
    pub duplicate: u64,
    /// Full pages sent.
    pub normal: u64,
    /// Their bytes.
    pub normal_bytes: u64,
    /// Newly dirty pages per second over the last sync period.
    pub dirty_pages_rate: u64,
    /// Mbit/s of the last window; at the end, the average.
    pub mbps: f64,
    /// Bitmap syncs (passes).
    pub dirty_sync_count: u64,
    /// Pages per second of the last window.
    pub pages_per_second: u64,
    /// 4096.
    pub page_size: u64,
    /// Bytes sent before the blackout.
    pub precopy_bytes: u64,
    /// Bytes sent during the blackout.
    pub downtime_bytes: u64,
    /// Pages the workload wrote during the migration (ground truth).
    pub pages_written: u64,
}

/// `query-migrate`'s answer (QEMU's too: the names are QEMU's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct MigrationInfo {
    /// Status.
    pub status: Status,
    /// ms since start (final once finished).
    pub total_time: u64,
    /// ms of setup (connect, authenticate, pre-flight, reservation).
    pub setup_time: u64,
    /// ms the VM was paused (set when completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime: Option<u64>,
    /// ms the blackout would take now (while active).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_downtime: Option<u64>,
    /// Workload throttle, percent (auto-converge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttle_percentage: Option<u32>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_desc: Option<String>,
    /// Memory statistics.
    pub ram: RamStats,
}

/// One pre-copy pass (between two bitmap syncs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PassRecord {
    /// Pass number (= sync count).
    pub pass: u64,
    /// ms from the start of the migration.
    pub start_ms: u64,
    /// ms it took.
    pub duration_ms: u64,
    /// Bytes sent in it.
    pub bytes: u64,
    /// Pages sent in it.
    pub pages: u64,
    /// Pages dirty at the sync that ended it.
    pub dirty_pages: u64,
    /// Measured bandwidth, bytes/s.
    pub bandwidth: u64,
    /// Blackout predicted at that point, ms.
    pub expected_downtime_ms: u64,
}

/// Where the blackout time went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Downtime {
    /// Pausing the workload and the final sync, ms.
    pub pause_ms: f64,
    /// Sending the last dirty pages, ms.
    pub final_pages_ms: f64,
    /// Device state, ms.
    pub device_ms: f64,
    /// Digests and their comparison, ms.
    pub verify_ms: f64,
    /// Commit handshake until the destination runs the VM, ms.
    pub commit_ms: f64,
}

/// Verification outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Full or sent.
    pub mode: VerifyMode,
    /// Pages compared.
    pub pages: u64,
    /// Pages whose digests differed.
    pub mismatched: u64,
    /// True when they all matched.
    pub digest_ok: bool,
    /// `Sent` only: the paused source memory against what was sent, read
    /// after the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// After a `Sent` commit: the paused source memory read once and compared,
/// page by page, with the digests of what was sent (which the destination
/// matched). A page that differs was written without the dirty tracker
/// seeing it, and the destination runs without that write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// Pages (and disk blocks) compared.
    pub pages: u64,
    /// How many differed.
    pub differing: u64,
    /// The first of them (at most 8), page numbers.
    pub first: Vec<u64>,
    /// How long the reading took, ms (after the blackout).
    pub ms: f64,
}

/// What a migration did, from the source's side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// Migration id.
    pub id: String,
    /// VM name.
    pub vm_name: String,
    /// VM id.
    pub vm_id: String,
    /// Source host.
    pub source: String,
    /// Destination host (name as addressed).
    pub destination: String,
    /// `tcp`, `compress` or `multi`.
    pub transport: String,
    /// The parameters at the end.
    pub params: Option<MigrationParams>,
    /// Final statistics (status included).
    pub info: MigrationInfo,
    /// Every pass.
    pub passes: Vec<PassRecord>,
    /// Blackout breakdown (when it got that far).
    pub downtime: Option<Downtime>,
    /// Verification (when it got that far).
    pub verification: Option<Verification>,
    /// Why it failed.
    pub error: Option<MigrationError>,
    /// CPU seconds the source process used during the migration.
    pub cpu_seconds: f64,
    /// When it started: Unix time as `seconds.nanoseconds`.
    pub started_at: String,
}

/// A migration in progress (or finished), from the source's side.
#[derive(Clone)]
pub struct MigrationHandle {
    /// Migration id.
    pub id: String,
    pub(crate) info: Arc<Mutex<MigrationInfo>>,
    pub(crate) params: Arc<Mutex<MigrationParams>>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) thread: Arc<Mutex<Option<JoinHandle<MigrationReport>>>>,
    pub(crate) report: Arc<Mutex<Option<MigrationReport>>>,
}

impl MigrationHandle {
    /// `query-migrate`.
    pub fn info(&self) -> MigrationInfo {
        self.info.lock().expect("info lock").clone()
    }

    /// `migrate-set-parameters`: takes effect at the next window.
    pub fn set_params(&self, params: MigrationParams) {
        *self.params.lock().expect("params lock") = params;
    }

    /// The current parameters.
    pub fn params(&self) -> MigrationParams {
        self.params.lock().expect("params lock").clone()
    }

    /// `migrate_cancel`: the VM keeps running on the source.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for the end and returns the report.
    pub fn wait(&self) -> MigrationReport {
        let thread = self.thread.lock().expect("thread lock").take();
        if let Some(thread) = thread {
            let report = thread.join().unwrap_or_else(|_| MigrationReport {
                id: self.id.clone(),
                error: Some(MigrationError::new(
                    ErrorKind::Io,
                    "The migration thread panicked.",
                )),
                ..MigrationReport::default()
            });
            *self.report.lock().expect("report lock") = Some(report);
        }
        self.report
            .lock()
            .expect("report lock")
            .clone()
            .unwrap_or_default()
    }
}
