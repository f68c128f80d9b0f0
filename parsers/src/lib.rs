//! `parsers` turns every log format a Hyper-V or Failover Cluster admin can
//! hand over into one normalized [`Event`] (and migration samples into
//! [`Metric`]s), detecting the format by content.
//!
//! Formats: EVTX (through the `evtx` crate), event XML, Event Viewer
//! "copy details as text", Get-WinEvent `Export-Csv` and `ConvertTo-Json`,
//! ECS/Winlogbeat, NXLog and OTLP JSON, syslog RFC 5424/3164 and Snare,
//! `Get-ClusterLog` output, perfmon CSV and JSON lines of migration metrics.
//! Text may be UTF-8 or UTF-16, with or without a BOM, CRLF or LF.
//!
//! Parsing never fails as a whole: a file yields events plus per-record
//! [`RecordError`]s that say where (file, byte offset, line) and why, and
//! the rest of the file is still read. Memory stays bounded by
//! [`ParseOptions::max_record_bytes`] whatever the input.
//!
//! ```
//! let text = "Log Name:      System\n\
//! Source:        Microsoft-Windows-Hyper-V-High-Availability\n\
//! Date:          9/27/2018 15:36:44\n\
//! Event ID:      21502\n\
//! Level:         Error\n\
//! Computer:      NODE-B.datawisetech.corp\n\
//! Description:\n\
//! Live migration of 'Virtual Machine ADFS1' failed. (0x80070002)\n";
//! let out = parsers::parse_bytes(text.as_bytes(), &parsers::ParseOptions::default());
//! assert!(out.errors.is_empty());
//! let event = &out.events[0];
//! assert_eq!(event.event_id, 21502);
//! assert_eq!(event.vm_name.as_deref(), Some("ADFS1"));
//! assert_eq!(event.hresult.as_deref(), Some("0x80070002"));
//! ```
#![deny(missing_docs)]

pub mod catalog;
pub mod dedup;
pub mod detect;
mod ecs_json;
pub mod error;
pub mod event;
pub mod extract;
pub mod format;
pub mod metric;
pub mod read;
mod resolve;
pub mod time;

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

pub use detect::{detect, Format};
pub use error::{Reason, RecordError};
pub use event::{Event, EventHead, Fields, Level, Origin};
pub use metric::{Metric, Outcome, Phase};
pub use read::TextEncoding;
pub use time::LocalZone;

/// How to parse.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Skip detection and read every input as this format.
    pub format: Option<Format>,
    /// Zone for local times that carry no offset.
    pub local_zone: LocalZone,
    /// Read `05/06/2026` as 5 June rather than May 6.
    pub day_first: bool,
    /// Longest record (line, XML element, CSV row) kept in memory; longer
    /// ones are skipped and reported.
    pub max_record_bytes: usize,
    /// Threads for EVTX parsing (0 = one per core).
    pub evtx_threads: usize,
    /// Host name for formats that do not carry one (a cluster.log without
    /// its header); by default the file name's `<node>_cluster.log` prefix.
    pub default_host: Option<String>,
    /// Year for RFC 3164 timestamps, which have none (default: this year).
    pub year: Option<i32>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            format: None,
            local_zone: LocalZone::default(),
            day_first: false,
            max_record_bytes: 4 * 1024 * 1024,
            evtx_threads: 0,
            default_host: None,
            year: None,
        }
    }
}

/// Receives what a parser produces, in file order.
pub trait Sink {
    /// A parsed event.
    fn event(&mut self, event: Event);
    /// A parsed migration sample.
    fn metric(&mut self, metric: Metric) {
        let _ = metric;
    }
    /// A record that could not be parsed.
    fn error(&mut self, error: RecordError);
    /// True when this sink writes each event as its ECS JSON line
    /// ([`Event::write_json`]) and needs nothing more of it than its
    /// [`EventHead`]. A parser that works on several threads (EVTX) then
    /// writes the lines there and hands them on through
    /// [`Sink::event_lines`]; [`Sink::event`] still gets the events it
    /// holds whole (those whose VM id is inferred in file order).
    fn wants_lines(&self) -> bool {
        false
    }
    /// Consecutive events as their ECS JSON lines: `lines` holds one line
    /// per head, in the same order, each ending in a newline. Called only
    /// on a sink whose [`Sink::wants_lines`] is true.
    fn event_lines(&mut self, heads: &[EventHead], lines: &[u8]) {
        let _ = (heads, lines);
    }
}

/// Everything parsed from one or more inputs, collected in memory.
#[derive(Debug, Default)]
pub struct ParseOutput {
    /// Events in file order.
    pub events: Vec<Event>,
    /// Metrics in file order.
    pub metrics: Vec<Metric>,
    /// Errors in file order.
    pub errors: Vec<RecordError>,
}

impl Sink for ParseOutput {
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }
    fn metric(&mut self, metric: Metric) {
        self.metrics.push(metric);
    }
    fn error(&mut self, error: RecordError) {
        self.errors.push(error);
    }
}

/// What was read from one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// The detected (or forced) format; `None` if nothing recognised it.
    pub format: Option<Format>,
    /// The text encoding, for text formats.
    pub encoding: Option<TextEncoding>,
    /// Events produced.
    pub events: u64,
    /// Metrics produced.
    pub metrics: u64,
    /// Records reported as errors.
    pub errors: u64,
}

/// The next line of a [`read::LineReader`] inside a parser's loop: a line
/// too long is reported and skipped (`continue`), the end or an I/O error
/// (reported) leaves the loop (`break`).
macro_rules! next_line {
    ($lines:expr, $ctx:expr) => {
        match $lines.next_line() {
            None => break,
            Some($crate::read::LineItem::Line(line)) => line,
            Some($crate::read::LineItem::TooLong { offset, number }) => {
                let limit = $ctx.opts.max_record_bytes;
                $ctx.error(offset, Some(number), $crate::Reason::TooLong { limit });
                continue;
            }
            Some($crate::read::LineItem::Io(e)) => {
                $ctx.fatal(0, None, $crate::Reason::Io(e.to_string()));
                break;
            }
        }
    };
}
pub(crate) use next_line;

/// State shared by a format parser while it reads one input.
pub(crate) struct Ctx<'a> {
    pub opts: &'a ParseOptions,
    pub path: Option<Arc<str>>,
    pub format: Format,
    sink: &'a mut dyn Sink,
    pub summary: FileSummary,
    resolver: resolve::VmResolver,
    ready: Vec<resolve::Held>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        opts: &'a ParseOptions,
        path: Option<Arc<str>>,
        format: Format,
        sink: &'a mut dyn Sink,
    ) -> Self {
        Ctx {
            opts,
            path,
            format,
            sink,
            summary: FileSummary {
                format: Some(format),
                ..FileSummary::default()
            },
            resolver: resolve::VmResolver::default(),
            ready: Vec::new(),
        }
    }

    /// Hands on an event through the VM-id resolver.
    fn hand_on(&mut self, event: Event) {
        self.summary.events += 1;
        if self.resolver.passes(&event) {
            self.resolver.seen(&event);
            self.sink.event(event);
            return;
        }
        self.resolver
            .push(resolve::Held::Event(event), &mut self.ready);
        self.hand_on_ready();
    }

    /// An event already written as its JSON line (by a worker thread, for
    /// a sink that [`Sink::wants_lines`]; never one whose VM id the
    /// resolver could fill in): true when the VM-id resolver lets it pass
    /// at once, and it is then counted and the caller hands it on with
    /// [`Ctx::hand_on_lines`], with the ones before and after it that pass;
    /// false when the caller must give it to [`Ctx::hold_line`].
    pub(crate) fn line_passes(&mut self, head: &EventHead) -> bool {
        if !self.resolver.passes(head) {
            return false;
        }
        self.summary.events += 1;
        self.resolver.seen(head);
        true
    }

    /// Hands on events that passed [`Ctx::line_passes`], their lines back
    /// to back (each ending in a newline).
    pub(crate) fn hand_on_lines(&mut self, heads: &[EventHead], lines: &[u8]) {
        if !heads.is_empty() {
            self.sink.event_lines(heads, lines);
        }
    }

    /// Holds back an event written as its line (ending in a newline) that
    /// did not pass [`Ctx::line_passes`].
    pub(crate) fn hold_line(&mut self, head: EventHead, line: &[u8]) {
        self.summary.events += 1;
        self.resolver
            .push(resolve::Held::Line(head, line.to_vec()), &mut self.ready);
        self.hand_on_ready();
    }

    fn hand_on_ready(&mut self) {
        for held in self.ready.drain(..) {
            match held {
                resolve::Held::Event(event) => self.sink.event(event),
                resolve::Held::Line(head, line) => {
                    self.sink.event_lines(std::slice::from_ref(&head), &line)
                }
            }
        }
    }

    /// True when the sink takes events as JSON lines ([`Sink::wants_lines`]).
    pub(crate) fn wants_lines(&self) -> bool {
        self.sink.wants_lines()
    }

    /// Hands on every event still held for context. Called once at the end.
    pub(crate) fn finish(&mut self) {
        self.resolver.finish(&mut self.ready);
        self.hand_on_ready();
    }

    /// Completes an event (origin, VM/HRESULT extraction) and hands it on.
    pub(crate) fn emit(&mut self, mut event: Event, offset: u64) {
        event.origin = Origin {
            path: self.path.clone(),
            offset,
            format: Some(self.format),
        };
        extract::enrich(&mut event);
        self.hand_on(event);
    }

    /// Hands on an event that is already complete (origin and extraction).
    pub(crate) fn emit_complete(&mut self, event: Event) {
        self.hand_on(event);
    }

    pub(crate) fn metric(&mut self, mut metric: Metric, offset: u64) {
        metric.origin = Origin {
            path: self.path.clone(),
            offset,
            format: Some(self.format),
        };
        self.summary.metrics += 1;
        let failure = metric.failure_event();
        self.sink.metric(metric);
        if let Some(event) = failure {
            self.emit(event, offset);
        }
    }

    pub(crate) fn error(&mut self, offset: u64, line: Option<u64>, reason: Reason) {
        self.summary.errors += 1;
        let error = RecordError::new(self.path.clone(), offset, line, reason);
        tracing::debug!(%error, "Skipped malformed record.");
        self.sink.error(error);
    }

    pub(crate) fn fatal(&mut self, offset: u64, line: Option<u64>, reason: Reason) {
        self.summary.errors += 1;
        let error = RecordError::new(self.path.clone(), offset, line, reason).fatal();
        tracing::debug!(%error, "Stopped reading.");
        self.sink.error(error);
    }

    /// Resolves a parsed time with the configured local zone.
    pub(crate) fn resolve(&self, stamp: time::Stamp) -> (chrono::DateTime<chrono::Utc>, bool) {
        stamp.resolve(&self.opts.local_zone)
    }
}

/// Reads up to [`detect::SNIFF_BYTES`] from the front of a reader.
fn read_head<R: Read>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(detect::SNIFF_BYTES);
    reader
        .by_ref()
        .take(detect::SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

fn io_error(path: Option<Arc<str>>, error: &io::Error, sink: &mut dyn Sink) -> FileSummary {
    sink.error(RecordError::new(path, 0, None, Reason::Io(error.to_string())).fatal());
    FileSummary {
        errors: 1,
        ..FileSummary::default()
    }
}

/// Parses one file, detecting its format by content (unless
/// [`ParseOptions::format`] is set), and sends what it finds to `sink`.
pub fn parse_path(path: &Path, opts: &ParseOptions, sink: &mut dyn Sink) -> FileSummary {
    let name: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return io_error(Some(name), &e, sink),
    };
    let head = match read_head(&mut file) {
        Ok(head) => head,
        Err(e) => return io_error(Some(name), &e, sink),
    };
    let format = opts.format.or_else(|| detect(&head));
    if format == Some(Format::Evtx) {
        if let Err(e) = file.seek(SeekFrom::Start(0)) {
            return io_error(Some(name), &e, sink);
        }
        let mut ctx = Ctx::new(opts, Some(name), Format::Evtx, sink);
        format::evtx::parse(file, &mut ctx);
        ctx.finish();
        return ctx.summary;
    }
    parse_text(head, file, Some(name), format, opts, sink)
}

/// Parses a stream (stdin, a network payload) named `name`.
pub fn parse_reader<R: Read>(
    mut reader: R,
    name: Option<&str>,
    opts: &ParseOptions,
    sink: &mut dyn Sink,
) -> FileSummary {
    let name: Option<Arc<str>> = name.map(Arc::from);
    let head = match read_head(&mut reader) {
        Ok(head) => head,
        Err(e) => return io_error(name, &e, sink),
    };
    let format = opts.format.or_else(|| detect(&head));
    if format == Some(Format::Evtx) {
        // EVTX needs random access: the stream goes to an unnamed temporary
        // file in bounded memory (1 MiB at a time), then is read like a file.
        let file = match spool(&head, &mut reader) {
            Ok(file) => file,
            Err(e) => return io_error(name, &e, sink),
        };
        let mut ctx = Ctx::new(opts, name, Format::Evtx, sink);
        format::evtx::parse(file, &mut ctx);
        ctx.finish();
        return ctx.summary;
    }
    parse_text(head, reader, name, format, opts, sink)
}

/// `head` then the rest of `reader` in a temporary file that is already
/// unlinked (nothing is left behind), positioned at its start.
fn spool<R: Read>(head: &[u8], reader: &mut R) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    let dir = std::env::temp_dir();
    let mut file = None;
    for attempt in 0..16u32 {
        let path = dir.join(format!(
            "relive-stdin-{}-{}-{attempt}.evtx",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                // Unlinked at once: the data lives as long as the handle.
                let _ = std::fs::remove_file(&path);
                file = Some(f);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot hold an EVTX stream in {}: {e}", dir.display()),
                ))
            }
        }
    }
    let mut file = file.ok_or_else(|| std::io::Error::other("cannot create a temporary file"))?;
    file.write_all(head)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&buf[..n])?;
    }
    file.rewind()?;
    Ok(file)
}

/// Parses bytes held in memory and collects the result.
pub fn parse_bytes(bytes: &[u8], opts: &ParseOptions) -> ParseOutput {
    let mut out = ParseOutput::default();
    parse_reader(bytes, None, opts, &mut out);
    out
}

fn parse_text<R: Read>(
    head: Vec<u8>,
    rest: R,
    name: Option<Arc<str>>,
    format: Option<Format>,
    opts: &ParseOptions,
    sink: &mut dyn Sink,
) -> FileSummary {
    let Some(format) = format else {
        if head.is_empty() {
            return FileSummary::default();
        }
        sink.error(RecordError::new(name, 0, None, Reason::UnknownFormat).fatal());
        return FileSummary {
            errors: 1,
            ..FileSummary::default()
        };
    };
    let (encoding, bom) = read::sniff_encoding(&head);
    let base = bom as u64;
    let mut reader = Cursor::new(head).chain(rest);
    // Skip the BOM.
    let mut skip = vec![0u8; bom];
    if let Err(e) = reader.read_exact(&mut skip) {
        return io_error(name, &e, sink);
    }
    let mut ctx = Ctx::new(opts, name, format, sink);
    ctx.summary.encoding = Some(encoding);
    let limit = opts.max_record_bytes;
    let lines = |reader| read::LineReader::new(reader, base, encoding, limit);
    match format {
        Format::Evtx => unreachable_evtx(&mut ctx),
        Format::EventXml => format::event_xml::parse_stream(reader, base, encoding, &mut ctx),
        Format::ViewerText => format::viewer_text::parse(lines(reader), &mut ctx),
        Format::PsCsv => format::ps_csv::parse(reader, base, encoding, &mut ctx),
        Format::PsJson => format::ps_json::parse(reader, encoding, &mut ctx),
        Format::EcsJson | Format::NxlogJson | Format::MetricsJson => {
            format::json_lines::parse(lines(reader), &mut ctx)
        }
        Format::OtlpJson => format::otlp_json::parse(lines(reader), &mut ctx),
        Format::Syslog | Format::Snare => format::syslog::parse(lines(reader), &mut ctx),
        Format::ClusterLog => format::cluster_log::parse(lines(reader), &mut ctx),
        Format::PerfmonCsv => format::metrics_csv::parse(reader, base, encoding, &mut ctx),
    }
    ctx.finish();
    ctx.summary
}

/// `--format evtx` on something that does not start like an EVTX file.
fn unreachable_evtx(ctx: &mut Ctx<'_>) {
    ctx.fatal(
        0,
        None,
        Reason::Evtx("not an EVTX file (no ElfFile header)".into()),
    );
}
