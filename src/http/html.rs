//! HTML by hand, escaped at every value: text from logs only ever enters a
//! page through [`text`] or [`attr`].

use std::fmt::Write as _;

use axum::response::Html;

/// Escapes text for an element's content.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than line breaks and tabs never reach a page.
            c if c.is_control() && !matches!(c, '\n' | '\t') => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a double-quoted attribute value (same rules).
pub(crate) fn attr(s: &str) -> String {
    text(s)
}

/// What the layout needs to know about a page.
pub(crate) struct Page<'a> {
    pub(crate) title: &'a str,
    /// The session's CSRF token (logged-in pages).
    pub(crate) csrf: Option<&'a str>,
    /// Which tab is current.
    pub(crate) nav: &'a str,
    /// `data-page` on `<body>`: which part of the script runs.
    pub(crate) kind: &'a str,
    /// The caller may approve, reject and silence.
    pub(crate) admin: bool,
}

impl<'a> Page<'a> {
    pub(crate) fn new(title: &'a str, csrf: Option<&'a str>) -> Self {
        Page {
            title,
            csrf,
            nav: "",
            kind: "",
            admin: false,
        }
    }
}

/// The whole document around `body` (already escaped HTML).
pub(crate) fn page(p: &Page<'_>, body: &str) -> Html<String> {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · relive</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
{}</head>
<body data-page="{}" data-admin="{}">
"#,
        text(p.title),
        p.csrf
            .map(|c| format!(r#"<meta name="csrf-token" content="{}">"#, attr(c)))
            .unwrap_or_default(),
        attr(p.kind),
        p.admin,
    );
    if let Some(csrf) = p.csrf {
        out.push_str(r##"<a class="skip" href="#main">Skip to content</a><header class="top"><a class="brand" href="/">relive</a><nav aria-label="Main">"##);
        for (href, name) in [
            ("/search", "Search"),
            ("/incidents", "Incidents"),
            ("/migrations", "Migrations"),
        ] {
            let current = if name.eq_ignore_ascii_case(p.nav) {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(out, r#"<a href="{href}"{current}>{name}</a>"#);
        }
        let _ = write!(
            out,
            r#"</nav><span class="live" id="live" aria-live="polite"></span><form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="{}"><button type="submit">Log out</button></form></header>"#,
            attr(csrf)
        );
    }
    out.push_str(r#"<div id="main">"#);
    out.push_str(body);
    out.push_str("</div></body></html>\n");
    Html(out)
}

/// A `<time>` element: UTC in the attribute and the title, shown in the
/// browser's zone by the script (UTC without it).
pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    let iso = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!(
        r#"<time datetime="{iso}" title="{} UTC">{}</time>"#,
        t.format("%Y-%m-%d %H:%M:%S%.3f"),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_text() {
        let vm = "<img src=x onerror=alert(1)>\"'&\u{1b}[31m";
        let out = text(vm);
        assert_eq!(
            out,
            "&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;\\x1b[31m"
        );
        assert!(!out.contains('<') && !out.contains('"') && !out.contains('\u{1b}'));
    }
}
