//! Syslog carrying Windows events: RFC 5424 (structured data such as
//! `[win@32473 EventID="21502" Channel="…"]` or NXLog's `[NXLOG@14506 …]`),
//! RFC 3164, octet-counted frames (RFC 6587, with or without the LF inside
//! the count), a UTF-8 BOM before MSG, NXLog JSON inside MSG, and Snare's
//! tab-delimited `MSWinEventLog` records, bare or behind a syslog header.

use std::io::Read;

use chrono::Datelike;
use nom::bytes::complete::{tag, take_while1, take_while_m_n};
use nom::character::complete::char as ch;
use nom::sequence::delimited;
use nom::{IResult, Parser};

use crate::error::Reason;
use crate::event::{Event, Level};
use crate::extract::vm_id_from_user;
use crate::format::json_lines::{self, Parsed};
use crate::read::LineReader;
use crate::time::{parse_bsd, parse_iso, parse_snare};
use crate::{Ctx, ParseOptions};

/// True if a line starts like a syslog message (`<PRI>`), possibly after
/// an octet count.
pub fn looks_like_syslog(line: &str) -> bool {
    let body = strip_octet_count(line).map_or(line, |(_, rest)| rest);
    pri(body).is_ok()
}

fn strip_octet_count(line: &str) -> Option<(usize, &str)> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let rest = line[digits..].strip_prefix(' ')?;
    if !rest.starts_with('<') {
        return None;
    }
    Some((line[..digits].parse().ok()?, rest))
}

fn pri(input: &str) -> IResult<&str, u8> {
    let (input, digits) = delimited(
        ch('<'),
        take_while_m_n(1, 3, |c: char| c.is_ascii_digit()),
        ch('>'),
    )
    .parse(input)?;
    let value: u16 = digits.parse().unwrap_or(0);
    Ok((input, (value.min(191)) as u8))
}

fn field(input: &str) -> IResult<&str, &str> {
    let (input, value) = take_while1(|c: char| c != ' ').parse(input)?;
    let (input, _) = tag(" ").parse(input)?;
    Ok((input, value))
}

fn level_of_severity(severity: u8) -> Level {
    match severity {
        0..=2 => Level::Critical,
        3 => Level::Error,
        4 => Level::Warning,
        7 => Level::Verbose,
        _ => Level::Information,
    }
}

/// Structured-data parameters: `[id k="v" k2="v\"2"][id2 …]` → pairs;
/// returns them and the text after the structured data.
/// `(name, value)` parameters of structured data.
type Params = Vec<(String, String)>;

fn structured_data(input: &str) -> Result<(Params, &str), String> {
    let mut params = Vec::new();
    if let Some(rest) = input.strip_prefix('-') {
        return Ok((params, rest));
    }
    let bytes = input.as_bytes();
    let mut i = 0;
    while bytes.get(i) == Some(&b'[') {
        i += 1;
        // SD-ID
        while i < bytes.len() && !matches!(bytes[i], b' ' | b']') {
            i += 1;
        }
        loop {
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            match bytes.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                None => return Err("structured data not closed with `]`".into()),
                _ => {}
            }
            let name_start = i;
            while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b']' {
                i += 1;
            }
            let name = input[name_start..i].to_owned();
            if bytes.get(i) != Some(&b'=') || bytes.get(i + 1) != Some(&b'"') {
                return Err(format!(
                    "structured data parameter {name:?} without =\"value\""
                ));
            }
            i += 2;
            let mut value = String::new();
            let mut run = i;
            loop {
                match bytes.get(i) {
                    None => return Err("unterminated structured data value".into()),
                    Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                        value.push_str(&input[run..i]);
                        value.push(bytes[i + 1] as char);
                        i += 2;
                        run = i;
                    }
                    Some(b'"') => {
                        value.push_str(&input[run..i]);
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            params.push((name, value));
        }
    }
    Ok((params, &input[i..]))
}

/// Parameters that describe the record, not the event: NXLog's, and
/// rsyslog's `timeQuality`.
fn is_meta(name: &str) -> bool {
    json_lines::NXLOG_META.contains(&name) || matches!(name, "tzKnown" | "isSynced")
}

fn clean_msg(msg: &str) -> &str {
    let msg = msg.strip_prefix('\u{FEFF}').unwrap_or(msg);
    let msg = msg.strip_suffix('\n').unwrap_or(msg);
    msg.strip_suffix('\r').unwrap_or(msg)
}

/// Parses one syslog message (without transport framing) or one Snare record.
pub fn parse_message(text: &str, opts: &ParseOptions) -> Result<Event, Reason> {
    if text.starts_with('<') {
        let (rest, pri) = pri(text).map_err(|_| Reason::Malformed("bad <PRI>".into()))?;
        let severity = pri % 8;
        if let Some(rest) = rest.strip_prefix("1 ") {
            rfc5424(rest, severity, opts)
        } else {
            rfc3164(rest, severity, opts)
        }
    } else if text.contains("MSWinEventLog\t") {
        snare(text, opts)
    } else {
        Err(Reason::Malformed(
            "not a syslog message (no <PRI>) nor a Snare record".into(),
        ))
    }
}

fn rfc5424(input: &str, severity: u8, opts: &ParseOptions) -> Result<Event, Reason> {
    let bad = |what: &str| Reason::Malformed(format!("RFC 5424: missing or bad {what}"));
    let (input, timestamp) = field(input).map_err(|_| bad("TIMESTAMP"))?;
    let (input, hostname) = field(input).map_err(|_| bad("HOSTNAME"))?;
    let (input, app) = field(input).map_err(|_| bad("APP-NAME"))?;
    let (input, _procid) = field(input).map_err(|_| bad("PROCID"))?;
    let (input, msgid) = match field(input) {
        Ok(ok) => ok,
        // MSGID then end of message.
        Err(_) => ("-", input),
    };
    let (params, rest) = structured_data(input).map_err(Reason::Malformed)?;
    let msg = clean_msg(rest.strip_prefix(' ').unwrap_or(rest));
    let stamp = parse_iso(timestamp).ok_or_else(|| bad("TIMESTAMP"))?;
    let (timestamp, zone_assumed) = stamp.resolve(&opts.local_zone);
    if let Some(payload) = msg.find("MSWinEventLog\t").map(|_| msg) {
        let mut event = snare(payload, opts)?;
        if event.host.is_empty() {
            event.host = nil(hostname).into();
        }
        return Ok(event);
    }
    let mut event = if msg.starts_with('{') {
        embedded_json(msg, opts)?
    } else {
        Event {
            message: msg.to_owned(),
            ..Event::default()
        }
    };
    if event.host.is_empty() {
        event.host = nil(hostname).into();
    }
    if event.provider.is_empty() {
        event.provider = nil(app).into();
    }
    if event.event_id == 0 {
        event.event_id = msgid.parse().unwrap_or(0);
    }
    if !msg.starts_with('{') {
        event.timestamp = timestamp;
        event.zone_assumed = zone_assumed;
        event.level = level_of_severity(severity);
    }
    for (name, value) in params {
        match name.as_str() {
            "EventID" | "EventId" => event.event_id = value.parse().unwrap_or(event.event_id),
            "Channel" | "LogName" => event.channel = value.into(),
            "RecordNumber" | "EventRecordID" | "RecordId" | "RecordID" => {
                event.record_id = value.parse().ok()
            }
            "ProviderName" | "SourceName" => event.provider = value.into(),
            "Computer" | "Hostname" => event.host = value.into(),
            "Severity" | "EventType" => {
                if let Some(level) = Level::parse(&value) {
                    event.level = level;
                }
            }
            "UserID" | "User" => {
                if event.vm_id.is_none() {
                    event.vm_id = vm_id_from_user(&value);
                }
            }
            _ if is_meta(&name) => {}
            _ => event.data.insert(name, value),
        }
    }
    Ok(event)
}

fn nil(field: &str) -> &str {
    if field == "-" {
        ""
    } else {
        field
    }
}

fn embedded_json(msg: &str, opts: &ParseOptions) -> Result<Event, Reason> {
    let mut sink = crate::ParseOutput::default();
    let ctx = Ctx::new(opts, None, crate::Format::NxlogJson, &mut sink);
    match json_lines::parse_line(msg, &ctx)? {
        Parsed::Event(event) => Ok(*event),
        Parsed::Metric(_) => Err(Reason::Malformed("a metric inside a syslog message".into())),
    }
}

fn rfc3164(input: &str, severity: u8, opts: &ParseOptions) -> Result<Event, Reason> {
    let year = opts.year.unwrap_or_else(|| chrono::Utc::now().year());
    let (stamp, used) = if input.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let end = input.find(' ').unwrap_or(input.len());
        let stamp = parse_iso(&input[..end])
            .ok_or_else(|| Reason::Malformed("RFC 3164: bad timestamp".into()))?;
        (stamp, end)
    } else {
        parse_bsd(input, year).ok_or_else(|| {
            Reason::Malformed("RFC 3164: bad timestamp (want `Mmm dd hh:mm:ss`)".into())
        })?
    };
    let rest = input[used..].trim_start_matches(' ');
    let (host, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if rest.starts_with("MSWinEventLog\t") {
        let mut event = snare(rest, opts)?;
        if event.host.is_empty() {
            event.host = host.into();
        }
        return Ok(event);
    }
    let (timestamp, zone_assumed) = stamp.resolve(&opts.local_zone);
    let (tag, msg) = match rest.find(": ") {
        Some(i) if !rest[..i].contains(' ') => (&rest[..i], &rest[i + 2..]),
        _ => ("", rest),
    };
    let provider = tag.split('[').next().unwrap_or(tag);
    let msg = clean_msg(msg);
    let mut event = if msg.starts_with('{') {
        embedded_json(msg, opts)?
    } else {
        Event {
            timestamp,
            zone_assumed,
            level: level_of_severity(severity),
            message: msg.to_owned(),
            ..Event::default()
        }
    };
    if event.host.is_empty() {
        event.host = host.into();
    }
    if event.provider.is_empty() {
        event.provider = provider.into();
    }
    if event.event_id == 0 {
        event.event_id = leading_event_id(msg).unwrap_or(0);
    }
    Ok(event)
}

/// `Event 21502 …`, `EventID=21502 …`, `EventID: 21502 …` at the start of MSG.
fn leading_event_id(msg: &str) -> Option<u32> {
    let rest = msg
        .strip_prefix("EventID")
        .or_else(|| msg.strip_prefix("Event ID"))
        .or_else(|| msg.strip_prefix("Event"))?;
    let rest = rest.trim_start_matches([' ', '=', ':']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A Snare `MSWinEventLog` record (tab-delimited), with or without the
/// leading host field.
pub fn snare(text: &str, opts: &ParseOptions) -> Result<Event, Reason> {
    let at = text
        .find("MSWinEventLog\t")
        .ok_or_else(|| Reason::Malformed("no MSWinEventLog marker".into()))?;
    let host_field = text[..at].trim_end_matches('\t').trim();
    let fields: Vec<&str> = text[at..].split('\t').collect();
    // MSWinEventLog, criticality, log, counter, time, id, source, user,
    // sid type, event type, computer, category, data, expanded message, md5.
    if fields.len() < 12 {
        return Err(Reason::Malformed(format!(
            "Snare record with {} fields (want at least 12)",
            fields.len()
        )));
    }
    let stamp = parse_snare(fields[4])
        .ok_or_else(|| Reason::Malformed(format!("bad Snare time {:?}", fields[4])))?;
    let (timestamp, zone_assumed) = stamp.resolve(&opts.local_zone);
    let event_id = fields[5]
        .trim()
        .parse()
        .map_err(|_| Reason::Malformed(format!("bad Snare event id {:?}", fields[5])))?;
    let mut event = Event {
        timestamp,
        zone_assumed,
        channel: fields[2].trim().into(),
        provider: fields[6].trim().into(),
        event_id,
        level: Level::parse(fields[9]).unwrap_or_default(),
        host: fields[10].trim().into(),
        ..Event::default()
    };
    if event.host.is_empty() {
        event.host = host_field.rsplit(' ').next().unwrap_or("").into();
    }
    event.vm_id = vm_id_from_user(fields[7]);
    let message = fields
        .get(13)
        .filter(|m| !m.trim().is_empty())
        .or_else(|| fields.get(12))
        .copied()
        .unwrap_or("");
    event.message = message.trim().to_owned();
    event.data.push("SnareCounter", fields[3].trim());
    if !fields[11].trim().is_empty() && fields[11].trim() != "None" {
        event.data.push("Category", fields[11].trim());
    }
    Ok(event)
}

/// Parses a file of syslog lines or Snare records; octet-counted frames
/// may share a line.
pub(crate) fn parse<R: Read>(mut lines: LineReader<R>, ctx: &mut Ctx<'_>) {
    loop {
        let line = crate::next_line!(lines, ctx);
        let mut text = line.text.trim_start_matches('\u{FEFF}');
        let mut offset = line.offset;
        if text.trim().is_empty() {
            continue;
        }
        // Octet-counted frames: `LEN <PRI>…`, maybe several per line.
        while let Some((len, _)) = strip_octet_count(text) {
            let digits = text.bytes().take_while(u8::is_ascii_digit).count() + 1;
            let frame_end = digits + len;
            let (frame, rest) = if frame_end <= text.len() && text.is_char_boundary(frame_end) {
                (&text[digits..frame_end], &text[frame_end..])
            } else if frame_end == text.len() + 1 {
                // The count included the LF the line reader removed.
                (&text[digits..], "")
            } else {
                ctx.error(
                    offset,
                    Some(line.number),
                    Reason::Malformed(format!(
                        "octet count {len} does not match the {} bytes that follow",
                        text.len() - digits
                    )),
                );
                text = "";
                break;
            };
            match parse_message(frame, ctx.opts) {
                Ok(event) => ctx.emit(event, offset),
                Err(reason) => ctx.error(offset, Some(line.number), reason),
            }
            offset += frame_end as u64;
            text = rest;
        }
        if text.trim().is_empty() {
            continue;
        }
        match parse_message(text, ctx.opts) {
            Ok(event) => ctx.emit(event, offset),
            Err(reason) => ctx.error(offset, Some(line.number), reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ParseOptions {
        ParseOptions {
            year: Some(2026),
            ..ParseOptions::default()
        }
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let e = parse_message("<11>1 2026-11-22T19:15:25.630737+00:00 vm Hyper-V-VMMS 4242 - [timeQuality tzKnown=\"1\" isSynced=\"0\"][win@32473 EventID=\"21502\" Channel=\"Microsoft-Windows-Hyper-V-VMMS-Admin\"] Live migration of VM01 failed.", &opts()).unwrap();
        assert_eq!(e.event_id, 21502);
        assert_eq!(e.channel, "Microsoft-Windows-Hyper-V-VMMS-Admin");
        assert_eq!(e.host, "vm");
        assert_eq!(e.provider, "Hyper-V-VMMS");
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.message, "Live migration of VM01 failed.");
        assert!(!e.zone_assumed);
    }

    #[test]
    fn rfc5424_msgid_bom_and_trailing_lf() {
        let e = parse_message("<11>1 2026-11-22T19:16:18.361871+00:00 vm Hyper-V-VMMS - 21066 - \u{FEFF}Failed (0x80072746).\n", &opts()).unwrap();
        assert_eq!(e.event_id, 21066);
        assert_eq!(e.message, "Failed (0x80072746).");
    }

    #[test]
    fn rfc3164_and_snare() {
        let e = parse_message("<12>Nov 22 19:15:26 vm vmms: Event 21502 VM01", &opts()).unwrap();
        assert_eq!(e.event_id, 21502);
        assert_eq!(e.host, "vm");
        assert_eq!(e.provider, "vmms");
        assert_eq!(e.level, Level::Warning);
        assert!(e.zone_assumed);
        let s = parse_message("propc12\tMSWinEventLog\t4\tSystem\t2174\tFri Nov 27 09:58:51 2015\t7036\tService Control Manager\tN/A\tN/A\tInformation\tpropc12\tNone\t\tThe Application Experience service entered the stopped state.\t0", &opts()).unwrap();
        assert_eq!(s.event_id, 7036);
        assert_eq!(s.channel, "System");
        assert_eq!(s.provider, "Service Control Manager");
        assert_eq!(s.host, "propc12");
        assert_eq!(
            s.message,
            "The Application Experience service entered the stopped state."
        );
        assert!(parse_message("<12>garbage", &opts()).is_err());
        assert!(parse_message(
            "<11>1 2026-11-22T19:15:25Z vm app - - [x a=\"1\" b",
            &opts()
        )
        .is_err());
    }
}
