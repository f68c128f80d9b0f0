//! The source side: [`Host::migrate`] sends a running VM to another host
//! with iterative pre-copy, and [`MigrationHandle`] answers
//! `query-migrate`, changes parameters while it runs, and cancels.
//!
//! The loop is QEMU's (migration.md 1.1): send dirty pages in slices of at
//! most 50 ms under a token-bucket rate limit; every 100 ms measure the
//! bandwidth and set `threshold = bandwidth × downtime-limit`; when the
//! pages left fit under the threshold, sync the dirty bitmap, and when
//! they still fit, pause the workload and finish unthrottled.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dirty::{DirtyTracker, PageSet};
use crate::disk::GuestDisk;
use crate::error::{ErrorKind, MigrationError};
use crate::host::{Host, InDoubtDecision, InDoubtOutcome, Notice, Role, SlotGuard, VmState};
use crate::ledger::Placement;
use crate::memory::{bytes_digest, fold_digests, GuestMemory, PAGE_SIZE};
use crate::protocol::{self, page, Accept, Codec, Command, Cursor, DeviceState, Offer, FINAL};
pub use crate::report::MigrationHandle;
use crate::report::{
    Audit, Downtime, MigrationInfo, MigrationParams, MigrationReport, PassRecord, Status,
    TimeoutStrategy, Verification, VerifyMode,
};
use crate::workload::Workload;

/// Pages per `Pages` frame.
const BATCH: usize = 64;
/// Below this many dirty pages (1 MiB) an extra pass gains nothing.
const EXTRA_PASS_FLOOR: u64 = 256;
/// Longest send slice between checks (QEMU's `MAX_WAIT`).
const SLICE: Duration = Duration::from_millis(50);
/// Bandwidth window (QEMU's `BUFFER_DELAY`).
const WINDOW: Duration = Duration::from_millis(100);

/// A job for a stream's sender thread.
enum Job {
    Pages(Vec<usize>),
    Frame(Command, Vec<u8>),
    Flush(u64, SyncSender<std::io::Result<()>>),
}

/// Counters the stream threads update.
#[derive(Default)]
struct Counters {
    transferred: AtomicU64,
    normal: AtomicU64,
    duplicate: AtomicU64,
}

/// Token bucket shared by the streams.
struct Limiter {
    rate: AtomicU64,
    state: Mutex<(Instant, f64)>,
}

impl Limiter {
    fn take(&self, bytes: usize) {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let wait = {
            let mut state = self.state.lock().expect("limiter lock");
            let now = Instant::now();
            let burst = rate as f64 / 50.0;
            state.1 = (state.1 + (now - state.0).as_secs_f64() * rate as f64).min(burst);
            state.0 = now;
            state.1 -= bytes as f64;
            if state.1 < 0.0 {
                Duration::from_secs_f64(-state.1 / rate as f64)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

struct Stream {
    jobs: SyncSender<Job>,
    thread: JoinHandle<std::io::Result<()>>,
}

/// Sends pages and frames on one connection.
#[allow(clippy::too_many_arguments)]
fn stream_thread(
    mut out: BufWriter<TcpStream>,
    jobs: Receiver<Job>,
    memory: Arc<GuestMemory>,
    disk: Option<Arc<GuestDisk>>,
    codec: Codec,
    counters: Arc<Counters>,
    limiter: Arc<Limiter>,
    sent_digests: Arc<Vec<AtomicU64>>,
    keep_digests: bool,
) -> std::io::Result<()> {
    // A page batch is built behind a reserved frame head, so an
    // uncompressed batch goes out in one write; the buffer is sized (and
    // zeroed) once, and each batch overwrites it from the start.
    let mut batch = vec![0u8; protocol::HEAD + 4 + BATCH * (PAGE_SIZE + 8)];
    for job in jobs {
        match job {
            Job::Pages(pages) => {
                let count_at = protocol::HEAD;
                batch[count_at..count_at + 4].copy_from_slice(&(pages.len() as u32).to_le_bytes());
                let mut len = count_at + 4;
                let (mut normal, mut zero) = (0, 0);
                for &p in &pages {
                    // The header, then the page read straight into the batch
                    // (no intermediate copy); a zero page keeps the header only.
                    let head = len;
                    let data = head + 8;
                    if batch.len() < data + PAGE_SIZE {
                        batch.resize(data + PAGE_SIZE, 0);
                    }
                    let page_bytes = &mut batch[data..data + PAGE_SIZE];
                    let is_zero = match &disk {
                        Some(d) if p >= memory.pages() => {
                            let zero = d.read_block(p - memory.pages(), page_bytes)?;
                            if keep_digests {
                                sent_digests[p]
                                    .store(bytes_digest(page_bytes, p), Ordering::Relaxed);
                            }
                            zero
                        }
                        _ if keep_digests => {
                            let (zero, digest) = memory.read_page_digest(p, page_bytes);
                            sent_digests[p].store(digest, Ordering::Relaxed);
                            zero
                        }
                        _ => memory.read_page(p, page_bytes),
                    };
                    let kind = if is_zero {
                        zero += 1;
                        len = data;
                        page::ZERO
                    } else {
                        normal += 1;
                        len = data + PAGE_SIZE;
                        page::RAW
                    };
                    batch[head..data]
                        .copy_from_slice(&(((p as u64) << 8) | u64::from(kind)).to_le_bytes());
                }
                let batch = &mut batch[..len];
                let body_len = match codec {
                    Codec::None => {
                        protocol::seal_frame(Command::Pages, batch);
                        limiter.take(batch.len());
                        out.write_all(batch)?;
                        batch.len() - protocol::HEAD
                    }
                    Codec::Lz4 => {
                        let body = lz4_flex::compress_prepend_size(&batch[protocol::HEAD..]);
                        limiter.take(body.len() + protocol::HEAD);
                        protocol::write_frame(&mut out, Command::Pages, &[&body])?;
                        body.len()
                    }
                };
                counters
                    .transferred
                    .fetch_add((body_len + protocol::HEAD) as u64, Ordering::Relaxed);
                counters.normal.fetch_add(normal, Ordering::Relaxed);
                counters.duplicate.fetch_add(zero, Ordering::Relaxed);
            }
            Job::Frame(command, body) => {
                protocol::write_frame(&mut out, command, &[&body])?;
                counters
                    .transferred
                    .fetch_add(body.len() as u64 + 5, Ordering::Relaxed);
                out.flush()?;
            }
            Job::Flush(pass, done) => {
                let result =
                    protocol::write_frame(&mut out, Command::PassEnd, &[&pass.to_le_bytes()])
                        .and_then(|_| out.flush());
                let failed = result
                    .as_ref()
                    .err()
                    .map(|e| std::io::Error::new(e.kind(), e.to_string()));
                let _ = done.send(result);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
    }
    out.flush()
}

/// How a migration is asked for.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    /// VM name or id on the source.
    pub vm: String,
    /// Destination host name (as it appears in messages).
    pub destination: String,
    /// Destination migration address.
    pub address: SocketAddr,
    /// Who initiated it (the source host itself, or a management station).
    pub initiator: Option<String>,
    /// Parameters.
    pub params: MigrationParams,
}

impl Host {
    /// Starts migrating a VM; returns at once with a handle.
    pub fn migrate(&self, request: MigrateRequest) -> Result<MigrationHandle, MigrationError> {
        let id = format!("{}-{}", self.name().to_ascii_lowercase(), self.next_id());
        let info = Arc::new(Mutex::new(MigrationInfo {
            status: Status::Setup,
            ..MigrationInfo::default()
        }));
        let params = Arc::new(Mutex::new(request.params.clone()));
        let cancel = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            host: self.clone(),
            id: id.clone(),
            info: info.clone(),
            params: params.clone(),
            cancel: cancel.clone(),
            request,
            started: Instant::now(),
            started_at: unix_now(),
            peer_version: std::sync::atomic::AtomicU16::new(1),
        };
        let thread = std::thread::Builder::new()
            .name("migration-out".into())
            .spawn(move || ctx.run())
            .map_err(|e| {
                MigrationError::new(
                    ErrorKind::Io,
                    format!("Could not start the migration thread: {e}."),
                )
            })?;
        let handle = MigrationHandle {
            id: id.clone(),
            info,
            params,
            cancel,
            thread: Arc::new(Mutex::new(Some(thread))),
            report: Arc::new(Mutex::new(None)),
        };
        let mut outgoing = self.inner.outgoing.lock().expect("outgoing lock");
        if outgoing.len() >= 256 {
            // Forget finished migrations beyond the last few hundred.
            outgoing.retain(|_, h| !h.info().status.is_final());
        }
        outgoing.insert(id, handle.clone());
        Ok(handle)
    }

    /// The outgoing migration with this id (running or recently ended).
    pub fn migration(&self, id: &str) -> Option<MigrationHandle> {
        self.inner
            .outgoing
            .lock()
            .expect("outgoing lock")
            .get(id)
            .cloned()
    }
}

fn unix_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Waits until an in-doubt migration is settled: asks the destination
/// (`Resolve`) with a growing pause between tries, and acts on an
/// operator's decision. Never resumes on a timeout. `None` when the host
/// shuts down first (the ledger keeps the doubt).
pub(crate) fn wait_in_doubt(
    host: &Host,
    vm_id: &str,
    vm_name: &str,
    peer: &str,
    address: std::net::SocketAddr,
    migration: &str,
) -> Option<InDoubtOutcome> {
    let ledger = host.ledger();
    let moved = || {
        if let Err(e) = ledger.set(
            vm_id,
            vm_name,
            Placement::Moved {
                peer: peer.to_string(),
                migration: migration.to_string(),
            },
        ) {
            tracing::error!(vm = %vm_name, error = %e, "cannot record that the VM moved");
        }
    };
    let here = || {
        if let Err(e) = ledger.clear(vm_id) {
            tracing::error!(vm = %vm_name, error = %e, "cannot clear the in-doubt record");
        }
    };
    let mut pause = Duration::from_millis(200);
    let mut tries = 0u64;
    let outcome = loop {
        if host.is_closing() {
            return None;
        }
        if let Some(decision) = host.take_decision(vm_id) {
            break match decision {
                InDoubtDecision::ResumeHere => {
                    here();
                    InDoubtOutcome::OperatorResumedHere
                }
                InDoubtDecision::DiscardHere => {
                    moved();
                    InDoubtOutcome::OperatorDiscardedHere
                }
            };
        }
        tries += 1;
        match host.resolve_remote(address, peer, vm_id, migration) {
            Ok(true) => {
                moved();
                break InDoubtOutcome::Committed;
            }
            Ok(false) => {
                here();
                break InDoubtOutcome::Aborted;
            }
            Err(e) => {
                if tries == 1 || tries.is_multiple_of(20) {
                    tracing::warn!(vm = %vm_name, peer, tries, error = %e, "migration in doubt: the destination does not answer; the VM stays paused");
                }
                let until = Instant::now() + pause;
                while Instant::now() < until {
                    if host.is_closing()
                        || host
                            .inner
                            .decisions
                            .lock()
                            .expect("decisions lock")
                            .contains_key(vm_id)
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    };
    host.notice(&Notice::InDoubtResolved {
        vm_name: vm_name.to_string(),
        vm_id: vm_id.to_string(),
        peer: peer.to_string(),
        outcome,
    });
    Some(outcome)
}

/// This process's CPU seconds (user + system), from /proc.
pub fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// CPU seconds (user + system) of process `pid` (`self` or a number).
pub fn process_cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Ctx {
    host: Host,
    id: String,
    info: Arc<Mutex<MigrationInfo>>,
    params: Arc<Mutex<MigrationParams>>,
    cancel: Arc<AtomicBool>,
    request: MigrateRequest,
    started: Instant,
    started_at: String,
    /// The destination's protocol version, from its `Accept`.
    peer_version: std::sync::atomic::AtomicU16,
}

/// What the running migration holds on to.
struct Live {
    vm_name: String,
    vm_id: String,
    memory: Arc<GuestMemory>,
    /// A shared-nothing disk, mirrored after the pages.
    disk: Option<Arc<GuestDisk>>,
    workload: Option<Arc<Workload>>,
    device: Arc<Vec<u8>>,
}

enum Failure {
    /// Before the commit: the source resumes.
    Before(MigrationError),
    /// The commit was sent and its acknowledgement lost.
    InDoubt(MigrationError),
}

impl From<MigrationError> for Failure {
    fn from(e: MigrationError) -> Self {
        Failure::Before(e)
    }
}

impl Ctx {
    fn set_status(&self, status: Status) {
        self.info.lock().expect("info lock").status = status;
    }

    fn run(self) -> MigrationReport {
        let cpu_start = cpu_seconds();
        let mut report = MigrationReport {
            id: self.id.clone(),
            source: self.host.name(),
            destination: self.request.destination.clone(),
            transport: self.request.params.transport().into(),
            started_at: self.started_at.clone(),
            ..MigrationReport::default()
        };
        let outcome = self.prepare(&mut report).and_then(|(live, slot)| {
            let result = self.send(&live, &mut report);
            drop(slot);
            match result {
                Ok(()) => Ok(live),
                Err(e) => Err((e, Some(live))),
            }
        });
        let elapsed = self.started.elapsed().as_millis() as u64;
        {
            let mut info = self.info.lock().expect("info lock");
            info.total_time = elapsed;
            report.info = info.clone();
        }
        report.params = Some(self.params.lock().expect("params lock").clone());
        report.cpu_seconds = cpu_seconds() - cpu_start;
        match outcome {
            Ok(live) => {
                let mut info = self.info.lock().expect("info lock");
                let active = (elapsed.saturating_sub(info.setup_time)).max(1);
                info.ram.mbps = info.ram.transferred as f64 * 8.0 / active as f64 / 1000.0;
                info.expected_downtime = None;
                info.status = Status::Completed;
                report.info = info.clone();
                drop(info);
                self.host.notice(&Notice::MigrationSucceeded {
                    vm_name: live.vm_name,
                    vm_id: live.vm_id,
                    role: Role::Source,
                    peer: self.request.destination.clone(),
                    blackout_ms: report.info.downtime.unwrap_or(0),
                    report: Some(Box::new(report.clone())),
                });
            }
            Err((error, live)) => {
                let cancelled = error.kind == ErrorKind::Cancelled;
                let mut info = self.info.lock().expect("info lock");
                info.status = if cancelled {
                    Status::Cancelled
                } else {
                    Status::Failed
                };
                info.error_desc = Some(error.message.clone());
                info.downtime = None;
                report.info = info.clone();
                drop(info);
                report.error = Some(error.clone());
                let (vm_name, vm_id) = live
                    .map(|l| (l.vm_name, l.vm_id))
                    .unwrap_or_else(|| (report.vm_name.clone(), report.vm_id.clone()));
                self.host.notice(&Notice::MigrationFailed {
                    vm_name,
                    vm_id,
                    role: Role::Source,
                    peer: self.request.destination.clone(),
                    error,
                    report: Some(Box::new(report.clone())),
                });
            }
        }
        report
    }

    /// Checks on the source side and takes a slot.
    fn prepare(
        &self,
        report: &mut MigrationReport,
    ) -> Result<(Live, SlotGuard), (MigrationError, Option<Live>)> {
        let host = &self.host;
        let id = host.find_vm(&self.request.vm).map_err(|e| (e, None))?;
        let live = {
            let mut vms = host.inner.vms.lock().expect("vms lock");
            let vm = vms.get_mut(&id).ok_or_else(|| {
                (
                    MigrationError::new(
                        ErrorKind::VmNotFound,
                        format!("The virtual machine '{}' was not found.", self.request.vm),
                    ),
                    None,
                )
            })?;
            report.vm_name = vm.config.name.clone();
            report.vm_id = vm.config.id.clone();
            if vm.state != VmState::Running {
                return Err((
                    MigrationError::new(
                        ErrorKind::LimitReached,
                        format!("Virtual machine migration operation for '{}' failed: the virtual machine is already being migrated. (0x800700AA).", vm.config.name),
                    ),
                    None,
                ));
            }
            Live {
                vm_name: vm.config.name.clone(),
                vm_id: vm.config.id.clone(),
                memory: vm.memory.clone(),
                disk: vm
                    .disk
                    .clone()
                    .filter(|_| vm.config.disk.as_ref().is_some_and(|d| !d.shared)),
                workload: vm.workload.clone(),
                device: vm.device_state.clone(),
            }
        };
        let config = host.config();
        let initiator = self
            .request
            .initiator
            .clone()
            .unwrap_or_else(|| config.name.clone());
        if !config.migration_enabled {
            return Err((
                MigrationError::new(
                    ErrorKind::MigrationDisabled,
                    format!("Virtual machine migration operation for '{}' failed at migration source '{}': live migration is not enabled on this host; the Virtual Machine Management Service has disabled the listener for Virtual Machine migration connections.", live.vm_name, config.name),
                ),
                Some(live),
            ));
        }
        if config.auth.mode == crate::config::AuthMode::Direct
            && !initiator.eq_ignore_ascii_case(&config.name)
        {
            return Err((
                MigrationError::new(
                    ErrorKind::NoCredentials,
                    format!("Virtual machine migration operation for '{}' failed at migration source '{}'. Failed to authenticate the connection at the source host: No credentials are available in the security package (0x8009030E). The migration was initiated on '{initiator}'; with CredSSP it must be initiated on the source host.", live.vm_name, config.name),
                ),
                Some(live),
            ));
        }
        let slot = host.take_slot().map_err(|e| {
            let e = MigrationError::new(
                ErrorKind::LimitReached,
                format!("Virtual machine migration operation for '{}' failed at migration source '{}'. {}", live.vm_name, config.name, e.message),
            );
            (e, None::<Live>)
        });
        let slot = match slot {
            Ok(s) => s,
            Err((e, _)) => return Err((e, Some(live))),
        };
        host.set_vm_state(&id, VmState::Migrating);
        host.notice(&Notice::MigrationStarted {
            vm_name: live.vm_name.clone(),
            vm_id: live.vm_id.clone(),
            role: Role::Source,
            peer: self.request.destination.clone(),
        });
        Ok((live, slot))
    }

    /// Everything after the source-side checks; on failure the VM resumes,
    /// except when the commit's answer was lost: then it stays paused until
    /// the destination (or an operator) says whether it runs there.
    fn send(&self, live: &Live, report: &mut MigrationReport) -> Result<(), MigrationError> {
        let ledger = self.host.ledger();
        match self.transfer(live, report) {
            Ok(()) => {
                // The destination runs the VM: write that down, then free
                // the copy here.
                if let Err(e) = ledger.set(
                    &live.vm_id,
                    &live.vm_name,
                    Placement::Moved {
                        peer: self.request.destination.clone(),
                        migration: self.id.clone(),
                    },
                ) {
                    tracing::error!(vm = %live.vm_name, error = %e, "cannot record that the VM moved; a restart will ask the destination");
                }
                self.host.discard_vm(&live.vm_id);
                Ok(())
            }
            Err(Failure::Before(e)) => {
                // Resume first (the blackout ends now); a crash before the
                // record is cleared makes the next start ask the destination.
                self.resume(live);
                if let Err(err) = ledger.clear(&live.vm_id) {
                    tracing::error!(vm = %live.vm_name, error = %err, "cannot clear the in-flight record");
                }
                Err(e)
            }
            Err(Failure::InDoubt(e)) => {
                self.host.set_vm_state(&live.vm_id, VmState::InDoubt);
                self.set_status(Status::InDoubt);
                self.host.notice(&Notice::MigrationInDoubt {
                    vm_name: live.vm_name.clone(),
                    vm_id: live.vm_id.clone(),
                    peer: self.request.destination.clone(),
                    error: e.clone(),
                });
                match wait_in_doubt(
                    &self.host,
                    &live.vm_id,
                    &live.vm_name,
                    &self.request.destination,
                    self.request.address,
                    &self.id,
                ) {
                    Some(InDoubtOutcome::Committed | InDoubtOutcome::OperatorDiscardedHere) => {
                        self.host.discard_vm(&live.vm_id);
                        Ok(())
                    }
                    Some(InDoubtOutcome::Aborted | InDoubtOutcome::OperatorResumedHere) => {
                        self.resume(live);
                        Err(e)
                    }
                    // The host is shutting down: nothing resumes; the
                    // ledger keeps the doubt for the next start.
                    None => Err(e),
                }
            }
        }
    }

    fn resume(&self, live: &Live) {
        if let Some(w) = &live.workload {
            w.set_throttle(0);
            w.resume();
        }
        self.host.set_vm_state(&live.vm_id, VmState::Running);
    }

    fn check_cancel(&self) -> Result<(), Failure> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Failure::Before(MigrationError::new(
                ErrorKind::Cancelled,
                format!(
                    "The migration to '{}' was cancelled by the administrator.",
                    self.request.destination
                ),
            )));
        }
        Ok(())
    }

    fn io_error(&self, e: &std::io::Error) -> MigrationError {
        MigrationError::from_io(e, &self.request.destination)
    }

    fn transfer(&self, live: &Live, report: &mut MigrationReport) -> Result<(), Failure> {
        // Written down before anything is sent (so not in the blackout):
        // until this migration is settled, a restart of this host does not
        // start the VM, and a lost answer to `Commit` leaves it paused until
        // the destination says where it runs.
        self.host
            .ledger()
            .set(
                &live.vm_id,
                &live.vm_name,
                Placement::InDoubt {
                    peer: self.request.destination.clone(),
                    address: self.request.address,
                    migration: self.id.clone(),
                },
            )
            .map_err(|e| {
                Failure::Before(MigrationError::new(
                    ErrorKind::Io,
                    format!(
                        "Cannot record the migration of '{}' in the host's ledger: {e}.",
                        live.vm_name
                    ),
                ))
            })?;
        let params = self.params.lock().expect("params lock").clone();
        let config = self.host.config();
        let initiator = self
            .request
            .initiator
            .clone()
            .unwrap_or_else(|| config.name.clone());
        let addr = self.request.address;
        let connect = |addr: SocketAddr| -> Result<TcpStream, MigrationError> {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| self.io_error(&e))?;
            s.set_nodelay(true).ok();
            Ok(s)
        };
        let stream = connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| self.io_error(&e))?);
        let mut writer =
            BufWriter::with_capacity(64 << 10, stream.try_clone().map_err(|e| self.io_error(&e))?);
        let io = |e: std::io::Error| Failure::Before(self.io_error(&e));
        // Hello, challenge, proof.
        let nonce = crate::host::random_u64();
        let mut hello = Vec::new();
        hello.extend_from_slice(protocol::MAGIC);
        hello.extend_from_slice(&protocol::VERSION.to_le_bytes());
        protocol::put_str(&mut hello, &config.name);
        protocol::put_str(&mut hello, &initiator);
        hello.extend_from_slice(&nonce.to_le_bytes());
        protocol::write_frame(&mut writer, Command::Hello, &[&hello]).map_err(io)?;
        writer.flush().map_err(io)?;
        let mut body = Vec::new();
        let reply = protocol::read_frame(&mut reader, &mut body).map_err(io)?;
        let challenge = match reply {
            Some(Command::Challenge) => Cursor::new(&body).u64().map_err(io)?,
            Some(Command::Reject) => return Err(Failure::Before(rejected(&body))),
            other => return Err(Failure::Before(protocol::unexpected(other, "Challenge"))),
        };
        let secret = config.auth.secret_for(&self.request.destination);
        if secret.is_empty() {
            return Err(Failure::Before(MigrationError::new(
                ErrorKind::NoCredentials,
                format!("Host '{}' has no secret for '{}': set [auth] default_secret or [auth.peers] on both hosts. No credentials are available in the security package (0x8009030E).", config.name, self.request.destination),
            )));
        }
        let proof = protocol::hmac_sha256(
            secret.as_bytes(),
            &[
                &nonce.to_le_bytes(),
                &challenge.to_le_bytes(),
                config.name.as_bytes(),
                initiator.as_bytes(),
            ],
        );
        protocol::write_frame(&mut writer, Command::Proof, &[&proof]).map_err(io)?;
        // The offer.
        let vm_config = self
            .host
            .inner
            .vms
            .lock()
            .expect("vms lock")
            .get(&live.vm_id)
            .map(|vm| vm.config.clone())
            .ok_or_else(|| {
                MigrationError::new(ErrorKind::VmNotFound, "The virtual machine disappeared.")
            })?;
        let streams = params.streams.clamp(1, 64);
        let offer = Offer {
            vm: vm_config,
            pages: live.memory.pages() as u64,
            disk_blocks: live.disk.as_ref().map_or(0, |d| d.blocks() as u64),
            streams,
            codec: params.codec,
            migration: self.id.clone(),
        };
        let offer = serde_json::to_vec(&offer).unwrap_or_default();
        protocol::write_frame(&mut writer, Command::Offer, &[&offer]).map_err(io)?;
        writer.flush().map_err(io)?;
        let session = match protocol::read_frame(&mut reader, &mut body).map_err(io)? {
            Some(Command::Accept) => {
                let accept = serde_json::from_slice::<Accept>(&body).map_err(|e| {
                    MigrationError::new(ErrorKind::Protocol, format!("Bad accept: {e}."))
                })?;
                self.peer_version
                    .store(accept.version.max(1), Ordering::Relaxed);
                accept.session
            }
            Some(Command::Reject) => return Err(Failure::Before(rejected(&body))),
            other => return Err(Failure::Before(protocol::unexpected(other, "Accept"))),
        };
        // Extra streams.
        let mut conns = vec![writer];
        for index in 1..streams {
            let s = connect(addr)?;
            let mut w = BufWriter::with_capacity(64 << 10, s);
            let mut join = session.to_le_bytes().to_vec();
            join.extend_from_slice(&index.to_le_bytes());
            protocol::write_frame(&mut w, Command::Join, &[&join]).map_err(io)?;
            conns.push(w);
        }
        // Replies (Verified, CommitAck, Reject) arrive on stream 0; no
        // read timeout from here on (the reader ends when the socket closes).
        stream.set_read_timeout(None).ok();
        let (replies_tx, replies) = mpsc::channel::<std::io::Result<(Command, Vec<u8>)>>();
        spawn_reader(reader, replies_tx);
        {
            let mut info = self.info.lock().expect("info lock");
            info.setup_time = self.started.elapsed().as_millis() as u64;
            info.status = Status::Active;
            info.ram.total = live.memory.bytes()
                + live
                    .disk
                    .as_ref()
                    .map_or(0, |d| (d.blocks() * PAGE_SIZE) as u64);
            info.ram.page_size = PAGE_SIZE as u64;
        }
        let counters = Arc::new(Counters::default());
        let limiter = Arc::new(Limiter {
            rate: AtomicU64::new(params.max_bandwidth),
            state: Mutex::new((Instant::now(), 0.0)),
        });
        let keep_digests = params.verify == VerifyMode::Sent;
        let sent_digests: Arc<Vec<AtomicU64>> = Arc::new(if keep_digests {
            (0..live.memory.pages() + live.disk.as_ref().map_or(0, |d| d.blocks()))
                .map(|_| AtomicU64::new(0))
                .collect()
        } else {
            Vec::new()
        });
        let workers: Vec<Stream> = conns
            .into_iter()
            .enumerate()
            .map(|(i, out)| {
                let (tx, rx) = mpsc::sync_channel(4);
                let memory = live.memory.clone();
                let disk = live.disk.clone();
                let counters = counters.clone();
                let limiter = limiter.clone();
                let digests = sent_digests.clone();
                let codec = params.codec;
                let thread = std::thread::Builder::new()
                    .name(format!("migration-stream-{i}"))
                    .spawn(move || {
                        stream_thread(
                            out,
                            rx,
                            memory,
                            disk,
                            codec,
                            counters,
                            limiter,
                            digests,
                            keep_digests,
                        )
                    })
                    .expect("spawn stream thread");
                Stream { jobs: tx, thread }
            })
            .collect();
        let result = self.precopy_and_switch(
            live,
            report,
            &workers,
            &counters,
            &limiter,
            &replies,
            &sent_digests,
        );
        if let Err(Failure::Before(e)) = &result {
            let body = serde_json::to_vec(e).unwrap_or_default();
            let _ = workers[0].jobs.try_send(Job::Frame(Command::Abort, body));
        }
        // Stop the stream threads; a write error there explains a failure.
        let mut stream_error = None;
        for w in workers {
            drop(w.jobs);
            if let Ok(Err(e)) = w.thread.join() {
                stream_error.get_or_insert(e);
            }
        }
        let result = match result {
            Err(Failure::Before(e))
                if matches!(e.kind, ErrorKind::ConnectionReset | ErrorKind::Protocol) =>
            {
                // The destination may have said why before it closed.
                match replies.recv_timeout(Duration::from_millis(300)) {
                    Ok(Ok((Command::Reject, body))) => Err(Failure::Before(rejected(&body))),
                    _ => match stream_error {
                        Some(io) if e.kind == ErrorKind::Protocol => {
                            Err(Failure::Before(self.io_error(&io)))
                        }
                        _ => Err(Failure::Before(e)),
                    },
                }
            }
            other => other,
        };
        let _ = stream.shutdown(std::net::Shutdown::Both);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn precopy_and_switch(
        &self,
        live: &Live,
        report: &mut MigrationReport,
        workers: &[Stream],
        counters: &Counters,
        limiter: &Limiter,
        replies: &Receiver<std::io::Result<(Command, Vec<u8>)>>,
        sent_digests: &[AtomicU64],
    ) -> Result<(), Failure> {
        let memory = &live.memory;
        let pages = memory.pages() + live.disk.as_ref().map_or(0, |d| d.blocks());
        let n = workers.len();
        // Re-arm before the first page is read.
        memory.dirty().start();
        if let Some(d) = &live.disk {
            d.dirty().start();
        }
        let mut remaining = PageSet::full(pages);
        let mut cursor = 0usize;
        let mut pass = 1u64;
        let start = Instant::now();
        let mut pass_start = start;
        let mut pass_bytes_start = 0u64;
        let mut pass_pages = 0u64;
        let mut window_start = start;
        let mut window_bytes = 0u64;
        let mut bandwidth = 0f64; // bytes/s
        let mut expected_downtime;
        let mut rate_start = start;
        let mut dirty_in_period = 0u64;
        let mut xfer_at_period = 0u64;
        let mut triggers = 0;
        let mut extra_passes = 0u32;
        let mut finish_pass = false;
        let written_start = live.workload.as_ref().map_or(0, |w| w.pages_written());
        let mut take = Vec::with_capacity(BATCH * n);
        let mut per_stream: Vec<Vec<usize>> = vec![Vec::with_capacity(BATCH); n];
        let dispatch =
            |take: &mut Vec<usize>, per_stream: &mut Vec<Vec<usize>>| -> Result<(), Failure> {
                for &p in take.iter() {
                    per_stream[p % n].push(p);
                }
                take.clear();
                for (i, list) in per_stream.iter_mut().enumerate() {
                    if !list.is_empty() {
                        let pages = std::mem::replace(list, Vec::with_capacity(BATCH));
                        workers[i]
                            .jobs
                            .send(Job::Pages(pages))
                            .map_err(|_| self.lost_stream())?;
                    }
                }
                Ok(())
            };
        loop {
            self.check_cancel()?;
            if let Ok(reply) = replies.try_recv() {
                return Err(Failure::Before(self.reply_error(reply)));
            }
            let params = self.params.lock().expect("params lock").clone();
            limiter.rate.store(params.max_bandwidth, Ordering::Relaxed);
            // A slice of at most 50 ms.
            let slice_end = Instant::now() + SLICE;
            while !remaining.is_empty() && Instant::now() < slice_end {
                remaining.take(&mut cursor, BATCH * n, &mut take);
                pass_pages += take.len() as u64;
                dispatch(&mut take, &mut per_stream)?;
            }
            let now = Instant::now();
            let transferred = counters.transferred.load(Ordering::Relaxed);
            if now - window_start >= WINDOW {
                let dt = (now - window_start).as_secs_f64();
                bandwidth = (transferred - window_bytes) as f64 / dt;
                window_start = now;
                window_bytes = transferred;
                let mut info = self.info.lock().expect("info lock");
                info.ram.mbps = bandwidth * 8.0 / 1e6;
                info.ram.pages_per_second = (bandwidth / PAGE_SIZE as f64) as u64;
            }
            let threshold = bandwidth * params.downtime_limit as f64 / 1000.0;
            let pending = (remaining.len() * PAGE_SIZE) as f64;
            expected_downtime = if bandwidth > 0.0 {
                (pending / bandwidth * 1000.0) as u64
            } else {
                0
            };
            self.update_info(counters, &remaining, expected_downtime, pass, live);
            let timed_out = params.timeout > 0
                && self.started.elapsed() >= Duration::from_millis(params.timeout);
            // A pass ends when its pages are sent, or early when what is left
            // of it fits the limit, unless it is an extra pass, which is
            // sent to the end before the next decision.
            if remaining.is_empty() || (!finish_pass && pending <= threshold) || timed_out {
                // Sync the bitmap: re-armed before any of these pages is read again.
                let since_sync = pass_start.elapsed().as_secs_f64();
                let new = sync_dirty(live, &mut remaining) as u64;
                let dirty_rate = if since_sync > 0.0 {
                    new as f64 / since_sync
                } else {
                    0.0
                };
                dirty_in_period += new;
                let sent = counters.transferred.load(Ordering::Relaxed);
                let dirty_now = remaining.len() as u64;
                let record = PassRecord {
                    pass,
                    start_ms: (pass_start - start).as_millis() as u64,
                    duration_ms: pass_start.elapsed().as_millis() as u64,
                    bytes: sent - pass_bytes_start,
                    pages: pass_pages,
                    dirty_pages: dirty_now,
                    bandwidth: bandwidth as u64,
                    expected_downtime_ms: if bandwidth > 0.0 {
                        (dirty_now as f64 * PAGE_SIZE as f64 / bandwidth * 1000.0) as u64
                    } else {
                        0
                    },
                };
                report.passes.push(record);
                pass += 1;
                pass_start = Instant::now();
                pass_bytes_start = sent;
                pass_pages = 0;
                {
                    let mut info = self.info.lock().expect("info lock");
                    info.ram.dirty_sync_count = pass - 1;
                    info.ram.remaining = dirty_now * PAGE_SIZE as u64;
                }
                // Rates and auto-converge once a second (QEMU's period).
                if rate_start.elapsed() >= Duration::from_secs(1) {
                    let secs = rate_start.elapsed().as_secs_f64();
                    self.info.lock().expect("info lock").ram.dirty_pages_rate =
                        (dirty_in_period as f64 / secs) as u64;
                    if params.auto_converge {
                        self.auto_converge(
                            live,
                            dirty_in_period,
                            sent - xfer_at_period,
                            &mut triggers,
                        );
                    }
                    rate_start = Instant::now();
                    dirty_in_period = 0;
                    xfer_at_period = sent;
                }
                match after_pass(
                    dirty_now,
                    dirty_rate,
                    threshold,
                    bandwidth,
                    (extra_passes, params.extra_passes),
                ) {
                    AfterPass::Continue => finish_pass = false,
                    AfterPass::ExtraPass => {
                        extra_passes += 1;
                        finish_pass = true;
                    }
                    AfterPass::SwitchOver => break,
                }
                if timed_out {
                    match params.timeout_strategy {
                        TimeoutStrategy::Cancel => {
                            return Err(Failure::Before(MigrationError::new(
                                ErrorKind::NotConverging,
                                format!(
                                    "Virtual machine migration operation for '{}' failed at migration source '{}'. The migration did not converge within {} ms: the VM dirties memory faster than the link sends it ({} pages left, {:.0} Mbit/s). This operation returned because the timeout period expired. (0x800705B4).",
                                    live.vm_name, self.host.name(), params.timeout, dirty_now, bandwidth * 8.0 / 1e6
                                ),
                            )));
                        }
                        TimeoutStrategy::Force => break,
                    }
                }
            }
        }
        // Blackout.
        let blackout_start = Instant::now();
        self.set_status(Status::Device);
        if let Some(w) = &live.workload {
            w.pause();
        }
        self.host.set_vm_state(&live.vm_id, VmState::Paused);
        let precopy_bytes = counters.transferred.load(Ordering::Relaxed);
        sync_dirty(live, &mut remaining);
        // The paused memory no longer changes: digest it while the last
        // pages go out (on two threads), instead of after.
        let mode = self.params.lock().expect("params lock").verify;
        let digesting = (mode == VerifyMode::Full).then(|| {
            let memory = live.memory.clone();
            let disk = live.disk.clone();
            std::thread::spawn(move || full_digests(&memory, disk.as_deref()))
        });
        let mut downtime = Downtime {
            pause_ms: ms(blackout_start.elapsed()),
            ..Downtime::default()
        };
        limiter.rate.store(0, Ordering::Relaxed);
        let t = Instant::now();
        let final_pages = remaining.len() as u64;
        while !remaining.is_empty() {
            remaining.take(&mut cursor, BATCH * n, &mut take);
            dispatch(&mut take, &mut per_stream)?;
        }
        self.flush_streams(workers, FINAL | pass)?;
        report.passes.push(PassRecord {
            pass,
            start_ms: (pass_start - start).as_millis() as u64,
            duration_ms: pass_start.elapsed().as_millis() as u64,
            bytes: counters.transferred.load(Ordering::Relaxed) - pass_bytes_start,
            pages: pass_pages + final_pages,
            dirty_pages: 0,
            bandwidth: bandwidth as u64,
            expected_downtime_ms: 0,
        });
        downtime.final_pages_ms = ms(t.elapsed());
        let t = Instant::now();
        self.send_device(live, workers)?;
        downtime.device_ms = ms(t.elapsed());
        // Verify: a digest of every page against the destination's.
        let t = Instant::now();
        let digests: Vec<u64> = match digesting {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| full_digests(memory, live.disk.as_deref())),
            None if mode == VerifyMode::Full => full_digests(memory, live.disk.as_deref()),
            None => sent_digests
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .collect(),
        };
        let verified = self.verify(workers, replies, &digests);
        downtime.verify_ms = ms(t.elapsed());
        let (mismatched, first) = verified?;
        report.verification = Some(Verification {
            mode,
            pages: pages as u64,
            mismatched,
            digest_ok: mismatched == 0,
            audit: None,
        });
        if mismatched != 0 {
            report.downtime = Some(downtime);
            return Err(Failure::Before(MigrationError::new(
                ErrorKind::VerifyFailed,
                format!(
                    "Virtual machine migration operation for '{}' failed at migration source '{}': the memory of the virtual machine differs on the destination in {mismatched} pages (first: {}). The data is invalid. (0x8007000D).",
                    live.vm_name, self.host.name(), first.join(", ")
                ),
            )));
        }
        let t = Instant::now();
        self.commit(workers, replies)?;
        downtime.commit_ms = ms(t.elapsed());
        let total_downtime = blackout_start.elapsed().as_millis() as u64;
        report.downtime = Some(downtime);
        if mode == VerifyMode::Sent {
            // Off the blackout now: the source's copy stays paused until
            // this returns, so what it holds is what the VM had at the pause.
            let audit = self.audit(live, &digests);
            if let Some(v) = report.verification.as_mut() {
                v.audit = Some(audit);
            }
        }
        let mut info = self.info.lock().expect("info lock");
        let transferred = counters.transferred.load(Ordering::Relaxed);
        info.downtime = Some(total_downtime);
        info.ram.transferred = transferred;
        info.ram.precopy_bytes = precopy_bytes;
        info.ram.downtime_bytes = transferred - precopy_bytes;
        info.ram.remaining = 0;
        info.ram.normal = counters.normal.load(Ordering::Relaxed);
        info.ram.normal_bytes = info.ram.normal * PAGE_SIZE as u64;
        info.ram.duplicate = counters.duplicate.load(Ordering::Relaxed);
        info.ram.dirty_sync_count = pass;
        info.ram.pages_written =
            live.workload.as_ref().map_or(0, |w| w.pages_written()) - written_start;
        Ok(())
    }

    /// Waits until every stream has sent what it was given, then marks
    /// `pass` (with [`FINAL`] for the last) on each.
    fn flush_streams(&self, workers: &[Stream], pass: u64) -> Result<(), Failure> {
        let mut acks = Vec::new();
        for w in workers {
            let (tx, rx) = mpsc::sync_channel(1);
            w.jobs
                .send(Job::Flush(pass, tx))
                .map_err(|_| self.lost_stream())?;
            acks.push(rx);
        }
        for rx in acks {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Failure::Before(self.io_error(&e))),
                Err(_) => return Err(Failure::Before(self.lost_stream())),
            }
        }
        Ok(())
    }

    /// The VM's device state, sent in the blackout.
    fn send_device(&self, live: &Live, workers: &[Stream]) -> Result<(), Failure> {
        let device = DeviceState {
            blob: live.device.to_vec(),
        };
        let device = serde_json::to_vec(&device).unwrap_or_default();
        workers[0]
            .jobs
            .send(Job::Frame(Command::Device, device))
            .map_err(|_| self.lost_stream())?;
        Ok(())
    }

    /// Auto-converge (QEMU's): once a second, when the workload dirtied
    /// more than half of what was sent in that second twice running,
    /// throttle it (20 %, then 10 points more each time, at most 99 %).
    fn auto_converge(&self, live: &Live, dirtied_pages: u64, sent_bytes: u64, triggers: &mut u32) {
        let Some(w) = &live.workload else {
            return;
        };
        if dirtied_pages * PAGE_SIZE as u64 <= sent_bytes / 2 {
            return;
        }
        *triggers += 1;
        if *triggers >= 2 {
            let next = if w.throttle() == 0 {
                20
            } else {
                w.throttle() + 10
            };
            w.set_throttle(next.min(99));
            self.info.lock().expect("info lock").cpu_throttle_percentage = Some(w.throttle());
        }
    }

    /// Sends the digests of every page and returns how many the destination
    /// found different, with the first few as hex. Protocol 2 sends one
    /// folded digest first, and the list only when that differs.
    fn verify(
        &self,
        workers: &[Stream],
        replies: &Receiver<std::io::Result<(Command, Vec<u8>)>>,
        digests: &[u64],
    ) -> Result<(u64, Vec<String>), Failure> {
        let count = (digests.len() as u64).to_le_bytes();
        let verified = |command: Command, body: Vec<u8>| -> Result<Vec<u8>, Failure> {
            workers[0]
                .jobs
                .send(Job::Frame(command, body))
                .map_err(|_| self.lost_stream())?;
            match self.wait_reply(replies, Duration::from_secs(60))? {
                (Command::Verified, body) => Ok(body),
                (other, _) => Err(Failure::Before(protocol::unexpected(
                    Some(other),
                    "Verified",
                ))),
            }
        };
        let mut answer = None;
        if self.peer_version.load(Ordering::Relaxed) >= 2 {
            let mut body = count.to_vec();
            body.extend_from_slice(&fold_digests(digests.iter().copied()).to_le_bytes());
            let reply = verified(Command::VerifySummary, body)?;
            if Cursor::new(&reply).u64().ok() == Some(0) {
                answer = Some(reply);
            }
        }
        let body = match answer {
            Some(body) => body,
            None => {
                let mut body = Vec::with_capacity(8 + digests.len() * 8);
                body.extend_from_slice(&count);
                for d in digests {
                    body.extend_from_slice(&d.to_le_bytes());
                }
                verified(Command::Verify, body)?
            }
        };
        let mut c = Cursor::new(&body);
        let mismatched = c.u64().unwrap_or(u64::MAX);
        let first = (0..mismatched.min(8))
            .filter_map(|_| c.u64().ok())
            .map(|p| format!("{p:#x}"))
            .collect();
        Ok((mismatched, first))
    }

    /// Asks the destination to commit; a lost or wrong answer leaves the
    /// outcome in doubt (the caller asks the destination before resuming).
    fn commit(
        &self,
        workers: &[Stream],
        replies: &Receiver<std::io::Result<(Command, Vec<u8>)>>,
    ) -> Result<(), Failure> {
        workers[0]
            .jobs
            .send(Job::Frame(Command::Commit, Vec::new()))
            .map_err(|_| self.lost_stream())?;
        match self.wait_reply(replies, Duration::from_secs(30)) {
            Ok((Command::CommitAck, _)) => Ok(()),
            Ok((other, _)) => Err(Failure::InDoubt(protocol::unexpected(
                Some(other),
                "CommitAck",
            ))),
            Err(Failure::Before(e)) | Err(Failure::InDoubt(e)) => Err(Failure::InDoubt(e)),
        }
    }

    /// After the commit (`verify = sent`): the paused source memory against
    /// what was sent; a difference is a write the dirty tracker missed.
    fn audit(&self, live: &Live, sent: &[u64]) -> Audit {
        let t = Instant::now();
        let now = full_digests(&live.memory, live.disk.as_deref());
        let differing: Vec<u64> = now
            .iter()
            .zip(sent)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(p, _)| p as u64)
            .collect();
        if !differing.is_empty() {
            tracing::warn!(
                vm = %live.vm_name,
                pages = differing.len(),
                first = ?&differing[..differing.len().min(8)],
                "after the commit, the paused source memory differs from what was sent: writes the dirty tracker missed"
            );
        }
        Audit {
            pages: now.len() as u64,
            differing: differing.len() as u64,
            first: differing.iter().take(8).copied().collect(),
            ms: ms(t.elapsed()),
        }
    }

    fn update_info(
        &self,
        counters: &Counters,
        remaining: &PageSet,
        expected: u64,
        pass: u64,
        live: &Live,
    ) {
        let mut info = self.info.lock().expect("info lock");
        info.total_time = self.started.elapsed().as_millis() as u64;
        info.expected_downtime = Some(expected);
        info.ram.transferred = counters.transferred.load(Ordering::Relaxed);
        info.ram.precopy_bytes = info.ram.transferred;
        info.ram.remaining = (remaining.len() * PAGE_SIZE) as u64;
        info.ram.normal = counters.normal.load(Ordering::Relaxed);
        info.ram.normal_bytes = info.ram.normal * PAGE_SIZE as u64;
        info.ram.duplicate = counters.duplicate.load(Ordering::Relaxed);
        info.ram.dirty_sync_count = pass - 1;
        info.ram.pages_written = live.workload.as_ref().map_or(0, |w| w.pages_written());
    }

    fn lost_stream(&self) -> MigrationError {
        MigrationError::new(
            ErrorKind::ConnectionReset,
            format!("The Virtual Machine Management Service failed to complete the migration with host '{}': An existing connection was forcibly closed by the remote host. (0x80072746).", self.request.destination),
        )
    }

    fn reply_error(&self, reply: std::io::Result<(Command, Vec<u8>)>) -> MigrationError {
        match reply {
            Ok((Command::Reject, body)) => rejected(&body),
            Ok((other, _)) => protocol::unexpected(Some(other), "no reply during pre-copy"),
            Err(e) => self.io_error(&e),
        }
    }

    fn wait_reply(
        &self,
        replies: &Receiver<std::io::Result<(Command, Vec<u8>)>>,
        timeout: Duration,
    ) -> Result<(Command, Vec<u8>), Failure> {
        match replies.recv_timeout(timeout) {
            Ok(Ok((Command::Reject, body))) => Err(Failure::Before(rejected(&body))),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Failure::Before(self.io_error(&e))),
            Err(_) => Err(Failure::Before(MigrationError::new(
                ErrorKind::ConnectionTimeout,
                format!("The destination host '{}' did not answer in time: A connection attempt failed because the connected party did not properly respond after a period of time. (0x8007274C).", self.request.destination),
            ))),
        }
    }
}

/// Moves the pages and disk blocks written since the last sync into
/// `remaining` (re-arming both trackers first); how many were new.
fn sync_dirty(live: &Live, remaining: &mut PageSet) -> usize {
    let pages = live.memory.pages();
    live.memory.dirty().sync_and_clear(remaining)
        + live
            .disk
            .as_ref()
            .map_or(0, |d| d.dirty().sync_into(remaining, pages))
}

/// Digests of every page of the paused memory, then of every block of a
/// mirrored disk (an unreadable block gets a digest that cannot match).
fn full_digests(memory: &GuestMemory, disk: Option<&GuestDisk>) -> Vec<u64> {
    let mut out = memory.all_digests(2);
    if let Some(d) = disk {
        let pages = memory.pages();
        out.extend((0..d.blocks()).map(|b| d.digest(b, pages + b).unwrap_or(u64::MAX)));
    }
    out
}

/// What the convergence policy does when a pre-copy pass ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterPass {
    /// The dirty set does not fit the downtime limit yet: another pass.
    Continue,
    /// It fits, but the link outruns the workload by a quarter or more, so
    /// a pass sent to the end leaves at least a fifth less: it shortens the
    /// blackout for at most the limit in total time.
    ExtraPass,
    /// Pause and send the rest.
    SwitchOver,
}

/// The switch-over decision: `dirty` pages left, the workload dirtying
/// `dirty_rate` pages/s since the last sync, the limit as bytes at the
/// measured `bandwidth` (bytes/s), and `extra` = (extra passes taken,
/// allowed).
fn after_pass(
    dirty: u64,
    dirty_rate: f64,
    threshold: f64,
    bandwidth: f64,
    extra: (u32, u32),
) -> AfterPass {
    if dirty == 0 {
        return AfterPass::SwitchOver;
    }
    // No bandwidth measured yet: nothing to judge the limit by.
    if bandwidth <= 0.0 || (dirty as f64 * PAGE_SIZE as f64) > threshold {
        return AfterPass::Continue;
    }
    // The next pass leaves at least a fifth less than this one.
    let converging = dirty_rate * PAGE_SIZE as f64 * 1.25 <= bandwidth;
    if converging && dirty > EXTRA_PASS_FLOOR && extra.0 < extra.1 {
        AfterPass::ExtraPass
    } else {
        AfterPass::SwitchOver
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rejected(body: &[u8]) -> MigrationError {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        MigrationError::new(
            ErrorKind::Protocol,
            "The destination refused the migration with an unreadable reason.",
        )
    })
}

fn spawn_reader(mut reader: BufReader<TcpStream>, tx: Sender<std::io::Result<(Command, Vec<u8>)>>) {
    let _ = std::thread::Builder::new()
        .name("migration-replies".into())
        .spawn(move || {
            let mut body = Vec::new();
            loop {
                match protocol::read_frame(&mut reader, &mut body) {
                    Ok(Some(command)) => {
                        if tx.send(Ok((command, std::mem::take(&mut body)))).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = tx.send(Err(std::io::ErrorKind::UnexpectedEof.into()));
                        return;
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::{after_pass, AfterPass};

    const MB: f64 = 1e6;

    #[test]
    fn the_switch_over_waits_for_the_limit_then_takes_passes_while_the_link_outruns_the_workload() {
        // 2 GB/s; the limit at that bandwidth is 40 MB: 10,000 pages (41 MB) do not fit.
        let (bw, limit) = (2e9, 40.0 * MB);
        let slow = 25_600.0; // pages/s = 105 MB/s, far below the link
        let fast = 420_000.0; // pages/s = 1.7 GB/s, over four fifths of it
        use AfterPass::{Continue, ExtraPass, SwitchOver};
        // (dirty pages, dirty rate, bandwidth, extra passes (taken, allowed)) → decision
        for (dirty, rate, bandwidth, extra, want, why) in [
            (10_000, slow, bw, (0, 3), Continue, "41 MB does not fit"),
            (10, slow, 0.0, (0, 3), Continue, "no bandwidth measured yet"),
            (
                2_000,
                slow,
                bw,
                (0, 3),
                ExtraPass,
                "fits; a pass to the end leaves far less",
            ),
            (
                2_000,
                slow,
                bw,
                (0, 0),
                SwitchOver,
                "extra passes off (QEMU's rule)",
            ),
            (2_000, slow, bw, (3, 3), SwitchOver, "extra passes used up"),
            (
                2_000,
                fast,
                bw,
                (0, 3),
                SwitchOver,
                "the workload keeps pace with the link",
            ),
            (
                200,
                slow,
                bw,
                (1, 3),
                SwitchOver,
                "too small for another pass to gain",
            ),
        ] {
            assert_eq!(
                after_pass(dirty, rate, limit, bandwidth, extra),
                want,
                "{why}"
            );
        }
        assert_eq!(after_pass(0, 0.0, 0.0, 0.0, (0, 3)), AfterPass::SwitchOver);
    }
}
