//! OTLP/JSON logs (`ExportLogsServiceRequest` in the proto3 JSON mapping),
//! one request per line as the collector's file exporter writes them, or
//! one pretty-printed document. The OpenTelemetry `windowseventlog`
//! receiver's body map (`event_id`, `provider`, `system_time`, `computer`,
//! `channel`, `record_id`, `level`, `message`, `event_data`) and its raw XML
//! body are mapped to [`Event`]; other log records use `winlog.*`
//! attributes, the scope name and the resource's `host.name`.

use std::io::Read;

use compact_str::ToCompactString;
use serde::Deserialize;

use crate::error::Reason;
use crate::event::{Event, Level};
use crate::format::event_xml;
use crate::read::LineReader;
use crate::time::parse_iso;
use crate::Ctx;

/// `ExportLogsServiceRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsRequest {
    /// Per-resource logs.
    #[serde(default)]
    pub resource_logs: Vec<ResourceLogs>,
}

/// `ResourceLogs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLogs {
    /// The resource (its attributes hold `host.name`).
    #[serde(default)]
    pub resource: Option<Resource>,
    /// Logs per instrumentation scope.
    #[serde(default)]
    pub scope_logs: Vec<ScopeLogs>,
}

/// `Resource`.
#[derive(Debug, Default, Deserialize)]
pub struct Resource {
    /// Attributes.
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

/// `ScopeLogs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeLogs {
    /// The scope.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Records.
    #[serde(default)]
    pub log_records: Vec<LogRecord>,
}

/// `InstrumentationScope`.
#[derive(Debug, Default, Deserialize)]
pub struct Scope {
    /// Scope name.
    #[serde(default)]
    pub name: String,
}

/// `LogRecord`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    /// Event time (ns since epoch), as a string or number.
    #[serde(default)]
    pub time_unix_nano: Option<Number>,
    /// Observation time.
    #[serde(default)]
    pub observed_time_unix_nano: Option<Number>,
    /// 1–24.
    #[serde(default)]
    pub severity_number: Option<u32>,
    /// Severity text.
    #[serde(default)]
    pub severity_text: Option<String>,
    /// Body.
    #[serde(default)]
    pub body: Option<AnyValue>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

/// An int64 in OTLP/JSON: a decimal string, or a number from some exporters.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// A JSON number.
    U(u64),
    /// A negative JSON number.
    I(i64),
    /// A float (some exporters).
    F(f64),
    /// A decimal string.
    S(String),
}

impl Number {
    fn as_i128(&self) -> Option<i128> {
        match self {
            Number::U(n) => Some(i128::from(*n)),
            Number::I(n) => Some(i128::from(*n)),
            Number::F(f) => Some(*f as i128),
            Number::S(s) => s.trim().parse().ok(),
        }
    }
}

/// `KeyValue`.
#[derive(Debug, Default, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: Option<AnyValue>,
}

/// `AnyValue`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyValue {
    /// String.
    pub string_value: Option<String>,
    /// Bool.
    pub bool_value: Option<bool>,
    /// Int.
    pub int_value: Option<Number>,
    /// Double.
    pub double_value: Option<f64>,
    /// Array.
    pub array_value: Option<ArrayValue>,
    /// Map.
    pub kvlist_value: Option<KvList>,
    /// Bytes (base64).
    pub bytes_value: Option<String>,
}

/// `ArrayValue`.
#[derive(Debug, Default, Deserialize)]
pub struct ArrayValue {
    /// Elements.
    #[serde(default)]
    pub values: Vec<AnyValue>,
}

/// `KeyValueList`.
#[derive(Debug, Default, Deserialize)]
pub struct KvList {
    /// Entries.
    #[serde(default)]
    pub values: Vec<KeyValue>,
}

impl AnyValue {
    /// A scalar as text; `None` for arrays and maps.
    pub fn text(&self) -> Option<String> {
        if let Some(s) = &self.string_value {
            return Some(s.clone());
        }
        if let Some(n) = &self.int_value {
            return n.as_i128().map(|n| n.to_string());
        }
        if let Some(d) = self.double_value {
            return Some(d.to_string());
        }
        if let Some(b) = self.bool_value {
            return Some(b.to_string());
        }
        self.bytes_value.clone()
    }

    fn get(&self, key: &str) -> Option<&AnyValue> {
        self.kvlist_value
            .as_ref()?
            .values
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn level_from_severity(number: u32) -> Level {
    match number {
        1..=8 => Level::Verbose,
        13..=16 => Level::Warning,
        17..=20 => Level::Error,
        21..=24 => Level::Critical,
        _ => Level::Information,
    }
}

fn time_of(n: &Option<Number>) -> Option<chrono::DateTime<chrono::Utc>> {
    let nanos = n.as_ref()?.as_i128()?;
    if nanos <= 0 {
        return None;
    }
    let nanos = i64::try_from(nanos).ok()?;
    Some(chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(nanos))
}

/// Maps every log record of a request to an event, or an error per record.
pub fn events_from_request(request: &LogsRequest) -> Vec<Result<Event, Reason>> {
    let mut out = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource_attrs = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let resource_host = attr(resource_attrs, "host.name").and_then(AnyValue::text);
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs
                .scope
                .as_ref()
                .map(|s| s.name.as_str())
                .unwrap_or("");
            for record in &scope_logs.log_records {
                out.push(map_record(record, scope, resource_host.as_deref()));
            }
        }
    }
    out
}

fn map_record(record: &LogRecord, scope: &str, host: Option<&str>) -> Result<Event, Reason> {
    let body = record.body.as_ref();
    // Raw mode: the body is the event's XML.
    if let Some(xml) = body.and_then(|b| b.string_value.as_deref()) {
        if xml.trim_start().starts_with("<Event") {
            return event_xml::parse_event(xml).map_err(Reason::Xml);
        }
    }
    let mut event = Event::default();
    let time = time_of(&record.time_unix_nano).or_else(|| time_of(&record.observed_time_unix_nano));
    if let Some(map) = body.filter(|b| b.kvlist_value.is_some()) {
        // The windowseventlog receiver's body.
        if let Some(id) = map.get("event_id") {
            let id = id.get("id").unwrap_or(id);
            event.event_id = id.text().and_then(|t| t.parse().ok()).unwrap_or(0);
        }
        if let Some(provider) = map.get("provider") {
            event.provider = provider
                .get("name")
                .and_then(AnyValue::text)
                .or_else(|| provider.text())
                .unwrap_or_default()
                .into();
        }
        let text = |key: &str| map.get(key).and_then(AnyValue::text);
        if let Some(t) = text("system_time").as_deref().and_then(parse_iso) {
            event.timestamp = t.assume_utc();
        } else if let Some(t) = time {
            event.timestamp = t;
        } else {
            return Err(Reason::Malformed("log record without a time".into()));
        }
        event.host = text("computer").unwrap_or_default().into();
        event.channel = text("channel").unwrap_or_default().into();
        event.record_id = text("record_id").and_then(|t| t.parse().ok());
        event.level = text("level")
            .as_deref()
            .and_then(Level::parse)
            .unwrap_or_else(|| level_from_severity(record.severity_number.unwrap_or(0)));
        event.message = text("message").unwrap_or_default();
        if let Some(data) = map.get("event_data") {
            add_event_data(&mut event, data);
        }
    } else {
        event.timestamp =
            time.ok_or_else(|| Reason::Malformed("log record without a time".into()))?;
        event.message = body.and_then(AnyValue::text).unwrap_or_default();
        event.level = record
            .severity_text
            .as_deref()
            .and_then(Level::parse)
            .unwrap_or_else(|| level_from_severity(record.severity_number.unwrap_or(0)));
        event.channel = scope.into();
    }
    let a = &record.attributes;
    let text = |key: &str| attr(a, key).and_then(AnyValue::text);
    if let Some(id) = text("winlog.event_id").or_else(|| text("event.code")) {
        event.event_id = id.parse().unwrap_or(event.event_id);
    }
    if let Some(channel) = text("winlog.channel") {
        event.channel = channel.into();
    }
    if let Some(provider) = text("winlog.provider_name") {
        event.provider = provider.into();
    }
    if let Some(record_id) = text("winlog.record_id") {
        event.record_id = record_id.parse().ok();
    }
    if event.host.is_empty() {
        event.host = text("winlog.computer_name")
            .or_else(|| text("host.name"))
            .or_else(|| host.map(str::to_owned))
            .unwrap_or_default()
            .into();
    }
    for kv in a {
        if let Some(name) = kv.key.strip_prefix("winlog.event_data.") {
            if let Some(value) = kv.value.as_ref().and_then(AnyValue::text) {
                event.data.insert(name, value);
            }
        }
    }
    Ok(event)
}

fn add_event_data(event: &mut Event, data: &AnyValue) {
    let mut unnamed = 0;
    let mut add_pair = |event: &mut Event, kv: &KeyValue| {
        if let Some(value) = kv.value.as_ref() {
            if let Some(text) = value.text() {
                event.data.insert(kv.key.to_compact_string(), text);
            } else if let Some(list) = &value.array_value {
                for item in &list.values {
                    if let Some(text) = item.text() {
                        unnamed += 1;
                        event.data.insert(format!("param{unnamed}"), text);
                    } else if let Some(map) = &item.kvlist_value {
                        for inner in &map.values {
                            if let Some(text) = inner.value.as_ref().and_then(AnyValue::text) {
                                event.data.insert(inner.key.to_compact_string(), text);
                            }
                        }
                    }
                }
            }
        }
    };
    if let Some(map) = &data.kvlist_value {
        for kv in &map.values {
            add_pair(event, kv);
        }
    }
}

/// Parses OTLP JSON requests, one per line, or one document spread over lines.
pub(crate) fn parse<R: Read>(mut lines: LineReader<R>, ctx: &mut Ctx<'_>) {
    let mut document: Option<(u64, u64, String)> = None;
    let limit = ctx.opts.max_record_bytes;
    loop {
        let line = crate::next_line!(lines, ctx);
        if let Some((_, _, text)) = document.as_mut() {
            text.push_str(line.text);
            text.push('\n');
            if text.len() > limit {
                let (offset, number, _) = document.take().unwrap_or_default();
                ctx.fatal(offset, Some(number), Reason::TooLong { limit });
                return;
            }
            continue;
        }
        let text = line
            .text
            .trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<LogsRequest>(text) {
            Ok(request) => emit_request(&request, line.offset, Some(line.number), ctx),
            Err(e) if e.is_eof() => {
                document = Some((line.offset, line.number, format!("{text}\n")));
            }
            Err(e) => ctx.error(line.offset, Some(line.number), Reason::Json(e.to_string())),
        }
    }
    if let Some((offset, number, text)) = document {
        let stream = serde_json::Deserializer::from_str(&text).into_iter::<LogsRequest>();
        for request in stream {
            match request {
                Ok(request) => emit_request(&request, offset, Some(number), ctx),
                Err(e) => {
                    ctx.fatal(
                        offset,
                        Some(number + e.line() as u64 - 1),
                        Reason::Json(e.to_string()),
                    );
                    break;
                }
            }
        }
    }
}

fn emit_request(request: &LogsRequest, offset: u64, line: Option<u64>, ctx: &mut Ctx<'_>) {
    for result in events_from_request(request) {
        match result {
            Ok(event) => ctx.emit(event, offset),
            Err(reason) => ctx.error(offset, line, reason),
        }
    }
}
