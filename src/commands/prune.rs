//! `relive prune`: delete indexed events older than a cut-off.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::Utc;

use crate::cli::PruneArgs;
use parsers::time::parse_when;

/// Runs `relive prune`.
pub fn run(args: PruneArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let cutoff = parse_when(&args.older_than, Utc::now())?;
    let index_dir = data.join("index");
    if !index_dir.join("meta.json").exists() {
        bail!("no index in {} yet: nothing to prune", data.display());
    }
    let mut index = index::EventIndex::open(&index_dir).context("cannot open the index")?;
    let removed = index.prune(cutoff).context("cannot prune the index")?;
    println!(
        "removed {removed} events older than {}; {} remain",
        cutoff.to_rfc3339(),
        index.len()
    );
    Ok(ExitCode::SUCCESS)
}
