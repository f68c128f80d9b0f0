//! Incidents: what the engine concludes, and where they are kept on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::kb::Step;
use crate::StoreError;

/// Open until a successful migration of the VM follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No success seen since the failure.
    Open,
    /// A later migration of the VM succeeded.
    Resolved,
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Status, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(Status::Open),
            "resolved" => Ok(Status::Resolved),
            other => Err(format!("a status is open or resolved, not `{other}`")),
        }
    }
}

/// Which incidents a listing shows (`relive incidents`, the HTTP API):
/// every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Open or resolved.
    pub status: Option<Status>,
    /// The VM's name or id (any case).
    pub vm: Option<String>,
    /// The source or destination host (short or full name, any case).
    pub host: Option<String>,
    /// The root cause name.
    pub root_cause: Option<String>,
    /// Last seen at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

impl IncidentFilter {
    /// Whether `incident` is shown.
    pub fn matches(&self, incident: &Incident) -> bool {
        let same =
            |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
        self.status.is_none_or(|s| incident.status == s)
            && self
                .vm
                .as_deref()
                .is_none_or(|vm| same(&incident.vm_name, vm) || same(&incident.vm_id, vm))
            && self.host.as_deref().is_none_or(|host| {
                let short = parsers::event::short_host(host);
                same(&incident.source_host, short) || same(&incident.destination_host, short)
            })
            && self
                .root_cause
                .as_deref()
                .is_none_or(|c| incident.root_cause == c)
            && self.since.is_none_or(|t| incident.last_seen >= t)
    }
}

/// One event that supports an incident, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// UTC time of the event.
    pub timestamp: DateTime<Utc>,
    /// Host as logged.
    pub host: String,
    /// Channel.
    pub channel: String,
    /// Provider.
    pub provider: String,
    /// Windows event id.
    pub event_id: u32,
    /// Level name.
    pub level: String,
    /// Record id, when the format has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<u64>,
    /// The HRESULT the event names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hresult: Option<String>,
    /// The message (at most 2,000 characters).
    pub message: String,
    /// Name of the rule that matched it.
    pub rule: String,
    /// Origin: file path and byte offset.
    pub origin: EvidenceOrigin,
}

impl Evidence {
    /// The message's lines, the ones that say why first: a multi-line
    /// failure (a 21502 body) opens with headlines ("Live migration of 'X'
    /// failed.", "... failed at migration source 'Y'") that every failure
    /// shares; the line with the event's HRESULT, then any other line, is
    /// the one that names the cause ("... does not exist on the destination
    /// node", "512 vs 1024 MB"). Blank lines are left out; nothing is cut.
    pub fn lines_cause_first(&self) -> Vec<&str> {
        let lines: Vec<&str> = self
            .message
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.len() < 2 {
            return lines;
        }
        let headline = |line: &str| {
            let lower = line.to_ascii_lowercase();
            (lower.starts_with("live migration of ") && lower.trim_end().ends_with("failed."))
                || (lower.starts_with("virtual machine migration operation for ")
                    && lower.contains(" failed at migration "))
        };
        let code = self.hresult.as_deref().map(str::to_ascii_lowercase);
        let names_code = |line: &str| {
            code.as_deref()
                .is_some_and(|c| line.to_ascii_lowercase().contains(c))
        };
        let mut ordered: Vec<&str> = lines.iter().copied().filter(|l| names_code(l)).collect();
        ordered.extend(
            lines
                .iter()
                .copied()
                .filter(|l| !names_code(l) && !headline(l)),
        );
        ordered.extend(
            lines
                .iter()
                .copied()
                .filter(|l| !names_code(l) && headline(l)),
        );
        ordered
    }
}

/// `log.file.path` and `log.offset` of an evidence event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceOrigin {
    /// File the event was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Arc<str>>,
    /// Byte offset of the record in that file.
    pub offset: u64,
}

/// A cause that also matched, with less evidence or a lower priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// Root-cause slug.
    pub root_cause: String,
    /// Lower than the incident's.
    pub confidence: f64,
    /// Names of the rules it matched.
    pub matched: Vec<String>,
}

/// What to do about it: the playbook and its steps from the knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Remediation {
    /// Playbook id (= root-cause slug).
    pub playbook: String,
    /// auto, approval or downtime.
    pub fix_class: String,
    /// auto, other-node, after-fix or never.
    pub retry: String,
    /// One sentence for the alert.
    pub summary: String,
    /// Checks that confirm the cause.
    pub confirm: Vec<Step>,
    /// Fix steps, in order.
    pub steps: Vec<Step>,
}

/// A failed live migration with its root cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id: the same failure always gets the same id.
    pub id: String,
    /// Root-cause slug, or `unknown`.
    pub root_cause: String,
    /// One line for a human.
    pub title: String,
    /// VM name.
    pub vm_name: Option<String>,
    /// VM id (upper-case GUID).
    pub vm_id: Option<String>,
    /// Host the migration left from (short name).
    pub source_host: Option<String>,
    /// Host it was going to (short name).
    pub destination_host: Option<String>,
    /// Earliest evidence.
    pub first_seen: DateTime<Utc>,
    /// Latest evidence.
    pub last_seen: DateTime<Utc>,
    /// open or resolved.
    pub status: Status,
    /// When a successful migration closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Failed attempts folded into this incident.
    pub count: u32,
    /// 0..1.
    pub confidence: f64,
    /// Other causes that matched.
    pub alternatives: Vec<Alternative>,
    /// Other VMs that failed with the same root cause within ten minutes
    /// (a cluster-wide cause, such as a missing SharedStoragePath, fails them all).
    /// Exact when the incident was decided and once its attempt retires;
    /// in between, VMs failing later update it at 1, 2, 3, 4 and then each
    /// doubling, so it is at least half the count.
    #[serde(default)]
    pub related_vms: u32,
    /// Supporting events, in time order.
    pub evidence: Vec<Evidence>,
    /// Playbook and steps.
    pub remediation: Remediation,
    /// Notes such as a long blackout on the successful retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Causes the same events could mean, each with the fact that settles
    /// it (the playbook's first check reads it); left out when relive's
    /// host facts in the evidence already settled it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookalikes: Vec<LookalikeNote>,
    /// Evidence events not kept because the list reached its limit
    /// (`[correlate] max_evidence`; failures are kept before the rest).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub evidence_omitted: u64,
}

/// A cause the incident's events could also mean, and what settles it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookalikeNote {
    /// The other root cause.
    pub root_cause: String,
    /// The fact that tells them apart, with the incident's hosts filled in.
    pub settle: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Incidents kept as one JSON file under the data folder, replaced atomically.
#[derive(Debug, Clone)]
pub struct IncidentStore {
    path: PathBuf,
}

impl IncidentStore {
    /// The store in `data_dir/incidents.json`.
    pub fn new(data_dir: &Path) -> IncidentStore {
        IncidentStore {
            path: data_dir.join("incidents.json"),
        }
    }

    /// Every stored incident, newest first.
    pub fn load(&self) -> Result<Vec<Incident>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StoreError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Inserts or replaces incidents by id and writes the file (temp file + rename).
    /// Returns how many ids were new.
    pub fn upsert(&self, incidents: &[Incident]) -> Result<usize, StoreError> {
        let mut all = self.load()?;
        let mut added = 0;
        for incident in incidents {
            match all.iter_mut().find(|i| i.id == incident.id) {
                Some(existing) => *existing = incident.clone(),
                None => {
                    all.push(incident.clone());
                    added += 1;
                }
            }
        }
        all.sort_by(|a, b| b.first_seen.cmp(&a.first_seen).then(a.id.cmp(&b.id)));
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&all).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        pipeline::fault::point("during-store-write");
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(added)
    }

    /// The incident with this id, or the only one whose id starts with it.
    pub fn find(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(find_in(&self.load()?, id).cloned())
    }
}

/// The incident with this id, or the only one whose id starts with it.
pub fn find_in<'a>(all: &'a [Incident], id: &str) -> Option<&'a Incident> {
    if let Some(exact) = all.iter().find(|i| i.id == id) {
        return Some(exact);
    }
    let mut prefixed = all.iter().filter(|i| i.id.starts_with(id));
    match (prefixed.next(), prefixed.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(message: &str, hresult: Option<&str>) -> Evidence {
        Evidence {
            timestamp: DateTime::default(),
            host: "HV01".into(),
            channel: "c".into(),
            provider: "p".into(),
            event_id: 21502,
            level: "error".into(),
            record_id: None,
            hresult: hresult.map(str::to_string),
            message: message.into(),
            rule: "r".into(),
            origin: EvidenceOrigin {
                path: None,
                offset: 0,
            },
        }
    }

    #[test]
    fn the_line_that_says_why_comes_first_and_nothing_is_cut() {
        let long = "x".repeat(500);
        let e = evidence(
            &format!("Live migration of 'Virtual Machine APP1' failed.\n\nVirtual machine migration operation for 'APP1' failed at migration source 'HV01'.\n'APP1' could not initialize memory: 512 vs 1024 MB {long}\nThe operation failed (0x8007000E)."),
            Some("0x8007000E"),
        );
        let lines = e.lines_cause_first();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "The operation failed (0x8007000E).");
        assert!(lines[1].contains("512 vs 1024 MB") && lines[1].ends_with(&long));
        assert!(lines[2].starts_with("Live migration of"));
        assert!(lines[3].contains("failed at migration source"));
        // One line: as it is.
        assert_eq!(evidence("one", None).lines_cause_first(), vec!["one"]);
    }
}
