//! JSON lines: ECS / Winlogbeat (nested or flat dotted keys), NXLog
//! `to_json()`, `evtx_dump -o jsonl` records, and migration metrics. Each
//! line is classified on its own, so a stream may mix them.

use std::io::Read;

use compact_str::CompactString;

use crate::detect::{classify_json_line, Format};
use crate::error::Reason;
use crate::event::{Event, Level};
use crate::extract::{normalize_guid, vm_id_from_user};
use crate::format::event_xml;
use crate::format::json_walk::{walk, FieldSink, Scalar};
use crate::metric::Metric;
use crate::read::LineReader;
use crate::time::parse_iso;
use crate::Ctx;

/// Parses JSON lines.
pub(crate) fn parse<R: Read>(mut lines: LineReader<R>, ctx: &mut Ctx<'_>) {
    loop {
        let line = crate::next_line!(lines, ctx);
        let text = line
            .text
            .trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
        if text.is_empty() {
            continue;
        }
        match parse_line(text, ctx) {
            Ok(Parsed::Event(event)) => ctx.emit(*event, line.offset),
            Ok(Parsed::Metric(metric)) => ctx.metric(*metric, line.offset),
            Err(reason) => ctx.error(line.offset, Some(line.number), reason),
        }
    }
}

pub(crate) enum Parsed {
    Event(Box<Event>),
    Metric(Box<Metric>),
}

/// Parses one JSON object of any of the line formats.
pub(crate) fn parse_line(text: &str, ctx: &Ctx<'_>) -> Result<Parsed, Reason> {
    match classify_json_line(text) {
        Format::MetricsJson => serde_json::from_str::<Metric>(text)
            .map(|m| Parsed::Metric(Box::new(m)))
            .map_err(|e| Reason::Json(e.to_string())),
        Format::NxlogJson => {
            let mut sink = NxlogSink::default();
            walk(text, &mut sink).map_err(Reason::Json)?;
            sink.finish(ctx).map(|e| Parsed::Event(Box::new(e)))
        }
        _ => {
            let mut sink = EcsSink::default();
            walk(text, &mut sink).map_err(Reason::Json)?;
            sink.finish().map(|e| Parsed::Event(Box::new(e)))
        }
    }
}

#[derive(Default)]
struct EcsSink {
    event: Event,
    time: Option<chrono::DateTime<chrono::Utc>>,
    bad_time: Option<String>,
    computer: Option<CompactString>,
    host: Option<CompactString>,
    original: Option<String>,
    unnamed: u32,
}

fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

impl<'de> FieldSink<'de> for EcsSink {
    fn field(&mut self, path: &str, value: Scalar<'de>) {
        let e = &mut self.event;
        match path {
            "@timestamp"
            | "Event.System.TimeCreated.#attributes.SystemTime"
            | "Event.System.TimeCreated_attributes.SystemTime" => {
                let text = value.as_text();
                match parse_iso(&text) {
                    Some(stamp) => self.time = Some(stamp.assume_utc()),
                    None => self.bad_time = Some(text.into_owned()),
                }
            }
            "winlog.computer_name" | "Event.System.Computer" => {
                self.computer = Some(value.as_text().as_ref().into())
            }
            "host.name" | "host.hostname" => {
                if self.host.is_none() {
                    self.host = Some(value.as_text().as_ref().into())
                }
            }
            "winlog.channel" | "Event.System.Channel" => {
                e.channel = value.as_text().as_ref().into()
            }
            "winlog.provider_name" | "Event.System.Provider.#attributes.Name" => {
                e.provider = value.as_text().as_ref().into()
            }
            "Event.System.Provider_attributes.Name" => e.provider = value.as_text().as_ref().into(),
            "winlog.event_id"
            | "event.code"
            | "Event.System.EventID"
            | "Event.System.EventID.#text" => {
                if let Some(id) = value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    e.event_id = id;
                }
            }
            "winlog.record_id" | "Event.System.EventRecordID" => e.record_id = value.as_u64(),
            "winlog.version" | "Event.System.Version" => {
                e.version = value.as_u64().and_then(|n| u8::try_from(n).ok())
            }
            "log.level" | "winlog.level" => {
                if let Some(level) = Level::parse(&value.as_text()) {
                    e.level = level;
                }
            }
            "Event.System.Level" => {
                if let Some(n) = value.as_u64() {
                    e.level = Level::from_number(n);
                }
            }
            "message" | "Event.RenderingInfo.Message" => e.message = value.as_text().into_owned(),
            "error.code" => e.hresult = Some(value.as_text().as_ref().into()),
            "relive.zone_assumed" => e.zone_assumed = value == Scalar::Bool(true),
            "relive.vm_id_inferred" => e.vm_id_inferred = value == Scalar::Bool(true),
            "relive.message_rendered" => e.message_rendered = value == Scalar::Bool(true),
            "winlog.user.identifier" | "Event.System.Security.#attributes.UserID" => {
                if e.vm_id.is_none() {
                    e.vm_id = vm_id_from_user(&value.as_text());
                }
            }
            "event.original" => self.original = Some(value.as_text().into_owned()),
            "Event.EventData.Data.#text" | "Event.EventData.Data" => {
                self.unnamed += 1;
                e.data
                    .push(format!("param{}", self.unnamed), value.as_text().as_ref());
            }
            _ => {
                if let Some(name) = path
                    .strip_prefix("winlog.event_data.")
                    .or_else(|| path.strip_prefix("winlog.user_data."))
                    .or_else(|| path.strip_prefix("Event.EventData."))
                    .or_else(|| path.strip_prefix("Event.UserData."))
                {
                    if name.contains("#attributes") || name.ends_with("_attributes") {
                        return;
                    }
                    let name = last_segment(name);
                    if name == "VmId" {
                        if let Some(id) = normalize_guid(&value.as_text()) {
                            e.vm_id = Some(id);
                        }
                    }
                    e.data.insert(name, value.as_text().as_ref());
                }
            }
        }
    }
}

impl EcsSink {
    fn finish(mut self) -> Result<Event, Reason> {
        if let Some(original) = self.original.take() {
            // Winlogbeat's `include_xml`: fill what the JSON lacked.
            if original.trim_start().starts_with("<Event") {
                if let Ok(from_xml) = event_xml::parse_event(&original) {
                    let e = &mut self.event;
                    if e.provider.is_empty() {
                        e.provider = from_xml.provider;
                    }
                    if e.channel.is_empty() {
                        e.channel = from_xml.channel;
                    }
                    if e.event_id == 0 {
                        e.event_id = from_xml.event_id;
                    }
                    if e.record_id.is_none() {
                        e.record_id = from_xml.record_id;
                    }
                    for (name, value) in from_xml.data.iter() {
                        if e.data.get(name).is_none() {
                            e.data.push(name, value);
                        }
                    }
                    if self.time.is_none() {
                        self.time = Some(from_xml.timestamp);
                    }
                }
            }
        }
        let Some(time) = self.time else {
            return Err(match self.bad_time {
                Some(text) => Reason::Malformed(format!("bad @timestamp {text:?}")),
                None => Reason::Malformed("no @timestamp".into()),
            });
        };
        self.event.timestamp = time;
        self.event.host = self.computer.or(self.host).unwrap_or_default();
        Ok(self.event)
    }
}

/// NXLog keys that describe the record rather than the event's data.
pub(crate) const NXLOG_META: [&str; 22] = [
    "EventReceivedTime",
    "SourceModuleName",
    "SourceModuleType",
    "Keywords",
    "Opcode",
    "OpcodeValue",
    "Task",
    "ThreadID",
    "ProcessID",
    "Version",
    "ActivityID",
    "RelatedActivityID",
    "ExecutionProcessID",
    "ExecutionThreadID",
    "EventType",
    "SeverityValue",
    "Severity",
    "ProviderGuid",
    "AccountType",
    "MessageSourceAddress",
    "Category",
    "EventTimeUTC",
];

#[derive(Default)]
struct NxlogSink {
    event: Event,
    time: Option<String>,
    severity: Option<Level>,
    severity_value: Option<u64>,
    user_id: Option<String>,
}

impl<'de> FieldSink<'de> for NxlogSink {
    fn field(&mut self, path: &str, value: Scalar<'de>) {
        let e = &mut self.event;
        match path {
            "EventTime" => self.time = Some(value.as_text().into_owned()),
            "Hostname" => e.host = value.as_text().as_ref().into(),
            "EventID" => {
                e.event_id = value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0)
            }
            "SourceName" | "ProviderName" => e.provider = value.as_text().as_ref().into(),
            "Channel" => e.channel = value.as_text().as_ref().into(),
            "RecordNumber" => e.record_id = value.as_u64(),
            "Message" => e.message = value.as_text().into_owned(),
            "Severity" | "EventType" => {
                if self.severity.is_none() {
                    self.severity = Level::parse(&value.as_text());
                }
            }
            "SeverityValue" => self.severity_value = value.as_u64(),
            "UserID" => self.user_id = Some(value.as_text().into_owned()),
            _ if NXLOG_META.contains(&path) => {}
            _ => {
                if !value.is_null() {
                    e.data.insert(last_segment(path), value.as_text().as_ref());
                }
            }
        }
    }
}

impl NxlogSink {
    fn finish(mut self, ctx: &Ctx<'_>) -> Result<Event, Reason> {
        let text = self
            .time
            .ok_or_else(|| Reason::Malformed("no EventTime".into()))?;
        let stamp =
            parse_iso(&text).ok_or_else(|| Reason::Malformed(format!("bad EventTime {text:?}")))?;
        let (timestamp, assumed) = ctx.resolve(stamp);
        self.event.timestamp = timestamp;
        self.event.zone_assumed = assumed;
        self.event.level = self.severity.unwrap_or(match self.severity_value {
            Some(1) => Level::Verbose,
            Some(3) => Level::Warning,
            Some(4) => Level::Error,
            Some(5) => Level::Critical,
            _ => Level::Information,
        });
        if let Some(user) = self.user_id {
            if self.event.vm_id.is_none() {
                self.event.vm_id = vm_id_from_user(&user);
            }
        }
        Ok(self.event)
    }
}
