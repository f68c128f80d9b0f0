//! Every scenario folder in `samples/` yields exactly its `expected.json`.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use correlate::{Config, Incident};
use parsers::{Event, ParseOptions};
use serde_json::{json, Value};

use crate::{root, shipped};

/// Local offset of the formats without a zone, per scenario (samples/README.md).
fn zone(scenario: &str) -> &'static str {
    match scenario {
        "shared-storage-path-missing" => "+02:00",
        "successful-migration" => "-05:00",
        "background-day-4node" => "-07:00",
        _ => "+00:00",
    }
}

/// Every scenario folder (one with an `expected.json`), in name order.
pub fn scenario_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root().join("samples"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    dirs.sort();
    dirs
}

pub fn scenario_events(dir: &Path) -> Vec<Event> {
    scenario_files(dir).into_iter().flatten().collect()
}

/// Each file's events, files in path order.
pub fn scenario_files(dir: &Path) -> Vec<Vec<Event>> {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let opts = ParseOptions {
        local_zone: zone(name).parse().unwrap(),
        ..ParseOptions::default()
    };
    let mut events = Vec::new();
    let mut folders: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let out = parsers::parse_bytes(&bytes, &opts);
            assert!(
                out.errors.is_empty(),
                "{}: {:?}",
                file.display(),
                out.errors
            );
            events.push(out.events);
        }
    }
    events
}

fn second(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn summarize(i: &Incident) -> Value {
    let mut ids: Vec<u32> = i.evidence.iter().map(|e| e.event_id).collect();
    ids.sort_unstable();
    ids.dedup();
    json!({
        "root_cause": i.root_cause,
        "vm_name": i.vm_name,
        "vm_id": i.vm_id,
        "source_host": i.source_host,
        "destination_host": i.destination_host,
        "status": match i.status { correlate::Status::Open => "open", correlate::Status::Resolved => "resolved" },
        "evidence_event_ids": ids,
        "first_seen": second(i.first_seen),
        "last_seen": second(i.last_seen),
        "alternatives": i.alternatives.iter().map(|a| a.root_cause.clone()).collect::<Vec<_>>(),
    })
}

fn expected(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    list.into_iter()
        .map(|mut v| {
            let obj = v.as_object_mut().unwrap();
            obj.entry("alternatives").or_insert_with(|| json!([]));
            v
        })
        .collect()
}

#[test]
fn every_scenario_yields_exactly_its_expected_incidents() {
    let (rules, kb) = shipped();
    let scenarios = scenario_dirs();
    assert!(scenarios.len() >= 25, "{}", scenarios.len());
    let mut failures = Vec::new();
    let mut causes_seen = std::collections::BTreeSet::new();
    for dir in &scenarios {
        let events = scenario_events(dir);
        let incidents =
            correlate::correlate_all(rules.clone(), kb.clone(), Config::default(), events);
        let got: Vec<Value> = incidents.iter().map(summarize).collect();
        let want = expected(dir);
        if got != want {
            failures.push(format!(
                "{}:\n  got  {}\n  want {}",
                dir.display(),
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&want).unwrap()
            ));
        }
        for i in &incidents {
            causes_seen.insert(i.root_cause.clone());
            assert!(!i.evidence.is_empty());
            assert!(i
                .evidence
                .iter()
                .all(|e| e.origin.path.is_none() || e.origin.offset < 10_000_000));
            assert!(
                !i.remediation.steps.is_empty(),
                "{}: no fix steps",
                i.root_cause
            );
            assert!(i.title.contains(i.vm_name.as_deref().unwrap_or("")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // 22 root causes plus `unknown`.
    assert_eq!(causes_seen.len(), 23, "{causes_seen:?}");
}

#[test]
fn a_scenario_without_the_telling_evidence_yields_both_causes_likelier_first() {
    let (rules, kb) = shipped();
    let oom = correlate::correlate_all(
        rules.clone(),
        kb.clone(),
        Config::default(),
        scenario_events(&root().join("samples/destination-out-of-memory")),
    );
    assert_eq!(oom[0].root_cause, "destination-out-of-memory");
    assert_eq!(oom[0].alternatives[0].root_cause, "numa-spanning-disabled");
    assert!(oom[0].alternatives[0].confidence < oom[0].confidence);
    let numa = correlate::correlate_all(
        rules,
        kb,
        Config::default(),
        scenario_events(&root().join("samples/numa-spanning-disabled")),
    );
    assert_eq!(numa[0].root_cause, "numa-spanning-disabled");
    assert!(numa[0]
        .evidence
        .iter()
        .any(|e| e.provider == "relive-hostfacts"));
}
