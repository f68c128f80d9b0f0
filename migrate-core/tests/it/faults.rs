//! The connection dropped at every phase, through a frame-aware TCP proxy
//! that cuts both directions when it sees a given command, and the
//! destination torn down mid-run. Whatever happens, the VM runs in exactly
//! one place and no memory reservation is left behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use migrate_core::host::VmState;
use migrate_core::protocol::Command;
use migrate_core::report::{MigrationParams, Status};
use migrate_core::source::MigrateRequest;
use migrate_core::ErrorKind;

use crate::{assert_runs_on_source, host, vm, wait_for_destination};

/// Forwards connections to `target`; on the first connection, cuts both
/// directions when a frame with `command` passes in `direction`
/// (true = source to destination), dropping that frame; with `nth`, at the
/// nth such frame.
struct CuttingProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(
        target: SocketAddr,
        command: Command,
        to_destination: bool,
        nth: usize,
    ) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (stop2, cut2) = (stop.clone(), cut.clone());
        std::thread::spawn(move || {
            let mut first = true;
            let seen = Arc::new(AtomicUsize::new(0));
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let server = TcpStream::connect(target).unwrap();
                        let watch = first.then_some(command);
                        first = false;
                        for (from, to, dir) in [
                            (
                                client.try_clone().unwrap(),
                                server.try_clone().unwrap(),
                                true,
                            ),
                            (
                                server.try_clone().unwrap(),
                                client.try_clone().unwrap(),
                                false,
                            ),
                        ] {
                            let cut = cut2.clone();
                            let seen = seen.clone();
                            let watch = watch.filter(|_| dir == to_destination);
                            let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                            std::thread::spawn(move || {
                                pump(from, to, watch, nth, &seen, &cut, c, s)
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CuttingProxy { addr, stop, cut }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    watch: Option<Command>,
    nth: usize,
    seen: &AtomicUsize,
    cut: &AtomicBool,
    client: TcpStream,
    server: TcpStream,
) {
    let mut head = [0u8; 5];
    loop {
        if from.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(1)];
        if from.read_exact(&mut body).is_err() {
            break;
        }
        if watch.is_some_and(|c| c as u8 == head[4])
            && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth
        {
            cut.store(true, Ordering::SeqCst);
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
            return;
        }
        if to.write_all(&head).is_err() || to.write_all(&body).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn the_connection_dropped_at_every_phase_leaves_the_vm_in_exactly_one_place() {
    let phases: [(Command, bool, usize, bool); 11] = [
        // (command, source -> destination, nth, VM ends on the destination)
        (Command::Hello, true, 1, false),
        (Command::Challenge, false, 1, false),
        (Command::Offer, true, 1, false),
        (Command::Accept, false, 1, false),
        (Command::Pages, true, 20, false),
        (Command::PassEnd, true, 1, false),
        (Command::Device, true, 1, false),
        (Command::VerifySummary, true, 1, false),
        (Command::Verified, false, 1, false),
        (Command::Commit, true, 1, false),
        // The destination resumed but its acknowledgement was lost: the
        // source asks, learns the VM runs there, and does not resume.
        (Command::CommitAck, false, 1, true),
    ];
    for (command, to_destination, nth, moved) in phases {
        let src = host("HV01", |_| {});
        let dst = host("HV02", |_| {});
        src.host.start_vm(vm("ADFS1", 16, 4, 5_000)).unwrap();
        let proxy = CuttingProxy::start(dst.addr, command, to_destination, nth);
        let params = MigrationParams {
            max_bandwidth: 32 << 20,
            ..MigrationParams::default()
        };
        let report = src
            .host
            .migrate(MigrateRequest {
                vm: "ADFS1".into(),
                destination: "HV02".into(),
                address: proxy.addr,
                initiator: None,
                params,
            })
            .unwrap()
            .wait();
        assert!(
            proxy.cut.load(Ordering::SeqCst),
            "{command:?}: the proxy cut"
        );
        wait_for_destination(&dst);
        if moved {
            assert_eq!(
                report.info.status,
                Status::Completed,
                "{command:?}: {:?}",
                report.error
            );
            assert!(
                src.host.find_vm("ADFS1").is_err(),
                "{command:?}: not on the source"
            );
            let id = dst.host.find_vm("ADFS1").unwrap();
            assert_eq!(dst.host.vm_state(&id), Some(VmState::Running));
        } else {
            assert_eq!(report.info.status, Status::Failed, "{command:?}");
            let kind = report.error.as_ref().unwrap().kind;
            assert!(
                matches!(
                    kind,
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionTimeout | ErrorKind::Protocol
                ),
                "{command:?}: {:?}",
                report.error
            );
            assert_runs_on_source(&src, "ADFS1");
            for _ in 0..200 {
                if dst.host.active_migrations() == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                dst.host.list_vms().is_empty(),
                "{command:?}: not on the destination"
            );
            assert_eq!(
                dst.host.active_migrations(),
                0,
                "{command:?}: reservation freed"
            );
        }
        drop(proxy);
        src.host.shutdown();
        dst.host.shutdown();
    }
}
