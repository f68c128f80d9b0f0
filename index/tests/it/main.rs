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
