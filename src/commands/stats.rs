//! `relive stats`: migration analytics from the metric store, or from
//! events and incidents when no metrics were ingested.

use std::path::Path;
use std::process::ExitCode;

use chrono::Utc;
use index::stats::{Group, MigrationStats};
use index::StatsRequest;

use crate::cli::StatsArgs;
use parsers::time::parse_when;
use relive::display::clean;

/// Runs `relive stats`.
pub fn run(args: StatsArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let request = StatsRequest {
        since: args
            .since
            .as_deref()
            .map(|s| parse_when(s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| parse_when(s, now))
            .transpose()?,
        top: args.top,
    };
    let stats = relive::stats::gather(data, &request)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", render(&stats));
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{:.1}s", v / 1000.0),
        Some(v) => format!("{v:.0}ms"),
        None => "-".into(),
    }
}

fn bytes(b: u64) -> String {
    match b {
        0 => "-".into(),
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

fn table(out: &mut String, title: &str, rows: &[Group]) {
    use std::fmt::Write as _;
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "  {:<34} {:>6} {:>6} {:>6}  {:>8} {:>8} {:>8}  {:>8} {:>8}  {:>10} {:>9}",
        "",
        "migr",
        "fail",
        "rate",
        "blk p50",
        "blk p95",
        "blk p99",
        "tot p50",
        "tot p95",
        "bytes",
        "Mbit/s"
    );
    for g in rows {
        let _ = writeln!(
            out,
            "  {:<34} {:>6} {:>6} {:>5.1}%  {:>8} {:>8} {:>8}  {:>8} {:>8}  {:>10} {:>9}",
            clean(&g.key),
            g.migrations,
            g.failures,
            100.0 * g.failure_rate,
            ms(g.blackout_ms.p50),
            ms(g.blackout_ms.p95),
            ms(g.blackout_ms.p99),
            ms(g.total_ms.p50),
            ms(g.total_ms.p95),
            bytes(g.bytes_moved),
            g.throughput_mbps.map_or("-".into(), |t| format!("{t:.0}")),
        );
    }
}

fn render(s: &MigrationStats) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} migrations, {} failed ({:.1}%), from {}",
        s.total.migrations,
        s.total.failures,
        100.0 * s.total.failure_rate,
        if s.source == "metrics" {
            "migration metrics"
        } else {
            "events and incidents (no metrics ingested)"
        }
    );
    table(
        &mut out,
        "By source -> destination (most failures first)",
        &s.pairs,
    );
    table(&mut out, "By transport", &s.transports);
    if !s.per_day.is_empty() {
        let _ = writeln!(out, "\nPer day (UTC): migrations / failures");
        for b in &s.per_day {
            let _ = writeln!(
                out,
                "  {}  {:>6} / {}",
                b.start.format("%Y-%m-%d"),
                b.migrations,
                b.failures
            );
        }
    }
    let failing_hours: Vec<_> = s.per_hour.iter().filter(|b| b.failures > 0).collect();
    if !failing_hours.is_empty() {
        let _ = writeln!(out, "\nHours with failures (UTC): migrations / failures");
        for b in failing_hours.iter().rev().take(24).rev() {
            let _ = writeln!(
                out,
                "  {}  {:>6} / {}",
                b.start.format("%Y-%m-%d %H:00"),
                b.migrations,
                b.failures
            );
        }
    }
    for (title, list) in [
        ("Top failing VMs", &s.top_failing_vms),
        ("Top root causes", &s.top_root_causes),
    ] {
        if !list.is_empty() {
            let _ = writeln!(out, "\n{title}");
            for c in list {
                let _ = writeln!(out, "  {:<40} {}", clean(&c.name), c.count);
            }
        }
    }
    out
}
