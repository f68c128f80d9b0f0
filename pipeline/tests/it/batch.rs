//! An event batch's wire form: what will cross a process boundary reads
//! back as the same events and metrics, and bad input is refused clearly.

use std::path::Path;

use pipeline::{Ack, EventBatch, Message, WireError};

/// Every event and metric of every sample file.
fn samples() -> (Vec<parsers::Event>, Vec<parsers::Metric>) {
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")];
    let (mut events, mut metrics) = (Vec::new(), Vec::new());
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if !(name.ends_with(".md") || name.ends_with(".py") || name == "expected.json") {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        let out = parsers::parse_bytes(
            &std::fs::read(&file).unwrap(),
            &parsers::ParseOptions::default(),
        );
        events.extend(out.events);
        metrics.extend(out.metrics);
    }
    (events, metrics)
}

#[test]
fn a_batch_reads_back_from_its_wire_form_as_the_same_events_and_metrics() {
    let (events, metrics) = samples();
    assert!(
        events.len() > 1000 && !metrics.is_empty(),
        "{} {}",
        events.len(),
        metrics.len()
    );
    let batch = EventBatch {
        from: 7,
        to: 42,
        events,
        metrics,
        read_at: std::time::Instant::now(),
        ack: Ack::none(),
    };
    let wire = batch.to_wire();
    let back = EventBatch::from_wire(&wire, Ack::none()).expect("reads back");
    assert_eq!((back.from, back.to), (7, 42));
    assert_eq!(back.dedup_key(), batch.dedup_key());
    assert_eq!(back.events.len(), batch.events.len());
    for (a, b) in batch.events.iter().zip(&back.events) {
        use parsers::dedup::*;
        assert_eq!(a.timestamp, b.timestamp);
        assert_eq!(a.message, b.message);
        assert_eq!(index_key(a), index_key(b));
        assert_eq!(content_key(a), content_key(b));
        assert_eq!(richness(a), richness(b), "{}", a.to_json());
    }
    assert_eq!(back.metrics.len(), batch.metrics.len());
    for (a, b) in batch.metrics.iter().zip(&back.metrics) {
        assert_eq!(a.to_json(), b.to_json());
    }
}

#[test]
fn a_bad_wire_form_is_refused_with_what_is_wrong() {
    let (events, _) = samples();
    let batch = EventBatch {
        from: 1,
        to: 2,
        events: events.into_iter().take(3).collect(),
        metrics: Vec::new(),
        read_at: std::time::Instant::now(),
        ack: Ack::none(),
    };
    let wire = String::from_utf8(batch.to_wire()).unwrap();
    let read =
        |text: &str| EventBatch::from_wire(text.as_bytes(), Ack::none()).map(|b| b.events.len());
    assert_eq!(read(&wire), Ok(3));
    assert!(matches!(read("no header"), Err(WireError::Header(_))));
    assert!(matches!(
        read("{\"type\":\"other\"}\n"),
        Err(WireError::Header(_))
    ));
    assert!(matches!(
        read(&wire.replacen("\"version\":1", "\"version\":9", 1)),
        Err(WireError::Version(9, 1))
    ));
    let truncated: String = wire.lines().take(3).map(|l| format!("{l}\n")).collect();
    assert!(matches!(read(&truncated), Err(WireError::Body(_))));
    assert!(matches!(
        read(&format!("{wire}{{\"extra\":1}}\n")),
        Err(WireError::Body(_))
    ));
    let garbage = wire.replacen("{\"@timestamp\"", "not json", 1);
    assert!(matches!(read(&garbage), Err(WireError::Body(_))));
}

#[test]
fn a_commit_reads_back_from_its_wire_form() {
    let (events, _) = samples();
    let commit = pipeline::Committed {
        commit: 3,
        upto: 99,
        events: events.into_iter().take(500).collect(),
        read_at: std::time::Instant::now(),
        committed_at: std::time::Instant::now(),
        ack: Ack::none(),
    };
    let back = pipeline::Committed::from_wire(&commit.to_wire(), Ack::none()).expect("reads back");
    assert_eq!((back.commit, back.upto), (3, 99));
    assert_eq!(back.dedup_key(), commit.dedup_key());
    assert_eq!(back.events.len(), 500);
    for (a, b) in commit.events.iter().zip(&back.events) {
        assert_eq!(parsers::dedup::index_key(a), parsers::dedup::index_key(b));
        assert_eq!(a.timestamp, b.timestamp);
    }
    // Not an event batch.
    assert!(matches!(
        EventBatch::from_wire(&commit.to_wire(), Ack::none()),
        Err(WireError::Header(_))
    ));
}
