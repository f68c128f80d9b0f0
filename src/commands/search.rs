//! `relive search`: query the index, newest first, or count by a field.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, Utc};

use crate::cli::SearchArgs;

/// `90s`, `15m`, `2h`, `7d`, `1w` as a duration.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: i64 = text[..split].parse().map_err(|_| {
        anyhow::anyhow!("cannot read duration {text:?}: use 90s, 15m, 2h, 7d or 1w")
    })?;
    let unit = match &text[split..] {
        "s" => Duration::seconds(n),
        "m" | "min" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => bail!("cannot read duration {text:?}: use 90s, 15m, 2h, 7d or 1w"),
    };
    if unit <= Duration::zero() {
        bail!("duration {text:?} must be more than zero");
    }
    Ok(unit)
}

/// `2h`, `90s`, `15m`, `7d`, `1w` before now, or an RFC 3339 time
/// (`2026-11-01T00:00Z`, `2026-11-01`).
pub fn parse_when(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(ago) = parse_duration(text) {
        return Ok(now - ago);
    }
    let with_seconds = if text.len() == 17 && text.ends_with('Z') {
        // `2026-11-01T00:00Z` has no seconds.
        format!("{}:00Z", &text[..16])
    } else {
        text.to_owned()
    };
    if let Some(t) = parsers::time::parse_iso(&with_seconds).map(|s| s.assume_utc()) {
        return Ok(t);
    }
    bail!(
        "cannot read time {text:?}: use a duration like 2h or 7d, or a time like 2026-11-01T00:00Z"
    )
}

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
            .map(|t| parse_when(t, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| parse_when(t, now))
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
                writeln!(out, "{n:>10}  {value}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(size) = &args.histogram {
        let size = parse_duration(size)?;
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
            writeln!(
                out,
                "{}  {:<24} {:>6} {:<11} {}",
                hit.timestamp.format("%Y-%m-%d %H:%M:%S%.3fZ"),
                event["host"]["name"].as_str().unwrap_or_default(),
                event["winlog"]["event_id"],
                event["log"]["level"].as_str().unwrap_or_default(),
                first_line
            )?;
        }
    }
    if !args.json {
        writeln!(out, "{} of {} matching events", hits.hits.len(), hits.total)?;
    }
    Ok(ExitCode::SUCCESS)
}
