//! Integration tests of the correlation engine: shipped rules, every scenario
//! in `samples/`, streaming properties (interleaving, lateness, duplicates,
//! resolution) and rule validation.

mod changes;
mod invariant;
mod lookalikes;
mod rules;
mod scenarios;
mod streaming;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use correlate::{Knowledge, RuleSet};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn shipped() -> (Arc<RuleSet>, Arc<Knowledge>) {
    let rules = correlate::shipped::rules(&[]).expect("shipped rules load");
    let kb = correlate::shipped::knowledge().expect("shipped playbooks load");
    (Arc::new(rules), Arc::new(kb))
}
