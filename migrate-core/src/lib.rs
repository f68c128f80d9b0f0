//! `migrate-core` is relive's embedded live-migration engine: a real
//! pre-copy migration of a running VM's memory between two host processes
//! over TCP, while the VM's workload keeps writing to it.
//!
//! - [`memory`]: the VM's pages (really allocated, atomically shared) and
//!   page digests; [`dirty`]: dirty tracking behind [`dirty::DirtyTracker`];
//!   [`workload`]: the paced writer a VM runs; [`disk`]: a VM's disk image
//!   with dirty-block tracking, mirrored after the pages in a
//!   shared-nothing move (a shared image is handed over by path).
//! - [`config`]: host and VM configuration (TOML); [`host`]: a host's VMs,
//!   memory and NUMA accounting, the pre-flight checks and the destination
//!   side; [`source`]: the source side, the pre-copy loop and its
//!   convergence policy, as [`source::MigrationHandle`].
//! - [`protocol`]: framed, versioned messages (sequence diagram there);
//!   [`report`]: QEMU `query-migrate`-compatible statistics and the
//!   [`report::MigrationReport`]; [`error`]: failures with Hyper-V's
//!   HRESULTs and sub-messages; [`control`]: the host's control API (JSON
//!   lines on loopback with a token) and its client; [`qemu`]: the same
//!   migration API over a real QEMU pair through QMP.
//!
//! It knows nothing of events or rules: a host reports [`host::Notice`]s to
//! a sink the binary provides, which writes them as Hyper-V-shaped events.
//!
//! ```no_run
//! use std::sync::Arc;
//! use migrate_core::{config::*, host::*, source::MigrateRequest, report::MigrationParams};
//! let mut a = HostConfig::named("HV01");
//! a.listen = Some("127.0.0.1:0".parse().unwrap());
//! a.auth.default_secret = "a secret both hosts hold".into();
//! let mut b = HostConfig::named("HV02");
//! b.listen = Some("127.0.0.1:0".parse().unwrap());
//! b.auth.default_secret = "a secret both hosts hold".into();
//! let src = Host::new(a, Arc::new(Notices::default()));
//! let dst = Host::new(b, Arc::new(Notices::default()));
//! let addr = dst.open_listener().unwrap();
//! src.start_vm(VmConfig::new("ADFS1", 64)).unwrap();
//! let handle = src
//!     .migrate(MigrateRequest {
//!         vm: "ADFS1".into(),
//!         destination: "HV02".into(),
//!         address: addr,
//!         initiator: None,
//!         params: MigrationParams::default(),
//!     })
//!     .unwrap();
//! assert_eq!(handle.wait().info.status, migrate_core::report::Status::Completed);
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod control;
pub mod destination;
pub mod dirty;
pub mod disk;
pub mod error;
pub mod host;
pub mod ledger;
pub mod memory;
pub mod protocol;
pub mod qemu;
pub mod report;
pub mod source;
pub mod workload;

pub use error::{ErrorKind, MigrationError};

/// A named crash point for restart tests: `RELIVE_FAULT=<name>` aborts the
/// process here (as `kill -9` would stop it). The same variable as the
/// pipeline's crash points; migrate-core depends on no other relive crate,
/// so it reads it itself.
pub(crate) fn fault_point(name: &str) {
    static PLAN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let plan = PLAN.get_or_init(|| std::env::var("RELIVE_FAULT").ok());
    if plan.as_deref() == Some(name) {
        tracing::error!(point = name, "RELIVE_FAULT: aborting here as asked");
        std::process::abort();
    }
}
pub use host::Host;
pub use report::{MigrationInfo, MigrationParams, MigrationReport, Status};
