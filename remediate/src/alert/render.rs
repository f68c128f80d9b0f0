//! What a notification says, in the order an on-call admin reads it: which
//! VM failed to move from which host to which, when, how many times, the
//! root cause and its confidence, the evidence timeline (host, time, event
//! id, one line each), the playbook's checks and proposed fix with its
//! class, and links into the web UI.
//!
//! Log text (VM names, messages) is data: one line without control
//! characters in the plain text, HTML-escaped in the HTML part.

use std::fmt::Write as _;

use correlate::Incident;

use super::display::one_line;
use super::state::Notification;
use super::{Alert, AlertState};

/// Evidence lines per alert in a message; the rest is counted, not hidden.
pub const MAX_EVIDENCE: usize = 15;
/// Characters of an event's message shown in its evidence line.
const MESSAGE_CHARS: usize = 160;

/// What a fix class means, in plain words.
pub fn class_words(class: &str) -> &'static str {
    match class {
        "auto" => "auto: safe to run without asking",
        "approval" => "approval: waits for an admin to approve",
        "downtime" => "downtime: stops VMs or the cluster, needs approval and a window",
        _ => "manual",
    }
}

fn host(h: &Option<String>) -> &str {
    h.as_deref().filter(|h| !h.is_empty()).unwrap_or("?")
}

fn route(incident: &Incident) -> String {
    format!(
        "{}→{}",
        one_line(host(&incident.source_host), 64),
        one_line(host(&incident.destination_host), 64)
    )
}

fn distinct_vms(alerts: &[Alert]) -> usize {
    let mut vms: Vec<&str> = alerts.iter().map(|a| a.vm()).collect();
    vms.sort_unstable();
    vms.dedup();
    vms.len()
}

/// The subject line: `[relive] ADFS1 NODE-B→NODE-A: <cause> (3 VMs)`.
pub fn subject(n: &Notification) -> String {
    let (prefix, alerts) = match n.status() {
        AlertState::Firing => ("", &n.firing),
        AlertState::Resolved => ("RESOLVED ", &n.resolved),
    };
    let Some(first) = alerts.first() else {
        return "[relive] (empty notification)".into();
    };
    let prefix = if prefix.is_empty() && first.approval.is_some() {
        "APPROVAL NEEDED "
    } else if prefix.is_empty() && first.escalation.is_some() {
        "ESCALATED "
    } else {
        prefix
    };
    let mut text = format!(
        "[relive] {prefix}{} {}: {}",
        first.vm(),
        route(&first.incident),
        first.cause_title
    );
    let vms = distinct_vms(alerts);
    if vms > 1 {
        let _ = write!(text, " ({vms} VMs)");
    } else if first.incident.count > 1 {
        let _ = write!(text, " ({} attempts)", first.incident.count);
    }
    if !n.covers.is_empty() && n.status() == AlertState::Firing {
        let _ = write!(text, " +{} explained", n.covers.len());
    }
    one_line(&text, 250)
}

/// The line of an evidence message that says why (a 21502 body opens with
/// headlines every failure shares): what one line of a timeline shows.
pub(crate) fn cause_line(e: &correlate::Evidence) -> &str {
    e.lines_cause_first().first().copied().unwrap_or("")
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn short_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Link to an incident's page.
pub fn incident_url(base: &str, id: &str) -> String {
    format!("{base}/incidents/{}", url_segment(id))
}

/// Link to approve an incident's fix.
pub fn approve_url(base: &str, id: &str) -> String {
    format!("{base}/incidents/{}#approve", url_segment(id))
}

fn url_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The plain-text body.
pub fn text(n: &Notification) -> String {
    let mut out = String::new();
    let firing = n.firing.len();
    if firing > 1 {
        let _ = writeln!(
            out,
            "{} live migrations failed ({} VMs) with the same cause.\n",
            firing,
            distinct_vms(&n.firing)
        );
    }
    for alert in &n.firing {
        alert_text(&mut out, alert, &n.external_url);
    }
    if !n.covers.is_empty() && firing > 0 {
        let _ = writeln!(
            out,
            "This cause also explains {} other failed migration{} in the same cluster and time, not alerted separately:",
            n.covers.len(),
            if n.covers.len() == 1 { "" } else { "s" }
        );
        for c in &n.covers {
            let _ = writeln!(
                out,
                "  - {} (incident {}, classified {})",
                one_line(&c.vm, 80),
                c.fingerprint,
                c.root_cause
            );
        }
        out.push('\n');
    }
    if !n.resolved.is_empty() {
        let _ = writeln!(out, "Resolved:");
        for alert in &n.resolved {
            let i = &alert.incident;
            let _ = writeln!(
                out,
                "  - {} {}: {} — a later migration succeeded{}.",
                alert.vm(),
                route(i),
                alert.cause_title,
                i.resolved_at
                    .map(|t| format!(" at {}", time(t)))
                    .unwrap_or_default()
            );
            let _ = writeln!(out, "    {}", incident_url(&n.external_url, &i.id));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "-- \nrelive notification {} (group {}, message {} of this thread)",
        n.id,
        one_line(&n.group_key, 200),
        n.sequence + 1
    );
    out
}

fn alert_text(out: &mut String, alert: &Alert, base: &str) {
    let i = &alert.incident;
    let _ = writeln!(
        out,
        "{} failed to live-migrate from {} to {}.",
        alert.vm(),
        one_line(host(&i.source_host), 64),
        one_line(host(&i.destination_host), 64)
    );
    if let Some(id) = &i.vm_id {
        let _ = writeln!(out, "VM id:      {}", one_line(id, 64));
    }
    let _ = writeln!(
        out,
        "When:       {}{}",
        time(i.first_seen),
        if i.last_seen > i.first_seen {
            format!(" (last event {})", time(i.last_seen))
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "Attempts:   {} failed{}",
        i.count,
        if i.related_vms > 0 {
            format!(
                "; at least {} other VM{} failed with the same cause within ten minutes",
                i.related_vms,
                if i.related_vms == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "Root cause: {} ({}), confidence {:.0}%",
        alert.cause_title,
        i.root_cause,
        i.confidence * 100.0
    );
    if let Some(previous) = &alert.previous_cause {
        let _ = writeln!(
            out,
            "            (changed by later evidence; it was first named {previous})"
        );
    }
    if !i.remediation.summary.is_empty() {
        let _ = writeln!(out, "            {}", one_line(&i.remediation.summary, 600));
    }
    if let Some(reason) = &alert.escalation {
        let _ = writeln!(
            out,
            "Remediation: relive could not finish the repair; a person must act: {}\n            (every step: relive actions --incident {})",
            one_line(reason, 1000),
            i.id
        );
    }
    if let Some(ask) = &alert.approval {
        let _ = writeln!(
            out,
            "Approval needed: {} ({})\n  Approve: {}\n  Reject:  {}\n  (the links work once, until {}; or: relive approve {})",
            one_line(&ask.action, 300),
            ask.class,
            ask.approve_url,
            ask.reject_url,
            ask.expires.format("%Y-%m-%d %H:%M UTC"),
            ask.key
        );
    }
    for l in &i.lookalikes {
        let _ = writeln!(
            out,
            "            Could also be {}; what settles it: {}",
            one_line(&l.root_cause, 80),
            one_line(&l.settle, 600)
        );
    }
    let _ = writeln!(out, "\nEvidence ({} events):", i.evidence.len());
    for e in i.evidence.iter().take(MAX_EVIDENCE) {
        let _ = writeln!(
            out,
            "  {}  {:<12} {:>5}  {}",
            short_time(e.timestamp),
            one_line(parsers::event::short_host(&e.host), 32),
            e.event_id,
            one_line(cause_line(e), MESSAGE_CHARS)
        );
    }
    if i.evidence.len() > MAX_EVIDENCE {
        let _ = writeln!(
            out,
            "  … {} more events: relive explain {}",
            i.evidence.len() - MAX_EVIDENCE,
            i.id
        );
    }
    let r = &i.remediation;
    if !r.confirm.is_empty() {
        let _ = writeln!(out, "\nChecks:");
        for (k, step) in r.confirm.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", k + 1, step.title);
            if !step.command.is_empty() {
                let _ = writeln!(out, "     {}", step.command);
            }
        }
    }
    if !r.steps.is_empty() {
        let _ = writeln!(out, "\nProposed fix ({}):", class_words(&r.fix_class));
        for (k, step) in r.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. [{}] {}",
                k + 1,
                step.class.as_deref().unwrap_or("manual"),
                step.title
            );
            if !step.command.is_empty() {
                let _ = writeln!(out, "     {}", step.command);
            }
        }
        let _ = writeln!(out, "{}", placeholder_values(i));
    }
    let _ = writeln!(out, "\nIncident: {}", incident_url(base, &i.id));
    if !r.steps.is_empty() {
        let _ = writeln!(out, "Approve:  {}", approve_url(base, &i.id));
    }
    out.push('\n');
}

/// The values the playbook's placeholders stand for: shown as data next to
/// the commands, never pasted into them.
fn placeholder_values(i: &Incident) -> String {
    format!(
        "  In the commands: {{vm_name}} = '{}', {{vm_id}} = '{}', {{source_host}} = '{}', {{destination_host}} = '{}'",
        one_line(i.vm_name.as_deref().unwrap_or(""), 80),
        one_line(i.vm_id.as_deref().unwrap_or(""), 64),
        one_line(host(&i.source_host), 64),
        one_line(host(&i.destination_host), 64),
    )
}

/// `text` made safe for HTML text and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The HTML body (the same content as [`text`]; every value escaped).
pub fn html(n: &Notification) -> String {
    let h = |t: &str| escape_html(&one_line(t, 2000));
    let mut out = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">",
    );
    let _ = write!(out, "<h2>{}</h2>", h(&subject(n)));
    for alert in &n.firing {
        let i = &alert.incident;
        let r = &i.remediation;
        let _ = write!(
            out,
            "<h3>{} failed to live-migrate from {} to {}</h3><table>\
             <tr><td><b>When</b></td><td>{}</td></tr>\
             <tr><td><b>Attempts</b></td><td>{} failed</td></tr>\
             <tr><td><b>Root cause</b></td><td>{} (<code>{}</code>), confidence {:.0}%<br>{}</td></tr></table>",
            h(alert.vm()),
            h(host(&i.source_host)),
            h(host(&i.destination_host)),
            h(&time(i.first_seen)),
            i.count,
            h(&alert.cause_title),
            h(&i.root_cause),
            i.confidence * 100.0,
            h(&r.summary),
        );
        if let Some(reason) = &alert.escalation {
            let _ = write!(
                out,
                "<p><b>Remediation:</b> relive could not finish the repair; a person must act: {} \
                 (every step: <code>relive actions --incident {}</code>)</p>",
                h(reason),
                h(&i.id)
            );
        }
        if let Some(ask) = &alert.approval {
            let _ = write!(
                out,
                "<p><b>Approval needed:</b> {} ({}) · <a href=\"{}\">Approve</a> · <a href=\"{}\">Reject</a> \
                 (the links work once, until {}; or <code>relive approve {}</code>)</p>",
                h(&ask.action),
                h(&ask.class),
                h(&ask.approve_url),
                h(&ask.reject_url),
                ask.expires.format("%Y-%m-%d %H:%M UTC"),
                h(&ask.key)
            );
        }
        for l in &i.lookalikes {
            let _ = write!(
                out,
                "<p>Could also be <code>{}</code>; what settles it: {}</p>",
                h(&l.root_cause),
                h(&l.settle)
            );
        }
        let _ = write!(
            out,
            "<h4>Evidence ({} events)</h4><table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\">\
             <tr><th>Time (UTC)</th><th>Host</th><th>Event</th><th>Message</th></tr>",
            i.evidence.len()
        );
        for e in i.evidence.iter().take(MAX_EVIDENCE) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                h(&short_time(e.timestamp)),
                h(parsers::event::short_host(&e.host)),
                e.event_id,
                h(&one_line(cause_line(e), MESSAGE_CHARS))
            );
        }
        out.push_str("</table>");
        if i.evidence.len() > MAX_EVIDENCE {
            let _ = write!(
                out,
                "<p>… {} more events: <code>relive explain {}</code></p>",
                i.evidence.len() - MAX_EVIDENCE,
                h(&i.id)
            );
        }
        if !r.confirm.is_empty() {
            out.push_str("<h4>Checks</h4><ol>");
            for step in &r.confirm {
                let _ = write!(out, "<li>{}", h(&step.title));
                if !step.command.is_empty() {
                    let _ = write!(out, "<pre>{}</pre>", escape_html(&step.command));
                }
                out.push_str("</li>");
            }
            out.push_str("</ol>");
        }
        if !r.steps.is_empty() {
            let _ = write!(
                out,
                "<h4>Proposed fix ({})</h4><ol>",
                h(class_words(&r.fix_class))
            );
            for step in &r.steps {
                let _ = write!(
                    out,
                    "<li>[{}] {}",
                    h(step.class.as_deref().unwrap_or("manual")),
                    h(&step.title)
                );
                if !step.command.is_empty() {
                    let _ = write!(out, "<pre>{}</pre>", escape_html(&step.command));
                }
                out.push_str("</li>");
            }
            let _ = write!(out, "</ol><p>{}</p>", h(&placeholder_values(i)));
        }
        let _ = write!(
            out,
            "<p><a href=\"{}\">Open the incident</a>",
            escape_html(&incident_url(&n.external_url, &i.id))
        );
        if !r.steps.is_empty() {
            let _ = write!(
                out,
                " · <a href=\"{}\">Approve the fix</a>",
                escape_html(&approve_url(&n.external_url, &i.id))
            );
        }
        out.push_str("</p><hr>");
    }
    if !n.covers.is_empty() && !n.firing.is_empty() {
        let _ = write!(
            out,
            "<p>This cause also explains {} other failed migrations in the same cluster and time, not alerted separately:</p><ul>",
            n.covers.len()
        );
        for c in &n.covers {
            let _ = write!(
                out,
                "<li>{} (incident <code>{}</code>, classified {})</li>",
                h(&c.vm),
                h(&c.fingerprint),
                h(&c.root_cause)
            );
        }
        out.push_str("</ul>");
    }
    if !n.resolved.is_empty() {
        out.push_str("<h3>Resolved</h3><ul>");
        for alert in &n.resolved {
            let i = &alert.incident;
            let _ = write!(
                out,
                "<li>{} {}: {} — a later migration succeeded{}. <a href=\"{}\">Incident</a></li>",
                h(alert.vm()),
                h(&route(i)),
                h(&alert.cause_title),
                i.resolved_at
                    .map(|t| format!(" at {}", time(t)))
                    .unwrap_or_default(),
                escape_html(&incident_url(&n.external_url, &i.id))
            );
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        "<p style=\"color:#777\">relive notification {} · message {} of this thread</p></body></html>",
        h(&n.id),
        n.sequence + 1
    );
    out
}
