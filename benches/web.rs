//! The web UI's search page over 10 M events (issue "HTTP API and web UI":
//! first results on screen under 200 ms for a selective query).
//!
//! 1. 10 M generated events (the index benchmark's generator: 16 hosts,
//!    System, Security, Hyper-V and cluster channels, ~1 % failed-migration
//!    chains) indexed under a data folder as `relive ingest` would.
//! 2. The release `relive ui` over that folder. For two selective queries
//!    (a VM's events over all time; `event_id:21502 AND host:hvNN` in a 6 h
//!    window), interleaved run by run:
//!    - the search page as a browser gets it (`GET /search`, session
//!      cookie, the whole HTML: newest 100 hits, counts by host and event
//!      id, the histogram), timed to the last byte;
//!    - the same through the JSON API (`/api/v1/search` with the same
//!      counts and histogram);
//!    - the baseline: the same index work in this process with no HTTP and
//!      no HTML (`EventIndex::search` for 100 hits, two `count_by`, the
//!      automatic histogram's two aggregations).
//! 3. The page in Debian's Chromium (playwright-core, when installed as
//!    `./scripts/test` does): navigation start → DOMContentLoaded and first
//!    contentful paint (the results are in the HTML, so painted with it).
//!
//! `cargo bench --bench web` (release). `RELIVE_BENCH_EVENTS` (10 M),
//! `RELIVE_BENCH_RUNS` (50), `RELIVE_BENCH_DIR` (scratch folder).

#[path = "../index/benches/support/gen.rs"]
#[allow(dead_code)]
mod gen;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use index::{EventIndex, SearchRequest};

const BIN: &str = env!("CARGO_BIN_EXE_relive");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p10, p50, p90 in ms.
fn spread(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |p: f64| ms(v[((v.len() - 1) as f64 * p).round() as usize]);
    (at(0.10), at(0.50), at(0.90))
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The work the page's search does, in process: 100 hits, counts by host
/// and event id, the automatic histogram (a daily pass for the range when
/// there is no `since`, then the buckets).
fn baseline(index: &EventIndex, request: &SearchRequest) -> usize {
    let hits = index.search(request).unwrap();
    let by_host = index.count_by(request, "host").unwrap();
    let by_id = index.count_by(request, "event_id").unwrap();
    let oldest = match request.since {
        Some(s) => Some(s),
        None => index
            .histogram(request, chrono::Duration::days(1))
            .unwrap()
            .first()
            .map(|(t, _)| *t),
    };
    let newest = request.until.or(hits.hits.first().map(|h| h.timestamp));
    let span = match (oldest, newest) {
        (Some(a), Some(b)) => (b - a).num_milliseconds().max(1),
        _ => 60_000,
    };
    let width = [
        1_000i64, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000,
        10_800_000, 21_600_000, 43_200_000, 86_400_000,
    ]
    .into_iter()
    .find(|w| span / w <= 80)
    .unwrap_or(86_400_000);
    let buckets = index
        .histogram(request, chrono::Duration::milliseconds(width))
        .unwrap();
    hits.total + by_host.len() + by_id.len() + buckets.len()
}

/// A query, its `since` and `until`.
type Ask = (
    String,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// The query of run `i`.
type Query = Box<dyn Fn(usize) -> Ask>;

fn main() {
    let n = env_usize("RELIVE_BENCH_EVENTS", 10_000_000);
    let runs = env_usize("RELIVE_BENCH_RUNS", 50);
    let base = std::env::var("RELIVE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let scratch = tempfile::tempdir_in(&base).expect("scratch dir");
    let data = scratch.path().join("data");
    println!(
        "web: {n} events, {runs} runs per query, scratch {}",
        scratch.path().display()
    );

    // 1. The index, as relive ingest writes it.
    let started = Instant::now();
    {
        let mut index = EventIndex::open(&data.join("index")).unwrap();
        gen::generate(n, |e| index.add(e).expect("add"));
        index.commit().unwrap();
    }
    println!(
        "indexed {n} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 2. relive ui over it.
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["ui", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("relive ui");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ui = Kill(child);
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = format!("http://{}", started["listening"]["http"].as_str().unwrap());
    let tokens: toml::Table = std::fs::read_to_string(started["tokens"].as_str().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let read = tokens["read_token"].as_str().unwrap().to_string();
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let login = client
        .post(format!("{url}/login"))
        .form(&[("token", read.as_str())])
        .send()
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let index = EventIndex::open(&data.join("index")).unwrap();
    let day2 = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 2, 6, 0, 0).unwrap();

    let queries: Vec<(&str, Query)> = vec![
        (
            "vm_name:VM-xxxx (200 different VMs), all time",
            Box::new(|i| {
                (
                    format!("vm_name:{}", gen::vm_name((i as u64 * 7) % gen::VMS)),
                    None,
                    None,
                )
            }),
        ),
        (
            "event_id:21502 AND host:hvNN, 6 h window",
            Box::new(move |i| {
                let since = day2 + TimeDelta::minutes((i % 60) as i64);
                (
                    format!("event_id:21502 AND host:hv{:02}", i as u64 % gen::HOSTS + 1),
                    Some(since),
                    Some(since + TimeDelta::hours(6)),
                )
            }),
        ),
    ];
    let mut browser_urls = Vec::new();
    for (name, ask) in &queries {
        let (mut page, mut api, mut bare) = (Vec::new(), Vec::new(), Vec::new());
        let mut hits = 0;
        for i in 0..runs {
            let (q, since, until) = ask(i);
            let mut qs = format!("q={}", percent(&q));
            if let (Some(s), Some(u)) = (since, until) {
                qs.push_str(&format!(
                    "&since={}&until={}",
                    percent(&s.to_rfc3339()),
                    percent(&u.to_rfc3339())
                ));
            }
            if i == 0 {
                browser_urls.push(format!("{url}/search?{qs}"));
            }
            let t = Instant::now();
            let body = client
                .get(format!("{url}/search?{qs}"))
                .header("cookie", &cookie)
                .send()
                .unwrap()
                .text()
                .unwrap();
            page.push(t.elapsed());
            assert!(
                body.contains("id=\"results\""),
                "no results table: {}",
                &body[..body.len().min(500)]
            );
            let t = Instant::now();
            let json: serde_json::Value = client
                .get(format!(
                    "{url}/api/v1/search?{qs}&limit=100&count_by=host,event_id&histogram=auto"
                ))
                .bearer_auth(&read)
                .send()
                .unwrap()
                .json()
                .unwrap();
            api.push(t.elapsed());
            hits = json["total"].as_u64().unwrap();
            let mut request = SearchRequest::new(&q);
            request.limit = 100;
            request.since = since;
            request.until = until;
            let t = Instant::now();
            std::hint::black_box(baseline(&index, &request));
            bare.push(t.elapsed());
        }
        let (p10, p50, p90) = spread(page);
        let (a10, a50, a90) = spread(api);
        let (b10, b50, b90) = spread(bare);
        println!("{name} (last run: {hits} hits)");
        println!(
            "  search page, HTML to the last byte: p50 {p50:.1} ms (p10 {p10:.1}, p90 {p90:.1})"
        );
        println!(
            "  JSON API, same work:                p50 {a50:.1} ms (p10 {a10:.1}, p90 {a90:.1})"
        );
        println!(
            "  baseline, in process, no HTTP:      p50 {b50:.1} ms (p10 {b10:.1}, p90 {b90:.1})"
        );
    }

    // 3. In Chromium, when playwright-core is there.
    let modules = std::env::var_os("RELIVE_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/relive-node")
        })
        .join("node_modules");
    if !modules.join("playwright-core").exists() || !Path::new("/usr/bin/chromium").exists() {
        println!("browser: skipped (no playwright-core in {} or no /usr/bin/chromium; ./scripts/test installs both)", modules.display());
        return;
    }
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/web_browser.js"))
        .env("NODE_PATH", &modules)
        .env("RELIVE_URL", &url)
        .env("RELIVE_TOKEN", &read)
        .env("RELIVE_URLS", serde_json::to_string(&browser_urls).unwrap())
        .env("RELIVE_RUNS", runs.min(30).to_string())
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (k, (name, _)) in queries.iter().enumerate() {
        // Runs without the figure (no paint entry within 2 s) are counted,
        // not dropped silently.
        let get = |field: &str| -> (Vec<Duration>, usize) {
            let all = timings[k][field].as_array().unwrap();
            let got: Vec<Duration> = all
                .iter()
                .filter_map(|v| v.as_f64())
                .map(|v| Duration::from_secs_f64(v / 1000.0))
                .collect();
            let missing = all.len() - got.len();
            (got, missing)
        };
        let (dcl, _) = get("dcl");
        let (fcp, no_paint) = get("fcp");
        let (d10, d50, d90) = spread(dcl);
        let (f10, f50, f90) = spread(fcp);
        println!("{name}, Chromium:");
        println!("  navigation → DOMContentLoaded: p50 {d50:.1} ms (p10 {d10:.1}, p90 {d90:.1})");
        println!(
            "  navigation → first contentful paint: p50 {f50:.1} ms (p10 {f10:.1}, p90 {f90:.1}; {no_paint} runs without a paint entry)"
        );
    }
}
