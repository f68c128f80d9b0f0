//! Host and VM configuration (TOML through serde, defaults that work).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::workload::WorkloadSpec;

/// Default migration port (Hyper-V uses 6600).
pub const DEFAULT_PORT: u16 = 6600;

/// A processor: vendor, family and the features it offers (host) or that
/// a VM uses (VM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    /// `GenuineIntel`, `AuthenticAMD`.
    #[serde(default = "default_vendor")]
    pub vendor: String,
    /// Family number.
    #[serde(default = "default_family")]
    pub family: u32,
    /// Feature flags (`sse4_2`, `avx2`, `avx512f` …).
    #[serde(default = "default_features")]
    pub features: Vec<String>,
}

fn default_vendor() -> String {
    "AuthenticAMD".into()
}
fn default_family() -> u32 {
    25
}
fn default_features() -> Vec<String> {
    ["sse2", "sse4_2", "avx", "avx2", "aes"]
        .map(String::from)
        .to_vec()
}

impl Default for Processor {
    fn default() -> Self {
        Processor {
            vendor: default_vendor(),
            family: default_family(),
            features: default_features(),
        }
    }
}

/// How a host authenticates migrations (Hyper-V's
/// `VirtualMachineMigrationAuthenticationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// CredSSP: a migration may only be initiated on the source host itself.
    #[default]
    Direct,
    /// Kerberos constrained delegation: another machine may initiate when
    /// the destination trusts it.
    Delegated,
}

/// Authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Direct or delegated.
    #[serde(default)]
    pub mode: AuthMode,
    /// Pre-shared secret per peer host name (both ends hold the same).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// Secret used with peers not listed (lab default).
    #[serde(default = "default_secret")]
    pub default_secret: String,
    /// Machines trusted to initiate migrations to this host (delegated).
    #[serde(default)]
    pub trusted_initiators: Vec<String>,
    /// Token the control API requires.
    #[serde(default = "default_secret")]
    pub control_token: String,
}

fn default_secret() -> String {
    "relive-lab-secret".into()
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::default(),
            peers: BTreeMap::new(),
            default_secret: default_secret(),
            trusted_initiators: Vec::new(),
            control_token: default_secret(),
        }
    }
}

impl AuthConfig {
    /// The secret shared with `peer`.
    pub fn secret_for(&self, peer: &str) -> &str {
        self.peers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(peer))
            .map(|(_, s)| s.as_str())
            .unwrap_or(&self.default_secret)
    }
}

/// A host's configuration (`host.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Host name (`HV01`).
    pub name: String,
    /// Memory available to VMs, MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// Size of each NUMA node, MiB (empty = one node of `memory_mib`).
    #[serde(default)]
    pub numa_nodes_mib: Vec<u64>,
    /// Whether a VM may span NUMA nodes.
    #[serde(default = "yes")]
    pub numa_spanning: bool,
    /// The host processor.
    #[serde(default)]
    pub processor: Processor,
    /// VM configuration versions the host runs (`9.0`, `10.0`).
    #[serde(default = "default_versions")]
    pub config_versions: Vec<String>,
    /// Virtual switch names (compared case-sensitively, as Hyper-V does).
    #[serde(default = "default_switches")]
    pub switches: Vec<String>,
    /// Live migration enabled on this host.
    #[serde(default = "yes")]
    pub migration_enabled: bool,
    /// Networks migrations may arrive from (CIDRs; empty = any).
    #[serde(default)]
    pub migration_networks: Vec<String>,
    /// Authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Where migrations arrive (`127.0.0.1:6600`); `None` = listener closed.
    #[serde(default = "default_listen")]
    pub listen: Option<SocketAddr>,
    /// Where the control API listens (loopback).
    #[serde(default = "default_control")]
    pub control: SocketAddr,
    /// Simultaneous live migrations allowed (in and out).
    #[serde(default = "default_limit")]
    pub max_migrations: usize,
    /// Shared storage root that VMs with shared disks need.
    #[serde(default)]
    pub shared_storage: Option<PathBuf>,
    /// The host's event log (ECS JSON lines), for an agent to tail.
    #[serde(default)]
    pub event_log: Option<PathBuf>,
    /// Migration metrics (JSON lines: one per pass and one at the end).
    #[serde(default)]
    pub metrics_log: Option<PathBuf>,
    /// Folder for VM disks and state.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// VMs that arrive by migration stay paused until resumed (QEMU's
    /// `-S`; tests compare memory at that point).
    #[serde(default)]
    pub incoming_paused: bool,
    /// Other hosts by name: their migration addresses (the "DNS" of a lab).
    #[serde(default)]
    pub peers: BTreeMap<String, SocketAddr>,
    /// VMs started when the host starts (`[[vm]]` tables).
    #[serde(default, rename = "vm")]
    pub vms: Vec<VmConfig>,
}

fn default_memory() -> u64 {
    4096
}
fn yes() -> bool {
    true
}
fn default_versions() -> Vec<String> {
    ["8.0", "9.0", "10.0"].map(String::from).to_vec()
}
fn default_switches() -> Vec<String> {
    vec!["External".into()]
}
fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
}
fn default_control() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT + 1))
}
fn default_limit() -> usize {
    2
}

impl HostConfig {
    /// A host named `name` with every default.
    pub fn named(name: &str) -> HostConfig {
        toml::from_str(&format!("name = {:?}", name)).expect("defaults parse")
    }

    /// Where this host keeps VM files: `state_dir`, or a folder named
    /// after the host in the system's temporary directory.
    pub fn state_root(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("relive-host-{}", self.name)))
    }

    /// The image of `vm`'s disk on this host: on shared storage the same
    /// file on every host; otherwise a local file (an absolute path as
    /// configured when the VM starts here, the host's VM folder when the
    /// disk arrives by migration).
    pub fn disk_path(&self, vm: &VmConfig, disk: &Disk, arriving: bool) -> Option<PathBuf> {
        if disk.shared {
            return self
                .shared_storage
                .as_ref()
                .map(|root| root.join(&disk.path));
        }
        if disk.path.is_absolute() && !arriving {
            return Some(disk.path.clone());
        }
        let file = disk
            .path
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "disk.img".into());
        Some(self.state_root().join(&vm.name).join(file))
    }

    /// The NUMA node sizes (one node of all memory when none are set).
    pub fn numa_nodes(&self) -> Vec<u64> {
        if self.numa_nodes_mib.is_empty() {
            vec![self.memory_mib]
        } else {
            self.numa_nodes_mib.clone()
        }
    }
}

/// A virtual NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// The virtual switch it connects to.
    pub switch: String,
}

/// A VM's disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Image path. On shared storage it is relative to the host's
    /// `shared_storage` root; otherwise a file the migration mirrors.
    pub path: PathBuf,
    /// On shared storage (the path is handed over) or shared-nothing (the
    /// blocks are copied).
    #[serde(default)]
    pub shared: bool,
    /// Size, MiB.
    #[serde(default = "default_disk")]
    pub size_mib: u64,
}

fn default_disk() -> u64 {
    64
}

/// A VM's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Name (`ADFS1`).
    pub name: String,
    /// Id: an upper-case GUID.
    #[serde(default)]
    pub id: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// NICs and their switches.
    #[serde(default)]
    pub nics: Vec<Nic>,
    /// Processor the VM runs with (features it uses).
    #[serde(default)]
    pub processor: Processor,
    /// Configuration version.
    #[serde(default = "default_version")]
    pub config_version: String,
    /// Optional disk.
    #[serde(default)]
    pub disk: Option<Disk>,
    /// The workload it runs.
    #[serde(default)]
    pub workload: Option<WorkloadSpec>,
    /// MiB filled with non-zero data at start (the rest stays zero).
    #[serde(default)]
    pub fill_mib: u64,
}

fn default_version() -> String {
    "9.0".into()
}

impl VmConfig {
    /// A VM named `name` with `memory_mib` MiB on switch `External`.
    pub fn new(name: &str, memory_mib: u64) -> VmConfig {
        VmConfig {
            name: name.into(),
            id: guid_for(name),
            memory_mib,
            nics: vec![Nic {
                switch: "External".into(),
            }],
            processor: Processor::default(),
            config_version: default_version(),
            disk: None,
            workload: None,
            fill_mib: 0,
        }
    }
}

/// FNV-1a of `text`: a stable seed derived from a name.
pub(crate) fn fnv(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(text.as_bytes());
    h.finish()
}

/// A stable GUID derived from a name (for VMs configured without one).
pub fn guid_for(name: &str) -> String {
    let h = fnv(name);
    let l = h.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08X}-{:04X}-4{:03X}-8{:03X}-{:012X}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        l >> 52,
        l & 0xffff_ffff_ffff
    )
}

/// True when `addr` is inside `cidr` (`10.0.0.0/8`, `127.0.0.1/32`, `::1/128`).
pub fn cidr_contains(cidr: &str, addr: std::net::IpAddr) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((net, bits)) => (net, bits.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.trim().parse::<std::net::IpAddr>() else {
        return false;
    };
    match (net, addr) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_cidrs() {
        let host = HostConfig::named("HV01");
        assert_eq!(host.listen.unwrap().port(), 6600);
        assert!(host.migration_enabled && host.numa_spanning);
        assert_eq!(host.numa_nodes(), vec![4096]);
        assert_eq!(
            host.auth.control_token, "relive-lab-secret",
            "defaults without an [auth] table"
        );
        assert!(cidr_contains("127.0.0.0/8", "127.0.0.1".parse().unwrap()));
        assert!(!cidr_contains("10.0.0.0/8", "127.0.0.1".parse().unwrap()));
        assert!(cidr_contains("::1/128", "::1".parse().unwrap()));
        let id = guid_for("ADFS1");
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_ascii_uppercase());
    }
}
