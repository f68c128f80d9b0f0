//! `relive ingest`: parse files and folders and add their events to the
//! index under `--data`, then print what was read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use parsers::{Event, Metric, RecordError, Sink};

use crate::cli::ParseArgs;
use crate::commands::incidents;
use crate::commands::parse::{expand_paths, Settings};

struct IndexSink<'a> {
    index: &'a mut index::EventIndex,
    events: u64,
    errors: u64,
    metrics: u64,
    hosts: BTreeMap<String, u64>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    failure: Option<index::IndexError>,
}

impl Sink for IndexSink<'_> {
    fn event(&mut self, event: Event) {
        if self.failure.is_some() {
            return;
        }
        if let Err(e) = self.index.add(&event) {
            self.failure = Some(e);
            return;
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
    }

    fn metric(&mut self, _metric: Metric) {
        // Stored by the analytics store once it exists (searchable-index issue).
        self.metrics += 1;
    }

    fn error(&mut self, error: RecordError) {
        self.errors += 1;
        eprintln!("error: {error}");
    }
}

/// Runs `relive ingest`.
pub fn run(args: ParseArgs, data: &Path, rule_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_args(args)?;
    let (rules, kb) = incidents::load_rules(rule_dirs)?;
    let files = expand_paths(&settings.paths)?;
    let index_dir = data.join("index");
    let mut index = index::EventIndex::open(&index_dir)
        .with_context(|| format!("cannot open the index in {}", index_dir.display()))?;
    let before = index.len();
    let mut per_format: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut sink = IndexSink {
        index: &mut index,
        events: 0,
        errors: 0,
        metrics: 0,
        hosts: BTreeMap::new(),
        first: None,
        last: None,
        failure: None,
    };
    let mut unrecognised = 0;
    for file in &files {
        let summary = parsers::parse_path(file, &settings.options, &mut sink);
        match summary.format {
            Some(format) => {
                *per_format.entry(format.name()).or_default() += summary.events + summary.metrics
            }
            None => unrecognised += 1,
        }
        if let Some(e) = sink.failure.take() {
            return Err(e).context("cannot add to the index");
        }
    }
    let (events, metrics, errors) = (sink.events, sink.metrics, sink.errors);
    let (hosts, first, last) = (std::mem::take(&mut sink.hosts), sink.first, sink.last);
    index.commit().context("cannot commit the index")?;
    let after = index.len();
    let found = match (first, last) {
        (Some(first), Some(last)) => Some(incidents::correlate_window(
            &index, data, rules, kb, first, last,
        )?),
        _ => None,
    };
    println!("files:   {} ({} unrecognised)", files.len(), unrecognised);
    println!(
        "events:  {events} read, {} new in the index ({} in all)",
        after.saturating_sub(before),
        after
    );
    println!("metrics: {metrics} (not stored yet)");
    println!("errors:  {errors}");
    for (format, n) in &per_format {
        println!("  {format:<13} {n}");
    }
    if let (Some(first), Some(last)) = (first, last) {
        println!("span:    {} .. {}", first.to_rfc3339(), last.to_rfc3339());
    }
    println!("hosts:   {}", hosts.len());
    for (host, n) in &hosts {
        println!("  {host:<32} {n}");
    }
    if let Some((found, added)) = found {
        let open = found
            .iter()
            .filter(|i| i.status == correlate::Status::Open)
            .count();
        println!(
            "incidents: {} around these events ({} open, {} new); see `relive incidents`",
            found.len(),
            open,
            added
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
                i.vm_name.as_deref().or(i.vm_id.as_deref()).unwrap_or("?"),
            );
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
