//! Pushing to an existing Alertmanager (`POST /api/v2/alerts`), for shops
//! that route everything through one. relive's alerts arrive with their
//! labels and annotations; firing ones are posted again every `resend`
//! (Alertmanager resolves an alert that is not refreshed within its
//! `resolve_timeout`, as it expects of Prometheus), resolved ones with
//! their `endsAt`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::config::{duration, AlertmanagerConfig};
use super::dispatch::Notifier;
use super::state::Notification;
use super::webhook::{annotations, client, labels_json, post};
use super::{render, Alert, AlertState, ConfigError, NotifyError};

/// The Alertmanager receiver.
pub struct Alertmanager {
    client: reqwest::blocking::Client,
    url: String,
    bearer: Option<String>,
    resend: Duration,
    /// Firing alerts last posted, by group, refreshed every `resend`.
    firing: BTreeMap<String, Vec<Alert>>,
    external_url: String,
    refreshed: Instant,
}

impl Alertmanager {
    /// Builds the client.
    pub fn new(receiver: &str, config: &AlertmanagerConfig) -> Result<Alertmanager, ConfigError> {
        Ok(Alertmanager {
            client: client(receiver, &config.timeout, config.ca_file.as_deref())?,
            url: format!("{}/api/v2/alerts", config.url.trim_end_matches('/')),
            bearer: config.bearer_token.clone(),
            resend: duration("resend", &config.resend)?,
            firing: BTreeMap::new(),
            external_url: String::new(),
            refreshed: Instant::now(),
        })
    }

    fn body(&self, alerts: &[&Alert]) -> Value {
        let now = chrono::Utc::now();
        // A firing alert "ends" a few resend periods from now unless posted again.
        let lease =
            chrono::Duration::from_std(self.resend * 4).unwrap_or(chrono::Duration::hours(1));
        Value::Array(
            alerts
                .iter()
                .map(|a| {
                    let ends = match a.state {
                        AlertState::Firing => now + lease,
                        AlertState::Resolved => a.incident.resolved_at.unwrap_or(a.updated_at),
                    };
                    json!({
                        "labels": labels_json(a),
                        "annotations": annotations(a),
                        "startsAt": a.incident.first_seen.to_rfc3339(),
                        "endsAt": ends.to_rfc3339(),
                        "generatorURL": render::incident_url(&self.external_url, &a.fingerprint),
                    })
                })
                .collect(),
        )
    }
}

impl Notifier for Alertmanager {
    fn send(&mut self, n: &Notification) -> Result<(), NotifyError> {
        self.external_url = n.external_url.clone();
        let alerts: Vec<&Alert> = n.firing.iter().chain(&n.resolved).collect();
        post(
            &self.client,
            &self.url,
            self.bearer.as_deref(),
            &self.body(&alerts),
        )?;
        if n.firing.is_empty() {
            self.firing.remove(&n.group_key);
        } else {
            self.firing.insert(n.group_key.clone(), n.firing.clone());
        }
        Ok(())
    }

    fn tick(&mut self) {
        if self.firing.is_empty() || self.refreshed.elapsed() < self.resend {
            return;
        }
        self.refreshed = Instant::now();
        let alerts: Vec<&Alert> = self.firing.values().flatten().collect();
        if let Err(e) = post(
            &self.client,
            &self.url,
            self.bearer.as_deref(),
            &self.body(&alerts),
        ) {
            tracing::warn!(url = %self.url, error = %e, "cannot refresh the alerts in Alertmanager");
        }
    }
}
