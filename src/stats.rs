//! `relive stats`' figures, for the command line and (later) the HTTP
//! API: migrations from the stored metric samples, joined with the failed
//! attempts the incidents tell of that no sample covers (a migration
//! refused before its first page writes no metrics); without metrics, from
//! events and incidents alone. Root causes count the same failures.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use correlate::{Incident, IncidentStore};
use index::stats::{Count, MigrationStats};
use index::{MetricStore, StatsRequest};
use parsers::Metric;

/// Everything `relive stats` shows for the data folder.
pub fn gather(data: &Path, request: &StatsRequest) -> anyhow::Result<MigrationStats> {
    let incidents = IncidentStore::new(data).load()?;
    let store = MetricStore::open(&data.join("metrics"));
    let mut stats = match store.lazy()? {
        Some(samples) => {
            let covered = index::stats::failed_migrations(samples.clone(), request)?;
            let extra = uncovered_failures(&incidents, &covered);
            index::stats::migration_stats_with(samples, &extra, request)?
        }
        None => from_events(data, &incidents, request)?,
    };
    stats.top_root_causes = root_causes(&incidents, request, request.top);
    Ok(stats)
}

fn in_range(t: DateTime<Utc>, request: &StatsRequest) -> bool {
    request.since.is_none_or(|s| t >= s) && request.until.is_none_or(|u| t < u)
}

fn root_causes(incidents: &[Incident], request: &StatsRequest, top: usize) -> Vec<Count> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for i in incidents.iter().filter(|i| in_range(i.last_seen, request)) {
        *counts.entry(&i.root_cause).or_default() += u64::from(i.count);
    }
    let mut out: Vec<Count> = counts
        .into_iter()
        .map(|(name, count)| Count {
            name: name.to_string(),
            count,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    out.truncate(if top == 0 { 10 } else { top });
    out
}

/// The incident's failed attempts numbered `attempts`, one sample each.
fn attempt_samples(
    i: &Incident,
    attempts: std::ops::Range<u32>,
) -> impl Iterator<Item = Metric> + '_ {
    attempts.map(move |n| {
        index::stats::event_sample(
            format!("{}#{n}", i.id),
            i.last_seen,
            i.vm_name.clone(),
            i.source_host.clone(),
            i.destination_host.clone(),
            true,
            None,
        )
    })
}

/// Each incident's failed attempts beyond the failed migrations the metrics
/// hold for its VM around its time (ten minutes either side), as samples.
fn uncovered_failures(incidents: &[Incident], covered: &[(String, DateTime<Utc>)]) -> Vec<Metric> {
    let near = chrono::TimeDelta::minutes(10);
    let mut used = vec![false; covered.len()];
    let mut out = Vec::new();
    for i in incidents {
        let vm = i.vm_name.as_deref().unwrap_or_default();
        let mut left = i.count.max(1);
        for (k, (name, end)) in covered.iter().enumerate() {
            if left == 0 {
                break;
            }
            if !used[k]
                && name.eq_ignore_ascii_case(vm)
                && *end >= i.first_seen - near
                && *end <= i.last_seen + near
            {
                used[k] = true;
                left -= 1;
            }
        }
        out.extend(attempt_samples(i, 0..left));
    }
    out
}

/// Without metrics, a migration is a failed attempt (an incident, counted
/// once per attempt) or a success joined from events
/// ([`index::stats::successes_from_events`]).
fn from_events(
    data: &Path,
    incidents: &[Incident],
    request: &StatsRequest,
) -> anyhow::Result<MigrationStats> {
    let mut samples: Vec<Metric> = incidents
        .iter()
        .flat_map(|i| attempt_samples(i, 0..i.count.max(1)))
        .collect();
    let index_dir = data.join("index");
    if index_dir.join("meta.json").exists() {
        let index = index::EventIndex::open(&index_dir).context("cannot open the index")?;
        samples.extend(index::stats::successes_from_events(&index, request)?);
    }
    let mut stats = index::stats::stats_from_samples(&samples, request)?;
    stats.source = "events".into();
    stats.transports.clear();
    Ok(stats)
}
