//! Format detection by content, never by file name.

use std::fmt;
use std::str::FromStr;

use crate::read::{decode, sniff_encoding};

/// Every format relive reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Binary `.evtx` (`ElfFile\0`).
    Evtx,
    /// Event XML: wevtutil `/f:xml`, `ToXml()`, Event Viewer's XML view.
    EventXml,
    /// Event Viewer "Copy details as text" blocks (and `wevtutil /f:text`).
    ViewerText,
    /// Get-WinEvent | Export-Csv.
    PsCsv,
    /// Get-WinEvent | ConvertTo-Json.
    PsJson,
    /// ECS / Winlogbeat JSON lines (also `evtx_dump -o jsonl` lines).
    EcsJson,
    /// NXLog `to_json()` lines.
    NxlogJson,
    /// OTLP/JSON log records (`windowseventlog` receiver bodies).
    OtlpJson,
    /// Syslog RFC 5424 / RFC 3164 lines (octet-counted or not).
    Syslog,
    /// Snare tab-delimited `MSWinEventLog` lines.
    Snare,
    /// Failover cluster log (`Get-ClusterLog`).
    ClusterLog,
    /// perfmon / relog CSV of the Hyper-V live-migration counters.
    PerfmonCsv,
    /// Migration metrics as JSON lines (what the migration core writes).
    MetricsJson,
}

impl Format {
    /// Every format, in detection documentation order.
    pub const ALL: [Format; 13] = [
        Format::Evtx,
        Format::EventXml,
        Format::ViewerText,
        Format::PsCsv,
        Format::PsJson,
        Format::EcsJson,
        Format::NxlogJson,
        Format::OtlpJson,
        Format::Syslog,
        Format::Snare,
        Format::ClusterLog,
        Format::PerfmonCsv,
        Format::MetricsJson,
    ];

    /// Whether the format writes naive local time (no zone): Event Viewer
    /// text, Export-Csv, NXLog JSON, Snare, syslog (RFC 3164). Readers of a
    /// set of files take these last, so each host's offset is learned from
    /// a copy that keeps UTC before it is needed (`OffsetLearner`).
    pub fn writes_local_time(self) -> bool {
        matches!(
            self,
            Format::ViewerText | Format::PsCsv | Format::NxlogJson | Format::Snare | Format::Syslog
        )
    }

    /// The name used on the command line and in `relive.format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Evtx => "evtx",
            Format::EventXml => "event-xml",
            Format::ViewerText => "viewer-text",
            Format::PsCsv => "ps-csv",
            Format::PsJson => "ps-json",
            Format::EcsJson => "ecs-json",
            Format::NxlogJson => "nxlog-json",
            Format::OtlpJson => "otlp-json",
            Format::Syslog => "syslog",
            Format::Snare => "snare",
            Format::ClusterLog => "cluster-log",
            Format::PerfmonCsv => "perfmon-csv",
            Format::MetricsJson => "metrics-json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?} (known: evtx, event-xml, viewer-text, ps-csv, ps-json, ecs-json, nxlog-json, otlp-json, syslog, snare, cluster-log, perfmon-csv, metrics-json)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// How many bytes detection looks at.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// Detects the format of a file from its first bytes (up to [`SNIFF_BYTES`]).
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"ElfFile\0") {
        return Some(Format::Evtx);
    }
    let (encoding, bom) = sniff_encoding(head);
    let text = decode(&head[bom..], encoding);
    detect_text(&text)
}

fn is_pad(c: char) -> bool {
    c.is_whitespace() || c == '\u{FEFF}'
}

/// Detects the format of decoded text.
pub fn detect_text(text: &str) -> Option<Format> {
    let mut lines = text
        .lines()
        .map(|l| l.trim_matches(is_pad))
        .filter(|l| !l.is_empty());
    let first = lines.next()?.replace('\u{A0}', " ");
    let first = first.as_str();
    if let Some(format) = detect_line(first, text) {
        return Some(format);
    }
    if first.starts_with("#TYPE") {
        if let Some(second) = lines.next() {
            return detect_line(second, text);
        }
        return Some(Format::PsCsv);
    }
    // Cluster logs start with section headers and free text; look further.
    text.lines()
        .take(200)
        .any(|l| crate::format::cluster_log::is_diagnostic_line(l.trim_start_matches('\u{FEFF}')))
        .then_some(Format::ClusterLog)
}

fn detect_line(line: &str, whole: &str) -> Option<Format> {
    if line.starts_with("Log Name:") || line.starts_with("Event[") && line.ends_with("]:") {
        return Some(Format::ViewerText);
    }
    if line.starts_with("<?xml") || line.starts_with("<Event") {
        return Some(Format::EventXml);
    }
    if line.starts_with("\"(PDH-CSV") {
        return Some(Format::PerfmonCsv);
    }
    if line.starts_with("[===") || crate::format::cluster_log::is_diagnostic_line(line) {
        return Some(Format::ClusterLog);
    }
    if is_ps_csv_header(line) {
        return Some(Format::PsCsv);
    }
    if line.contains("\tMSWinEventLog\t") && !line.starts_with('<') {
        return Some(Format::Snare);
    }
    if crate::format::syslog::looks_like_syslog(line) {
        return Some(Format::Syslog);
    }
    if line.starts_with('[') {
        return json_document(whole);
    }
    if line.starts_with('{') {
        let complete = serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok();
        if !complete {
            return json_document(whole);
        }
        return Some(classify_json_line(line));
    }
    None
}

/// A JSON document spread over lines: OTLP, or PowerShell's `ConvertTo-Json`.
fn json_document(whole: &str) -> Option<Format> {
    if whole.contains("\"resourceLogs\"") {
        Some(Format::OtlpJson)
    } else if ["\"TimeCreated\"", "\"ProviderName\"", "\"LogName\""]
        .iter()
        .any(|key| whole.contains(key))
    {
        Some(Format::PsJson)
    } else {
        None
    }
}

/// Which JSON-lines format one object is.
pub fn classify_json_line(line: &str) -> Format {
    use memchr::memmem::Finder;
    use std::sync::OnceLock;
    // Built once: `str::contains` would set up a searcher for every line.
    static KEYS: OnceLock<[Finder<'static>; 5]> = OnceLock::new();
    let [otlp, metrics, event_time, source_name, event_id] = KEYS.get_or_init(|| {
        [
            Finder::new(b"\"resourceLogs\""),
            Finder::new(b"\"migration_id\""),
            Finder::new(b"\"EventTime\""),
            Finder::new(b"\"SourceName\""),
            Finder::new(b"\"EventID\""),
        ]
    });
    let b = line.as_bytes();
    if otlp.find(b).is_some() {
        Format::OtlpJson
    } else if metrics.find(b).is_some() {
        Format::MetricsJson
    } else if event_time.find(b).is_some()
        || (source_name.find(b).is_some() && event_id.find(b).is_some())
    {
        Format::NxlogJson
    } else {
        Format::EcsJson
    }
}

fn is_ps_csv_header(line: &str) -> bool {
    let unquoted: String = line.chars().filter(|c| *c != '"').collect();
    let mut cols = unquoted.split([',', ';', '\t']);
    let first = cols.next().unwrap_or("");
    (first == "Message" || first == "TimeCreated" || first == "Id")
        && unquoted.contains("ProviderName")
        || first == "Message" && unquoted.contains(",Id,")
        // Event Viewer "Save All Events As" (CSV or tab-separated text).
        || first == "Level" && unquoted.contains("Date and Time") && unquoted.contains("Event ID")
        // EvtxECmd.
        || first == "RecordNumber" && unquoted.contains("EventRecordId")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format() {
        let check = |text: &str, want: Format| {
            assert_eq!(detect(text.as_bytes()), Some(want), "{text}");
        };
        check("Log Name:      System\nSource: x\n", Format::ViewerText);
        check("Log\u{a0}Name:\u{a0}\u{a0}System\n", Format::ViewerText);
        check("<?xml version=\"1.0\"?><Events><Event>", Format::EventXml);
        check(
            "<Event xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">",
            Format::EventXml,
        );
        check("#TYPE System.Diagnostics.Eventing.Reader.EventLogRecord\n\"Message\",\"Id\",\"Version\",\"ProviderName\"\n", Format::PsCsv);
        check(
            "\"Message\";\"Id\";\"Version\";\"ProviderName\"\n",
            Format::PsCsv,
        );
        check(
            "[\n    {\n        \"Id\":  13,\n        \"ProviderName\": \"x\"\n    }\n]",
            Format::PsJson,
        );
        check(
            "{\n    \"Id\":  13,\n    \"ProviderName\":  \"x\"\n",
            Format::PsJson,
        );
        assert_eq!(detect(b"{\n  \"name\": 1\n}"), None);
        check(
            "{\"@timestamp\":\"2018-09-27T13:36:44Z\",\"winlog\":{\"event_id\":1}}\n",
            Format::EcsJson,
        );
        check(
            "{\"EventTime\":\"2018-09-27 15:36:44\",\"Hostname\":\"NODE-B\",\"EventID\":21502}\n",
            Format::NxlogJson,
        );
        check("{\"resourceLogs\":[]}\n", Format::OtlpJson);
        check("{\"timestamp\":\"2018-09-27T13:36:44Z\",\"migration_id\":\"m1\",\"phase\":\"started\"}\n", Format::MetricsJson);
        check(
            "<11>1 2026-11-22T19:15:25.630737+00:00 vm Hyper-V-VMMS 4242 - - x\n",
            Format::Syslog,
        );
        check(
            "205 <11>1 2026-11-22T19:15:25.630737+00:00 vm Hyper-V-VMMS 4242 - - x",
            Format::Syslog,
        );
        check(
            "<12>Nov 22 19:15:26 vm vmms: Event 21502 VM01\n",
            Format::Syslog,
        );
        check(
            "propc12\tMSWinEventLog\t4\tSystem\t2174\tFri Nov 27 09:58:51 2015\t7036\n",
            Format::Snare,
        );
        check(
            "00000b1c.00001a4c::2018/09/27-15:36:44.123 ERR   [RES] x\n",
            Format::ClusterLog,
        );
        check(
            "[=== Cluster ===]\nBuild Number 17763\n",
            Format::ClusterLog,
        );
        check("\"(PDH-CSV 4.0) (Coordinated Universal Time)(0)\",\"\\\\N\\Hyper-V VM Live Migration(VM)\\x\"\n", Format::PerfmonCsv);
        assert_eq!(detect(b"ElfFile\0rest"), Some(Format::Evtx));
        assert_eq!(detect(b"hello world\n"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn format_names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
        }
        assert!("nope".parse::<Format>().is_err());
    }
}
