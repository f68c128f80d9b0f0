//! Every shipped scenario, rewritten by `scripts/variants.py` in other
//! formats and shapes (NDJSON, rendered XML, XML without text that relive
//! must render from its catalog, every event twice across formats in a
//! shuffled order, each host folder alone), ingested by `relive`: the full
//! variants give the scenario's incidents; a folder alone gives an
//! allowed cause (the scenario's, `unknown` or its documented look-alike)
//! for every failure it holds, and no incident when it holds none.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::relive;

fn summary(incidents: &Value) -> Vec<String> {
    let mut out: Vec<String> = incidents
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {} {} {}->{} {}",
                i["root_cause"],
                i["vm_name"],
                i["vm_id"],
                i["source_host"],
                i["destination_host"],
                i["status"]
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_scenario_in_every_variant_gives_its_incidents() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scenarios: Vec<_> = std::fs::read_dir(root.join("samples"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    scenarios.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut without_text = 0;
    for scenario in &scenarios {
        let name = scenario.file_name().unwrap().to_string_lossy().to_string();
        let out = tempfile::tempdir().unwrap();
        let status = Command::new("python3")
            .arg(root.join("scripts/variants.py"))
            .arg(scenario)
            .arg(out.path())
            .env("RELIVE", env!("CARGO_BIN_EXE_relive"))
            .status()
            .unwrap();
        assert!(status.success(), "{name}: variants.py failed");
        let want = summary(
            &serde_json::from_str(
                &std::fs::read_to_string(scenario.join("expected.json")).unwrap(),
            )
            .unwrap(),
        );
        let mut variants: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        variants.sort();
        assert!(variants.len() >= 4, "{name}: {variants:?}");
        for dir in variants {
            let variant = dir.file_name().unwrap().to_string_lossy().to_string();
            let expect: Value = serde_json::from_str(
                &std::fs::read_to_string(out.path().join(format!("{variant}.json"))).unwrap(),
            )
            .unwrap();
            let data = tempfile::tempdir().unwrap();
            let ingest = relive(data.path(), &["ingest", dir.to_str().unwrap()]);
            if !ingest.status.success() {
                problems.push(format!(
                    "{name}/{variant}: ingest failed: {}",
                    String::from_utf8_lossy(&ingest.stderr)
                ));
                continue;
            }
            let listed = relive(data.path(), &["incidents", "--json"]);
            let incidents: Value = serde_json::from_slice(&listed.stdout).unwrap();
            checked += 1;
            without_text += expect["without_text"].as_u64().unwrap_or(0);
            if expect["same"] == true {
                let got = summary(&incidents);
                if got != want {
                    problems.push(format!(
                        "{name}/{variant}:\n  got  {got:?}\n  want {want:?}"
                    ));
                }
                continue;
            }
            let allowed: Vec<&str> = expect["allowed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let list = incidents.as_array().unwrap();
            if expect["failures"] == true && list.is_empty() {
                problems.push(format!("{name}/{variant}: failures but no incident"));
            }
            for i in list {
                let cause = i["root_cause"].as_str().unwrap();
                if !allowed.contains(&cause) {
                    problems.push(format!("{name}/{variant}: {cause} not in {allowed:?}"));
                }
            }
        }
    }
    assert!(checked >= 100, "only {checked} variants checked");
    // The no-text variants hold events relive must render from its catalog:
    // 76 today; many samples write their data fields in another order than
    // Windows does (synthetic layouts), and those keep their text.
    assert!(
        without_text >= 70,
        "only {without_text} events written without text"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
