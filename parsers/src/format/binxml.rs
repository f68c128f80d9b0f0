//! EVTX records normalized straight from their BinXML (MS-EVEN6 2.2), without
//! rendering XML and reading it back.
//!
//! The `evtx` crate reads the chunks (and finds the records of a damaged
//! one: `format::evtx`); this walker then reads a record's tokens, its
//! template instances and their substitution values in place in the chunk,
//! and drives the same [`Builder`] the XML reader drives, so an event reads
//! the same either way. A template definition is compiled once per chunk
//! into ops (names resolved, start tags' attributes gathered, where a
//! left-out element resumes), which each record using it runs with its
//! values; a definition the compiler does not take is walked token by token.
//! A record's root template, and one embedded in it, go one step further:
//! a plan (`plan.rs`) sets the event's fields without the builder.
//! Text is produced the way the crate renders it (strings up to the first
//! NUL, lower-case braced GUIDs, `0x` hex, upper-case binary, seven-digit
//! times) and as an XML reader then sees it (line ends normalized, an empty
//! attribute absent, an element whose DependencyId names a NULL value left
//! out).
//!
//! Whatever this walker does not read exactly as the crate renders it (array
//! substitutions, which repeat their element; ANSI strings; entity
//! references; processing instructions; control characters; damaged
//! structure) makes it give up on that record with a [`GiveUp`], and the
//! caller renders the record through the crate instead. A unit test in
//! `format::evtx` holds the two paths equal on every real sample.

mod plan;

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};

use compact_str::CompactString;

#[cfg(test)]
use crate::event::Event;
use crate::format::event_xml::{Attrs, Builder};

/// Why the walker left a record to the crate's renderer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GiveUp(pub &'static str);

type Result<T> = std::result::Result<T, GiveUp>;

/// Nested template instances and embedded fragments deeper than this are
/// left to the crate (which has its own limits).
const MAX_NESTING: u32 = 12;
/// A template instance with more substitutions than this is not a real one.
const MAX_VALUES: usize = 4096;
/// Ticks (100 ns) from 1601-01-01 to 1970-01-01.
const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;
/// Ticks from 1970-01-01 to 10000-01-01.
const YEAR_10000: u64 = 2_534_023_008_000_000_000;

/// Hashes a chunk offset by one multiplication (the keys are few and not
/// chosen by anyone who gains from collisions beyond a slower chunk).
#[derive(Default, Clone, Copy)]
struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One substitution value: its type and where its bytes are in the chunk.
#[derive(Debug, Clone, Copy)]
struct Value {
    ty: u8,
    start: usize,
    len: usize,
}

/// A piece of an attribute's value.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// UTF-16 text at `start`, `units` code units.
    Text { start: usize, units: usize },
    /// Substitution `index` of the current template instance.
    Sub { index: usize, optional: bool },
    /// A character reference.
    Char(u16),
}

#[derive(Debug, Clone, Copy)]
struct Attr {
    name: u32,
    parts: (usize, usize),
}

/// A template instance's values: `base..base + len` in [`Walker::values`].
#[derive(Debug, Clone, Copy)]
struct Frame {
    base: usize,
    len: usize,
}

#[cfg(test)]
thread_local! {
    /// Tests compare records read with and without plans.
    static NO_PLANS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn plans_on() -> bool {
    #[cfg(test)]
    if NO_PLANS.with(|c| c.get()) {
        return false;
    }
    true
}

/// Slots of a [`Recent`] cache.
const RECENT: usize = 128;

/// A small direct-mapped cache keyed by chunk offset.
#[derive(Debug, Clone)]
struct Recent<T> {
    /// (offset + 1, value); 0: empty.
    slots: [(u32, T); RECENT],
}

impl<T: Copy + Default> Default for Recent<T> {
    fn default() -> Self {
        Recent {
            slots: [(0, T::default()); RECENT],
        }
    }
}

impl<T: Copy + Default> Recent<T> {
    fn slot(offset: u32) -> usize {
        (offset as usize >> 2) % RECENT
    }

    fn get(&self, offset: u32) -> Option<T> {
        let (key, value) = self.slots[Self::slot(offset)];
        (key == offset.wrapping_add(1) && key != 0).then_some(value)
    }

    fn insert(&mut self, offset: u32, value: T) {
        self.slots[Self::slot(offset)] = (offset.wrapping_add(1), value);
    }

    fn clear(&mut self) {
        self.slots.fill((0, T::default()));
    }
}

/// A template instance read: its definition (offset, body) and values.
struct Instance {
    def: u32,
    body: usize,
    end: usize,
    frame: Frame,
}

/// Walks the records of one chunk; decoded names are kept for the chunk
/// (a fresh walker per chunk: the caller's closure is cloned per chunk).
#[derive(Debug, Default, Clone)]
pub(crate) struct Walker {
    /// Name offset in the chunk -> index in `names`.
    name_index: HashMap<u32, u32, BuildHasherDefault<OffsetHasher>>,
    /// A direct-mapped cache in front of `name_index`.
    recent: Recent<u32>,
    /// Local names (any `prefix:` dropped, as an XML reader's local name).
    names: Vec<CompactString>,
    values: Vec<Value>,
    attrs: Vec<Attr>,
    parts: Vec<Part>,
    scratch: String,
    /// Template definitions of the chunk compiled to ops (by definition
    /// offset; `None`: one the token walk reads instead).
    programs: HashMap<u32, Option<(usize, usize)>, BuildHasherDefault<OffsetHasher>>,
    /// Direct-mapped caches in front of `programs` and of the root plans
    /// (a record's two template instances cost two hash lookups else).
    recent_programs: Recent<Option<(usize, usize)>>,
    recent_roots: Recent<Option<(usize, usize)>>,
    ops: Vec<Op>,
    op_attrs: Vec<Attr>,
    op_parts: Vec<Part>,
    /// Plans by template definition offset and where it is used (`plan`;
    /// `None`: one that runs its ops).
    plans: HashMap<u64, Option<(usize, usize)>, BuildHasherDefault<OffsetHasher>>,
    acts: Vec<plan::Act>,
    act_parts: Vec<Part>,
    /// Names of the elements open around a plan's substitutions.
    act_names: Vec<u32>,
    act_subs: Vec<plan::SubCheck>,
    plan_strings: Vec<CompactString>,
    /// Text a plan reads.
    text: String,
    /// Records read by a plan (tests check plans are used).
    #[cfg(test)]
    planned: usize,
}

/// One step of a compiled template definition: its tokens with the names
/// resolved and each start tag's attributes gathered, so a record using
/// the template is read without parsing the definition again.
#[derive(Debug, Clone, Copy)]
enum Op {
    Start {
        name: u32,
        /// DependencyId, when it names a value.
        dependency: Option<u16>,
        /// `op_attrs` range.
        attrs: (usize, usize),
        empty: bool,
        /// The template's root (never left out).
        root: bool,
        /// The op after this element's end (where a left-out element resumes).
        after: usize,
    },
    End,
    Content(Part),
}

/// Reads little-endian integers from the chunk, every read bounds-checked.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(GiveUp("truncated"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Appends UTF-16LE text (up to its first NUL) as an XML reader would read
/// it back: CR LF and lone CR become LF. Control characters XML cannot
/// carry, and unpaired surrogates, give up (the crate's rendering decides
/// what they become).
fn push_utf16(out: &mut String, bytes: &[u8]) -> Result<()> {
    // Most text is printable ASCII: copied a block at a time, undecoded.
    let before = out.len();
    if push_ascii_utf16(out, bytes) {
        return Ok(());
    }
    out.truncate(before);
    let units = bytes.chunks_exact(2).map(le_u16).take_while(|&u| u != 0);
    let mut last_cr = false;
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| GiveUp("unpaired surrogate"))?;
        match c {
            '\r' => {
                out.push('\n');
                last_cr = true;
                continue;
            }
            '\n' if last_cr => {}
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(GiveUp("control character"))
            }
            c => out.push(c),
        }
        last_cr = false;
    }
    Ok(())
}

/// UTF-16LE text up to its first NUL appended when it is all printable
/// ASCII; `false` (and part of it maybe appended) when it is not. Four
/// code units are tested at a time.
fn push_ascii_utf16(out: &mut String, bytes: &[u8]) -> bool {
    const HIGH: u64 = 0xFF00_FF00_FF00_FF00;
    const LANES: u64 = 0x0001_0001_0001_0001;
    let mut block = [0u8; 64];
    for units in bytes.chunks(block.len() * 2) {
        let mut n = 0;
        let mut k = 0;
        // Whole words of four printable units (0x20..=0x7e).
        while let Some(word) = units.get(k..k + 8) {
            let w = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            // A unit above 0xff, below 0x20 (NUL included) or 0x7f and up.
            let below = w.wrapping_sub(LANES * 0x20) & (LANES << 15);
            let above = w.wrapping_add(LANES) & (LANES * 0x0180);
            if w & HIGH != 0 || below != 0 || above != 0 {
                break;
            }
            block[n..n + 4].copy_from_slice(&[word[0], word[2], word[4], word[6]]);
            n += 4;
            k += 8;
        }
        let mut nul = false;
        for unit in units[k..].chunks_exact(2) {
            match (unit[0], unit[1]) {
                (0, 0) => {
                    nul = true;
                    break;
                }
                (b @ 0x20..=0x7e, 0) => {
                    block[n] = b;
                    n += 1;
                }
                _ => return false,
            }
        }
        out.push_str(std::str::from_utf8(&block[..n]).unwrap_or_default());
        if nul {
            break;
        }
    }
    true
}

fn hex_upper(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

fn guid(out: &mut String, b: &[u8]) {
    let _ = write!(
        out,
        "{{{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}}}",
        le_u32(&b[0..4]),
        le_u16(&b[4..6]),
        le_u16(&b[6..8]),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    );
}

fn sid(out: &mut String, b: &[u8]) -> Result<()> {
    let [revision, count, a0, a1, a2, a3, a4, a5, ref subs @ ..] = *b else {
        return Err(GiveUp("short SID"));
    };
    if subs.len() < usize::from(count) * 4 {
        return Err(GiveUp("short SID"));
    }
    let authority = u64::from_be_bytes([0, 0, a0, a1, a2, a3, a4, a5]);
    let _ = write!(out, "S-{revision}-{authority}");
    for sub in subs.chunks_exact(4).take(usize::from(count)) {
        let _ = write!(out, "-{}", le_u32(sub));
    }
    Ok(())
}

/// A FILETIME (100 ns ticks since 1601) as UTC, for 1970 up to the end of
/// 9999; outside that the crate's own arithmetic decides what it renders,
/// so callers leave those to it.
pub(crate) fn filetime_utc(ticks: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    let since_unix = filetime_since_unix(ticks)?;
    chrono::DateTime::from_timestamp(
        (since_unix / 10_000_000) as i64,
        (since_unix % 10_000_000) as u32 * 100,
    )
}

/// A FILETIME's ticks since 1970, when it is within [`filetime_utc`]'s range.
pub(crate) fn filetime_since_unix(ticks: u64) -> Option<u64> {
    ticks
        .checked_sub(FILETIME_UNIX_EPOCH)
        .filter(|&t| t < YEAR_10000)
}

/// A FILETIME as the crate renders it: `YYYY-MM-DDTHH:MM:SS.fffffffZ`.
fn filetime(out: &mut String, ticks: u64) -> Result<()> {
    use chrono::{Datelike, Timelike};
    let t = filetime_utc(ticks).ok_or(GiveUp("time outside 1970-9999"))?;
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    );
    Ok(())
}

fn int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends a scalar substitution value's text.
fn render(out: &mut String, ty: u8, b: &[u8]) -> Result<()> {
    let exact = |n: usize| {
        if b.len() == n {
            Ok(())
        } else {
            Err(GiveUp("value size"))
        }
    };
    match ty {
        0x00 => {}
        0x01 => push_utf16(out, b)?,
        0x03..=0x0a => {
            // Int8, UInt8, Int16, UInt16, … UInt64: odd types are signed.
            let size = 1 << ((ty - 0x03) / 2);
            exact(size)?;
            let mut le = [0u8; 8];
            le[..size].copy_from_slice(b);
            let n = u64::from_le_bytes(le);
            if ty % 2 == 1 {
                let shift = 64 - 8 * size;
                int(out, ((n << shift) as i64) >> shift);
            } else {
                int(out, n);
            }
        }
        0x0d => {
            exact(4)?;
            match le_u32(b) {
                0 => out.push_str("false"),
                1 => out.push_str("true"),
                _ => return Err(GiveUp("bool")),
            }
        }
        0x0e => hex_upper(out, b),
        0x0f => {
            exact(16)?;
            guid(out, b);
        }
        0x11 => {
            exact(8)?;
            filetime(out, le_u64(b))?;
        }
        0x13 => sid(out, b)?,
        0x14 => {
            exact(4)?;
            let _ = write!(out, "0x{:x}", le_u32(b));
        }
        0x15 => {
            exact(8)?;
            let _ = write!(out, "0x{:x}", le_u64(b));
        }
        _ => return Err(GiveUp("value type")),
    }
    Ok(())
}

/// Whether an optional substitution with this value leaves nothing behind.
fn optional_empty(value: &Value) -> bool {
    match value.ty {
        0x00 => true,
        // Strings, ANSI strings, binary, embedded BinXML, any array.
        0x01 | 0x02 | 0x0e | 0x21 => value.len == 0,
        t if t & 0x80 != 0 => value.len == 0,
        _ => false,
    }
}

/// The attributes of the element being started, rendered only when asked for.
struct LazyAttrs<'w> {
    data: &'w [u8],
    names: &'w [CompactString],
    attrs: &'w [Attr],
    parts: &'w [Part],
    values: &'w [Value],
    frame: Option<Frame>,
    failed: Option<GiveUp>,
}

impl LazyAttrs<'_> {
    fn render(&self, attr: &Attr) -> Result<String> {
        let mut out = String::new();
        self.render_into(attr, &mut out)?;
        Ok(out)
    }

    /// Appends the attribute's value to `out`.
    fn render_into(&self, attr: &Attr, out: &mut String) -> Result<()> {
        let from = out.len();
        for part in &self.parts[attr.parts.0..attr.parts.1] {
            match *part {
                Part::Text { start, units } => {
                    push_utf16(out, &self.data[start..start + units * 2])?
                }
                Part::Char(c) => {
                    out.push(char::from_u32(u32::from(c)).ok_or(GiveUp("char ref"))?);
                }
                Part::Sub { index, optional } => {
                    let Some(value) = self
                        .frame
                        .filter(|f| index < f.len)
                        .map(|f| self.values[f.base + index])
                    else {
                        continue;
                    };
                    if optional && optional_empty(&value) {
                        continue;
                    }
                    if value.ty & 0x80 != 0 || value.ty == 0x21 {
                        return Err(GiveUp("array or BinXML in an attribute"));
                    }
                    render(
                        out,
                        value.ty,
                        &self.data[value.start..value.start + value.len],
                    )?;
                }
            }
        }
        // An attribute value normalizes whitespace when read back.
        if out[from..].contains(['\n', '\t']) {
            return Err(GiveUp("whitespace in an attribute"));
        }
        Ok(())
    }
}

impl LazyAttrs<'_> {
    fn find(&self, name: &str) -> Option<Attr> {
        self.attrs
            .iter()
            .find(|a| self.names[a.name as usize] == name)
            .copied()
    }
}

impl Attrs for LazyAttrs<'_> {
    fn time(&mut self, name: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let attr = self.find(name)?;
        // The usual shape, one FILETIME substitution: no text in between.
        if let [Part::Sub { index, .. }] = self.parts[attr.parts.0..attr.parts.1] {
            if let Some(value) = self
                .frame
                .filter(|f| index < f.len)
                .map(|f| self.values[f.base + index])
            {
                if value.ty == 0x11 && value.len == 8 {
                    let time = filetime_utc(le_u64(&self.data[value.start..value.start + 8]));
                    if time.is_none() {
                        self.failed = Some(GiveUp("time outside 1970-9999"));
                    }
                    return time;
                }
            }
        }
        self.get(name)
            .as_deref()
            .and_then(crate::time::parse_iso)
            .map(|t| t.assume_utc())
    }

    fn get(&mut self, name: &str) -> Option<String> {
        let attr = self.find(name)?;
        match self.render(&attr) {
            // The crate leaves an attribute with an empty value out.
            Ok(value) if value.is_empty() => None,
            Ok(value) => Some(value),
            Err(e) => {
                self.failed = Some(e);
                None
            }
        }
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

/// Where a walk is: inside a template definition (with its instance's
/// values) or in a record's or fragment's own tokens.
#[derive(Clone, Copy)]
struct Scope {
    frame: Option<Frame>,
    depth: u32,
}

impl Walker {
    /// How many template definitions of the chunk run compiled.
    #[cfg(test)]
    pub(crate) fn compiled_templates(&self) -> usize {
        self.programs.values().filter(|p| p.is_some()).count()
    }

    /// Forgets the names of the chunk it walked (keeping its allocations),
    /// before the records of another chunk.
    pub(crate) fn reset(&mut self) {
        self.name_index.clear();
        self.names.clear();
        self.programs.clear();
        self.recent_programs.clear();
        self.recent_roots.clear();
        self.ops.clear();
        self.op_attrs.clear();
        self.op_parts.clear();
        self.plans.clear();
        self.acts.clear();
        self.act_parts.clear();
        self.act_names.clear();
        self.act_subs.clear();
        self.plan_strings.clear();
        self.recent.clear();
    }

    /// Normalizes the record whose BinXML is `len` bytes at `start` in the
    /// chunk `data` into the builder's event (the builder is reset first).
    /// Says whether it had `TimeCreated`.
    pub(crate) fn read(
        &mut self,
        data: &[u8],
        start: usize,
        len: usize,
        builder: &mut Builder,
    ) -> std::result::Result<bool, GiveUp> {
        let end = start.checked_add(len).filter(|&e| e <= data.len());
        let end = end.ok_or(GiveUp("record past the chunk"))?;
        builder.reset();
        self.values.clear();
        self.attrs.clear();
        self.parts.clear();
        self.walk(
            data,
            start,
            end,
            Scope {
                frame: None,
                depth: 0,
            },
            builder,
        )?;
        builder.finish().map_err(|_| GiveUp("incomplete event"))
    }

    /// [`Walker::read`] into a fresh event.
    #[cfg(test)]
    pub(crate) fn event(
        &mut self,
        data: &[u8],
        start: usize,
        len: usize,
    ) -> std::result::Result<(Event, bool), GiveUp> {
        let mut builder = Builder::default();
        let has_time = self.read(data, start, len, &mut builder)?;
        Ok((builder.take(), has_time))
    }

    /// Index of the name whose string-table entry is at `offset`.
    fn name(&mut self, data: &[u8], offset: u32) -> Result<u32> {
        if offset as usize >= data.len() {
            return Err(GiveUp("name past the chunk"));
        }
        if let Some(index) = self.recent.get(offset) {
            return Ok(index);
        }
        if let Some(&index) = self.name_index.get(&offset) {
            self.recent.insert(offset, index);
            return Ok(index);
        }
        let mut c = Cursor {
            data,
            pos: offset as usize,
        };
        c.bytes(6)?;
        let units = usize::from(c.u16()?);
        let bytes = c.bytes(units * 2)?;
        let mut name = String::with_capacity(units);
        for ch in char::decode_utf16(bytes.chunks_exact(2).map(le_u16)) {
            name.push(ch.map_err(|_| GiveUp("name"))?);
        }
        let index = self.names.len() as u32;
        self.names.push(local(&name).into());
        self.name_index.insert(offset, index);
        self.recent.insert(offset, index);
        Ok(index)
    }

    /// Reads a name reference at the cursor (skipping the name when it is
    /// stored right there).
    fn name_ref(&mut self, c: &mut Cursor<'_>) -> Result<u32> {
        let offset = c.u32()?;
        if offset as usize == c.pos {
            c.bytes(6)?;
            let units = usize::from(c.u16()?);
            c.bytes(units * 2 + 2)?;
        }
        self.name(c.data, offset)
    }

    /// Reads a template instance at the cursor (after its token) and walks
    /// its definition with its values.
    fn template_instance(
        &mut self,
        c: &mut Cursor<'_>,
        depth: u32,
        builder: &mut Builder,
    ) -> Result<()> {
        let base = self.values.len();
        let instance = self.instance(c)?;
        let frame = instance.frame;
        let scope = Scope {
            frame: Some(frame),
            depth: depth + 1,
        };
        let (def, body, end) = (instance.def, instance.body, instance.end);
        let result = match self.program(c.data, def, body, end) {
            Some(ops) => self.planned_or_run(c.data, def, ops, scope, frame, builder),
            None => self.walk(c.data, body, end, scope, builder),
        };
        self.values.truncate(base);
        result
    }

    /// Reads a template instance at the cursor (after its token): its
    /// values go to `values` (the returned frame), its definition is found.
    fn instance(&mut self, c: &mut Cursor<'_>) -> Result<Instance> {
        c.u8()?;
        let _template_id = c.u32()?;
        let def = c.u32()? as usize;
        if def == c.pos {
            c.bytes(20)?;
            let size = c.u32()? as usize;
            c.bytes(size)?;
        }
        let count = c.u32()? as usize;
        if count > MAX_VALUES {
            return Err(GiveUp("too many values"));
        }
        let descriptors = c.bytes(count * 4)?;
        let base = self.values.len();
        for d in descriptors.chunks_exact(4) {
            let len = usize::from(le_u16(&d[0..2]));
            let start = c.pos;
            c.bytes(len)?;
            self.values.push(Value {
                ty: d[2],
                start,
                len,
            });
        }
        // The definition: next offset, GUID, size, then its tokens.
        let mut header = Cursor {
            data: c.data,
            pos: def,
        };
        header.bytes(20)?;
        let size = header.u32()? as usize;
        let body = header.pos;
        let end = body.checked_add(size).filter(|&e| e <= c.data.len());
        let end = end.ok_or(GiveUp("template past the chunk"))?;
        Ok(Instance {
            def: def as u32,
            body,
            end,
            frame: Frame { base, len: count },
        })
    }

    /// A record's root template runs its plan; any other, or a record the
    /// plan does not take, runs its ops.
    fn planned_or_run(
        &mut self,
        data: &[u8],
        def: u32,
        ops: (usize, usize),
        scope: Scope,
        frame: Frame,
        builder: &mut Builder,
    ) -> Result<()> {
        if builder.is_fresh() && plans_on() {
            if let Some(plan) = self.plan(data, def, None, ops) {
                let mut text = std::mem::take(&mut self.text);
                let planned = self.execute(data, plan, frame, scope, builder, &mut text);
                self.text = text;
                if planned? {
                    #[cfg(test)]
                    {
                        self.planned += 1;
                    }
                    return Ok(());
                }
                builder.reset();
            }
        }
        self.run(data, ops, scope, builder)
    }

    /// How many records a plan read.
    #[cfg(test)]
    pub(crate) fn planned_records(&self) -> usize {
        self.planned
    }

    /// The ops of the template definition at `def` (body `body..end`),
    /// compiled on first use in the chunk.
    fn program(
        &mut self,
        data: &[u8],
        def: u32,
        body: usize,
        end: usize,
    ) -> Option<(usize, usize)> {
        if let Some(program) = self.recent_programs.get(def) {
            return program;
        }
        if let Some(&program) = self.programs.get(&def) {
            self.recent_programs.insert(def, program);
            return program;
        }
        let from = self.ops.len();
        let (attrs, parts) = (self.op_attrs.len(), self.op_parts.len());
        let program = match self.compile(data, body, end) {
            Ok(()) => Some((from, self.ops.len())),
            Err(_) => {
                self.ops.truncate(from);
                self.op_attrs.truncate(attrs);
                self.op_parts.truncate(parts);
                None
            }
        };
        self.programs.insert(def, program);
        self.recent_programs.insert(def, program);
        program
    }

    /// Compiles a template definition's tokens into `ops`. Anything but
    /// elements, attributes, text, character references and substitutions
    /// is left to the token walk.
    fn compile(&mut self, data: &[u8], pos: usize, end: usize) -> Result<()> {
        let mut c = Cursor { data, pos };
        // Start ops of the open elements.
        let mut open: Vec<usize> = Vec::new();
        // The start tag being read: its op.
        let mut pending: Option<usize> = None;
        while c.pos < end {
            let token = c.u8()?;
            match token {
                0x00 => break,
                0x0f => {
                    c.bytes(3)?;
                }
                0x01 | 0x41 => {
                    if pending.is_some() {
                        return Err(GiveUp("element in a start tag"));
                    }
                    let dependency = c.u16()?;
                    c.u32()?;
                    let name = self.name_ref(&mut c)?;
                    if token == 0x41 {
                        c.u32()?;
                    }
                    let at = self.op_attrs.len();
                    pending = Some(self.ops.len());
                    self.ops.push(Op::Start {
                        name,
                        dependency: (dependency != 0xffff).then_some(dependency),
                        attrs: (at, at),
                        empty: false,
                        root: open.is_empty(),
                        after: 0,
                    });
                }
                0x06 | 0x46 => {
                    if pending.is_none() {
                        return Err(GiveUp("attribute outside a start tag"));
                    }
                    let name = self.name_ref(&mut c)?;
                    let at = self.op_parts.len();
                    self.op_attrs.push(Attr {
                        name,
                        parts: (at, at),
                    });
                }
                0x02 | 0x03 => {
                    let start = pending.take().ok_or(GiveUp("stray close"))?;
                    let count = self.op_attrs.len();
                    let next = self.ops.len();
                    if let Op::Start {
                        attrs,
                        empty,
                        after,
                        ..
                    } = &mut self.ops[start]
                    {
                        attrs.1 = count;
                        *empty = token == 0x03;
                        *after = next;
                    }
                    if token == 0x02 {
                        open.push(start);
                    }
                }
                0x04 => {
                    let start = open.pop().ok_or(GiveUp("unbalanced end"))?;
                    self.ops.push(Op::End);
                    let next = self.ops.len();
                    if let Op::Start { after, .. } = &mut self.ops[start] {
                        *after = next;
                    }
                }
                0x05 | 0x45 | 0x07 | 0x47 => {
                    let cdata = token & 0x0f == 0x07;
                    if cdata && pending.is_some() {
                        return Err(GiveUp("CDATA in a start tag"));
                    }
                    if !cdata && c.u8()? != 0x01 {
                        return Err(GiveUp("literal value type"));
                    }
                    let units = usize::from(c.u16()?);
                    let start = c.pos;
                    c.bytes(units * 2)?;
                    self.compiled_part(Part::Text { start, units }, pending.is_some())?;
                }
                0x08 | 0x48 => {
                    let ch = c.u16()?;
                    self.compiled_part(Part::Char(ch), pending.is_some())?;
                }
                0x0d | 0x0e => {
                    let index = usize::from(c.u16()?);
                    c.u8()?;
                    let part = Part::Sub {
                        index,
                        optional: token == 0x0e,
                    };
                    self.compiled_part(part, pending.is_some())?;
                }
                _ => return Err(GiveUp("token in a template")),
            }
        }
        if pending.is_some() || !open.is_empty() {
            return Err(GiveUp("unclosed element"));
        }
        Ok(())
    }

    fn compiled_part(&mut self, part: Part, in_start_tag: bool) -> Result<()> {
        if in_start_tag {
            let attr = self
                .op_attrs
                .last_mut()
                .ok_or(GiveUp("value in a start tag"))?;
            self.op_parts.push(part);
            attr.parts.1 = self.op_parts.len();
        } else {
            self.ops.push(Op::Content(part));
        }
        Ok(())
    }

    /// Runs a compiled template with the values of `scope`: what
    /// [`walk`](Self::walk) does with its tokens.
    fn run(
        &mut self,
        data: &[u8],
        (from, to): (usize, usize),
        scope: Scope,
        builder: &mut Builder,
    ) -> Result<()> {
        let mut i = from;
        while i < to {
            match self.ops[i] {
                Op::Start {
                    name,
                    dependency,
                    attrs,
                    empty,
                    root,
                    after,
                } => {
                    let left_out = !root
                        && dependency.is_some_and(|d| {
                            scope.frame.is_some_and(|f| {
                                usize::from(d) < f.len
                                    && self.values[f.base + usize::from(d)].ty == 0
                            })
                        });
                    if left_out {
                        i = after;
                        continue;
                    }
                    let mut lazy = LazyAttrs {
                        data,
                        names: &self.names,
                        attrs: &self.op_attrs[attrs.0..attrs.1],
                        parts: &self.op_parts,
                        values: &self.values,
                        frame: scope.frame,
                        failed: None,
                    };
                    builder
                        .start(&self.names[name as usize], &mut lazy, empty)
                        .map_err(|_| GiveUp("structure"))?;
                    if let Some(e) = lazy.failed {
                        return Err(e);
                    }
                }
                Op::End => {
                    builder.end().map_err(|_| GiveUp("structure"))?;
                }
                Op::Content(part) => self.content(part, data, scope, false, false, builder)?,
            }
            i += 1;
        }
        Ok(())
    }

    /// Walks tokens from `pos` to `end` (or an end-of-fragment token).
    fn walk(
        &mut self,
        data: &[u8],
        pos: usize,
        end: usize,
        scope: Scope,
        builder: &mut Builder,
    ) -> Result<()> {
        if scope.depth > MAX_NESTING {
            return Err(GiveUp("nesting"));
        }
        let in_template = scope.frame.is_some();
        let mut c = Cursor { data, pos };
        // Elements open in this walk, and the depth at which a left-out
        // element started (nothing is emitted while set).
        let mut open = 0usize;
        let mut left_out: Option<usize> = None;
        // The element whose start tag is being read: name, attributes from.
        let mut pending: Option<(u32, bool, usize)> = None;
        let attrs_base = self.attrs.len();
        let parts_base = self.parts.len();
        while c.pos < end {
            let token = c.u8()?;
            match token {
                0x00 => break,
                0x0f => {
                    c.bytes(3)?;
                }
                0x0c => {
                    if pending.is_some() {
                        return Err(GiveUp("template in a start tag"));
                    }
                    if left_out.is_none() {
                        self.template_instance(&mut c, scope.depth, builder)?;
                    } else {
                        return Err(GiveUp("template in a left-out element"));
                    }
                }
                0x01 | 0x41 => {
                    if pending.is_some() {
                        return Err(GiveUp("element in a start tag"));
                    }
                    let dependency = if in_template { Some(c.u16()?) } else { None };
                    c.u32()?;
                    let name = self.name_ref(&mut c)?;
                    if token == 0x41 {
                        c.u32()?;
                    }
                    // MS-EVEN6 2.2.12: an element whose DependencyId names a NULL value is not
                    // rendered (a template's root always is).
                    let skip = open > 0
                        && dependency.filter(|&d| d != 0xffff).is_some_and(|d| {
                            scope.frame.is_some_and(|f| {
                                usize::from(d) < f.len
                                    && self.values[f.base + usize::from(d)].ty == 0
                            })
                        });
                    pending = Some((name, skip, self.attrs.len()));
                }
                0x06 | 0x46 => {
                    if pending.is_none() {
                        return Err(GiveUp("attribute outside a start tag"));
                    }
                    let name = self.name_ref(&mut c)?;
                    let at = self.parts.len();
                    self.attrs.push(Attr {
                        name,
                        parts: (at, at),
                    });
                }
                0x02 | 0x03 => {
                    let (name, skip, from) = pending.take().ok_or(GiveUp("stray close"))?;
                    let empty = token == 0x03;
                    if left_out.is_none() && skip {
                        left_out = Some(open);
                    }
                    if left_out.is_none() {
                        let mut attrs = LazyAttrs {
                            data,
                            names: &self.names,
                            attrs: &self.attrs[from..],
                            parts: &self.parts,
                            values: &self.values,
                            frame: scope.frame,
                            failed: None,
                        };
                        let name = &self.names[name as usize];
                        builder
                            .start(name, &mut attrs, empty)
                            .map_err(|_| GiveUp("structure"))?;
                        if let Some(e) = attrs.failed {
                            return Err(e);
                        }
                    }
                    self.attrs.truncate(from);
                    self.parts.truncate(parts_base);
                    if empty {
                        if left_out == Some(open) {
                            left_out = None;
                        }
                    } else {
                        open += 1;
                    }
                }
                0x04 => {
                    open = open.checked_sub(1).ok_or(GiveUp("unbalanced end"))?;
                    if left_out.is_none() {
                        builder.end().map_err(|_| GiveUp("structure"))?;
                    } else if left_out == Some(open) {
                        left_out = None;
                    }
                }
                0x05 | 0x45 => {
                    let ty = c.u8()?;
                    if ty != 0x01 {
                        return Err(GiveUp("literal value type"));
                    }
                    let units = usize::from(c.u16()?);
                    let start = c.pos;
                    c.bytes(units * 2)?;
                    self.content(
                        Part::Text { start, units },
                        data,
                        scope,
                        pending.is_some(),
                        left_out.is_some(),
                        builder,
                    )?;
                }
                0x07 | 0x47 => {
                    if pending.is_some() {
                        return Err(GiveUp("CDATA in a start tag"));
                    }
                    let units = usize::from(c.u16()?);
                    let start = c.pos;
                    c.bytes(units * 2)?;
                    self.content(
                        Part::Text { start, units },
                        data,
                        scope,
                        false,
                        left_out.is_some(),
                        builder,
                    )?;
                }
                0x08 | 0x48 => {
                    let ch = c.u16()?;
                    self.content(
                        Part::Char(ch),
                        data,
                        scope,
                        pending.is_some(),
                        left_out.is_some(),
                        builder,
                    )?;
                }
                0x0d | 0x0e => {
                    let index = usize::from(c.u16()?);
                    c.u8()?;
                    let part = Part::Sub {
                        index,
                        optional: token == 0x0e,
                    };
                    self.content(
                        part,
                        data,
                        scope,
                        pending.is_some(),
                        left_out.is_some(),
                        builder,
                    )?;
                }
                _ => return Err(GiveUp("token")),
            }
        }
        if pending.is_some() || open != 0 {
            return Err(GiveUp("unclosed element"));
        }
        self.attrs.truncate(attrs_base);
        self.parts.truncate(parts_base);
        Ok(())
    }

    /// A value, character or substitution: part of an attribute being
    /// read, or text of the current element.
    fn content(
        &mut self,
        part: Part,
        data: &[u8],
        scope: Scope,
        in_start_tag: bool,
        left_out: bool,
        builder: &mut Builder,
    ) -> Result<()> {
        if in_start_tag {
            let attr = self
                .attrs
                .last_mut()
                .ok_or(GiveUp("value in a start tag"))?;
            self.parts.push(part);
            attr.parts.1 = self.parts.len();
            return Ok(());
        }
        if left_out {
            return Ok(());
        }
        if !builder.wants_text() && !matches!(part, Part::Sub { .. }) {
            return Ok(());
        }
        self.scratch.clear();
        match part {
            Part::Text { start, units } => {
                push_utf16(&mut self.scratch, &data[start..start + units * 2])?
            }
            Part::Char(c) => self.scratch.push(text_char(c)?),
            Part::Sub { index, optional } => {
                let Some(frame) = scope.frame else {
                    return Ok(());
                };
                let Some(value) = frame.content_value(&self.values, index, optional)? else {
                    return Ok(());
                };
                if value.ty == 0x21 {
                    return self.walk_fragment(data, value, scope, builder);
                }
                if !builder.wants_text() {
                    return Ok(());
                }
                render(
                    &mut self.scratch,
                    value.ty,
                    &data[value.start..value.start + value.len],
                )?;
            }
        }
        builder.text(&self.scratch);
        Ok(())
    }

    /// An embedded BinXML value: its elements go where the substitution is.
    fn walk_fragment(
        &mut self,
        data: &[u8],
        value: Value,
        scope: Scope,
        builder: &mut Builder,
    ) -> Result<()> {
        let scope = Scope {
            frame: None,
            depth: scope.depth + 1,
        };
        self.walk(data, value.start, value.start + value.len, scope, builder)
    }
}

impl Frame {
    /// Substitution `index` of this instance as content reads it: `None`
    /// when the instance has no such value or an optional one leaves
    /// nothing; an array gives up (it repeats its element, which only the
    /// crate renders).
    fn content_value(
        self,
        values: &[Value],
        index: usize,
        optional: bool,
    ) -> Result<Option<Value>> {
        if index >= self.len {
            return Ok(None);
        }
        let value = values[self.base + index];
        if optional && optional_empty(&value) {
            return Ok(None);
        }
        if value.ty & 0x80 != 0 {
            return Err(GiveUp("array substitution"));
        }
        Ok(Some(value))
    }
}

/// A character reference in text; control characters XML cannot carry
/// give up.
fn text_char(c: u16) -> Result<char> {
    let c = char::from_u32(u32::from(c)).ok_or(GiveUp("char ref"))?;
    if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
        return Err(GiveUp("control character"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: every unit decoded, as `push_utf16` does when the
    /// text is not all printable ASCII.
    fn decoded(bytes: &[u8]) -> Option<String> {
        let units = bytes.chunks_exact(2).map(le_u16).take_while(|&u| u != 0);
        let text: String = char::decode_utf16(units)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        text.chars()
            .all(|c| (' '..='~').contains(&c))
            .then_some(text)
    }

    /// Four units at a time gives what one at a time gives: every unit
    /// around the printable range, at every position, with and without a
    /// NUL after it.
    #[test]
    fn ascii_utf16_words_read_as_single_units_do() {
        let edges = [
            0x00u16, 0x01, 0x1f, 0x20, 0x41, 0x7e, 0x7f, 0x80, 0xff, 0x100, 0x2041, 0xd800,
        ];
        for len in 0..20 {
            for at in 0..len {
                for &edge in &edges {
                    for tail in [None, Some(0u16)] {
                        let mut units: Vec<u16> =
                            (0..len).map(|i| 0x61 + (i as u16 % 26)).collect();
                        units[at] = edge;
                        units.extend(tail);
                        units.push(0x62);
                        let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
                        let mut out = String::from("x");
                        let ascii = push_ascii_utf16(&mut out, &bytes);
                        match decoded(&bytes) {
                            Some(text) => {
                                assert!(ascii, "{units:x?}");
                                assert_eq!(out, format!("x{text}"), "{units:x?}");
                            }
                            None => assert!(!ascii, "{units:x?}"),
                        }
                    }
                }
            }
        }
    }

    /// BinXML written by hand, for records of shapes the real samples lack.
    /// Names are stored where they are referenced; `refs` says where their
    /// offsets are, to move them when this is placed inside something else.
    #[derive(Default, Clone)]
    struct Bin(Vec<u8>, Vec<usize>);

    /// A piece of an attribute's value or of an element's content.
    #[derive(Clone)]
    enum Piece {
        Text(String),
        Sub { index: u16, optional: bool },
    }

    impl Bin {
        fn u16(&mut self, n: u16) {
            self.0.extend_from_slice(&n.to_le_bytes());
        }
        fn u32(&mut self, n: u32) {
            self.0.extend_from_slice(&n.to_le_bytes());
        }
        /// A name stored where it is referenced.
        fn name(&mut self, name: &str) {
            let at = self.0.len() as u32 + 4;
            self.1.push(self.0.len());
            self.u32(at);
            self.u32(0);
            self.u16(0);
            self.u16(name.encode_utf16().count() as u16);
            for unit in name.encode_utf16() {
                self.u16(unit);
            }
            self.u16(0);
        }
        fn piece(&mut self, piece: &Piece) {
            match piece {
                Piece::Text(text) => {
                    self.0.extend_from_slice(&[0x05, 0x01]);
                    self.u16(text.encode_utf16().count() as u16);
                    for unit in text.encode_utf16() {
                        self.u16(unit);
                    }
                }
                Piece::Sub { index, optional } => {
                    self.0.push(if *optional { 0x0e } else { 0x0d });
                    self.u16(*index);
                    self.0.push(0x01);
                }
            }
        }
        fn start(
            &mut self,
            name: &str,
            dependency: u16,
            attrs: &[(&str, Vec<Piece>)],
            empty: bool,
        ) {
            self.0.push(if attrs.is_empty() { 0x01 } else { 0x41 });
            self.u16(dependency);
            self.u32(0);
            self.name(name);
            if !attrs.is_empty() {
                self.u32(0);
            }
            for (attr, pieces) in attrs {
                self.0.push(0x06);
                self.name(attr);
                for piece in pieces {
                    self.piece(piece);
                }
            }
            self.0.push(if empty { 0x03 } else { 0x02 });
        }
        fn end(&mut self) {
            self.0.push(0x04);
        }
        /// Appends `other`, its name offsets moved to where it now is.
        fn append(&mut self, other: &Bin) {
            let base = self.0.len();
            self.0.extend_from_slice(&other.0);
            for &r in &other.1 {
                let at = u32::from_le_bytes(self.0[base + r..base + r + 4].try_into().unwrap());
                self.0[base + r..base + r + 4].copy_from_slice(&(at + base as u32).to_le_bytes());
                self.1.push(base + r);
            }
        }
        /// A fragment holding one template instance (definition inline).
        fn fragment(body: &Bin, values: &[(u8, Bin)]) -> Bin {
            let mut b = Bin(vec![0x0f, 0x01, 0x01, 0x00, 0x0c, 0x01], vec![]);
            b.u32(0);
            let def = b.0.len() as u32 + 4;
            b.u32(def);
            b.0.extend_from_slice(&[0; 20]);
            b.u32(body.0.len() as u32 + 1);
            b.append(body);
            b.0.push(0x00);
            b.u32(values.len() as u32);
            for (ty, bytes) in values {
                b.u16(bytes.0.len() as u16);
                b.0.extend_from_slice(&[*ty, 0]);
            }
            for (_, bytes) in values {
                b.append(bytes);
            }
            b.0.push(0x00);
            b
        }
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, in_ten: u64) -> bool {
            self.below(10) < in_ten
        }
    }

    /// A random substitution value: mostly what the template expects, but
    /// also NULL, empty, wrong sizes, arrays, odd text.
    fn value(rng: &mut Rng, expected: u8) -> (u8, Bin) {
        let (ty, bytes) = raw_value(rng, expected);
        (ty, Bin(bytes, vec![]))
    }

    fn raw_value(rng: &mut Rng, expected: u8) -> (u8, Vec<u8>) {
        let utf16 = |s: &str| {
            s.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        match rng.below(60) {
            0 => (0x00, vec![]),
            1 => (0x01, vec![]),
            2 => (0x81, utf16("a\0b\0")),
            3 => (0x01, utf16("  padded value \r\n")),
            4 => (0x01, utf16("Virtual Machine 'ADFS1' ü €")),
            5 => (0x06, vec![7, 0, 1]),
            6 => (0x04, vec![rng.below(7) as u8]),
            7 => (0x0a, rng.next().to_le_bytes().to_vec()),
            8 => (0x08, (rng.below(70_000) as u32).to_le_bytes().to_vec()),
            _ => match expected {
                0x01 => (
                    0x01,
                    utf16(["NODE-B", "System", "0x80070002", "x y", ""][rng.below(5) as usize]),
                ),
                0x04 => (0x04, vec![rng.below(6) as u8]),
                0x06 => (0x06, (rng.below(65_536) as u16).to_le_bytes().to_vec()),
                0x0a => (0x0a, rng.below(1 << 40).to_le_bytes().to_vec()),
                0x11 => (
                    0x11,
                    (133_000_000_000_000_000u64 + rng.below(1 << 40))
                        .to_le_bytes()
                        .to_vec(),
                ),
                0x13 => (0x13, vec![1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]),
                ty => (ty, vec![0; 4]),
            },
        }
    }

    /// A random record: an `<Event>` whose System, EventData and UserData
    /// take the shapes plans read (constant and substituted attributes,
    /// named, unnamed and other EventData children, nested UserData, left-out
    /// elements, optional substitutions, text around values, an embedded
    /// fragment), with random values.
    fn record(rng: &mut Rng) -> Vec<u8> {
        let mut body = Bin::default();
        let mut types: Vec<u8> = Vec::new();
        let sub = |rng: &mut Rng, types: &mut Vec<u8>, ty: u8| -> Piece {
            types.push(ty);
            Piece::Sub {
                index: types.len() as u16 - 1,
                optional: rng.chance(3),
            }
        };
        let dependency = |rng: &mut Rng, types: &Vec<u8>| -> u16 {
            if rng.chance(3) && !types.is_empty() {
                rng.below(types.len() as u64) as u16
            } else {
                0xffff
            }
        };
        body.start("Event", 0xffff, &[], false);
        body.start("System", 0xffff, &[], false);
        let provider = if rng.chance(5) {
            vec![Piece::Text("Microsoft-Windows-Hyper-V-VMMS".into())]
        } else {
            vec![sub(rng, &mut types, 0x01)]
        };
        body.start("Provider", 0xffff, &[("Name", provider)], true);
        for (name, ty) in [
            ("EventID", 0x06),
            ("Version", 0x04),
            ("Level", 0x04),
            ("EventRecordID", 0x0a),
            ("Channel", 0x01),
            ("Computer", 0x01),
        ] {
            let d = dependency(rng, &types);
            let content = sub(rng, &mut types, ty);
            body.start(name, d, &[], false);
            if rng.chance(1) {
                body.piece(&Piece::Text(" ".into()));
            }
            body.piece(&content);
            body.end();
        }
        let time = sub(rng, &mut types, 0x11);
        body.start("TimeCreated", 0xffff, &[("SystemTime", vec![time])], true);
        let user = sub(rng, &mut types, 0x13);
        body.start("Security", 0xffff, &[("UserID", vec![user])], true);
        body.end();
        let section = rng.below(3);
        let children = |rng: &mut Rng, body: &mut Bin, types: &mut Vec<u8>, user: bool| {
            for _ in 0..rng.below(6) {
                let d = dependency(rng, types);
                let name =
                    ["Data", "Data", "Parameter0", "VmName", "Binary"][rng.below(5) as usize];
                let attrs: Vec<(&str, Vec<Piece>)> = match rng.below(4) {
                    0 if !user => vec![(
                        "Name",
                        vec![Piece::Text(
                            ["VmId", "Status", ""][rng.below(3) as usize].into(),
                        )],
                    )],
                    1 if !user => vec![("Name", vec![sub(rng, types, 0x01)])],
                    _ => vec![],
                };
                let empty = rng.chance(2);
                body.start(name, d, &attrs, empty);
                if !empty {
                    if user && rng.chance(3) {
                        body.start("Inner", 0xffff, &[], false);
                        let inner = sub(rng, types, 0x01);
                        body.piece(&inner);
                        body.end();
                    }
                    for _ in 0..rng.below(3) {
                        let piece = if rng.chance(3) {
                            Piece::Text(["x", " y ", "\r\n"][rng.below(3) as usize].into())
                        } else {
                            sub(rng, types, 0x01)
                        };
                        body.piece(&piece);
                    }
                    body.end();
                }
            }
        };
        let mut nested = None;
        match section {
            0 => {
                body.start("EventData", 0xffff, &[], false);
                children(rng, &mut body, &mut types, false);
                body.end();
            }
            1 => {
                body.start("UserData", 0xffff, &[], false);
                body.start("VmlEventLog", 0xffff, &[], false);
                children(rng, &mut body, &mut types, true);
                body.end();
                body.end();
            }
            _ => {
                // An embedded fragment: EventData (or UserData) of its own.
                let at = sub(rng, &mut types, 0x21);
                body.piece(&at);
                let mut inner = Bin::default();
                let mut inner_types = Vec::new();
                let user = rng.chance(5);
                inner.start(
                    if user { "UserData" } else { "EventData" },
                    0xffff,
                    &[],
                    false,
                );
                if user {
                    inner.start("EventXML", 0xffff, &[], false);
                }
                children(rng, &mut inner, &mut inner_types, user);
                if user {
                    inner.end();
                }
                inner.end();
                let values: Vec<(u8, Bin)> = inner_types.iter().map(|&ty| value(rng, ty)).collect();
                nested = Some((types.len() - 1, Bin::fragment(&inner, &values)));
            }
        }
        body.end();
        let mut values: Vec<(u8, Bin)> = types.iter().map(|&ty| value(rng, ty)).collect();
        if let Some((at, fragment)) = nested {
            if !rng.chance(1) {
                values[at] = (0x21, fragment);
            }
        }
        Bin::fragment(&body, &values).0
    }

    /// Plans read every record as running the ops does: random records of
    /// every shape plans take (which the real samples only partly show).
    #[test]
    fn plans_read_random_records_as_the_ops_do() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut both, mut planned) = (0, 0);
        for _ in 0..5000 {
            let data = record(&mut rng);
            let read = |plans: bool| {
                NO_PLANS.with(|c| c.set(!plans));
                let mut walker = Walker::default();
                let out = walker.event(&data, 0, data.len());
                NO_PLANS.with(|c| c.set(false));
                (out, walker.planned_records())
            };
            let (with, used) = read(true);
            let (without, _) = read(false);
            match (&with, &without) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{data:02x?}");
                    both += 1;
                    planned += used;
                }
                (Err(_), Err(_)) => {}
                _ => panic!("plans {with:?} ops {without:?}\n{data:02x?}"),
            }
        }
        // The shapes were read, mostly by plans.
        assert!(both > 1000, "{both} records read");
        assert!(planned * 2 > both, "{planned} of {both} planned");
    }
}
