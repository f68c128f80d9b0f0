//! `relive ingest` and `relive search` end to end.

use crate::relive;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ingest_the_samples_then_search_them() {
    let data = tempfile::tempdir().unwrap();
    let out = relive(data.path(), &["ingest", "samples/"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout(&out);
    assert!(summary.contains("errors:  0"), "{summary}");
    let total: u64 = summary
        .lines()
        .find_map(|l| l.split(" in all)").next()?.rsplit('(').next()?.parse().ok())
        .expect("a total in the summary");
    assert!(total > 500, "{summary}");
    // Ingesting again adds nothing.
    let again = stdout(&relive(data.path(), &["ingest", "samples/"]));
    assert!(again.contains(", 0 new in the index"), "{again}");

    let out = relive(
        data.path(),
        &["search", "event_id:21502 AND host:node-b", "--json"],
    );
    assert!(out.status.success());
    let hits: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h["winlog"]["event_id"] == 21502));
    assert!(hits.iter().all(|h| h["host"]["name"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .starts_with("node-b")));

    let out = relive(
        data.path(),
        &["search", "vm_name:adfs1", "--count-by", "host"],
    );
    let counts = stdout(&out);
    assert!(
        counts.contains("NODE-A") && counts.contains("NODE-B"),
        "{counts}"
    );

    let out = relive(
        data.path(),
        &[
            "search",
            "*",
            "--since",
            "2018-09-27T13:36Z",
            "--until",
            "2018-09-27T13:37Z",
            "--limit",
            "3",
        ],
    );
    let text = stdout(&out);
    assert!(text.contains("of "), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn a_bad_query_fails_with_a_message() {
    let data = tempfile::tempdir().unwrap();
    let _ = relive(data.path(), &["ingest", "../shared/samples-real/text/"]);
    let out = relive(data.path(), &["search", "event_id:[1 TO"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad query"));
    let empty = tempfile::tempdir().unwrap();
    let out = relive(empty.path(), &["search", "*"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("relive ingest"));
}

#[test]
fn histogram_and_prune() {
    let data = tempfile::tempdir().unwrap();
    let seed = "../shared/samples-real/text/seed-workinghardinit-sharedstoragepath-chain.txt";
    assert!(
        relive(data.path(), &["ingest", "--timezone", "+02:00", seed])
            .status
            .success()
    );
    let out = relive(data.path(), &["search", "*", "--histogram", "1s", "--json"]);
    let buckets: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(buckets.len(), 2, "{buckets:?}");
    assert_eq!(buckets[0]["count"], 5);
    let out = relive(
        data.path(),
        &["prune", "--older-than", "2018-09-27T13:36:45Z"],
    );
    assert!(
        stdout(&out).contains("removed 5 events"),
        "{}",
        stdout(&out)
    );
    let out = relive(data.path(), &["prune", "--older-than", "1d"]);
    assert!(stdout(&out).contains("0 remain"), "{}", stdout(&out));
    let out = relive(data.path(), &["prune", "--older-than", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}
