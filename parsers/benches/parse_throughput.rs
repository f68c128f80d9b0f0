//! Parser throughput, each figure next to its baseline measured in the same run.
//!
//! 1. EVTX: events/s of `relive parse --json` against `evtx_dump -o jsonl`
//!    on the real 16.8 MB Server 2012 R2 System log (both write JSON lines
//!    to /dev/null, both with their default thread count; the two take
//!    turns, 21 runs each after a warm-up, so both see the same machine).
//! 2. Text formats: MB/s on one core for generated 1 GiB files of
//!    cluster.log, Event Viewer text and ECS JSON lines, against a plain
//!    `regex`-per-line parser that pulls the same fields into owned strings.
//! 3. Bounded memory: a 10 GiB cluster.log stream (generated on the fly,
//!    never on disk) parsed with the peak RSS printed.
//!
//! Run with `./scripts/bench` (builds the release binary and installs
//! `evtx_dump` first). Environment: `RELIVE_BIN`, `EVTX_DUMP`,
//! `BENCH_GIB` (size of each text file, default 1), `BENCH_BIG_GIB`
//! (default 10, 0 skips), `BENCH_DIR` (where the files go), `BENCH_ONLY`
//! (run only the sections whose name contains it: `evtx`, `cluster`,
//! `viewer`, `json`, `memory`; for profiling one parser).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parsers::{Event, Format, Metric, ParseOptions, RecordError, Sink};

/// The allocator the `relive` binary runs the parsers with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Count {
    events: u64,
    errors: u64,
    checksum: u64,
}

impl Sink for Count {
    fn event(&mut self, event: Event) {
        self.events += 1;
        self.checksum = self
            .checksum
            .wrapping_add(u64::from(event.event_id) + event.message.len() as u64);
    }
    fn metric(&mut self, _: Metric) {}
    fn error(&mut self, _: RecordError) {
        self.errors += 1;
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn shared() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [here.join("../../shared"), here.join("../../../shared")]
        .into_iter()
        .find(|p| p.is_dir())
        .expect("shared/ next to the repository")
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!(
        "relive parser benchmarks — {}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    if selected("evtx") {
        evtx_bench();
    }
    let gib = env_u64("BENCH_GIB", 1);
    let dir = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("relive-bench"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    text_bench(&dir, gib << 30);
    let big = env_u64("BENCH_BIG_GIB", 10);
    if big > 0 && selected("memory") {
        bounded_memory_bench(big << 30);
    }
}

/// True unless `BENCH_ONLY` names another section.
fn selected(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| section.contains(only.as_str()))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown cpu".into(), |s| s.trim().to_owned())
}

// ---- EVTX ------------------------------------------------------------------

/// Times commands (output to /dev/null) taking turns, after one untimed
/// run each, so both see the same machine (this one is shared and its
/// speed drifts); the median of `runs` each, `None` for one that is
/// missing or fails.
fn time_commands(commands: &[Option<(PathBuf, Vec<&str>)>], runs: usize) -> Vec<Option<Duration>> {
    let run = |program: &Path, args: &[&str]| -> Option<Duration> {
        let start = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        let elapsed = start.elapsed();
        if !status.success() && status.code() != Some(1) {
            eprintln!("{} exited with {status}", program.display());
            return None;
        }
        Some(elapsed)
    };
    let mut times: Vec<Option<Vec<Duration>>> = commands
        .iter()
        .map(|c| {
            let (program, args) = c.as_ref()?;
            run(program, args).map(|_| Vec::new())
        })
        .collect();
    for _ in 0..runs {
        for (command, times) in commands.iter().zip(times.iter_mut()) {
            let (Some((program, args)), Some(list)) = (command, times.as_mut()) else {
                continue;
            };
            match run(program, args) {
                Some(d) => list.push(d),
                None => *times = None,
            }
        }
    }
    times
        .into_iter()
        .map(|t| {
            let mut t = t?;
            t.sort();
            t.get(t.len() / 2).copied()
        })
        .collect()
}

fn find_binary(env: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().find(|p| p.is_file()).cloned()
}

/// Runs of each command in the EVTX comparison.
const RUNS: usize = 21;

fn evtx_bench() {
    let file = shared().join("samples-real/evtx/dfirmuseum-win2012r2-stolenszechuan__System.evtx");
    let records = 60_189.0;
    let mb = std::fs::metadata(&file).map_or(0.0, |m| m.len() as f64 / 1e6);
    println!(
        "\n== EVTX: {} ({mb:.1} MB, {records} records), median of {RUNS} runs taking turns",
        file.display()
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let relive = find_binary("RELIVE_BIN", &[target.join("release/relive")]);
    let evtx_dump = find_binary(
        "EVTX_DUMP",
        &[
            home.join(".cargo/bin/evtx_dump"),
            PathBuf::from("/usr/local/bin/evtx_dump"),
        ],
    );
    let path = file.to_str().unwrap();
    let timed = time_commands(
        &[
            relive.map(|bin| (bin, vec!["parse", "--json", path])),
            evtx_dump.map(|bin| (bin, vec!["-o", "jsonl", path])),
        ],
        RUNS,
    );
    let (ours, theirs) = (timed[0], timed[1]);
    // In-process: parsing and normalization only, no JSON output; the
    // first run (cold allocator) and the median of 5.
    let mut count = Count {
        events: 0,
        errors: 0,
        checksum: 0,
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        count.events = 0;
        let start = Instant::now();
        parsers::parse_path(&file, &ParseOptions::default(), &mut count);
        times.push(start.elapsed());
    }
    let first = times[0];
    times.sort();
    let in_process = times[2];
    let rate = |d: Duration| records / d.as_secs_f64();
    println!("{:<44} {:>12} {:>10}", "", "events/s", "seconds");
    if let Some(d) = theirs {
        println!(
            "{:<44} {:>12.0} {:>10.3}",
            "evtx_dump -o jsonl (baseline)",
            rate(d),
            d.as_secs_f64()
        );
    } else {
        println!("evtx_dump not found: `cargo install evtx` or set EVTX_DUMP");
    }
    if let Some(d) = ours {
        println!(
            "{:<44} {:>12.0} {:>10.3}",
            "relive parse --json",
            rate(d),
            d.as_secs_f64()
        );
    } else {
        println!("relive binary not found: `cargo build --release` or set RELIVE_BIN");
    }
    println!(
        "{:<44} {:>12.0} {:>10.3}",
        "parsers::parse_path (no output), first run",
        rate(first),
        first.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.0} {:>10.3}",
        "parsers::parse_path (no output)",
        rate(in_process),
        in_process.as_secs_f64()
    );
    if let Some(t) = theirs {
        println!(
            "ratio in-process/evtx_dump: {:.2}x",
            t.as_secs_f64() / in_process.as_secs_f64()
        );
    }
    if let (Some(o), Some(t)) = (ours, theirs) {
        println!(
            "ratio relive/evtx_dump: {:.2}x (goal >= 0.90x)",
            t.as_secs_f64() / o.as_secs_f64()
        );
    }
    assert_eq!(count.events, 60_189);
}

// ---- text formats --------------------------------------------------------------

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const VMS: [&str; 6] = ["ADFS1", "SQL01", "EXCH02", "WEB-03", "DC01", "FS01"];
const GUIDS: [&str; 6] = [
    "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7",
    "B3C69EDE-4781-45B8-AF5E-66B9E875C711",
    "D9E0EB0A-5B37-508E-9173-67E9ADE83ACF",
    "E0D09432-A320-44CC-8A12-E1300549B99D",
    "5D9E9825-1B2C-4D3E-8F40-A1B2C3D4E5F6",
    "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
];

fn cluster_line(rng: &mut Rng, i: u64, out: &mut String) {
    use std::fmt::Write as _;
    let vm = (rng.next() % 6) as usize;
    let (level, comp) = match rng.next() % 10 {
        0 => ("ERR   ", "RES"),
        1 => ("WARN  ", "RHS"),
        2..=5 => ("INFO  ", "RCM"),
        6 => ("DBG   ", "NM"),
        _ => ("INFO  ", "RES"),
    };
    let secs = i / 50;
    let _ = write!(
        out,
        "{:08x}.{:08x}::2018/09/{:02}-{:02}:{:02}:{:02}.{:03} {level}[{comp}] ",
        0xb1c + rng.next() % 16,
        0x1a4c + rng.next() % 256,
        1 + (secs / 86_400) % 28,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        i % 1000
    );
    match comp {
        "RES" => {
            let _ = write!(
                out,
                "Virtual Machine <Virtual Machine {}>: {}",
                VMS[vm],
                rng.pick(&[
                    "Current state 'Online', event 'MigrationStarted'",
                    "Live migration of 'Virtual Machine' failed. (0x80070002)",
                    "Getting VM config resource state, state is Online",
                    "Resource is in Online state; no action needed"
                ])
            );
        }
        "RCM" => {
            let _ = write!(
                out,
                "{}",
                rng.pick(&[
                    "rcm::RcmGroup::Move: Bringing group 'SQL01' offline first...",
                    "TransitionToState(ADFS1) Online-->OfflineCallIssued.",
                    "rcm::RcmApi::MoveGroup: (ADFS1, 2)",
                    "Res Virtual Machine ADFS1: Online -> WaitingToGoOffline( StateUnknown )"
                ])
            );
        }
        _ => {
            let _ = write!(
                out,
                "{}",
                rng.pick(&[
                    "RhsCall::DeadlockMonitor: Call LOOKSALIVE timed out by 16 milliseconds for resource 'File Share Witness'.",
                    "Route local (10.0.0.1:~3343~) to remote NODE-A (10.0.0.2:~3343~) status: Up",
                    "Received heartbeat from node 2 on interface 3"
                ])
            );
        }
    }
    out.push('\n');
}

fn viewer_block(rng: &mut Rng, i: u64, out: &mut String) {
    use std::fmt::Write as _;
    let vm = (rng.next() % 6) as usize;
    let (log, source, id, level, msg) = match rng.next() % 4 {
        0 => (
            "System",
            "Microsoft-Windows-Hyper-V-High-Availability",
            21502,
            "Error",
            format!("Live migration of 'Virtual Machine {0}' failed.\nVirtual machine migration operation for '{0}' failed at migration source 'NODE-B'. (Virtual machine ID {1})\nFailed to verify collection registry for virtual machine '{0}': The system cannot find the file specified. (0x80070002). (Virtual Machine ID {1}).", VMS[vm], GUIDS[vm]),
        ),
        1 => (
            "Microsoft-Windows-Hyper-V-VMMS-Admin",
            "Microsoft-Windows-Hyper-V-VMMS",
            20415,
            "Information",
            format!("The Virtual Machine Management service successfully completed the live migration of virtual machine  '{}' with a blackout time of 0.5 seconds (VMID {}).", VMS[vm], GUIDS[vm]),
        ),
        2 => (
            "Microsoft-Windows-Hyper-V-Worker-Operational",
            "Microsoft-Windows-Hyper-V-Worker",
            1840,
            "Error",
            format!("[Virtual machine {}] onecore\\vm\\worker\\migration\\workertaskmigrationsource.cpp(281)\\vmwp.exe!00007FF6E7C46141: (caller: 00007FF6E7B8957D) Exception(2) tid(ff4) 80042001     CallContext:[\\SourceMigrationTask]", GUIDS[vm]),
        ),
        _ => (
            "System",
            "Service Control Manager",
            7036,
            "Information",
            "The Windows Update service entered the running state.".to_owned(),
        ),
    };
    let secs = i;
    let _ = write!(
        out,
        "Log Name:      {log}\nSource:        {source}\nDate:          9/{}/2018 {}:{:02}:{:02}\nEvent ID:      {id}\nTask Category: None\nLevel:         {level}\nKeywords:\nUser:          SYSTEM\nComputer:      NODE-{}.datawisetech.corp\nDescription:\n{msg}\n\n",
        1 + (secs / 86_400) % 28,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ["A", "B", "C", "D"][(rng.next() % 4) as usize]
    );
}

fn ecs_line(rng: &mut Rng, i: u64, out: &mut String) {
    use std::fmt::Write as _;
    let vm = (rng.next() % 6) as usize;
    let id = [21502u32, 21066, 20415, 7036, 18500, 1840][(rng.next() % 6) as usize];
    let _ = writeln!(
        out,
        "{{\"@timestamp\":\"2018-09-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"agent\":{{\"type\":\"winlogbeat\",\"version\":\"8.15.0\"}},\"ecs\":{{\"version\":\"8.0.0\"}},\"event\":{{\"code\":\"{id}\",\"kind\":\"event\",\"provider\":\"Microsoft-Windows-Hyper-V-VMMS\"}},\"host\":{{\"name\":\"node-b\"}},\"log\":{{\"level\":\"error\"}},\"message\":\"Failed to verify collection registry for virtual machine '{}': The system cannot find the file specified. (0x80070002). (Virtual Machine ID {}).\",\"winlog\":{{\"api\":\"wineventlog\",\"channel\":\"Microsoft-Windows-Hyper-V-VMMS-Admin\",\"computer_name\":\"NODE-B.datawisetech.corp\",\"event_id\":\"{id}\",\"provider_guid\":\"{{6066F867-7CA1-4418-85FD-36E3F9C0600C}}\",\"provider_name\":\"Microsoft-Windows-Hyper-V-VMMS\",\"record_id\":{},\"user_data\":{{\"VmName\":\"{}\",\"VmId\":\"{}\",\"xml_name\":\"VmlEventLog\"}}}}}}",
        1 + (i / 86_400) % 28,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        i % 1000,
        VMS[vm],
        GUIDS[vm],
        1000 + i,
        VMS[vm],
        GUIDS[vm]
    );
}

/// Appends record number `i` of a format to a buffer.
type Generator = fn(&mut Rng, u64, &mut String);

fn generate(path: &Path, bytes: u64, gen: Generator) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= bytes) {
        return;
    }
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create"));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut written = 0u64;
    let mut i = 0u64;
    let mut buf = String::with_capacity(1 << 16);
    while written < bytes {
        buf.clear();
        while buf.len() < 60_000 {
            gen(&mut rng, i, &mut buf);
            i += 1;
        }
        out.write_all(buf.as_bytes()).expect("write");
        written += buf.len() as u64;
    }
    out.flush().expect("flush");
}

/// The baseline: one regex per line, fields copied into owned strings.
struct RegexBaseline {
    cluster: regex::Regex,
    header: regex::Regex,
    json_fields: Vec<(regex::Regex, usize)>,
}

impl RegexBaseline {
    fn new() -> Self {
        RegexBaseline {
            // The regex of a real cluster.log analyzer (formats.md (d)).
            cluster: regex::Regex::new(
                r"^(.{8})\.(.{8})::(\d{4}/\d{2}/\d{2}-\d{2}:\d{2}:\d{2}\.\d{3})\s(.{4})\s{2}(.*)$",
            )
            .unwrap(),
            header: regex::Regex::new(
                r"^(Log Name|Source|Date|Event ID|Task Category|Level|Keywords|User|Computer|Description):\s*(.*)$",
            )
            .unwrap(),
            json_fields: [
                r#""@timestamp":"([^"]*)""#,
                r#""event_id":"?(\d+)"?"#,
                r#""channel":"([^"]*)""#,
                r#""provider_name":"([^"]*)""#,
                r#""computer_name":"([^"]*)""#,
                r#""record_id":(\d+)"#,
                r#""message":"((?:[^"\\]|\\.)*)""#,
            ]
            .iter()
            .map(|p| (regex::Regex::new(p).unwrap(), 1))
            .collect(),
        }
    }

    fn run(&self, path: &Path, format: Format) -> u64 {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path).unwrap());
        let mut line = String::new();
        let mut records = 0u64;
        let mut fields: Vec<String> = Vec::with_capacity(8);
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let text = line.trim_end_matches(['\n', '\r']);
            match format {
                Format::ClusterLog => {
                    if let Some(c) = self.cluster.captures(text) {
                        fields.clear();
                        fields.extend((1..=5).map(|i| c[i].to_owned()));
                        records += 1;
                    }
                }
                Format::ViewerText => {
                    if let Some(c) = self.header.captures(text) {
                        if &c[1] == "Log Name" {
                            records += 1;
                            fields.clear();
                        }
                        fields.push(c[2].to_owned());
                    } else if !text.is_empty() {
                        fields.push(text.to_owned());
                    }
                }
                _ => {
                    fields.clear();
                    for (re, group) in &self.json_fields {
                        if let Some(c) = re.captures(text) {
                            fields.push(c[*group].to_owned());
                        }
                    }
                    records += 1;
                }
            }
        }
        records
    }
}

fn text_bench(dir: &Path, bytes: u64) {
    println!(
        "\n== text formats: generated {:.2} GiB files in {}, one core, best of 2 runs",
        bytes as f64 / f64::from(1u32 << 30),
        dir.display()
    );
    println!(
        "{:<14} {:>12} {:>12} {:>12} {:>8}",
        "format", "relive MB/s", "regex MB/s", "events", "ratio"
    );
    let baseline = RegexBaseline::new();
    let cases: [(&str, Format, Generator); 3] = [
        ("cluster.log", Format::ClusterLog, cluster_line),
        ("viewer text", Format::ViewerText, viewer_block),
        ("ecs json", Format::EcsJson, ecs_line),
    ];
    for (name, format, gen) in cases {
        if !selected(name) {
            continue;
        }
        let path = dir.join(format!("{}.bench", format.name()));
        generate(&path, bytes, gen);
        let size = std::fs::metadata(&path).unwrap().len() as f64;
        let mut ours = Duration::MAX;
        let mut events = 0;
        for _ in 0..2 {
            let start = Instant::now();
            let mut count = Count {
                events: 0,
                errors: 0,
                checksum: 0,
            };
            let opts = ParseOptions {
                format: Some(format),
                evtx_threads: 1,
                ..ParseOptions::default()
            };
            parsers::parse_path(&path, &opts, &mut count);
            ours = ours.min(start.elapsed());
            assert_eq!(count.errors, 0, "{name}");
            events = count.events;
        }
        let mut theirs = Duration::MAX;
        for _ in 0..2 {
            let start = Instant::now();
            let records = baseline.run(&path, format);
            theirs = theirs.min(start.elapsed());
            assert!(records > 0);
        }
        let mbps = |d: Duration| size / 1e6 / d.as_secs_f64();
        println!(
            "{name:<14} {:>12.0} {:>12.0} {:>12} {:>7.2}x",
            mbps(ours),
            mbps(theirs),
            events,
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    println!("goal: >= 300 MB/s for cluster.log and ECS JSON lines");
}

/// Generates cluster.log lines on the fly up to `left` bytes.
struct ClusterStream {
    rng: Rng,
    i: u64,
    left: u64,
    buf: String,
    pos: usize,
}

impl Read for ClusterStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.buf.len() {
            if self.left == 0 {
                return Ok(0);
            }
            self.buf.clear();
            self.pos = 0;
            while self.buf.len() < 60_000 {
                cluster_line(&mut self.rng, self.i, &mut self.buf);
                self.i += 1;
            }
            let take = (self.buf.len() as u64).min(self.left) as usize;
            // Cut at a line end so the stream stays well-formed.
            let cut = self.buf[..take].rfind('\n').map_or(take, |i| i + 1);
            self.buf.truncate(cut);
            self.left -= cut as u64;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf.as_bytes()[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn bounded_memory_bench(bytes: u64) {
    println!(
        "\n== bounded memory: {:.0} GiB cluster.log stream generated on the fly",
        bytes as f64 / f64::from(1u32 << 30)
    );
    let before = peak_rss_mib();
    let stream = ClusterStream {
        rng: Rng(42),
        i: 0,
        left: bytes,
        buf: String::new(),
        pos: 0,
    };
    let mut count = Count {
        events: 0,
        errors: 0,
        checksum: 0,
    };
    let start = Instant::now();
    parsers::parse_reader(stream, Some("stream"), &ParseOptions::default(), &mut count);
    let elapsed = start.elapsed();
    println!(
        "events {}  errors {}  {:.1} s  {:.0} MB/s (incl. generation)  peak RSS before {:.0} MiB, after {:.0} MiB",
        count.events,
        count.errors,
        elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        before,
        peak_rss_mib()
    );
}
