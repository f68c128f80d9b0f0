//! `remediate` owns what happens after an incident is named. Its first half
//! is alerting ([`alert`]): every incident change becomes an [`alert::Alert`],
//! routed through an Alertmanager-style tree to receivers (email through
//! lettre, webhooks in the Alertmanager, Slack and Teams shapes, an existing
//! Alertmanager, and always a JSON-lines log), grouped, inhibited, silenced,
//! and delivered through a durable outbox so a restart sends nothing twice.
//!
//! The second half repairs: playbooks become executable plans ([`plan`]:
//! typed actions with their class, target, values as data and idempotency
//! keys), run by an [`executor`] (relive migration hosts through their
//! control API, or Hyper-V through [`powershell`]) under the [`engine`],
//! which follows the change log, honours the mode of [`config`], waits for
//! [`approval`]s, retries by the cause's policy, verifies the retry from
//! the events and writes every decision to the append-only [`audit`] log.
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
pub mod approval;
pub mod audit;
pub mod config;
pub mod engine;
pub mod executor;
pub mod link;
pub mod plan;
pub mod powershell;
