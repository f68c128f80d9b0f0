//! Failover cluster log from `Get-ClusterLog` (`<node>_cluster.log`):
//! `00000b1c.00001a4c::2018/09/27-15:36:44.123 ERR   [RES] Virtual Machine <Virtual Machine ADFS1>: …`
//!
//! Process and thread id, level, component and resource become data
//! fields. Timestamps are UTC unless the `[=== Cluster ===]` section says
//! the log was generated with local time. Lines that do not start a record
//! continue the previous record's message; section tables are skipped.

use std::io::Read;
use std::path::Path;

use crate::error::Reason;
use crate::event::{Event, Level};
use crate::read::LineReader;
use crate::time::parse_cluster;
use crate::Ctx;
use compact_str::CompactString;

/// Channel name given to cluster log records.
pub const CHANNEL: &str = "cluster.log";
/// Provider of the diagnostic channel that `Get-ClusterLog` dumps.
pub const PROVIDER: &str = "Microsoft-Windows-FailoverClustering";

/// The fixed-shape parts of a diagnostic line.
#[derive(Debug, PartialEq, Eq)]
pub struct Prefix<'a> {
    /// Process id (hex).
    pub process_id: &'a str,
    /// Thread id (hex).
    pub thread_id: &'a str,
    /// `2018/09/27-15:36:44.123`
    pub time: &'a str,
    /// `INFO`, `WARN`, `ERR`, `DBG`, `CRIT`.
    pub level: &'a str,
    /// `RES`, `RCM`, `RHS`, `NM` … (may be absent).
    pub component: Option<&'a str>,
    /// The rest of the line.
    pub message: &'a str,
}

fn spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// `PPPPPPPP.TTTTTTTT::time LEVEL [COMP] message`, with fixed-width ids:
/// sliced by position, which is what makes this the hot path it can be.
fn prefix(line: &str) -> Option<Prefix<'_>> {
    if !is_diagnostic_line(line) {
        return None;
    }
    prefix_unchecked(line)
}

/// [`prefix`] for a line already known to pass [`is_diagnostic_line`].
fn prefix_unchecked(line: &str) -> Option<Prefix<'_>> {
    let b = line.as_bytes();
    let time_end = 19 + b[19..].iter().position(|c| *c == b' ')?;
    let level_start = spaces(b, time_end);
    let level_end = level_start
        + b[level_start..]
            .iter()
            .position(|c| !c.is_ascii_alphabetic())
            .unwrap_or(b.len() - level_start);
    if level_end == level_start {
        return None;
    }
    let mut i = spaces(b, level_end);
    let mut component = None;
    if b.get(i) == Some(&b'[') {
        if let Some(close) = b[i + 1..].iter().position(|c| *c == b']' || *c == b' ') {
            if b[i + 1 + close] == b']' && close > 0 {
                component = Some(&line[i + 1..i + 1 + close]);
                i += close + 2;
            }
        }
    }
    let message = line[i..].strip_prefix(' ').unwrap_or(&line[i..]);
    Some(Prefix {
        process_id: &line[..8],
        thread_id: &line[9..17],
        time: &line[19..time_end],
        level: &line[level_start..level_end],
        component,
        message,
    })
}

/// Parses the fixed-shape start of a diagnostic line.
pub fn parse_prefix(line: &str) -> Option<Prefix<'_>> {
    prefix(line)
}

/// True if `line` starts like a cluster log record (`pid.tid::date`).
pub fn is_diagnostic_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 23
        && b[8] == b'.'
        && b[17] == b':'
        && b[18] == b':'
        && b[..8].iter().all(u8::is_ascii_hexdigit)
        && b[9..17].iter().all(u8::is_ascii_hexdigit)
        && b[19..23].iter().all(u8::is_ascii_digit)
}

fn level_of(text: &str) -> Level {
    match text {
        "ERR" | "ERROR" => Level::Error,
        "WARN" | "WARNING" => Level::Warning,
        "CRIT" | "CRITICAL" => Level::Critical,
        "DBG" | "DEBUG" | "VERB" => Level::Verbose,
        _ => Level::Information,
    }
}

/// `Virtual Machine <Virtual Machine ADFS1>: rest` → (type, name, rest).
fn resource(message: &str) -> Option<(&str, &str, &str)> {
    let b = message.as_bytes();
    // `<` is rare in messages: find it with memchr rather than a substring search.
    let open = memchr::memchr_iter(b'<', b).find(|&i| i > 0 && b[i - 1] == b' ')? - 1;
    let close =
        memchr::memchr_iter(b'>', &b[open..]).find(|&i| b.get(open + i + 1) == Some(&b':'))? + open;
    let kind = &message[..open];
    if kind.is_empty() || kind.len() > 64 || kind.contains(['[', ':', '<']) {
        return None;
    }
    let name = &message[open + 2..close];
    Some((kind, name, message[close + 2..].trim_start()))
}

fn host_from_path(path: &str) -> Option<String> {
    let file = Path::new(path).file_name()?.to_str()?;
    let lower = file.to_ascii_lowercase();
    let cut = lower.find("_cluster")?;
    (cut > 0).then(|| file[..cut].to_owned())
}

/// Header facts from the `[=== Cluster ===]` section.
#[derive(Default)]
struct Header {
    host: Option<String>,
    local_time: bool,
    offset_minutes: Option<i64>,
}

fn read_header_line(line: &str, header: &mut Header) {
    if let Some(rest) = line.trim().strip_prefix("Current node:") {
        if let Some(start) = rest.find("name (") {
            let name = &rest[start + 6..];
            if let Some(end) = name.find(')') {
                header.host = Some(name[..end].trim().to_owned());
            }
        }
    } else if line.contains("generated using local time") {
        header.local_time = true;
    } else if let Some(at) = line.find("offset of this machine is") {
        let digits: String = line[at + 25..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        header.offset_minutes = digits.parse().ok();
    }
}

struct Pending {
    event: Event,
    offset: u64,
}

/// Parses a cluster log.
pub(crate) fn parse<R: Read>(mut lines: LineReader<R>, ctx: &mut Ctx<'_>) {
    let mut header = Header::default();
    let fallback_host: CompactString = ctx
        .opts
        .default_host
        .clone()
        .or_else(|| ctx.path.as_deref().and_then(host_from_path))
        .unwrap_or_default()
        .into();
    let mut host = fallback_host.clone();
    let mut pending: Option<Pending> = None;
    let mut in_records = false;
    loop {
        let line = crate::next_line!(lines, ctx);
        let text = line.text.trim_start_matches('\u{FEFF}');
        if is_diagnostic_line(text) {
            if let Some(done) = pending.take() {
                ctx.emit(done.event, done.offset);
            }
            in_records = true;
            match build(text, &host, &header, ctx) {
                Ok(event) => {
                    pending = Some(Pending {
                        event,
                        offset: line.offset,
                    })
                }
                Err(reason) => ctx.error(line.offset, Some(line.number), reason),
            }
            continue;
        }
        if text.starts_with("[===") {
            if let Some(done) = pending.take() {
                ctx.emit(done.event, done.offset);
            }
            in_records = false;
            continue;
        }
        if !in_records {
            read_header_line(text, &mut header);
            if let Some(name) = &header.host {
                host = name.as_str().into();
            }
            continue;
        }
        if let Some(p) = pending.as_mut() {
            if !text.trim().is_empty() {
                p.event.message.push('\n');
                p.event.message.push_str(text.trim_end());
            }
        }
    }
    if let Some(done) = pending.take() {
        ctx.emit(done.event, done.offset);
    }
}

fn build(
    text: &str,
    host: &CompactString,
    header: &Header,
    ctx: &Ctx<'_>,
) -> Result<Event, Reason> {
    let p = prefix_unchecked(text)
        .ok_or_else(|| Reason::Malformed("cluster log line without level".into()))?;
    let stamp = parse_cluster(p.time)
        .ok_or_else(|| Reason::Malformed(format!("bad cluster log time {:?}", p.time)))?;
    let (timestamp, zone_assumed) = if header.local_time {
        match header.offset_minutes {
            Some(minutes) => (
                chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(
                    stamp.naive + chrono::Duration::minutes(minutes),
                    chrono::Utc,
                ),
                false,
            ),
            None => ctx.resolve(stamp),
        }
    } else {
        (stamp.assume_utc(), false)
    };
    let mut event = Event {
        timestamp,
        zone_assumed,
        host: host.clone(),
        channel: CompactString::const_new(CHANNEL),
        provider: CompactString::const_new(PROVIDER),
        level: level_of(p.level),
        data: crate::event::Fields::with_capacity(6),
        ..Event::default()
    };
    event.data.push_static("ProcessId", p.process_id);
    event.data.push_static("ThreadId", p.thread_id);
    if let Some(component) = p.component {
        event.data.push_static("Component", component);
        if component == "RES" {
            if let Some((kind, name, _)) = resource(p.message) {
                event.data.push_static("ResourceType", kind);
                event.data.push_static("Resource", name);
                if kind.starts_with("Virtual Machine") {
                    let vm = crate::extract::strip_resource_prefix(name);
                    if !vm.is_empty() {
                        event.vm_name = Some(vm.into());
                    }
                }
            }
        }
    }
    event.message = p.message.trim_end().to_owned();
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_fields() {
        let p = parse_prefix("00000b1c.00001a4c::2018/09/27-15:36:44.123 ERR   [RES] Virtual Machine <Virtual Machine ADFS1>: Live migration failed").unwrap();
        assert_eq!(p.process_id, "00000b1c");
        assert_eq!(p.thread_id, "00001a4c");
        assert_eq!(p.time, "2018/09/27-15:36:44.123");
        assert_eq!(p.level, "ERR");
        assert_eq!(p.component, Some("RES"));
        assert_eq!(
            resource(p.message),
            Some((
                "Virtual Machine",
                "Virtual Machine ADFS1",
                "Live migration failed"
            ))
        );
        assert!(parse_prefix("nonsense").is_none());
        assert_eq!(
            host_from_path("/x/NODE-B_cluster.log").as_deref(),
            Some("NODE-B")
        );
    }
}
