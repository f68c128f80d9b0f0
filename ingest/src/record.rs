//! What a receiver hands the write-ahead log: the bytes it accepted, as
//! received, with what they are and where they came from. Parsing happens
//! after the log, in the indexer, so a parser fix can re-read them.
//!
//! Encoding of a record body:
//!
//! ```text
//! u8      kind
//! u8      forced format (0 = detect; else 1 + index in parsers::Format::ALL)
//! u16 LE  origin length, origin (UTF-8: receiver and peer, or agent and file)
//! payload (kind-specific)
//! ```

use parsers::{Event, Format, Metric, ParseOptions, RecordError, Sink};
use std::sync::Arc;

/// What the payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Text in one of the parsers' formats (NDJSON from an agent or a
    /// `_bulk` body's sources, NXLog JSON lines, a dropped file).
    Text = 1,
    /// Syslog messages, each a u32 LE length and the message.
    Syslog = 2,
    /// An OTLP/JSON `ExportLogsServiceRequest`.
    OtlpJson = 3,
    /// An OTLP protobuf `ExportLogsServiceRequest`.
    OtlpProto = 4,
    /// Whole lines of a file in a self-contained line format (ECS or NXLog
    /// JSON), shipped as read: a u64 LE byte offset of the first line in
    /// the file, a u16 LE path length and the path, then the lines. Parsed
    /// once, by the collector, with the file's own path and offsets.
    Lines = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Text,
            2 => Kind::Syslog,
            3 => Kind::OtlpJson,
            4 => Kind::OtlpProto,
            5 => Kind::Lines,
            _ => return None,
        })
    }
}

/// One accepted batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What the payload holds.
    pub kind: Kind,
    /// A format to force, for [`Kind::Text`].
    pub format: Option<Format>,
    /// Receiver and sender, e.g. `syslog-tcp 127.0.0.1:50514`.
    pub origin: String,
    /// The bytes.
    pub payload: Vec<u8>,
}

fn format_code(format: Option<Format>) -> u8 {
    match format {
        None => 0,
        Some(f) => Format::ALL
            .iter()
            .position(|x| *x == f)
            .map_or(0, |i| i as u8 + 1),
    }
}

impl Record {
    /// A text record.
    pub fn text(format: Option<Format>, origin: impl Into<String>, payload: Vec<u8>) -> Record {
        Record {
            kind: Kind::Text,
            format,
            origin: origin.into(),
            payload,
        }
    }

    /// Encodes the record as a log body.
    pub fn encode(&self) -> Vec<u8> {
        let origin = truncate_utf8(&self.origin, u16::MAX as usize);
        let mut out = Vec::with_capacity(4 + origin.len() + self.payload.len());
        out.push(self.kind as u8);
        out.push(format_code(self.format));
        out.extend_from_slice(&(origin.len() as u16).to_le_bytes());
        out.extend_from_slice(origin.as_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes a log body; `None` if it is not one.
    pub fn decode(body: &[u8]) -> Option<Record> {
        let kind = Kind::from_u8(*body.first()?)?;
        let format = match *body.get(1)? {
            0 => None,
            n => Some(*Format::ALL.get(n as usize - 1)?),
        };
        let len = u16::from_le_bytes([*body.get(2)?, *body.get(3)?]) as usize;
        let origin = std::str::from_utf8(body.get(4..4 + len)?).ok()?.to_string();
        Some(Record {
            kind,
            format,
            origin,
            payload: body[4 + len..].to_vec(),
        })
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends one syslog message to a [`Kind::Syslog`] payload.
pub fn push_message(payload: &mut Vec<u8>, message: &[u8]) {
    payload.extend_from_slice(&(message.len() as u32).to_le_bytes());
    payload.extend_from_slice(message);
}

/// The messages of a [`Kind::Syslog`] payload.
pub fn messages(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let end = (4 + len).min(rest.len());
        let msg = &rest[4..end];
        rest = &rest[end..];
        Some(msg)
    })
}

/// Builds a [`Kind::Lines`] payload: `lines` read from `path` at `offset`.
pub fn lines_payload(path: &str, offset: u64, lines: &[u8]) -> Vec<u8> {
    let path = truncate_utf8(path, u16::MAX as usize);
    let mut out = Vec::with_capacity(10 + path.len() + lines.len());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(lines);
    out
}

/// Splits a [`Kind::Lines`] payload into (path, offset, lines).
fn split_lines_payload(payload: &[u8]) -> Option<(&str, u64, &[u8])> {
    let offset = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let len = u16::from_le_bytes(payload.get(8..10)?.try_into().ok()?) as usize;
    let path = std::str::from_utf8(payload.get(10..10 + len)?).ok()?;
    Some((path, offset, &payload[10 + len..]))
}

/// Moves the offsets of what a parse of part of a file found by where
/// that part began.
struct Shifted<'a> {
    inner: &'a mut dyn Sink,
    base: u64,
}

impl Sink for Shifted<'_> {
    fn event(&mut self, mut event: Event) {
        event.origin.offset += self.base;
        self.inner.event(event);
    }
    fn metric(&mut self, metric: Metric) {
        self.inner.metric(metric);
    }
    fn error(&mut self, mut error: RecordError) {
        error.offset += self.base;
        if self.base > 0 {
            // Counted from the part's start, not the file's: the byte
            // offset is the position to trust.
            error.line = None;
        }
        self.inner.error(error);
    }
}

/// Parses a record into events, metrics and errors, sent to `sink`.
pub fn parse(record: &Record, opts: &ParseOptions, sink: &mut dyn Sink) {
    let name = Some(record.origin.as_str());
    match record.kind {
        Kind::Text => {
            let mut o = opts.clone();
            o.format = record.format.or(opts.format);
            parsers::parse_reader(record.payload.as_slice(), name, &o, sink);
        }
        Kind::Lines => match split_lines_payload(&record.payload) {
            Some((path, base, lines)) => {
                let mut o = opts.clone();
                o.format = record.format.or(opts.format);
                let mut shifted = Shifted { inner: sink, base };
                parsers::parse_reader(lines, Some(path), &o, &mut shifted);
            }
            None => sink.error(RecordError::new(
                Some(Arc::from(record.origin.as_str())),
                0,
                None,
                parsers::Reason::Json("a file-lines batch without its path header".into()),
            )),
        },
        Kind::Syslog => {
            let origin: Arc<str> = Arc::from(record.origin.as_str());
            let mut offset = 0u64;
            for message in messages(&record.payload) {
                parse_syslog_message(message, &origin, offset, opts, sink);
                offset += 4 + message.len() as u64;
            }
        }
        Kind::OtlpJson => {
            let mut o = opts.clone();
            o.format = Some(Format::OtlpJson);
            // The parser reads OTLP/JSON one request per line.
            let mut flat = Vec::with_capacity(record.payload.len() + 1);
            flat.extend(
                record
                    .payload
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
            );
            flat.push(b'\n');
            parsers::parse_reader(flat.as_slice(), name, &o, sink);
        }
        Kind::OtlpProto => match crate::otlp::decode_protobuf(&record.payload) {
            Ok(request) => {
                let origin: Arc<str> = Arc::from(record.origin.as_str());
                for result in parsers::format::otlp_json::events_from_request(&request) {
                    match result {
                        Ok(mut event) => {
                            event.origin.path = Some(origin.clone());
                            event.origin.format = Some(Format::OtlpJson);
                            sink.event(event);
                        }
                        Err(reason) => {
                            sink.error(RecordError::new(Some(origin.clone()), 0, None, reason))
                        }
                    }
                }
            }
            Err(e) => sink.error(RecordError::new(
                Some(Arc::from(record.origin.as_str())),
                0,
                None,
                parsers::Reason::Json(format!("OTLP protobuf: {e}")),
            )),
        },
    }
}

/// Parses one syslog message: RFC 5424 / 3164, Snare or NXLog JSON.
fn parse_syslog_message(
    message: &[u8],
    origin: &Arc<str>,
    offset: u64,
    opts: &ParseOptions,
    sink: &mut dyn Sink,
) {
    let text = String::from_utf8_lossy(message);
    let mut text: &str = &text;
    // One trailing LF/CRLF inside an octet-counted frame (rsyslog, syslog-ng).
    text = text.strip_suffix('\n').unwrap_or(text);
    text = text.strip_suffix('\r').unwrap_or(text);
    if text.trim().is_empty() {
        return;
    }
    if text.trim_start().starts_with('{') {
        // NXLog `to_json()` lines on the syslog TCP listener.
        let mut relay = Relay {
            inner: sink,
            origin,
            offset,
        };
        let mut o = opts.clone();
        o.format = Some(Format::NxlogJson);
        parsers::parse_reader(text.as_bytes(), None, &o, &mut relay);
        return;
    }
    match parsers::format::syslog::parse_message(text, opts) {
        Ok(mut event) => {
            event.origin = parsers::Origin {
                path: Some(origin.clone()),
                offset,
                format: Some(if text.contains("MSWinEventLog\t") {
                    Format::Snare
                } else {
                    Format::Syslog
                }),
            };
            parsers::extract::enrich(&mut event);
            sink.event(event);
        }
        Err(reason) => sink.error(RecordError::new(Some(origin.clone()), offset, None, reason)),
    }
}

/// Gives events from one message the record's origin and offset.
struct Relay<'a> {
    inner: &'a mut dyn Sink,
    origin: &'a Arc<str>,
    offset: u64,
}

impl Sink for Relay<'_> {
    fn event(&mut self, mut event: Event) {
        event.origin.path = Some(self.origin.clone());
        event.origin.offset = self.offset;
        self.inner.event(event);
    }
    fn metric(&mut self, metric: Metric) {
        self.inner.metric(metric);
    }
    fn error(&mut self, mut error: RecordError) {
        error.path = Some(self.origin.clone());
        error.offset = self.offset;
        self.inner.error(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = Record {
            kind: Kind::Syslog,
            format: Some(Format::ClusterLog),
            origin: "syslog-tcp 127.0.0.1:5".into(),
            payload: b"abc".to_vec(),
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(&[9, 0, 0, 0]), None);
        assert_eq!(Record::decode(&[1, 0, 5]), None);
    }

    #[test]
    fn file_lines_keep_their_path_and_offsets_in_the_file() {
        let lines = b"{\"@timestamp\":\"2026-11-22T19:16:18Z\",\"host\":{\"name\":\"NODE-A\"},\"winlog\":{\"event_id\":21502},\"message\":\"a\"}\n\nnot json\n";
        let record = Record {
            kind: Kind::Lines,
            format: Some(Format::EcsJson),
            origin: "agent NODE-A".into(),
            payload: lines_payload("/logs/vmms.ndjson", 1000, lines),
        };
        assert_eq!(Record::decode(&record.encode()), Some(record.clone()));
        let mut out = parsers::ParseOutput::default();
        parse(&record, &ParseOptions::default(), &mut out);
        assert_eq!(out.events.len(), 1);
        let e = &out.events[0];
        assert_eq!(e.origin.path.as_deref(), Some("/logs/vmms.ndjson"));
        assert_eq!(e.origin.offset, 1000);
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        let bad = lines.windows(8).position(|w| w == b"not json").unwrap() as u64;
        assert_eq!(out.errors[0].offset, 1000 + bad);
        assert_eq!(out.errors[0].path.as_deref(), Some("/logs/vmms.ndjson"));
    }

    #[test]
    fn octet_counted_lf_and_bom_are_dropped() {
        let mut payload = Vec::new();
        push_message(&mut payload, b"<11>1 2026-11-22T19:16:18.360378+00:00 vm Hyper-V-VMMS - 21502 [timeQuality tzKnown=\"1\"] \xef\xbb\xbfVirtual machine migration operation for VM01 failed at migration source NODE-A.\n");
        let record = Record {
            kind: Kind::Syslog,
            format: None,
            origin: "t".into(),
            payload,
        };
        let mut out = parsers::ParseOutput::default();
        parse(&record, &ParseOptions::default(), &mut out);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.events.len(), 1);
        let e = &out.events[0];
        assert_eq!(e.host, "vm");
        assert!(
            e.message.starts_with("Virtual machine migration"),
            "{}",
            e.message
        );
        assert!(!e.message.ends_with('\n'));
    }
}
