//! `remediate` owns what happens after an incident is named. Its first half
//! is alerting ([`alert`]): every incident change becomes an [`alert::Alert`],
//! routed through an Alertmanager-style tree to receivers (email through
//! lettre, webhooks in the Alertmanager, Slack and Teams shapes, an existing
//! Alertmanager, and always a JSON-lines log), grouped, inhibited, silenced,
//! and delivered through a durable outbox so a restart sends nothing twice.
//!
//! The second half turns playbooks into executable plans ([`plan`]: typed
//! actions with their class, target, values as data and idempotency keys);
//! executors, approvals and the append-only audit log are the remediation
//! issue's work still to come.
//!
//! ```
//! use remediate::alert::matcher::Matcher;
//! let m: Matcher = "root_cause=~\"shared-.*\"".parse().unwrap();
//! let mut labels = remediate::alert::Labels::new();
//! labels.insert("root_cause".into(), "shared-storage-path-missing".into());
//! assert!(m.matches(&labels));
//! ```
#![deny(missing_docs)]

pub mod alert;
pub mod audit;
pub mod plan;
