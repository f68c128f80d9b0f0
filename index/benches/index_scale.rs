//! Index and analytics at scale (issue "searchable event index"):
//!
//! 1. 10 M generated events (16 hosts; System, Security, Hyper-V, cluster
//!    channels; 1 % in failed-migration chains) indexed through
//!    `EventIndex::add` (dedup keys, deletes, periodic commits), against a
//!    bare tantivy writer with the same schema and the same documents in the
//!    same run: events/s, MB/s of the events as ECS JSON lines, index bytes
//!    per event, peak RSS. Each writer runs in a child process of its own so
//!    its peak RSS is its own.
//! 2. Query latency p50/p99 over that index (a selective term, a term and a
//!    time range, a phrase in the message, a count-by) against `rg` over
//!    the same events as JSON lines, in the same run.
//! 3. `relive stats` over 1 M metric samples (100 k migrations): in process,
//!    and as the release `relive` binary when it has been built.
//!
//! Run: `cargo bench -p index --bench index_scale` (release). Needs `rg`.
//! `RELIVE_BENCH_EVENTS` changes the 10 M, `RELIVE_BENCH_SAMPLES` the 1 M,
//! `RELIVE_BENCH_DIR` the scratch folder (default: the system temp dir).

/// The allocator the `relive` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, TimeZone, Utc};
use index::bench_support;

#[path = "support/gen.rs"]
mod gen;
use gen::{generate, host_name, vm_guid, vm_name, HOSTS, VMS};
use index::{EventIndex, MetricStore, SearchRequest, StatsRequest};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                total += dir_bytes(&path);
            } else if let Ok(meta) = entry.metadata() {
                total += meta.len();
            }
        }
    }
    total
}

/// The child side: generate and index (or only generate), then report
/// seconds and peak RSS on stdout.
fn child(role: &str, dir: &Path, n: usize) {
    let started = Instant::now();
    match role {
        "gen" => {
            let mut bytes = 0usize;
            generate(n, |e| bytes += e.message.len());
            std::hint::black_box(bytes);
        }
        "relive" => {
            let mut index = EventIndex::open(dir).expect("open index");
            generate(n, |e| index.add(e).expect("add"));
            // Like the bare writer: timed until the merges are done.
            index
                .commit_and_wait_for_merges()
                .expect("commit and merge");
        }
        "bare" => {
            let (schema, fields) = bench_support::build();
            let index = tantivy::Index::create_in_dir(dir, schema).expect("create");
            bench_support::register_tokenizers(&index);
            let mut writer: tantivy::IndexWriter =
                index.writer(bench_support::WRITER_BYTES).expect("writer");
            generate(n, |e| {
                let key = bench_support::dedup_key(e);
                writer.add_document(fields.document(e, &key)).expect("add");
            });
            writer.commit().expect("commit");
            writer.wait_merging_threads().expect("merge");
        }
        other => panic!("unknown role {other}"),
    }
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT {secs} {}", status_kib("VmHWM:"));
}

struct ChildRun {
    secs: f64,
    peak_kib: u64,
}

fn run_child(role: &str, dir: &Path, n: usize) -> ChildRun {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env("RELIVE_BENCH_ROLE", role)
        .env("RELIVE_BENCH_CHILD_DIR", dir)
        .env("RELIVE_BENCH_EVENTS", n.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run child");
    assert!(out.status.success(), "{role} child failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .expect("child result");
    let mut parts = line.split_whitespace().skip(1);
    ChildRun {
        secs: parts.next().unwrap().parse().unwrap(),
        peak_kib: parts.next().unwrap().parse().unwrap(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `rg` over the JSON lines and returns its wall time and output lines.
fn rg(args: &[&str], file: &Path) -> (Duration, usize) {
    let started = Instant::now();
    let mut child = Command::new("rg")
        .args(args)
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("rg is installed (apt install ripgrep)");
    let mut lines = 0;
    let mut groups = std::collections::HashMap::<String, u64>::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        lines += 1;
        if args.contains(&"-c") {
            // `rg -c` prints the number of matching lines.
            lines = line.trim().parse().unwrap_or(0);
        } else if args.contains(&"-r") {
            *groups.entry(line).or_default() += 1;
        }
    }
    child.wait().unwrap();
    std::hint::black_box(groups);
    (started.elapsed(), lines)
}

struct QueryFigure {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    rg: Duration,
    hits: String,
}

fn main() {
    if let Ok(role) = std::env::var("RELIVE_BENCH_ROLE") {
        let dir = PathBuf::from(std::env::var("RELIVE_BENCH_CHILD_DIR").unwrap());
        child(&role, &dir, env_usize("RELIVE_BENCH_EVENTS", 10_000_000));
        return;
    }
    let n = env_usize("RELIVE_BENCH_EVENTS", 10_000_000);
    let samples = env_usize("RELIVE_BENCH_SAMPLES", 1_000_000);
    let base = std::env::var("RELIVE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let scratch = tempfile::tempdir_in(&base).expect("scratch dir");
    let jsonl = scratch.path().join("events.jsonl");
    println!(
        "index_scale: {n} events, {samples} metric samples, scratch {}",
        scratch.path().display()
    );

    // The same events as ECS JSON lines: the MB/s figure and rg's input.
    let started = Instant::now();
    let mut json_bytes = 0u64;
    {
        let mut out =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&jsonl).unwrap());
        let mut line = Vec::with_capacity(1024);
        generate(n, |e| {
            line.clear();
            e.write_json(&mut line);
            line.push(b'\n');
            json_bytes += line.len() as u64;
            out.write_all(&line).unwrap();
        });
        out.flush().unwrap();
    }
    let mb = json_bytes as f64 / 1e6;
    println!(
        "wrote {:.0} MB of JSON lines ({:.0} bytes/event) in {:.1} s",
        mb,
        json_bytes as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );

    // 1. Indexing: relive, the bare writer, and the generator alone.
    let gen = run_child("gen", scratch.path(), n);
    println!(
        "generator alone: {:.1} s, peak RSS {} MiB",
        gen.secs,
        gen.peak_kib / 1024
    );
    let relive_dir = scratch.path().join("relive");
    let bare_dir = scratch.path().join("bare");
    std::fs::create_dir_all(&bare_dir).unwrap();
    let relive = run_child("relive", &relive_dir, n);
    let bare = run_child("bare", &bare_dir, n);
    let relive_bytes = dir_bytes(&relive_dir);
    let bare_bytes = dir_bytes(&bare_dir);
    println!();
    println!(
        "indexing {n} events (wall time includes generating them, {:.1} s of it alone)",
        gen.secs
    );
    println!("| writer | events/s | MB/s (JSON) | index bytes/event | peak RSS |");
    println!("|---|---|---|---|---|");
    for (name, run, bytes) in [
        ("relive EventIndex::add", &relive, relive_bytes),
        ("bare tantivy writer", &bare, bare_bytes),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {:.0} | {} MiB |",
            n as f64 / run.secs,
            mb / run.secs,
            bytes as f64 / n as f64,
            run.peak_kib / 1024
        );
    }
    println!(
        "ratio relive/bare events/s: {:.2}x (goal >= 0.8x)",
        bare.secs / relive.secs
    );
    std::fs::remove_dir_all(&bare_dir).ok();

    // 2. Queries.
    let index = EventIndex::open(&relive_dir).expect("open index");
    assert_eq!(
        index.len(),
        n as u64,
        "every generated event is indexed once"
    );
    let day2 = Utc.with_ymd_and_hms(2026, 11, 2, 6, 0, 0).unwrap();
    let mut figures = Vec::new();
    let runs = 200;
    let mut measure = |name: &'static str,
                       rg_args: Vec<String>,
                       run: &mut dyn FnMut(usize) -> usize| {
        run(0); // warm
        let mut times = Vec::with_capacity(runs);
        let mut hits = 0;
        for i in 0..runs {
            let started = Instant::now();
            hits += run(i);
            times.push(started.elapsed());
        }
        times.sort();
        let rg_args: Vec<&str> = rg_args.iter().map(String::as_str).collect();
        rg(&rg_args, &jsonl); // warm the page cache
        let mut rg_times: Vec<(Duration, usize)> = (0..3).map(|_| rg(&rg_args, &jsonl)).collect();
        rg_times.sort();
        let fig = QueryFigure {
            name,
            p50: percentile(&times, 0.5),
            p99: percentile(&times, 0.99),
            rg: rg_times[1].0,
            hits: format!(
                "{} avg hits, rg {} matching lines",
                hits / runs,
                rg_times[1].1
            ),
        };
        println!(
            "{name}: p50 {:.2} ms, p99 {:.2} ms; rg {:.0} ms ({})",
            ms(fig.p50),
            ms(fig.p99),
            ms(fig.rg),
            fig.hits
        );
        figures.push(fig);
    };
    measure(
        "term: vm_name:VM-xxxx (200 different VMs), newest 20",
        vec!["-c".into(), "-F".into(), "\"VmName\":\"VM-0421\"".into()],
        &mut |i| {
            let q = format!("vm_name:{}", vm_name((i as u64 * 7) % VMS));
            index.search(&SearchRequest::new(&q)).unwrap().total
        },
    );
    measure(
        "term + time range: event_id:21502 AND host:hvNN, 6 h window",
        vec![
            "-c".into(),
            "^\\{\"@timestamp\":\"2026-11-02T(0[6-9]|1[01]).*\"host\":\\{\"name\":\"HV07[^\"]*\".*\"event_id\":21502,".into(),
        ],
        &mut |i| {
            let mut req = SearchRequest::new(&format!("event_id:21502 AND host:hv{:02}", i as u64 % HOSTS + 1));
            let since = day2 + TimeDelta::minutes((i % 60) as i64);
            req.since = Some(since);
            req.until = Some(since + TimeDelta::hours(6));
            index.search(&req).unwrap().total
        },
    );
    measure(
        "phrase: message:\"collection registry\", newest 20",
        vec!["-c".into(), "-F".into(), "collection registry".into()],
        &mut |_| {
            index
                .search(&SearchRequest::new("message:\"collection registry\""))
                .unwrap()
                .total
        },
    );
    measure(
        "count-by host over level:error",
        vec![
            "-o".into(),
            "-r".into(),
            "$1".into(),
            "\"host\":\\{\"name\":\"([^\"]*)\".*\"log\":\\{\"level\":\"error\"".into(),
        ],
        &mut |_| {
            index
                .count_by(&SearchRequest::new("level:error"), "host")
                .unwrap()
                .len()
        },
    );
    println!();
    println!("| query | relive p50 | relive p99 | rg (median of 3) | rg / relive p50 | rg / relive p99 |");
    println!("|---|---|---|---|---|---|");
    for f in &figures {
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.0} ms | {:.0}x | {:.0}x |",
            f.name,
            ms(f.p50),
            ms(f.p99),
            ms(f.rg),
            f.rg.as_secs_f64() / f.p50.as_secs_f64(),
            f.rg.as_secs_f64() / f.p99.as_secs_f64()
        );
    }
    drop(index);
    std::fs::remove_file(&jsonl).ok();
    std::fs::remove_dir_all(&relive_dir).ok();

    // 3. Stats over 1 M metric samples.
    stats_bench(scratch.path(), samples);
}

/// 1 M samples: 100 k migrations of 10 samples each (start, 8 pre-copy
/// passes, the end), 16 hosts, three transports, 3 % failures.
fn stats_bench(scratch: &Path, samples: usize) {
    let data = scratch.join("data");
    let store = MetricStore::open(&data.join("metrics"));
    let t0 = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = Instant::now();
    let mut batch = Vec::with_capacity(100_000);
    let migrations = samples / 10;
    for m in 0..migrations {
        let r = next();
        let src = r % HOSTS;
        let dst = (src + 1 + (r >> 8) % (HOSTS - 1)) % HOSTS;
        let failed = (r >> 20) % 100 < 3;
        let at = t0 + TimeDelta::seconds(m as i64 * 26);
        let transport = ["tcp", "compress", "smb"][((r >> 30) % 3) as usize];
        let vm = (r >> 34) % VMS;
        for s in 0..10u32 {
            let last = s == 9;
            let phase = match s {
                0 => parsers::Phase::Started,
                9 if failed => parsers::Phase::Failed,
                9 => parsers::Phase::Completed,
                _ => parsers::Phase::Precopy,
            };
            let total = 4_000 + (r >> 40) % 60_000;
            batch.push(parsers::Metric {
                timestamp: at + TimeDelta::milliseconds((total / 10 * u64::from(s)) as i64),
                migration_id: format!("mig-{m:07}"),
                vm_name: Some(vm_name(vm)),
                vm_id: Some(vm_guid(vm)),
                source_host: Some(host_name(src)),
                destination_host: Some(host_name(dst)),
                phase,
                pass: (1..9).contains(&s).then_some(s),
                bytes_sent: Some((u64::from(s) * 512) << 20),
                dirty_pages: (1..9).contains(&s).then_some(((r >> 12) % 50_000) >> s),
                throughput_mbps: Some(2_000.0 + ((r >> 24) % 8_000) as f64),
                blackout_ms: (last && !failed).then_some(20 + (r >> 44) % 900),
                total_ms: last.then_some(total),
                transport: Some(transport.into()),
                outcome: last.then_some(if failed {
                    parsers::Outcome::Failure
                } else {
                    parsers::Outcome::Success
                }),
                origin: Default::default(),
            });
        }
        if batch.len() >= 100_000 {
            store.append(&batch).expect("append metrics");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.append(&batch).expect("append metrics");
    }
    println!();
    println!(
        "stored {samples} metric samples ({migrations} migrations) in {:.1} s, {:.1} MB of Parquet",
        started.elapsed().as_secs_f64(),
        dir_bytes(&data) as f64 / 1e6
    );
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let lazy = store.lazy().unwrap().expect("samples stored");
        let stats = index::migration_stats(lazy, &StatsRequest::default()).unwrap();
        assert_eq!(stats.total.migrations as usize, migrations);
        times.push(started.elapsed());
    }
    times.sort();
    println!("| figure | median of 5 | goal |");
    println!("|---|---|---|");
    println!(
        "| index::migration_stats over {samples} samples (in process) | {:.0} ms | < 1 s |",
        ms(times[2])
    );
    // The real command, when `cargo build --release --bin relive` has run.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("relive")))
        .filter(|p| p.exists());
    match binary {
        Some(relive) => {
            let mut times = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let out = Command::new(&relive)
                    .arg("--data")
                    .arg(&data)
                    .args(["stats", "--json"])
                    .output()
                    .expect("run relive stats");
                assert!(
                    out.status.success(),
                    "relive stats failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                times.push(started.elapsed());
            }
            times.sort();
            println!("| `relive stats --json` over {samples} samples (whole process) | {:.0} ms | < 1 s |", ms(times[2]));
        }
        None => println!("(build the release binary to time `relive stats` itself)"),
    }
}
