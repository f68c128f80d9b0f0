//! `relive ingest`: parse files and folders and add their events to the
//! index under `--data`, then print what was read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use parsers::{Event, Metric, RecordError, Sink};

use crate::cli::ParseArgs;
use crate::commands::inputs::{expand_paths, Settings};
use relive::topology;

/// The file source: parsed events, zone-corrected, handed to the pipeline
/// (`crate::topology`) in batches.
struct FileSource {
    output: pipeline::Sender<pipeline::EventBatch>,
    batch: Vec<Event>,
    batch_metrics: Vec<Metric>,
    events: u64,
    errors: u64,
    metrics: u64,
    hosts: BTreeMap<String, u64>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    stopped: bool,
    zones: parsers::time::OffsetLearner,
    shifted: u64,
}

/// Events per batch handed to the index stage.
const BATCH: usize = 8192;

impl FileSource {
    fn flush(&mut self) {
        if (self.batch.is_empty() && self.batch_metrics.is_empty()) || self.stopped {
            return;
        }
        use pipeline::Sink as _;
        let batch = pipeline::EventBatch {
            from: 0,
            to: 0,
            events: std::mem::take(&mut self.batch),
            metrics: std::mem::take(&mut self.batch_metrics),
            read_at: std::time::Instant::now(),
            ack: pipeline::Ack::none(),
        };
        if self.output.send(batch).is_err() {
            self.stopped = true;
        }
    }
}

/// First look at the local-time files: only learns host offsets.
struct LearnSink<'a>(&'a mut parsers::time::OffsetLearner);

impl Sink for LearnSink<'_> {
    fn event(&mut self, event: Event) {
        self.0.learn(&event);
    }
    fn metric(&mut self, _metric: Metric) {}
    fn error(&mut self, _error: RecordError) {}
}

/// Formats whose times are naive local time: read them after the formats
/// that keep UTC, so each host's offset is learned before it is needed.
fn local_time_format(format: Option<parsers::Format>) -> bool {
    format.is_none_or(parsers::Format::writes_local_time)
}

fn sniff(path: &Path) -> Option<parsers::Format> {
    use std::io::Read;
    let mut head = vec![0u8; 64 * 1024];
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut head).ok()?;
    parsers::detect(&head[..n])
}

impl Sink for FileSource {
    fn event(&mut self, mut event: Event) {
        self.zones.learn(&event);
        if self.zones.correct(&mut event).is_some() {
            self.shifted += 1;
        }
        self.events += 1;
        *self.hosts.entry(event.host.to_string()).or_default() += 1;
        self.first = Some(
            self.first
                .map_or(event.timestamp, |f| f.min(event.timestamp)),
        );
        self.last = Some(
            self.last
                .map_or(event.timestamp, |l| l.max(event.timestamp)),
        );
        self.batch.push(event);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    fn metric(&mut self, metric: Metric) {
        self.metrics += 1;
        self.batch_metrics.push(metric);
        if self.batch_metrics.len() >= BATCH {
            self.flush();
        }
    }

    fn error(&mut self, error: RecordError) {
        self.errors += 1;
        eprintln!("error: {}", relive::display::clean(&error.to_string()));
    }
}

/// Runs `relive ingest`.
pub fn run(args: ParseArgs, data: &Path, rule_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_args(args)?;
    let (rules, kb) = relive::load_rules(rule_dirs)?;
    let mut files = expand_paths(&settings.paths)?;
    // Exact-time formats first, each group in path order; the local-time
    // files are read once more up front to learn each host's offset.
    let mut local_from = files.len();
    if settings.options.format.is_none() {
        let mut keyed: Vec<(bool, PathBuf)> = files
            .into_iter()
            .map(|f| (local_time_format(sniff(&f)), f))
            .collect();
        keyed.sort_by_key(|(local, _)| *local);
        local_from = keyed
            .iter()
            .position(|(local, _)| *local)
            .unwrap_or(keyed.len());
        files = keyed.into_iter().map(|(_, f)| f).collect();
    }
    let index_dir = data.join("index");
    let before = index::EventIndex::open(&index_dir)
        .with_context(|| format!("cannot open the index in {}", index_dir.display()))?
        .len();
    let topology = topology::start(
        data,
        rules,
        kb,
        topology::TopologyOptions {
            correlate: correlate::Config::default(),
            clocking: correlate::Clocking::EndOfInput,
            index: index::stage::IndexStageOptions {
                // Commits at most every few seconds while files stream in.
                commit_interval: std::time::Duration::from_secs(5),
                quiet: std::time::Duration::from_secs(1),
            },
            correlation: true,
        },
    )?;
    let mut per_format: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut zones = parsers::time::OffsetLearner::default();
    ingest::collector::load_zones(&data.join(ingest::collector::ZONES_FILE), &mut zones);
    let mut sink = FileSource {
        output: topology.input.clone(),
        batch: Vec::new(),
        batch_metrics: Vec::new(),
        events: 0,
        errors: 0,
        metrics: 0,
        hosts: BTreeMap::new(),
        first: None,
        last: None,
        stopped: false,
        zones,
        shifted: 0,
    };
    let mut unrecognised = 0;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()) && files.len() > 1;
    let started = std::time::Instant::now();
    for (n, file) in files.iter().enumerate() {
        if progress {
            let name = file.display().to_string();
            let tail: String = name
                .chars()
                .rev()
                .take(50)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprint!(
                "\r\x1b[K[{}/{}] {} events, {:.0} s  {}",
                n + 1,
                files.len(),
                sink.events,
                started.elapsed().as_secs_f64(),
                tail
            );
        }
        if n == local_from && n > 0 {
            for local in &files[local_from..] {
                if local.as_os_str() != "-" {
                    parsers::parse_path(local, &settings.options, &mut LearnSink(&mut sink.zones));
                }
            }
        }
        let summary = parsers::parse_path(file, &settings.options, &mut sink);
        match summary.format {
            Some(format) => {
                *per_format.entry(format.name()).or_default() += summary.events + summary.metrics
            }
            None => unrecognised += 1,
        }
        if sink.stopped {
            break;
        }
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    sink.flush();
    let (events, metrics, errors) = (sink.events, sink.metrics, sink.errors);
    let (hosts, first, last) = (std::mem::take(&mut sink.hosts), sink.first, sink.last);
    let mut learned: Vec<(String, chrono::TimeDelta)> = sink
        .zones
        .offsets()
        .map(|(h, d)| (h.to_string(), d))
        .collect();
    learned.sort();
    if !learned.is_empty() {
        let path = data.join(ingest::collector::ZONES_FILE);
        if let Err(e) = ingest::collector::store_zones(&path, &sink.zones) {
            tracing::warn!(error = %e, "cannot store the learned host zones");
        }
    }
    let shifted = sink.shifted;
    drop(sink);
    let finished = topology.finish()?;
    let after = finished.index.len();
    let new_metrics = finished.metrics_stored;
    let found = first.map(|_| finished.correlation);
    println!("files:   {} ({} unrecognised)", files.len(), unrecognised);
    println!(
        "events:  {events} read, {} new in the index ({} in all)",
        after.saturating_sub(before),
        after
    );
    println!("metrics: {metrics} read, {new_metrics} new in the store (see `relive stats`)");
    println!("errors:  {errors}");
    for (format, n) in &per_format {
        println!("  {format:<13} {n}");
    }
    if let (Some(first), Some(last)) = (first, last) {
        println!("span:    {} .. {}", first.to_rfc3339(), last.to_rfc3339());
    }
    if !learned.is_empty() {
        let list: Vec<String> = learned
            .iter()
            .map(|(host, offset)| {
                let minutes = offset.num_minutes();
                let sign = if minutes < 0 { '-' } else { '+' };
                format!(
                    "{} UTC{sign}{:02}:{:02}",
                    relive::display::clean(host),
                    minutes.abs() / 60,
                    minutes.abs() % 60
                )
            })
            .collect();
        println!(
            "zones:   {} (learned from records exported twice); {shifted} local times corrected",
            list.join(", ")
        );
    }
    println!("hosts:   {}", hosts.len());
    for (host, n) in &hosts {
        println!("  {:<32} {n}", relive::display::clean(host));
    }
    if let Some(found) = found {
        let opened = found.opened;
        let found = found.incidents;
        let open = found
            .iter()
            .filter(|i| i.status == correlate::Status::Open)
            .count();
        println!(
            "incidents: {} around these events ({} open, {} new); see `relive incidents`",
            found.len(),
            open,
            opened
        );
        for i in &found {
            println!(
                "  {}  {:<8}  {:<28}  {}",
                i.id,
                if i.status == correlate::Status::Open {
                    "open"
                } else {
                    "resolved"
                },
                i.root_cause,
                relive::display::clean(i.vm_name.as_deref().or(i.vm_id.as_deref()).unwrap_or("?")),
            );
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
