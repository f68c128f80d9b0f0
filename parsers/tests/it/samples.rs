//! The shipped scenarios parse cleanly, use many formats, and carry the
//! evidence their `expected.json` names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use parsers::{Format, ParseOptions, ParseOutput};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !(name.ends_with(".md") || name.ends_with(".py") || name == "expected.json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn parse_scenario(name: &str) -> (ParseOutput, BTreeSet<Format>) {
    let mut out = ParseOutput::default();
    let mut formats = BTreeSet::new();
    for file in files(&crate::samples().join(name)) {
        let summary = parsers::parse_path(&file, &ParseOptions::default(), &mut out);
        assert_eq!(summary.errors, 0, "{}: {:?}", file.display(), out.errors);
        assert!(
            summary.events + summary.metrics > 0,
            "{} is empty",
            file.display()
        );
        formats.insert(summary.format.unwrap());
    }
    (out, formats)
}

#[test]
fn every_scenario_parses_without_errors_in_many_formats() {
    let mut all = BTreeSet::new();
    for scenario in [
        "shared-storage-path-missing",
        "successful-migration",
        "background-day-4node",
    ] {
        let (out, formats) = parse_scenario(scenario);
        assert!(formats.len() >= 4, "{scenario}: {formats:?}");
        assert!(!out.events.is_empty());
        all.extend(formats);
    }
    assert!(all.len() >= 12, "formats used across samples: {all:?}");
}

#[test]
fn failure_scenario_has_the_expected_evidence_on_both_hosts() {
    let scenario = crate::samples().join("shared-storage-path-missing");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scenario.join("expected.json")).unwrap())
            .unwrap();
    let incident = &expected.as_array().unwrap()[0];
    assert_eq!(incident["root_cause"], "shared-storage-path-missing");
    let vm_id = incident["vm_id"].as_str().unwrap();
    let vm_name = incident["vm_name"].as_str().unwrap();
    let (out, _) = parse_scenario("shared-storage-path-missing");
    // By id, or by name where the format has none (the cluster log's line).
    let about_vm: Vec<_> = out
        .events
        .iter()
        .filter(|e| {
            e.vm_id.as_deref() == Some(vm_id)
                || (e.vm_id.is_none() && e.vm_name.as_deref() == Some(vm_name))
        })
        .collect();
    let ids: BTreeSet<u64> = about_vm.iter().map(|e| u64::from(e.event_id)).collect();
    for want in incident["evidence_event_ids"].as_array().unwrap() {
        assert!(
            ids.contains(&want.as_u64().unwrap()),
            "no event {want} about {vm_id}: {ids:?}"
        );
    }
    let hosts: BTreeSet<&str> = about_vm.iter().map(|e| e.short_host()).collect();
    assert!(
        hosts.contains("NODE-A") && hosts.contains("NODE-B"),
        "{hosts:?}"
    );
}

#[test]
fn healthy_scenarios_have_no_failure_events() {
    for scenario in ["successful-migration", "background-day-4node"] {
        let (out, _) = parse_scenario(scenario);
        let failures: Vec<_> = out
            .events
            .iter()
            .filter(|e| {
                matches!(e.event_id, 21502 | 21111 | 21024) && e.provider.contains("Hyper-V")
            })
            .collect();
        assert!(failures.is_empty(), "{scenario}: {failures:?}");
    }
    let (out, _) = parse_scenario("successful-migration");
    assert!(out.events.iter().any(|e| e.event_id == 20415));
    assert!(out
        .metrics
        .iter()
        .any(|m| m.outcome == Some(parsers::Outcome::Success)));
}
