//! `relive parse`: normalized events to stdout, a summary and the errors
//! (with file, line and byte offset) to stderr.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use parsers::{Event, EventHead, Metric, RecordError, Sink};

use crate::cli::ParseArgs;
use crate::commands::inputs::{expand_paths, Settings};

#[derive(Default)]
struct Totals {
    events: u64,
    metrics: u64,
    errors: u64,
    by_format: BTreeMap<&'static str, u64>,
    hosts: BTreeMap<String, u64>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    zone_assumed: u64,
    run_host: Option<String>,
    run_len: u64,
}

impl Totals {
    fn flush_run(&mut self) {
        if let Some(host) = self.run_host.take() {
            *self.hosts.entry(host).or_default() += self.run_len;
        }
        self.run_len = 0;
    }
}

struct Printer<W: Write> {
    out: W,
    json: bool,
    totals: Totals,
    line: Vec<u8>,
    io_error: Option<io::Error>,
}

impl<W: Write> Printer<W> {
    fn write(&mut self) {
        if self.io_error.is_some() {
            return;
        }
        if let Err(e) = self.out.write_all(&self.line) {
            self.io_error = Some(e);
        }
    }
}

impl Totals {
    fn count(&mut self, timestamp: DateTime<Utc>, zone_assumed: bool, host: &str) {
        self.events += 1;
        if zone_assumed {
            self.zone_assumed += 1;
        }
        self.first = Some(self.first.map_or(timestamp, |f| f.min(timestamp)));
        self.last = Some(self.last.map_or(timestamp, |l| l.max(timestamp)));
        // Events come in runs from one host: count the run, then fold it in.
        if self.run_host.as_deref() == Some(host) {
            self.run_len += 1;
        } else {
            self.flush_run();
            self.run_host = Some(host.to_string());
            self.run_len = 1;
        }
    }
}

impl<W: Write> Sink for Printer<W> {
    fn event(&mut self, event: Event) {
        self.totals
            .count(event.timestamp, event.zone_assumed, &event.host);
        if self.json {
            self.line.clear();
            event.write_json(&mut self.line);
            self.line.push(b'\n');
            self.write();
        }
    }

    fn wants_lines(&self) -> bool {
        self.json
    }

    fn event_lines(&mut self, heads: &[EventHead], lines: &[u8]) {
        for head in heads {
            self.totals
                .count(head.timestamp, head.zone_assumed, &head.host);
        }
        if self.io_error.is_none() {
            if let Err(e) = self.out.write_all(lines) {
                self.io_error = Some(e);
            }
        }
    }

    fn metric(&mut self, metric: Metric) {
        self.totals.metrics += 1;
        if self.json {
            self.line.clear();
            self.line.extend_from_slice(metric.to_json().as_bytes());
            self.line.push(b'\n');
            self.write();
        }
    }

    fn error(&mut self, error: RecordError) {
        self.totals.errors += 1;
        eprintln!("error: {}", relive::display::clean(&error.to_string()));
    }
}

/// Runs `relive parse`.
pub fn run(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_args(args)?;
    let files = expand_paths(&settings.paths)?;
    let stdout = io::stdout();
    let mut printer = Printer {
        // Blocks of lines from EVTX workers (a chunk's, ~100 KiB) are larger:
        // they go straight to stdout, not through the buffer.
        out: BufWriter::with_capacity(64 * 1024, stdout.lock()),
        json: settings.json,
        totals: Totals::default(),
        line: Vec::with_capacity(4096),
        io_error: None,
    };
    let mut unknown = 0u64;
    for file in &files {
        let summary = if file.as_os_str() == "-" {
            parsers::parse_reader(
                io::stdin().lock(),
                Some("-"),
                &settings.options,
                &mut printer,
            )
        } else {
            parsers::parse_path(file, &settings.options, &mut printer)
        };
        match summary.format {
            Some(format) => {
                *printer.totals.by_format.entry(format.name()).or_default() +=
                    summary.events + summary.metrics
            }
            None => unknown += 1,
        }
        if let Some(e) = printer.io_error.take() {
            return Err(anyhow!(e).context("cannot write to standard output"));
        }
    }
    printer
        .out
        .flush()
        .context("cannot write to standard output")?;
    printer.totals.flush_run();
    let t = &printer.totals;
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "{} files, {} events, {} metrics, {} errors",
        files.len(),
        t.events,
        t.metrics,
        t.errors
    )?;
    if !settings.json {
        let mut out = io::stdout().lock();
        writeln!(out, "files:   {} ({} unrecognised)", files.len(), unknown)?;
        writeln!(out, "events:  {}", t.events)?;
        writeln!(out, "metrics: {}", t.metrics)?;
        writeln!(out, "errors:  {}", t.errors)?;
        for (format, n) in &t.by_format {
            writeln!(out, "  {format:<13} {n}")?;
        }
        if let (Some(first), Some(last)) = (t.first, t.last) {
            writeln!(
                out,
                "span:    {} .. {}",
                first.to_rfc3339(),
                last.to_rfc3339()
            )?;
        }
        if t.zone_assumed > 0 {
            writeln!(
                out,
                "zone:    {} events carried local time; read in {}",
                t.zone_assumed, settings.options.local_zone
            )?;
        }
        writeln!(out, "hosts:   {}", t.hosts.len())?;
        for (host, n) in &t.hosts {
            writeln!(out, "  {:<32} {n}", relive::display::clean(host))?;
        }
    }
    Ok(if t.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
