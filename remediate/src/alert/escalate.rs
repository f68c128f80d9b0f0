//! Escalations: when the remediation engine stops without a verified
//! retry, a second message about the incident goes to the receivers its
//! alert routes to, saying what was tried and why it stopped (subject
//! `ESCALATED …`, the reason in the text, the HTML and the webhook
//! annotations). Each send is a line in the notification journal; a
//! receiver that refuses is tried again a few times, then the failure is
//! journaled (the audit log already holds the escalation itself).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use correlate::Incident;

use super::config::{Built, Target};
use super::dispatch::notifier_for;
use super::journal::{Decision, Journal, JournalEntry};
use super::{render, Alert, AlertContext, ConfigError, Notification, Notifier, StateError};

/// Sends escalations through the configured receivers.
pub struct Escalator {
    built: Built,
    context: AlertContext,
    notifiers: Mutex<Vec<(Target, Box<dyn Notifier>)>>,
    journal: Arc<Journal>,
}

/// Errors starting an escalator.
#[derive(Debug, thiserror::Error)]
pub enum EscalateError {
    /// A receiver cannot be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The journal cannot be opened.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Attempts per receiver.
const ATTEMPTS: u32 = 3;

impl Escalator {
    /// Over the receivers of `[alerts]`, journaling under `data`.
    pub fn new(
        data: &std::path::Path,
        built: Built,
        context: AlertContext,
    ) -> Result<Escalator, EscalateError> {
        let mut notifiers = Vec::new();
        for target in &built.targets {
            notifiers.push((target.clone(), notifier_for(target)?));
        }
        Ok(Escalator {
            built,
            context,
            notifiers: Mutex::new(notifiers),
            journal: Arc::new(Journal::open(data)?),
        })
    }

    /// The message an escalation of `incident` sends (one alert, first in
    /// its own thread).
    pub fn notification(&self, incident: &Incident, reason: &str) -> Notification {
        let mut alert = Alert::from_incident(incident.clone(), Utc::now(), &self.context);
        alert.fingerprint = format!("{}-escalated", incident.id);
        alert.escalation = Some(reason.to_string());
        Notification::preview(alert, &self.built.external_url)
    }

    /// Sends the escalation to every receiver the incident's alert routes
    /// to; how many accepted it.
    pub fn escalate(&self, incident: &Incident, reason: &str) -> usize {
        self.send(self.notification(incident, reason), |_, _| {})
    }

    /// Asks the receivers the incident's alert routes to for an approval:
    /// one message each, with approve and reject links signed for it.
    pub fn ask_approval(
        &self,
        request: &crate::engine::ApprovalRequest,
        signer: &crate::link::LinkSigner,
    ) -> usize {
        let mut alert = Alert::from_incident(request.incident.clone(), Utc::now(), &self.context);
        alert.fingerprint = format!("{}-approval-{}", request.incident.id, request.key);
        let base = Notification::preview(alert, &self.built.external_url);
        let url = self.built.external_url.clone();
        self.send(base, |n, target| {
            let link = |approve| crate::link::Link {
                key: request.key.clone(),
                incident: request.incident.id.clone(),
                approve,
                expires: request.expires,
                to: target.name.clone(),
            };
            let ask = super::ApprovalAsk {
                action: request.title.clone(),
                key: request.key.clone(),
                class: request.class.as_str().to_string(),
                approve_url: signer.url(&url, &link(true)),
                reject_url: signer.url(&url, &link(false)),
                expires: request.expires,
            };
            for a in n.firing.iter_mut() {
                a.approval = Some(ask.clone());
            }
        })
    }

    /// Sends `base` to every receiver its alert routes to (`each` adapts it
    /// per target); how many accepted it.
    fn send(&self, base: Notification, each: impl Fn(&mut Notification, &Target)) -> usize {
        let labels = base
            .firing
            .first()
            .map(|a| a.labels.clone())
            .unwrap_or_default();
        let receivers: Vec<String> = self
            .built
            .route
            .matching(&labels)
            .into_iter()
            .map(|r| r.receiver.clone())
            .collect();
        let mut accepted = 0;
        let mut notifiers = self.notifiers.lock().unwrap_or_else(|p| p.into_inner());
        for (target, notifier) in notifiers.iter_mut() {
            if !receivers.contains(&target.receiver) {
                continue;
            }
            let mut n = base.clone();
            n.target = target.name.clone();
            n.receiver = target.receiver.clone();
            each(&mut n, target);
            let mut last = String::new();
            let mut sent = false;
            for attempt in 0..ATTEMPTS {
                match notifier.send(&n) {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        last = e.to_string();
                        if attempt + 1 < ATTEMPTS {
                            std::thread::sleep(Duration::from_millis(500 << attempt));
                        }
                    }
                }
            }
            let mut entry = JournalEntry::new(if sent {
                Decision::Sent
            } else {
                Decision::Failed
            });
            entry.notification = Some(n.id.clone());
            entry.target = Some(n.target.clone());
            entry.group = Some(n.group_key.clone());
            entry.alerts = n.fingerprints();
            entry.subject = Some(render::subject(&n));
            if !sent {
                entry.reason = Some(last.clone());
                tracing::warn!(target = %n.target, error = %last, "escalation not accepted");
            } else {
                accepted += 1;
            }
            self.journal.write(&entry);
        }
        accepted
    }
}
