//! `/approve`: the signed, expiring links an approval request carries
//! (`remediate::link`). No token: the signature is the permission, for one
//! action, one decision, until its time. Opening the link decides nothing
//! (mail scanners open links); the page's button does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};

use super::html::{self, attr, text, Page};
use super::AppState;

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        html::page(
            &Page::new(title, None),
            &format!(
                r#"<main class="login"><h1>{}</h1>{body}</main>"#,
                text(title)
            ),
        ),
    )
        .into_response()
}

/// The link in the query string or the form, and its signature.
fn read(p: &HashMap<String, String>) -> Option<(remediate::link::Link, String)> {
    let get = |k: &str| p.get(k).map(String::as_str);
    let approve = match get("do")? {
        "approve" => true,
        "reject" => false,
        _ => return None,
    };
    let expires = Utc.timestamp_opt(get("exp")?.parse().ok()?, 0).single()?;
    Some((
        remediate::link::Link {
            key: get("key")?.to_string(),
            incident: get("incident")?.to_string(),
            approve,
            expires,
            to: get("to")?.to_string(),
        },
        get("sig")?.to_string(),
    ))
}

/// Checks the link; the page to show when it does not hold.
fn check(
    state: &AppState,
    p: &HashMap<String, String>,
) -> Result<(remediate::link::Link, remediate::audit::AuditLog), Box<Response>> {
    let Some((link, sig)) = read(p) else {
        return Err(Box::new(page(
            StatusCode::BAD_REQUEST,
            "Not an approval link",
            "<p>This address is missing part of an approval link. Open the link from the message again.</p>",
        )));
    };
    let signer = remediate::link::LinkSigner::open(&state.ctx.data).map_err(|e| {
        Box::new(page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot check the link",
            &format!("<p>{}</p>", text(&e.to_string())),
        ))
    })?;
    if let Err(e) = signer.verify(&link, &sig, Utc::now()) {
        let status = match e {
            remediate::link::LinkError::Expired(_) => StatusCode::GONE,
            _ => StatusCode::FORBIDDEN,
        };
        tracing::warn!(key = %link.key, error = %e, "approval link refused");
        return Err(Box::new(page(
            status,
            "Link refused",
            &format!(
                "<p>{}</p><p>Decide in the web UI or with <code>relive approve</code> instead.</p>",
                text(&e.to_string())
            ),
        )));
    }
    let audit = remediate::audit::AuditLog::open(&state.ctx.data).map_err(|e| {
        Box::new(page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot read the audit log",
            &format!("<p>{}</p>", text(&e.to_string())),
        ))
    })?;
    Ok((link, audit))
}

/// `GET /approve`: what the link decides, and one button.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    tokio::task::spawn_blocking(move || {
        let (link, audit) = match check(&state, &p) {
            Ok(x) => x,
            Err(page) => return *page,
        };
        let verb = if link.approve { "Approve" } else { "Reject" };
        let waiting = audit.state_of(&link.key).ok();
        let asked = audit.last_of(&link.key).ok().flatten();
        let incident = super::api::find_incident(&state.ctx.data, &link.incident).ok();
        let what = asked
            .as_ref()
            .map(|e| e.detail.clone())
            .unwrap_or_else(|| link.key.clone());
        let about = incident
            .as_ref()
            .map(|i| {
                format!(
                    r#"<p>Incident: <a href="/incidents/{}">{}</a></p>"#,
                    attr(&super::auth::percent(&i.id)),
                    text(&i.title)
                )
            })
            .unwrap_or_default();
        if waiting != Some(remediate::audit::ActionState::AwaitingApproval) {
            return page(
                StatusCode::CONFLICT,
                "Already decided",
                &format!(
                    "{about}<p>{}</p><p>This action does not wait for approval any more (see the incident's audit log).</p>",
                    text(&what)
                ),
            );
        }
        let hidden: String = ["key", "incident", "do", "exp", "to", "sig"]
            .iter()
            .map(|k| {
                format!(
                    r#"<input type="hidden" name="{k}" value="{}">"#,
                    attr(p.get(*k).map(String::as_str).unwrap_or(""))
                )
            })
            .collect();
        page(
            StatusCode::OK,
            &format!("{verb} this action?"),
            &format!(
                r#"{about}<p><strong>{}</strong></p><p>Key <code>{}</code>; the link was sent to {} and works until {} UTC. Opening it decided nothing.</p>
<form method="post" action="/approve">{hidden}<button type="submit" class="{}">{verb}</button></form>"#,
                text(&what),
                text(&link.key),
                text(&link.to),
                link.expires.format("%Y-%m-%d %H:%M"),
                if link.approve { "approve" } else { "reject" },
            ),
        )
    })
    .await
    .unwrap_or_else(|e| page(StatusCode::INTERNAL_SERVER_ERROR, "Failed", &text(&e.to_string())))
}

/// `POST /approve`: the button; recorded as `TO (signed link)`.
pub(crate) async fn decide(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<
        axum::extract::Form<HashMap<String, String>>,
        axum::extract::rejection::FormRejection,
    >,
) -> Response {
    let Ok(axum::extract::Form(p)) = form else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not an approval",
            "<p>Send the page's form.</p>",
        );
    };
    if super::auth::cross_origin(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>Decide from this site's page.</p>",
        );
    }
    tokio::task::spawn_blocking(move || {
        let (link, audit) = match check(&state, &p) {
            Ok(x) => x,
            Err(page) => return *page,
        };
        let who = format!("{} (signed link)", link.to);
        match remediate::approval::decide(
            &audit,
            &state.ctx.remediation,
            &remediate::approval::Decision {
                key: &link.key,
                incident: Some(&link.incident),
                who: &who,
                approve: link.approve,
                reason: "signed link",
                now: Utc::now(),
            },
        ) {
            Ok(_) => {
                tracing::info!(key = %link.key, who = %who, approve = link.approve, "action decided by a signed link");
                state.live.poke();
                page(
                    StatusCode::OK,
                    if link.approve { "Approved" } else { "Rejected" },
                    &format!(
                        r#"<p>{} <code>{}</code>. The remediation engine takes it from here; <a href="/incidents/{}">the incident</a> shows each step.</p>"#,
                        if link.approve { "Approved" } else { "Rejected" },
                        text(&link.key),
                        attr(&super::auth::percent(&link.incident))
                    ),
                )
            }
            Err(e) => {
                let status = match e {
                    remediate::approval::ApprovalError::Unknown(_) => StatusCode::NOT_FOUND,
                    remediate::approval::ApprovalError::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::CONFLICT,
                };
                page(status, "Not decided", &format!("<p>{}</p>", text(&e.to_string())))
            }
        }
    })
    .await
    .unwrap_or_else(|e| page(StatusCode::INTERNAL_SERVER_ERROR, "Failed", &text(&e.to_string())))
}
