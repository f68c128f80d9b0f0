//! Webhooks: a JSON POST with a timeout, retried by the worker on 429, 5xx
//! and connection errors. Three shapes:
//!
//! - `generic`: Alertmanager's webhook payload, version 4 (so existing
//!   consumers work unchanged), plus a `relive` object with the incidents,
//!   the notification id and its thread;
//! - `slack`: an incoming-webhook message, `text` plus Block Kit `blocks`
//!   (log text only in `plain_text` objects, which Slack never formats);
//! - `teams`: a Teams incoming webhook / Workflows message carrying an
//!   Adaptive Card (log text with its Markdown characters escaped).

use std::time::Duration;

use serde_json::{json, Value};

use super::config::{duration, WebhookConfig, WebhookShape};
use super::dispatch::Notifier;
use super::display::one_line;
use super::render;
use super::state::Notification;
use super::{label, Alert, AlertState, ConfigError, NotifyError};

/// An HTTP client for a receiver: timeout, optional extra CA.
pub fn client(
    receiver: &str,
    timeout: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::blocking::Client, ConfigError> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(duration("timeout", timeout)?)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("relive/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ConfigError::Receiver {
            receiver: receiver.to_string(),
            reason: format!("{}: {e}", path.display()),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| ConfigError::Receiver {
        receiver: receiver.to_string(),
        reason: format!("HTTP client: {e}"),
    })
}

/// POSTs `body` as JSON; sorts the answer into accepted, transient, permanent.
pub fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    bearer: Option<&str>,
    body: &Value,
) -> Result<(), NotifyError> {
    let mut request = client.post(url).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    match request.send() {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let text: String = response
                .text()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            let reason = format!("HTTP {status}: {}", one_line(&text, 300));
            if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
                Err(NotifyError::Transient(reason))
            } else {
                Err(NotifyError::Permanent(reason))
            }
        }
        Err(e) => Err(NotifyError::Transient(format!("{e}"))),
    }
}

/// A webhook receiver.
pub struct Webhook {
    client: reqwest::blocking::Client,
    config: WebhookConfig,
    receiver: String,
}

impl Webhook {
    /// Builds the client.
    pub fn new(receiver: &str, config: &WebhookConfig) -> Result<Webhook, ConfigError> {
        Ok(Webhook {
            client: client(receiver, &config.timeout, config.ca_file.as_deref())?,
            config: config.clone(),
            receiver: receiver.to_string(),
        })
    }
}

impl Notifier for Webhook {
    fn send(&mut self, n: &Notification) -> Result<(), NotifyError> {
        let body = match self.config.shape {
            WebhookShape::Generic => generic(n, &self.receiver),
            WebhookShape::Slack => slack(n),
            WebhookShape::Teams => teams(n),
        };
        post(
            &self.client,
            &self.config.url,
            self.config.bearer_token.as_deref(),
            &body,
        )
    }
}

/// Alertmanager's zero time, its `endsAt` for a firing alert.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The annotations relive gives an alert.
pub fn annotations(alert: &Alert) -> serde_json::Map<String, Value> {
    let i = &alert.incident;
    let mut map = serde_json::Map::new();
    map.insert(
        "summary".into(),
        json!(one_line(
            &format!(
                "{} {}→{}: {}",
                alert.vm(),
                i.source_host.as_deref().unwrap_or("?"),
                i.destination_host.as_deref().unwrap_or("?"),
                alert.cause_title
            ),
            300
        )),
    );
    map.insert(
        "description".into(),
        json!(one_line(&i.remediation.summary, 1000)),
    );
    if let Some(ask) = &alert.approval {
        map.insert("approval_action".into(), json!(one_line(&ask.action, 300)));
        map.insert("approve_url".into(), json!(ask.approve_url));
        map.insert("reject_url".into(), json!(ask.reject_url));
    }
    if let Some(reason) = &alert.escalation {
        map.insert("escalation".into(), json!(one_line(reason, 1000)));
    }
    map.insert("confidence".into(), json!(format!("{:.2}", i.confidence)));
    map.insert("attempts".into(), json!(i.count.to_string()));
    map.insert("first_seen".into(), json!(i.first_seen.to_rfc3339()));
    map.insert(
        "fix".into(),
        json!(i
            .remediation
            .steps
            .iter()
            .map(|s| format!("[{}] {}", s.class.as_deref().unwrap_or("manual"), s.title))
            .collect::<Vec<_>>()
            .join("; ")),
    );
    map
}

fn ends_at(alert: &Alert) -> String {
    match (alert.state, alert.incident.resolved_at) {
        (AlertState::Resolved, Some(t)) => t.to_rfc3339(),
        (AlertState::Resolved, None) => alert.updated_at.to_rfc3339(),
        (AlertState::Firing, _) => ZERO_TIME.into(),
    }
}

fn common_labels(alerts: &[&Alert]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    if let Some(first) = alerts.first() {
        for (k, v) in &first.labels {
            if alerts.iter().all(|a| a.labels.get(k) == Some(v)) {
                out.insert(k.clone(), json!(v));
            }
        }
    }
    out
}

/// The generic shape: Alertmanager webhook version 4 + `relive`.
pub fn generic(n: &Notification, receiver: &str) -> Value {
    let all: Vec<&Alert> = n.firing.iter().chain(&n.resolved).collect();
    let alerts: Vec<Value> = all
        .iter()
        .map(|a| {
            json!({
                "status": a.state.as_str(),
                "labels": a.labels,
                "annotations": annotations(a),
                "startsAt": a.incident.first_seen.to_rfc3339(),
                "endsAt": ends_at(a),
                "generatorURL": render::incident_url(&n.external_url, &a.fingerprint),
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status().as_str(),
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common_labels(&all),
        "commonAnnotations": {},
        "externalURL": n.external_url,
        "alerts": alerts,
        "relive": {
            "notification": n.id,
            "thread": n.thread,
            "sequence": n.sequence,
            "subject": render::subject(n),
            "incidents": all.iter().map(|a| &a.incident).collect::<Vec<_>>(),
            "covers": n.covers,
        },
    })
}

/// Slack escapes `&`, `<` and `>` in text it may format.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The Slack shape: `text` (the notification fallback) and blocks; log
/// text only in `plain_text` objects.
pub fn slack(n: &Notification) -> Value {
    let subject = render::subject(n);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&subject, 150)},
    })];
    for alert in n.firing.iter().chain(&n.resolved) {
        let i = &alert.incident;
        let mut lines = format!(
            "{} {} {} → {} at {} ({} attempt{})\nRoot cause: {} ({}), confidence {:.0}%\n",
            if alert.state == AlertState::Resolved {
                "RESOLVED:"
            } else {
                "Failed:"
            },
            alert.vm(),
            one_line(i.source_host.as_deref().unwrap_or("?"), 64),
            one_line(i.destination_host.as_deref().unwrap_or("?"), 64),
            i.first_seen.format("%Y-%m-%d %H:%M:%S UTC"),
            i.count,
            if i.count == 1 { "" } else { "s" },
            alert.cause_title,
            i.root_cause,
            i.confidence * 100.0,
        );
        for e in i.evidence.iter().take(8) {
            lines.push_str(&format!(
                "{}  {}  {}  {}\n",
                e.timestamp.format("%H:%M:%S%.3f"),
                one_line(parsers::event::short_host(&e.host), 32),
                e.event_id,
                one_line(render::cause_line(e), 100)
            ));
        }
        if let Some(step) = i.remediation.steps.first() {
            lines.push_str(&format!(
                "Fix ({}): {}",
                i.remediation.fix_class, step.title
            ));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "plain_text", "text": cut(&lines, 3000), "emoji": false},
        }));
        blocks.push(json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": format!(
                    "<{}|Open incident {}>",
                    render::incident_url(&n.external_url, &alert.fingerprint),
                    slack_escape(&alert.fingerprint)
                ),
            }],
        }));
    }
    if !n.covers.is_empty() && !n.firing.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "plain_text", "text": cut(&format!(
                "Also explains {} other failed migration(s): {}",
                n.covers.len(),
                n.covers.iter().map(|c| one_line(&c.vm, 64)).collect::<Vec<_>>().join(", ")
            ), 3000)},
        }));
    }
    blocks.truncate(50);
    json!({"text": slack_escape(&subject), "blocks": blocks})
}

/// Escapes the characters Adaptive Cards' Markdown would act on.
pub fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '*'
                | '_'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '>'
                | '<'
                | '`'
                | '~'
                | '-'
                | '+'
                | '!'
                | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Teams shape: a message with one Adaptive Card (version 1.4).
pub fn teams(n: &Notification) -> Value {
    let m = |t: &str| markdown_escape(&one_line(t, 2000));
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": m(&render::subject(n)),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    let mut actions = Vec::new();
    for alert in n.firing.iter().chain(&n.resolved) {
        let i = &alert.incident;
        body.push(json!({
            "type": "FactSet",
            "facts": [
                {"title": "Status", "value": alert.state.as_str()},
                {"title": "VM", "value": m(alert.vm())},
                {"title": "From → to", "value": m(&format!(
                    "{} → {}",
                    i.source_host.as_deref().unwrap_or("?"),
                    i.destination_host.as_deref().unwrap_or("?")
                ))},
                {"title": "When", "value": i.first_seen.format("%Y-%m-%d %H:%M:%S UTC").to_string()},
                {"title": "Attempts", "value": i.count.to_string()},
                {"title": "Root cause", "value": m(&format!(
                    "{} ({}), confidence {:.0}%",
                    alert.cause_title, i.root_cause, i.confidence * 100.0
                ))},
                {"title": "Fix class", "value": m(&i.remediation.fix_class)},
            ],
        }));
        let evidence: Vec<String> = i
            .evidence
            .iter()
            .take(8)
            .map(|e| {
                m(&format!(
                    "{} {} {} {}",
                    e.timestamp.format("%H:%M:%S%.3f"),
                    parsers::event::short_host(&e.host),
                    e.event_id,
                    one_line(render::cause_line(e), 100)
                ))
            })
            .collect();
        body.push(json!({
            "type": "TextBlock",
            "text": evidence.join("\n\n"),
            "wrap": true,
            "size": "Small",
            "fontType": "Monospace",
        }));
        actions.push(json!({
            "type": "Action.OpenUrl",
            "title": format!("Open {}", one_line(alert.vm(), 40)),
            "url": render::incident_url(&n.external_url, &alert.fingerprint),
        }));
    }
    if !n.covers.is_empty() && !n.firing.is_empty() {
        body.push(json!({
            "type": "TextBlock",
            "text": m(&format!("Also explains {} other failed migration(s), not alerted separately.", n.covers.len())),
            "wrap": true,
        }));
    }
    actions.truncate(5);
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            },
        }],
    })
}

/// The label set of an alert as JSON (Alertmanager's API shape).
pub fn labels_json(alert: &Alert) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in &alert.labels {
        if !v.is_empty() || k == label::CLUSTER {
            map.insert(k.clone(), json!(v));
        }
    }
    Value::Object(map)
}
