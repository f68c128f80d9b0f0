//! Event XML: `wevtutil qe /f:xml` (events back to back, no root),
//! Get-WinEvent `ToXml()`, Event Viewer's XML view, `<Events>` wrappers,
//! EvtxECmd's rendering and what the `evtx` crate renders.
//!
//! The stream is cut into `<Event>` … `</Event>` slices (in the file's own
//! encoding, so offsets are exact), and each slice is parsed on its own: a
//! broken event is reported and the next one is still read.

use std::io::Read;

use compact_str::CompactString;
use memchr::memmem;
use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::Reader;

use crate::error::Reason;
use crate::event::{Event, Level};
use crate::extract::vm_id_from_user;
use crate::read::{decode, Scanner, TextEncoding};
use crate::time::parse_iso;
use crate::Ctx;

fn encode(s: &str, encoding: TextEncoding) -> Vec<u8> {
    match encoding {
        TextEncoding::Utf8 => s.as_bytes().to_vec(),
        TextEncoding::Utf16Le => s.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        TextEncoding::Utf16Be => s.encode_utf16().flat_map(u16::to_be_bytes).collect(),
    }
}

/// Finds `<Event` followed by whitespace, `>` or `/` (not `<Events>`,
/// `<EventData>` …) at or after `from`; returns its index.
fn find_event_start(
    window: &[u8],
    from: usize,
    open: &memmem::Finder<'_>,
    unit: usize,
    encoding: TextEncoding,
) -> Option<usize> {
    let mut at = from;
    while let Some(rel) = open.find(&window[at..]) {
        let i = at + rel;
        let next = i + open.needle().len();
        let aligned = unit == 1 || i.is_multiple_of(2);
        let Some(next_char) = window.get(next..next + unit) else {
            // Can't tell yet: let the caller read more.
            return if aligned { Some(i) } else { None };
        };
        let c = match encoding {
            TextEncoding::Utf8 => next_char[0],
            TextEncoding::Utf16Le if next_char[1] == 0 => next_char[0],
            TextEncoding::Utf16Be if next_char[0] == 0 => next_char[1],
            _ => b'x',
        };
        if aligned && matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/') {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// Reads a stream of event XML, emitting one event per `<Event>` element.
pub(crate) fn parse_stream<R: Read>(
    reader: R,
    base: u64,
    encoding: TextEncoding,
    ctx: &mut Ctx<'_>,
) {
    let open_bytes = encode("<Event", encoding);
    let close_bytes = encode("</Event>", encoding);
    let open = memmem::Finder::new(&open_bytes);
    let close = memmem::Finder::new(&close_bytes);
    let unit = if encoding == TextEncoding::Utf8 { 1 } else { 2 };
    let comment_open_bytes = encode("<!--", encoding);
    let comment_close_bytes = encode("-->", encoding);
    let comment_open = memmem::Finder::new(&comment_open_bytes);
    let comment_close = memmem::Finder::new(&comment_close_bytes);
    let comment_close_len = comment_close_bytes.len();
    let limit = ctx.opts.max_record_bytes;
    let mut scanner = Scanner::new(reader, base);
    let mut text = String::new();
    // Where the current event starts in the window, once found.
    let mut start: Option<usize> = None;
    let mut searched = 0usize;
    loop {
        let window = scanner.window();
        match start {
            None => {
                let candidate = find_event_start(window, 0, &open, unit, encoding);
                // `<Event>` quoted inside a comment is not an event.
                if let Some(c) = comment_open.find(window) {
                    if candidate.is_none_or(|i| c < i) {
                        if let Some(e) = comment_close.find(&window[c..]) {
                            scanner.consume(c + e + comment_close_len);
                            continue;
                        }
                        if window.len() - c > limit {
                            scanner.consume(window.len());
                        }
                        // Otherwise read on to find the end of the comment.
                        match scanner.fill() {
                            Ok(0) => return,
                            Ok(_) => continue,
                            Err(e) => {
                                let offset = scanner.offset();
                                ctx.fatal(offset, None, Reason::Io(e.to_string()));
                                return;
                            }
                        }
                    }
                }
                if let Some(i) = candidate {
                    if window.len() >= i + open_bytes.len() + unit || scanner.eof() {
                        start = Some(i);
                        searched = i + open_bytes.len();
                        continue;
                    }
                } else {
                    // Nothing here can start an event except a partial tag at the end.
                    let keep = (open_bytes.len() + unit).min(window.len());
                    let drop = (window.len() - keep) & !(unit - 1);
                    scanner.consume(drop);
                }
            }
            Some(s) => {
                let from = searched.max(s + open_bytes.len());
                // A new `<Event` before this one closes means this one is broken.
                let next_open = find_event_start(window, from, &open, unit, encoding)
                    .filter(|i| window.len() >= i + open_bytes.len() + unit);
                let end = close.find(&window[from..]).map(|i| from + i);
                match (end, next_open) {
                    (Some(e), next) if next.is_none_or(|n| e < n) => {
                        let stop = e + close_bytes.len();
                        let offset = scanner.offset() + s as u64;
                        text.clear();
                        let slice = &window[s..stop];
                        text = decode(slice, encoding);
                        match parse_event(&text) {
                            Ok(event) => ctx.emit(event, offset),
                            Err(reason) => ctx.error(offset, None, Reason::Xml(reason)),
                        }
                        scanner.consume(stop);
                        start = None;
                        searched = 0;
                        continue;
                    }
                    (_, Some(n)) => {
                        let offset = scanner.offset() + s as u64;
                        ctx.error(
                            offset,
                            None,
                            Reason::Xml("<Event> without </Event> before the next event".into()),
                        );
                        scanner.consume(n);
                        start = None;
                        searched = 0;
                        continue;
                    }
                    (_, None) => {
                        if window.len() - s > limit {
                            let offset = scanner.offset() + s as u64;
                            ctx.error(offset, None, Reason::TooLong { limit });
                            let drop = (window.len() - close_bytes.len()) & !(unit - 1);
                            scanner.consume(drop.max(s + unit));
                            start = None;
                            searched = 0;
                            // Skip up to the close tag of the oversized event.
                            skip_past_close(&mut scanner, &close, close_bytes.len(), unit, ctx);
                            continue;
                        }
                        searched = window.len().saturating_sub(close_bytes.len());
                    }
                }
            }
        }
        match scanner.fill() {
            Ok(0) => {
                if let Some(s) = start {
                    let offset = scanner.offset() + s as u64;
                    ctx.error(
                        offset,
                        None,
                        Reason::Xml("truncated: <Event> without </Event> at end of input".into()),
                    );
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let offset = scanner.offset();
                ctx.fatal(offset, None, Reason::Io(e.to_string()));
                return;
            }
        }
    }
}

fn skip_past_close<R: Read>(
    scanner: &mut Scanner<R>,
    close: &memmem::Finder<'_>,
    close_len: usize,
    unit: usize,
    ctx: &mut Ctx<'_>,
) {
    loop {
        let window = scanner.window();
        if let Some(i) = close.find(window) {
            scanner.consume(i + close_len);
            return;
        }
        let drop = window.len().saturating_sub(close_len) & !(unit - 1);
        scanner.consume(drop);
        match scanner.fill() {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                let offset = scanner.offset();
                ctx.fatal(offset, None, Reason::Io(e.to_string()));
                return;
            }
        }
    }
}

/// Which part of `<Event>` an element is in.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Section {
    #[default]
    None,
    System,
    EventData,
    UserData,
    RenderingInfo,
    Other,
}

/// The section an element directly under `<Event>` opens.
pub(crate) fn section_of(name: &str) -> Section {
    match name {
        "System" => Section::System,
        "EventData" => Section::EventData,
        "UserData" => Section::UserData,
        "RenderingInfo" => Section::RenderingInfo,
        "ProcessingErrorData" | "DebugData" => Section::EventData,
        _ => Section::Other,
    }
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == name).then(|| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.into_owned())
        })
    })
}

/// Parses one `<Event>` element into an [`Event`] (before VM/HRESULT
/// extraction, which the caller's context does). An event without
/// `TimeCreated` is an error.
pub fn parse_event(xml: &str) -> Result<Event, String> {
    match parse_event_parts(xml)? {
        (event, true) => Ok(event),
        (_, false) => Err("no System/TimeCreated/@SystemTime".into()),
    }
}

/// Like [`parse_event`], but also returns an event without `TimeCreated`,
/// saying whether it had one.
pub fn parse_event_parts(xml: &str) -> Result<(Event, bool), String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut builder = Builder::default();
    loop {
        let xml_event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        match xml_event {
            XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) => {
                let empty = matches!(xml_event, XmlEvent::Empty(_));
                let name = e.local_name();
                builder.start(name.as_ref(), &mut XmlAttrs(e), empty)?;
            }
            // The root's end ends the event (any other end falls through to `_`).
            XmlEvent::End(_) if builder.end()? => break,
            XmlEvent::Text(t) => builder.text(&t.xml10_content()),
            XmlEvent::CData(t) => builder.text(&t.xml10_content()),
            XmlEvent::GeneralRef(r) => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => builder.text(c.encode_utf8(&mut [0; 4])),
                        _ => builder.text("\u{FFFD}"),
                    }
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                    builder.text(s);
                } else {
                    builder.text("&");
                    builder.text(&r);
                    builder.text(";");
                }
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    let has_time = builder.finish()?;
    Ok((builder.take(), has_time))
}

/// An element's attributes, looked up by local name when the builder needs one.
pub(crate) trait Attrs {
    fn get(&mut self, name: &str) -> Option<String>;

    /// A time attribute (`SystemTime`), as UTC.
    fn time(&mut self, name: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.get(name)
            .as_deref()
            .and_then(parse_iso)
            .map(|t| t.assume_utc())
    }
}

struct XmlAttrs<'a, 'b>(&'a BytesStart<'b>);

impl Attrs for XmlAttrs<'_, '_> {
    fn get(&mut self, name: &str) -> Option<String> {
        attr(self.0, name)
    }
}

/// Turns the elements of one `<Event>` into an [`Event`]: the XML reader
/// above and the EVTX BinXML walker (`format::binxml`) both drive it, so an
/// event reads the same whichever way it came.
#[derive(Default)]
pub(crate) struct Builder {
    event: Event,
    stack: Vec<CompactString>,
    section: Section,
    text: String,
    /// The name of the `EventData` field being read, if it has one.
    data_name: Option<CompactString>,
    unnamed: u32,
    saw_event: bool,
    saw_time: bool,
    rendered_level: Option<Level>,
    numeric_level: Option<Level>,
}

impl Builder {
    /// Makes ready for the next event, keeping the allocations of the last.
    pub(crate) fn reset(&mut self) {
        let Builder {
            event,
            stack,
            section,
            text,
            data_name,
            unnamed,
            saw_event,
            saw_time,
            rendered_level,
            numeric_level,
        } = self;
        event.clear();
        stack.clear();
        *section = Section::None;
        text.clear();
        *data_name = None;
        *unnamed = 0;
        *saw_event = false;
        *saw_time = false;
        *rendered_level = None;
        *numeric_level = None;
    }

    /// True before the first element (nothing read since the reset).
    pub(crate) fn is_fresh(&self) -> bool {
        self.stack.is_empty() && !self.saw_event
    }

    /// A plan (`format::binxml`) reads the event: it sets the fields
    /// itself, through the calls below, as reading the elements would.
    pub(crate) fn plan_started(&mut self) {
        self.saw_event = true;
    }

    /// The event had `System/TimeCreated` (a plan read it).
    pub(crate) fn saw_time(&mut self) {
        self.saw_time = true;
    }

    /// `System/Level` (a plan read it).
    pub(crate) fn set_level(&mut self, level: Option<Level>) {
        self.numeric_level = level;
    }

    /// The number of the next unnamed `EventData/Data` (`paramN`).
    pub(crate) fn next_unnamed(&mut self) -> u32 {
        self.unnamed += 1;
        self.unnamed
    }

    /// Set up as inside the elements `open` (root first), for a plan to
    /// read an embedded fragment there with [`Builder::start`] and
    /// [`Builder::end`].
    pub(crate) fn enter<'n>(&mut self, open: impl Iterator<Item = &'n str>) {
        self.stack.clear();
        self.stack.extend(open.map(CompactString::from));
        self.section = match self.stack.get(1) {
            Some(name) => section_of(name),
            None => Section::None,
        };
        self.text.clear();
        self.data_name = None;
    }

    /// Back from [`Builder::enter`]: the elements read in between must have
    /// closed (`depth` still open).
    pub(crate) fn leave(&mut self, depth: usize) -> Result<(), String> {
        if self.stack.len() != depth {
            return Err("unbalanced fragment".into());
        }
        self.stack.clear();
        self.section = Section::None;
        self.text.clear();
        self.data_name = None;
        Ok(())
    }

    /// The event built (complete after [`Builder::finish`]).
    pub(crate) fn event_mut(&mut self) -> &mut Event {
        &mut self.event
    }

    /// Takes the event built out.
    pub(crate) fn take(&mut self) -> Event {
        std::mem::take(&mut self.event)
    }

    /// An element starts (`empty`: and ends, `<X/>`).
    pub(crate) fn start(
        &mut self,
        name: &str,
        attrs: &mut impl Attrs,
        empty: bool,
    ) -> Result<(), String> {
        let depth = self.stack.len();
        let event = &mut self.event;
        if depth == 0 {
            if name != "Event" {
                return Err(format!("expected <Event>, found <{name}>"));
            }
            if self.saw_event {
                return Err("a second <Event> root".into());
            }
            self.saw_event = true;
        } else if depth == 1 {
            self.section = section_of(name);
        } else if self.section == Section::System && depth == 2 {
            match name {
                "Provider" => {
                    if let Some(provider) =
                        attrs.get("Name").or_else(|| attrs.get("EventSourceName"))
                    {
                        event.provider = provider.into();
                    }
                }
                "TimeCreated" => {
                    if let Some(t) = attrs.time("SystemTime") {
                        event.timestamp = t;
                        self.saw_time = true;
                    }
                }
                "Security" => {
                    if let Some(vm_id) = attrs.get("UserID").as_deref().and_then(vm_id_from_user) {
                        event.vm_id = Some(vm_id);
                    }
                }
                _ => {}
            }
        } else if self.section == Section::EventData && depth == 2 {
            self.data_name = match attrs.get("Name") {
                Some(n) if !n.is_empty() => Some(n.into()),
                _ if name == "Data" => {
                    self.unnamed += 1;
                    Some(compact_str::format_compact!("param{}", self.unnamed))
                }
                _ => Some(name.into()),
            };
        }
        self.text.clear();
        if empty {
            self.end_element(name, depth);
            if depth == 1 {
                self.section = Section::None;
            }
        } else {
            self.stack.push(name.into());
        }
        Ok(())
    }

    /// Whether text inside the current element is used (a reader may skip
    /// rendering what is not).
    pub(crate) fn wants_text(&self) -> bool {
        let Some(name) = self.stack.last() else {
            return false;
        };
        let depth = self.stack.len() - 1;
        match self.section {
            Section::System => {
                depth == 2
                    && matches!(
                        name.as_str(),
                        "EventID" | "Version" | "Level" | "EventRecordID" | "Channel" | "Computer"
                    )
            }
            Section::EventData | Section::RenderingInfo => depth == 2,
            Section::UserData => depth >= 3,
            Section::None | Section::Other => false,
        }
    }

    /// Character data inside the current element.
    pub(crate) fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// The current element ends; true when it was the root.
    pub(crate) fn end(&mut self) -> Result<bool, String> {
        let Some(name) = self.stack.pop() else {
            return Err("unbalanced end tag".into());
        };
        let depth = self.stack.len();
        self.end_element(&name, depth);
        self.text.clear();
        if depth == 1 {
            self.section = Section::None;
        }
        Ok(depth == 0)
    }

    /// Completes the event; says whether it had `System/TimeCreated`.
    pub(crate) fn finish(&mut self) -> Result<bool, String> {
        if !self.stack.is_empty() {
            return Err(format!("truncated inside <{}>", self.stack.join("/")));
        }
        if !self.saw_event {
            return Err("no <Event> element".into());
        }
        self.event.level = self
            .numeric_level
            .or(self.rendered_level)
            .unwrap_or_default();
        Ok(self.saw_time)
    }

    fn end_element(&mut self, name: &str, depth: usize) {
        let event = &mut self.event;
        let text = self.text.as_str();
        let value = text.trim();
        match self.section {
            Section::System if depth == 2 => match name {
                "EventID" => event.event_id = value.parse().unwrap_or(0),
                "Version" => event.version = value.parse().ok(),
                "Level" => self.numeric_level = value.parse::<u64>().ok().map(Level::from_number),
                "EventRecordID" => event.record_id = value.parse().ok(),
                "Channel" => event.channel = value.into(),
                "Computer" => event.host = value.into(),
                _ => {}
            },
            Section::EventData if depth == 2 => {
                if let Some(field) = self.data_name.take() {
                    event.data.insert(field, value);
                }
            }
            // Leaf elements under the provider element: <VmlEventLog><VmName>…
            Section::UserData
                if depth >= 3 && (!value.is_empty() || event.data.get(name).is_none()) =>
            {
                event.data.insert(name, value);
            }
            Section::RenderingInfo if depth == 2 => match name {
                "Message" if event.message.is_empty() => {
                    event.message = text.trim_matches(['\r', '\n', ' ']).to_owned();
                }
                "Level" => self.rendered_level = Level::parse(value),
                "Channel" if event.channel.is_empty() => event.channel = value.into(),
                "Provider" if event.provider.is_empty() => event.provider = value.into(),
                _ => {}
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS_20415: &str = r#"<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event">
  <System>
    <Provider Name="Microsoft-Windows-Hyper-V-VMMS" Guid="{6066F867-7CA1-4418-85FD-36E3F9C0600C}" />
    <EventID>20415</EventID>
    <Version>0</Version>
    <Level>4</Level>
    <TimeCreated SystemTime="2017-11-21T10:57:53.874847300Z" />
    <EventRecordID>52262</EventRecordID>
    <Correlation />
    <Execution ProcessID="4900" ThreadID="11504" />
    <Channel>Microsoft-Windows-Hyper-V-VMMS-Admin</Channel>
    <Computer>773330-hyp1.MPC1495823.local</Computer>
    <Security UserID="S-1-5-18" />
  </System>
  <UserData>
    <VmlEventLog xmlns:auto-ns2="http://schemas.microsoft.com/win/2004/08/events" xmlns="http://www.microsoft.com/Windows/Virtualization/Events">
      <Parameter0>773356-USTSTDB5</Parameter0>
      <Parameter1>E0D09432-A320-44CC-8A12-E1300549B99D</Parameter1>
      <Parameter2>0.5</Parameter2>
    </VmlEventLog>
  </UserData>
</Event>"#;

    #[test]
    fn user_data_event() {
        let event = parse_event(RS_20415).unwrap();
        assert_eq!(event.event_id, 20415);
        assert_eq!(event.provider, "Microsoft-Windows-Hyper-V-VMMS");
        assert_eq!(event.channel, "Microsoft-Windows-Hyper-V-VMMS-Admin");
        assert_eq!(event.host, "773330-hyp1.MPC1495823.local");
        assert_eq!(event.record_id, Some(52262));
        assert_eq!(event.level, Level::Information);
        assert_eq!(
            event.timestamp.to_rfc3339(),
            "2017-11-21T10:57:53.874847300+00:00"
        );
        assert_eq!(event.data.get("Parameter0"), Some("773356-USTSTDB5"));
        assert_eq!(event.data.get("Parameter2"), Some("0.5"));
    }

    #[test]
    fn event_data_named_unnamed_and_rendering() {
        let xml = r#"<Event><System><Provider Name="Service Control Manager"/><EventID Qualifiers="16384">7036</EventID><Level>4</Level><TimeCreated SystemTime="2023-10-18T05:43:41.864318Z"/><EventRecordID>32</EventRecordID><Channel>System</Channel><Computer>WIN-FUDU2CKJOE8</Computer></System><EventData><Data>PlugPlay</Data><Data>running &amp; &#x41;</Data><Binary>50006C00</Binary></EventData><RenderingInfo Culture="en-US"><Message>The Plug and Play service entered the running state.</Message><Level>Information</Level></RenderingInfo></Event>"#;
        let event = parse_event(xml).unwrap();
        assert_eq!(event.event_id, 7036);
        assert_eq!(event.data.get("param1"), Some("PlugPlay"));
        assert_eq!(event.data.get("param2"), Some("running & A"));
        assert_eq!(event.data.get("Binary"), Some("50006C00"));
        assert_eq!(
            event.message,
            "The Plug and Play service entered the running state."
        );
    }

    #[test]
    fn broken_xml_is_an_error() {
        assert!(parse_event("<Event><System><EventID>1</EventID>").is_err());
        assert!(parse_event("<Event><System></Sys></Event>").is_err());
        assert!(parse_event("<Foo/>").is_err());
        assert!(parse_event("<Event><System><EventID>1</EventID></System></Event>").is_err());
    }
}
