//! The QEMU driver against a real `qemu-system-x86_64` pair (TCG) on
//! loopback, with the dirtying guest built by `qemu::build_guest`.
//! `scripts/test` installs `qemu-system-x86`. Memory is compared only for
//! an idle guest: QEMU 7.2 under TCG loses a dirty page (migration.md 4.6).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use migrate_core::qemu::{self, QemuSpec, QemuVm};
use migrate_core::report::{MigrationParams, Status};
use migrate_core::ErrorKind;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn qemu_pair_migrates_idle_memory_exactly_keeps_a_dirtying_guest_counting_and_reports_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = qemu::build_guest(&dir.path().join("guest"))
        .expect("building the guest needs gcc, as and ld");

    // 1. An idle guest: one pass, and both memories are equal byte for byte.
    let idle = QemuSpec {
        memory_mib: 64,
        kernel: kernel.clone(),
        ws_mib: 0,
        fill_mib: 16,
        rate: 0,
    };
    let mut src = QemuVm::start(&idle, dir.path(), "idle-src", None, false)
        .expect("qemu-system-x86_64 (scripts/test installs qemu-system-x86)");
    assert!(
        src.wait_console("idle", Duration::from_secs(60)),
        "guest: {}",
        src.console_text()
    );
    let addr = free_addr();
    let mut dst = QemuVm::start(&idle, dir.path(), "idle-dst", Some(addr), true).unwrap();
    let report = qemu::migrate(
        &mut src,
        &mut dst,
        addr,
        &MigrationParams::default(),
        Duration::from_millis(20),
    )
    .unwrap();
    assert_eq!(report.info.status, Status::Completed, "{:?}", report.error);
    assert!(
        report.info.ram.transferred > 16 << 20,
        "{:?}",
        report.info.ram
    );
    assert!(report.info.ram.duplicate > 0, "zero pages as markers");
    let (a, b) = (dir.path().join("src.mem"), dir.path().join("dst.mem"));
    src.save_memory(64 << 20, &a).unwrap();
    dst.save_memory(64 << 20, &b).unwrap();
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "idle memory equal after migration"
    );
    drop((src, dst));

    // 2. A dirtying guest: the destination continues the pass counter.
    let busy = QemuSpec {
        memory_mib: 64,
        kernel: kernel.clone(),
        ws_mib: 4,
        fill_mib: 8,
        rate: 5_000,
    };
    let mut src = QemuVm::start(&busy, dir.path(), "busy-src", None, false).unwrap();
    assert!(
        src.wait_console("p3\n", Duration::from_secs(60)),
        "guest: {}",
        src.console_text()
    );
    let addr = free_addr();
    let mut dst = QemuVm::start(&busy, dir.path(), "busy-dst", Some(addr), false).unwrap();
    let params = MigrationParams {
        max_bandwidth: 64 << 20,
        ..MigrationParams::default()
    };
    let report =
        qemu::migrate(&mut src, &mut dst, addr, &params, Duration::from_millis(20)).unwrap();
    assert_eq!(report.info.status, Status::Completed, "{:?}", report.error);
    assert!(
        report.info.ram.dirty_sync_count >= 2,
        "{:?}",
        report.info.ram
    );
    let at_switch = src.last_pass().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let later = dst
        .last_pass()
        .expect("the destination guest prints its passes");
    assert!(
        later > at_switch,
        "the counter continues on the destination: {at_switch} -> {later}"
    );
    drop((src, dst));

    // 3. Nothing listens: failed, refused, and the source keeps running.
    let mut src = QemuVm::start(&idle, dir.path(), "lone-src", None, false).unwrap();
    let nowhere = free_addr();
    let mut dummy = QemuVm::start(&idle, dir.path(), "dummy", None, true).unwrap();
    let report = qemu::migrate(
        &mut src,
        &mut dummy,
        nowhere,
        &MigrationParams::default(),
        Duration::from_millis(20),
    )
    .unwrap();
    assert_eq!(report.info.status, Status::Failed);
    assert_eq!(report.error.unwrap().kind, ErrorKind::ConnectionRefused);
    let status = src.qmp("query-status", serde_json::json!({})).unwrap();
    assert_eq!(status["status"], "running");
}
