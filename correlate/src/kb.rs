//! The knowledge base: one playbook file per root cause (`playbooks/<slug>.toml`)
//! with the explanation, the checks and the fix steps an incident carries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RuleError;

/// A check or fix step. Commands hold `{vm_name}`-style placeholders that the
/// remediation engine fills with quoted values, never with raw log text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step does.
    pub title: String,
    /// PowerShell command, empty for a manual step.
    #[serde(default)]
    pub command: String,
    /// auto, approval or downtime (fix steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// What the step is on a relive migration host (an operation of the
    /// remediation engine's host executor, e.g. `preflight`,
    /// `enable-migration`); absent: no host operation does it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relive: Option<String>,
    /// For a check: a regular expression its output matches when all is
    /// well (the cause is not there, or no longer). A check with one judges
    /// on every executor; one without only reports to a human where no
    /// host operation does it (PowerShell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_if: Option<String>,
}

/// One playbook file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Root-cause slug.
    pub id: String,
    /// Section of hyperv-kb.md.
    #[serde(default)]
    pub fm: String,
    /// Short title.
    pub title: String,
    /// One sentence with placeholders.
    pub summary: String,
    /// A paragraph for `relive explain`.
    pub explanation: String,
    /// auto, approval or downtime.
    pub fix_class: String,
    /// auto, other-node, after-fix or never.
    pub retry: String,
    /// Checks.
    #[serde(default)]
    pub confirm: Vec<Step>,
    /// Fix steps.
    #[serde(default)]
    pub fix: Vec<Step>,
    /// Causes the same events can mean, and what settles which it is.
    #[serde(default)]
    pub lookalike: Vec<Lookalike>,
}

/// A cause whose events look the same as this one's (hyperv-kb.md names
/// the pairs): Windows logs nothing that tells them apart, so the incident
/// says which fact settles it, and the playbook's first check reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookalike {
    /// The other root cause.
    pub cause: String,
    /// The fact that tells them apart and how each value reads (with
    /// placeholders, filled for display).
    pub settle: String,
}

/// Every playbook by id.
#[derive(Debug, Clone, Default)]
pub struct Knowledge {
    playbooks: HashMap<String, Playbook>,
}

const PLACEHOLDERS: &[&str] = &[
    "vm_name",
    "vm_id",
    "source_host",
    "destination_host",
    "cluster",
];

impl Knowledge {
    /// Builds the knowledge base from (path, TOML text) pairs.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Knowledge, RuleError> {
        let mut playbooks = HashMap::new();
        for (path, text) in sources {
            let playbook: Playbook = toml::from_str(text).map_err(|e| RuleError {
                path: path.to_path_buf(),
                line: e.span().map_or(0, |s| {
                    text[..s.start.min(text.len())].matches('\n').count() + 1
                }),
                reason: e.message().to_string(),
            })?;
            for step in playbook.confirm.iter().chain(&playbook.fix) {
                check_placeholders(path, &step.command)?;
                if let Some(re) = &step.healthy_if {
                    if let Err(e) = regex::Regex::new(re) {
                        return Err(RuleError {
                            path: path.to_path_buf(),
                            line: 0,
                            reason: format!("healthy_if of {:?}: {e}", step.title),
                        });
                    }
                }
            }
            check_placeholders(path, &playbook.summary)?;
            for l in &playbook.lookalike {
                check_placeholders(path, &l.settle)?;
            }
            if !playbook.lookalike.is_empty() && playbook.confirm.is_empty() {
                return Err(RuleError {
                    path: path.to_path_buf(),
                    line: 0,
                    reason: "a playbook with a lookalike needs a first check that settles it"
                        .into(),
                });
            }
            playbooks.insert(playbook.id.clone(), playbook);
        }
        Ok(Knowledge { playbooks })
    }

    /// Loads every `*.toml` in the folders given.
    pub fn load(dirs: &[PathBuf]) -> Result<Knowledge, RuleError> {
        let mut sources = Vec::new();
        for dir in dirs {
            let entries = std::fs::read_dir(dir).map_err(|e| RuleError {
                path: dir.clone(),
                line: 0,
                reason: format!("cannot list: {e}"),
            })?;
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension().and_then(|e| e.to_str()) == Some("toml") {
                    let text = std::fs::read_to_string(&p).map_err(|e| RuleError {
                        path: p.clone(),
                        line: 0,
                        reason: format!("cannot read: {e}"),
                    })?;
                    sources.push((p, text));
                }
            }
        }
        sources.sort();
        Knowledge::from_sources(sources.iter().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// The playbook for a root cause.
    pub fn get(&self, id: &str) -> Option<&Playbook> {
        self.playbooks.get(id)
    }

    /// Every playbook id (= root-cause slug), in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.playbooks.keys().map(String::as_str)
    }

    /// Number of playbooks.
    pub fn len(&self) -> usize {
        self.playbooks.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.playbooks.is_empty()
    }
}

fn check_placeholders(path: &Path, text: &str) -> Result<(), RuleError> {
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if is_name && !PLACEHOLDERS.contains(&name) {
            return Err(RuleError {
                path: path.to_path_buf(),
                line: 0,
                reason: format!(
                    "unknown placeholder {{{name}}} (allowed: {})",
                    PLACEHOLDERS.join(", ")
                ),
            });
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Fills the placeholders of a summary with plain values (for display only:
/// the result is text, never a command to run).
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}
