//! `remediate` will own what happens after an incident is named: alert routing
//! (SMTP through lettre, webhooks), `Playbook`s per root cause, executors that
//! are suggest-only unless configured, approval of risky actions, and the
//! append-only audit log.
//!
//! Nothing is implemented yet; see the remediation issue.
#![deny(missing_docs)]
