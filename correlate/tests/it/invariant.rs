//! The invariant of issue 19: every failure signal (an event some rule
//! with the `failure` role matches: 21502, 21111, 21024 and its destination
//! sibling, 21501, the cluster log's failed live migration, a metrics
//! sample in phase `failed`) is in exactly one incident's evidence,
//! `unknown` at worst; and no incident's failure evidence is anything else.
//! Checked on every scenario, on each host's logs alone, on the events
//! shuffled and delivered twice, on failures whose events name no VM, on
//! 21501 alone and on a generated corpus.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use correlate::{Config, Incident, RuleSet};
use parsers::{Event, Level};

use crate::scenarios::{scenario_dirs, scenario_events};
use crate::shipped;
use crate::streaming::{fifty_vms, run};

/// What identifies one failure event across copies in other formats: the
/// short host, the id and the second (Event Viewer text has no fraction).
type Key = (String, u32, i64);

fn key(host: &str, event_id: u32, at: DateTime<Utc>) -> Key {
    (
        parsers::event::short_host(host).to_ascii_lowercase(),
        event_id,
        at.timestamp(),
    )
}

/// Checks the invariant; the error lists what is missing or doubled.
pub fn check(rules: &RuleSet, events: &[Event], incidents: &[Incident]) -> Result<(), String> {
    let signals: BTreeSet<Key> = events
        .iter()
        .filter(|e| rules.is_failure(e))
        .map(|e| key(&e.host, e.event_id, e.timestamp))
        .collect();
    let failure_rules: BTreeSet<&str> = rules.failure_rules().collect();
    let mut owners: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for incident in incidents {
        let mut mine = BTreeSet::new();
        for e in &incident.evidence {
            if e.rule.split(',').any(|r| failure_rules.contains(r)) {
                mine.insert(key(&e.host, e.event_id, e.timestamp));
            }
        }
        for k in mine {
            owners.entry(k).or_default().push(incident.id.clone());
        }
    }
    let mut problems = Vec::new();
    for k in &signals {
        match owners.get(k).map(Vec::len) {
            None => problems.push(format!("failure {k:?} is in no incident")),
            Some(1) => {}
            Some(_) => problems.push(format!("failure {k:?} is in incidents {:?}", owners[k])),
        }
    }
    for k in owners.keys() {
        if !signals.contains(k) {
            problems.push(format!(
                "incident failure evidence {k:?} is no failure event"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_failure_of_every_scenario_is_in_exactly_one_incident() {
    let (rules, kb) = shipped();
    let mut problems = Vec::new();
    let mut signals = 0;
    for dir in scenario_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let events = scenario_events(&dir);
        signals += events.iter().filter(|e| rules.is_failure(e)).count();
        let mut variants: Vec<(String, Vec<Event>)> = vec![("all".into(), events.clone())];
        // Each host's logs alone (only the source's, only the destination's,
        // only the cluster's collector).
        let hosts: BTreeSet<String> = events
            .iter()
            .map(|e| parsers::event::short_host(&e.host).to_ascii_lowercase())
            .collect();
        for host in &hosts {
            let only: Vec<Event> = events
                .iter()
                .filter(|e| parsers::event::short_host(&e.host).eq_ignore_ascii_case(host))
                .cloned()
                .collect();
            variants.push((format!("only {host}"), only));
        }
        // Delivered twice, the second copy in reverse order.
        let mut twice = events.clone();
        twice.extend(events.iter().rev().cloned());
        variants.push(("twice".into(), twice));
        for (variant, events) in variants {
            let incidents = correlate::correlate_all(
                rules.clone(),
                kb.clone(),
                Config::default(),
                events.clone(),
            );
            if let Err(e) = check(&rules, &events, &incidents) {
                problems.push(format!("{name} ({variant}):\n{e}"));
            }
            // Pushed one by one in arrival order (not sorted), as a stream.
            let streamed = run(&rules, &kb, events.clone());
            if let Err(e) = check(&rules, &events, &streamed) {
                problems.push(format!("{name} ({variant}, streamed):\n{e}"));
            }
        }
    }
    assert!(
        signals >= 60,
        "only {signals} failure events in the scenarios"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

fn at(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 3, 8, 0, 0).unwrap() + TimeDelta::seconds(s)
}

fn ha(at: DateTime<Utc>, host: &str, id: u32, record: u64, data: &[(&str, &str)]) -> Event {
    let mut e = Event {
        timestamp: at,
        host: host.into(),
        channel: "Microsoft-Windows-Hyper-V-High-Availability-Admin".into(),
        provider: "Microsoft-Windows-Hyper-V-High-Availability".into(),
        event_id: id,
        version: Some(0),
        level: Level::Error,
        record_id: Some(record),
        ..Event::default()
    };
    for (k, v) in data {
        e.data.push(*k, *v);
    }
    parsers::extract::enrich(&mut e);
    e
}

#[test]
fn failures_without_text_or_without_a_vm_or_alone_each_get_an_incident() {
    let (rules, kb) = shipped();
    // 21502 as raw EVTX carries it: no message, the VM as the cluster
    // resource in Parameter1, the text in Parameter3; next to a 21159 that
    // names the switch problem. The catalog renders both.
    let events = vec![
        ha(at(0), "HV01.contoso.local", 21159, 10, &[
            ("Parameter1", "Virtual Machine APP1"),
            ("Parameter2", "HV02"),
        ]),
        ha(at(1), "HV01.contoso.local", 21502, 11, &[
            ("Parameter1", "Virtual Machine APP1"),
            ("Parameter2", "0D526761-FCC2-44CB-9A4B-6522B08DD2B9"),
            ("Parameter3", "Live migration of 'Virtual Machine APP1' failed.\nVirtual machine migration operation for 'APP1' failed at migration source 'HV01'. (Virtual machine ID 0D526761-FCC2-44CB-9A4B-6522B08DD2B9)\n'Virtual Machine APP1' failed to live migrate because a virtual switch used by the VM does not exist on the destination node 'HV02'."),
        ]),
        // 21501 alone: the migration limit refused it; nothing else logged.
        ha(at(600), "HV03.contoso.local", 21501, 20, &[
            ("Parameter1", "Virtual Machine APP2"),
            ("Parameter2", "8B1D5F37-2E6C-4A90-BD47-C3F9A1E6D205"),
            ("Parameter3", "Failed to perform migration on virtual machine \"APP2\" because virtual machine migration limit \"2\" was reached, please wait for completion of an ongoing migration operation."),
        ]),
        // A failure that names no VM at all (a damaged record): an incident
        // for "a VM" on its host, not silence.
        ha(at(1200), "HV04.contoso.local", 21502, 30, &[("Parameter3", "Live migration failed.")]),
    ];
    assert!(events.iter().all(|e| e.message_rendered));
    let incidents = correlate::correlate_all(rules.clone(), kb, Config::default(), events.clone());
    check(&rules, &events, &incidents).unwrap();
    let got: Vec<_> = incidents
        .iter()
        .map(|i| {
            (
                i.root_cause.as_str(),
                i.vm_name.as_deref(),
                i.vm_id.as_deref(),
                i.source_host.as_deref(),
                i.destination_host.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "vswitch-mismatch",
                Some("APP1"),
                Some("0D526761-FCC2-44CB-9A4B-6522B08DD2B9"),
                Some("HV01"),
                Some("HV02")
            ),
            (
                "migration-limit-reached",
                Some("APP2"),
                Some("8B1D5F37-2E6C-4A90-BD47-C3F9A1E6D205"),
                Some("HV03"),
                None
            ),
            ("unknown", None, None, Some("HV04"), None),
        ]
    );
    assert!(
        incidents[2]
            .title
            .starts_with("a VM failed to live-migrate HV04 -> ?"),
        "{}",
        incidents[2].title
    );
}

#[test]
fn the_generated_corpus_loses_no_failure() {
    let (rules, kb) = shipped();
    let events = fifty_vms();
    let incidents = run(&rules, &kb, events.clone());
    check(&rules, &events, &incidents).unwrap();
    assert_eq!(incidents.len(), 50);
}

/// `check` itself can fail: a failure left out, or claimed twice, is found.
#[test]
fn the_check_finds_a_missing_or_doubled_failure() {
    let (rules, kb) = shipped();
    let events = fifty_vms();
    let incidents = run(&rules, &kb, events.clone());
    let mut fewer = incidents.clone();
    fewer.remove(7);
    assert!(check(&rules, &events, &fewer)
        .unwrap_err()
        .contains("is in no incident"));
    let mut doubled = incidents.clone();
    let mut copy = incidents[3].clone();
    copy.id = "copy".into();
    doubled.push(copy);
    assert!(check(&rules, &events, &doubled)
        .unwrap_err()
        .contains("is in incidents"));
    let _: Arc<RuleSet> = rules;
}
