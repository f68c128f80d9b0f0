//! `relive search`: query the index, newest first, or count by a field.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::Utc;

use crate::cli::SearchArgs;
use relive::display::clean;

/// Runs `relive search`.
pub fn run(args: SearchArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let index_dir = data.join("index");
    if !index_dir.join("meta.json").exists() {
        bail!(
            "no index in {} yet: run `relive ingest PATH` first",
            data.display()
        );
    }
    let index = index::EventIndex::open(&index_dir).context("cannot open the index")?;
    let request = index::SearchRequest {
        query: args.query.clone(),
        since: args
            .since
            .as_deref()
            .map(|t| parsers::time::parse_when(t, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| parsers::time::parse_when(t, now))
            .transpose()?,
        limit: args.limit,
    };
    let mut out = io::stdout().lock();
    if let Some(field) = &args.count_by {
        let counts = index.count_by(&request, field)?;
        if args.json {
            for (value, n) in &counts {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ field.as_str(): value, "count": n })
                )?;
            }
        } else {
            for (value, n) in &counts {
                writeln!(out, "{n:>10}  {}", clean(value))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(size) = &args.histogram {
        let size = chrono::Duration::from_std(parsers::time::parse_span(size)?)?;
        for (start, n) in index.histogram(&request, size)? {
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "start": start.to_rfc3339(), "count": n })
                )?;
            } else {
                writeln!(out, "{}  {n:>10}", start.format("%Y-%m-%d %H:%M:%SZ"))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let hits = index.search(&request)?;
    for hit in &hits.hits {
        if args.json {
            writeln!(out, "{}", hit.json)?;
        } else {
            let event: serde_json::Value = serde_json::from_str(&hit.json).unwrap_or_default();
            let message = event["message"].as_str().unwrap_or_default();
            let first_line = message.lines().next().unwrap_or_default();
            // Log text, so escaped: nothing in it reaches the terminal as a control.
            writeln!(
                out,
                "{}  {:<24} {:>6} {:<11} {}",
                hit.timestamp.format("%Y-%m-%d %H:%M:%S%.3fZ"),
                clean(event["host"]["name"].as_str().unwrap_or_default()),
                event["winlog"]["event_id"],
                clean(event["log"]["level"].as_str().unwrap_or_default()),
                clean(first_line)
            )?;
        }
    }
    if !args.json {
        writeln!(out, "{} of {} matching events", hits.hits.len(), hits.total)?;
    }
    Ok(ExitCode::SUCCESS)
}
