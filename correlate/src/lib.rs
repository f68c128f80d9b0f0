//! `correlate` turns events into named root causes.
//!
//! - [`rules`]: Sigma detection rules and Sigma correlation rules with a
//!   `relive:` block (root cause, confidence, priority, playbook), loaded from
//!   `rules/` and any folder the user adds; bad rules are refused with file,
//!   line and reason; an event-id prefilter keeps the cost flat in the rule count.
//! - [`engine`]: the streaming matcher ([`Correlator`]) with bounded lateness,
//!   VM grouping (id, then name, then host-level evidence), most-specific cause
//!   selection, folding of repeated failures and resolution by success events.
//! - [`stage`]: the correlator as a pipeline stage ([`CorrelatorStage`]):
//!   committed events in, a clock as well as events driving decisions,
//!   [`IncidentChange`]s out to the durable change log ([`changes`]) that
//!   the incident store and every other consumer follow at their own pace.
//! - [`incident`]: the [`Incident`] model and its store under `--data`.
//! - [`kb`]: playbooks (`playbooks/<slug>.toml`): explanation, checks, fix steps.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

pub mod changes;
pub mod detection;
pub mod engine;
pub mod incident;
pub mod kb;
pub mod rules;
pub mod stage;
pub mod yaml;

pub use changes::{ChangeKind, ChangeLog, IncidentChange, Subscription};
pub use engine::{Config, Correlator, Stats};
pub use incident::{
    find_in, Evidence, Incident, IncidentFilter, IncidentStore, LookalikeNote, Remediation, Status,
};
pub use kb::{Knowledge, Lookalike, Playbook};
pub use rules::RuleSet;
pub use stage::{Clocking, CorrelatorStage};

/// The rules and playbooks compiled into the binary.
pub mod shipped {
    include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

    use std::path::{Path, PathBuf};

    /// The shipped rules, plus any extra rule folders.
    pub fn rules(extra: &[PathBuf]) -> Result<crate::RuleSet, crate::RuleError> {
        let mut sources: Vec<(PathBuf, String)> = RULES
            .iter()
            .map(|(name, text)| (Path::new("rules").join(name), text.to_string()))
            .collect();
        for dir in extra {
            let mut files = Vec::new();
            crate::rules::collect(dir, &mut files)?;
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(|e| crate::RuleError {
                    path: file.clone(),
                    line: 0,
                    reason: format!("cannot read: {e}"),
                })?;
                sources.push((file, text));
            }
        }
        crate::RuleSet::from_sources(sources.iter().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// The shipped playbooks.
    pub fn knowledge() -> Result<crate::Knowledge, crate::RuleError> {
        let sources: Vec<(PathBuf, &str)> = PLAYBOOKS
            .iter()
            .map(|(name, text)| (Path::new("playbooks").join(name), *text))
            .collect();
        crate::Knowledge::from_sources(sources.iter().map(|(p, t)| (p.as_path(), *t)))
    }
}

/// A rule or playbook that cannot be used, with where and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}:{line}: {reason}", path.display())]
pub struct RuleError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 when the whole file is at fault).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// The incident store cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Committed events could not be read back for a warm-up.
    #[error("{0}")]
    Lookup(String),
    /// The incident change log failed.
    #[error(transparent)]
    Log(#[from] pipeline::WalError),
    /// The file is not valid incident JSON.
    #[error("{}: not an incident file: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        reason: String,
    },
}

/// Correlates a finished batch of events (any order) and returns the final
/// incidents, one per id.
pub fn correlate_all(
    rules: Arc<RuleSet>,
    kb: Arc<Knowledge>,
    cfg: Config,
    events: impl IntoIterator<Item = parsers::Event>,
) -> Vec<Incident> {
    let mut events: Vec<parsers::Event> = events.into_iter().collect();
    events.sort_by_key(|e| e.timestamp);
    let mut engine = Correlator::new(rules, kb, cfg);
    let mut out: Vec<Incident> = Vec::new();
    for event in events {
        engine.push(event);
    }
    engine.flush();
    for incident in engine.drain() {
        match out.iter_mut().find(|i| i.id == incident.id) {
            Some(slot) => *slot = incident,
            None => out.push(incident),
        }
    }
    out.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then(a.id.cmp(&b.id)));
    out
}
