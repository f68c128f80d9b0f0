//! What a host has written down, durably, about who runs a VM: the one
//! thing a restart must not forget, or a VM could run on two hosts.
//!
//! One small file per VM under `state_root()/ledger/<VM id>.json`,
//! replaced atomically (temporary file, fsync, rename, fsync of the
//! folder):
//!
//! - `in_doubt`: the source sent `Commit` and did not hear the answer. The
//!   VM must not run here until the destination says it does not run it
//!   (or an operator decides); a restarted host does not start it.
//! - `moved`: the destination committed; the VM runs there now. A
//!   restarted host does not start it again.
//! - `arrived`: this host committed an incoming VM (written before it
//!   resumes), so after a crash it still answers "committed here" to a
//!   source that asks.

use std::fs::{self, File};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who runs a VM, as this host last wrote it down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Placement {
    /// `Commit` went to `peer`; its answer is unknown.
    InDoubt {
        /// The destination host.
        peer: String,
        /// Its migration address.
        address: SocketAddr,
        /// The migration id.
        migration: String,
    },
    /// The VM runs on `peer` now.
    Moved {
        /// The destination host.
        peer: String,
        /// The migration id.
        migration: String,
    },
    /// The VM came here from `from` and was committed here.
    Arrived {
        /// The source host.
        from: String,
        /// The migration id.
        migration: String,
    },
}

/// One ledger file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Format version.
    pub version: u16,
    /// VM id.
    pub vm_id: String,
    /// VM name.
    pub vm_name: String,
    /// Seconds since 1970 when written.
    pub at: String,
    /// What is known.
    #[serde(flatten)]
    pub placement: Placement,
}

/// The ledger folder of a host.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

fn file_name(vm_id: &str) -> String {
    // VM ids are GUIDs; anything else is reduced to a safe file name.
    vm_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + ".json"
}

impl Ledger {
    /// The ledger under a host's state root.
    pub fn new(state_root: &Path) -> Ledger {
        Ledger {
            dir: state_root.join("ledger"),
        }
    }

    /// What is written about `vm_id` (None: nothing; the VM is this host's
    /// as its configuration says).
    pub fn get(&self, vm_id: &str) -> Option<Entry> {
        let bytes = fs::read(self.dir.join(file_name(vm_id))).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::error!(vm_id, error = %e, "a ledger file does not decode; treating the VM as in doubt is not possible, so it is not started");
                Some(Entry {
                    version: 1,
                    vm_id: vm_id.to_string(),
                    vm_name: String::new(),
                    at: String::new(),
                    placement: Placement::Moved {
                        peer: "(unreadable ledger)".into(),
                        migration: String::new(),
                    },
                })
            }
        }
    }

    /// Writes down `placement` for a VM, durably, before returning.
    pub fn set(&self, vm_id: &str, vm_name: &str, placement: Placement) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let entry = Entry {
            version: 1,
            vm_id: vm_id.to_string(),
            vm_name: vm_name.to_string(),
            at: {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                format!("{}.{:03}", d.as_secs(), d.subsec_millis())
            },
            placement,
        };
        let path = self.dir.join(file_name(vm_id));
        let tmp = path.with_extension("json.tmp");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(&entry).expect("an entry serializes"))?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Forgets a VM (it is this host's again), durably.
    pub fn clear(&self, vm_id: &str) -> std::io::Result<()> {
        match fs::remove_file(self.dir.join(file_name(vm_id))) {
            Ok(()) => {
                if let Ok(dir) = File::open(&self.dir) {
                    let _ = dir.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every entry.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
            .collect();
        out.sort_by(|a: &Entry, b: &Entry| a.vm_id.cmp(&b.vm_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_and_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        assert!(ledger.get("A").is_none());
        let address: SocketAddr = "127.0.0.1:6600".parse().unwrap();
        ledger
            .set(
                "A",
                "WEB1",
                Placement::InDoubt {
                    peer: "HV02".into(),
                    address,
                    migration: "hv01-1".into(),
                },
            )
            .unwrap();
        let again = Ledger::new(dir.path());
        assert!(matches!(
            again.get("A").unwrap().placement,
            Placement::InDoubt { .. }
        ));
        again
            .set(
                "A",
                "WEB1",
                Placement::Moved {
                    peer: "HV02".into(),
                    migration: "hv01-1".into(),
                },
            )
            .unwrap();
        assert!(matches!(
            ledger.get("A").unwrap().placement,
            Placement::Moved { .. }
        ));
        assert_eq!(ledger.entries().len(), 1);
        ledger.clear("A").unwrap();
        assert!(ledger.get("A").is_none());
        ledger.clear("A").unwrap();
    }
}
