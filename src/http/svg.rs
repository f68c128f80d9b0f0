//! Charts as SVG, drawn by the server: no chart library, nothing fetched.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::html::{attr, text};

/// One bar of a histogram: where it starts, its count, and the link a
/// click (or Enter) follows.
pub(crate) struct Bar {
    pub(crate) start: DateTime<Utc>,
    pub(crate) count: u64,
    pub(crate) href: String,
}

/// Matches over time; each bar is a link that zooms into its bucket.
pub(crate) fn histogram(bars: &[Bar], interval_ms: i64, label: &str) -> String {
    let width = 960.0;
    let height = 120.0;
    let top = 8.0;
    let bottom = 20.0;
    let max = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let (first, last) = match (bars.first(), bars.last()) {
        (Some(f), Some(l)) => (
            f.start,
            l.start + chrono::Duration::milliseconds(interval_ms),
        ),
        _ => return r#"<p class="empty">No matches to chart.</p>"#.to_string(),
    };
    let span = (last - first).num_milliseconds().max(1) as f64;
    let bar_w = ((interval_ms as f64 / span) * width).max(2.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="histogram" viewBox="0 0 {width} {height}" role="img" aria-label="{}" preserveAspectRatio="none">"#,
        attr(label)
    );
    for b in bars {
        let x = (b.start - first).num_milliseconds() as f64 / span * width;
        let h = (b.count as f64 / max) * (height - top - bottom);
        let y = height - bottom - h;
        let end = b.start + chrono::Duration::milliseconds(interval_ms);
        let _ = write!(
            out,
            r#"<a href="{}" class="bar"><title>{} – {} UTC: {} events</title><rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"></rect></a>"#,
            attr(&b.href),
            b.start.format("%Y-%m-%d %H:%M:%S"),
            end.format("%H:%M:%S"),
            b.count,
            (bar_w - 1.0).max(1.0),
        );
    }
    let _ = write!(
        out,
        r#"<text x="0" y="{}" class="axis">{}</text><text x="{width}" y="{}" class="axis" text-anchor="end">{}</text><text x="{width}" y="{}" class="axis" text-anchor="end">max {}</text></svg>"#,
        height - 4.0,
        text(&first.format("%Y-%m-%d %H:%M UTC").to_string()),
        height - 4.0,
        text(&last.format("%Y-%m-%d %H:%M UTC").to_string()),
        top + 4.0,
        max as u64
    );
    out
}

/// A line chart of one or more series over time (ms values), with a
/// legend; points are `(time, value)`.
/// A named series of `(time, value)` points.
pub(crate) type Series<'a> = (&'a str, Vec<(DateTime<Utc>, f64)>);

pub(crate) fn lines(series: &[Series<'_>], label: &str, unit: &str) -> String {
    let width = 960.0;
    let height = 200.0;
    let left = 56.0;
    let bottom = 22.0;
    let top = 10.0;
    let points: Vec<&(DateTime<Utc>, f64)> = series.iter().flat_map(|(_, p)| p.iter()).collect();
    if points.is_empty() {
        return r#"<p class="empty">No successful migrations in this range.</p>"#.to_string();
    }
    let t0 = points.iter().map(|p| p.0).min().unwrap_or_default();
    let t1 = points.iter().map(|p| p.0).max().unwrap_or_default();
    let span = (t1 - t0).num_milliseconds().max(1) as f64;
    let max = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1.0);
    let x =
        |t: DateTime<Utc>| left + (t - t0).num_milliseconds() as f64 / span * (width - left - 8.0);
    let y = |v: f64| height - bottom - v / max * (height - top - bottom);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="lines" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        attr(label)
    );
    let _ = write!(
        out,
        r#"<line class="grid" x1="{left}" y1="{}" x2="{width}" y2="{}"></line><text class="axis" x="{}" y="{}" text-anchor="end">{}</text><text class="axis" x="{}" y="{}" text-anchor="end">0</text>"#,
        y(max),
        y(max),
        left - 4.0,
        y(max) + 4.0,
        text(&format!("{max:.0} {unit}")),
        left - 4.0,
        y(0.0)
    );
    for (n, (name, pts)) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline class="series s{n}" points="{}"><title>{}</title></polyline>"#,
            path.join(" "),
            text(name)
        );
        for (t, v) in pts {
            let _ = write!(
                out,
                r#"<circle class="series s{n}" cx="{:.1}" cy="{:.1}" r="2.5"><title>{} {} UTC: {v:.0} {}</title></circle>"#,
                x(*t),
                y(*v),
                text(name),
                t.format("%Y-%m-%d %H:%M"),
                text(unit)
            );
        }
        let _ = write!(
            out,
            r#"<text class="legend s{n}" x="{}" y="{}">{}</text>"#,
            left + 8.0 + n as f64 * 120.0,
            top + 8.0,
            text(name)
        );
    }
    let _ = write!(
        out,
        r#"<text class="axis" x="{left}" y="{}">{}</text><text class="axis" x="{width}" y="{}" text-anchor="end">{}</text></svg>"#,
        height - 4.0,
        t0.format("%Y-%m-%d %H:%M UTC"),
        height - 4.0,
        t1.format("%Y-%m-%d %H:%M UTC")
    );
    out
}
