//! Failover cluster log from `Get-ClusterLog` (`<node>_cluster.log`):
//! `00000b1c.00001a4c::2018/09/27-15:36:44.123 ERR   [RES] Virtual Machine <Virtual Machine ADFS1>: …`
//!
//! Process and thread id, level, component and resource become data
//! fields. Timestamps are UTC unless the `[=== Cluster ===]` section says
//! the log was generated with local time. Lines that do not start a record
//! continue the previous record's message; section tables are skipped.

use std::io::Read;
use std::path::Path;

use compact_str::CompactString;
use nom::bytes::complete::{tag, take_while, take_while1, take_while_m_n};
use nom::character::complete::char as ch;
use nom::combinator::opt;
use nom::sequence::{delimited, terminated};
use nom::{IResult, Parser};

use crate::error::Reason;
use crate::event::{Event, Level};
use crate::read::{LineItem, LineReader};
use crate::time::parse_cluster;
use crate::Ctx;

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

fn hex8(input: &str) -> IResult<&str, &str> {
    take_while_m_n(8, 8, |c: char| c.is_ascii_hexdigit()).parse(input)
}

fn prefix(input: &str) -> IResult<&str, Prefix<'_>> {
    let (input, process_id) = terminated(hex8, ch('.')).parse(input)?;
    let (input, thread_id) = terminated(hex8, tag("::")).parse(input)?;
    let (input, time) = take_while1(|c: char| c.is_ascii_digit() || "/-:.".contains(c))(input)?;
    let (input, _) = take_while1(|c: char| c == ' ')(input)?;
    let (input, level) = take_while1(|c: char| c.is_ascii_alphabetic())(input)?;
    let (input, _) = take_while(|c: char| c == ' ')(input)?;
    let (input, component) = opt(delimited(
        ch('['),
        take_while1(|c: char| c != ']' && c != ' '),
        ch(']'),
    ))
    .parse(input)?;
    let message = input.strip_prefix(' ').unwrap_or(input);
    Ok((
        "",
        Prefix {
            process_id,
            thread_id,
            time,
            level,
            component,
            message,
        },
    ))
}

/// Parses the fixed-shape start of a diagnostic line.
pub fn parse_prefix(line: &str) -> Option<Prefix<'_>> {
    prefix(line).ok().map(|(_, p)| p)
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
    let open = message.find(" <")?;
    let close = message[open..].find(">:")? + open;
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
    while let Some(item) = lines.next_line() {
        let line = match item {
            LineItem::Line(line) => line,
            LineItem::TooLong { offset, number } => {
                let limit = ctx.opts.max_record_bytes;
                ctx.error(offset, Some(number), Reason::TooLong { limit });
                continue;
            }
            LineItem::Io(e) => {
                ctx.fatal(0, None, Reason::Io(e.to_string()));
                break;
            }
        };
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
    let p = parse_prefix(text)
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
        channel: CHANNEL.into(),
        provider: PROVIDER.into(),
        level: level_of(p.level),
        ..Event::default()
    };
    event.data.push("ProcessId", p.process_id);
    event.data.push("ThreadId", p.thread_id);
    if let Some(component) = p.component {
        event.data.push("Component", component);
        if component == "RES" {
            if let Some((kind, name, _)) = resource(p.message) {
                event.data.push("ResourceType", kind);
                event.data.push("Resource", name);
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
