//! Migration metric samples on disk: Parquet files partitioned by day
//! (`--data/metrics/day=YYYY-MM-DD/part-*.parquet`), read lazily with polars.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use parsers::{Metric, Outcome, Phase};
use polars::prelude::*;

use crate::IndexError;

/// The metric store under one data directory.
#[derive(Debug, Clone)]
pub struct MetricStore {
    dir: PathBuf,
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Started => "started",
        Phase::Precopy => "precopy",
        Phase::Blackout => "blackout",
        Phase::Completed => "completed",
        Phase::Failed => "failed",
        Phase::Sample => "sample",
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

/// What makes a sample the same sample (so re-ingesting adds nothing).
type SampleKey = (String, i64, String, i64);

fn key_of(m: &Metric) -> SampleKey {
    (
        m.migration_id.clone(),
        m.timestamp.timestamp_nanos_opt().unwrap_or_default(),
        phase_name(m.phase).to_string(),
        m.pass.map_or(-1, i64::from),
    )
}

pub(crate) fn polars_error(e: PolarsError) -> IndexError {
    IndexError::Metrics(e.to_string())
}

impl MetricStore {
    /// The store in `dir` (created on the first append).
    pub fn open(dir: &Path) -> MetricStore {
        MetricStore {
            dir: dir.to_path_buf(),
        }
    }

    /// Every Parquet file of the store, in path order.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(days) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for day in days.flatten() {
            let Ok(parts) = std::fs::read_dir(day.path()) else {
                continue;
            };
            for part in parts.flatten() {
                let p = part.path();
                if p.extension().and_then(|e| e.to_str()) == Some("parquet") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    fn day_files(&self, day: &str) -> Vec<PathBuf> {
        self.files()
            .into_iter()
            .filter(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|d| d.to_string_lossy() == format!("day={day}"))
            })
            .collect()
    }

    /// Stores the samples that are not stored yet; returns how many were new.
    pub fn append(&self, metrics: &[Metric]) -> Result<usize, IndexError> {
        let mut by_day: BTreeMap<String, Vec<&Metric>> = BTreeMap::new();
        for m in metrics {
            by_day
                .entry(m.timestamp.format("%Y-%m-%d").to_string())
                .or_default()
                .push(m);
        }
        let mut added = 0;
        for (day, samples) in by_day {
            let existing = self.keys(&self.day_files(&day))?;
            let mut seen: HashSet<SampleKey> = HashSet::new();
            let fresh: Vec<&Metric> = samples
                .into_iter()
                .filter(|m| {
                    let k = key_of(m);
                    !existing.contains(&k) && seen.insert(k)
                })
                .collect();
            if fresh.is_empty() {
                continue;
            }
            let mut df = frame(&fresh).map_err(polars_error)?;
            let dir = self.dir.join(format!("day={day}"));
            std::fs::create_dir_all(&dir).map_err(|source| IndexError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let first = fresh
                .iter()
                .map(|m| m.timestamp.timestamp_nanos_opt().unwrap_or_default())
                .min()
                .unwrap_or_default();
            let n = self.day_files(&day).len();
            let path = dir.join(format!("part-{n:05}-{first}.parquet"));
            let tmp = path.with_extension("parquet.tmp");
            let file = std::fs::File::create(&tmp).map_err(|source| IndexError::Io {
                path: tmp.display().to_string(),
                source,
            })?;
            ParquetWriter::new(file)
                .with_compression(ParquetCompression::Zstd(None))
                .finish(&mut df)
                .map_err(polars_error)?;
            std::fs::rename(&tmp, &path).map_err(|source| IndexError::Io {
                path: path.display().to_string(),
                source,
            })?;
            added += fresh.len();
        }
        Ok(added)
    }

    fn keys(&self, files: &[PathBuf]) -> Result<HashSet<SampleKey>, IndexError> {
        let mut out = HashSet::new();
        if files.is_empty() {
            return Ok(out);
        }
        let df = scan(files)
            .map_err(polars_error)?
            .select([col("migration_id"), col("ts"), col("phase"), col("pass")])
            .collect()
            .map_err(polars_error)?;
        let ids = df
            .column("migration_id")
            .and_then(|c| c.str())
            .map_err(polars_error)?;
        let ts = df
            .column("ts")
            .and_then(|c| c.i64())
            .map_err(polars_error)?;
        let phase = df
            .column("phase")
            .and_then(|c| c.str())
            .map_err(polars_error)?;
        let pass = df
            .column("pass")
            .and_then(|c| c.i64())
            .map_err(polars_error)?;
        for (((id, t), ph), pa) in ids.iter().zip(ts.iter()).zip(phase.iter()).zip(pass.iter()) {
            out.insert((
                id.unwrap_or_default().to_string(),
                t.unwrap_or_default(),
                ph.unwrap_or_default().to_string(),
                pa.unwrap_or(-1),
            ));
        }
        Ok(out)
    }

    /// A lazy frame over every stored sample, or `None` when there is none.
    /// Columns: ts (i64 ns, UTC), migration_id, vm_name, vm_id, source_host,
    /// destination_host, phase, pass (-1 = none), bytes_sent, dirty_pages,
    /// throughput_mbps, blackout_ms, total_ms, transport, outcome.
    pub fn lazy(&self) -> Result<Option<LazyFrame>, IndexError> {
        let files = self.files();
        if files.is_empty() {
            return Ok(None);
        }
        scan(&files).map(Some).map_err(polars_error)
    }
}

fn scan(files: &[PathBuf]) -> PolarsResult<LazyFrame> {
    let paths: Vec<PlRefPath> = files
        .iter()
        .map(|p| PlRefPath::try_from_path(p))
        .collect::<PolarsResult<_>>()?;
    // The `day=` folders are for people and for pruning by hand; the time is
    // in the `ts` column, so no hive partition columns.
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_disabled(),
        ..ScanArgsParquet::default()
    };
    LazyFrame::scan_parquet_files(paths.into(), args)
}

pub(crate) fn frame(samples: &[&Metric]) -> PolarsResult<DataFrame> {
    let text = |f: &dyn Fn(&Metric) -> Option<&str>| -> Vec<Option<String>> {
        samples.iter().map(|m| f(m).map(str::to_string)).collect()
    };
    let ts: Vec<i64> = samples
        .iter()
        .map(|m| m.timestamp.timestamp_nanos_opt().unwrap_or_default())
        .collect();
    let ids: Vec<String> = samples.iter().map(|m| m.migration_id.clone()).collect();
    let phase: Vec<String> = samples
        .iter()
        .map(|m| phase_name(m.phase).to_string())
        .collect();
    let pass: Vec<i64> = samples
        .iter()
        .map(|m| m.pass.map_or(-1, i64::from))
        .collect();
    let bytes: Vec<Option<u64>> = samples.iter().map(|m| m.bytes_sent).collect();
    let dirty: Vec<Option<u64>> = samples.iter().map(|m| m.dirty_pages).collect();
    let tput: Vec<Option<f64>> = samples.iter().map(|m| m.throughput_mbps).collect();
    let blackout: Vec<Option<f64>> = samples
        .iter()
        .map(|m| m.blackout_ms.map(|v| v as f64))
        .collect();
    let total: Vec<Option<f64>> = samples
        .iter()
        .map(|m| m.total_ms.map(|v| v as f64))
        .collect();
    let outcome: Vec<Option<String>> = samples
        .iter()
        .map(|m| m.outcome.map(|o| outcome_name(o).to_string()))
        .collect();
    DataFrame::new(
        samples.len(),
        vec![
            Column::new("ts".into(), ts),
            Column::new("migration_id".into(), ids),
            Column::new("vm_name".into(), text(&|m| m.vm_name.as_deref())),
            Column::new("vm_id".into(), text(&|m| m.vm_id.as_deref())),
            Column::new("source_host".into(), text(&|m| m.source_host.as_deref())),
            Column::new(
                "destination_host".into(),
                text(&|m| m.destination_host.as_deref()),
            ),
            Column::new("phase".into(), phase),
            Column::new("pass".into(), pass),
            Column::new("bytes_sent".into(), bytes),
            Column::new("dirty_pages".into(), dirty),
            Column::new("throughput_mbps".into(), tput),
            Column::new("blackout_ms".into(), blackout),
            Column::new("total_ms".into(), total),
            Column::new("transport".into(), text(&|m| m.transport.as_deref())),
            Column::new("outcome".into(), outcome),
        ],
    )
}
