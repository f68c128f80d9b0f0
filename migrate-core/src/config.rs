//! Host and VM configuration (TOML through serde, defaults that work).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workload::WorkloadSpec;

/// A commented host configuration with every key and its default
/// (`relive config default --host`, `relive host --help`).
pub const HOST_TEMPLATE: &str = include_str!("host.default.toml");

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Direct or delegated.
    #[serde(default)]
    pub mode: AuthMode,
    /// Pre-shared secret per peer host name (both ends hold the same).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// Secret used with peers not listed. Empty = not configured: the host
    /// generates one on first start and keeps it under its state folder
    /// ([`HostConfig::ensure_secrets`]); an empty secret never authenticates.
    #[serde(default)]
    pub default_secret: String,
    /// A file holding `default_secret`, for hosts that migrate to each
    /// other to share one (a lab's hosts point at the same file). The first
    /// host that starts without it creates it: random, owner-only. Used
    /// when `default_secret` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_secret_file: Option<PathBuf>,
    /// Machines trusted to initiate migrations to this host (delegated).
    #[serde(default)]
    pub trusted_initiators: Vec<String>,
    /// Token the control API requires. Empty = not configured: generated
    /// like `default_secret`; an empty token is never accepted.
    #[serde(default)]
    pub control_token: String,
}

/// Secrets older relive versions shipped as defaults: refused.
pub const KNOWN_SECRETS: &[&str] = &["relive-lab-secret"];

/// The shortest secret accepted.
pub const MIN_SECRET_CHARS: usize = 12;

/// What [`HostConfig::ensure_secrets`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSecret {
    /// `default_secret` or `control_token`.
    pub setting: &'static str,
    /// The file holding it (owner-only).
    pub path: PathBuf,
    /// Whether it was made now (false: read from an earlier start).
    pub new: bool,
}

impl AuthConfig {
    /// Refuses a known or short secret, with the setting's name.
    pub fn check(&self) -> Result<(), String> {
        let settings = [
            ("default_secret", self.default_secret.as_str()),
            ("control_token", self.control_token.as_str()),
        ];
        let peers = self
            .peers
            .iter()
            .map(|(name, secret)| (name.as_str(), secret.as_str()));
        for (name, secret) in settings.into_iter().chain(peers) {
            if KNOWN_SECRETS.contains(&secret) {
                return Err(format!("[auth] {name}: a secret published in relive's sources is never accepted; remove it to have one generated, or set your own"));
            }
            if !secret.is_empty() && secret.chars().count() < MIN_SECRET_CHARS {
                return Err(format!(
                    "[auth] {name}: at least {MIN_SECRET_CHARS} characters"
                ));
            }
        }
        Ok(())
    }

    /// The secret shared with `peer` (empty when none is configured: it
    /// authenticates nothing).
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
    /// The host's event log (ECS JSON lines), for an agent to tail
    /// (default: `events.ndjson` in the state folder).
    #[serde(default)]
    pub event_log: Option<PathBuf>,
    /// Migration metrics (JSON lines: one per pass and one at the end;
    /// default: `migrations.ndjson` in the state folder).
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
    /// Fills an unset `default_secret` and `control_token` from files under
    /// `state_root()/secrets`, generating random ones (32 bytes, hex) on
    /// first start; the files are created owner-only (0600). Refuses known
    /// or short secrets.
    pub fn ensure_secrets(&mut self) -> Result<Vec<GeneratedSecret>, String> {
        self.auth.check()?;
        let dir = self.state_root().join("secrets");
        let shared = self.auth.default_secret_file.clone();
        let mut out = Vec::new();
        for (setting, value) in [
            ("default_secret", &mut self.auth.default_secret),
            ("control_token", &mut self.auth.control_token),
        ] {
            if !value.is_empty() {
                continue;
            }
            let path = match (setting, &shared) {
                ("default_secret", Some(file)) => file.clone(),
                _ => dir.join(setting.replace('_', "-")),
            };
            let (secret, new) = load_or_make_secret(&path).map_err(|e| {
                format!(
                    "{setting}: cannot keep a generated secret in {}: {e}",
                    path.display()
                )
            })?;
            *value = secret;
            out.push(GeneratedSecret { setting, path, new });
        }
        Ok(out)
    }

    /// Where the host writes its event log: `event_log`, or
    /// `events.ndjson` in its state folder.
    pub fn event_log_path(&self) -> PathBuf {
        self.event_log
            .clone()
            .unwrap_or_else(|| self.state_root().join("events.ndjson"))
    }

    /// Where the host writes its migration metrics: `metrics_log`, or
    /// `migrations.ndjson` in its state folder.
    pub fn metrics_log_path(&self) -> PathBuf {
        self.metrics_log
            .clone()
            .unwrap_or_else(|| self.state_root().join("migrations.ndjson"))
    }

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
    /// Gives the VM the id a host knows it by: the configured one in upper
    /// case, or one derived from its name.
    pub fn normalize_id(&mut self) {
        if self.id.is_empty() {
            self.id = guid_for(&self.name);
        }
        self.id = self.id.to_ascii_uppercase();
    }

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

fn load_or_make_secret(path: &Path) -> std::io::Result<(String, bool)> {
    let read = |path: &Path| -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let secret = text.trim().to_string();
                if secret.chars().count() >= MIN_SECRET_CHARS {
                    Ok(Some(secret))
                } else {
                    Err(std::io::Error::other(format!(
                        "it holds no usable secret (fewer than {MIN_SECRET_CHARS} characters): delete it to have one generated"
                    )))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    if let Some(secret) = read(path)? {
        return Ok((secret, false));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Written whole under a name of its own, then linked into place:
    // hosts sharing one file that start together all end up with the one
    // that was linked first, never a half-written one.
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension(format!("tmp-{tag}"));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((secret, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(path)? {
            Some(theirs) => Ok((theirs, false)),
            None => Err(std::io::Error::other("it vanished while it was created")),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_generated_once_owner_only_and_known_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = HostConfig::named("HV01");
        host.state_dir = Some(dir.path().to_path_buf());
        let made = host.ensure_secrets().unwrap();
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|g| g.new));
        assert_eq!(host.auth.default_secret.len(), 64);
        assert_ne!(host.auth.default_secret, host.auth.control_token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&made[0].path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut again = HostConfig::named("HV01");
        again.state_dir = Some(dir.path().to_path_buf());
        let kept = again.ensure_secrets().unwrap();
        assert!(kept.iter().all(|g| !g.new));
        assert_eq!(again.auth.default_secret, host.auth.default_secret);
        let mut known = HostConfig::named("HV01");
        known.auth.control_token = "relive-lab-secret".into();
        assert!(known
            .ensure_secrets()
            .unwrap_err()
            .contains("never accepted"));
        let mut short = HostConfig::named("HV01");
        short.auth.peers.insert("HV02".into(), "abc".into());
        assert!(short.ensure_secrets().unwrap_err().contains("at least"));
    }

    #[test]
    fn hosts_sharing_a_secret_file_that_start_together_agree() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("lab-secret");
        let secrets: Vec<String> = std::thread::scope(|s| {
            let started: Vec<_> = (0..8)
                .map(|i| {
                    let shared = shared.clone();
                    let state = dir.path().join(format!("hv{i}"));
                    s.spawn(move || {
                        let mut host = HostConfig::named(&format!("HV{i}"));
                        host.state_dir = Some(state);
                        host.auth.default_secret_file = Some(shared);
                        host.ensure_secrets().unwrap();
                        host.auth.default_secret
                    })
                })
                .collect();
            started.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.iter().all(|s| s == &secrets[0] && s.len() == 64));
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
        std::fs::write(&shared, "short\n").unwrap();
        let mut host = HostConfig::named("HV01");
        host.state_dir = Some(dir.path().join("x"));
        host.auth.default_secret_file = Some(shared);
        let error = host.ensure_secrets().unwrap_err();
        assert!(error.contains("delete it"), "{error}");
    }

    #[test]
    fn the_template_is_the_defaults_and_names_every_key() {
        let parsed: HostConfig = toml::from_str(HOST_TEMPLATE).unwrap();
        assert_eq!(parsed, HostConfig::named("HV01"));
        let mut full = HostConfig::named("HV01");
        full.auth.default_secret_file = Some("lab-secret".into());
        full.auth.peers.insert("HV02".into(), "x".repeat(12));
        full.peers
            .insert("HV02".into(), "127.0.0.1:6610".parse().unwrap());
        full.shared_storage = Some("s".into());
        full.event_log = Some("e".into());
        full.metrics_log = Some("m".into());
        full.state_dir = Some("d".into());
        let mut vm = VmConfig::new("SQL1", 256);
        vm.disk = Some(Disk {
            path: "d".into(),
            shared: true,
            size_mib: 1,
        });
        vm.workload = Some(crate::workload::WorkloadSpec::mib(1, 1));
        full.vms.push(vm);
        fn keys(value: &toml::Value, out: &mut Vec<String>) {
            match value {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        out.push(k.clone());
                        keys(v, out);
                    }
                }
                toml::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        keys(&toml::Value::try_from(&full).unwrap(), &mut all);
        for key in all {
            if key == "HV02" {
                continue;
            }
            let named = [
                format!("{key} ="),
                format!("[{key}]"),
                format!("[[{key}]]"),
                format!("{key} = "),
                format!("{{ {key} ="),
                format!(", {key} ="),
            ];
            assert!(
                named.iter().any(|n| HOST_TEMPLATE.contains(n.as_str())),
                "the host template does not name `{key}`"
            );
        }
    }

    #[test]
    fn defaults_and_cidrs() {
        let host = HostConfig::named("HV01");
        assert_eq!(host.listen.unwrap().port(), 6600);
        assert!(host.migration_enabled && host.numa_spanning);
        assert_eq!(host.numa_nodes(), vec![4096]);
        assert_eq!(
            host.auth.control_token, "",
            "no token until one is configured or generated"
        );
        assert!(cidr_contains("127.0.0.0/8", "127.0.0.1".parse().unwrap()));
        assert!(!cidr_contains("10.0.0.0/8", "127.0.0.1".parse().unwrap()));
        assert!(cidr_contains("::1/128", "::1".parse().unwrap()));
        let id = guid_for("ADFS1");
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_ascii_uppercase());
    }
}
