//! A host: its configuration, the VMs it runs, memory accounting, the
//! pre-flight checks, and the destination side of the protocol.
//!
//! A [`Host`] is cheap to clone (an `Arc`). `Host::open_listener` accepts
//! migrations on the configured address; `Host::migrate` (in `source.rs`)
//! sends one of its VMs to another host.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{cidr_contains, AuthMode, HostConfig, VmConfig};
use crate::disk::GuestDisk;
use crate::error::{ErrorKind, MigrationError};
use crate::memory::{bytes_digest, zero_digest, GuestMemory, PAGE_SIZE};
use crate::protocol::{self, page, Codec, Command, Cursor};
use crate::report::MigrationReport;
use crate::source::MigrationHandle;
use crate::workload::{position_of, Workload};

/// Which end of a migration a host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sends the VM.
    Source,
    /// Receives it.
    Destination,
}

/// Something a host did that its event log records. The binary turns these
/// into Hyper-V-shaped events; the core knows nothing of events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// A VM started.
    VmStarted {
        /// VM name.
        vm_name: String,
        /// VM id.
        vm_id: String,
    },
    /// A VM was turned off.
    VmStopped {
        /// VM name.
        vm_name: String,
        /// VM id.
        vm_id: String,
    },
    /// A migration began.
    MigrationStarted {
        /// VM name.
        vm_name: String,
        /// VM id.
        vm_id: String,
        /// This host's role.
        role: Role,
        /// The other host.
        peer: String,
    },
    /// A migration completed.
    MigrationSucceeded {
        /// VM name.
        vm_name: String,
        /// VM id.
        vm_id: String,
        /// This host's role.
        role: Role,
        /// The other host.
        peer: String,
        /// Blackout, ms.
        blackout_ms: u64,
        /// The source's report (source only).
        report: Option<Box<MigrationReport>>,
    },
    /// A migration failed; the VM runs on the source.
    MigrationFailed {
        /// VM name.
        vm_name: String,
        /// VM id.
        vm_id: String,
        /// This host's role.
        role: Role,
        /// The other host.
        peer: String,
        /// Why.
        error: MigrationError,
        /// The source's report (source only).
        report: Option<Box<MigrationReport>>,
    },
    /// A setting changed through the control API.
    SettingChanged {
        /// Which.
        setting: String,
        /// To what.
        value: String,
    },
}

/// Where a host's notices go.
pub trait NoticeSink: Send + Sync {
    /// Records one notice of host `host`.
    fn notice(&self, host: &str, notice: &Notice);
}

/// A sink that keeps notices in memory (tests, `relive demo`).
#[derive(Debug, Default)]
pub struct Notices(pub Mutex<Vec<Notice>>);

impl NoticeSink for Notices {
    fn notice(&self, _host: &str, notice: &Notice) {
        self.0.lock().expect("notices lock").push(notice.clone());
    }
}

impl Notices {
    /// A copy of what was recorded.
    pub fn all(&self) -> Vec<Notice> {
        self.0.lock().expect("notices lock").clone()
    }
}

/// State of a VM on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Running.
    Running,
    /// Being migrated away (still running until the blackout).
    Migrating,
    /// Paused for the blackout.
    Paused,
}

/// A VM on a host.
pub struct Vm {
    /// Its configuration.
    pub config: VmConfig,
    /// Its memory.
    pub memory: Arc<GuestMemory>,
    /// Its workload, when it runs one.
    pub workload: Option<Arc<Workload>>,
    /// Device state blob.
    pub device_state: Arc<Vec<u8>>,
    /// Its disk image, when it has one.
    pub disk: Option<Arc<GuestDisk>>,
    /// State.
    pub state: VmState,
    /// NUMA node it was placed on (`None` = spans nodes).
    pub numa_node: Option<usize>,
}

/// What the control API lists for a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSummary {
    /// Name.
    pub name: String,
    /// Id.
    pub id: String,
    /// MiB.
    pub memory_mib: u64,
    /// State.
    pub state: VmState,
    /// Workload passes completed (the guest-visible counter).
    pub counter: u64,
    /// Pages the workload wrote since it started here.
    pub pages_written: u64,
}

#[derive(Debug, Clone, Copy)]
struct Reservation {
    mib: u64,
    node: Option<usize>,
}

pub(crate) struct HostInner {
    pub(crate) config: RwLock<HostConfig>,
    pub(crate) vms: Mutex<BTreeMap<String, Vm>>,
    reservations: Mutex<HashMap<u64, Reservation>>,
    pub(crate) migrations: AtomicUsize,
    pub(crate) sink: Arc<dyn NoticeSink>,
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    listener: Mutex<Option<ListenerHandle>>,
    pub(crate) outgoing: Mutex<BTreeMap<String, MigrationHandle>>,
    next_id: AtomicU64,
}

struct ListenerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A host.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("name", &self.name()).finish()
    }
}

impl Host {
    /// A host with `config` whose notices go to `sink`. The listener is
    /// not opened yet: call [`Host::open_listener`].
    pub fn new(config: HostConfig, sink: Arc<dyn NoticeSink>) -> Host {
        Host {
            inner: Arc::new(HostInner {
                config: RwLock::new(config),
                vms: Mutex::new(BTreeMap::new()),
                reservations: Mutex::new(HashMap::new()),
                migrations: AtomicUsize::new(0),
                sink,
                sessions: Mutex::new(HashMap::new()),
                listener: Mutex::new(None),
                outgoing: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Host name.
    pub fn name(&self) -> String {
        self.config().name
    }

    /// A copy of the configuration.
    pub fn config(&self) -> HostConfig {
        self.inner.config.read().expect("config lock").clone()
    }

    /// Changes the configuration (a playbook's fix) and records it.
    pub fn update_config(&self, setting: &str, value: &str, change: impl FnOnce(&mut HostConfig)) {
        {
            let mut config = self.inner.config.write().expect("config lock");
            change(&mut config);
        }
        self.notice(&Notice::SettingChanged {
            setting: setting.into(),
            value: value.into(),
        });
    }

    pub(crate) fn notice(&self, notice: &Notice) {
        self.inner.sink.notice(&self.name(), notice);
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens the migration listener on the configured address (`listen`).
    /// Returns the bound address (port 0 picks one).
    pub fn open_listener(&self) -> std::io::Result<SocketAddr> {
        let Some(addr) = self.config().listen else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                "the host has no listen address",
            ));
        };
        self.close_listener();
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let host = Arc::downgrade(&self.inner);
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("migration-listener".into())
            .spawn(move || accept_loop(&host, &listener, &stop_flag, "migration-in", incoming))?;
        *self.inner.listener.lock().expect("listener lock") = Some(ListenerHandle {
            addr: bound,
            stop,
            thread: Some(thread),
        });
        self.inner.config.write().expect("config lock").listen = Some(bound);
        Ok(bound)
    }

    /// Closes the migration listener: new connections are refused.
    pub fn close_listener(&self) {
        let handle = self.inner.listener.lock().expect("listener lock").take();
        if let Some(mut handle) = handle {
            handle.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = handle.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The address the listener is bound to, when open.
    pub fn listener_addr(&self) -> Option<SocketAddr> {
        self.inner
            .listener
            .lock()
            .expect("listener lock")
            .as_ref()
            .map(|h| h.addr)
    }

    /// Memory in use or reserved, MiB, per NUMA node (a spanning VM counts
    /// on each node in proportion).
    fn node_use(&self) -> Vec<u64> {
        let nodes = self.config().numa_nodes();
        let mut used = vec![0u64; nodes.len()];
        let total: u64 = nodes.iter().sum::<u64>().max(1);
        let mut add = |mib: u64, node: Option<usize>| match node {
            Some(n) if n < used.len() => used[n] += mib,
            _ => {
                for (i, size) in nodes.iter().enumerate() {
                    used[i] += mib * size / total;
                }
            }
        };
        for vm in self.inner.vms.lock().expect("vms lock").values() {
            add(vm.config.memory_mib, vm.numa_node);
        }
        for r in self
            .inner
            .reservations
            .lock()
            .expect("reservations lock")
            .values()
        {
            add(r.mib, r.node);
        }
        used
    }

    /// Where a VM of `mib` MiB would go: `Ok(Some(node))`, `Ok(None)` to
    /// span nodes, or the Hyper-V error when it does not fit.
    fn place(&self, vm: &VmConfig) -> Result<Option<usize>, MigrationError> {
        let config = self.config();
        let nodes = config.numa_nodes();
        let used = self.node_use();
        let free: Vec<u64> = nodes
            .iter()
            .zip(&used)
            .map(|(size, used)| size.saturating_sub(*used))
            .collect();
        let mib = vm.memory_mib;
        if let Some(node) = (0..nodes.len()).find(|&n| free[n] >= mib) {
            return Ok(Some(node));
        }
        let total_free: u64 = free.iter().sum();
        if total_free < mib {
            return Err(MigrationError::new(
                ErrorKind::OutOfMemory,
                format!(
                    "'{}' could not initialize memory: Ran out of memory (0x8007000E). Host '{}' has {total_free} MB available and the virtual machine needs {mib} MB.",
                    vm.name, config.name
                ),
            ));
        }
        if !config.numa_spanning {
            return Err(MigrationError::new(
                ErrorKind::NumaNoFit,
                format!(
                    "'{}' Failed to create partition: Insufficient system resources exist to complete the requested service. (0x800705AA). No NUMA node of host '{}' has {mib} MB free and NUMA spanning is disabled.",
                    vm.name, config.name
                ),
            ));
        }
        Ok(None)
    }

    /// Starts a VM here: allocates its memory, fills it, starts its workload.
    pub fn start_vm(&self, mut config: VmConfig) -> Result<VmSummary, MigrationError> {
        if config.id.is_empty() {
            config.id = crate::config::guid_for(&config.name);
        }
        config.id = config.id.to_ascii_uppercase();
        if self.vm_state(&config.id).is_some() {
            return Err(MigrationError::new(
                ErrorKind::VmExists,
                format!(
                    "A virtual machine with id {} already exists on host '{}'.",
                    config.id,
                    self.name()
                ),
            ));
        }
        let host_config = self.config();
        check_vm_fits_host(&host_config, &config)?;
        let node = self.place(&config)?;
        let memory = Arc::new(GuestMemory::with_mib(config.memory_mib));
        let fill_pages = (config.fill_mib as usize) << 8;
        memory.fill(0, fill_pages.min(memory.pages()), fnv(&config.id));
        memory.write_word(0, 0, 0);
        let device_state = Arc::new(device_blob(&config.id));
        let disk = match &config.disk {
            None => None,
            Some(d) => {
                let path = host_config.disk_path(&config, d, false).ok_or_else(|| {
                    MigrationError::new(
                        ErrorKind::SharedStorageMissing,
                        format!("The virtual machine '{}' uses shared storage but host '{}' has none configured: The system cannot find the file specified. (0x80070002).", config.name, host_config.name),
                    )
                })?;
                let disk = GuestDisk::open(&path, d.size_mib, true).map_err(|e| {
                    MigrationError::new(
                        ErrorKind::Io,
                        format!(
                            "Cannot open the disk '{}' of '{}': {e}.",
                            path.display(),
                            config.name
                        ),
                    )
                })?;
                Some(Arc::new(disk))
            }
        };
        let workload = config.workload.clone().map(|spec| {
            Arc::new(Workload::start_with(
                memory.clone(),
                disk.clone(),
                spec,
                0,
                false,
            ))
        });
        let summary = VmSummary {
            name: config.name.clone(),
            id: config.id.clone(),
            memory_mib: config.memory_mib,
            state: VmState::Running,
            counter: 0,
            pages_written: 0,
        };
        self.notice(&Notice::VmStarted {
            vm_name: config.name.clone(),
            vm_id: config.id.clone(),
        });
        self.inner.vms.lock().expect("vms lock").insert(
            config.id.clone(),
            Vm {
                config,
                memory,
                workload,
                device_state,
                disk,
                state: VmState::Running,
                numa_node: node,
            },
        );
        Ok(summary)
    }

    /// Turns a VM off and frees its memory.
    pub fn stop_vm(&self, name_or_id: &str) -> Result<(), MigrationError> {
        let id = self.find_vm(name_or_id)?;
        if let Some(config) = self.discard_vm(&id) {
            self.notice(&Notice::VmStopped {
                vm_name: config.name,
                vm_id: config.id,
            });
        }
        Ok(())
    }

    /// Removes a VM and stops its workload (turned off, or moved away).
    pub(crate) fn discard_vm(&self, id: &str) -> Option<VmConfig> {
        let vm = self.inner.vms.lock().expect("vms lock").remove(id)?;
        if let Some(w) = &vm.workload {
            w.stop();
        }
        Some(vm.config)
    }

    /// The id of the VM named or identified by `name_or_id`.
    pub fn find_vm(&self, name_or_id: &str) -> Result<String, MigrationError> {
        let vms = self.inner.vms.lock().expect("vms lock");
        vms.values()
            .find(|vm| {
                vm.config.id.eq_ignore_ascii_case(name_or_id)
                    || vm.config.name.eq_ignore_ascii_case(name_or_id)
            })
            .map(|vm| vm.config.id.clone())
            .ok_or_else(|| {
                MigrationError::new(
                    ErrorKind::VmNotFound,
                    format!(
                        "The virtual machine '{name_or_id}' was not found on host '{}'.",
                        self.inner.config.read().expect("config lock").name
                    ),
                )
            })
    }

    /// Sets the state of a VM by id (the source side of a migration).
    pub(crate) fn set_vm_state(&self, id: &str, state: VmState) {
        if let Some(vm) = self.inner.vms.lock().expect("vms lock").get_mut(id) {
            vm.state = state;
        }
    }

    /// State of a VM by id.
    pub fn vm_state(&self, id: &str) -> Option<VmState> {
        self.inner
            .vms
            .lock()
            .expect("vms lock")
            .get(&id.to_ascii_uppercase())
            .map(|vm| vm.state)
    }

    /// Memory of a VM by name or id (tests compare it).
    pub fn vm_memory(&self, name_or_id: &str) -> Option<Arc<GuestMemory>> {
        let id = self.find_vm(name_or_id).ok()?;
        self.inner
            .vms
            .lock()
            .expect("vms lock")
            .get(&id)
            .map(|vm| vm.memory.clone())
    }

    /// Pauses a VM's workload (tests take a reference copy of its memory).
    pub fn pause_vm(&self, name_or_id: &str) -> Result<(), MigrationError> {
        self.with_workload(name_or_id, |w| w.pause())
    }

    /// Resumes a VM's workload.
    pub fn resume_vm(&self, name_or_id: &str) -> Result<(), MigrationError> {
        self.with_workload(name_or_id, |w| w.resume())
    }

    fn with_workload(
        &self,
        name_or_id: &str,
        f: impl FnOnce(&Workload),
    ) -> Result<(), MigrationError> {
        let id = self.find_vm(name_or_id)?;
        let workload = self
            .inner
            .vms
            .lock()
            .expect("vms lock")
            .get(&id)
            .and_then(|vm| vm.workload.clone());
        if let Some(w) = workload {
            f(&w);
        }
        Ok(())
    }

    /// Every VM here.
    pub fn list_vms(&self) -> Vec<VmSummary> {
        self.inner
            .vms
            .lock()
            .expect("vms lock")
            .values()
            .map(|vm| VmSummary {
                name: vm.config.name.clone(),
                id: vm.config.id.clone(),
                memory_mib: vm.config.memory_mib,
                state: vm.state,
                counter: vm.memory.read_word(0, 0),
                pages_written: vm.workload.as_ref().map_or(0, |w| w.pages_written()),
            })
            .collect()
    }

    /// Migrations in and out right now.
    pub fn active_migrations(&self) -> usize {
        self.inner.migrations.load(Ordering::SeqCst)
    }

    /// Takes a migration slot, or the limit error.
    pub(crate) fn take_slot(&self) -> Result<SlotGuard, MigrationError> {
        let limit = self.config().max_migrations;
        let mut current = self.inner.migrations.load(Ordering::SeqCst);
        loop {
            if current >= limit {
                return Err(MigrationError::new(
                    ErrorKind::LimitReached,
                    format!(
                        "The operation cannot be performed while the object is in use: the virtual machine migration limit \"{limit}\" was reached on host '{}'. Retry after a migration in progress has completed. (0x800700AA).",
                        self.name()
                    ),
                ));
            }
            match self.inner.migrations.compare_exchange(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(SlotGuard(self.inner.clone())),
                Err(now) => current = now,
            }
        }
    }

    /// Runs the destination's pre-flight checks for `vm` arriving from
    /// `peer`: configuration version, processor, switches, shared storage,
    /// memory and NUMA. (Migration enabled, network, authentication and
    /// the limit are checked before the offer is read.)
    pub fn preflight(&self, vm: &VmConfig) -> Result<Option<usize>, MigrationError> {
        let config = self.config();
        if self.vm_state(&vm.id).is_some() {
            return Err(MigrationError::new(
                ErrorKind::VmExists,
                format!(
                    "Virtual machine migration operation for '{}' failed at migration destination '{}': a virtual machine with the same identifier ({}) already exists.",
                    vm.name, config.name, vm.id
                ),
            ));
        }
        check_vm_fits_host(&config, vm)?;
        if let Some(disk) = vm.disk.as_ref().filter(|d| d.shared) {
            let root = config.shared_storage.clone().unwrap_or_default();
            let path = root.join(&disk.path);
            if config.shared_storage.is_none() || !path.exists() {
                return Err(MigrationError::new(
                    ErrorKind::SharedStorageMissing,
                    format!(
                        "Failed to verify collection registry for virtual machine '{}': The system cannot find the file specified. (0x80070002). (Virtual Machine ID {}). The path '{}' does not exist on host '{}'.",
                        vm.name,
                        vm.id,
                        path.display(),
                        config.name
                    ),
                ));
            }
        }
        self.place(vm)
    }
}

/// Checks a VM's configuration against a host's: version, processor,
/// switches (used when starting a VM and in pre-flight).
fn check_vm_fits_host(config: &HostConfig, vm: &VmConfig) -> Result<(), MigrationError> {
    if !config.config_versions.contains(&vm.config_version) {
        return Err(MigrationError::new(
            ErrorKind::ConfigVersionUnsupported,
            format!(
                "Virtual machine migration operation for '{}' failed at migration destination '{}': the virtual machine configuration version {} is not supported on this host. Supported versions: {}.",
                vm.name,
                config.name,
                vm.config_version,
                config.config_versions.join(", ")
            ),
        ));
    }
    let missing: Vec<&str> = vm
        .processor
        .features
        .iter()
        .filter(|f| !config.processor.features.contains(f))
        .map(String::as_str)
        .collect();
    if vm.processor.vendor != config.processor.vendor || !missing.is_empty() {
        let what = if vm.processor.vendor != config.processor.vendor {
            format!(
                "processor vendor {} is not {}",
                config.processor.vendor, vm.processor.vendor
            )
        } else {
            format!(
                "processor-specific features not supported: {}",
                missing.join(", ")
            )
        };
        return Err(MigrationError::new(
            ErrorKind::ProcessorIncompatible,
            format!(
                "The virtual machine '{}' is using processor-specific features not supported on physical computer '{}'. The hardware on the destination computer isn't compatible with the hardware requirements of this virtual machine ({what}). To allow for migration of this virtual machine to physical computers with different processors, modify the virtual machine settings to limit the processor features used by the virtual machine.",
                vm.name, config.name
            ),
        ));
    }
    for nic in &vm.nics {
        if !config.switches.iter().any(|s| s == &nic.switch) {
            return Err(MigrationError::new(
                ErrorKind::SwitchMissing,
                format!(
                    "'{}' failed to live migrate because a virtual switch used by the VM doesn't exist on the destination node '{}': the virtual switch '{}' was not found (switch names are case-sensitive).",
                    vm.name, config.name, nic.switch
                ),
            ));
        }
    }
    Ok(())
}

/// Releases a migration slot when dropped.
pub(crate) struct SlotGuard(Arc<HostInner>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.migrations.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The device state of a VM: a blob (its "CPU and device registers").
fn device_blob(id: &str) -> Vec<u8> {
    let mut x = fnv(id) | 1;
    (0..16 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn fnv(text: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b = (t ^ fnv(&format!("{:?}", std::thread::current().id()))).to_le_bytes();
    }
    u64::from_le_bytes(b)
}

/// The offer a source makes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Offer {
    pub vm: VmConfig,
    pub pages: u64,
    /// Disk blocks that follow the pages (a shared-nothing disk), or 0.
    #[serde(default)]
    pub disk_blocks: u64,
    pub streams: u32,
    pub codec: Codec,
}

/// The destination's acceptance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Accept {
    pub session: u64,
    /// The destination's protocol version (absent from version 1).
    #[serde(default)]
    pub version: u16,
}

/// Device state sent in the blackout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceState {
    pub blob: Vec<u8>,
}

/// An incoming migration's state, shared by its streams.
struct Session {
    memory: Arc<GuestMemory>,
    /// The disk: mirrored block by block (shared-nothing), or the shared
    /// image handed over.
    disk: Option<Arc<GuestDisk>>,
    /// True when the disk's blocks arrive after the pages.
    mirror: bool,
    digests: Vec<AtomicU64>,
    streams: u32,
    codec: Codec,
    /// Last `PassEnd` seen on each stream.
    pass_seen: Mutex<Vec<u64>>,
    changed: Condvar,
    failed: AtomicBool,
}

/// A connection handler run on a thread of its own per connection.
pub(crate) type Handler = fn(&Host, TcpStream, SocketAddr) -> std::io::Result<()>;

/// Accepts connections until `stop`, each handled on a named thread.
pub(crate) fn accept_loop(
    host: &std::sync::Weak<HostInner>,
    listener: &TcpListener,
    stop: &AtomicBool,
    name: &'static str,
    handler: Handler,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let Some(inner) = host.upgrade() else { return };
                let host = Host { inner };
                let _ = std::thread::Builder::new().name(name.into()).spawn(move || {
                    if let Err(e) = handler(&host, stream, peer) {
                        tracing::warn!(host = %host.name(), %peer, error = %e, "{name} connection ended with an error");
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn reject(out: &mut impl Write, error: &MigrationError) -> std::io::Result<()> {
    let body = serde_json::to_vec(error).unwrap_or_default();
    protocol::write_frame(out, Command::Reject, &[&body])?;
    out.flush()
}

fn bad_data(text: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, text.to_string())
}

/// One incoming connection: a new migration (`Hello`), an extra stream of
/// one (`Join`), or a question about a VM (`Query`).
fn incoming(host: &Host, stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    // Small buffers: page batches (256 KiB) bypass them instead of being copied twice.
    let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(64 << 10, stream);
    let mut body = Vec::new();
    match protocol::read_frame(&mut reader, &mut body)? {
        Some(Command::Hello) => {}
        Some(Command::Join) => {
            let mut c = Cursor::new(&body);
            let session = c.u64()?;
            let index = c.u32()?;
            let found = host
                .inner
                .sessions
                .lock()
                .expect("sessions lock")
                .get(&session)
                .cloned();
            let Some(session) = found else {
                return Err(bad_data("join for an unknown session"));
            };
            if index == 0 || index >= session.streams {
                return Err(bad_data("join with a bad stream index"));
            }
            return receive_stream(&session, &mut reader, index as usize).map(|_| ());
        }
        Some(Command::Query) => {
            let id = String::from_utf8_lossy(&body).to_ascii_uppercase();
            let state = host.vm_state(&id);
            let answer = serde_json::json!({ "vm_id": id, "state": state });
            protocol::write_frame(
                &mut writer,
                Command::Status,
                &[answer.to_string().as_bytes()],
            )?;
            return writer.flush();
        }
        other => return Err(bad_data(&format!("expected Hello, got {other:?}"))),
    }
    let config = host.config();
    // Hello: magic, version, source, initiator, nonce.
    let mut c = Cursor::new(&body);
    let magic = c.bytes(4)?;
    let version = c.u16()?;
    let source = c.str()?;
    let initiator = c.str()?;
    let source_nonce = c.u64()?;
    if magic != protocol::MAGIC
        || !(protocol::VERSION.saturating_sub(1)..=protocol::VERSION).contains(&version)
    {
        let e = MigrationError::new(
            ErrorKind::Protocol,
            format!("The migration protocol version {version} of host '{source}' is not supported by host '{}' (supported: {}).", config.name, protocol::VERSION),
        );
        return reject(&mut writer, &e);
    }
    let early = |e: MigrationError, writer: &mut BufWriter<TcpStream>| -> std::io::Result<()> {
        host.notice(&Notice::MigrationFailed {
            vm_name: String::new(),
            vm_id: String::new(),
            role: Role::Destination,
            peer: source.clone(),
            error: e.clone(),
            report: None,
        });
        reject(writer, &e)
    };
    if !config.migration_enabled {
        return early(
            MigrationError::new(
                ErrorKind::MigrationDisabled,
                format!("The Virtual Machine Management Service on host '{}' has disabled the listener for Virtual Machine migration connections: live migration is not enabled on this host. No connection could be made because the target machine actively refused it. (0x8007274D).", config.name),
            ),
            &mut writer,
        );
    }
    if !config.migration_networks.is_empty()
        && !config
            .migration_networks
            .iter()
            .any(|n| cidr_contains(n, peer.ip()))
    {
        return early(
            MigrationError::new(
                ErrorKind::MigrationNetwork,
                format!("Failed to get the network address for the destination node '{}': A cluster network is not available for this operation. The source address {} is not on a network accepted for live migration ({}). (0x000013AB).", config.name, peer.ip(), config.migration_networks.join(", ")),
            ),
            &mut writer,
        );
    }
    let nonce = random_u64();
    protocol::write_frame(&mut writer, Command::Challenge, &[&nonce.to_le_bytes()])?;
    writer.flush()?;
    match protocol::read_frame(&mut reader, &mut body)? {
        Some(Command::Proof) => {}
        other => return Err(bad_data(&format!("expected Proof, got {other:?}"))),
    }
    let expected = protocol::hmac_sha256(
        config.auth.secret_for(&source).as_bytes(),
        &[
            &source_nonce.to_le_bytes(),
            &nonce.to_le_bytes(),
            source.as_bytes(),
            initiator.as_bytes(),
        ],
    );
    if !protocol::mac_eq(&body, &expected) {
        tracing::warn!(host = %config.name, %source, %peer, "migration refused: wrong credential");
        return early(
            MigrationError::new(
                ErrorKind::CredentialsNotRecognized,
                format!("Host '{}' failed to authenticate the connection from '{source}': The credentials supplied to the package were not recognized (0x8009030D).", config.name),
            ),
            &mut writer,
        );
    }
    if !initiator.eq_ignore_ascii_case(&source) {
        let trusted = config
            .auth
            .trusted_initiators
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&initiator));
        let refused = match config.auth.mode {
            AuthMode::Direct => Some(MigrationError::new(
                ErrorKind::NoCredentials,
                format!("Failed to authenticate the connection at the source host: No credentials are available in the security package (0x8009030E). The migration of a virtual machine from '{source}' to '{}' was initiated on '{initiator}'; with CredSSP it must be initiated on the source host.", config.name),
            )),
            AuthMode::Delegated if !trusted => Some(MigrationError::new(
                ErrorKind::CredentialsNotRecognized,
                format!("Host '{}' failed to authenticate the connection: no suitable credentials are available to delegate from '{initiator}'. The credentials supplied to the package were not recognized (0x8009030D).", config.name),
            )),
            AuthMode::Delegated => None,
        };
        if let Some(e) = refused {
            return early(e, &mut writer);
        }
    }
    // The offer and the pre-flight checks.
    match protocol::read_frame(&mut reader, &mut body)? {
        Some(Command::Offer) => {}
        other => return Err(bad_data(&format!("expected Offer, got {other:?}"))),
    }
    let offer: Offer =
        serde_json::from_slice(&body).map_err(|e| bad_data(&format!("bad offer: {e}")))?;
    let vm = offer.vm.clone();
    let expected_pages = (vm.memory_mib as usize) << 8;
    if offer.pages as usize != expected_pages || offer.streams == 0 || offer.streams > 64 {
        return early(
            MigrationError::new(
                ErrorKind::Protocol,
                format!(
                    "The offer for '{}' is inconsistent: {} pages for {} MB, {} streams.",
                    vm.name, offer.pages, vm.memory_mib, offer.streams
                ),
            ),
            &mut writer,
        );
    }
    let slot = match host.take_slot() {
        Ok(slot) => slot,
        Err(e) => return early(e, &mut writer),
    };
    let node = match host.preflight(&vm) {
        Ok(node) => node,
        Err(e) => {
            host.notice(&Notice::MigrationFailed {
                vm_name: vm.name.clone(),
                vm_id: vm.id.clone(),
                role: Role::Destination,
                peer: source.clone(),
                error: e.clone(),
                report: None,
            });
            return reject(&mut writer, &e);
        }
    };
    // Skeleton VM: the memory is reserved (and really allocated) now.
    // The disk: a new local image for a shared-nothing move, or the shared
    // image itself (pre-flight checked that it exists).
    let mut disk = None;
    let mut mirror = false;
    if let Some(d) = &vm.disk {
        let opened = config
            .disk_path(&vm, d, true)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no shared storage"))
            .and_then(|path| GuestDisk::open(&path, d.size_mib, !d.shared));
        match opened {
            Ok(g) => {
                mirror = !d.shared;
                disk = Some(Arc::new(g));
            }
            Err(e) => {
                return early(
                    MigrationError::new(
                        ErrorKind::Io,
                        format!(
                            "Host '{}' cannot open the disk of '{}': {e}.",
                            config.name, vm.name
                        ),
                    ),
                    &mut writer,
                )
            }
        }
    }
    let blocks = if mirror {
        disk.as_ref().map_or(0, |d| d.blocks())
    } else {
        0
    };
    if blocks as u64 != offer.disk_blocks {
        return early(
            MigrationError::new(
                ErrorKind::Protocol,
                format!(
                    "The offer for '{}' carries {} disk blocks where {} were expected.",
                    vm.name, offer.disk_blocks, blocks
                ),
            ),
            &mut writer,
        );
    }
    let session_id = random_u64();
    host.inner
        .reservations
        .lock()
        .expect("reservations lock")
        .insert(
            session_id,
            Reservation {
                mib: vm.memory_mib,
                node,
            },
        );
    let memory = Arc::new(GuestMemory::with_mib(vm.memory_mib));
    let session = Arc::new(Session {
        digests: (0..memory.pages() + blocks)
            .map(|p| AtomicU64::new(zero_digest(p)))
            .collect(),
        memory,
        disk,
        mirror,
        streams: offer.streams,
        codec: offer.codec,
        pass_seen: Mutex::new(vec![0; offer.streams as usize]),
        changed: Condvar::new(),
        failed: AtomicBool::new(false),
    });
    host.inner
        .sessions
        .lock()
        .expect("sessions lock")
        .insert(session_id, session.clone());
    host.notice(&Notice::MigrationStarted {
        vm_name: vm.name.clone(),
        vm_id: vm.id.clone(),
        role: Role::Destination,
        peer: source.clone(),
    });
    let accept = serde_json::to_vec(&Accept {
        session: session_id,
        version: protocol::VERSION,
    })
    .unwrap_or_default();
    protocol::write_frame(&mut writer, Command::Accept, &[&accept])?;
    writer.flush()?;
    let outcome = receive_migration(host, &session, &mut reader, &mut writer, &vm, node);
    host.inner
        .sessions
        .lock()
        .expect("sessions lock")
        .remove(&session_id);
    host.inner
        .reservations
        .lock()
        .expect("reservations lock")
        .remove(&session_id);
    drop(slot);
    session.failed.store(true, Ordering::Relaxed);
    session.changed.notify_all();
    match outcome {
        Ok(blackout_ms) => {
            host.notice(&Notice::MigrationSucceeded {
                vm_name: vm.name.clone(),
                vm_id: vm.id.clone(),
                role: Role::Destination,
                peer: source,
                blackout_ms,
                report: None,
            });
            Ok(())
        }
        Err(e) => {
            let error = match e {
                Received::Error(e) => e,
                Received::Io(io) => MigrationError::from_io(&io, &source),
            };
            // Tell the source the real cause when the connection still works.
            let _ = reject(&mut writer, &error);
            host.notice(&Notice::MigrationFailed {
                vm_name: vm.name.clone(),
                vm_id: vm.id.clone(),
                role: Role::Destination,
                peer: source,
                error,
                report: None,
            });
            Ok(())
        }
    }
}

enum Received {
    Error(MigrationError),
    Io(std::io::Error),
}

impl From<std::io::Error> for Received {
    fn from(e: std::io::Error) -> Self {
        Received::Io(e)
    }
}

/// Applies `Pages` frames of stream `index` until its final `PassEnd`
/// (a pass number with the top bit set) or a control frame, which is
/// returned (stream 0 only).
fn receive_stream(
    session: &Session,
    reader: &mut impl std::io::Read,
    index: usize,
) -> std::io::Result<Option<(Command, Vec<u8>)>> {
    let mut body = Vec::new();
    let mut plain: Vec<u8>;
    loop {
        let command = match protocol::read_frame(reader, &mut body) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Err(e) => {
                session.failed.store(true, Ordering::Relaxed);
                session.changed.notify_all();
                return Err(e);
            }
        };
        match command {
            Command::Pages => {
                let data: &[u8] = match session.codec {
                    Codec::None => &body,
                    Codec::Lz4 => {
                        plain = lz4_flex::decompress_size_prepended(&body)
                            .map_err(|e| bad_data(&format!("bad LZ4 batch: {e}")))?;
                        &plain
                    }
                };
                apply_pages(session, data, index)?;
            }
            Command::PassEnd => {
                let pass = Cursor::new(&body).u64()?;
                let mut seen = session.pass_seen.lock().expect("pass lock");
                seen[index] = pass;
                session.changed.notify_all();
                if index != 0 && pass & FINAL != 0 {
                    return Ok(None);
                }
            }
            other if index == 0 => return Ok(Some((other, std::mem::take(&mut body)))),
            other => return Err(bad_data(&format!("{other:?} on a data stream"))),
        }
    }
}

/// Marks the pass number of the last pass.
pub(crate) const FINAL: u64 = 1 << 63;

fn apply_pages(session: &Session, data: &[u8], index: usize) -> std::io::Result<()> {
    let mut c = Cursor::new(data);
    let count = c.u32()?;
    let pages = session.memory.pages();
    let disk = session.disk.as_ref().filter(|_| session.mirror);
    let total = pages + disk.map_or(0, |d| d.blocks());
    for _ in 0..count {
        let head = c.u64()?;
        let page = (head >> 8) as usize;
        let kind = (head & 0xff) as u8;
        if page >= total || page % session.streams as usize != index {
            return Err(bad_data(&format!(
                "page {page} out of range or on the wrong stream"
            )));
        }
        let bytes = match kind {
            page::ZERO => None,
            page::RAW => Some(c.bytes(PAGE_SIZE)?),
            other => return Err(bad_data(&format!("unknown page kind {other}"))),
        };
        let digest = match (bytes, page < pages) {
            (None, true) => {
                session.memory.zero_page(page);
                zero_digest(page)
            }
            (Some(b), true) => session.memory.write_page_digest(page, b),
            (b, false) => {
                let zeros = [0u8; PAGE_SIZE];
                let b = b.unwrap_or(&zeros);
                if let Some(d) = disk {
                    d.write_block(page - pages, b)?;
                }
                bytes_digest(b, page)
            }
        };
        session.digests[page].store(digest, Ordering::Relaxed);
    }
    Ok(())
}

/// The destination's side after `Accept`: pages, device state, verify,
/// commit. Returns the blackout as seen here (ms from the final pass to the
/// VM running).
fn receive_migration(
    host: &Host,
    session: &Arc<Session>,
    reader: &mut BufReader<TcpStream>,
    writer: &mut BufWriter<TcpStream>,
    vm: &VmConfig,
    node: Option<usize>,
) -> Result<u64, Received> {
    let mut device: Option<DeviceState> = None;
    let mut final_at: Option<Instant> = None;
    loop {
        let Some((command, body)) = receive_stream(session, reader, 0)? else {
            return Err(Received::Io(std::io::ErrorKind::UnexpectedEof.into()));
        };
        match command {
            Command::Device => {
                final_at.get_or_insert_with(Instant::now);
                device = Some(
                    serde_json::from_slice(&body)
                        .map_err(|e| bad_data(&format!("bad device state: {e}")))?,
                );
            }
            Command::Verify | Command::VerifySummary => {
                final_at.get_or_insert_with(Instant::now);
                // Every stream must have delivered its final pass.
                {
                    let mut seen = session.pass_seen.lock().expect("pass lock");
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while seen.iter().any(|p| p & FINAL == 0) {
                        if session.failed.load(Ordering::Relaxed) || Instant::now() > deadline {
                            return Err(Received::Error(MigrationError::new(
                                ErrorKind::ConnectionReset,
                                format!("A data stream of the migration of '{}' ended before its final pass: An existing connection was forcibly closed by the remote host. (0x80072746).", vm.name),
                            )));
                        }
                        seen = session
                            .changed
                            .wait_timeout(seen, Duration::from_millis(50))
                            .expect("pass lock")
                            .0;
                    }
                }
                let mut mismatched = Vec::new();
                let mut c = Cursor::new(&body);
                let count = c.u64()? as usize;
                if count != session.digests.len() {
                    return Err(Received::Error(MigrationError::new(
                        ErrorKind::Protocol,
                        "The digest list does not cover the memory.",
                    )));
                }
                if command == Command::VerifySummary {
                    let theirs = c.u64()?;
                    let mine = crate::memory::fold_digests(
                        session.digests.iter().map(|d| d.load(Ordering::Relaxed)),
                    );
                    let answer = if theirs == mine {
                        0
                    } else {
                        protocol::SUMMARY_DIFFERS
                    };
                    protocol::write_frame(writer, Command::Verified, &[&answer.to_le_bytes()])?;
                    writer.flush()?;
                    continue;
                }
                for (page, mine) in session.digests.iter().enumerate() {
                    if c.u64()? != mine.load(Ordering::Relaxed) {
                        mismatched.push(page as u64);
                    }
                }
                let mut out = Vec::with_capacity(8 + mismatched.len() * 8);
                out.extend_from_slice(&(mismatched.len() as u64).to_le_bytes());
                for p in mismatched.iter().take(4096) {
                    out.extend_from_slice(&p.to_le_bytes());
                }
                protocol::write_frame(writer, Command::Verified, &[&out])?;
                writer.flush()?;
            }
            Command::Commit => {
                let Some(device) = device.take() else {
                    return Err(Received::Error(MigrationError::new(
                        ErrorKind::Protocol,
                        "Commit before the device state.",
                    )));
                };
                // Resume here: the VM runs on this host from now on.
                let memory = session.memory.clone();
                let paused = host.config().incoming_paused;
                if let Some(d) = &session.disk {
                    d.sync()?;
                }
                let workload = vm.workload.clone().map(|spec| {
                    let position = position_of(&memory, &spec);
                    Arc::new(Workload::start_with(
                        memory.clone(),
                        session.disk.clone(),
                        spec,
                        position,
                        paused,
                    ))
                });
                host.inner.vms.lock().expect("vms lock").insert(
                    vm.id.clone(),
                    Vm {
                        config: vm.clone(),
                        memory,
                        workload,
                        device_state: Arc::new(device.blob),
                        disk: session.disk.clone(),
                        state: VmState::Running,
                        numa_node: node,
                    },
                );
                let blackout = final_at.map_or(0, |t| t.elapsed().as_millis() as u64);
                // The announcement (the analog of the ARP update) goes with the ack.
                let ack = serde_json::json!({ "announced": host.name(), "vm_id": vm.id });
                protocol::write_frame(writer, Command::CommitAck, &[ack.to_string().as_bytes()])?;
                writer.flush()?;
                return Ok(blackout);
            }
            Command::Abort => {
                let error: MigrationError = serde_json::from_slice(&body).unwrap_or_else(|_| {
                    MigrationError::new(
                        ErrorKind::Cancelled,
                        "The migration was cancelled by the source.",
                    )
                });
                return Err(Received::Error(error));
            }
            other => return Err(Received::Io(bad_data(&format!("unexpected {other:?}")))),
        }
    }
}

impl Host {
    /// Asks the host at `addr` whether VM `id` runs there (after a lost
    /// commit acknowledgement).
    pub fn query_remote(addr: SocketAddr, id: &str) -> std::io::Result<Option<VmState>> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut writer = BufWriter::new(stream.try_clone()?);
        protocol::write_frame(&mut writer, Command::Query, &[id.as_bytes()])?;
        writer.flush()?;
        let mut reader = BufReader::new(stream);
        let mut body = Vec::new();
        match protocol::read_frame(&mut reader, &mut body)? {
            Some(Command::Status) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| bad_data(&e.to_string()))?;
                Ok(serde_json::from_value(v["state"].clone()).unwrap_or(None))
            }
            other => Err(bad_data(&format!("expected Status, got {other:?}"))),
        }
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        if let Ok(mut l) = self.listener.lock() {
            if let Some(handle) = l.take() {
                handle.stop.store(true, Ordering::Relaxed);
            }
        }
        if let Ok(vms) = self.vms.lock() {
            for vm in vms.values() {
                if let Some(w) = &vm.workload {
                    w.stop();
                }
            }
        }
    }
}

impl Host {
    /// Closes the listener and turns every VM off.
    pub fn shutdown(&self) {
        self.close_listener();
        let vms: Vec<String> = self
            .inner
            .vms
            .lock()
            .expect("vms lock")
            .keys()
            .cloned()
            .collect();
        for id in vms {
            let _ = self.stop_vm(&id);
        }
    }
}
