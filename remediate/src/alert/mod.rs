//! Alerting, laid out like Prometheus Alertmanager's packages: an incident
//! change becomes an [`Alert`] (labels + the incident); the route tree
//! ([`route`]) puts it into aggregation groups with `group_wait`,
//! `group_interval` and `repeat_interval` ([`dispatch`]); silences
//! ([`silence`]) and inhibition ([`inhibit`]) mute it; the notification log
//! and outbox ([`state`]) decide whether a group's state was already told
//! to a receiver and keep what is being sent durable; receivers
//! ([`email`], [`webhook`], [`alertmanager`]) deliver a [`Notification`]
//! rendered by [`render`]. Every decision is one JSON line in
//! `--data/alerts/notifications.jsonl` ([`journal`]).
//!
//! Text from logs is data everywhere here: headers are built by lettre from
//! values stripped of control characters, HTML is escaped, Slack and Teams
//! markup is escaped, and JSON is serialized, never concatenated.

pub mod alertmanager;
pub mod config;
pub mod dispatch;
pub mod email;
mod error;
pub mod escalate;
pub mod inhibit;
pub mod journal;
pub mod matcher;
pub mod render;
pub mod route;
pub mod silence;
pub mod state;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use correlate::{Incident, Status};
use serde::{Deserialize, Serialize};

pub use config::AlertsConfig;
pub use dispatch::{Alerter, AlerterStats, Notifier, StartError};
pub use error::{ConfigError, NotifyError, StateError};
pub use state::Notification;

/// Label names and values, sorted by name (as Alertmanager keeps them).
pub type Labels = BTreeMap<String, String>;

/// The label every relive alert carries as its name.
pub const ALERTNAME: &str = "LiveMigrationFailed";

/// Label names relive sets.
pub mod label {
    /// Always [`super::ALERTNAME`].
    pub const ALERTNAME: &str = "alertname";
    /// Root-cause slug (`unknown` at worst).
    pub const ROOT_CAUSE: &str = "root_cause";
    /// auto, approval or downtime.
    pub const FIX_CLASS: &str = "fix_class";
    /// critical or warning.
    pub const SEVERITY: &str = "severity";
    /// `cluster` for a cause that fails every VM of a cluster, `vm` otherwise.
    pub const SCOPE: &str = "scope";
    /// Cluster name from `[alerts] clusters` (empty when the host is in none).
    pub const CLUSTER: &str = "cluster";
    /// VM name (or id when the name is unknown).
    pub const VM: &str = "vm";
    /// Source host (short name).
    pub const SOURCE_HOST: &str = "source_host";
    /// Destination host (short name).
    pub const DESTINATION_HOST: &str = "destination_host";
    /// The incident id.
    pub const INCIDENT: &str = "incident";
}

/// Causes that fail every VM a cluster tries to move, not one VM: their
/// alerts carry `scope="cluster"`, and by default they inhibit the per-VM
/// alerts of other causes in the same cluster and time window.
pub const CLUSTER_WIDE_CAUSES: &[&str] = &[
    "shared-storage-path-missing",
    "failover-threshold",
    "migration-network",
    "storage-unreachable",
];

/// Firing until the incident is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The incident is open.
    Firing,
    /// A later migration of the VM succeeded.
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert per incident: its labels (what routes, groups, silences and
/// inhibits it) and the incident itself (what the message says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The incident id: stable, so every change of an incident is the same alert.
    pub fingerprint: String,
    /// Labels.
    pub labels: Labels,
    /// Firing or resolved.
    pub state: AlertState,
    /// The cause's short title (the playbook's), for subjects.
    pub cause_title: String,
    /// When the correlator last changed it (wall clock).
    pub updated_at: DateTime<Utc>,
    /// The cause it had before late evidence changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_cause: Option<String>,
    /// Set on the second message of an incident whose remediation did not
    /// work: what was tried and why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<String>,
    /// Set on a request for approval: the action and its signed links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalAsk>,
    /// The incident as it is now.
    pub incident: Incident,
}

/// An action waiting for approval, with the links that decide it (signed
/// for the receiver they go to; see [`crate::link`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalAsk {
    /// What the action does.
    pub action: String,
    /// Its key (`relive approve KEY` works too).
    pub key: String,
    /// Its class (`approval` or `downtime`).
    pub class: String,
    /// Opens a page that approves it with one press.
    pub approve_url: String,
    /// The same for rejecting it.
    pub reject_url: String,
    /// When the links and the request expire.
    pub expires: DateTime<Utc>,
}

/// What an alert needs beyond the incident: which cluster each host is in
/// and the playbook titles.
#[derive(Debug, Clone, Default)]
pub struct AlertContext {
    /// Short host name, lower case → cluster name.
    pub clusters: HashMap<String, String>,
    /// Root cause → playbook title.
    pub titles: HashMap<String, String>,
}

impl AlertContext {
    /// From `[alerts] clusters` and the knowledge base.
    pub fn new(
        clusters: &BTreeMap<String, Vec<String>>,
        knowledge: Option<&correlate::Knowledge>,
    ) -> AlertContext {
        let mut by_host = HashMap::new();
        for (cluster, hosts) in clusters {
            for host in hosts {
                by_host.insert(
                    parsers::event::short_host(host).to_ascii_lowercase(),
                    cluster.clone(),
                );
            }
        }
        let mut titles = HashMap::new();
        if let Some(knowledge) = knowledge {
            for id in knowledge.ids() {
                if let Some(playbook) = knowledge.get(id) {
                    titles.insert(id.to_string(), playbook.title.clone());
                }
            }
        }
        AlertContext {
            clusters: by_host,
            titles,
        }
    }

    fn cluster_of(&self, incident: &Incident) -> String {
        [&incident.source_host, &incident.destination_host]
            .into_iter()
            .flatten()
            .find_map(|h| self.clusters.get(&h.to_ascii_lowercase()).cloned())
            .unwrap_or_default()
    }
}

impl Alert {
    /// The alert for an incident as it is now.
    pub fn from_incident(
        incident: Incident,
        updated_at: DateTime<Utc>,
        context: &AlertContext,
    ) -> Alert {
        let cluster_wide = CLUSTER_WIDE_CAUSES.contains(&incident.root_cause.as_str());
        let fix_class = incident.remediation.fix_class.clone();
        let severity =
            if cluster_wide || fix_class == "downtime" || incident.remediation.retry == "never" {
                "critical"
            } else {
                "warning"
            };
        let mut labels = Labels::new();
        let mut set = |name: &str, value: &str| {
            labels.insert(name.to_string(), display::clean_label(value));
        };
        set(label::ALERTNAME, ALERTNAME);
        set(label::ROOT_CAUSE, &incident.root_cause);
        set(label::FIX_CLASS, &fix_class);
        set(label::SEVERITY, severity);
        set(label::SCOPE, if cluster_wide { "cluster" } else { "vm" });
        set(label::CLUSTER, &context.cluster_of(&incident));
        set(
            label::VM,
            incident
                .vm_name
                .as_deref()
                .or(incident.vm_id.as_deref())
                .unwrap_or(""),
        );
        set(
            label::SOURCE_HOST,
            incident.source_host.as_deref().unwrap_or(""),
        );
        set(
            label::DESTINATION_HOST,
            incident.destination_host.as_deref().unwrap_or(""),
        );
        set(label::INCIDENT, &incident.id);
        let cause_title = context
            .titles
            .get(&incident.root_cause)
            .cloned()
            .unwrap_or_else(|| incident.root_cause.clone());
        Alert {
            fingerprint: incident.id.clone(),
            labels,
            state: match incident.status {
                Status::Open => AlertState::Firing,
                Status::Resolved => AlertState::Resolved,
            },
            cause_title,
            updated_at,
            previous_cause: None,
            escalation: None,
            approval: None,
            incident,
        }
    }

    /// What a receiver is told again when it changes: the state, the cause
    /// and the number of attempts (more evidence alone is not news).
    pub fn version(&self) -> String {
        format!(
            "{}:{}:{}",
            self.state.as_str(),
            self.incident.root_cause,
            self.incident.count
        )
    }

    /// A label's value, `""` when absent (Alertmanager's convention).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The VM as a person names it.
    pub fn vm(&self) -> &str {
        let vm = self.label(label::VM);
        if vm.is_empty() {
            "an unnamed VM"
        } else {
            vm
        }
    }
}

/// Making log text safe for one-line places (labels, subjects, headers).
pub mod display {
    /// Control characters (CR, LF, ESC, …) become spaces, runs of spaces
    /// collapse, and the result is at most 200 characters.
    pub fn clean_label(text: &str) -> String {
        one_line(text, 200)
    }

    /// `text` on one line without control characters, cut at `max` chars
    /// (with `…` when cut).
    pub fn one_line(text: &str, max: usize) -> String {
        let mut out = String::with_capacity(text.len().min(max + 4));
        let mut space = false;
        let mut n = 0;
        for c in text.chars() {
            let c = if c.is_control() || is_bidi_control(c) {
                ' '
            } else {
                c
            };
            if c == ' ' {
                if space || out.is_empty() {
                    continue;
                }
                space = true;
            } else {
                space = false;
            }
            if n == max {
                out.push('…');
                return out.trim_end().to_string();
            }
            out.push(c);
            n += 1;
        }
        out.trim_end().to_string()
    }

    /// Bidirectional overrides can make displayed text lie about its order.
    fn is_bidi_control(c: char) -> bool {
        matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn one_line_strips_control_characters() {
            assert_eq!(
                super::one_line("WEB\r\nBcc: evil@x\u{1b}[31m", 200),
                "WEB Bcc: evil@x [31m"
            );
            assert_eq!(super::one_line("abcdef", 3), "abc…");
            assert_eq!(super::one_line("  a\t\tb  ", 10), "a b");
        }
    }
}
