//! Causes the knowledge base says are easy to confuse, in both directions:
//! NUMA spanning vs out of memory, firewall vs listener disabled, Kerberos
//! vs CredSSP, storage vs the shared storage path. Each scenario names its
//! own cause; where Windows logs nothing that tells the pair apart (no
//! `relive-hostfacts` event on a real Windows host), the incident says
//! which fact settles it, and that fact is what the playbook's first check
//! reads.

use correlate::{Config, Incident};

use crate::scenarios::scenario_events;
use crate::{root, shipped};

const PAIRS: &[(&str, &str)] = &[
    ("destination-out-of-memory", "numa-spanning-disabled"),
    ("firewall-blocked", "migration-disabled"),
    ("kerberos-delegation-missing", "credssp-remote-initiation"),
    ("storage-unreachable", "shared-storage-path-missing"),
];

fn incident(scenario: &str, without_host_facts: bool) -> Incident {
    let (rules, kb) = shipped();
    let mut events = scenario_events(&root().join("samples").join(scenario));
    if without_host_facts {
        events.retain(|e| e.provider != "relive-hostfacts");
    }
    let incidents = correlate::correlate_all(rules, kb, Config::default(), events);
    assert_eq!(incidents.len(), 1, "{scenario}: {incidents:#?}");
    incidents.into_iter().next().unwrap()
}

#[test]
fn each_of_a_pair_is_named_and_says_what_settles_it() {
    let (_, kb) = shipped();
    for &(a, b) in PAIRS {
        for (cause, other) in [(a, b), (b, a)] {
            let i = incident(cause, false);
            assert_eq!(i.root_cause, cause, "{cause} scenario");
            let facts = i.evidence.iter().any(|e| e.provider == "relive-hostfacts");
            if facts {
                // relive's host facts settled it: nothing left to say.
                assert!(i.lookalikes.is_empty(), "{cause}: {:?}", i.lookalikes);
                continue;
            }
            let note = i
                .lookalikes
                .iter()
                .find(|l| l.root_cause == other)
                .unwrap_or_else(|| panic!("{cause} names no look-alike {other}: {i:#?}"));
            // The note names the hosts of this incident, not placeholders.
            assert!(!note.settle.contains('{'), "{}", note.settle);
            let host = i.destination_host.clone().unwrap();
            assert!(
                note.settle.contains(&host) || note.settle.contains("cluster"),
                "{}",
                note.settle
            );
            // The playbook's first check reads the fact the note names.
            let first = &kb.get(cause).unwrap().confirm[0];
            let fact = note.settle.split_whitespace().next().unwrap();
            assert!(
                first.command.contains(fact) || first.title.contains(fact) || fact == "The",
                "{cause}: the first check ({}) does not read {fact}",
                first.command
            );
        }
    }
}

/// The same events without relive's host facts, as a real Windows host
/// sends them: NUMA and listener-disabled read as their look-alikes, and
/// the incident says which fact settles it.
#[test]
fn without_host_facts_the_incident_names_the_fact_that_settles_it() {
    let i = incident("numa-spanning-disabled", true);
    assert_eq!(i.root_cause, "destination-out-of-memory");
    let note = &i.lookalikes[0];
    assert_eq!(note.root_cause, "numa-spanning-disabled");
    assert!(
        note.settle.starts_with("NumaSpanningEnabled on HV-NUMA2"),
        "{}",
        note.settle
    );

    let i = incident("migration-disabled", true);
    assert!(
        ["migration-disabled", "firewall-blocked"].contains(&i.root_cause.as_str()),
        "{}",
        i.root_cause
    );
    let other = if i.root_cause == "migration-disabled" {
        "firewall-blocked"
    } else {
        "migration-disabled"
    };
    let note = i
        .lookalikes
        .iter()
        .find(|l| l.root_cause == other)
        .expect("a note");
    assert!(
        note.settle
            .starts_with("VirtualMachineMigrationEnabled on HV-EAST2"),
        "{}",
        note.settle
    );
}

/// Every look-alike goes both ways and names a cause that exists.
#[test]
fn lookalikes_are_symmetric() {
    let (_, kb) = shipped();
    let mut pairs = 0;
    for id in kb.ids() {
        for l in &kb.get(id).unwrap().lookalike {
            let back = kb
                .get(&l.cause)
                .unwrap_or_else(|| panic!("{id}: no playbook {}", l.cause));
            assert!(
                back.lookalike.iter().any(|m| m.cause == id),
                "{} does not name {id}",
                l.cause
            );
            pairs += 1;
        }
    }
    assert_eq!(pairs, 2 * PAIRS.len());
}
