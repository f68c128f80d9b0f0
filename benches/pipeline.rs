//! The streaming pipeline of `relive serve`, in process: the collector's
//! write-ahead log, parse, index, correlate and the incident store, wired
//! by `relive::topology` exactly as `relive serve` wires them. Records are
//! handed to the collector's `Submitter` (what every receiver does); a
//! record is acknowledged when it is durable.
//!
//! 1. `throughput`: a realistic mix (8 hosts, System / Security / Hyper-V
//!    channels, ~1 % of events in failed-migration chains of four root
//!    causes, some retries succeeding), as ECS JSON lines in records of
//!    1,000 events, submitted as fast as the collector takes them; time
//!    from the first submission until the last record is acknowledged by
//!    the last stage (searchable and correlated). Correlation on and off
//!    (index-only) take turns in the same run; medians with the range.
//!    The incidents the run opened are counted against the chains sent.
//! 2. `latency`: event acknowledged → its incident in the store
//!    (`incidents.json`), for a complete chain and for a lone failure
//!    (which waits for its 10 s settle time on the wall clock), on an idle
//!    collector and under 50 k events/s of background traffic.
//! 3. `rss`: peak RSS of a process streaming 1 M lone failures of distinct
//!    VMs (1 M open VM groups), and one with 10 k open incidents in the
//!    store; each in a process of its own (this binary, re-run).
//!
//! Run: `cargo bench --bench pipeline` (release); a figure alone with
//! `-- throughput`, `-- latency`, `-- rss`. `RELIVE_BENCH_EVENTS` changes the
//! 1 M events of a throughput run, `RELIVE_BENCH_RUNS` the 3 runs of each.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use ingest::record::Record;
use parsers::{Event, Level};
use relive::topology;

/// The allocator the `relive` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOISE: &[(u32, &str, &str, &str)] = &[
    (
        7036,
        "Service Control Manager",
        "System",
        "The Windows Update service entered the running state.",
    ),
    (
        4624,
        "Microsoft-Windows-Security-Auditing",
        "Security",
        "An account was successfully logged on.",
    ),
    (
        18500,
        "Microsoft-Windows-Hyper-V-Worker",
        "Microsoft-Windows-Hyper-V-Worker-Admin",
        "'APP' started successfully.",
    ),
    (
        16,
        "Microsoft-Windows-Kernel-General",
        "System",
        "The access history in hive was cleared.",
    ),
    (
        1014,
        "Microsoft-Windows-DNS-Client",
        "System",
        "Name resolution for the name wpad timed out.",
    ),
];

/// Generates the mix as ECS JSON lines, in time order.
struct Gen {
    t: DateTime<Utc>,
    step: TimeDelta,
    record: u64,
    vm: u64,
    seed: u64,
    chains: u64,
    prefix: String,
}

impl Gen {
    fn new(start: DateTime<Utc>, step: TimeDelta, prefix: &str) -> Gen {
        Gen {
            t: start,
            step,
            record: 0,
            vm: 0,
            seed: 0x2545_F491_4F6C_DD1D,
            chains: 0,
            prefix: prefix.to_string(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn event(
        &mut self,
        host: u64,
        id: u32,
        provider: &str,
        channel: &str,
        message: String,
    ) -> Event {
        self.record += 1;
        Event {
            timestamp: self.t,
            host: format!("{}HV{:02}.contoso.local", self.prefix, host % 8 + 1).into(),
            provider: provider.into(),
            channel: channel.into(),
            event_id: id,
            level: Level::Error,
            record_id: Some(self.record),
            message,
            ..Event::default()
        }
    }

    fn noise(&mut self, out: &mut Vec<u8>) {
        self.t += self.step;
        let r = self.next_u64();
        let (id, provider, channel, message) = NOISE[(r % NOISE.len() as u64) as usize];
        let mut e = self.event(r >> 8, id, provider, channel, message.to_string());
        e.level = Level::Information;
        e.write_json(out);
        out.push(b'\n');
    }

    /// One failed migration of a new VM (3–4 events, one of four causes;
    /// every tenth followed by a successful retry); returns its VM name.
    fn chain(&mut self, out: &mut Vec<u8>) -> String {
        self.vm += 1;
        self.chains += 1;
        let vm = self.vm;
        let guid = format!(
            "{:08X}-0000-4000-8000-{:012X}",
            vm as u32,
            self.seed & 0xffff_ffff_ffff
        );
        let src = vm % 8;
        let dst = (vm + 3) % 8;
        let name = format!("{}VM{vm}", self.prefix);
        let body = match vm % 4 {
            0 => format!("Failed to verify collection registry for virtual machine '{name}': The system cannot find the file specified. (0x80070002). (Virtual Machine ID {guid})."),
            1 => format!("'{name}' failed to live migrate because a virtual switch used by the VM doesn't exist on the destination node 'HV{:02}'.", dst + 1),
            2 => format!("Virtual machine migration operation for '{name}' failed at migration source 'HV{:02}'. (Virtual machine ID {guid}) No connection could be made because the target machine actively refused it. (0x8007274D).", src + 1),
            _ => format!("Virtual machine migration operation for '{name}' failed at migration source 'HV{:02}'. The data is invalid. (0x8007000D).", src + 1),
        };
        let ha = "Microsoft-Windows-Hyper-V-High-Availability";
        let ha_ch = "Microsoft-Windows-Hyper-V-High-Availability-Admin";
        let mut events = Vec::new();
        self.t += self.step;
        if vm.is_multiple_of(4) {
            events.push(self.event(
                src,
                21066,
                "Microsoft-Windows-Hyper-V-VMMS",
                "Microsoft-Windows-Hyper-V-VMMS-Admin",
                body.clone(),
            ));
        }
        events.push(self.event(src, 21502, ha, ha_ch, format!("Live migration of 'Virtual Machine {name}' failed.\n{body} (Virtual machine ID {guid})")));
        events.push(self.event(
            src,
            21111,
            ha,
            ha_ch,
            format!("Live migration of 'Virtual Machine {name}' failed."),
        ));
        if vm.is_multiple_of(10) {
            self.t += TimeDelta::milliseconds(1);
            let mut ok = self.event(src, 20415, "Microsoft-Windows-Hyper-V-VMMS", "Microsoft-Windows-Hyper-V-VMMS-Admin",
                format!("The Virtual Machine Management service successfully completed the live migration of virtual machine  '{name}' with a blackout time of 0.5 seconds (VMID {guid})."));
            ok.level = Level::Information;
            events.push(ok);
        }
        for e in events {
            e.write_json(out);
            out.push(b'\n');
        }
        name
    }

    /// A lone 21502 for a new VM, nothing else; returns its VM name.
    fn lone(&mut self, out: &mut Vec<u8>) -> String {
        self.vm += 1;
        let name = format!("{}LONE{}", self.prefix, self.vm);
        let guid = format!("{:08X}-1111-4000-8000-{:012X}", self.vm as u32, self.vm);
        self.t += self.step;
        let e = self.event(self.vm, 21502, "Microsoft-Windows-Hyper-V-High-Availability", "Microsoft-Windows-Hyper-V-High-Availability-Admin",
            format!("Live migration of 'Virtual Machine {name}' failed.\nVirtual machine migration operation for '{name}' failed at migration source 'HV01'. The data is invalid. (0x8007000D). (Virtual machine ID {guid})"));
        e.write_json(out);
        out.push(b'\n');
        name
    }

    /// A record of `n` events: noise and, at ~1 %, chains.
    fn mix(&mut self, n: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(n * 420);
        let mut events = 0;
        while events < n {
            if events % 100 == 50 {
                let before = out.iter().filter(|&&b| b == b'\n').count();
                self.chain(&mut out);
                events += out.iter().filter(|&&b| b == b'\n').count() - before;
            } else {
                self.noise(&mut out);
                events += 1;
            }
        }
        (out, events)
    }
}

/// The real seed chain (seven events on two hosts: the one `relive serve`
/// turns into an incident at once), for VM `name` with `guid`, at `at`.
struct Seed(Vec<Event>);

impl Seed {
    fn load() -> Seed {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
        let mut events = Vec::new();
        struct Collect<'a>(&'a mut Vec<Event>);
        impl parsers::Sink for Collect<'_> {
            fn event(&mut self, e: Event) {
                self.0.push(e);
            }
            fn metric(&mut self, _: parsers::Metric) {}
            fn error(&mut self, e: parsers::RecordError) {
                panic!("the seed does not parse: {e}");
            }
        }
        parsers::parse_path(
            &path,
            &parsers::ParseOptions::default(),
            &mut Collect(&mut events),
        );
        assert_eq!(events.len(), 7);
        Seed(events)
    }

    fn chain(&self, name: &str, guid: &str, at: DateTime<Utc>, out: &mut Vec<u8>) {
        let first = self.0.iter().map(|e| e.timestamp).min().expect("events");
        for e in &self.0 {
            let mut e = e.clone();
            e.message = e
                .message
                .replace("ADFS1", name)
                .replace("4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7", guid);
            e.vm_name = e.vm_name.map(|_| name.into());
            e.vm_id = e.vm_id.map(|_| guid.into());
            e.timestamp = at + (e.timestamp - first);
            e.write_json(out);
            out.push(b'\n');
        }
    }
}

fn record(payload: Vec<u8>) -> Record {
    Record::text(Some(parsers::Format::EcsJson), "bench", payload)
}

/// A collector as `relive serve` runs it, in `data`.
struct Serve {
    collector: Option<ingest::Collector>,
    topology: Option<topology::Topology>,
    runtime: tokio::runtime::Runtime,
}

impl Serve {
    fn start(data: &Path, correlation: bool, settle: Option<Duration>) -> Serve {
        let mut config = correlate::Config::default();
        if let Some(settle) = settle {
            config.settle = settle;
        }
        let rules = Arc::new(correlate::shipped::rules(&[]).expect("rules"));
        let kb = Arc::new(correlate::shipped::knowledge().expect("playbooks"));
        let topology = topology::start(
            data,
            rules,
            kb,
            topology::TopologyOptions {
                correlate: config,
                clocking: correlate::Clocking::Live {
                    hold: topology::LIVE_HOLD,
                },
                index: index::stage::IndexStageOptions::default(),
                correlation,
            },
        )
        .expect("topology");
        let collector = ingest::Collector::start(
            ingest::CollectorOptions::new(data),
            Box::new(topology.input.clone()),
        )
        .expect("collector");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        Serve {
            collector: Some(collector),
            topology: Some(topology),
            runtime,
        }
    }

    fn submitter(&self) -> ingest::collector::Submitter {
        self.collector.as_ref().expect("running").submitter()
    }

    fn stats(&self) -> Arc<ingest::collector::Stats> {
        self.collector.as_ref().expect("running").stats().clone()
    }

    /// Submits and waits until durable (the acknowledgement).
    fn submit(&self, payload: Vec<u8>) -> Instant {
        let sub = self.submitter();
        self.runtime
            .block_on(sub.submit(vec![record(payload)]))
            .expect("durable");
        Instant::now()
    }

    fn stop(mut self) -> topology::Finished {
        self.collector.take().expect("running").shutdown();
        self.topology
            .take()
            .expect("running")
            .finish()
            .expect("finish")
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn throughput() {
    let total: usize = std::env::var("RELIVE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("RELIVE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // The same records for every run: generated once, up front.
    let mut gen = Gen::new(
        Utc::now() - TimeDelta::hours(1),
        TimeDelta::microseconds(10),
        "",
    );
    let mut records = Vec::new();
    let mut events = 0;
    while events < total {
        let (payload, n) = gen.mix(1000);
        records.push(payload);
        events += n;
    }
    let bytes: usize = records.iter().map(Vec::len).sum();
    println!(
        "throughput: {events} events ({:.0} MB of ECS JSON) in {} records, {} failure chains; {runs} runs each, correlation on and off taking turns",
        bytes as f64 / 1e6,
        records.len(),
        gen.chains
    );
    let mut on = Vec::new();
    let mut off = Vec::new();
    for run in 0..runs * 2 {
        let correlation = run % 2 == 0;
        let dir = tempfile::tempdir().expect("tempdir");
        let serve = Serve::start(dir.path(), correlation, None);
        let stats = serve.stats();
        let sub = serve.submitter();
        let batch = records.clone();
        let start = Instant::now();
        // Up to 32 records in flight, as many connections would have.
        serve.runtime.block_on(async {
            let mut pending = std::collections::VecDeque::new();
            for payload in batch {
                let durable = sub.enqueue(vec![record(payload)]).await.expect("enqueue");
                pending.push_back(durable);
                if pending.len() >= 32 {
                    pending
                        .pop_front()
                        .expect("some")
                        .wait()
                        .await
                        .expect("durable");
                }
            }
            for d in pending {
                d.wait().await.expect("durable");
            }
        });
        let acked = start.elapsed();
        // Every record handled by the last stage (searchable, correlated).
        let durable = stats.durable_seq.load(Ordering::Acquire);
        while stats.consumed_seq.load(Ordering::Acquire) < durable {
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = start.elapsed();
        // Not timed: what relive made of it. Complete chains are decided at
        // once, the others when their 10 s settle time has passed.
        let store = correlate::IncidentStore::new(dir.path());
        let count = || store.load().map_or(0, |l| l.len());
        let waited = Instant::now();
        while correlation
            && (count() as u64) < gen.chains
            && waited.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let stored = count();
        let finished = serve.stop();
        let rate = events as f64 / took.as_secs_f64();
        let indexed = finished.index.len();
        println!(
            "  run {}: correlation {}: {rate:.0} events/s ({:.2} s; all acknowledged by the log after {:.2} s); {indexed} indexed; {stored} incidents in the store (of {} chains)",
            run / 2 + 1,
            if correlation { "on " } else { "off" },
            took.as_secs_f64(),
            acked.as_secs_f64(),
            gen.chains,
        );
        assert_eq!(indexed as usize, events, "every event indexed once");
        if correlation {
            on.push(rate);
        } else {
            off.push(rate);
        }
    }
    let (on_min, on_max) = (pct(&mut on, 0.0), pct(&mut on, 1.0));
    let (off_min, off_max) = (pct(&mut off, 0.0), pct(&mut off, 1.0));
    println!(
        "throughput: correlation on {:.0} events/s ({on_min:.0}–{on_max:.0}); off {:.0} ({off_min:.0}–{off_max:.0}); on/off {:.2}x",
        median(&mut on),
        median(&mut off),
        median(&mut on) / median(&mut off)
    );
}

/// Polls the store until an incident for `vm` (with `cause`, if given) is there.
fn wait_in_store(data: &Path, vm: &str, cause: Option<&str>, limit: Duration) -> Option<Instant> {
    let store = correlate::IncidentStore::new(data);
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(list) = store.load() {
            if list.iter().any(|i| {
                i.vm_name.as_deref() == Some(vm) && cause.is_none_or(|c| i.root_cause == c)
            }) {
                return Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn latency() {
    for load in [0u64, 50_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let serve = Serve::start(dir.path(), true, None);
        let stop = Arc::new(AtomicBool::new(false));
        // Background traffic: routine events, paced at `load` per second in
        // records of 500, on its own thread.
        let background = (load > 0).then(|| {
            let sub = serve.submitter();
            let handle = serve.runtime.handle().clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut gen = Gen::new(Utc::now(), TimeDelta::microseconds(20), "BG");
                let per = 500u64;
                let interval = Duration::from_secs_f64(per as f64 / load as f64);
                let start = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut out = Vec::new();
                    gen.t = Utc::now();
                    for _ in 0..per {
                        gen.noise(&mut out);
                    }
                    handle
                        .block_on(sub.submit(vec![record(out)]))
                        .expect("durable");
                    sent += per;
                    let due = interval * (sent / per) as u32;
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                sent as f64 / start.elapsed().as_secs_f64()
            })
        });
        std::thread::sleep(Duration::from_secs(2));
        let mut gen = Gen::new(Utc::now(), TimeDelta::milliseconds(1), "LAT");
        let seed = Seed::load();
        // Complete chains (the seed's, one VM each), one at a time.
        let mut chain_ms = Vec::new();
        let mut missed = 0;
        for n in 0..40 {
            let mut out = Vec::new();
            let vm = format!("LATVM{n}");
            let guid = format!("{:08X}-2222-4000-8000-{:012X}", n, load + n as u64);
            // The chain spans a second and ends now, as if shipped at once.
            seed.chain(&vm, &guid, Utc::now() - TimeDelta::seconds(1), &mut out);
            let acked = serve.submit(out);
            match wait_in_store(dir.path(), &vm, None, Duration::from_secs(15)) {
                Some(at) => chain_ms.push((at - acked).as_secs_f64() * 1000.0),
                None => missed += 1,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Lone failures: twenty, half a second apart, then all awaited.
        let mut lone = Vec::new();
        for _ in 0..20 {
            let mut out = Vec::new();
            gen.t = Utc::now();
            let vm = gen.lone(&mut out);
            lone.push((vm, serve.submit(out)));
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut lone_ms = Vec::new();
        for (vm, acked) in &lone {
            match wait_in_store(dir.path(), vm, Some("unknown"), Duration::from_secs(30)) {
                Some(at) => lone_ms.push((at - *acked).as_secs_f64() * 1000.0),
                None => missed += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let rate = background.map(|b| b.join().expect("background"));
        serve.stop();
        let rate = rate.map_or("idle".to_string(), |r| {
            format!("{r:.0} events/s of background")
        });
        println!(
            "latency ({rate}): complete chain, ack → store: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n = {}); lone failure (settle 10 s): p50 {:.0} ms, p99 {:.0} ms (n = {}); {missed} not in the store in time",
            pct(&mut chain_ms, 0.5),
            pct(&mut chain_ms, 0.99),
            pct(&mut chain_ms, 1.0),
            chain_ms.len(),
            pct(&mut lone_ms, 0.5),
            pct(&mut lone_ms, 0.99),
            lone_ms.len(),
        );
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// In a process of its own: `groups` lone failures of distinct VMs through
/// the pipeline, every one still open (settle time not passed), or decided
/// (`decide`: the clock runs past their settle time and they are stored).
fn rss_case(groups: usize, decide: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    // Undecided groups: a settle time longer than the run.
    let settle = (!decide).then_some(Duration::from_secs(3600));
    let serve = Serve::start(dir.path(), true, settle);
    let before = peak_rss_kib();
    let mut gen = Gen::new(
        Utc::now() - TimeDelta::seconds(5),
        TimeDelta::nanoseconds(1000),
        "R",
    );
    let mut sent = 0;
    while sent < groups {
        let mut out = Vec::new();
        for _ in 0..1000.min(groups - sent) {
            gen.lone(&mut out);
            sent += 1;
        }
        serve.submit(out);
    }
    let stats = serve.stats();
    let durable = stats.durable_seq.load(Ordering::Acquire);
    let start = Instant::now();
    if decide {
        // Every failure decided and in the store.
        while correlate::IncidentStore::new(dir.path())
            .load()
            .map_or(0, |l| l.len())
            < groups
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "incidents not stored"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        while stats.consumed_seq.load(Ordering::Acquire) < durable
            && start.elapsed() < Duration::from_secs(600)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let peak = peak_rss_kib();
    let finished = serve.stop();
    println!(
        "rss: {groups} {}: peak RSS {} MiB (at start {} MiB); {} events correlated, {} incidents opened",
        if decide { "open incidents in the store" } else { "open VM groups (undecided)" },
        peak / 1024,
        before / 1024,
        finished.correlation.events,
        finished.correlation.opened,
    );
}

fn rss() {
    let me = std::env::current_exe().expect("this binary");
    for (what, n) in [("rss-groups", "1000000"), ("rss-incidents", "10000")] {
        let status = std::process::Command::new(&me)
            .args([what, n])
            .status()
            .expect("run the case");
        assert!(status.success(), "{what}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("throughput") => throughput(),
        Some("latency") => latency(),
        Some("rss") => rss(),
        Some("rss-groups") => rss_case(args[1].parse().expect("a count"), false),
        Some("rss-incidents") => rss_case(args[1].parse().expect("a count"), true),
        Some("sample") => {
            // The mix, as it is submitted (to look at, or to `relive ingest`).
            let mut gen = Gen::new(
                Utc::now() - TimeDelta::hours(1),
                TimeDelta::microseconds(10),
                "",
            );
            let (out, _) = gen.mix(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000));
            use std::io::Write;
            std::io::stdout().write_all(&out).expect("stdout");
        }
        _ => {
            throughput();
            latency();
            rss();
        }
    }
}
