//! The web UI's pages, rendered by the server from the same functions the
//! API answers with. Every value from a log goes through `html::text` or
//! `html::attr`; the only script is `/assets/app.js`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use correlate::Status;

use super::api::{self, ApiError, Params};
use super::auth::{percent, Caller, Role};
use super::html::{self, attr, text, time, Page};
use super::{svg, AppState};

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Headers on every answer: a Content-Security-Policy that runs no inline
/// script and loads nothing from elsewhere, no sniffing, no framing, no
/// referrer to other sites (same-origin keeps a real `Origin` on our own
/// form posts), no caching of data.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !asset && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `/assets/app.js`.
pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// `/assets/app.css`.
pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
        .into_response()
}

/// `/`: the incident list.
pub(crate) async fn home() -> Redirect {
    Redirect::to("/incidents")
}

/// Any other path.
pub(crate) async fn not_found(caller: Option<Extension<Caller>>) -> Response {
    let csrf = caller.as_ref().and_then(|c| c.csrf.clone());
    let page = Page {
        nav: "",
        ..Page::new("Not found", csrf.as_deref())
    };
    (
        StatusCode::NOT_FOUND,
        html::page(
            &page,
            r#"<main><h1>Not found</h1><p><a href="/incidents">Incidents</a></p></main>"#,
        ),
    )
        .into_response()
}

fn layout<'a>(caller: &'a Caller, title: &'a str, nav: &'a str, kind: &'a str) -> Page<'a> {
    Page {
        title,
        csrf: caller.csrf.as_deref().or(Some("")),
        nav,
        kind,
        admin: caller.role == Role::Admin,
    }
}

fn error_page(caller: &Caller, e: &ApiError) -> Response {
    let page = layout(caller, "Error", "", "");
    (
        e.status(),
        html::page(
            &page,
            &format!(
                r#"<main><h1>{}</h1><p class="error">{}</p></main>"#,
                e.status().as_u16(),
                text(e.message())
            ),
        ),
    )
        .into_response()
}

/// A query string from pairs, empty values left out.
fn qs(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A term that matches `value` exactly in `field`.
fn term(field: &str, value: &str) -> String {
    if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        format!("{field}:{value}")
    } else {
        format!(
            "{field}:\"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }
}

// ------------------------------------------------------------------ search

/// `GET /search`.
pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    p: Params,
) -> Response {
    let p = match api::params(p) {
        Ok(p) => p,
        Err(e) => return error_page(&caller, &e),
    };
    let q = p.get("q").cloned().unwrap_or_default();
    let since = p.get("since").cloned().unwrap_or_default();
    let until = p.get("until").cloned().unwrap_or_default();
    let mut ask_params = p.clone();
    ask_params.insert("count_by".into(), "host,event_id".into());
    ask_params.insert("histogram".into(), "auto".into());
    if !ask_params.contains_key("limit") {
        ask_params.insert("limit".into(), "100".into());
    }
    let result = match api::search_ask(&ask_params) {
        Ok(ask) => {
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                let index = state.index()?;
                api::run_search(index.as_deref(), &ask)
            })
            .await
            .unwrap_or_else(|e| Err(ApiError::internal(e)))
        }
        Err(e) => Err(e),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<main class="search"><h1>Search</h1>
<form method="get" action="/search" class="query" role="search">
<label for="q">Query</label>
<input id="q" name="q" value="{}" placeholder="event_id:21502 AND host:node-b" autocomplete="off" spellcheck="false" aria-describedby="q-help">
<label for="since">From</label><input id="since" name="since" value="{}" placeholder="24h or 2026-12-07T10:00:00Z">
<label for="until">To</label><input id="until" name="until" value="{}" placeholder="now">
<button type="submit">Search</button>
<p id="q-help" class="hint">Fields: host, event_id, level, channel, provider, vm_name, vm_id, hresult, message, format. AND, OR, NOT, "phrases", wildcards, [a TO b].</p>
</form>
<p class="ranges">Range: "#,
        attr(&q),
        attr(&since),
        attr(&until)
    );
    for (label, span) in [
        ("15 min", "15m"),
        ("1 h", "1h"),
        ("24 h", "24h"),
        ("7 days", "7d"),
        ("30 days", "30d"),
        ("all", ""),
    ] {
        let current = if since == span && until.is_empty() {
            r#" aria-current="true""#
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<a href="/search{}"{current}>{label}</a> "#,
            attr(&qs(&[("q", &q), ("since", span)]))
        );
    }
    body.push_str("</p>");
    match result {
        Err(e) => {
            let _ = write!(
                body,
                r#"<div class="query-error" role="alert"><p>{}</p>"#,
                text(e.message())
            );
            if let Some(pos) = e.position() {
                let _ = write!(
                    body,
                    r#"<pre class="caret">{}
{}^</pre>"#,
                    text(&q),
                    " ".repeat(pos.min(q.chars().count()))
                );
            }
            body.push_str("</div>");
        }
        Ok(r) => {
            let _ = write!(
                body,
                r#"<p class="summary" id="result-summary"><strong>{}</strong> matching events; the newest {} shown ({:.0} ms)</p>"#,
                r.total,
                r.hits.len(),
                r.took_ms
            );
            if let Some(h) = &r.histogram {
                let bars: Vec<svg::Bar> = h
                    .buckets
                    .iter()
                    .map(|b| {
                        let end = b.start + chrono::Duration::milliseconds(h.interval_ms);
                        svg::Bar {
                            start: b.start,
                            count: b.count,
                            href: format!(
                                "/search{}",
                                qs(&[
                                    ("q", &q),
                                    ("since", &b.start.to_rfc3339()),
                                    ("until", &end.to_rfc3339())
                                ])
                            ),
                        }
                    })
                    .collect();
                let _ = write!(
                    body,
                    r#"<figure class="chart" id="histogram"><figcaption>Matches over time ({} per bar; a bar zooms in)</figcaption>{}</figure>"#,
                    text(&span_words(h.interval_ms)),
                    svg::histogram(&bars, h.interval_ms, "Matching events over time")
                );
            }
            body.push_str(r#"<div class="facets">"#);
            for (field, title) in [("host", "By host"), ("event_id", "By event id")] {
                let _ = write!(
                    body,
                    r#"<section class="facet" id="by-{field}"><h2>{title}</h2><ul>"#
                );
                for c in r.counts.get(field).into_iter().flatten() {
                    let narrowed = if q.trim().is_empty() {
                        term(field, &c.value)
                    } else {
                        format!("({}) AND {}", q.trim(), term(field, &c.value))
                    };
                    let _ = write!(
                        body,
                        r#"<li><a href="/search{}">{}</a> <span class="n">{}</span></li>"#,
                        attr(&qs(&[
                            ("q", &narrowed),
                            ("since", &since),
                            ("until", &until)
                        ])),
                        text(&c.value),
                        c.count
                    );
                }
                body.push_str("</ul></section>");
            }
            body.push_str("</div>");
            body.push_str(
                r#"<table class="results" id="results"><thead><tr><th scope="col">Time</th><th scope="col">Host</th><th scope="col">Event</th><th scope="col">Level</th><th scope="col">Message (expand for the event)</th></tr></thead><tbody>"#,
            );
            for hit in &r.hits {
                let e = &hit.event;
                let message = e["message"].as_str().unwrap_or_default();
                let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                let pretty = serde_json::to_string_pretty(e).unwrap_or_default();
                let _ = write!(
                    body,
                    r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><details><summary>{}</summary><pre class="event">{}</pre></details></td></tr>"#,
                    time(hit.timestamp),
                    text(e["host"]["name"].as_str().unwrap_or_default()),
                    text(&e["winlog"]["event_id"].to_string()),
                    text(e["log"]["level"].as_str().unwrap_or_default()),
                    text(first),
                    text(&pretty)
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    body.push_str("</main>");
    html::page(&layout(&caller, "Search", "search", "search"), &body).into_response()
}

fn span_words(ms: i64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{} d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{ms} ms"),
    }
}

// --------------------------------------------------------------- incidents

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Open => "open",
        Status::Resolved => "resolved",
    }
}

fn age(t: DateTime<Utc>) -> String {
    let d = Utc::now() - t;
    match d.num_seconds() {
        s if s < 0 => "just now".into(),
        s if s < 90 => format!("{s} s"),
        s if s < 5400 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn incident_rows(list: &[api::IncidentSummary]) -> String {
    let mut out = String::new();
    if list.is_empty() {
        out.push_str(r#"<tr><td colspan="8" class="empty">No incidents match.</td></tr>"#);
    }
    for i in list {
        let _ = write!(
            out,
            r#"<tr class="{}" data-id="{}"><td><a href="/incidents/{}">{}</a></td><td>{}</td><td>{} → {}</td><td>{}</td><td class="num">{}</td><td class="num">{:.2}</td><td title="{}">{}</td><td>{}</td></tr>"#,
            status_word(i.status),
            attr(&i.id),
            attr(&percent(&i.id)),
            text(&i.root_cause),
            text(i.vm_name.as_deref().or(i.vm_id.as_deref()).unwrap_or("?")),
            text(i.source_host.as_deref().unwrap_or("?")),
            text(i.destination_host.as_deref().unwrap_or("?")),
            status_word(i.status),
            i.count,
            i.confidence,
            attr(&i.last_seen.to_rfc3339()),
            age(i.last_seen),
            text(&i.title),
        );
    }
    out
}

/// `GET /incidents` (`?partial=rows`: the table body only, for live updates).
pub(crate) async fn incidents(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    p: Params,
) -> Response {
    let p = match api::params(p) {
        Ok(p) => p,
        Err(e) => return error_page(&caller, &e),
    };
    let data = state.ctx.data.clone();
    let query = p.clone();
    let listed = tokio::task::spawn_blocking(move || api::list_incidents(&data, &query))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(e)));
    let (total, list) = match listed {
        Ok(l) => l,
        Err(e) => return error_page(&caller, &e),
    };
    if p.get("partial").map(String::as_str) == Some("rows") {
        return Html(incident_rows(&list)).into_response();
    }
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let sort = p
        .get("sort")
        .cloned()
        .unwrap_or_else(|| "-last_seen".into());
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<main class="incidents"><h1>Incidents</h1>
<form method="get" action="/incidents" class="filters">
<label for="f-status">Status</label><select id="f-status" name="status"><option value="">any</option><option value="open"{}>open</option><option value="resolved"{}>resolved</option></select>
<label for="f-cause">Root cause</label><input id="f-cause" name="root_cause" value="{}">
<label for="f-vm">VM</label><input id="f-vm" name="vm" value="{}">
<label for="f-host">Host</label><input id="f-host" name="host" value="{}">
<input type="hidden" name="sort" value="{}">
<button type="submit">Filter</button></form>
<p class="summary">{} incidents{}</p>
<table class="list" id="incident-table"><thead><tr>"#,
        if get("status") == "open" {
            " selected"
        } else {
            ""
        },
        if get("status") == "resolved" {
            " selected"
        } else {
            ""
        },
        attr(&get("root_cause")),
        attr(&get("vm")),
        attr(&get("host")),
        attr(&sort),
        total,
        if total > list.len() {
            format!(", the first {} shown", list.len())
        } else {
            String::new()
        }
    );
    for (key, label) in [
        ("root_cause", "Root cause"),
        ("vm", "VM"),
        ("", "Route"),
        ("", "Status"),
        ("count", "Count"),
        ("confidence", "Confidence"),
        ("last_seen", "Age"),
        ("", "What happened"),
    ] {
        if key.is_empty() {
            let _ = write!(body, r#"<th scope="col">{label}</th>"#);
            continue;
        }
        let (next, mark, aria) = if sort == key {
            (format!("-{key}"), " ▲", r#" aria-sort="ascending""#)
        } else if sort == format!("-{key}") {
            (key.to_string(), " ▼", r#" aria-sort="descending""#)
        } else {
            (format!("-{key}"), "", "")
        };
        let _ = write!(
            body,
            r#"<th scope="col"{aria}><a href="/incidents{}">{label}{mark}</a></th>"#,
            attr(&qs(&[
                ("status", &get("status")),
                ("root_cause", &get("root_cause")),
                ("vm", &get("vm")),
                ("host", &get("host")),
                ("sort", &next)
            ]))
        );
    }
    let _ = write!(
        body,
        r#"</tr></thead><tbody id="incident-rows" data-live="rows">{}</tbody></table></main>"#,
        incident_rows(&list)
    );
    html::page(
        &layout(&caller, "Incidents", "incidents", "incidents"),
        &body,
    )
    .into_response()
}

fn lane_title(lane: &str, i: &correlate::Incident) -> String {
    match lane {
        "source" => format!("Source {}", i.source_host.as_deref().unwrap_or("?")),
        "destination" => format!(
            "Destination {}",
            i.destination_host.as_deref().unwrap_or("?")
        ),
        "cluster" => "Cluster and other hosts".into(),
        _ => "Other VMs, same cause".into(),
    }
}

fn evidence_card(e: &correlate::Evidence, note: Option<&str>) -> String {
    let lines = e.lines_cause_first();
    let first = lines.first().copied().unwrap_or("");
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<details class="event"><summary><span class="eid">{}</span> <span class="level {}">{}</span> {}{}</summary><dl>"#,
        e.event_id,
        attr(&e.level.to_ascii_lowercase()),
        text(&e.level),
        note.map(|n| format!("<em>{}</em> ", text(n)))
            .unwrap_or_default(),
        text(first)
    );
    let mut field = |k: &str, v: &str| {
        if !v.is_empty() {
            let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", text(v));
        }
    };
    field("host", &e.host);
    field("channel", &e.channel);
    field("provider", &e.provider);
    field(
        "record",
        &e.record_id.map(|r| r.to_string()).unwrap_or_default(),
    );
    field("HRESULT", e.hresult.as_deref().unwrap_or(""));
    field("rule", &e.rule);
    field(
        "from",
        &e.origin
            .path
            .as_deref()
            .map(|p| format!("{p} at byte {}", e.origin.offset))
            .unwrap_or_default(),
    );
    let _ = write!(
        out,
        r#"</dl><pre class="message">{}</pre></details>"#,
        text(&e.message)
    );
    out
}

fn plan_section(x: &api::Explanation, admin: bool) -> String {
    let mut out = String::new();
    if let Some(problem) = &x.plan_problem {
        let _ = write!(out, r#"<p class="note">{}</p>"#, text(problem));
    }
    if x.actions.is_empty() {
        out.push_str("<p>No actions.</p>");
        return out;
    }
    out.push_str(r#"<table class="plan"><thead><tr><th scope="col">Stage</th><th scope="col">Action</th><th scope="col">Class</th><th scope="col">On</th><th scope="col">State</th><th scope="col"></th></tr></thead><tbody>"#);
    for a in &x.actions {
        let stage = api::word(a.stage);
        let class = a.class.as_str();
        let buttons = if a.waiting && admin {
            format!(
                r#"<button type="button" class="approve" data-key="{k}" data-incident="{i}">Approve</button> <button type="button" class="reject" data-key="{k}" data-incident="{i}">Reject</button>"#,
                k = attr(&a.key),
                i = attr(&x.incident.id)
            )
        } else if a.waiting {
            "waiting for an admin".to_string()
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<tr data-key="{}"><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td class="state">{}</td><td>{}</td></tr>"#,
            attr(&a.key),
            text(&stage),
            text(&a.title),
            a.detail
                .as_deref()
                .map(|d| format!(r#"<br><small>{}</small>"#, text(d)))
                .unwrap_or_default(),
            text(class),
            text(a.target.as_deref().unwrap_or("")),
            text(&a.state),
            buttons
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn audit_section(x: &api::Explanation) -> String {
    let mut out = String::new();
    if x.audit.is_empty() {
        out.push_str("<p>Nothing recorded yet.</p>");
        return out;
    }
    out.push_str("<ol class=\"audit\">");
    for e in &x.audit {
        let what = api::word(e.what);
        let _ = write!(
            out,
            "<li>{} <strong>{}</strong> {}{}{}</li>",
            time(e.at),
            text(&what),
            text(e.key.as_deref().unwrap_or("")),
            e.who
                .as_deref()
                .map(|w| format!(" by {}", text(w)))
                .unwrap_or_default(),
            if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", text(&e.detail))
            }
        );
    }
    out.push_str("</ol>");
    out
}

/// `GET /incidents/{id}` (`?partial=plan` / `?partial=audit`: one section).
pub(crate) async fn incident(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    p: Params,
) -> Response {
    let partial = p.ok().and_then(|q| q.0.get("partial").cloned());
    let st = state.clone();
    let explained = tokio::task::spawn_blocking(move || api::explain_incident(&st, &id))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(e)));
    let x = match explained {
        Ok(x) => x,
        Err(e) => return error_page(&caller, &e),
    };
    let admin = caller.role == Role::Admin;
    match partial.as_deref() {
        Some("plan") => return Html(plan_section(&x, admin)).into_response(),
        Some("audit") => return Html(audit_section(&x)).into_response(),
        _ => {}
    }
    let i = &x.incident;
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<main class="incident" data-incident="{}"><p class="crumbs"><a href="/incidents">Incidents</a></p>
<h1>{}</h1>
<dl class="facts"><dt>Root cause</dt><dd>{}</dd><dt>VM</dt><dd>{}{}</dd><dt>Route</dt><dd>{} → {}</dd><dt>Status</dt><dd id="status">{}{}</dd><dt>Confidence</dt><dd>{:.2}</dd><dt>Failed attempts</dt><dd>{}</dd><dt>First seen</dt><dd>{}</dd><dt>Last seen</dt><dd>{}</dd><dt>Incident</dt><dd><code>{}</code></dd></dl>"#,
        attr(&i.id),
        text(&i.title),
        text(&i.root_cause),
        text(i.vm_name.as_deref().unwrap_or("?")),
        i.vm_id
            .as_deref()
            .map(|v| format!(" <small>{}</small>", text(v)))
            .unwrap_or_default(),
        text(i.source_host.as_deref().unwrap_or("?")),
        text(i.destination_host.as_deref().unwrap_or("?")),
        status_word(i.status),
        i.resolved_at
            .map(|t| format!(" at {}", time(t)))
            .unwrap_or_default(),
        i.confidence,
        i.count,
        time(i.first_seen),
        time(i.last_seen),
        text(&i.id),
    );
    let mut notes = String::new();
    for a in &i.alternatives {
        let _ = write!(
            notes,
            "<li>Also possible: {} (confidence {:.2})</li>",
            text(&a.root_cause),
            a.confidence
        );
    }
    for l in &i.lookalikes {
        let _ = write!(
            notes,
            "<li>Could also be {}; what settles it: {}</li>",
            text(&l.root_cause),
            text(&l.settle)
        );
    }
    if i.related_vms > 0 {
        let _ = write!(
            notes,
            "<li>At least {} other VM(s) failed with the same cause within ten minutes: likely cluster-wide.</li>",
            i.related_vms
        );
    }
    for w in &i.warnings {
        let _ = write!(notes, "<li>{}</li>", text(w));
    }
    if !notes.is_empty() {
        let _ = write!(body, r#"<ul class="notes">{notes}</ul>"#);
    }
    // The timeline: one row per event in time order, one column per lane.
    let lanes = ["source", "destination", "cluster", "related"];
    let mut rows: Vec<(DateTime<Utc>, &str, String)> = i
        .evidence
        .iter()
        .zip(&x.lanes)
        .map(|(e, lane)| (e.timestamp, *lane, evidence_card(e, None)))
        .collect();
    for r in &x.related {
        let note = format!("VM {}", r.vm_name.as_deref().unwrap_or("?"));
        rows.push((
            r.evidence.timestamp,
            "related",
            format!(
                r#"{}<a href="/incidents/{}">incident</a>"#,
                evidence_card(&r.evidence, Some(&note)),
                attr(&percent(&r.incident))
            ),
        ));
    }
    rows.sort_by_key(|r| r.0);
    let used: BTreeSet<&str> = rows.iter().map(|r| r.1).collect();
    let shown: Vec<&str> = lanes
        .iter()
        .copied()
        .filter(|l| used.contains(l) || *l != "related")
        .collect();
    body.push_str(r#"<section id="timeline"><h2>Evidence across hosts</h2><div class="lanes-wrap"><table class="lanes"><thead><tr><th scope="col">Time (offset)</th>"#);
    for lane in &shown {
        let _ = write!(
            body,
            r#"<th scope="col" class="lane-{lane}">{}</th>"#,
            text(&lane_title(lane, i))
        );
    }
    body.push_str("</tr></thead><tbody>");
    let first = rows.first().map(|r| r.0);
    for (t, lane, card) in &rows {
        let offset = first.map_or(0.0, |f| (*t - f).num_milliseconds() as f64 / 1000.0);
        let _ = write!(
            body,
            r#"<tr class="lane-{lane}"><td class="when">{}<br><small>+{offset:.3} s</small></td>"#,
            time(*t)
        );
        for l in &shown {
            if l == lane {
                let _ = write!(
                    body,
                    r#"<td class="lane-{l}" data-lane="{l}"><span class="lane-name">{}</span>{card}</td>"#,
                    text(&lane_title(l, i))
                );
            } else {
                let _ = write!(body, r#"<td class="lane-{l} gap"></td>"#);
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></div>");
    if i.evidence_omitted > 0 {
        let _ = write!(
            body,
            r#"<p class="note">{} more evidence events were not kept ([correlate] max_evidence); <a href="/search{}">search finds them</a>.</p>"#,
            i.evidence_omitted,
            attr(&qs(&[(
                "q",
                &i.vm_name
                    .as_deref()
                    .map(|v| term("vm_name", v))
                    .unwrap_or_default()
            )]))
        );
    }
    body.push_str("</section>");
    if let Some(why) = &x.why {
        let _ = write!(
            body,
            r#"<section id="why"><h2>Why</h2><p class="playbook">{} {}</p>"#,
            text(&why.fm),
            text(&why.title)
        );
        for para in why.explanation.split("\n\n") {
            let _ = write!(body, "<p>{}</p>", text(para.trim()));
        }
        body.push_str("</section>");
    }
    let r = &i.remediation;
    if !r.summary.is_empty() {
        let _ = write!(body, r#"<p class="summary">{}</p>"#, text(&r.summary));
    }
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    values.insert("vm_name", i.vm_name.as_deref().unwrap_or("?"));
    values.insert("vm_id", i.vm_id.as_deref().unwrap_or("?"));
    values.insert("source_host", i.source_host.as_deref().unwrap_or("?"));
    values.insert(
        "destination_host",
        i.destination_host.as_deref().unwrap_or("?"),
    );
    if !r.confirm.is_empty() || !r.steps.is_empty() {
        body.push_str(r#"<section id="values"><h2>Values in the commands</h2><p class="hint">The commands keep their placeholders: values from logs are data, never pasted into a command line.</p><dl class="values">"#);
        for (k, v) in &values {
            let _ = write!(body, "<dt><code>{{{k}}}</code></dt><dd>{}</dd>", text(v));
        }
        body.push_str("</dl></section>");
    }
    if !r.confirm.is_empty() {
        body.push_str(r#"<section id="checks"><h2>Checks</h2><ol>"#);
        for s in &r.confirm {
            let _ = write!(body, "<li>{}", text(&s.title));
            if !s.command.is_empty() {
                let _ = write!(body, "<pre><code>{}</code></pre>", text(&s.command));
            }
            body.push_str("</li>");
        }
        body.push_str("</ol></section>");
    }
    if !r.steps.is_empty() {
        let _ = write!(
            body,
            r#"<section id="fix"><h2>Fix</h2><p>Playbook {}, class {}, retry {}.</p><ol>"#,
            text(&r.playbook),
            text(&r.fix_class),
            text(&r.retry)
        );
        for s in &r.steps {
            let _ = write!(
                body,
                "<li><span class=\"class\">[{}]</span> {}",
                text(s.class.as_deref().unwrap_or("-")),
                text(&s.title)
            );
            if !s.command.is_empty() {
                let _ = write!(body, "<pre><code>{}</code></pre>", text(&s.command));
            }
            body.push_str("</li>");
        }
        body.push_str("</ol></section>");
    }
    let _ = write!(
        body,
        r#"<section id="approve"><h2>Plan</h2><div id="plan" data-live="plan">{}</div></section>
<section id="history"><h2>Audit log</h2><div id="audit" data-live="audit">{}</div></section>"#,
        plan_section(&x, admin),
        audit_section(&x)
    );
    body.push_str(r#"<section id="alerts"><h2>Alerts</h2>"#);
    if x.alerts.is_empty() {
        body.push_str("<p>No notification about this incident.</p>");
    } else {
        body.push_str(r#"<table><thead><tr><th scope="col">Queued</th><th scope="col">To</th><th scope="col">Subject</th><th scope="col">Status</th><th scope="col">Attempts</th></tr></thead><tbody>"#);
        for a in &x.alerts {
            let status = api::word(a.status);
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td class=\"num\">{}</td></tr>",
                time(a.queued_at),
                text(&a.target),
                text(&a.subject),
                text(&status),
                a.reason
                    .as_deref()
                    .map(|r| format!(": {}", text(r)))
                    .unwrap_or_default(),
                a.attempts
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section></main>");
    let title = format!("{} {}", i.root_cause, i.vm_name.as_deref().unwrap_or(""));
    html::page(&layout(&caller, &title, "incidents", "incident"), &body).into_response()
}

// -------------------------------------------------------------- migrations

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
        Some(v) => format!("{v:.0} ms"),
        None => "–".into(),
    }
}

/// `GET /migrations`.
pub(crate) async fn migrations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    p: Params,
) -> Response {
    let p = match api::params(p) {
        Ok(p) => p,
        Err(e) => return error_page(&caller, &e),
    };
    let request = match api::stats_request(&p) {
        Ok(r) => r,
        Err(e) => return error_page(&caller, &e),
    };
    let since = p.get("since").cloned().unwrap_or_default();
    let st = state.clone();
    let gathered = tokio::task::spawn_blocking(move || {
        crate::stats::gather(&st.ctx.data, &request)
            .map_err(|e| ApiError::internal(format!("{e:#}")))
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(e)));
    let stats = match gathered {
        Ok(s) => s,
        Err(e) => return error_page(&caller, &e),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<main class="migrations"><h1>Migrations</h1><p class="ranges">Range: "#
    );
    for (label, span) in [
        ("24 h", "24h"),
        ("7 days", "7d"),
        ("30 days", "30d"),
        ("all", ""),
    ] {
        let current = if since == span {
            r#" aria-current="true""#
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<a href="/migrations{}"{current}>{label}</a> "#,
            attr(&qs(&[("since", span)]))
        );
    }
    let t = &stats.total;
    let _ = write!(
        body,
        r#"</p><p class="summary">{} migrations, {} failed ({:.1} %); blackout p50 {} p95 {} p99 {}; total p50 {} p95 {} (from {})</p>"#,
        t.migrations,
        t.failures,
        t.failure_rate * 100.0,
        ms(t.blackout_ms.p50),
        ms(t.blackout_ms.p95),
        ms(t.blackout_ms.p99),
        ms(t.total_ms.p50),
        ms(t.total_ms.p95),
        text(&stats.source)
    );
    // Failure rate per node pair: sources down, destinations across.
    let mut sources: BTreeSet<&str> = BTreeSet::new();
    let mut destinations: BTreeSet<&str> = BTreeSet::new();
    let mut cells: BTreeMap<(&str, &str), &index::stats::Group> = BTreeMap::new();
    for g in &stats.pairs {
        let (s, d) = g.key.split_once(" -> ").unwrap_or((g.key.as_str(), "?"));
        sources.insert(s);
        destinations.insert(d);
        cells.insert((s, d), g);
    }
    body.push_str(r#"<section id="matrix"><h2>Failure rate per node pair</h2>"#);
    if cells.is_empty() {
        body.push_str("<p>No migrations in this range.</p>");
    } else {
        body.push_str(r#"<div class="lanes-wrap"><table class="matrix"><thead><tr><th scope="col">From ↓ To →</th>"#);
        for d in &destinations {
            let _ = write!(body, r#"<th scope="col">{}</th>"#, text(d));
        }
        body.push_str("</tr></thead><tbody>");
        for s in &sources {
            let _ = write!(body, r#"<tr><th scope="row">{}</th>"#, text(s));
            for d in &destinations {
                match cells.get(&(*s, *d)) {
                    Some(g) => {
                        let level = match g.failure_rate {
                            0.0 => 0,
                            r if r < 0.05 => 1,
                            r if r < 0.2 => 2,
                            r if r < 0.5 => 3,
                            _ => 4,
                        };
                        let _ = write!(
                            body,
                            r#"<td class="rate r{level}" title="{} → {}: {} of {} failed">{:.0} %<br><small>{}/{}</small></td>"#,
                            attr(s),
                            attr(d),
                            g.failures,
                            g.migrations,
                            g.failure_rate * 100.0,
                            g.failures,
                            g.migrations
                        );
                    }
                    None => body.push_str(r#"<td class="rate none">–</td>"#),
                }
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");
    let series = |f: fn(&index::stats::Bucket) -> Option<f64>| -> Vec<(DateTime<Utc>, f64)> {
        stats
            .per_hour
            .iter()
            .filter_map(|b| f(b).map(|v| (b.start, v)))
            .collect()
    };
    let _ = write!(
        body,
        r#"<section id="blackout"><h2>Blackout per hour</h2>{}</section><section id="total"><h2>Total time per hour</h2>{}</section>"#,
        svg::lines(
            &[
                ("p50", series(|b| b.blackout_ms.p50)),
                ("p95", series(|b| b.blackout_ms.p95)),
                ("p99", series(|b| b.blackout_ms.p99)),
            ],
            "Blackout percentiles per hour",
            "ms"
        ),
        svg::lines(
            &[
                ("p50", series(|b| b.total_ms.p50)),
                ("p95", series(|b| b.total_ms.p95)),
                ("p99", series(|b| b.total_ms.p99)),
            ],
            "Total time percentiles per hour",
            "ms"
        )
    );
    body.push_str(r#"<section id="transports"><h2>Throughput by transport</h2>"#);
    if stats.transports.is_empty() {
        body.push_str("<p>No transport figures (they come with migration metrics).</p>");
    } else {
        body.push_str(r#"<table><thead><tr><th scope="col">Transport</th><th scope="col">Migrations</th><th scope="col">Failed</th><th scope="col">Throughput</th><th scope="col">Blackout p50</th><th scope="col">p95</th></tr></thead><tbody>"#);
        for g in &stats.transports {
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                text(&g.key),
                g.migrations,
                g.failures,
                g.throughput_mbps
                    .map(|t| format!("{t:.0} Mbit/s"))
                    .unwrap_or_else(|| "–".into()),
                ms(g.blackout_ms.p50),
                ms(g.blackout_ms.p95)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");
    let hosts: Vec<&String> = state.ctx.remediation.hosts.keys().collect();
    body.push_str(r#"<section id="running"><h2>Running migrations</h2>"#);
    if hosts.is_empty() {
        body.push_str("<p>No relive hosts configured (<code>[remediation.hosts]</code> in relive.toml): nothing to follow.</p>");
    } else {
        body.push_str(r#"<div id="running-list" data-poll="/api/v1/migrations" aria-live="polite"><p>Asking the hosts…</p></div>"#);
        if caller.role == Role::Admin {
            body.push_str(r#"<form id="start-migration" class="filters"><label for="m-source">From</label><select id="m-source" name="source">"#);
            for h in &hosts {
                let _ = write!(body, r#"<option>{}</option>"#, text(h));
            }
            body.push_str(r#"</select><label for="m-vm">VM</label><input id="m-vm" name="vm" required><label for="m-destination">To</label><input id="m-destination" name="destination" required><button type="submit">Migrate</button><span id="start-result" role="status"></span></form>"#);
        }
    }
    body.push_str("</section></main>");
    html::page(
        &layout(&caller, "Migrations", "migrations", "migrations"),
        &body,
    )
    .into_response()
}
