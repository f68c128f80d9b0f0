//! `relive ingest` correlates; `relive incidents`, `relive explain` and
//! `relive rules` end to end.

use std::path::Path;
use std::process::Output;

use crate::relive;

use serde_json::Value;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn incidents(data: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(&relive(data, &["incidents", "--json"]))).unwrap()
}

const SSP: &str = "samples/shared-storage-path-missing";

#[test]
fn ingest_finds_the_seed_incident_and_explain_shows_the_timeline() {
    let data = tempfile::tempdir().unwrap();
    let summary = ok(&relive(data.path(), &["ingest", SSP]));
    assert!(
        summary.contains("incidents: 1 around these events (1 open, 1 new)"),
        "{summary}"
    );
    // The hosts' UTC+2 is learned from records that are in two exports.
    assert!(summary.contains("node-b UTC+02:00"), "{summary}");
    let list = incidents(data.path());
    assert_eq!(list.len(), 1);
    let i = &list[0];
    for key in [
        "id",
        "root_cause",
        "title",
        "vm_name",
        "vm_id",
        "source_host",
        "destination_host",
        "first_seen",
        "last_seen",
        "evidence",
        "confidence",
        "remediation",
        "status",
    ] {
        assert!(i.get(key).is_some(), "missing {key}: {i}");
    }
    assert_eq!(i["root_cause"], "shared-storage-path-missing");
    assert_eq!(i["vm_id"], "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7");
    assert_eq!(i["source_host"], "NODE-B");
    assert_eq!(i["destination_host"], "NODE-A");
    assert_eq!(i["status"], "open");
    assert_eq!(i["remediation"]["playbook"], "shared-storage-path-missing");
    let evidence = i["evidence"].as_array().unwrap();
    assert!(evidence
        .iter()
        .all(|e| e["origin"]["path"].as_str().unwrap().starts_with(SSP)));
    let mut ids: Vec<u64> = evidence
        .iter()
        .map(|e| e["event_id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // 0: the cluster log's failed live migration line.
    assert_eq!(ids, [0, 1106, 1840, 21024, 21066, 21111, 21502]);

    let id = i["id"].as_str().unwrap();
    let text = ok(&relive(data.path(), &["explain", &id[..6]]));
    assert!(
        text.contains("ADFS1 failed to live-migrate NODE-B -> NODE-A"),
        "{text}"
    );
    assert!(text.contains("Timeline"), "{text}");
    // The whole 21502 body, the line with its HRESULT before the headline.
    let block = &text[text.find("NODE-B       21502").expect(&text)..];
    let body = block
        .find("Failed to verify collection registry")
        .expect(&text);
    let headline = block
        .find("Live migration of 'Virtual Machine ADFS1' failed.")
        .expect(&text);
    assert!(body < headline, "{text}");
    assert!(
        text.contains("Fix (playbook shared-storage-path-missing"),
        "{text}"
    );
    // Events of both hosts, in time order, NODE-A's a second after NODE-B's.
    let b = text.find("NODE-B       21111").expect(&text);
    let a = text.find("NODE-A        1106").expect(&text);
    assert!(b < a, "{text}");

    let listing = ok(&relive(data.path(), &["incidents"]));
    assert!(listing.contains("shared-storage-path-missing"), "{listing}");
    for (filter, hits) in [
        (&["--vm", "adfs1"][..], 1),
        (&["--vm", "4b5f2f6c-aea3-4c7b-8342-e255d1d112d7"][..], 1),
        (&["--vm", "SQL1"][..], 0),
        (&["--host", "node-a.datawisetech.corp"][..], 1),
        (&["--host", "NODE-C"][..], 0),
        (&["--root-cause", "shared-storage-path-missing"][..], 1),
        (&["--root-cause", "vswitch-mismatch"][..], 0),
        (&["--since", "2018-09-27T13:00:00Z"][..], 1),
        (&["--since", "2018-09-28T00:00:00Z"][..], 0),
    ] {
        let mut args = vec!["incidents", "--json"];
        args.extend_from_slice(filter);
        let found: Vec<Value> = serde_json::from_str(&ok(&relive(data.path(), &args))).unwrap();
        assert_eq!(found.len(), hits, "{filter:?}");
    }
    let missing = relive(data.path(), &["explain", "ffffffffffff"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no incident"));

    // Ingesting again changes nothing.
    let again = ok(&relive(data.path(), &["ingest", SSP]));
    assert!(again.contains("(1 open, 0 new)"), "{again}");
    assert_eq!(incidents(data.path()), list);
}

#[test]
fn a_chain_split_across_ingests_joins_and_a_later_success_resolves_it() {
    let data = tempfile::tempdir().unwrap();
    // The destination's logs first, then the source's: one incident.
    ok(&relive(
        data.path(),
        &["ingest", "--timezone", "+02:00", &format!("{SSP}/NODE-A")],
    ));
    ok(&relive(
        data.path(),
        &["ingest", "--timezone", "+02:00", &format!("{SSP}/NODE-B")],
    ));
    let list = incidents(data.path());
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["root_cause"], "shared-storage-path-missing");
    assert_eq!(list[0]["destination_host"], "NODE-A");

    // Ten minutes later the retry succeeds (VMMS 20415 for the same VM id).
    let retry = tempfile::tempdir().unwrap();
    let line = r#"{"@timestamp":"2018-09-27T13:47:02.5Z","host":{"name":"NODE-B"},"winlog":{"channel":"Microsoft-Windows-Hyper-V-VMMS-Admin","provider_name":"Microsoft-Windows-Hyper-V-VMMS","event_id":20415,"record_id":1761,"computer_name":"NODE-B.datawisetech.corp","event_data":{"Parameter0":"ADFS1","Parameter1":"4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7","Parameter2":"0.5"}},"log":{"level":"information"},"message":"The Virtual Machine Management service successfully completed the live migration of virtual machine  'ADFS1' with a blackout time of 0.5 seconds (VMID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)."}"#;
    std::fs::write(retry.path().join("retry.ndjson"), format!("{line}\n")).unwrap();
    let summary = ok(&relive(
        data.path(),
        &["ingest", retry.path().to_str().unwrap()],
    ));
    assert!(summary.contains("(0 open, 0 new)"), "{summary}");
    let list = incidents(data.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "resolved");
    assert_eq!(list[0]["resolved_at"], "2018-09-27T13:47:02.500Z");
    let open = ok(&relive(data.path(), &["incidents", "--status", "open"]));
    assert!(open.contains("no incidents"), "{open}");
}

#[test]
fn the_noisy_day_and_the_successful_migration_yield_no_incident() {
    let data = tempfile::tempdir().unwrap();
    let summary = ok(&relive(
        data.path(),
        &[
            "ingest",
            "samples/background-day-4node",
            "samples/successful-migration",
        ],
    ));
    assert!(summary.contains("incidents: 0"), "{summary}");
    assert_eq!(incidents(data.path()), Vec::<Value>::new());
}

#[test]
fn rules_lists_the_shipped_rules_and_refuses_a_bad_folder() {
    let data = tempfile::tempdir().unwrap();
    let text = ok(&relive(data.path(), &["rules"]));
    assert!(text.contains("22 root causes, 23 playbooks"), "{text}");
    let mine = tempfile::tempdir().unwrap();
    std::fs::write(
        mine.path().join("broken.yml"),
        "title: Broken\nname: broken\ndetection:\n  sel:\n    Message|re: '(oops'\n  condition: sel\n",
    )
    .unwrap();
    let out = relive(
        data.path(),
        &["--rules", mine.path().to_str().unwrap(), "rules"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yml:5:"), "{err}");
    assert!(err.contains("bad regular expression"), "{err}");
    // Ingest refuses to run with a bad rule rather than silently skip it.
    let out = relive(
        data.path(),
        &["--rules", mine.path().to_str().unwrap(), "ingest", SSP],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stats_from_metrics_and_from_events_alone() {
    // The successful-migration scenario ships migration metrics (JSON lines
    // and perfmon): stats come from them.
    let data = tempfile::tempdir().unwrap();
    let summary = ok(&relive(
        data.path(),
        &["ingest", "samples/successful-migration"],
    ));
    assert!(summary.contains("new in the store"), "{summary}");
    let stats: Value =
        serde_json::from_str(&ok(&relive(data.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats["source"], "metrics");
    assert_eq!(stats["total"]["migrations"], 1, "{stats:#}");
    assert_eq!(stats["total"]["failures"], 0);
    assert_eq!(stats["pairs"][0]["key"], "NODE-C -> NODE-D", "{stats:#}");
    let text = ok(&relive(data.path(), &["stats"]));
    assert!(text.contains("NODE-C -> NODE-D"), "{text}");
    // Ingesting again stores nothing new.
    let again = ok(&relive(
        data.path(),
        &["ingest", "samples/successful-migration"],
    ));
    assert!(again.contains(", 0 new in the store"), "{again}");

    // No metrics: failures come from incidents, successes from 20415/21301/21307.
    let data = tempfile::tempdir().unwrap();
    ok(&relive(data.path(), &["ingest", SSP]));
    let stats: Value =
        serde_json::from_str(&ok(&relive(data.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats["source"], "events");
    assert_eq!(stats["total"]["failures"], 1, "{stats:#}");
    assert_eq!(stats["pairs"][0]["key"], "NODE-B -> NODE-A", "{stats:#}");
    assert_eq!(
        stats["top_root_causes"][0]["name"],
        "shared-storage-path-missing"
    );
}
