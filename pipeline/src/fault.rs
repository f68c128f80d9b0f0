//! Named crash points, for tests that prove a restart loses nothing.
//!
//! `RELIVE_FAULT=<point>` makes the process abort (as `kill -9` would stop
//! it: no destructors, no flush) the first time it reaches that point;
//! `RELIVE_FAULT=<point>:<n>` the n-th time. Without the variable a point
//! costs one load of a cached flag. The points are listed where they are
//! hit (`grep fault::point`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Plan {
    point: String,
    nth: u64,
    hits: AtomicU64,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let spec = std::env::var("RELIVE_FAULT").ok()?;
        let (point, nth) = match spec.split_once(':') {
            Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some(Plan {
            point,
            nth: nth.max(1),
            hits: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Aborts the process here if `RELIVE_FAULT` names this point (and this is
/// the hit it counts to).
pub fn point(name: &str) {
    let Some(plan) = plan() else { return };
    if plan.point == name && plan.hits.fetch_add(1, Ordering::AcqRel) + 1 == plan.nth {
        tracing::error!(point = name, "RELIVE_FAULT: aborting here as asked");
        std::process::abort();
    }
}
