//! Migration analytics over the metric store (polars, lazy): per
//! source→destination pair and per transport, failures per hour and day,
//! blackout and total time percentiles, bytes and throughput, top failing VMs.

use chrono::{DateTime, Utc};
use polars::prelude::*;
use serde::Serialize;

use crate::metrics::polars_error;
use crate::IndexError;
use parsers::{Metric, Outcome, Phase};

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

/// Time range and list lengths of a stats request.
#[derive(Debug, Clone, Default)]
pub struct StatsRequest {
    /// Only migrations that ended at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only migrations that ended before this time.
    pub until: Option<DateTime<Utc>>,
    /// Length of the top lists (0 = 10).
    pub top: usize,
}

/// p50 / p95 / p99 of a duration, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Figures for one group of migrations (a pair, a transport, everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    /// `SOURCE -> DESTINATION`, a transport name, or `all`.
    pub key: String,
    /// Migrations that ended (succeeded or failed).
    pub migrations: u64,
    /// Of which failed.
    pub failures: u64,
    /// failures / migrations.
    pub failure_rate: f64,
    /// Blackout of the successful ones.
    pub blackout_ms: Percentiles,
    /// Total time of the successful ones.
    pub total_ms: Percentiles,
    /// Bytes sent, all migrations.
    pub bytes_moved: u64,
    /// Mean throughput of the successful migrations, Mbit/s: each one's
    /// bytes over its transfer time (failures are not averaged in).
    pub throughput_mbps: Option<f64>,
}

/// Migrations and failures in one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket (UTC).
    pub start: DateTime<Utc>,
    /// Migrations that ended in it.
    pub migrations: u64,
    /// Of which failed.
    pub failures: u64,
    /// Blackout of the successful ones in the bucket.
    pub blackout_ms: Percentiles,
    /// Total time of the successful ones in the bucket.
    pub total_ms: Percentiles,
}

/// A name and a count (top lists).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    /// VM name or root cause.
    pub name: String,
    /// How many.
    pub count: u64,
}

/// Everything `relive stats` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MigrationStats {
    /// `metrics` (from samples) or `events` (from 21502/21111/21024 against 20415/21307).
    pub source: String,
    /// All migrations together.
    pub total: Group,
    /// Per source→destination pair, most failures first.
    pub pairs: Vec<Group>,
    /// Per transport (metrics only).
    pub transports: Vec<Group>,
    /// Per hour, in time order.
    pub per_hour: Vec<Bucket>,
    /// Per day, in time order.
    pub per_day: Vec<Bucket>,
    /// VMs with the most failures.
    pub top_failing_vms: Vec<Count>,
    /// Root causes of incidents, most frequent first (filled from incidents).
    pub top_root_causes: Vec<Count>,
}

fn strs(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    let c = df.column(name)?.cast(&DataType::String)?;
    Ok(c.str()?
        .iter()
        .map(|v| v.unwrap_or("?").to_string())
        .collect())
}

fn u64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<u64>> {
    let c = df.column(name)?.cast(&DataType::UInt64)?;
    Ok(c.u64()?.iter().map(|v| v.unwrap_or(0)).collect())
}

fn i64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<i64>> {
    let c = df.column(name)?.cast(&DataType::Int64)?;
    Ok(c.i64()?.iter().map(|v| v.unwrap_or(0)).collect())
}

fn f64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<f64>>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().collect())
}

fn quantiles(name: &str) -> [Expr; 3] {
    let ok = col("failed").eq(lit(0u32));
    let q = |p: f64, suffix: &str| {
        col(name)
            .filter(ok.clone())
            .quantile(lit(p), QuantileMethod::Linear)
            .alias(format!("{name}_{suffix}"))
    };
    [q(0.50, "p50"), q(0.95, "p95"), q(0.99, "p99")]
}

fn group_aggs() -> Vec<Expr> {
    let mut aggs = vec![
        len().alias("migrations"),
        col("failed").cast(DataType::UInt64).sum().alias("failures"),
        col("bytes")
            .cast(DataType::UInt64)
            .sum()
            .alias("bytes_moved"),
        col("throughput_mbps").mean().alias("throughput_mbps"),
    ];
    aggs.extend(duration_aggs());
    aggs
}

/// The p50/p95/p99 columns [`quantiles`] made for `name`, row by row.
struct PercentileColumns([Vec<Option<f64>>; 3]);

impl PercentileColumns {
    fn read(df: &DataFrame, name: &str) -> PolarsResult<Self> {
        Ok(PercentileColumns([
            f64s(df, &format!("{name}_p50"))?,
            f64s(df, &format!("{name}_p95"))?,
            f64s(df, &format!("{name}_p99"))?,
        ]))
    }

    fn row(&self, i: usize) -> Percentiles {
        Percentiles {
            p50: self.0[0][i],
            p95: self.0[1][i],
            p99: self.0[2][i],
        }
    }
}

/// The duration aggregations every group and bucket carries.
fn duration_aggs() -> impl Iterator<Item = Expr> {
    quantiles("blackout_ms")
        .into_iter()
        .chain(quantiles("total_ms"))
}

fn groups(df: &DataFrame, key: impl Fn(usize) -> String) -> PolarsResult<Vec<Group>> {
    let migrations = u64s(df, "migrations")?;
    let failures = u64s(df, "failures")?;
    let bytes = u64s(df, "bytes_moved")?;
    let tput = f64s(df, "throughput_mbps")?;
    let b = PercentileColumns::read(df, "blackout_ms")?;
    let t = PercentileColumns::read(df, "total_ms")?;
    Ok((0..df.height())
        .map(|i| Group {
            key: key(i),
            migrations: migrations[i],
            failures: failures[i],
            failure_rate: if migrations[i] == 0 {
                0.0
            } else {
                failures[i] as f64 / migrations[i] as f64
            },
            blackout_ms: b.row(i),
            total_ms: t.row(i),
            bytes_moved: bytes[i],
            throughput_mbps: tput[i],
        })
        .collect())
}

fn buckets(per_migration: &LazyFrame, size: i64) -> PolarsResult<Vec<Bucket>> {
    let df = per_migration
        .clone()
        .with_column(((col("end") / lit(size)) * lit(size)).alias("bucket"))
        .group_by([col("bucket")])
        .agg(
            [
                len().alias("migrations"),
                col("failed").cast(DataType::UInt64).sum().alias("failures"),
            ]
            .into_iter()
            .chain(duration_aggs())
            .collect::<Vec<_>>(),
        )
        .sort(["bucket"], SortMultipleOptions::default())
        .collect()?;
    let start = i64s(&df, "bucket")?;
    let migrations = u64s(&df, "migrations")?;
    let failures = u64s(&df, "failures")?;
    let b = PercentileColumns::read(&df, "blackout_ms")?;
    let t = PercentileColumns::read(&df, "total_ms")?;
    Ok((0..df.height())
        .map(|i| Bucket {
            start: DateTime::from_timestamp_nanos(start[i]),
            migrations: migrations[i],
            failures: failures[i],
            blackout_ms: b.row(i),
            total_ms: t.row(i),
        })
        .collect())
}

/// Reduces samples to one row per finished migration: end time, hosts, VM,
/// transport, failed (0/1), blackout, total time, bytes, and for a
/// successful one its throughput (bytes over transfer time).
fn per_migration(samples: LazyFrame, request: &StatsRequest) -> LazyFrame {
    let nanos = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let failed = col("outcome")
        .eq(lit("failure"))
        .fill_null(lit(false))
        .or(col("phase").eq(lit("failed")))
        .cast(DataType::UInt32);
    let done = col("outcome")
        .is_not_null()
        .or(col("phase").eq(lit("failed")))
        .or(col("phase").eq(lit("completed")))
        .cast(DataType::UInt32);
    // An empty VM name is none (a host that did not know the VM).
    let vm_name = when(col("vm_name").eq(lit("")))
        .then(lit(NULL).cast(DataType::String))
        .otherwise(col("vm_name"));
    let mut lf = samples
        .with_columns([
            failed.alias("failed_flag"),
            done.alias("done_flag"),
            vm_name.alias("vm_name"),
        ])
        .group_by([col("migration_id")])
        .agg([
            col("ts").min().alias("start"),
            col("ts").max().alias("end"),
            col("source_host").drop_nulls().first().alias("source_host"),
            col("destination_host")
                .drop_nulls()
                .first()
                .alias("destination_host"),
            col("vm_name").drop_nulls().first().alias("vm_name"),
            col("transport").drop_nulls().first().alias("transport"),
            col("failed_flag").max().alias("failed"),
            col("done_flag").max().alias("done"),
            col("blackout_ms").max().alias("blackout_ms"),
            col("total_ms").max().alias("total_ms"),
            col("bytes_sent").max().alias("bytes"),
        ])
        .filter(col("done").eq(lit(1u32)));
    // Throughput of a finished migration: the bytes it sent over the time
    // it took (its total time, else first to last sample). Failures are
    // counted, never averaged in; per-pass figures (a pass can carry 0.0)
    // are not averaged either.
    let seconds = when(col("total_ms").gt(lit(0.0)))
        .then(col("total_ms").cast(DataType::Float64) / lit(1000.0))
        .otherwise((col("end") - col("start")).cast(DataType::Float64) / lit(1e9));
    let throughput = when(
        col("failed")
            .eq(lit(0u32))
            .and(col("bytes").gt(lit(0u64)))
            .and(seconds.clone().gt(lit(0.0))),
    )
    .then(col("bytes").cast(DataType::Float64) * lit(8.0) / seconds / lit(1e6))
    .otherwise(lit(NULL).cast(DataType::Float64));
    lf = lf.with_column(throughput.alias("throughput_mbps"));
    if let Some(since) = request.since {
        lf = lf.filter(col("end").gt_eq(lit(nanos(since))));
    }
    if let Some(until) = request.until {
        lf = lf.filter(col("end").lt(lit(nanos(until))));
    }
    lf.with_columns([
        col("source_host").fill_null(lit("?")),
        col("destination_host").fill_null(lit("?")),
        col("vm_name").fill_null(lit(UNNAMED_VM)),
        col("transport").fill_null(lit("?")),
    ])
}

/// How a migration whose VM has no name is listed.
pub const UNNAMED_VM: &str = "(unnamed VM)";

/// The failed migrations among the samples (one per migration id): the VM
/// name and when it ended, for matching them with incidents.
pub fn failed_migrations(
    samples: LazyFrame,
    request: &StatsRequest,
) -> Result<Vec<(String, DateTime<Utc>)>, IndexError> {
    let failed = || -> PolarsResult<Vec<(String, DateTime<Utc>)>> {
        let df = per_migration(samples, request)
            .filter(col("failed").eq(lit(1u32)))
            .select([col("vm_name"), col("end")])
            .collect()?;
        let names = strs(&df, "vm_name")?;
        let ends = i64s(&df, "end")?;
        Ok(names
            .into_iter()
            .zip(ends)
            .map(|(n, e)| (n, DateTime::from_timestamp_nanos(e)))
            .collect())
    };
    failed().map_err(polars_error)
}

/// The statistics over stored samples and samples held in memory together
/// (failed attempts the events tell of that no stored sample covers).
pub fn migration_stats_with(
    samples: LazyFrame,
    extra: &[Metric],
    request: &StatsRequest,
) -> Result<MigrationStats, IndexError> {
    if extra.is_empty() {
        return migration_stats(samples, request);
    }
    let refs: Vec<&Metric> = extra.iter().collect();
    let more = crate::metrics::frame(&refs).map_err(polars_error)?.lazy();
    let both = concat(
        [samples, more],
        UnionArgs {
            to_supertypes: true,
            ..UnionArgs::default()
        },
    )
    .map_err(polars_error)?;
    migration_stats(both, request)
}

/// Computes the statistics over samples held in memory (for example the
/// migrations `relive stats` derives from events when no metrics exist).
pub fn stats_from_samples(
    samples: &[parsers::Metric],
    request: &StatsRequest,
) -> Result<MigrationStats, IndexError> {
    let refs: Vec<&parsers::Metric> = samples.iter().collect();
    let df = crate::metrics::frame(&refs).map_err(polars_error)?;
    migration_stats(df.lazy(), request)
}

/// Computes the statistics over a lazy frame of samples (see `MetricStore::lazy`).
pub fn migration_stats(
    samples: LazyFrame,
    request: &StatsRequest,
) -> Result<MigrationStats, IndexError> {
    compute(samples, request).map_err(polars_error)
}

fn compute(samples: LazyFrame, request: &StatsRequest) -> PolarsResult<MigrationStats> {
    let top = if request.top == 0 { 10 } else { request.top };
    // One pass over the samples; every figure below reads its result.
    let per = per_migration(samples, request).collect()?.lazy();
    let by_failures = SortMultipleOptions::default()
        .with_order_descending_multi([true, true])
        .with_nulls_last(true);
    let total_df = per
        .clone()
        .with_column(lit("all").alias("key"))
        .group_by([col("key")])
        .agg(group_aggs())
        .collect()?;
    let total = groups(&total_df, |_| "all".into())?
        .into_iter()
        .next()
        .unwrap_or(Group {
            key: "all".into(),
            ..Group::default()
        });
    let pair_df = per
        .clone()
        .group_by([col("source_host"), col("destination_host")])
        .agg(group_aggs())
        .sort(["failures", "migrations"], by_failures.clone())
        .collect()?;
    let src = strs(&pair_df, "source_host")?;
    let dst = strs(&pair_df, "destination_host")?;
    let mut pairs = groups(&pair_df, |i| format!("{} -> {}", src[i], dst[i]))?;
    sort_groups(&mut pairs);
    let transport_df = per
        .clone()
        .group_by([col("transport")])
        .agg(group_aggs())
        .collect()?;
    let names = strs(&transport_df, "transport")?;
    let mut transports = groups(&transport_df, |i| names[i].clone())?;
    sort_groups(&mut transports);
    let vm_df = per
        .clone()
        .filter(col("failed").eq(lit(1u32)))
        .group_by([col("vm_name")])
        .agg([len().alias("count")])
        .collect()?;
    let vms = strs(&vm_df, "vm_name")?;
    let counts = u64s(&vm_df, "count")?;
    let mut top_failing_vms: Vec<Count> = vms
        .into_iter()
        .zip(counts)
        .map(|(name, count)| Count { name, count })
        .collect();
    top_failing_vms.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    top_failing_vms.truncate(top);
    Ok(MigrationStats {
        source: "metrics".into(),
        total,
        pairs,
        transports,
        per_hour: buckets(&per, HOUR)?,
        per_day: buckets(&per, DAY)?,
        top_failing_vms,
        top_root_causes: Vec::new(),
    })
}

/// Most failures first, then most migrations, then by name (stable output).
pub fn sort_groups(groups: &mut [Group]) {
    groups.sort_by(|a, b| {
        b.failures
            .cmp(&a.failures)
            .then(b.migrations.cmp(&a.migrations))
            .then(a.key.cmp(&b.key))
    });
}

/// A migration sample told by events rather than metrics: `failed` (an
/// incident) or completed, with the blackout when an event gave it.
pub fn event_sample(
    id: String,
    at: DateTime<Utc>,
    vm: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    failed: bool,
    blackout_ms: Option<u64>,
) -> Metric {
    Metric {
        timestamp: at,
        migration_id: id,
        vm_name: vm,
        vm_id: None,
        source_host: source,
        destination_host: destination,
        phase: if failed {
            Phase::Failed
        } else {
            Phase::Completed
        },
        pass: None,
        bytes_sent: None,
        dirty_pages: None,
        throughput_mbps: None,
        blackout_ms,
        total_ms: None,
        transport: Some("events".into()),
        outcome: Some(if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        }),
        origin: Default::default(),
    }
}

/// Successful migrations told by events: 20415/20417 on the source (with
/// the blackout in seconds), 21301 on the source and 21307 on the
/// destination, joined by VM id (or name) within ten minutes. One sample
/// each, for `relive stats` on an index without metrics.
pub fn successes_from_events(
    index: &crate::EventIndex,
    request: &StatsRequest,
) -> Result<Vec<Metric>, crate::IndexError> {
    use chrono::TimeDelta;
    let window = TimeDelta::minutes(10);
    let hits = index.search(&crate::SearchRequest {
        query: "event_id:20415 OR event_id:20417 OR event_id:21301 OR event_id:21307".into(),
        since: request.since.map(|s| s - window),
        until: request.until.map(|u| u + window),
        limit: 5_000_000,
    })?;
    /// One success being joined.
    struct Success {
        vm: String,
        source: Option<String>,
        destination: Option<String>,
        vm_name: Option<String>,
        end: DateTime<Utc>,
        blackout_ms: Option<u64>,
    }
    let opts = parsers::ParseOptions {
        format: Some(parsers::Format::EcsJson),
        ..parsers::ParseOptions::default()
    };
    let mut events: Vec<parsers::Event> = Vec::new();
    for hit in &hits.hits {
        events.extend(parsers::parse_bytes(hit.json.as_bytes(), &opts).events);
    }
    events.sort_by_key(|e| e.timestamp);
    let mut successes: Vec<Success> = Vec::new();
    for e in events {
        let vm = match (&e.vm_id, &e.vm_name) {
            (Some(id), _) => id.to_ascii_uppercase().to_string(),
            (None, Some(name)) => name.to_lowercase().to_string(),
            (None, None) => continue,
        };
        let host = e.short_host().to_string();
        let blackout = matches!(e.event_id, 20415 | 20417)
            .then(|| {
                e.data
                    .get("Parameter2")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .flatten()
            .map(|s| (s * 1000.0).round() as u64);
        let at = successes
            .iter()
            .rposition(|s| s.vm == vm && (e.timestamp - s.end).abs() <= window);
        let entry = match at {
            Some(i) => &mut successes[i],
            None => {
                successes.push(Success {
                    vm,
                    source: None,
                    destination: None,
                    vm_name: e.vm_name.as_ref().map(|v| v.to_string()),
                    end: e.timestamp,
                    blackout_ms: None,
                });
                successes.last_mut().expect("pushed")
            }
        };
        match e.event_id {
            21307 => entry.destination = Some(host),
            _ => {
                entry.source.get_or_insert(host);
            }
        }
        entry.end = entry.end.max(e.timestamp);
        if blackout.is_some() {
            entry.blackout_ms = blackout;
        }
    }
    Ok(successes
        .into_iter()
        .enumerate()
        .map(|(n, s)| {
            event_sample(
                format!("ok-{}-{n}", s.vm),
                s.end,
                s.vm_name,
                s.source,
                s.destination,
                false,
                s.blackout_ms,
            )
        })
        .collect())
}
