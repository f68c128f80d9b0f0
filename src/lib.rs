//! The `relive` package's library half: the wiring every entry point
//! shares (the binary's commands, the benchmarks, the end-to-end tests,
//! later the HTTP API and the demo). Domain logic lives in the workspace
//! crates; this only connects them.
#![deny(missing_docs)]

pub mod demo;
pub mod display;
pub mod http;
pub mod stats;
pub mod topology;

use std::path::PathBuf;
use std::sync::Arc;

use correlate::{Knowledge, RuleSet};

/// The shipped rules plus the rule folders given (`--rules`), and the
/// shipped playbooks; the error names the file and line.
pub fn load_rules(
    extra: &[PathBuf],
) -> Result<(Arc<RuleSet>, Arc<Knowledge>), correlate::RuleError> {
    let rules = correlate::shipped::rules(extra)?;
    let kb = correlate::shipped::knowledge()?;
    Ok((Arc::new(rules), Arc::new(kb)))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
