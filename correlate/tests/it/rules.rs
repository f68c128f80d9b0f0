//! Shipped rules load, pass their own samples and the real `sigma check`;
//! bad rules are refused with file, line and reason.

use std::path::Path;

use correlate::RuleSet;

use crate::{root, shipped};

const SLUGS: &[&str] = &[
    "shared-storage-path-missing",
    "vswitch-mismatch",
    "destination-out-of-memory",
    "numa-spanning-disabled",
    "processor-incompatible",
    "migration-disabled",
    "credssp-remote-initiation",
    "kerberos-delegation-missing",
    "spn-mismatch",
    "logon-right-missing",
    "firewall-blocked",
    "name-resolution",
    "migration-network",
    "pass-through-disk",
    "storage-unreachable",
    "cluster-ownership",
    "failover-threshold",
    "non-convergence",
    "config-version-mismatch",
    "saved-state-unreadable",
    "migration-limit-reached",
    "vtpm-key-protector",
];

#[test]
fn every_root_cause_has_a_rule_a_playbook_and_passing_samples() {
    let (rules, kb) = shipped();
    for slug in SLUGS {
        let cause = rules
            .causes
            .iter()
            .find(|c| c.root_cause == *slug)
            .unwrap_or_else(|| panic!("no rule for {slug}"));
        assert!(
            !cause.tests.0.is_empty() && !cause.tests.1.is_empty(),
            "{slug} needs positive and negative samples"
        );
        assert!(kb.get(&cause.playbook).is_some(), "no playbook for {slug}");
        assert_eq!(
            cause.file.file_name().unwrap().to_str().unwrap(),
            format!("{slug}.yml")
        );
    }
    assert_eq!(rules.causes.len(), SLUGS.len());
    assert!(kb.get("unknown").is_some());
    assert_eq!(rules.self_test(), Vec::<String>::new());
    // Every detection rule is reachable through the event-id prefilter.
    assert!(rules.event_ids().is_some());
}

#[test]
fn shipped_rules_pass_the_real_sigma_check() {
    let output = std::process::Command::new("sigma")
        .arg("check")
        .arg(root().join("rules"))
        .output()
        .expect("sigma-cli is installed (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Found 0 errors, 0 condition errors and 0 issues"),
        "{stdout}"
    );
}

fn load(text: &str) -> Result<RuleSet, correlate::RuleError> {
    let signals = std::fs::read_to_string(root().join("rules/migration-signals.yml")).unwrap();
    RuleSet::from_sources([
        (Path::new("rules/migration-signals.yml"), signals.as_str()),
        (Path::new("mine.yml"), text),
    ])
}

const GOOD: &str = "title: Mine
correlation:
  type: temporal
  rules: [mine_sel]
  group-by: [vm]
  timespan: 2m
relive:
  root_cause: mine
---
title: Mine selection
name: mine_sel
detection:
  sel:
    EventID: 21502
    Message|contains: 'something'
  condition: sel
";

#[test]
fn a_good_user_rule_loads_beside_the_shipped_ones() {
    let set = load(GOOD).unwrap();
    assert_eq!(set.causes.len(), 1);
    assert_eq!(set.causes[0].root_cause, "mine");
}

#[test]
fn bad_rules_are_refused_with_file_line_and_reason() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "unknown key",
            "  timespan: 2m\n",
            6,
            "unknown key `timespam`",
        ),
        (
            "bad regex",
            "    Message|contains: 'something'\n",
            15,
            "regular expression",
        ),
        (
            "dangling",
            "  rules: [mine_sel]\n",
            4,
            "`mine_sell` is referenced but not defined",
        ),
        ("bad timespan", "  timespan: 2m\n", 6, "`timespan`"),
        (
            "bad condition",
            "  condition: sel\n",
            16,
            "`sell` is not a selection",
        ),
        (
            "bad modifier",
            "    Message|contains: 'something'\n",
            15,
            "modifier `contain`",
        ),
        ("bad slug", "  root_cause: mine\n", 7, "not a slug"),
    ];
    let replacements = [
        "  timespam: 2m\n",
        "    Message|re: 'some(thing'\n",
        "  rules: [mine_sell]\n",
        "  timespan: two minutes\n",
        "  condition: sell\n",
        "    Message|contain: 'something'\n",
        "  root_cause: Mine Cause\n",
    ];
    for ((what, original, line, reason), replacement) in cases.iter().zip(replacements) {
        assert!(GOOD.contains(original), "{what}");
        let text = GOOD.replacen(original, replacement, 1);
        let error = load(&text).expect_err(what);
        assert_eq!(error.path, Path::new("mine.yml"), "{what}: {error}");
        assert!(error.reason.contains(reason), "{what}: {error}");
        if *what != "bad slug" {
            assert_eq!(error.line, *line, "{what}: {error}");
        }
        assert!(error.to_string().starts_with("mine.yml:"), "{error}");
    }
    let error = load("title: [unclosed\n").expect_err("syntax");
    assert_eq!(error.line, 2, "{error}");
}

#[test]
fn a_rule_folder_given_with_rules_is_loaded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.yml"), GOOD).unwrap();
    let set = correlate::shipped::rules(&[dir.path().to_path_buf()]).unwrap();
    assert!(set.causes.iter().any(|c| c.root_cause == "mine"));
    std::fs::write(
        dir.path().join("mine.yml"),
        GOOD.replace("mine_sel]", "nope]"),
    )
    .unwrap();
    let error = correlate::shipped::rules(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(error.path.ends_with("mine.yml"));
}

#[test]
fn aliases_are_checked_and_the_engine_config_reads_toml() {
    let with_alias = GOOD.replace(
        "  timespan: 2m\n",
        "  timespan: 2m\n  aliases:\n    vm:\n      mine_sel: VmId\n",
    );
    assert!(load(&with_alias).is_ok());
    let error = load(&with_alias.replace("mine_sel: VmId", "other_rule: VmId")).unwrap_err();
    assert_eq!(error.line, 9, "{error}");
    let cfg: correlate::Config = toml::from_str("lateness = \"2m\"\nsettle = \"5s\"\n").unwrap();
    assert_eq!(cfg.lateness.as_secs(), 120);
    assert_eq!(cfg.settle.as_secs(), 5);
    assert_eq!(cfg.fold_window.as_secs(), 3600);
    assert!(toml::from_str::<correlate::Config>("lateness = \"soon\"").is_err());
    assert!(toml::from_str::<correlate::Config>("latenes = \"1s\"").is_err());
}
