//! The QEMU driver: the same migration API over a real
//! `qemu-system-x86_64` pair on loopback, through QMP (`migrate`,
//! `query-migrate`, `migrate-set-parameters` with `downtime-limit`,
//! `max-bandwidth` and multifd, `return-path`), reporting the same
//! [`MigrationReport`].
//!
//! The guest is the small multiboot program in `migrate-core/guest/`
//! ([`build_guest`] compiles it with the system's gcc, as and ld): it fills
//! memory and dirties a working set at a paced rate, and prints its pass
//! counter on the debug console, which continues on the destination.
//!
//! QEMU 7.2 under TCG can lose a dirty page (migration.md 4.6, fixed
//! upstream by 03bfc2188f): compare memory through QEMU only for idle or
//! single-pass runs.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{ErrorKind, MigrationError};
use crate::report::{MigrationInfo, MigrationParams, MigrationReport, Status, TimeoutStrategy};

/// Errors of the QEMU driver.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// QEMU or the guest toolchain could not be run.
    #[error("{what}: {source}")]
    Spawn {
        /// What was run.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A tool exited with an error.
    #[error("{what} failed: {stderr}")]
    Tool {
        /// What was run.
        what: String,
        /// What it said.
        stderr: String,
    },
    /// QMP I/O failed.
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    /// QMP answered with an error.
    #[error("QMP {command}: {desc}")]
    Qmp {
        /// The command.
        command: String,
        /// QEMU's description.
        desc: String,
    },
}

const GUEST_C: &str = include_str!("../guest/guest.c");
const GUEST_S: &str = include_str!("../guest/start.S");
const GUEST_LD: &str = include_str!("../guest/link.ld");

fn run_tool(what: &str, command: &mut Command) -> Result<(), QemuError> {
    let out = command.output().map_err(|source| QemuError::Spawn {
        what: what.into(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(QemuError::Tool {
            what: what.into(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Compiles the dirtying guest into `dir` and returns the ELF's path.
pub fn build_guest(dir: &Path) -> Result<PathBuf, QemuError> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in [
        ("guest.c", GUEST_C),
        ("start.S", GUEST_S),
        ("link.ld", GUEST_LD),
    ] {
        std::fs::write(dir.join(name), text)?;
    }
    run_tool(
        "gcc -m32 guest.c",
        Command::new("gcc").current_dir(dir).args([
            "-m32",
            "-ffreestanding",
            "-fno-pic",
            "-fno-pie",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-nostdlib",
            "-O2",
            "-c",
            "guest.c",
            "-o",
            "guest.o",
        ]),
    )?;
    run_tool(
        "as --32 start.S",
        Command::new("as")
            .current_dir(dir)
            .args(["--32", "start.S", "-o", "start.o"]),
    )?;
    run_tool(
        "ld -m elf_i386",
        Command::new("ld").current_dir(dir).args([
            "-m",
            "elf_i386",
            "-z",
            "noexecstack",
            "--no-warn-rwx-segments",
            "-T",
            "link.ld",
            "-o",
            "guest.elf",
            "start.o",
            "guest.o",
        ]),
    )?;
    Ok(dir.join("guest.elf"))
}

/// The host's TSC rate in MHz (the guest paces itself with `rdtsc`, which
/// TCG runs at the host's rate).
pub fn host_mhz() -> u32 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        })
        .map_or(2000, |mhz| mhz as u32)
}

/// What a QEMU VM runs.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    /// `-m`, MiB.
    pub memory_mib: u64,
    /// The guest kernel (see [`build_guest`]).
    pub kernel: PathBuf,
    /// Working set, MiB (0 = idle after the fill).
    pub ws_mib: u64,
    /// Non-zero fill, MiB (from 16 MiB up).
    pub fill_mib: u64,
    /// Page writes per second.
    pub rate: u64,
}

impl QemuSpec {
    fn append(&self) -> String {
        format!(
            "off=16 ws={} fill={} rate={} mhz={}",
            self.ws_mib,
            self.fill_mib,
            self.rate,
            host_mhz()
        )
    }
}

/// A QMP connection.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp, QemuError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let mut greeting = String::new();
        qmp.reader.read_line(&mut greeting)?;
        qmp.call("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs a command; events arriving before the answer are skipped.
    fn call(&mut self, command: &str, arguments: Value) -> Result<Value, QemuError> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}")?;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = v.get("error") {
                return Err(QemuError::Qmp {
                    command: command.into(),
                    desc: err["desc"].as_str().unwrap_or_default().into(),
                });
            }
        }
    }
}

/// One running `qemu-system-x86_64`.
pub struct QemuVm {
    child: Child,
    qmp: Qmp,
    /// Its debug console file.
    pub console: PathBuf,
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl QemuVm {
    /// Starts QEMU (TCG) with `spec`; `incoming` makes it a destination
    /// (`-incoming tcp:…`), `paused` adds `-S`.
    pub fn start(
        spec: &QemuSpec,
        dir: &Path,
        name: &str,
        incoming: Option<SocketAddr>,
        paused: bool,
    ) -> Result<QemuVm, QemuError> {
        std::fs::create_dir_all(dir)?;
        let qmp_path = dir.join(format!("{name}.qmp"));
        let console = dir.join(format!("{name}.con"));
        let _ = std::fs::remove_file(&qmp_path);
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-machine", "pc", "-nodefaults", "-display", "none", "-m"])
            .arg(spec.memory_mib.to_string())
            .arg("-kernel")
            .arg(&spec.kernel)
            .arg("-append")
            .arg(spec.append())
            .arg("-qmp")
            .arg(format!("unix:{},server,nowait", qmp_path.display()))
            .arg("-debugcon")
            .arg(format!("file:{}", console.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(addr) = incoming {
            command.arg("-incoming").arg(format!("tcp:{addr}"));
        }
        if paused {
            command.arg("-S");
        }
        let child = command.spawn().map_err(|source| QemuError::Spawn {
            what: "qemu-system-x86_64 (install qemu-system-x86)".into(),
            source,
        })?;
        let qmp = Qmp::connect(&qmp_path)?;
        Ok(QemuVm {
            child,
            qmp,
            console,
        })
    }

    /// Runs a QMP command.
    pub fn qmp(&mut self, command: &str, arguments: Value) -> Result<Value, QemuError> {
        self.qmp.call(command, arguments)
    }

    /// What the guest printed so far.
    pub fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The last pass counter the guest printed (`p<n>`).
    pub fn last_pass(&self) -> Option<u64> {
        self.console_text()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix('p')?.trim().parse().ok())
    }

    /// Waits until the guest printed `text`.
    pub fn wait_console(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.console_text().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Saves guest memory to a file (`pmemsave`).
    pub fn save_memory(&mut self, bytes: u64, path: &Path) -> Result<(), QemuError> {
        self.qmp(
            "pmemsave",
            json!({"val": 0, "size": bytes, "filename": path.display().to_string()}),
        )?;
        Ok(())
    }

    /// CPU seconds the QEMU process used so far.
    pub fn cpu_seconds(&self) -> f64 {
        crate::source::process_cpu_seconds(&self.child.id().to_string())
    }
}

/// Maps QEMU's `error-desc` to a failure kind.
fn qemu_error(desc: &str, destination: &str) -> MigrationError {
    let lower = desc.to_ascii_lowercase();
    let kind = if lower.contains("connection refused") {
        ErrorKind::ConnectionRefused
    } else if lower.contains("broken pipe")
        || lower.contains("reset by peer")
        || lower.contains("bad file descriptor")
    {
        ErrorKind::ConnectionReset
    } else if lower.contains("address resolution") {
        ErrorKind::NameResolution
    } else {
        ErrorKind::Protocol
    };
    MigrationError::new(
        kind,
        format!("QEMU migration to '{destination}' failed: {desc}"),
    )
}

/// Migrates `src` to `dst` (started with `-incoming tcp:addr`) with
/// `params`, polling `query-migrate` every `poll`.
pub fn migrate(
    src: &mut QemuVm,
    dst: &mut QemuVm,
    addr: SocketAddr,
    params: &MigrationParams,
    poll: Duration,
) -> Result<MigrationReport, QemuError> {
    let multifd = params.streams > 1 || params.codec != crate::protocol::Codec::None;
    let mut caps = vec![
        json!({"capability": "events", "state": true}),
        json!({"capability": "return-path", "state": true}),
    ];
    if multifd {
        caps.push(json!({"capability": "multifd", "state": true}));
    }
    for vm in [&mut *src, &mut *dst] {
        vm.qmp("migrate-set-capabilities", json!({ "capabilities": caps }))?;
    }
    let mut set = json!({
        "downtime-limit": params.downtime_limit,
        // QEMU has no "unlimited": 1 TB/s is.
        "max-bandwidth": if params.max_bandwidth == 0 { 1u64 << 40 } else { params.max_bandwidth },
    });
    if multifd {
        set["multifd-channels"] = json!(params.streams.max(1));
        if params.codec != crate::protocol::Codec::None {
            set["multifd-compression"] = json!("zstd");
        }
        dst.qmp("migrate-set-parameters", set.clone())?;
    }
    src.qmp("migrate-set-parameters", set)?;
    let started = Instant::now();
    let cpu0 = src.cpu_seconds() + dst.cpu_seconds();
    src.qmp("migrate", json!({ "uri": format!("tcp:{addr}") }))?;
    let mut forced = false;
    let info: Value = loop {
        std::thread::sleep(poll);
        let info = src.qmp("query-migrate", json!({}))?;
        let status = info["status"].as_str().unwrap_or_default();
        if matches!(status, "completed" | "failed" | "cancelled") {
            break info;
        }
        if params.timeout > 0
            && started.elapsed() >= Duration::from_millis(params.timeout)
            && !forced
        {
            match params.timeout_strategy {
                TimeoutStrategy::Cancel => {
                    src.qmp("migrate_cancel", json!({}))?;
                }
                TimeoutStrategy::Force => {
                    // QEMU has no force: allow any downtime.
                    src.qmp(
                        "migrate-set-parameters",
                        json!({"downtime-limit": 2_000_000}),
                    )?;
                }
            }
            forced = true;
        }
    };
    let mut parsed: MigrationInfo = serde_json::from_value(info.clone()).unwrap_or_default();
    if parsed.status == Status::Completed && parsed.total_time == 0 {
        // QEMU 7.2 publishes `completed` before the final figures (migration.md 4.7).
        if let Ok(again) = src.qmp("query-migrate", json!({})) {
            parsed = serde_json::from_value(again).unwrap_or(parsed);
        }
    }
    let error = (parsed.status != Status::Completed).then(|| {
        qemu_error(
            parsed.error_desc.as_deref().unwrap_or("migration failed"),
            &addr.to_string(),
        )
    });
    Ok(MigrationReport {
        id: format!("qemu-{}", std::process::id()),
        destination: addr.to_string(),
        transport: if multifd {
            "multifd".into()
        } else {
            "tcp".into()
        },
        params: Some(params.clone()),
        info: parsed,
        error,
        cpu_seconds: src.cpu_seconds() + dst.cpu_seconds() - cpu0,
        ..MigrationReport::default()
    })
}
