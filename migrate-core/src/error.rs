//! Why a migration failed, in the terms Hyper-V uses: every kind carries the
//! HRESULT and the sub-message Hyper-V writes under event 21502 for a failure
//! of that kind, so the correlator recognizes relive's own failures.

use serde::{Deserialize, Serialize};

/// The kind of a migration failure. Stable names (`serde` snake case) are
/// used on the wire, in reports and by the remediation engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The destination refused the connection (nothing listens: the
    /// listener is closed or a firewall drops it).
    ConnectionRefused,
    /// The connection dropped or was reset mid-migration.
    ConnectionReset,
    /// The destination did not answer in time.
    ConnectionTimeout,
    /// CredSSP: the migration was initiated away from the source host.
    NoCredentials,
    /// Kerberos: the credential proof or the delegation was not accepted.
    CredentialsNotRecognized,
    /// Live migration is disabled on the host.
    MigrationDisabled,
    /// The source address is not on an accepted migration network.
    MigrationNetwork,
    /// The host already runs its simultaneous-migration limit.
    LimitReached,
    /// The destination lacks the memory for the VM.
    OutOfMemory,
    /// No single NUMA node can hold the VM and NUMA spanning is off.
    NumaNoFit,
    /// A virtual switch the VM's NICs use does not exist on the destination
    /// (names compare case-sensitively).
    SwitchMissing,
    /// The destination processor lacks features the VM uses.
    ProcessorIncompatible,
    /// The destination does not support the VM's configuration version.
    ConfigVersionUnsupported,
    /// The shared storage path of the VM does not exist on the destination.
    SharedStorageMissing,
    /// The VM does not exist (or is not running) on the source.
    VmNotFound,
    /// The VM already exists on the destination.
    VmExists,
    /// The dirty rate outran the link until the timeout.
    NotConverging,
    /// The memory digests differ after the final pass.
    VerifyFailed,
    /// An operator cancelled the migration.
    Cancelled,
    /// The peer spoke a protocol version or sent a frame relive rejects.
    Protocol,
    /// A local I/O error (disk image, state file).
    Io,
    /// The destination's name does not resolve.
    NameResolution,
}

impl ErrorKind {
    /// The HRESULT Hyper-V reports for a failure of this kind.
    pub fn hresult(self) -> u32 {
        match self {
            ErrorKind::ConnectionRefused => 0x8007_274D,
            ErrorKind::ConnectionReset => 0x8007_2746,
            ErrorKind::ConnectionTimeout => 0x8007_274C,
            ErrorKind::NoCredentials => 0x8009_030E,
            ErrorKind::CredentialsNotRecognized => 0x8009_030D,
            ErrorKind::MigrationDisabled => 0x8007_274D,
            ErrorKind::MigrationNetwork => 0x0000_13AB,
            ErrorKind::LimitReached => 0x8007_00AA,
            ErrorKind::OutOfMemory => 0x8007_000E,
            ErrorKind::NumaNoFit => 0x8007_05AA,
            ErrorKind::SwitchMissing => 0x8007_0490,
            ErrorKind::ProcessorIncompatible => 0x8007_0032,
            ErrorKind::ConfigVersionUnsupported => 0x8007_0032,
            ErrorKind::SharedStorageMissing => 0x8007_0002,
            ErrorKind::VmNotFound => 0x8007_0490,
            ErrorKind::VmExists => 0x8007_00B7,
            ErrorKind::NotConverging => 0x8007_05B4,
            ErrorKind::VerifyFailed => 0x8007_000D,
            ErrorKind::Cancelled => 0x8007_04C7,
            ErrorKind::Protocol => 0x8007_000D,
            ErrorKind::Io => 0x8007_001F,
            ErrorKind::NameResolution => 0x8007_2AF9,
        }
    }

    /// The stable name (`switch_missing`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectionRefused => "connection_refused",
            ErrorKind::ConnectionReset => "connection_reset",
            ErrorKind::ConnectionTimeout => "connection_timeout",
            ErrorKind::NoCredentials => "no_credentials",
            ErrorKind::CredentialsNotRecognized => "credentials_not_recognized",
            ErrorKind::MigrationDisabled => "migration_disabled",
            ErrorKind::MigrationNetwork => "migration_network",
            ErrorKind::LimitReached => "limit_reached",
            ErrorKind::OutOfMemory => "out_of_memory",
            ErrorKind::NumaNoFit => "numa_no_fit",
            ErrorKind::SwitchMissing => "switch_missing",
            ErrorKind::ProcessorIncompatible => "processor_incompatible",
            ErrorKind::ConfigVersionUnsupported => "config_version_unsupported",
            ErrorKind::SharedStorageMissing => "shared_storage_missing",
            ErrorKind::VmNotFound => "vm_not_found",
            ErrorKind::VmExists => "vm_exists",
            ErrorKind::NotConverging => "not_converging",
            ErrorKind::VerifyFailed => "verify_failed",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::NameResolution => "name_resolution",
        }
    }

    /// Every kind, for tests and docs.
    pub const ALL: [ErrorKind; 22] = [
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionReset,
        ErrorKind::ConnectionTimeout,
        ErrorKind::NoCredentials,
        ErrorKind::CredentialsNotRecognized,
        ErrorKind::MigrationDisabled,
        ErrorKind::MigrationNetwork,
        ErrorKind::LimitReached,
        ErrorKind::OutOfMemory,
        ErrorKind::NumaNoFit,
        ErrorKind::SwitchMissing,
        ErrorKind::ProcessorIncompatible,
        ErrorKind::ConfigVersionUnsupported,
        ErrorKind::SharedStorageMissing,
        ErrorKind::VmNotFound,
        ErrorKind::VmExists,
        ErrorKind::NotConverging,
        ErrorKind::VerifyFailed,
        ErrorKind::Cancelled,
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::NameResolution,
    ];
}

/// A failed migration step: its kind and the sub-message Hyper-V would
/// write (the text names the VM, switch, host or limit involved).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct MigrationError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The Hyper-V sub-message of that kind.
    pub message: String,
}

impl MigrationError {
    /// An error of `kind` with `message`; the kind's HRESULT is appended
    /// as Hyper-V prints it when the message does not carry one.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message = message.into();
        let code = format!("0x{:08X}", kind.hresult());
        if !message.contains(&code) {
            let trimmed = message.trim_end_matches('.').len();
            message.truncate(trimmed);
            message.push_str(&format!(" ({code})."));
        }
        MigrationError { kind, message }
    }

    /// The HRESULT as Hyper-V prints it (`0x8007274D`).
    pub fn hresult(&self) -> String {
        format!("0x{:08X}", self.kind.hresult())
    }

    /// A socket error seen while talking to `peer`, in Hyper-V's words.
    pub fn from_io(err: &std::io::Error, peer: &str) -> Self {
        use std::io::ErrorKind as Io;
        match err.kind() {
            Io::ConnectionRefused => MigrationError::new(
                ErrorKind::ConnectionRefused,
                format!("Failed to establish a connection with host '{peer}': No connection could be made because the target machine actively refused it. (0x8007274D)."),
            ),
            Io::TimedOut | Io::WouldBlock => MigrationError::new(
                ErrorKind::ConnectionTimeout,
                format!("Failed to establish a connection with host '{peer}': A connection attempt failed because the connected party did not properly respond after a period of time. (0x8007274C)."),
            ),
            Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::NotConnected => MigrationError::new(
                ErrorKind::ConnectionReset,
                format!("The Virtual Machine Management Service failed to complete the migration with host '{peer}': An existing connection was forcibly closed by the remote host. (0x80072746)."),
            ),
            _ => MigrationError::new(
                ErrorKind::ConnectionReset,
                format!("The Virtual Machine Management Service failed to complete the migration with host '{peer}': {err}. (0x80072746)."),
            ),
        }
    }
}
