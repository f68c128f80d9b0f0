//! The incident change log: a subscriber that stops reading holds back
//! neither the writer nor another subscriber, and misses nothing.

use correlate::changes::{ChangeKind, ChangeLog, IncidentChange, Subscription};
use correlate::incident::{Incident, Remediation, Status};

fn incident(n: u32) -> Incident {
    let at = chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(n), 0).unwrap();
    Incident {
        id: format!("{n:016x}"),
        root_cause: "unknown".into(),
        title: format!("VM{n} failed"),
        vm_name: Some(format!("VM{n}")),
        vm_id: None,
        source_host: Some("HV01".into()),
        destination_host: None,
        first_seen: at,
        last_seen: at,
        status: Status::Open,
        resolved_at: None,
        count: 1,
        confidence: 0.3,
        alternatives: Vec::new(),
        related_vms: 0,
        evidence: Vec::new(),
        remediation: Remediation::default(),
        warnings: Vec::new(),
        evidence_omitted: 0,
        lookalikes: Vec::new(),
    }
}

fn drain(sub: &mut Subscription) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(change) = sub.next_change().unwrap() {
        ids.push(change.incident.id);
    }
    sub.ack().unwrap();
    ids
}

#[test]
fn a_slow_subscriber_blocks_nobody_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = ChangeLog::open(dir.path()).unwrap();
    let mut fast = Subscription::open(dir.path(), "fast").unwrap();
    // Registered, then it stops reading.
    let mut slow = Subscription::open(dir.path(), "slow").unwrap();
    let mut fast_seen = Vec::new();
    let started = std::time::Instant::now();
    for batch in 0..200u32 {
        let changes: Vec<IncidentChange> = (0..50)
            .map(|i| IncidentChange::new(ChangeKind::Opened, incident(batch * 50 + i)))
            .collect();
        log.append(&changes).unwrap();
        log.release().unwrap();
        fast_seen.extend(drain(&mut fast));
    }
    // The writer never waited for the slow reader (200 synced appends).
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(fast_seen.len(), 10_000);
    // The slow one, back after a restart of its process, reads everything
    // in order: nothing it had not acknowledged was deleted.
    drop(slow);
    slow = Subscription::open(dir.path(), "slow").unwrap();
    let slow_seen = drain(&mut slow);
    assert_eq!(slow_seen, fast_seen);
    // Once both have read, old segments go; a resumed reader starts after them.
    log.release().unwrap();
    let mut again = Subscription::open(dir.path(), "slow").unwrap();
    assert!(drain(&mut again).is_empty());
}

#[test]
fn changes_are_classified_by_what_differs() {
    let open = incident(1);
    assert_eq!(ChangeKind::between(None, &open), Some(ChangeKind::Opened));
    assert_eq!(ChangeKind::between(Some(&open), &open), None);
    let mut folded = open.clone();
    folded.count = 2;
    assert_eq!(
        ChangeKind::between(Some(&open), &folded),
        Some(ChangeKind::Folded)
    );
    let mut cause = open.clone();
    cause.root_cause = "vswitch-mismatch".into();
    assert_eq!(
        ChangeKind::between(Some(&open), &cause),
        Some(ChangeKind::CauseChanged)
    );
    let mut more = open.clone();
    more.destination_host = Some("HV02".into());
    assert_eq!(
        ChangeKind::between(Some(&open), &more),
        Some(ChangeKind::EvidenceAdded)
    );
    let mut resolved = open.clone();
    resolved.status = Status::Resolved;
    assert_eq!(
        ChangeKind::between(Some(&open), &resolved),
        Some(ChangeKind::Resolved)
    );
}
