//! Windows event CSV exports, recognised by their header:
//!
//! - Get-WinEvent | Export-Csv / ConvertTo-Csv: the `EventLogRecord`
//!   columns (`Message`, `Id`, `Level`, `RecordId`, `ProviderName`,
//!   `LogName`, `MachineName`, `UserId`, `TimeCreated`, `LevelDisplayName` …)
//!   with or without the `#TYPE` line, `,` or `;` (`-UseCulture`) or tab,
//!   multi-line messages inside quotes. `TimeCreated` is local time in the
//!   exporting culture. An extra `Xml` column (`ToXml()`) is used when present.
//! - Event Viewer "Save All Events As…" CSV or tab-separated text:
//!   `Level, Date and Time, Source, Event ID, Task Category` and the message
//!   in an unnamed sixth column. It names no computer or log: the host comes
//!   from `--host`.
//! - EvtxECmd (KAPE) CSV: `RecordNumber, EventRecordId, TimeCreated (UTC),
//!   EventId, Level, Provider, Channel, …, Computer, UserId, MapDescription,
//!   PayloadData1..6, …, Payload` with the event data as JSON in `Payload`.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use crate::error::Reason;
use crate::event::{Event, Level};
use crate::extract::vm_id_from_user;
use crate::format::event_xml;
use crate::format::json_walk::{walk, FieldSink, Scalar};
use crate::read::{TextEncoding, Utf8Reader};
use crate::time::{parse_iso, parse_local, parse_ms_date};
use crate::Ctx;

/// Fails a read once more than `limit` bytes were read since the last
/// record ended, so one giant field cannot exhaust memory.
pub(crate) struct Guard<R> {
    pub inner: R,
    pub read: Rc<Cell<u64>>,
    pub mark: Rc<Cell<u64>>,
    pub limit: u64,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read.get().saturating_sub(self.mark.get()) > self.limit {
            return Err(io::Error::other(format!(
                "record longer than {} bytes",
                self.limit
            )));
        }
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

fn delimiter_of(header: &[u8]) -> u8 {
    let line = header
        .split(|b| *b == b'\n')
        .find(|l| !l.starts_with(b"#"))
        .unwrap_or(header);
    let count = |d: u8| line.iter().filter(|b| **b == d).count();
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| count(*d))
        .unwrap_or(b',')
}

/// Builds an event from PowerShell's `EventLogRecord` properties.
pub(crate) fn build(get: &dyn Fn(&str) -> Option<String>, ctx: &Ctx<'_>) -> Result<Event, Reason> {
    let mut event = match get("Xml").filter(|x| x.trim_start().starts_with("<Event")) {
        Some(xml) => event_xml::parse_event(&xml).map_err(Reason::Xml)?,
        None => {
            let time =
                get("TimeCreated").ok_or_else(|| Reason::Malformed("no TimeCreated".into()))?;
            let mut event = Event::default();
            if let Some(t) = parse_ms_date(&time) {
                event.timestamp = t;
            } else if let Some(stamp) =
                parse_iso(&time).or_else(|| parse_local(&time, ctx.opts.day_first))
            {
                let (t, assumed) = ctx.resolve(stamp);
                event.timestamp = t;
                event.zone_assumed = assumed;
            } else {
                return Err(Reason::Malformed(format!("bad TimeCreated {time:?}")));
            }
            let id = get("Id").unwrap_or_default();
            event.event_id = id
                .trim()
                .parse()
                .map_err(|_| Reason::Malformed(format!("bad Id {id:?}")))?;
            event.level = get("Level")
                .and_then(|l| l.trim().parse::<u64>().ok())
                .map(Level::from_number)
                .or_else(|| get("LevelDisplayName").as_deref().and_then(Level::parse))
                .unwrap_or_default();
            event.record_id = get("RecordId").and_then(|r| r.trim().parse().ok());
            event.provider = get("ProviderName").unwrap_or_default().into();
            event.channel = get("LogName")
                .or_else(|| get("ContainerLog"))
                .unwrap_or_default()
                .into();
            event.host = get("MachineName").unwrap_or_default().into();
            event
        }
    };
    if let Some(message) = get("Message").filter(|m| !m.is_empty()) {
        event.message = message.replace("\r\n", "\n");
    }
    if event.vm_id.is_none() {
        event.vm_id = get("UserId").as_deref().and_then(vm_id_from_user);
    }
    Ok(event)
}

/// Which program wrote the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    PowerShell,
    ViewerSaveAs,
    EvtxECmd,
}

fn dialect(headers: &csv::StringRecord) -> Dialect {
    let has = |name: &str| headers.iter().any(|h| h == name);
    if has("Date and Time") && has("Event ID") {
        Dialect::ViewerSaveAs
    } else if has("EventRecordId") && has("MapDescription") {
        Dialect::EvtxECmd
    } else {
        Dialect::PowerShell
    }
}

/// The header a dialect uses for one of PowerShell's property names.
fn column(dialect: Dialect, name: &str) -> Option<&str> {
    Some(match (dialect, name) {
        (Dialect::PowerShell, _) => name,
        (Dialect::ViewerSaveAs, "TimeCreated") => "Date and Time",
        (Dialect::ViewerSaveAs, "Id") => "Event ID",
        (Dialect::ViewerSaveAs, "ProviderName") => "Source",
        (Dialect::ViewerSaveAs, "LevelDisplayName") => "Level",
        (Dialect::ViewerSaveAs, "Level") => return None,
        (Dialect::EvtxECmd, "Id") => "EventId",
        (Dialect::EvtxECmd, "RecordId") => "EventRecordId",
        (Dialect::EvtxECmd, "ProviderName") => "Provider",
        (Dialect::EvtxECmd, "LogName") => "Channel",
        (Dialect::EvtxECmd, "MachineName") => "Computer",
        (Dialect::EvtxECmd, "LevelDisplayName") => "Level",
        (Dialect::EvtxECmd, "Level") => return None,
        _ => name,
    })
}

/// EvtxECmd's `Payload`: `{"EventData":{"Data":[{"@Name":"x","#text":"v"}]}}`
/// or `{"UserData":{"VmlEventLog":{"VmName":"…"}}}`.
#[derive(Default)]
struct PayloadSink {
    fields: Vec<(String, String)>,
    name: Option<String>,
    unnamed: u32,
}

impl<'de> FieldSink<'de> for PayloadSink {
    fn field(&mut self, path: &str, value: Scalar<'de>) {
        let text = value.as_text().into_owned();
        if path.ends_with(".@Name") {
            self.name = Some(text);
        } else if path.ends_with(".#text") || path == "EventData.Data" {
            let name = self.name.take().unwrap_or_else(|| {
                self.unnamed += 1;
                format!("param{}", self.unnamed)
            });
            self.fields.push((name, text));
        } else if let Some(rest) = path.strip_prefix("UserData.") {
            let leaf = rest.rsplit('.').next().unwrap_or(rest);
            if !leaf.starts_with('@') && rest.contains('.') {
                self.fields.push((leaf.to_owned(), text));
            }
        }
    }
}

/// Parses a CSV export (PowerShell, Event Viewer Save-As or EvtxECmd).
pub(crate) fn parse<R: Read>(reader: R, base: u64, encoding: TextEncoding, ctx: &mut Ctx<'_>) {
    let read = Rc::new(Cell::new(0u64));
    let mark = Rc::new(Cell::new(0u64));
    let guard = Guard {
        inner: Utf8Reader::new(reader, encoding),
        read: read.clone(),
        mark: mark.clone(),
        limit: ctx.opts.max_record_bytes as u64,
    };
    let mut buffered = BufReader::with_capacity(64 * 1024, guard);
    let delimiter = match buffered.fill_buf() {
        Ok(head) => delimiter_of(head),
        Err(e) => {
            ctx.fatal(base, None, Reason::Io(e.to_string()));
            return;
        }
    };
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .comment(Some(b'#'))
        .flexible(true)
        .has_headers(true)
        .from_reader(buffered);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            ctx.fatal(base, Some(1), Reason::Csv(e.to_string()));
            return;
        }
    };
    let dialect = dialect(&headers);
    let byte_offsets = encoding == TextEncoding::Utf8;
    let mut record = csv::StringRecord::new();
    loop {
        let position = csv.position().clone();
        let offset = if byte_offsets {
            base + position.byte()
        } else {
            base
        };
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                mark.set(csv.position().byte());
                let by_header = |header: &str| {
                    headers
                        .iter()
                        .position(|h| h == header)
                        .and_then(|i| record.get(i))
                        .map(str::to_owned)
                };
                let get = |name: &str| -> Option<String> {
                    match (dialect, name) {
                        // The message is the unnamed column after `Task Category`.
                        (Dialect::ViewerSaveAs, "Message") => {
                            let task = headers.iter().position(|h| h == "Task Category")?;
                            record.get(task + 1).map(str::to_owned)
                        }
                        (Dialect::ViewerSaveAs, "MachineName") => ctx.opts.default_host.clone(),
                        // EvtxECmd writes UTC without saying so.
                        (Dialect::EvtxECmd, "TimeCreated") => {
                            by_header("TimeCreated").map(|t| format!("{}Z", t.trim()))
                        }
                        (Dialect::EvtxECmd, "Message") => {
                            let parts: Vec<String> = [
                                "MapDescription",
                                "PayloadData1",
                                "PayloadData2",
                                "PayloadData3",
                                "PayloadData4",
                                "PayloadData5",
                                "PayloadData6",
                            ]
                            .iter()
                            .filter_map(|h| by_header(h))
                            .filter(|v| !v.trim().is_empty())
                            .collect();
                            (!parts.is_empty()).then(|| parts.join(" | "))
                        }
                        _ => column(dialect, name).and_then(by_header),
                    }
                };
                let line = record.position().map(|p| p.line());
                match build(&get, ctx) {
                    Ok(mut event) => {
                        if dialect == Dialect::EvtxECmd {
                            if let Some(payload) =
                                by_header("Payload").filter(|p| p.starts_with('{'))
                            {
                                let mut sink = PayloadSink::default();
                                if walk(&payload, &mut sink).is_ok() {
                                    for (name, value) in sink.fields {
                                        event.data.insert(name, value);
                                    }
                                }
                            }
                        }
                        ctx.emit(event, offset)
                    }
                    Err(reason) => ctx.error(offset, line, reason),
                }
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).or(Some(position.line()));
                let fatal = matches!(e.kind(), csv::ErrorKind::Io(_));
                if fatal {
                    ctx.fatal(offset, line, Reason::Csv(e.to_string()));
                    break;
                }
                mark.set(read.get());
                ctx.error(offset, line, Reason::Csv(e.to_string()));
            }
        }
    }
}
