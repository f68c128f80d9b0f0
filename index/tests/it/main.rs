//! The event index on real logs and the shipped samples.

use std::collections::BTreeMap;
use std::path::PathBuf;

use index::{EventIndex, SearchRequest};
use parsers::{Event, ParseOptions, ParseOutput};

fn shared() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [here.join("../../shared"), here.join("../../../shared")]
        .into_iter()
        .find(|p| p.is_dir())
        .expect("shared/ next to the repository")
}

fn parse(path: &std::path::Path, opts: &ParseOptions) -> Vec<Event> {
    let mut out = ParseOutput::default();
    parsers::parse_path(path, opts, &mut out);
    out.events
}

fn ingest(index: &mut EventIndex, events: &[Event]) {
    for e in events {
        index.add(e).unwrap();
    }
    index.commit().unwrap();
}

fn count(index: &EventIndex, query: &str) -> usize {
    index
        .search(&SearchRequest::new(query))
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .total
}

#[test]
fn real_system_log_counts_match_the_manifest_and_reingest_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = EventIndex::open(dir.path()).unwrap();
    let file = shared().join("samples-real/evtx/dfirmuseum-win2012r2-stolenszechuan__System.evtx");
    let events = parse(&file, &ParseOptions::default());
    ingest(&mut index, &events);
    assert_eq!(index.len(), 60_189);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("samples-real/manifest.json")).unwrap(),
    )
    .unwrap();
    let want = manifest["dfirmuseum-win2012r2-stolenszechuan__System.evtx"]
        ["evtx_rust_crate_via_pyevtx_rs"]["top_event_ids"]
        .as_object()
        .unwrap();
    let by_id: BTreeMap<String, u64> = index
        .count_by(&SearchRequest::new("*"), "event_id")
        .unwrap()
        .into_iter()
        .collect();
    for (key, n) in want {
        let (provider, id) = key.rsplit_once('/').unwrap();
        let query = format!("event_id:{id} AND provider:\"{provider}\"");
        assert_eq!(count(&index, &query) as u64, n.as_u64().unwrap(), "{query}");
        assert!(by_id[id] >= n.as_u64().unwrap());
    }
    // Again: nothing new.
    ingest(&mut index, &events);
    assert_eq!(index.len(), 60_189);
    // Merges run to their end; the handle writes on afterwards, still
    // deduplicating against what it wrote before.
    index.commit_and_wait_for_merges().unwrap();
    assert_eq!(index.len(), 60_189);
    ingest(&mut index, &events[..1000]);
    assert_eq!(index.len(), 60_189);
    assert_eq!(count(&index, "*"), 60_189);
}

#[test]
fn query_operators_over_the_seed_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = EventIndex::open(dir.path()).unwrap();
    let opts = ParseOptions {
        local_zone: "+02:00".parse().unwrap(),
        ..ParseOptions::default()
    };
    let seed = shared().join("samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
    ingest(&mut index, &parse(&seed, &opts));
    assert_eq!(index.len(), 7);
    // Text exports have no record id: the content hash keeps them unique and stable.
    ingest(&mut index, &parse(&seed, &opts));
    assert_eq!(index.len(), 7);
    assert_eq!(count(&index, "event_id:21502 AND host:node-b"), 1);
    assert_eq!(
        count(&index, "event_id:21502 AND host:NODE-B.datawisetech.corp"),
        1
    );
    assert_eq!(count(&index, "host:node-a"), 2);
    assert_eq!(
        count(&index, "vm_name:adfs1"),
        5,
        "VM names are case-insensitive"
    );
    assert_eq!(
        count(&index, "vm_id:4b5f2f6c-aea3-4c7b-8342-e255d1d112d7"),
        7
    );
    assert_eq!(count(&index, "message:\"collection registry\""), 3);
    assert_eq!(count(&index, "hresult:0x80070002"), 4);
    assert_eq!(count(&index, "data.VmName:ADFS1"), 5);
    assert_eq!(count(&index, "event_id:[21000 TO 22000]"), 5);
    assert_eq!(count(&index, "NOT event_id:21066"), 5);
    assert_eq!(count(&index, "NOT level:information"), 7);
    assert_eq!(count(&index, "NOT level:error"), 0);
    assert_eq!(count(&index, "event_id:1106 OR event_id:1840"), 2);
    assert_eq!(count(&index, "channel:microsoft-windows-hyper-v-vmms*"), 4);
    assert_eq!(count(&index, "message:verif*"), 3);
    let by_host = index.count_by(&SearchRequest::new("*"), "host").unwrap();
    assert_eq!(
        by_host,
        [
            ("NODE-B.datawisetech.corp".to_owned(), 5),
            ("NODE-A.datawisetech.corp".to_owned(), 2)
        ]
    );
    // Newest first, with a limit.
    let mut request = SearchRequest::new("*");
    request.limit = 2;
    let hits = index.search(&request).unwrap();
    assert_eq!(hits.total, 7);
    assert_eq!(hits.hits.len(), 2);
    assert!(hits.hits[0].timestamp >= hits.hits[1].timestamp);
    assert!(hits.hits[0].json.contains("NODE-A"));
}

#[test]
fn time_ranges_across_a_dst_change_for_zone_assumed_events() {
    // Berlin leaves summer time on 2018-10-28 at 03:00 local (01:00 UTC).
    let text = |date: &str, id: u32| {
        format!("Log Name:      System\nSource:        S\nDate:          {date}\nEvent ID:      {id}\nLevel:         Error\nComputer:      HV01\nDescription:\nx {id}\n\n")
    };
    let input = [
        text("10/28/2018 01:30:00", 1), // CEST: 2018-10-27T23:30Z
        text("10/28/2018 04:30:00", 2), // CET:  2018-10-28T03:30Z
    ]
    .concat();
    let opts = ParseOptions {
        local_zone: "Europe/Berlin".parse().unwrap(),
        ..ParseOptions::default()
    };
    let events = parsers::parse_bytes(input.as_bytes(), &opts).events;
    assert!(events.iter().all(|e| e.zone_assumed));
    let dir = tempfile::tempdir().unwrap();
    let mut index = EventIndex::open(dir.path()).unwrap();
    ingest(&mut index, &events);
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let mut request = SearchRequest::new("*");
    request.since = Some(t("2018-10-27T23:00:00Z"));
    request.until = Some(t("2018-10-28T00:00:00Z"));
    let hits = index.search(&request).unwrap();
    assert_eq!(hits.total, 1);
    assert!(hits.hits[0].json.contains("\"code\":\"1\""));
    request.since = Some(t("2018-10-28T03:00:00Z"));
    request.until = Some(t("2018-10-28T04:00:00Z"));
    let hits = index.search(&request).unwrap();
    assert_eq!(hits.total, 1);
    assert!(hits.hits[0].json.contains("\"code\":\"2\""));
}

#[test]
fn a_bad_query_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let index = EventIndex::open(dir.path()).unwrap();
    for query in ["event_id:[1 TO", "host:(", "nosuchfield:x", "event_id:abc"] {
        let err = index.search(&SearchRequest::new(query));
        assert!(err.is_err(), "{query} parsed");
    }
    assert!(index.count_by(&SearchRequest::new("*"), "message").is_err());
}

#[test]
fn histogram_and_prune_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = EventIndex::open(dir.path()).unwrap();
    let seed = shared().join("samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
    let opts = ParseOptions {
        local_zone: "+02:00".parse().unwrap(),
        ..ParseOptions::default()
    };
    ingest(&mut index, &parse(&seed, &opts));
    let buckets = index
        .histogram(&SearchRequest::new("*"), chrono::Duration::seconds(1))
        .unwrap();
    let counts: Vec<u64> = buckets.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, [5, 2], "{buckets:?}");
    assert_eq!(buckets[0].0.to_rfc3339(), "2018-09-27T13:36:44+00:00");
    let cutoff = chrono::DateTime::parse_from_rfc3339("2018-09-27T13:36:45Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(index.prune(cutoff).unwrap(), 5);
    assert_eq!(index.len(), 2);
    assert_eq!(count(&index, "host:node-a"), 2);
}

/// A Sigma rule over relive's field names, converted by the real `sigma-cli`
/// with pySigma's Elasticsearch Lucene backend, runs unchanged as a search.
/// (`scripts/test` installs sigma-cli and pysigma-backend-elasticsearch.)
#[test]
fn a_query_written_by_pysigma_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("live-migration-failed.yml");
    std::fs::write(
        &rule,
        "title: Live migration failed because the collection registry is missing
id: 6f7d1a3e-2b4c-4d5e-9f60-1a2b3c4d5e6f
status: experimental
logsource:
    product: windows
    service: system
detection:
    selection:
        event_id: 21502
        host: NODE-B
    text:
        message|contains: 'collection registry'
    quiet:
        level: information
    condition: selection and text and not quiet
level: high
",
    )
    .unwrap();
    let output = std::process::Command::new("sigma")
        .args(["convert", "-t", "lucene", "--without-pipeline"])
        .arg(&rule)
        .output()
        .expect("sigma-cli is installed (pip install sigma-cli pysigma-backend-elasticsearch)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let query = stdout.lines().last().unwrap().trim().to_owned();
    assert!(query.contains("event_id:21502"), "{query}");

    let mut index = EventIndex::open(&dir.path().join("index")).unwrap();
    let opts = ParseOptions {
        local_zone: "+02:00".parse().unwrap(),
        ..ParseOptions::default()
    };
    let seed = shared().join("samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
    ingest(&mut index, &parse(&seed, &opts));
    let hits = index.search(&SearchRequest::new(&query)).unwrap();
    assert_eq!(hits.total, 1, "{query}");
    assert!(hits.hits[0].json.contains("\"event_id\":21502"));
}

/// While one handle adds and commits batches, another handle searching the
/// same directory only ever sees whole committed batches, growing.
#[test]
fn dedup_stays_exact_when_the_handle_forgets_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = EventIndex::open(dir.path()).unwrap();
    index.set_dedup_memory(10);
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let event = |n: u64, vm: bool| Event {
        timestamp: base + chrono::TimeDelta::seconds(n as i64),
        host: "NODE-A".into(),
        channel: "Microsoft-Windows-Hyper-V-VMMS-Admin".into(),
        event_id: 21502,
        record_id: Some(n),
        message: format!("migration {n} failed"),
        vm_id: vm.then(|| "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7".into()),
        ..Event::default()
    };
    let thin: Vec<Event> = (0..50).map(|n| event(n, false)).collect();
    ingest(&mut index, &thin);
    // Past the limit: the keys are forgotten, the index answers.
    ingest(&mut index, &thin);
    assert_eq!(count(&index, "*"), 50, "a resend adds nothing");
    ingest(&mut index, &[event(7, true)]);
    assert_eq!(count(&index, "*"), 50);
    assert_eq!(
        count(&index, "vm_id:4b5f2f6c-aea3-4c7b-8342-e255d1d112d7"),
        1,
        "the richer copy replaced the thin one"
    );
    ingest(&mut index, &[event(7, false)]);
    assert_eq!(
        count(&index, "vm_id:4b5f2f6c-aea3-4c7b-8342-e255d1d112d7"),
        1,
        "a thinner copy does not"
    );
    assert_eq!(count(&index, "*"), 50);
    // Copies stamped hours apart (a text export read with a wrongly
    // assumed zone) are still found once the keys are forgotten, in
    // whichever segment holds them.
    let later = |day: u64, hours: i64| Event {
        timestamp: base + chrono::TimeDelta::days(day as i64) + chrono::TimeDelta::hours(hours),
        ..event(1000 + day, false)
    };
    for day in 1..6 {
        ingest(&mut index, &[later(day * 3, 0)]);
    }
    ingest(&mut index, &thin);
    for day in 1..6 {
        ingest(&mut index, &[later(day * 3, -11), later(day * 3, 13)]);
    }
    assert_eq!(count(&index, "*"), 55, "shifted copies add nothing");
}

#[test]
fn dedup_stays_exact_past_the_forgotten_keys_filter_and_across_handles() {
    // Two keys remembered, 32 forgotten in the filter: 300 events overflow
    // both, and every resend is still found, through this handle and
    // through a new one on the same index.
    let dir = tempfile::tempdir().unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let event = |n: u64| Event {
        timestamp: base + chrono::TimeDelta::minutes(n as i64),
        host: if n.is_multiple_of(2) {
            "NODE-A"
        } else {
            "NODE-B"
        }
        .into(),
        channel: "System".into(),
        event_id: 7036,
        record_id: (!n.is_multiple_of(3)).then_some(n),
        message: format!("service {n} entered the running state"),
        ..Event::default()
    };
    let all: Vec<Event> = (0..300).map(event).collect();
    let mut index = EventIndex::open(dir.path()).unwrap();
    index.set_dedup_memory(2);
    for chunk in all.chunks(20) {
        ingest(&mut index, chunk);
    }
    assert_eq!(count(&index, "*"), 300);
    for chunk in all.chunks(7) {
        ingest(&mut index, chunk);
    }
    assert_eq!(count(&index, "*"), 300, "resent through the same handle");
    drop(index);
    let mut again = EventIndex::open(dir.path()).unwrap();
    ingest(&mut again, &all[100..]);
    ingest(&mut again, &[event(300)]);
    assert_eq!(count(&again, "*"), 301, "resent through a new handle");
}

#[test]
fn readers_see_consistent_snapshots_while_ingest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut writer = EventIndex::open(&path).unwrap();
    let batches = 12;
    let per_batch = 400usize;
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let handle = std::thread::spawn(move || {
        for b in 0..batches {
            for i in 0..per_batch {
                let n = b * per_batch + i;
                let e = Event {
                    timestamp: base + chrono::TimeDelta::seconds(n as i64),
                    host: "NODE-B.contoso.local".into(),
                    channel: "System".into(),
                    provider: "Service Control Manager".into(),
                    event_id: if i % 2 == 0 { 7036 } else { 7040 },
                    record_id: Some(n as u64 + 1),
                    message: format!("event {n}"),
                    ..Event::default()
                };
                writer.add(&e).unwrap();
            }
            writer.commit().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let reader = EventIndex::open(&path).unwrap();
    let mut last = 0;
    let mut seen_states = 0;
    loop {
        reader.refresh().unwrap();
        let total = reader.len() as usize;
        assert_eq!(
            total % per_batch,
            0,
            "a half-committed batch is visible: {total}"
        );
        assert!(total >= last, "the index shrank: {last} -> {total}");
        let by_id = reader
            .count_by(&SearchRequest::new("*"), "event_id")
            .unwrap();
        let sum: u64 = by_id.iter().map(|(_, n)| *n).sum();
        assert_eq!(sum as usize, total, "counts and total from one snapshot");
        if total != last {
            seen_states += 1;
        }
        last = total;
        if handle.is_finished() && total == batches * per_batch {
            break;
        }
    }
    handle.join().unwrap();
    assert!(seen_states >= 2, "the reader saw the index grow");
}

#[test]
fn an_index_written_with_another_layout_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    drop(EventIndex::open(dir.path()).unwrap());
    std::fs::write(dir.path().join("relive-index-version"), "0\n").unwrap();
    let error = EventIndex::open(dir.path()).err().expect("refused");
    let text = error.to_string();
    assert!(text.contains("another version of relive"), "{text}");
}

#[test]
fn an_index_of_layout_1_still_opens_and_answers_as_a_new_one_does() {
    // Layout 1 indexed the exact-match fields with positions; an index
    // written then keeps its own schema, takes new events and answers
    // every query the same as a layout-2 index.
    let seed = shared().join("samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
    let events = parse(&seed, &ParseOptions::default());
    let old = tempfile::tempdir().unwrap();
    {
        let (schema, _) = index::bench_support::build_layout(1);
        let created = tantivy::Index::create_in_dir(old.path(), schema).unwrap();
        let mut writer: tantivy::IndexWriter = created.writer(15_000_000).unwrap();
        writer.commit().unwrap();
        std::fs::write(old.path().join("relive-index-version"), "1\n").unwrap();
    }
    let mut layout1 = EventIndex::open(old.path()).unwrap();
    ingest(&mut layout1, &events[..3]);
    drop(layout1);
    let mut layout1 = EventIndex::open(old.path()).unwrap();
    ingest(&mut layout1, &events);
    let new = tempfile::tempdir().unwrap();
    let mut layout2 = EventIndex::open(new.path()).unwrap();
    ingest(&mut layout2, &events);
    for query in [
        "*",
        "event_id:21502 AND host:node-b",
        "host:NODE-B.datawisetech.corp",
        "channel:microsoft-windows-hyper-v*",
        "vm_id:4b5f2f6c-aea3-4c7b-8342-e255d1d112d7",
        "level:error",
        "message:\"collection registry\"",
    ] {
        assert_eq!(count(&layout1, query), count(&layout2, query), "{query}");
    }
    assert_eq!(count(&layout1, "*"), events.len());
    assert!(count(&layout1, "channel:microsoft-windows-hyper-v*") > 0);
    let version = std::fs::read_to_string(old.path().join("relive-index-version")).unwrap();
    assert_eq!(version.trim(), "1", "the layout on disk is unchanged");
}

#[test]
fn a_bad_query_points_at_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = EventIndex::open(dir.path()).unwrap();
    let seed = shared().join("samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt");
    ingest(&mut index, &parse(&seed, &ParseOptions::default()));
    for (query, at, says) in [
        (
            "event_id:21502 AND (host:a OR host:b",
            19,
            "parenthesis is never closed",
        ),
        ("host:\"node-b AND level:error", 5, "quote is never closed"),
        ("event_id:[1 TO 5", 9, "range is never closed"),
        ("AND host:x", 0, "needs something before"),
        ("host:x AND", 7, "needs something after"),
        ("hostname:node-b", 0, "no field `hostname`"),
        ("event_id:abc", 9, "takes a number"),
    ] {
        let error = index.search(&SearchRequest::new(query)).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(says), "{query}: {text}");
        let caret = text.lines().last().unwrap();
        assert_eq!(caret.find('^'), Some(2 + at), "{query}:\n{text}");
    }
}

fn sample(
    id: &str,
    at: chrono::DateTime<chrono::Utc>,
    pair: (&str, &str),
    vm: &str,
    (failed, blackout, total): (bool, u64, u64),
    transport: &str,
) -> parsers::Metric {
    parsers::Metric {
        timestamp: at,
        migration_id: id.to_string(),
        vm_name: Some(vm.to_string()),
        vm_id: None,
        source_host: Some(pair.0.to_string()),
        destination_host: Some(pair.1.to_string()),
        phase: if failed {
            parsers::Phase::Failed
        } else {
            parsers::Phase::Completed
        },
        pass: None,
        bytes_sent: Some(1 << 30),
        dirty_pages: None,
        throughput_mbps: Some(8000.0),
        blackout_ms: (!failed).then_some(blackout),
        total_ms: Some(total),
        transport: Some(transport.to_string()),
        outcome: Some(if failed {
            parsers::Outcome::Failure
        } else {
            parsers::Outcome::Success
        }),
        origin: Default::default(),
    }
}

/// 100 successful migrations HV1 -> HV2 with blackouts 1..=100 ms, and
/// 10 migrations HV3 -> HV1 of which 3 failed; the percentiles are the
/// linear-interpolation ones (p50 50.5, p95 95.05, p99 99.01).
#[test]
fn stats_over_stored_metrics_have_the_known_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let store = index::MetricStore::open(&dir.path().join("metrics"));
    let day1 = chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut metrics = Vec::new();
    for i in 1..=100u64 {
        let at = day1 + chrono::TimeDelta::minutes(i as i64 * 20);
        // A progress sample and the final one: only the final one counts.
        let mut progress = sample(
            &format!("m{i}"),
            at - chrono::TimeDelta::seconds(30),
            ("HV1", "HV2"),
            &format!("VM{i}"),
            (false, 0, 0),
            "tcp",
        );
        progress.phase = parsers::Phase::Precopy;
        progress.outcome = None;
        progress.blackout_ms = None;
        progress.pass = Some(1);
        // A pass that reports 0.0 must not pull the figure down.
        progress.throughput_mbps = Some(0.0);
        metrics.push(progress);
        metrics.push(sample(
            &format!("m{i}"),
            at,
            ("HV1", "HV2"),
            &format!("VM{i}"),
            (false, i, 10 * i),
            "tcp",
        ));
    }
    for i in 0..10u64 {
        let at = day1 + chrono::TimeDelta::hours(40) + chrono::TimeDelta::minutes(i as i64);
        metrics.push(sample(
            &format!("f{i}"),
            at,
            ("HV3", "HV1"),
            if i < 3 { "DB1" } else { "WEB" },
            (i < 3, 500, 2000),
            "compress",
        ));
    }
    assert_eq!(store.append(&metrics).unwrap(), 210);
    assert_eq!(
        store.append(&metrics).unwrap(),
        0,
        "appending the same samples adds nothing"
    );
    assert!(
        store.files().len() >= 2,
        "partitioned by day: {:?}",
        store.files()
    );
    let stats = index::migration_stats(
        store.lazy().unwrap().unwrap(),
        &index::StatsRequest::default(),
    )
    .unwrap();
    assert_eq!(stats.total.migrations, 110);
    assert_eq!(stats.total.failures, 3);
    let first = &stats.pairs[0];
    assert_eq!(first.key, "HV3 -> HV1");
    assert_eq!((first.migrations, first.failures), (10, 3));
    assert!((first.failure_rate - 0.3).abs() < 1e-9);
    let hv12 = stats.pairs.iter().find(|p| p.key == "HV1 -> HV2").unwrap();
    assert_eq!(hv12.migrations, 100);
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-6;
    assert!(close(hv12.blackout_ms.p50, 50.5), "{:?}", hv12.blackout_ms);
    assert!(close(hv12.blackout_ms.p95, 95.05), "{:?}", hv12.blackout_ms);
    assert!(close(hv12.blackout_ms.p99, 99.01), "{:?}", hv12.blackout_ms);
    assert!(close(hv12.total_ms.p50, 505.0), "{:?}", hv12.total_ms);
    assert_eq!(hv12.bytes_moved, 100 << 30);
    // Throughput is each migration's bytes over its total time, averaged
    // over the migrations (not the samples' own figures): 1 GiB in 10·i ms.
    let want = (1..=100)
        .map(|i| (1u64 << 30) as f64 * 8.0 / (10.0 * i as f64 / 1000.0) / 1e6)
        .sum::<f64>()
        / 100.0;
    assert!(
        close(hv12.throughput_mbps, want),
        "{:?} {want}",
        hv12.throughput_mbps
    );
    // Failures are counted, never averaged in: the 7 successes of HV3 -> HV1
    // each moved 1 GiB in 2 s.
    assert!(
        close(first.throughput_mbps, (1u64 << 30) as f64 * 8.0 / 2.0 / 1e6),
        "{:?}",
        first.throughput_mbps
    );
    let compress = stats
        .transports
        .iter()
        .find(|t| t.key == "compress")
        .unwrap();
    assert_eq!((compress.migrations, compress.failures), (10, 3));
    assert_eq!(stats.top_failing_vms[0].name, "DB1");
    assert_eq!(stats.top_failing_vms[0].count, 3);
    let failing_days: Vec<_> = stats.per_day.iter().filter(|b| b.failures > 0).collect();
    assert_eq!(failing_days.len(), 1);
    assert_eq!(
        failing_days[0].start.to_rfc3339(),
        "2026-11-03T00:00:00+00:00"
    );
    assert_eq!(stats.per_day.iter().map(|b| b.migrations).sum::<u64>(), 110);
    // A time range keeps what ended inside it.
    let later = index::StatsRequest {
        since: Some(day1 + chrono::TimeDelta::hours(34)),
        ..Default::default()
    };
    let s = index::migration_stats(store.lazy().unwrap().unwrap(), &later).unwrap();
    assert_eq!((s.total.migrations, s.total.failures), (10, 3));
}
