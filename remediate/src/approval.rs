//! Approving and rejecting queued actions (`relive approve`, `relive
//! reject`, later the web UI), checked against the audit log: only an
//! action that waits for approval now, of the incident named when one is,
//! before its request expires, and a `downtime` action only inside a
//! maintenance window. The decision is one more audit line, which the
//! engine (in `relive serve`, another process) reads.

use chrono::{DateTime, Utc};

use crate::audit::{state_in, ActionState, AuditError, AuditLog, Entry, What};
use crate::config::RemediationConfig;
use crate::plan::Class;

/// Why an approval or rejection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such action in the audit log.
    #[error("no action `{0}` in the audit log (relive actions lists them)")]
    Unknown(String),
    /// The action belongs to another incident.
    #[error("action `{key}` belongs to incident {actual}, not {named}")]
    OtherIncident {
        /// The key.
        key: String,
        /// The incident named.
        named: String,
        /// Its incident.
        actual: String,
    },
    /// It does not wait for approval (already decided, never asked, done).
    #[error("action `{key}` does not wait for approval: {state}")]
    NotWaiting {
        /// The key.
        key: String,
        /// Where it stands.
        state: String,
    },
    /// The request expired.
    #[error("the approval request for `{key}` expired at {expired}")]
    Expired {
        /// The key.
        key: String,
        /// When.
        expired: DateTime<Utc>,
    },
    /// A `downtime` action outside every maintenance window.
    #[error("`{key}` stops VMs: it can be approved only in a maintenance window ({windows})")]
    OutsideWindow {
        /// The key.
        key: String,
        /// The windows in words (or that none is configured).
        windows: String,
    },
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// An approval or a rejection, as someone gives it.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// The action's key.
    pub key: &'a str,
    /// The incident it must belong to (id or prefix), when named.
    pub incident: Option<&'a str>,
    /// Who decides.
    pub who: &'a str,
    /// Approve (or reject).
    pub approve: bool,
    /// Why, for the log.
    pub reason: &'a str,
    /// When.
    pub now: DateTime<Utc>,
}

/// Records `decision` when the action waits for it.
pub fn decide(
    audit: &AuditLog,
    config: &RemediationConfig,
    decision: &Decision<'_>,
) -> Result<Entry, ApprovalError> {
    let Decision {
        key,
        incident,
        who,
        approve,
        reason,
        now,
    } = *decision;
    let entries = audit.read()?.entries;
    let mine: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.key.as_deref() == Some(key))
        .collect();
    let Some(first) = mine.first() else {
        return Err(ApprovalError::Unknown(key.to_string()));
    };
    if let Some(named) = incident {
        if !first.incident.starts_with(named) || named.is_empty() {
            return Err(ApprovalError::OtherIncident {
                key: key.to_string(),
                named: named.to_string(),
                actual: first.incident.clone(),
            });
        }
    }
    let state = state_in(&entries, key);
    if state != ActionState::AwaitingApproval {
        return Err(ApprovalError::NotWaiting {
            key: key.to_string(),
            state: match state {
                ActionState::New => "never asked".into(),
                ActionState::Approved => "already approved".into(),
                ActionState::Interrupted => "already started".into(),
                ActionState::Done(w) => format!(
                    "already {}",
                    serde_json::to_value(w)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                ActionState::AwaitingApproval => unreachable!("checked above"),
            },
        });
    }
    let request = mine
        .iter()
        .rev()
        .find(|e| e.what == What::AwaitingApproval)
        .copied()
        .unwrap_or(first);
    let expired = request.at + chrono::Duration::hours(config.approval_expires_h as i64);
    if now >= expired {
        return Err(ApprovalError::Expired {
            key: key.to_string(),
            expired,
        });
    }
    if approve && request.class == Some(Class::Downtime) && config.window_at(now).is_none() {
        return Err(ApprovalError::OutsideWindow {
            key: key.to_string(),
            windows: if config.maintenance.is_empty() {
                "none is configured in [[remediation.maintenance]]".into()
            } else {
                config
                    .maintenance
                    .iter()
                    .map(|w| w.describe())
                    .collect::<Vec<_>>()
                    .join(" or ")
            },
        });
    }
    let entry = Entry {
        at: now,
        incident: first.incident.clone(),
        key: Some(key.to_string()),
        what: if approve {
            What::Approved
        } else {
            What::Rejected
        },
        who: Some(who.to_string()),
        detail: reason.to_string(),
        class: None,
    };
    audit.append(&entry)?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(log: &AuditLog, key: &str, class: Class, at: DateTime<Utc>) {
        log.append(&Entry {
            at,
            incident: "inc1".into(),
            key: Some(key.into()),
            what: What::AwaitingApproval,
            who: Some("relive".into()),
            detail: String::new(),
            class: Some(class),
        })
        .unwrap();
    }

    #[test]
    fn wrong_reused_expired_other_incident_and_out_of_window_approvals_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let mut config = RemediationConfig::default();
        let now: DateTime<Utc> = "2026-12-07T12:00:00Z".parse().unwrap();
        request(&log, "inc1/fix/1/1", Class::Approval, now);
        request(&log, "inc1/fix/2/1", Class::Downtime, now);
        request(
            &log,
            "inc1/fix/3/1",
            Class::Approval,
            now - chrono::Duration::hours(25),
        );
        let go = |key: &str, incident: Option<&str>, config: &RemediationConfig| {
            let d = Decision {
                key,
                incident,
                who: "alice",
                approve: true,
                reason: "",
                now,
            };
            decide(&log, config, &d)
        };
        assert!(matches!(
            go("inc1/fix/9/1", None, &config),
            Err(ApprovalError::Unknown(_))
        ));
        assert!(matches!(
            go("inc1/fix/1/1", Some("inc2"), &config),
            Err(ApprovalError::OtherIncident { .. })
        ));
        let ok = go("inc1/fix/1/1", Some("inc1"), &config).unwrap();
        assert_eq!(
            (ok.what, ok.who.as_deref()),
            (What::Approved, Some("alice"))
        );
        let again = go("inc1/fix/1/1", None, &config).unwrap_err();
        assert!(again.to_string().contains("already approved"), "{again}");
        assert!(matches!(
            go("inc1/fix/3/1", None, &config),
            Err(ApprovalError::Expired { .. })
        ));
        let outside = go("inc1/fix/2/1", None, &config).unwrap_err();
        assert!(
            outside.to_string().contains("none is configured"),
            "{outside}"
        );
        config.maintenance.push(crate::config::Window {
            days: vec![],
            from: "01:00".into(),
            to: "05:00".into(),
        });
        let outside = go("inc1/fix/2/1", None, &config).unwrap_err();
        assert!(
            outside.to_string().contains("every day 01:00-05:00 UTC"),
            "{outside}"
        );
        config.maintenance[0].to = "13:00".into();
        assert!(go("inc1/fix/2/1", None, &config).is_ok());
        // Rejecting needs no window, and is final.
        request(&log, "inc1/fix/4/1", Class::Downtime, now);
        let mut d = Decision {
            key: "inc1/fix/4/1",
            incident: None,
            who: "bob",
            approve: false,
            reason: "not today",
            now,
        };
        let no = decide(&log, &config, &d).unwrap();
        assert_eq!((no.what, no.detail.as_str()), (What::Rejected, "not today"));
        d.approve = true;
        assert!(decide(&log, &config, &d).is_err());
    }
}
