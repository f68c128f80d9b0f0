//! The destination side of the protocol: the migration listener, an
//! incoming migration (`Hello`), its extra streams (`Join`), questions
//! about a VM (`Query`), and asking another host that question.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{cidr_contains, AuthMode, VmConfig};
use crate::disk::GuestDisk;
use crate::error::{ErrorKind, MigrationError};
use crate::host::{
    accept_loop, random_u64, Host, ListenerHandle, Notice, Reservation, Role, Vm, VmState,
};
use crate::memory::{bytes_digest, zero_digest, GuestMemory, PAGE_SIZE};
use crate::protocol::{self, page, Accept, Codec, Command, Cursor, DeviceState, Offer, FINAL};
use crate::workload::{position_of, Workload};

impl Host {
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
        let listener = TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("the migration listener cannot listen on {addr}: {e}"),
            )
        })?;
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
}

/// An incoming migration's state, shared by its streams.
pub(crate) struct Session {
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
    /// The source host.
    source: String,
    /// The source's migration id (`vm id/migration id` is what a fence names).
    migration: String,
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
        Some(Command::Hello) => hello(host, peer, &body, reader, writer),
        Some(Command::Join) => join(host, &body, &mut reader),
        Some(Command::Query) => query(host, &body, &mut writer),
        Some(Command::Resolve) => resolve(host, &body, &mut writer),
        other => Err(bad_data(&format!("expected Hello, got {other:?}"))),
    }
}

/// `Join`: an extra stream of a migration under way.
fn join(host: &Host, body: &[u8], reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    let mut c = Cursor::new(body);
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
    receive_stream(&session, reader, index as usize).map(|_| ())
}

/// `Query`: whether a VM runs here (a source that lost the commit
/// acknowledgement asks before resuming).
fn query(host: &Host, body: &[u8], writer: &mut BufWriter<TcpStream>) -> std::io::Result<()> {
    let id = String::from_utf8_lossy(body).to_ascii_uppercase();
    let state = host.vm_state(&id);
    let answer = serde_json::json!({ "vm_id": id, "state": state });
    protocol::write_frame(writer, Command::Status, &[answer.to_string().as_bytes()])?;
    writer.flush()
}

fn fence_key(vm_id: &str, migration: &str) -> String {
    format!("{}/{migration}", vm_id.to_ascii_uppercase())
}

/// Fences kept (a fence matters only while its migration could still send
/// `Commit`; the oldest are dropped beyond this).
const MAX_FENCES: usize = 10_000;

/// `Resolve`: settles a commit whose answer the source lost. Under the VMs
/// lock, so it cannot interleave with a `Commit` being applied.
fn resolve(host: &Host, body: &[u8], writer: &mut BufWriter<TcpStream>) -> std::io::Result<()> {
    let request: protocol::ResolveRequest =
        serde_json::from_slice(body).map_err(|e| bad_data(&format!("bad resolve request: {e}")))?;
    let config = host.config();
    let mac = hex_decode(&request.mac).unwrap_or_default();
    let secret = config.auth.secret_for(&request.source);
    if secret.is_empty()
        || !protocol::hmac_sha256_verify(
            secret.as_bytes(),
            &[request.signed_text().as_bytes()],
            &mac,
        )
    {
        tracing::warn!(source = %request.source, vm_id = %request.vm_id, "a resolve request failed authentication");
        return Err(bad_data("resolve request not authenticated"));
    }
    let id = request.vm_id.to_ascii_uppercase();
    let answer = {
        let vms = host.inner.vms.lock().expect("vms lock");
        let running = vms.get(&id).is_some_and(|vm| vm.state == VmState::Running);
        let arrived = matches!(
            host.ledger().get(&id).map(|e| e.placement),
            Some(crate::ledger::Placement::Arrived { migration, .. }) if migration == request.migration
        );
        if vms.contains_key(&id) || arrived {
            protocol::ResolveAnswer {
                vm_id: id.clone(),
                committed: true,
                running,
            }
        } else {
            let mut fenced = host.inner.fenced.lock().expect("fence lock");
            if fenced.len() >= MAX_FENCES {
                fenced.clear();
            }
            fenced.insert(fence_key(&id, &request.migration));
            protocol::ResolveAnswer {
                vm_id: id.clone(),
                committed: false,
                running: false,
            }
        }
    };
    tracing::info!(vm_id = %id, source = %request.source, committed = answer.committed, "resolved an in-doubt migration");
    let body = serde_json::to_vec(&answer).unwrap_or_default();
    protocol::write_frame(writer, Command::Status, &[&body])?;
    writer.flush()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `Hello`: a new migration. Handshake and admission, authentication, the
/// offer and the pre-flight checks, then the migration itself.
fn hello(
    host: &Host,
    peer: SocketAddr,
    body: &[u8],
    mut reader: BufReader<TcpStream>,
    mut writer: BufWriter<TcpStream>,
) -> std::io::Result<()> {
    let config = host.config();
    // Hello: magic, version, source, initiator, nonce.
    let mut c = Cursor::new(body);
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
        return early(crate::host::migration_disabled(&config.name), &mut writer);
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
    let hello = Hello {
        source: &source,
        initiator: &initiator,
        nonce: source_nonce,
        peer,
    };
    if let Some(refused) = authenticate(&config, &hello, &mut reader, &mut writer)? {
        return early(refused, &mut writer);
    }
    let mut body = Vec::new();
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
    let (disk, mirror) = match open_disk(&config, &vm) {
        Ok(opened) => opened,
        Err(e) => return early(e, &mut writer),
    };
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
        source: source.clone(),
        migration: offer.migration.clone(),
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
    report_outcome(host, outcome, &vm, source, &mut writer);
    Ok(())
}

/// The destination's notice of how an incoming migration ended; a failure
/// is also sent to the source while the connection still works, so it
/// reports the real cause.
fn report_outcome(
    host: &Host,
    outcome: Result<u64, Received>,
    vm: &VmConfig,
    source: String,
    writer: &mut BufWriter<TcpStream>,
) {
    match outcome {
        Ok(blackout_ms) => host.notice(&Notice::MigrationSucceeded {
            vm_name: vm.name.clone(),
            vm_id: vm.id.clone(),
            role: Role::Destination,
            peer: source,
            blackout_ms,
            report: None,
        }),
        Err(e) => {
            let error = match e {
                Received::Error(e) => e,
                Received::Io(io) => MigrationError::from_io(&io, &source),
            };
            let _ = reject(writer, &error);
            host.notice(&Notice::MigrationFailed {
                vm_name: vm.name.clone(),
                vm_id: vm.id.clone(),
                role: Role::Destination,
                peer: source,
                error,
                report: None,
            });
        }
    }
}

/// Who says hello.
struct Hello<'a> {
    source: &'a str,
    initiator: &'a str,
    nonce: u64,
    peer: SocketAddr,
}

/// Challenge and proof (an HMAC of both nonces and both names under the
/// secret shared with the source), then the initiator policy: with direct
/// (CredSSP-like) authentication a move must be started on the source;
/// delegated (Kerberos-like) allows the trusted initiators. `Some` is the
/// refusal to send.
fn authenticate(
    config: &crate::config::HostConfig,
    hello: &Hello<'_>,
    reader: &mut BufReader<TcpStream>,
    writer: &mut BufWriter<TcpStream>,
) -> std::io::Result<Option<MigrationError>> {
    let Hello {
        source,
        initiator,
        peer,
        ..
    } = *hello;
    let nonce = random_u64();
    protocol::write_frame(writer, Command::Challenge, &[&nonce.to_le_bytes()])?;
    writer.flush()?;
    let mut body = Vec::new();
    match protocol::read_frame(reader, &mut body)? {
        Some(Command::Proof) => {}
        other => return Err(bad_data(&format!("expected Proof, got {other:?}"))),
    }
    let secret = config.auth.secret_for(source);
    let proven = !secret.is_empty()
        && protocol::hmac_sha256_verify(
            secret.as_bytes(),
            &[
                &hello.nonce.to_le_bytes(),
                &nonce.to_le_bytes(),
                source.as_bytes(),
                initiator.as_bytes(),
            ],
            &body,
        );
    if !proven {
        tracing::warn!(host = %config.name, %source, %peer, "migration refused: wrong credential");
        return Ok(Some(MigrationError::new(
            ErrorKind::CredentialsNotRecognized,
            format!("Host '{}' failed to authenticate the connection from '{source}': The credentials supplied to the package were not recognized (0x8009030D).", config.name),
        )));
    }
    if initiator.eq_ignore_ascii_case(source) {
        return Ok(None);
    }
    let trusted = config
        .auth
        .trusted_initiators
        .iter()
        .any(|t| t.eq_ignore_ascii_case(initiator));
    Ok(match config.auth.mode {
        AuthMode::Direct => Some(MigrationError::new(
            ErrorKind::NoCredentials,
            format!("Failed to authenticate the connection at the source host: No credentials are available in the security package (0x8009030E). The migration of a virtual machine from '{source}' to '{}' was initiated on '{initiator}'; with CredSSP it must be initiated on the source host.", config.name),
        )),
        AuthMode::Delegated if !trusted => Some(MigrationError::new(
            ErrorKind::CredentialsNotRecognized,
            format!("Host '{}' failed to authenticate the connection: no suitable credentials are available to delegate from '{initiator}'. The credentials supplied to the package were not recognized (0x8009030D).", config.name),
        )),
        AuthMode::Delegated => None,
    })
}

/// The incoming VM's disk: a new local image for a shared-nothing move
/// (`true`: its blocks follow the pages), or the shared image itself
/// (pre-flight checked that it exists).
fn open_disk(
    config: &crate::config::HostConfig,
    vm: &VmConfig,
) -> Result<(Option<Arc<GuestDisk>>, bool), MigrationError> {
    let Some(d) = &vm.disk else {
        return Ok((None, false));
    };
    config
        .disk_path(vm, d, true)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no shared storage"))
        .and_then(|path| GuestDisk::open(&path, d.size_mib, !d.shared))
        .map(|g| (Some(Arc::new(g)), !d.shared))
        .map_err(|e| {
            MigrationError::new(
                ErrorKind::Io,
                format!(
                    "Host '{}' cannot open the disk of '{}': {e}.",
                    config.name, vm.name
                ),
            )
        })
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
                {
                    // Under the VMs lock, like `Resolve`: either the source
                    // fenced this migration first (refused), or the VM is
                    // committed here first (and `Resolve` says so).
                    let mut vms = host.inner.vms.lock().expect("vms lock");
                    let fenced = host
                        .inner
                        .fenced
                        .lock()
                        .expect("fence lock")
                        .contains(&fence_key(&vm.id, &session.migration));
                    if fenced {
                        if let Some(w) = &workload {
                            w.stop();
                        }
                        return Err(Received::Error(MigrationError::new(
                            ErrorKind::Cancelled,
                            format!("The commit of '{}' arrived after the source settled the migration as not committed; the virtual machine stays on '{}'.", vm.name, session.source),
                        )));
                    }
                    // Written down before the VM runs here, so a crash after
                    // this still answers "committed" to the source.
                    host.ledger()
                        .set(
                            &vm.id,
                            &vm.name,
                            crate::ledger::Placement::Arrived {
                                from: session.source.clone(),
                                migration: session.migration.clone(),
                            },
                        )
                        .map_err(Received::Io)?;
                    vms.insert(
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
                }
                crate::fault_point("destination-after-resume");
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
    /// Asks the destination at `addr` to settle migration `migration` of
    /// VM `vm_id` (after a lost commit answer): `Ok(true)` = committed
    /// there, `Ok(false)` = not committed and fenced.
    pub fn resolve_remote(
        &self,
        addr: SocketAddr,
        peer: &str,
        vm_id: &str,
        migration: &str,
    ) -> std::io::Result<bool> {
        let config = self.config();
        let mut request = protocol::ResolveRequest {
            source: config.name.clone(),
            vm_id: vm_id.to_string(),
            migration: migration.to_string(),
            nonce: format!("{:016x}", random_u64()),
            mac: String::new(),
        };
        let mac = protocol::hmac_sha256(
            config.auth.secret_for(peer).as_bytes(),
            &[request.signed_text().as_bytes()],
        );
        request.mac = mac.iter().map(|b| format!("{b:02x}")).collect();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut writer = BufWriter::new(stream.try_clone()?);
        let body = serde_json::to_vec(&request).map_err(|e| bad_data(&e.to_string()))?;
        protocol::write_frame(&mut writer, Command::Resolve, &[&body])?;
        writer.flush()?;
        let mut reader = BufReader::new(stream);
        let mut body = Vec::new();
        match protocol::read_frame(&mut reader, &mut body)? {
            Some(Command::Status) => {
                let answer: protocol::ResolveAnswer =
                    serde_json::from_slice(&body).map_err(|e| bad_data(&e.to_string()))?;
                Ok(answer.committed)
            }
            other => Err(bad_data(&format!("expected Status, got {other:?}"))),
        }
    }

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
