//! ingest's integration tests: the write-ahead log on disk, and the
//! collector's receivers over real loopback TCP/UDP with real clients
//! where one is installed (`logger`).

mod collector;
mod indexed;

pub use indexed::Indexed;

use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `f` until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Every event in the index under `data`, as JSON.
pub fn indexed(data: &Path) -> Vec<serde_json::Value> {
    let index = index::EventIndex::open(&data.join("index")).expect("index opens");
    let hits = index
        .search(&index::SearchRequest {
            limit: 10_000_000,
            ..index::SearchRequest::new("*")
        })
        .expect("search");
    hits.hits
        .iter()
        .map(|h| serde_json::from_str(&h.json).expect("stored JSON"))
        .collect()
}

/// How many events the index under `data` holds.
pub fn indexed_count(data: &Path) -> usize {
    index::EventIndex::open(&data.join("index")).map_or(0, |index| index.len() as usize)
}
