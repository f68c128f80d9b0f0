//! Live-migration benchmark (migration.md 5.3's workload): two hosts in
//! this process on loopback, a VM of 256 MiB (and 1 GiB) with a non-zero
//! fill of 200 MB (960 MB) and a 128 MiB working set written at 25,600
//! pages/s, capped at 128 MiB/s and uncapped, with `downtime-limit` 300 and
//! 20 ms: total time, blackout, bytes sent, passes, CPU seconds; three
//! runs each, median (`RELIVE_BENCH_CASE=<part of a label>` runs only
//! matching cases and prints where their blackout goes). Against it, in
//! the same run: a raw loopback TCP stream of the same number of bytes (the throughput baseline), `compress`
//! against `tcp` on a 1 Gbit/s cap with compressible memory, and `multi`
//! with 1, 2 and 4 streams.
//!
//! Run: `cargo bench -p migrate-core --bench migration` (release).
//! `RELIVE_BENCH_QUICK=1` runs the 256 MiB cases only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use migrate_core::config::{HostConfig, VmConfig};
use migrate_core::host::{Host, Notices};
use migrate_core::protocol::Codec;
use migrate_core::report::{MigrationParams, MigrationReport, Status, VerifyMode};
use migrate_core::source::{cpu_seconds, MigrateRequest};
use migrate_core::workload::WorkloadSpec;

struct Pair {
    src: Host,
    dst: Host,
    addr: std::net::SocketAddr,
}

fn pair() -> Pair {
    let mk = |name: &str| {
        let mut c = HostConfig::named(name);
        c.listen = Some("127.0.0.1:0".parse().unwrap());
        c.memory_mib = 8192;
        c.max_migrations = 8;
        c.auth.default_secret = "bench-secret-0123456789".into();
        Host::new(c, Arc::new(Notices::default()))
    };
    let src = mk("HV01");
    let dst = mk("HV02");
    let addr = dst.open_listener().unwrap();
    Pair { src, dst, addr }
}

#[derive(Clone)]
struct Case {
    mib: u64,
    fill_mib: u64,
    ws_mib: u64,
    rate: u64,
    params: MigrationParams,
    compressible: bool,
}

struct Run {
    report: MigrationReport,
    cpu: f64,
}

fn run(case: &Case, i: usize) -> Run {
    let p = pair();
    let name = format!("VM{i}");
    let mut vm = VmConfig::new(&name, case.mib);
    vm.fill_mib = if case.compressible { 0 } else { case.fill_mib };
    if case.ws_mib > 0 {
        vm.workload = Some(WorkloadSpec::mib(case.ws_mib, case.rate));
    }
    p.src.start_vm(vm).unwrap();
    if case.compressible {
        // Text-like memory: repeated words with a counter, compresses ~4x.
        let mem = p.src.vm_memory(&name).unwrap();
        for page in 1..((case.fill_mib as usize) << 8).min(mem.pages()) {
            for w in 0..512 {
                let v = if w % 4 == 0 {
                    page as u64 * 31 + w as u64
                } else {
                    0x2020_6576_696c_6572
                };
                mem.write_word(page, w, v);
            }
        }
    }
    // Let the workload reach its rate.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let cpu0 = cpu_seconds();
    let report = p
        .src
        .migrate(MigrateRequest {
            vm: name,
            destination: "HV02".into(),
            address: p.addr,
            initiator: None,
            params: case.params.clone(),
        })
        .unwrap()
        .wait();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(report.info.status, Status::Completed, "{:?}", report.error);
    assert!(report.verification.as_ref().is_some_and(|v| v.digest_ok));
    p.src.shutdown();
    p.dst.shutdown();
    Run { report, cpu }
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Sends `bytes` over one loopback TCP stream in 256 KiB writes; bytes/s.
/// `memory`: the bytes are read from a buffer of that size holding
/// non-zero data and land in another one (touched beforehand, as the
/// destination's reservation is), as a migration's bytes are; otherwise one
/// cache-hot 256 KiB buffer is sent again and again and read into a 1 MiB one.
fn raw_tcp(bytes: u64, memory: bool) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let size = bytes as usize;
    let mut sink = vec![1u8; if memory { size } else { 1 << 20 }];
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = 0usize;
        loop {
            let at = if memory { got } else { 0 };
            let end = sink.len().min(at + (1 << 20));
            let n = s.read(&mut sink[at..end]).unwrap();
            if n == 0 {
                break got as u64;
            }
            got += n;
        }
    });
    let source: Vec<u8> = if memory {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..size.div_ceil(8))
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .take(size)
            .collect()
    } else {
        vec![0x5au8; 256 << 10]
    };
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    let mut sent = 0usize;
    while sent < size {
        let n = (256usize << 10).min(size - sent);
        let from = if memory { sent } else { 0 };
        s.write_all(&source[from..from + n]).unwrap();
        sent += n;
    }
    drop(s);
    let got = reader.join().unwrap();
    assert_eq!(got, bytes);
    bytes as f64 / started.elapsed().as_secs_f64()
}

fn row(label: &str, case: &Case, reps: usize) -> Vec<Run> {
    row_with(label, case, reps).0
}

/// Runs a case, prints its row, returns the runs and the median total and
/// blackout (ms).
fn row_with(label: &str, case: &Case, reps: usize) -> (Vec<Run>, f64, f64) {
    let runs: Vec<Run> = (0..reps).map(|i| run(case, i)).collect();
    let total = median(
        runs.iter()
            .map(|r| r.report.info.total_time as f64)
            .collect(),
    );
    let down = median(
        runs.iter()
            .map(|r| r.report.info.downtime.unwrap_or(0) as f64)
            .collect(),
    );
    let mb = median(
        runs.iter()
            .map(|r| r.report.info.ram.transferred as f64 / 1e6)
            .collect(),
    );
    let passes = median(runs.iter().map(|r| r.report.passes.len() as f64).collect());
    let cpu = median(runs.iter().map(|r| r.cpu).collect());
    let mbps = median(runs.iter().map(|r| r.report.info.ram.mbps).collect());
    let part = |f: fn(&migrate_core::report::Downtime) -> f64| {
        median(
            runs.iter()
                .map(|r| r.report.downtime.as_ref().map_or(0.0, f))
                .collect(),
        )
        .0
    };
    let verify = median(
        runs.iter()
            .map(|r| r.report.downtime.as_ref().map_or(0.0, |d| d.verify_ms))
            .collect(),
    );
    if std::env::var_os("RELIVE_BENCH_CASE").is_some() {
        println!(
            "  blackout parts (median ms): pause {:.1}, final pages {:.1}, device {:.1}, verify {:.1}, commit {:.1}",
            part(|d| d.pause_ms),
            part(|d| d.final_pages_ms),
            part(|d| d.device_ms),
            part(|d| d.verify_ms),
            part(|d| d.commit_ms)
        );
    }
    println!(
        "| {label} | {:.0} ms ({:.0}–{:.0}) | {:.0} ms ({:.0}–{:.0}) | {:.1} ms | {:.0} MB | {:.0} | {:.0} Mbit/s | {:.2} s |",
        total.0, total.1, total.2, down.0, down.1, down.2, verify.0, mb.0, passes.0, mbps.0, cpu.0
    );
    (runs, total.0, down.0)
}

/// The same case through a QEMU pair (TCG, the dirtying guest); median
/// total and downtime (ms).
fn qemu_row(label: &str, case: &Case, kernel: &std::path::Path, reps: usize) -> Option<(f64, f64)> {
    let spec = migrate_core::qemu::QemuSpec {
        memory_mib: case.mib,
        kernel: kernel.to_path_buf(),
        ws_mib: case.ws_mib,
        fill_mib: case.fill_mib,
        rate: case.rate,
    };
    let (mut totals, mut downs, mut mbs, mut syncs, mut cpus) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..reps {
        let dir = tempfile::tempdir().ok()?;
        let mut src =
            migrate_core::qemu::QemuVm::start(&spec, dir.path(), &format!("src{i}"), None, false)
                .ok()?;
        let ready = if case.ws_mib == 0 { "idle" } else { "p1\n" };
        if !src.wait_console(ready, std::time::Duration::from_secs(180)) {
            return None;
        }
        let addr = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?;
        let mut dst = migrate_core::qemu::QemuVm::start(
            &spec,
            dir.path(),
            &format!("dst{i}"),
            Some(addr),
            false,
        )
        .ok()?;
        let report = migrate_core::qemu::migrate(
            &mut src,
            &mut dst,
            addr,
            &case.params,
            std::time::Duration::from_millis(20),
        )
        .ok()?;
        if report.info.status != Status::Completed {
            println!(
                "| QEMU {label} | {:?}: {:?} |",
                report.info.status, report.error
            );
            return None;
        }
        totals.push(report.info.total_time as f64);
        downs.push(report.info.downtime.unwrap_or(0) as f64);
        mbs.push(report.info.ram.transferred as f64 / 1e6);
        syncs.push(report.info.ram.dirty_sync_count as f64);
        cpus.push(report.cpu_seconds);
    }
    let total = median(totals);
    let down = median(downs);
    println!(
        "| QEMU: {label} | {:.0} ms ({:.0}–{:.0}) | {:.0} ms ({:.0}–{:.0}) | — | {:.0} MB | {:.0} | — | {:.2} s |",
        total.0, total.1, total.2, down.0, down.1, down.2, median(mbs).0, median(syncs).0, median(cpus).0
    );
    Some((total.0, down.0))
}

fn main() {
    let quick = std::env::var("RELIVE_BENCH_QUICK").is_ok();
    // `RELIVE_BENCH_ONLY=bulk`: only the uncapped 256 MiB runs and the bulk
    // pass against raw TCP (no QEMU), for working on the send path.
    let bulk_only = std::env::var("RELIVE_BENCH_ONLY").is_ok_and(|v| v == "bulk");
    // `RELIVE_BENCH_CASE=<part of a label>`: only the matching cases of the
    // main table (with QEMU), for looking into one blackout.
    let only_case = std::env::var("RELIVE_BENCH_CASE").ok();
    let reps = 3;
    println!("relive migration core, loopback, one process for both hosts (2 cores shared by the workload, source and destination)");
    println!();
    println!("| case | total (min–max) | blackout (min–max) | of it verify | sent | passes | mbps | CPU |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut sizes = vec![(256u64, 200u64)];
    if !quick && !bulk_only {
        sizes.push((1024, 960));
    }
    let mut uncapped_rate = Vec::new();
    // QEMU in the same run, when it is installed.
    let guest_dir = tempfile::tempdir().unwrap();
    let kernel = migrate_core::qemu::build_guest(guest_dir.path())
        .ok()
        .filter(|_| {
            !bulk_only
                && std::process::Command::new("qemu-system-x86_64")
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
        });
    if kernel.is_none() {
        println!("(QEMU rows skipped: qemu-system-x86_64 or the guest toolchain is missing)");
    }
    let mut versus = Vec::new();
    for (mib, fill) in sizes {
        for (cap, cap_label) in [(128u64 << 20, "128 MiB/s"), (0, "uncapped")] {
            if bulk_only && cap != 0 {
                continue;
            }
            for dl in [300u64, 20] {
                let case = Case {
                    mib,
                    fill_mib: fill,
                    ws_mib: 128,
                    rate: 25_600,
                    params: MigrationParams {
                        downtime_limit: dl,
                        max_bandwidth: cap,
                        ..MigrationParams::default()
                    },
                    compressible: false,
                };
                let label = format!(
                    "{mib} MiB, fill {fill} MB, ws 128 MiB @ 25,600 pg/s, {cap_label}, dl {dl}"
                );
                if only_case
                    .as_ref()
                    .is_some_and(|c| !label.contains(c.as_str()))
                {
                    continue;
                }
                // The default (`verify = sent`), then the same case reading
                // all of the paused memory in the blackout (`verify = full`;
                // QEMU verifies nothing).
                let (runs, total, down) = row_with(&label, &case, reps);
                let full_case = Case {
                    params: MigrationParams {
                        verify: VerifyMode::Full,
                        ..case.params.clone()
                    },
                    ..case.clone()
                };
                let (_, _, down_full) =
                    row_with(&format!("{label}, verify=full"), &full_case, reps);
                if let Some(kernel) = &kernel {
                    if let Some((qt, qd)) = qemu_row(&label, &case, kernel, reps) {
                        versus.push((label.clone(), total, down, down_full, qt, qd));
                    }
                }
                if cap == 0 {
                    for r in &runs {
                        let first = &r.report.passes[0];
                        uncapped_rate.push((
                            first.bytes as f64 / (first.duration_ms.max(1) as f64 / 1000.0),
                            first.bytes,
                        ));
                    }
                }
            }
        }
    }
    if !versus.is_empty() {
        println!();
        println!("| case | relive total / QEMU total | goal ≤ 1.5x | relive blackout / QEMU downtime | goal ≤ 1x | with verify=full / QEMU | ≤ 1x |");
        println!("|---|---|---|---|---|---|---|");
        let met = |ok: bool| if ok { "met" } else { "not met" };
        for (label, total, down, down_full, qt, qd) in &versus {
            let ratio = total / qt.max(1.0);
            println!(
                "| {label} | {total:.0} / {qt:.0} ms = {ratio:.2}x | {} | {down:.0} / {qd:.0} ms | {} | {down_full:.0} / {qd:.0} ms | {} |",
                met(ratio <= 1.5),
                met(down <= qd),
                if down_full <= qd { "yes" } else { "no" }
            );
        }
    }
    if only_case.is_some() {
        return;
    }
    // Throughput of the first (bulk) pass against raw TCP with the same bytes:
    // memory to memory (the goal's baseline), and from a cache-hot buffer
    // (for reference: no stream of guest memory can be that).
    println!();
    let mut ratios = Vec::new();
    let mut hot_ratios = Vec::new();
    for (rate, bytes) in &uncapped_rate {
        let raw = raw_tcp(*bytes, true);
        let hot = raw_tcp(*bytes, false);
        ratios.push(rate / raw);
        hot_ratios.push(rate / hot);
        println!(
            "bulk pass {:.0} MB: relive {:.0} MB/s; raw loopback TCP memory to memory {:.0} MB/s, ratio {:.2}x (goal >= 0.8x); from a hot 256 KiB buffer {:.0} MB/s, {:.2}x",
            *bytes as f64 / 1e6,
            rate / 1e6,
            raw / 1e6,
            rate / raw,
            hot / 1e6,
            rate / hot
        );
    }
    let (hm, hlo, hhi) = median(hot_ratios);
    println!("median ratio against the hot buffer {hm:.2}x ({hlo:.2}–{hhi:.2})");
    let (m, lo, hi) = median(ratios);
    println!("median ratio memory to memory {m:.2}x ({lo:.2}–{hi:.2}) (goal >= 0.8x)");
    if bulk_only {
        return;
    }

    // compress vs tcp at 1 Gbit/s with compressible memory; multi streams.
    println!();
    println!("| case | total (min–max) | blackout (min–max) | of it verify | sent | passes | mbps | CPU |");
    println!("|---|---|---|---|---|---|---|---|");
    for (codec, label) in [(Codec::None, "tcp"), (Codec::Lz4, "compress (LZ4)")] {
        let case = Case {
            mib: 256,
            fill_mib: 200,
            ws_mib: 0,
            rate: 0,
            params: MigrationParams {
                max_bandwidth: 125_000_000,
                codec,
                ..MigrationParams::default()
            },
            compressible: true,
        };
        row(
            &format!("256 MiB compressible, idle, 1 Gbit/s cap, {label}"),
            &case,
            reps,
        );
    }
    for streams in [1u32, 2, 4] {
        let case = Case {
            mib: 256,
            fill_mib: 200,
            ws_mib: 128,
            rate: 25_600,
            params: MigrationParams {
                downtime_limit: 300,
                streams,
                ..MigrationParams::default()
            },
            compressible: false,
        };
        row(
            &format!("256 MiB, uncapped, dl 300, multi {streams} stream(s)"),
            &case,
            reps,
        );
    }
}
