//! A host: its configuration, the VMs it runs, memory accounting and the
//! pre-flight checks. Both directions of a migration sit on top of it:
//! `Host::open_listener` (in `destination.rs`) accepts migrations on the
//! configured address; `Host::migrate` (in `source.rs`) sends one of its
//! VMs to another host. The frames and bodies both sides exchange are in
//! `protocol.rs`; neither direction imports the other.
//!
//! A [`Host`] is cheap to clone (an `Arc`).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{HostConfig, VmConfig};
use crate::disk::GuestDisk;
use crate::error::{ErrorKind, MigrationError};
use crate::memory::GuestMemory;
use crate::report::{MigrationHandle, MigrationReport};
use crate::workload::Workload;

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
    /// The commit's answer was lost: the VM stays paused here until the
    /// destination says whether it runs it.
    MigrationInDoubt {
        /// VM name.
        vm_name: String,
        /// VM id.
        vm_id: String,
        /// The destination.
        peer: String,
        /// What happened.
        error: MigrationError,
    },
    /// An operator decided an in-doubt migration.
    InDoubtResolved {
        /// VM name.
        vm_name: String,
        /// VM id.
        vm_id: String,
        /// The destination.
        peer: String,
        /// What was decided and by whom.
        outcome: InDoubtOutcome,
    },
    /// A setting changed through the control API.
    SettingChanged {
        /// Which.
        setting: String,
        /// To what.
        value: String,
    },
}

/// How an in-doubt migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InDoubtOutcome {
    /// The destination committed: the VM runs (or ran) there; the paused
    /// copy here was discarded.
    Committed,
    /// The destination had not committed and now never will: the VM
    /// resumed here.
    Aborted,
    /// An operator resumed the VM here.
    OperatorResumedHere,
    /// An operator discarded the copy here (the destination runs it).
    OperatorDiscardedHere,
}

/// An operator's decision on an in-doubt VM (`relive resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InDoubtDecision {
    /// Resume the VM here: only safe when the destination does not run it.
    ResumeHere,
    /// Discard the copy here: the destination runs it.
    DiscardHere,
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
    /// Paused after a commit whose answer was lost: it must not run here
    /// until the destination says it does not run it (or an operator
    /// decides with `relive resolve`).
    InDoubt,
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
pub(crate) struct Reservation {
    pub(crate) mib: u64,
    pub(crate) node: Option<usize>,
}

pub(crate) struct HostInner {
    pub(crate) config: RwLock<HostConfig>,
    pub(crate) vms: Mutex<BTreeMap<String, Vm>>,
    pub(crate) reservations: Mutex<HashMap<u64, Reservation>>,
    pub(crate) migrations: AtomicUsize,
    pub(crate) sink: Arc<dyn NoticeSink>,
    pub(crate) sessions: Mutex<HashMap<u64, Arc<crate::destination::Session>>>,
    pub(crate) listener: Mutex<Option<ListenerHandle>>,
    pub(crate) outgoing: Mutex<BTreeMap<String, MigrationHandle>>,
    pub(crate) next_id: AtomicU64,
    /// Migrations a source resolved as not committed (`vm id/migration id`):
    /// their `Commit`, if it still arrives, is refused.
    pub(crate) fenced: Mutex<std::collections::HashSet<String>>,
    /// Operators' decisions on in-doubt VMs, by VM id.
    pub(crate) decisions: Mutex<HashMap<String, InDoubtDecision>>,
    /// In-doubt VMs this host knows only from its ledger (after a restart):
    /// VM id → (name, destination).
    pub(crate) in_doubt: Mutex<BTreeMap<String, (String, String)>>,
    /// Set by `shutdown`: in-doubt waits end without resuming anything.
    pub(crate) closing: std::sync::atomic::AtomicBool,
}

pub(crate) struct ListenerHandle {
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
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
                fenced: Mutex::new(std::collections::HashSet::new()),
                decisions: Mutex::new(HashMap::new()),
                in_doubt: Mutex::new(BTreeMap::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
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
        config.normalize_id();
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

    /// A VM's configuration, by id (`None` when it does not run here).
    pub fn vm_config(&self, id: &str) -> Option<VmConfig> {
        self.inner
            .vms
            .lock()
            .expect("vms lock")
            .get(id)
            .map(|vm| vm.config.clone())
    }

    /// Every VM here, in-doubt ones known only from the ledger included.
    pub fn list_vms(&self) -> Vec<VmSummary> {
        let mut list: Vec<VmSummary> = self
            .inner
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
            .collect();
        for (id, (name, _)) in self.inner.in_doubt.lock().expect("in-doubt lock").iter() {
            list.push(VmSummary {
                name: name.clone(),
                id: id.clone(),
                memory_mib: 0,
                state: VmState::InDoubt,
                counter: 0,
                pages_written: 0,
            });
        }
        list
    }

    /// This host's ledger (who runs which VM, durably).
    pub fn ledger(&self) -> crate::ledger::Ledger {
        crate::ledger::Ledger::new(&self.config().state_root())
    }

    /// Records an operator's decision on an in-doubt VM (by name or id);
    /// the migration waiting on it (or the resolver of a restarted host)
    /// acts on it within a second.
    pub fn decide_in_doubt(
        &self,
        name_or_id: &str,
        decision: InDoubtDecision,
    ) -> Result<String, MigrationError> {
        let id = match self.find_vm(name_or_id) {
            Ok(id) => id,
            Err(e) => {
                let known = self.inner.in_doubt.lock().expect("in-doubt lock");
                known
                    .iter()
                    .find(|(id, (name, _))| {
                        id.eq_ignore_ascii_case(name_or_id) || name.eq_ignore_ascii_case(name_or_id)
                    })
                    .map(|(id, _)| id.clone())
                    .ok_or(e)?
            }
        };
        let in_doubt = self.vm_state(&id) == Some(VmState::InDoubt)
            || self
                .inner
                .in_doubt
                .lock()
                .expect("in-doubt lock")
                .contains_key(&id);
        if !in_doubt {
            return Err(MigrationError::new(
                ErrorKind::VmNotFound,
                format!("There is no in-doubt migration of '{name_or_id}' on this host; nothing to resolve."),
            ));
        }
        self.inner
            .decisions
            .lock()
            .expect("decisions lock")
            .insert(id.clone(), decision);
        Ok(id)
    }

    pub(crate) fn take_decision(&self, vm_id: &str) -> Option<InDoubtDecision> {
        self.inner
            .decisions
            .lock()
            .expect("decisions lock")
            .remove(vm_id)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Relaxed)
    }

    /// Starts the VMs of the configuration, as the ledger allows: a VM
    /// that moved away is not started again; one in doubt is not started
    /// until its destination says it does not run it (a thread asks, as
    /// the interrupted migration would have). Returns what was not started
    /// and why.
    pub fn start_configured(&self, vms: Vec<VmConfig>) -> Result<Vec<String>, MigrationError> {
        let ledger = self.ledger();
        let mut skipped = Vec::new();
        for mut vm in vms {
            // The id `start_vm` would give it: the ledger is keyed by it.
            vm.normalize_id();
            match ledger.get(&vm.id).map(|e| e.placement) {
                None | Some(crate::ledger::Placement::Arrived { .. }) => {
                    self.start_vm(vm)?;
                }
                Some(crate::ledger::Placement::Moved { peer, .. }) => {
                    tracing::info!(vm = %vm.name, peer = %peer, "not started: it moved to another host");
                    skipped.push(format!("{} moved to {peer}", vm.name));
                }
                Some(crate::ledger::Placement::InDoubt {
                    peer,
                    address,
                    migration,
                }) => {
                    tracing::warn!(vm = %vm.name, peer = %peer, "not started: its migration is in doubt; asking {peer}");
                    skipped.push(format!("{} in doubt (asking {peer})", vm.name));
                    self.inner
                        .in_doubt
                        .lock()
                        .expect("in-doubt lock")
                        .insert(vm.id.clone(), (vm.name.clone(), peer.clone()));
                    let host = self.clone();
                    std::thread::Builder::new()
                        .name(format!("in-doubt {}", vm.name))
                        .spawn(move || host.resolve_after_restart(vm, peer, address, migration))
                        .map_err(|e| MigrationError::new(ErrorKind::Io, e.to_string()))?;
                }
            }
        }
        Ok(skipped)
    }

    /// The resolver of a VM found in doubt at start-up.
    fn resolve_after_restart(
        &self,
        vm: VmConfig,
        peer: String,
        address: SocketAddr,
        migration: String,
    ) {
        let outcome =
            crate::source::wait_in_doubt(self, &vm.id, &vm.name, &peer, address, &migration);
        self.inner
            .in_doubt
            .lock()
            .expect("in-doubt lock")
            .remove(&vm.id);
        let Some(outcome) = outcome else { return };
        match outcome {
            InDoubtOutcome::Aborted | InDoubtOutcome::OperatorResumedHere => {
                // The memory it had is gone with the old process: a cold
                // start, as a cluster restarts a VM whose host failed.
                let name = vm.name.clone();
                if let Err(e) = self.start_vm(vm) {
                    tracing::error!(vm = %name, error = %e, "cannot start the VM after its migration was resolved");
                }
            }
            InDoubtOutcome::Committed | InDoubtOutcome::OperatorDiscardedHere => {}
        }
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
                return Err(limit_reached(limit, &self.name()));
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

    /// Whether this host would accept `vm` now, asked before any page
    /// moves (the remediation engine picks a destination with it): live
    /// migration enabled, a free migration slot, then [`Host::preflight`].
    /// Reads only; reserves nothing.
    pub fn preflight_offer(&self, vm: &VmConfig) -> Result<Preflight, MigrationError> {
        let config = self.config();
        if !config.migration_enabled {
            return Err(migration_disabled(&config.name));
        }
        if self.active_migrations() >= config.max_migrations {
            return Err(limit_reached(config.max_migrations, &config.name));
        }
        let numa_node = self.preflight(vm)?;
        let used = self.node_use();
        let free_mib = config
            .numa_nodes()
            .iter()
            .zip(&used)
            .map(|(size, used)| size.saturating_sub(*used))
            .sum();
        Ok(Preflight {
            host: config.name.clone(),
            numa_node,
            free_mib,
        })
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
        // The cluster keeps every VM's collection registry under the shared
        // storage root (Hyper-V's ConfigStoreRootPath): gone, every VM is
        // refused (the seed 004: the CSV behind it was removed).
        if let Some(root) = config.shared_storage.as_ref().filter(|r| !r.exists()) {
            return Err(MigrationError::new(
                ErrorKind::SharedStorageMissing,
                format!(
                    "Failed to verify collection registry for virtual machine '{}': The system cannot find the file specified. (0x80070002). (Virtual Machine ID {}). The shared storage path '{}' (ConfigStoreRootPath) does not exist on host '{}'.",
                    vm.name,
                    vm.id,
                    root.display(),
                    config.name
                ),
            ));
        }
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

/// What a destination answers to a pre-flight offer it would accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    /// The host that answered.
    pub host: String,
    /// The NUMA node the VM would get (`None`: spanned across nodes).
    pub numa_node: Option<usize>,
    /// Memory free on the host now, MiB.
    pub free_mib: u64,
}

/// The refusal of a host with live migration turned off (Hyper-V's words).
pub(crate) fn migration_disabled(host: &str) -> MigrationError {
    MigrationError::new(
        ErrorKind::MigrationDisabled,
        format!("The Virtual Machine Management Service on host '{host}' has disabled the listener for Virtual Machine migration connections: live migration is not enabled on this host. No connection could be made because the target machine actively refused it. (0x8007274D)."),
    )
}

/// The refusal of a host whose migration slots are all taken.
pub(crate) fn limit_reached(limit: usize, host: &str) -> MigrationError {
    MigrationError::new(
        ErrorKind::LimitReached,
        format!(
            "The operation cannot be performed while the object is in use: the virtual machine migration limit \"{limit}\" was reached on host '{host}'. Retry after a migration in progress has completed. (0x800700AA)."
        ),
    )
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

pub(crate) use crate::config::fnv;

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
    /// Closes the listener and turns every VM off. An in-doubt migration
    /// stops waiting without resuming anything (its ledger entry stays, so
    /// the next start asks again).
    pub fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Relaxed);
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
