//! Inhibition: a firing alert that matches a rule's source mutes the alerts
//! that match its target and share the `equal` labels, when the target's
//! first failure lies within the rule's window of the source's failures
//! (what the source explains). An alert never mutes itself.

use std::time::Duration;

use super::config::{duration, InhibitConfig};
use super::matcher::{all_match, Matcher};
use super::{Alert, AlertState, ConfigError};

/// A built `[[alerts.inhibit]]` rule.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// What the muting alert matches.
    pub source: Vec<Matcher>,
    /// What the muted alert matches.
    pub target: Vec<Matcher>,
    /// Labels equal on both.
    pub equal: Vec<String>,
    /// Time window around the source's failures.
    pub window: Duration,
}

impl InhibitRule {
    /// Checks a rule from the config.
    pub fn build(config: &InhibitConfig) -> Result<InhibitRule, ConfigError> {
        Ok(InhibitRule {
            source: config.source_matchers.clone(),
            target: config.target_matchers.clone(),
            equal: config.equal.clone(),
            window: duration("window", &config.window)?,
        })
    }

    /// The default: a cluster-wide cause mutes the per-VM alerts of its
    /// cluster within 10 minutes.
    pub fn defaults() -> Vec<InhibitRule> {
        vec![InhibitRule {
            source: vec!["scope=\"cluster\"".parse().expect("a valid matcher")],
            target: vec!["scope=\"vm\"".parse().expect("a valid matcher")],
            equal: vec!["cluster".into()],
            window: Duration::from_secs(600),
        }]
    }

    fn mutes(&self, source: &Alert, target: &Alert) -> bool {
        if source.fingerprint == target.fingerprint
            || source.state != AlertState::Firing
            || !all_match(&self.source, &source.labels)
            || !all_match(&self.target, &target.labels)
            || !self
                .equal
                .iter()
                .all(|l| source.label(l) == target.label(l))
        {
            return false;
        }
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        let t = target.incident.first_seen;
        t >= source.incident.first_seen - window && t <= source.incident.last_seen + window
    }
}

/// Which firing alert (fingerprint) mutes `target`, if any.
pub fn muted_by<'a>(
    rules: &[InhibitRule],
    target: &Alert,
    firing: impl Iterator<Item = &'a Alert> + Clone,
) -> Option<&'a str> {
    rules.iter().find_map(|rule| {
        firing
            .clone()
            .find(|source| rule.mutes(source, target))
            .map(|source| source.fingerprint.as_str())
    })
}
