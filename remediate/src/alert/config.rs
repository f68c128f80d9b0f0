//! `[alerts]` in `relive.toml`: the minimal form (`[alerts.email]` alone)
//! and the full Alertmanager-style form (`[alerts.route]`,
//! `[[alerts.receivers]]`, `[[alerts.inhibit]]`) beside it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::inhibit::InhibitRule;
use super::matcher::Matcher;
use super::route::Route;
use super::ConfigError;

/// The built-in receiver that only writes the notification journal.
pub const LOG_RECEIVER: &str = "log";
/// The receiver name `[alerts.email]` (the minimal form) gets.
pub const EMAIL_RECEIVER: &str = "email";

/// `[alerts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Off: no alerting stage at all (the change log is not read for alerts).
    pub enabled: bool,
    /// Base of the links in messages (the web UI).
    pub external_url: String,
    /// Cluster name → its hosts (short or full names), for the `cluster` label.
    pub clusters: BTreeMap<String, Vec<String>>,
    /// The minimal form: one email receiver, every alert to it.
    pub email: Option<EmailConfig>,
    /// The routing tree (Alertmanager's `route`).
    pub route: Option<RouteConfig>,
    /// Named receivers for the routing tree.
    pub receivers: Vec<ReceiverConfig>,
    /// Inhibition rules; absent = the defaults (a cluster-wide cause
    /// inhibits the per-VM alerts of the same cluster within 10 minutes).
    pub inhibit: Option<Vec<InhibitConfig>>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            external_url: "http://127.0.0.1:7300".into(),
            clusters: BTreeMap::new(),
            email: None,
            route: None,
            receivers: Vec::new(),
            inhibit: None,
        }
    }
}

/// SMTP through lettre.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `host:port` of the SMTP server (port 25 when omitted).
    #[serde(default)]
    pub smtp: String,
    /// Instead of an SMTP server: write each message as an `.eml` file
    /// into this folder (lettre's file transport; `relive demo`, or a
    /// host with no mail server whose mail another tool picks up).
    #[serde(default)]
    pub file_dir: Option<PathBuf>,
    /// The From address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Upgrade with STARTTLS (required: refuse a server that does not offer it).
    #[serde(default)]
    pub starttls: bool,
    /// Implicit TLS from the first byte (port 465).
    #[serde(default)]
    pub tls: bool,
    /// SMTP AUTH user name.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP AUTH password.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (first line), instead of `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of an extra CA to trust (a private mail server).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name sent in EHLO (the machine's host name by default).
    #[serde(default)]
    pub hello_name: Option<String>,
    /// Per-command timeout.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Send a notice when an incident is resolved.
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// The JSON a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookShape {
    /// Alertmanager's webhook payload (version 4) plus a `relive` object.
    #[default]
    Generic,
    /// A Slack incoming webhook (`text` + Block Kit `blocks`).
    Slack,
    /// A Microsoft Teams incoming webhook / Workflows (an Adaptive Card).
    Teams,
}

/// One webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// generic, slack or teams.
    #[serde(default)]
    pub shape: WebhookShape,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// PEM file of an extra CA to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Send a notice when an incident is resolved.
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// An existing Alertmanager that relive pushes its alerts to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
    /// Firing alerts are posted again this often (Alertmanager resolves an
    /// alert that is not refreshed within its `resolve_timeout`).
    #[serde(default = "default_resend")]
    pub resend: String,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// PEM file of an extra CA to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

/// `[[alerts.receivers]]`: a name and its integrations (each delivers on
/// its own, so a dead webhook never holds up the email).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Name routes refer to.
    pub name: String,
    /// Email.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Webhooks.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// An Alertmanager to push to.
    #[serde(default)]
    pub alertmanager: Option<AlertmanagerConfig>,
    /// At most this many notifications a minute per integration; more wait
    /// their turn (nothing is dropped). 0 = no limit.
    #[serde(default)]
    pub max_per_minute: u32,
    /// How long a temporarily failing notification is retried before it is
    /// recorded as failed.
    #[serde(default = "default_retry_for")]
    pub retry_for: String,
}

/// `[alerts.route]` and its `routes`: Alertmanager's routing tree.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver (inherited from the parent when absent).
    pub receiver: Option<String>,
    /// Conditions on the alert's labels (the root ignores them).
    pub matchers: Vec<Matcher>,
    /// Labels that split alerts into groups; `["..."]` = every alert alone.
    pub group_by: Option<Vec<String>>,
    /// Wait before a new group's first notification (default 1s).
    pub group_wait: Option<String>,
    /// Wait before telling a group's changes (default 1m).
    pub group_interval: Option<String>,
    /// Tell an unchanged, still-firing group again after (default 4h).
    pub repeat_interval: Option<String>,
    /// Go on to the next sibling route after this one matched.
    #[serde(rename = "continue")]
    pub continue_matching: bool,
    /// Child routes, first match wins.
    pub routes: Vec<RouteConfig>,
}

/// `[[alerts.inhibit]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// What the muting alert matches.
    pub source_matchers: Vec<Matcher>,
    /// What the muted alert matches.
    pub target_matchers: Vec<Matcher>,
    /// Labels that must be equal on both.
    #[serde(default)]
    pub equal: Vec<String>,
    /// The muted alert's first failure must lie within this of the muting
    /// one's failures (it is what the source explains).
    #[serde(default = "default_window")]
    pub window: String,
}

fn default_timeout() -> String {
    "10s".into()
}
fn default_resend() -> String {
    "1m".into()
}
fn default_retry_for() -> String {
    "10m".into()
}
fn default_window() -> String {
    "10m".into()
}
fn yes() -> bool {
    true
}

/// A duration setting: `0`/`0s` allowed, else [`parsers::time::parse_span`].
pub fn duration(field: &str, value: &str) -> Result<Duration, ConfigError> {
    let trimmed = value.trim();
    if trimmed == "0" || trimmed == "0s" {
        return Ok(Duration::ZERO);
    }
    parsers::time::parse_span(trimmed).map_err(|e| ConfigError::Duration {
        field: field.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// One integration of a receiver, ready to start.
#[derive(Debug, Clone)]
pub enum Integration {
    /// Email.
    Email(EmailConfig),
    /// A webhook.
    Webhook(WebhookConfig),
    /// An Alertmanager.
    Alertmanager(AlertmanagerConfig),
}

impl Integration {
    /// `email`, `webhook` or `alertmanager`.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Email(_) => "email",
            Integration::Webhook(_) => "webhook",
            Integration::Alertmanager(_) => "alertmanager",
        }
    }

    /// Whether resolved notices go to it.
    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Email(e) => e.send_resolved,
            Integration::Webhook(w) => w.send_resolved,
            Integration::Alertmanager(_) => true,
        }
    }
}

/// A receiver's integration with its delivery settings: what a worker runs.
#[derive(Debug, Clone)]
pub struct Target {
    /// `receiver/kind[index]`, the notification log's key part.
    pub name: String,
    /// The receiver it belongs to.
    pub receiver: String,
    /// How it delivers.
    pub integration: Integration,
    /// Rate limit (0 = none).
    pub max_per_minute: u32,
    /// Retry budget for temporary failures.
    pub retry_for: Duration,
}

/// `[alerts]` checked and resolved: the route tree, every target by
/// receiver, the inhibition rules.
#[derive(Debug, Clone)]
pub struct Built {
    /// The root route.
    pub route: Route,
    /// Targets (integrations), in receiver order.
    pub targets: Vec<Target>,
    /// Inhibition rules.
    pub inhibit: Vec<InhibitRule>,
    /// Base of links.
    pub external_url: String,
}

impl Built {
    /// The targets of a receiver (none for `log`).
    pub fn targets_of<'a>(
        &'a self,
        receiver: &'a str,
    ) -> impl Iterator<Item = (usize, &'a Target)> {
        self.targets
            .iter()
            .enumerate()
            .filter(move |(_, t)| t.receiver == receiver)
    }
}

impl AlertsConfig {
    /// Checks every setting and builds the runtime form.
    pub fn build(&self) -> Result<Built, ConfigError> {
        let mut receivers: Vec<ReceiverConfig> = Vec::new();
        if let Some(email) = &self.email {
            receivers.push(ReceiverConfig {
                name: EMAIL_RECEIVER.into(),
                email: Some(email.clone()),
                webhooks: Vec::new(),
                alertmanager: None,
                max_per_minute: 0,
                retry_for: default_retry_for(),
            });
        }
        receivers.extend(self.receivers.iter().cloned());
        let mut targets = Vec::new();
        let mut names: Vec<&str> = vec![LOG_RECEIVER];
        for receiver in &receivers {
            if names.contains(&receiver.name.as_str()) {
                return Err(ConfigError::Receiver {
                    receiver: receiver.name.clone(),
                    reason: if receiver.name == LOG_RECEIVER {
                        "`log` is the built-in journal receiver; choose another name".into()
                    } else {
                        "defined twice (`[alerts.email]` is the receiver `email`)".into()
                    },
                });
            }
            names.push(&receiver.name);
            let retry_for = duration("retry_for", &receiver.retry_for)?;
            let mut integrations = Vec::new();
            if let Some(email) = &receiver.email {
                check_email(&receiver.name, email)?;
                integrations.push(Integration::Email(email.clone()));
            }
            for webhook in &receiver.webhooks {
                check_url(&receiver.name, &webhook.url)?;
                duration("timeout", &webhook.timeout)?;
                integrations.push(Integration::Webhook(webhook.clone()));
            }
            if let Some(am) = &receiver.alertmanager {
                check_url(&receiver.name, &am.url)?;
                duration("resend", &am.resend)?;
                duration("timeout", &am.timeout)?;
                integrations.push(Integration::Alertmanager(am.clone()));
            }
            if integrations.is_empty() {
                return Err(ConfigError::Receiver {
                    receiver: receiver.name.clone(),
                    reason: "has no email, webhooks or alertmanager".into(),
                });
            }
            for (i, integration) in integrations.into_iter().enumerate() {
                targets.push(Target {
                    name: format!("{}/{}[{i}]", receiver.name, integration.kind()),
                    receiver: receiver.name.clone(),
                    integration,
                    max_per_minute: receiver.max_per_minute,
                    retry_for,
                });
            }
        }
        let default_receiver = if self.email.is_some() {
            EMAIL_RECEIVER.to_string()
        } else if self.receivers.len() == 1 {
            self.receivers[0].name.clone()
        } else {
            LOG_RECEIVER.to_string()
        };
        let route_config = self.route.clone().unwrap_or_default();
        let route = Route::build(&route_config, None, &default_receiver, &names)?;
        let inhibit = match &self.inhibit {
            Some(rules) => rules
                .iter()
                .map(InhibitRule::build)
                .collect::<Result<Vec<_>, _>>()?,
            None => InhibitRule::defaults(),
        };
        Ok(Built {
            route,
            targets,
            inhibit,
            external_url: self.external_url.trim_end_matches('/').to_string(),
        })
    }
}

fn check_email(receiver: &str, email: &EmailConfig) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::Receiver {
        receiver: receiver.to_string(),
        reason,
    };
    if email.to.is_empty() {
        return Err(bad("email needs at least one address in `to`".into()));
    }
    for address in email.to.iter().chain([&email.from]) {
        address
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| bad(format!("`{address}` is not an email address: {e}")))?;
    }
    if email.starttls && email.tls {
        return Err(bad(
            "choose starttls (port 587) or tls (implicit, port 465), not both".into(),
        ));
    }
    match (&email.file_dir, email.smtp.trim().is_empty()) {
        (Some(_), false) => {
            return Err(bad(
                "give smtp (a server) or file_dir (a folder for .eml files), not both".into(),
            ))
        }
        (None, true) => {
            return Err(bad(
                "smtp is missing: the server as host:port (or file_dir for .eml files)".into(),
            ))
        }
        (Some(_), true) => {}
        (None, false) => {
            super::email::split_host_port(&email.smtp).map_err(bad)?;
        }
    }
    duration("timeout", &email.timeout)?;
    if email.password.is_some() && email.password_file.is_some() {
        return Err(bad("give password or password_file, not both".into()));
    }
    if email.username.is_some() && !(email.starttls || email.tls) && email.file_dir.is_none() {
        let (host, _) = super::email::split_host_port(&email.smtp).map_err(bad)?;
        if !is_loopback(&host) {
            return Err(bad(
                "a password is never sent in the clear: set starttls = true or tls = true".into(),
            ));
        }
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_url(receiver: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::Receiver {
        receiver: receiver.to_string(),
        reason: format!("`{url}` is not a URL: {e}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::Receiver {
            receiver: receiver.to_string(),
            reason: format!("`{url}`: only http and https URLs"),
        });
    }
    Ok(())
}

/// The `[alerts]` part of `relive config default`: both forms, commented.
pub const DEFAULT_TOML: &str = r#"# ---- Alerts ------------------------------------------------------------
# Every incident raises an alert; a change of cause or another failed attempt
# updates it; a resolved incident sends a resolved notice. Every notification
# (and every decision not to send one) is a JSON line in
# --data/alerts/notifications.jsonl, with or without receivers.
[alerts]
# enabled = true
# external_url = "http://127.0.0.1:7300"   # links in messages (the web UI)
# clusters = { PROD = ["NODE-A", "NODE-B", "NODE-C"] }   # the `cluster` label

# The minimal form: one mailbox gets everything.
# [alerts.email]
# smtp = "mail.example.com:587"   # host:port (with no mail server: file_dir = "mail", one .eml per message)
# from = "relive@example.com"
# to = ["oncall@example.com"]
# starttls = true                 # or tls = true (implicit, 465), or neither for a local relay
# username = "relive"             # optional; never sent without TLS
# password_file = "/etc/relive/smtp-password"
# ca_file = "/etc/relive/mail-ca.pem"   # a private CA, optional

# The full form, Alertmanager's routing tree. Labels: alertname, root_cause,
# fix_class (auto|approval|downtime), severity (critical|warning), scope
# (cluster|vm), cluster, vm, source_host, destination_host, incident.
# Matchers: name="v", name!="v", name=~"regex", name!~"regex".
# [alerts.route]
# receiver = "oncall"
# group_by = ["cluster", "root_cause"]   # ["..."] = every alert alone
# group_wait = "1s"
# group_interval = "1m"
# repeat_interval = "4h"
# [[alerts.route.routes]]
# matchers = ['fix_class="downtime"']
# receiver = "change-board"
# continue = true
# [[alerts.route.routes]]
# matchers = ['vm=~"SQL.*"']
# receiver = "dba"
#
# [[alerts.receivers]]
# name = "oncall"
# max_per_minute = 30             # more wait their turn; nothing is dropped
# retry_for = "10m"               # temporary failures (SMTP 4xx, HTTP 5xx) retried this long
# [alerts.receivers.email]
# smtp = "mail.example.com:587"
# from = "relive@example.com"
# to = ["oncall@example.com", "hyperv-team@example.com"]
# starttls = true
# [[alerts.receivers.webhooks]]
# url = "https://hooks.slack.com/services/T000/B000/XXXX"
# shape = "slack"                 # generic (Alertmanager v4 JSON) | slack | teams
# [alerts.receivers.alertmanager]
# url = "http://alertmanager.example.com:9093"
#
# Inhibition (absent = this default): a cluster-wide cause mutes the per-VM
# alerts of the same cluster that it explains, and its notice says how many.
# [[alerts.inhibit]]
# source_matchers = ['scope="cluster"']
# target_matchers = ['scope="vm"']
# equal = ["cluster"]
# window = "10m"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<Built, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            alerts: AlertsConfig,
        }
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Receiver {
            receiver: "toml".into(),
            reason: e.to_string(),
        })?;
        file.alerts.build()
    }

    #[test]
    fn the_minimal_form_routes_everything_to_email() {
        let built = build(
            "[alerts.email]\nsmtp = \"mail.example.com:587\"\nfrom = \"relive@example.com\"\n\
             to = [\"oncall@example.com\", \"b@example.com\"]\nstarttls = true\n",
        )
        .unwrap();
        assert_eq!(built.route.receiver, "email");
        assert_eq!(built.targets.len(), 1);
        assert_eq!(built.targets[0].name, "email/email[0]");
    }

    #[test]
    fn the_commented_default_is_valid_once_uncommented() {
        let setting = regex::Regex::new(r"^(\[|[a-z_]+ = )").unwrap();
        let text: String = DEFAULT_TOML
            .lines()
            .filter_map(|l| match l.strip_prefix("# ") {
                Some(rest) if setting.is_match(rest) => Some(rest),
                Some(_) => None,
                None => Some(l),
            })
            .collect::<Vec<_>>()
            .join("\n");
        // Two receivers named in routes are not defined in the sample: add them.
        let text = format!(
            "{text}\n[[alerts.receivers]]\nname = \"change-board\"\n[[alerts.receivers.webhooks]]\nurl = \"http://127.0.0.1:1/\"\n\
             [[alerts.receivers]]\nname = \"dba\"\n[[alerts.receivers.webhooks]]\nurl = \"http://127.0.0.1:1/\"\n"
        );
        let built = build(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(built.route.receiver, "oncall");
        assert_eq!(built.route.routes.len(), 2);
        assert_eq!(built.inhibit.len(), 1);
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let cases = [
            ("[alerts.route]\nreceiver = \"nobody\"\n", "not defined"),
            (
                "[alerts.email]\nsmtp = \"mail.example.com:25\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nusername = \"u\"\npassword = \"p\"\n",
                "never sent in the clear",
            ),
            (
                "[alerts.email]\nsmtp = \"mail.example.com:25\"\nfrom = \"not an address\"\nto = [\"x@y.z\"]\n",
                "not an email address",
            ),
            ("[alerts.route]\ngroup_wait = \"soon\"\n", "cannot read duration"),
            ("[[alerts.receivers]]\nname = \"x\"\n", "has no email"),
            (
                "[[alerts.receivers]]\nname = \"log\"\n[[alerts.receivers.webhooks]]\nurl = \"http://127.0.0.1:1\"\n",
                "built-in",
            ),
            (
                "[[alerts.receivers]]\nname = \"w\"\n[[alerts.receivers.webhooks]]\nurl = \"file:///etc/passwd\"\n",
                "only http",
            ),
        ];
        for (text, want) in cases {
            let err = build(text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"))
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
