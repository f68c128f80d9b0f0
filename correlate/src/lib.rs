//! `correlate` will own the step from events to named root causes: loading and
//! validating Sigma-style rules from `rules/`, the streaming chain matcher with
//! bounded lateness across hosts (`Correlator`), and `Incident`s with their
//! evidence, confidence, alternatives and remediation.
//!
//! Nothing is implemented yet; see the correlation-engine issue.
#![deny(missing_docs)]
