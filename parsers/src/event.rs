//! The normalized event every parser produces, and its ECS-named JSON form.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use compact_str::CompactString;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::detect::Format;

/// Severity of an event, named as Event Viewer shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Level 1.
    Critical,
    /// Level 2.
    Error,
    /// Level 3.
    Warning,
    /// Level 4, and level 0 ("LogAlways").
    #[default]
    Information,
    /// Level 5.
    Verbose,
}

impl Level {
    /// The lowercase name used in `log.level`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Critical => "critical",
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Information => "information",
            Level::Verbose => "verbose",
        }
    }

    /// Maps the numeric `<Level>` of the event schema.
    pub fn from_number(level: u64) -> Level {
        match level {
            1 => Level::Critical,
            2 => Level::Error,
            3 => Level::Warning,
            5 => Level::Verbose,
            _ => Level::Information,
        }
    }

    /// Parses a level written as a name (`Error`, `ERR`, `warn`, `Informational`,
    /// `Audit Failure` …) or as a number. Case-insensitive.
    pub fn parse(text: &str) -> Option<Level> {
        let text = text.trim();
        if let Ok(number) = text.parse::<u64>() {
            return Some(Level::from_number(number));
        }
        let lower = text.to_ascii_lowercase();
        let level = match lower.as_str() {
            "critical" | "crit" | "fatal" | "emerg" | "emergency" | "alert" => Level::Critical,
            "error" | "err" | "audit failure" | "failure" => Level::Error,
            "warning" | "warn" => Level::Warning,
            "information" | "informational" | "info" | "notice" | "audit success" | "success"
            | "logalways" => Level::Information,
            "verbose" | "debug" | "dbg" | "trace" => Level::Verbose,
            _ => return None,
        };
        Some(level)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Named data fields of an event (`EventData/Data[@Name]`, `UserData` children,
/// NXLog extra keys …), in the order the source wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(CompactString, CompactString)>);

impl Fields {
    /// An empty set of fields.
    pub fn new() -> Self {
        Fields(Vec::new())
    }

    /// An empty set with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Fields(Vec::with_capacity(n))
    }

    /// Adds a field; a field that already exists is replaced.
    pub fn insert(&mut self, name: impl Into<CompactString>, value: impl Into<CompactString>) {
        let name = name.into();
        let value = value.into();
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.0.push((name, value));
        }
    }

    /// Adds a field without checking for an existing one of the same name.
    /// Parsers use it where names are known to be unique.
    pub fn push(&mut self, name: impl Into<CompactString>, value: impl Into<CompactString>) {
        self.0.push((name.into(), value.into()));
    }

    /// Adds a field whose name is a `'static` string (no copy of the name).
    pub fn push_static(&mut self, name: &'static str, value: impl Into<CompactString>) {
        self.0.push((CompactString::const_new(name), value.into()));
    }

    /// The value of a field, by exact name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a field whose name matches ignoring ASCII case.
    pub fn get_ignore_case(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Iterates over `(name, value)` pairs in source order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every field (keeping the room they took).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name.as_str(), value.as_str())?;
        }
        map.end()
    }
}

/// Where an event came from: file, byte offset of its record, and format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The file (or stream name) it was read from.
    pub path: Option<Arc<str>>,
    /// Byte offset of the record in the original bytes of that file.
    pub offset: u64,
    /// The format it was parsed from.
    pub format: Option<Format>,
}

/// One event from any source, normalized. Serialized with ECS names (see
/// [`Event::to_json`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// When the event was written, in UTC with nanoseconds.
    pub timestamp: DateTime<Utc>,
    /// True when the source carried local time without a zone and the
    /// configured default zone was assumed to convert it to UTC.
    pub zone_assumed: bool,
    /// Computer as logged (`NODE-B.datawisetech.corp`).
    pub host: CompactString,
    /// Event log channel (`System`, `Microsoft-Windows-Hyper-V-VMMS-Admin`, `cluster.log`).
    pub channel: CompactString,
    /// Provider (source) name.
    pub provider: CompactString,
    /// Event id (0 where a format has none, as in cluster.log).
    pub event_id: u32,
    /// The event's version (`System/Version`, `winlog.version`) where the
    /// format carries it: which message template and data layout it has.
    pub version: Option<u8>,
    /// Severity.
    pub level: Level,
    /// `EventRecordID`; with host and channel it identifies the event.
    pub record_id: Option<u64>,
    /// Name of the virtual machine the event is about, when it names one.
    pub vm_name: Option<CompactString>,
    /// Id of that virtual machine: an upper-case GUID without braces.
    pub vm_id: Option<CompactString>,
    /// True when `vm_id` was not in the event itself but inferred from the
    /// other events of the same input (same VM name, or the one VM nearby).
    pub vm_id_inferred: bool,
    /// The first HRESULT or Win32 error code the event carries, as `0x80070002`.
    pub hresult: Option<CompactString>,
    /// Rendered description.
    pub message: String,
    /// True when the event arrived without its text and relive rendered
    /// `message` from its message catalog ([`crate::catalog`]).
    pub message_rendered: bool,
    /// Every named data field.
    pub data: Fields,
    /// Where the event was read from.
    pub origin: Origin,
}

/// What a sink that takes events as their ECS JSON lines ([`crate::Sink::event_lines`])
/// still gets of each one besides the line: enough to count and summarize
/// them, and for the VM-id resolver to learn from them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventHead {
    /// [`Event::timestamp`].
    pub timestamp: DateTime<Utc>,
    /// [`Event::zone_assumed`].
    pub zone_assumed: bool,
    /// [`Event::host`].
    pub host: CompactString,
    /// [`Event::vm_name`].
    pub vm_name: Option<CompactString>,
    /// [`Event::vm_id`].
    pub vm_id: Option<CompactString>,
    /// True when the provider or channel is a Hyper-V one.
    pub(crate) hyperv: bool,
}

impl EventHead {
    /// Takes the head out of an event that is done with (its line written).
    pub(crate) fn take(event: &mut Event, hyperv: bool) -> EventHead {
        EventHead {
            timestamp: event.timestamp,
            zone_assumed: event.zone_assumed,
            host: std::mem::take(&mut event.host),
            vm_name: event.vm_name.take(),
            vm_id: event.vm_id.take(),
            hyperv,
        }
    }
}

/// ECS field names, in one place.
pub mod ecs {
    /// `@timestamp`
    pub const TIMESTAMP: &str = "@timestamp";
    /// `host.name`
    pub const HOST_NAME: &str = "host.name";
    /// `winlog.channel`
    pub const CHANNEL: &str = "winlog.channel";
    /// `winlog.provider_name`
    pub const PROVIDER: &str = "winlog.provider_name";
    /// `winlog.event_id`
    pub const EVENT_ID: &str = "winlog.event_id";
    /// `event.code`
    pub const EVENT_CODE: &str = "event.code";
    /// `log.level`
    pub const LEVEL: &str = "log.level";
    /// `winlog.record_id`
    pub const RECORD_ID: &str = "winlog.record_id";
    /// `winlog.computer_name`
    pub const COMPUTER_NAME: &str = "winlog.computer_name";
    /// Prefix of the named data fields.
    pub const EVENT_DATA: &str = "winlog.event_data";
    /// Prefix of Winlogbeat's UserData fields.
    pub const USER_DATA: &str = "winlog.user_data";
    /// `message`
    pub const MESSAGE: &str = "message";
    /// `log.file.path`
    pub const FILE_PATH: &str = "log.file.path";
    /// `log.offset`
    pub const OFFSET: &str = "log.offset";
    /// `error.code`: the HRESULT.
    pub const ERROR_CODE: &str = "error.code";
    /// VM name inside event data.
    pub const VM_NAME: &str = "VmName";
    /// VM id inside event data.
    pub const VM_ID: &str = "VmId";
    /// `relive.zone_assumed`
    pub const ZONE_ASSUMED: &str = "relive.zone_assumed";
    /// `relive.format`
    pub const FORMAT: &str = "relive.format";
    /// `relive.vm_id_inferred`
    pub const VM_ID_INFERRED: &str = "relive.vm_id_inferred";
    /// `relive.message_rendered`
    pub const MESSAGE_RENDERED: &str = "relive.message_rendered";
    /// `winlog.version`
    pub const VERSION: &str = "winlog.version";
}

impl Event {
    /// Resets every field to its default, keeping the room the strings and
    /// the data fields took (for a parser that fills one event per record).
    pub fn clear(&mut self) {
        let Event {
            timestamp,
            zone_assumed,
            host,
            channel,
            provider,
            event_id,
            version,
            level,
            record_id,
            vm_name,
            vm_id,
            vm_id_inferred,
            hresult,
            message,
            message_rendered,
            data,
            origin,
        } = self;
        *timestamp = DateTime::default();
        *zone_assumed = false;
        host.clear();
        channel.clear();
        provider.clear();
        *event_id = 0;
        *version = None;
        *level = Level::default();
        *record_id = None;
        *vm_name = None;
        *vm_id = None;
        *vm_id_inferred = false;
        *hresult = None;
        message.clear();
        *message_rendered = false;
        data.clear();
        *origin = Origin::default();
    }

    /// The short host name: `NODE-B` for `NODE-B.datawisetech.corp`.
    pub fn short_host(&self) -> &str {
        short_host(&self.host)
    }

    /// The timestamp in RFC 3339 with nanoseconds and a `Z`.
    pub fn timestamp_rfc3339(&self) -> String {
        self.timestamp.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }

    /// Serializes the event as one line of ECS-named JSON (nested objects).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256 + self.message.len());
        self.write_json(&mut out);
        // Only whole `str`s and ASCII are written: valid UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the ECS JSON of this event (no trailing newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        crate::ecs_json::write_event(self, out);
    }
}

/// The short form of a host name: everything before the first dot.
pub fn short_host(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// A JSON object of up to `N` entries; `None` values are left out.
struct Obj<'a, const N: usize>([(&'a str, Val<'a>); N]);

enum Val<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    U64(u64),
    OptU64(Option<u64>),
    Bool(bool),
    OptBool(Option<bool>),
    Data(&'a Event),
}

impl Serialize for Val<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Str(s) => serializer.serialize_str(s),
            Val::OptStr(Some(s)) => serializer.serialize_str(s),
            Val::OptStr(None) => serializer.serialize_none(),
            Val::U64(n) => serializer.serialize_u64(*n),
            Val::OptU64(Some(n)) => serializer.serialize_u64(*n),
            Val::OptU64(None) => serializer.serialize_none(),
            Val::Bool(b) | Val::OptBool(Some(b)) => serializer.serialize_bool(*b),
            Val::OptBool(None) => serializer.serialize_none(),
            Val::Data(event) => EventData(event).serialize(serializer),
        }
    }
}

impl Val<'_> {
    fn is_none(&self) -> bool {
        matches!(
            self,
            Val::OptStr(None) | Val::OptU64(None) | Val::OptBool(None)
        )
    }
}

impl<const N: usize> Serialize for Obj<'_, N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in &self.0 {
            if !value.is_none() {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// `winlog.event_data`: every named field, plus `VmName`/`VmId` when they were
/// pulled out of the text rather than read from a field.
struct EventData<'a>(&'a Event);

impl Serialize for EventData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in event.data.iter() {
            map.serialize_entry(name, value)?;
        }
        if let Some(vm_name) = &event.vm_name {
            if event.data.get(ecs::VM_NAME).is_none() {
                map.serialize_entry(ecs::VM_NAME, vm_name.as_str())?;
            }
        }
        if let Some(vm_id) = &event.vm_id {
            if event.data.get(ecs::VM_ID).is_none() {
                map.serialize_entry(ecs::VM_ID, vm_id.as_str())?;
            }
        }
        map.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let timestamp = self.timestamp_rfc3339();
        let event_code = self.event_id.to_string();
        let format = self.origin.format.map(|f| f.name());
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(ecs::TIMESTAMP, &timestamp)?;
        map.serialize_entry("event", &Obj([("code", Val::Str(&event_code))]))?;
        map.serialize_entry("host", &Obj([("name", Val::Str(&self.host))]))?;
        map.serialize_entry(
            "winlog",
            &Obj([
                ("channel", Val::Str(&self.channel)),
                ("provider_name", Val::Str(&self.provider)),
                ("event_id", Val::U64(u64::from(self.event_id))),
                ("version", Val::OptU64(self.version.map(u64::from))),
                ("record_id", Val::OptU64(self.record_id)),
                ("computer_name", Val::Str(&self.host)),
                ("event_data", Val::Data(self)),
            ]),
        )?;
        map.serialize_entry(
            "log",
            &LogObj {
                level: self.level.as_str(),
                offset: self.origin.offset,
                path: self.origin.path.as_deref(),
            },
        )?;
        map.serialize_entry(ecs::MESSAGE, &self.message)?;
        if let Some(hresult) = &self.hresult {
            map.serialize_entry("error", &Obj([("code", Val::Str(hresult))]))?;
        }
        map.serialize_entry(
            "relive",
            &Obj([
                ("format", Val::OptStr(format)),
                ("zone_assumed", Val::Bool(self.zone_assumed)),
                (
                    "vm_id_inferred",
                    Val::OptBool(self.vm_id_inferred.then_some(true)),
                ),
                (
                    "message_rendered",
                    Val::OptBool(self.message_rendered.then_some(true)),
                ),
            ]),
        )?;
        map.end()
    }
}

/// `log`: level, offset and (when known) `file.path`.
struct LogObj<'a> {
    level: &'a str,
    offset: u64,
    path: Option<&'a str>,
}

impl Serialize for LogObj<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("level", self.level)?;
        if let Some(path) = self.path {
            map.serialize_entry("file", &Obj([("path", Val::Str(path))]))?;
        }
        map.serialize_entry("offset", &self.offset)?;
        map.end()
    }
}
