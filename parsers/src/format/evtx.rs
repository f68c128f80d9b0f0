//! Binary EVTX through the `evtx` crate. The crate reads every chunk with a
//! valid header (not just the count a dirty file header declares); threads
//! take the chunks in turn and normalize them, and the events are handed on
//! in file order (for a sink that wants JSON lines, as lines the threads
//! wrote, a chunk's block at a time).
//! Records are normalized straight from their BinXML (`format::binxml`); an
//! intact chunk's records are also found here, without the crate's record
//! iteration, which builds an IR of each record that nothing here reads.
//! A damaged chunk goes through the crate's iteration, a record the walker
//! leaves alone is rendered to XML by the crate and read back, and each
//! record or chunk the crate cannot read is reported with its position.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::sync::{mpsc, Arc, Mutex};

use evtx::err::EvtxError;
use evtx::{EvtxChunkData, EvtxParser, ParserSettings};

use crate::error::Reason;
use crate::event::{Event, EventHead, Origin};
use crate::extract;
use crate::format::binxml::{filetime_since_unix, filetime_utc, Walker};
use crate::format::event_xml::{self, Builder};
use crate::{resolve, Ctx, Format};

/// Size of the file header block and of a chunk.
const HEADER_BYTES: u64 = 4096;
const CHUNK_BYTES: u64 = 65536;
/// Size of a record header, which precedes the record's BinXML.
const RECORD_HEADER_BYTES: u64 = 24;
/// Where a chunk's first record starts (after the header and its string
/// and template tables).
const RECORDS_START: usize = 512;

/// Where in the file an evtx error points, when it says.
fn error_offset(error: &EvtxError) -> u64 {
    match error {
        EvtxError::FailedToParseChunk { chunk_id, .. } => HEADER_BYTES + chunk_id * CHUNK_BYTES,
        EvtxError::FailedToReadRecordAt {
            chunk: Some(chunk),
            offset,
            ..
        } => HEADER_BYTES + chunk * CHUNK_BYTES + offset,
        _ => 0,
    }
}

fn describe(error: &EvtxError) -> String {
    // The crate's messages are terse at the top and precise below: join the chain.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// What a worker made of one chunk, in record order. Recycled: emptied
/// ones go back to the workers (a chunk's lists are large, and fresh ones
/// each time cost the kernel zeroing pages).
#[derive(Default)]
struct ChunkOut {
    items: Vec<Item>,
    /// The JSON lines of the [`Item::Line`]s, back to back, each ending in
    /// a newline.
    json: Vec<u8>,
    /// Heads of lines handed on together (kept for its room).
    heads: Vec<EventHead>,
}

enum Item {
    /// An event handed on whole.
    Event(Box<Event>),
    /// An event written as its ECS JSON line, for a sink that wants lines:
    /// its head and where its line (newline included) ends in
    /// [`ChunkOut::json`].
    Line(EventHead, usize),
    /// A record that rendered to XML relive cannot read: record id, file
    /// offset, reason.
    Lost(u64, u64, String),
    /// A chunk or record the crate could not read.
    Failed(EvtxError),
}

impl ChunkOut {
    fn clear(&mut self) {
        self.items.clear();
        self.json.clear();
        self.heads.clear();
    }

    /// Adds a record's event, leaving `event` to be reused: with `lines`
    /// it is written as its JSON line here, on the worker, unless the VM-id
    /// resolver (which runs in file order) may still change it; else it is
    /// taken whole.
    fn push_event(&mut self, event: &mut Event, lines: bool) {
        let hyperv = resolve::is_hyperv(event);
        let item = if lines && !resolve::is_candidate(event, hyperv) {
            event.write_json(&mut self.json);
            self.json.push(b'\n');
            Item::Line(EventHead::take(event, hyperv), self.json.len())
        } else {
            Item::Event(Box::new(std::mem::take(event)))
        };
        self.items.push(item);
    }
}

#[cfg(test)]
thread_local! {
    /// Tests compare relive's own record walk with the crate's iteration.
    static CRATE_ITERATION_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn own_iteration() -> bool {
    #[cfg(test)]
    if CRATE_ITERATION_ONLY.with(|c| c.get()) {
        return false;
    }
    true
}

/// Parses an EVTX file into events. Worker threads (`evtx_threads`, 0 = one
/// per core) take the chunks the crate reads in turn and normalize them;
/// this thread hands the results on in chunk order.
pub(crate) fn parse<R: Read + Seek + Send + 'static>(reader: R, ctx: &mut Ctx<'_>) {
    let parser = match EvtxParser::from_read_seek(reader) {
        Ok(parser) => parser,
        Err(e) => {
            ctx.fatal(0, None, Reason::Evtx(describe(&e)));
            return;
        }
    };
    let settings = ParserSettings::new()
        .num_threads(1)
        .indent(false)
        .separate_json_attributes(false);
    let mut parser = parser.with_configuration(settings.clone());
    let settings = Arc::new(settings);
    let threads = match ctx.opts.evtx_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let path: Option<Arc<str>> = ctx.path.clone();
    let own = own_iteration();
    let lines = ctx.wants_lines();
    let (settings, path) = (&settings, &path);
    // The chunks are taken from the crate's reader in turn, each with an
    // empty result list from a pool of `POOL` per thread; a list comes back
    // once handed on, so nobody runs more than that far ahead of the
    // ordered hand-on. `threads - 1` workers take chunks; this thread
    // hands on, and takes chunks too whenever the next one to hand on is
    // not ready (never waiting while there is work; two threads on two
    // cores, not three).
    const POOL: usize = 4;
    let reader = Mutex::new(Reader {
        chunks: parser.chunks().enumerate(),
        taken: 0,
        exhausted: false,
    });
    let (give, pool) = mpsc::sync_channel::<ChunkOut>(POOL * threads);
    for _ in 0..POOL * threads {
        let _ = give.send(ChunkOut::default());
    }
    let pool = Mutex::new(pool);
    let (reader, pool) = (&reader, &pool);
    let how = How {
        settings,
        path,
        own,
        lines,
    };
    let how = &how;
    std::thread::scope(|scope| {
        let (done, results) = mpsc::channel::<(u64, ChunkOut)>();
        for _ in 1..threads {
            let done = done.clone();
            scope.spawn(move || {
                let mut walker = Walker::default();
                let mut builder = Builder::default();
                loop {
                    let Some(mut out) = pool.lock().ok().and_then(|p| p.recv().ok()) else {
                        return;
                    };
                    let Some((seq, chunk)) = take(reader) else {
                        return;
                    };
                    chunk_items(chunk, how, &mut walker, &mut builder, &mut out);
                    if done.send((seq, out)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done);
        let mut walker = Walker::default();
        let mut builder = Builder::default();
        // Results wait here until every chunk before them is handed on.
        let mut waiting: BTreeMap<u64, ChunkOut> = BTreeMap::new();
        let mut next = 0u64;
        let mut workers = threads > 1;
        loop {
            while let Ok((seq, out)) = results.try_recv() {
                waiting.insert(seq, out);
            }
            while let Some(mut out) = waiting.remove(&next) {
                emit(&mut out, ctx);
                next += 1;
                let _ = give.try_send(out);
            }
            let Ok((taken, exhausted)) = reader.lock().map(|r| (r.taken, r.exhausted)) else {
                break;
            };
            if exhausted && next >= taken {
                break;
            }
            // Work rather than wait, when a list is free (a worker waiting
            // for one holds the pool: then wait for its result instead).
            if !exhausted {
                let free = pool.try_lock().ok().and_then(|p| p.try_recv().ok());
                if let Some(mut out) = free {
                    match take(reader) {
                        Some((seq, chunk)) => {
                            chunk_items(chunk, how, &mut walker, &mut builder, &mut out);
                            waiting.insert(seq, out);
                        }
                        None => {
                            let _ = give.try_send(out);
                        }
                    }
                    continue;
                }
            }
            if !workers {
                // Nothing to take and nothing to wait for.
                break;
            }
            match results.recv() {
                Ok((seq, out)) => {
                    waiting.insert(seq, out);
                }
                Err(_) => workers = false,
            }
        }
    });
}

/// The crate's chunk reader, shared by the threads that take chunks.
struct Reader<I> {
    chunks: I,
    /// Chunks taken so far (the next one's sequence number).
    taken: u64,
    /// The reader has no more chunks.
    exhausted: bool,
}

/// Takes the next chunk and its sequence number.
fn take<I, T>(reader: &Mutex<Reader<I>>) -> Option<(u64, T)>
where
    I: Iterator<Item = (usize, T)>,
{
    let mut reader = reader.lock().ok()?;
    match reader.chunks.next() {
        Some((seq, chunk)) => {
            reader.taken = seq as u64 + 1;
            Some((seq as u64, chunk))
        }
        None => {
            reader.exhausted = true;
            None
        }
    }
}

/// Hands on what a worker made of a chunk, emptying it: lines the VM-id
/// resolver lets pass go on in runs, as one block each.
fn emit(out: &mut ChunkOut, ctx: &mut Ctx<'_>) {
    let ChunkOut { items, json, heads } = out;
    // `heads` pass with their lines json[run..end].
    let (mut run, mut end) = (0, 0);
    for item in items.drain(..) {
        let start = end;
        if let Item::Line(head, line_end) = item {
            end = line_end;
            if ctx.line_passes(&head) {
                heads.push(head);
                continue;
            }
            ctx.hand_on_lines(heads, &json[run..start]);
            heads.clear();
            ctx.hold_line(head, &json[start..end]);
            run = end;
            continue;
        }
        ctx.hand_on_lines(heads, &json[run..start]);
        heads.clear();
        run = end;
        match item {
            Item::Line(..) => {}
            Item::Event(event) => ctx.emit_complete(*event),
            Item::Lost(record_id, offset, reason) => ctx.error(
                offset,
                None,
                Reason::Evtx(format!("record {record_id}: {reason}")),
            ),
            Item::Failed(e) => {
                let offset = error_offset(&e);
                ctx.error(offset, None, Reason::Evtx(describe(&e)));
            }
        }
    }
    ctx.hand_on_lines(heads, &json[run..end]);
    heads.clear();
    out.clear();
}

/// What a worker needs besides the chunk.
struct How<'a> {
    settings: &'a Arc<ParserSettings>,
    path: &'a Option<Arc<str>>,
    /// Walk intact chunks' records here (tests turn it off).
    own: bool,
    /// Write events as JSON lines ([`crate::Sink::wants_lines`]).
    lines: bool,
}

/// Normalizes one chunk: by walking its records here when the chunk is
/// intact, otherwise through the crate's own record iteration (which then
/// decides, as it always did, what is read and what is reported lost).
fn chunk_items(
    chunk: evtx::err::Result<EvtxChunkData>,
    how: &How<'_>,
    walker: &mut Walker,
    builder: &mut Builder,
    out: &mut ChunkOut,
) {
    let mut data = match chunk {
        Ok(data) => data,
        Err(e) => return out.items.push(Item::Failed(e)),
    };
    // The crate says which chunk of the file it read: where its bytes are.
    let base = data.number.map(|n| HEADER_BYTES + n * CHUNK_BYTES);
    walker.reset();
    if how.own && walk_chunk(&data, base.unwrap_or(0), how, walker, builder, out).is_some() {
        return;
    }
    out.clear();
    walker.reset();
    let chunk_id = data.number.unwrap_or(0);
    let mut chunk = match data.parse(how.settings.clone()) {
        Ok(chunk) => chunk,
        Err(e) => {
            let e = EvtxError::FailedToParseChunk {
                chunk_id,
                source: Box::new(e),
            };
            return out.items.push(Item::Failed(e));
        }
    };
    for record in chunk.iter() {
        let record = match record {
            Ok(record) if record.recovered => continue,
            Ok(record) => record,
            Err(e) => {
                out.items.push(Item::Failed(e));
                continue;
            }
        };
        let record_id = record.event_record_id;
        let offset = base.map_or(0, |chunk| {
            chunk + record.binxml_offset.saturating_sub(RECORD_HEADER_BYTES)
        });
        let header_time = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(
            record.timestamp.as_nanosecond() as i64,
        );
        let walked = walker.read(
            record.chunk.data,
            record.binxml_offset as usize,
            record.binxml_size as usize,
            builder,
        );
        let has_time = match walked {
            Ok(has_time) => has_time,
            Err(_) => {
                let rendered = match record.into_xml() {
                    Ok(rendered) => rendered,
                    Err(e) => {
                        out.items.push(Item::Failed(e));
                        continue;
                    }
                };
                match event_xml::parse_event_parts(&rendered.data) {
                    Ok((event, has_time)) => {
                        *builder.event_mut() = event;
                        has_time
                    }
                    Err(reason) => {
                        out.items.push(Item::Lost(record_id, offset, reason));
                        continue;
                    }
                }
            }
        };
        let event = builder.event_mut();
        complete(event, has_time, record_id, || header_time, offset, how.path);
        out.push_event(event, how.lines);
    }
}

/// The records of an intact chunk (both checksums right, every record where
/// the one before it ends, ids consecutive up to the header's last one),
/// walked without the crate's record iteration, which builds an IR of each
/// record that nothing here reads. `None` when the chunk is anything else or
/// a record is one the walker leaves alone: the caller then uses the crate.
fn walk_chunk(
    data: &EvtxChunkData,
    base: u64,
    how: &How<'_>,
    walker: &mut Walker,
    builder: &mut Builder,
    out: &mut ChunkOut,
) -> Option<()> {
    if !data.validate_checksum() {
        return None;
    }
    let bytes = data.data.as_slice();
    let header = &data.header;
    let live_end = (header.free_space_offset as usize).min(bytes.len());
    let count = header
        .last_event_record_id
        .checked_sub(header.first_event_record_id)?
        .checked_add(1)?;
    out.items.reserve(count.min(1024) as usize);
    let mut offset = RECORDS_START;
    let mut expected = header.first_event_record_id;
    let le32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let le64 = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    loop {
        if bytes.get(offset..offset + 4)? != b"**\0\0" {
            return None;
        }
        let size = le32(offset + 4)? as usize;
        let id = le64(offset + 8)?;
        let ticks = le64(offset + 16)?;
        let end = offset.checked_add(size)?;
        if size < RECORD_HEADER_BYTES as usize + 4 || end > live_end || id != expected {
            return None;
        }
        if le32(end - 4)? as usize != size {
            return None;
        }
        // A record time outside 1970-9999 leaves the chunk to the crate.
        filetime_since_unix(ticks)?;
        let binxml = offset + RECORD_HEADER_BYTES as usize;
        let has_time = walker.read(bytes, binxml, end - 4 - binxml, builder).ok()?;
        let event = builder.event_mut();
        let at = base + offset as u64;
        let header_time = || filetime_utc(ticks).unwrap_or_default();
        complete(event, has_time, id, header_time, at, how.path);
        out.push_event(event, how.lines);
        if id == header.last_event_record_id {
            return Some(());
        }
        expected += 1;
        offset = end;
    }
}

/// Completes a record's event in place: the record header's time and id
/// where the event has none, where it came from, and the VM/HRESULT
/// extraction.
fn complete(
    event: &mut Event,
    has_time: bool,
    header_record_id: u64,
    header_time: impl FnOnce() -> chrono::DateTime<chrono::Utc>,
    offset: u64,
    path: &Option<Arc<str>>,
) {
    if !has_time {
        // Some records render without System/TimeCreated; the record header has a time.
        event.timestamp = header_time();
    }
    if event.record_id.is_none() {
        event.record_id = Some(header_record_id);
    }
    event.origin = Origin {
        path: path.clone(),
        offset,
        format: Some(Format::Evtx),
    };
    extract::enrich(event);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn samples() -> PathBuf {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        [
            here.join("../../shared/samples-real/evtx"),
            here.join("../../../shared/samples-real/evtx"),
        ]
        .into_iter()
        .find(|p| p.is_dir())
        .expect("shared/samples-real/evtx next to the repository")
    }

    /// Every record of every real sample reads the same straight from its
    /// BinXML as through the crate's XML rendering; and the walker reads
    /// nearly all of them itself (a walker that always gave up would pass
    /// the first check and fail this one).
    #[test]
    fn binxml_walker_agrees_with_the_xml_rendering_on_every_real_record() {
        let mut total = 0usize;
        let mut walked = 0usize;
        let mut gave_up: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut mismatches = Vec::new();
        for entry in std::fs::read_dir(samples()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "evtx") {
                continue;
            }
            let Ok(parser) = EvtxParser::from_path(&path) else {
                continue;
            };
            let mut parser = parser.with_configuration(ParserSettings::new().num_threads(1));
            let mut walker = Walker::default();
            let results = parser.serialized_records(move |record| {
                let record = record?;
                let id = record.event_record_id;
                let fast = walker.event(
                    record.chunk.data,
                    record.binxml_offset as usize,
                    record.binxml_size as usize,
                );
                let xml = record.into_xml()?;
                Ok((id, fast, event_xml::parse_event_parts(&xml.data)))
            });
            for (id, fast, slow) in results.flatten() {
                total += 1;
                match (fast, slow) {
                    (Ok(fast), Ok(slow)) => {
                        walked += 1;
                        if fast != slow {
                            mismatches.push(format!(
                                "{} record {id}:\n  binxml {:?}\n  xml    {:?}",
                                path.display(),
                                fast,
                                slow
                            ));
                        }
                    }
                    (Err(reason), _) => *gave_up.entry(reason.0).or_default() += 1,
                    (Ok(fast), Err(e)) => mismatches.push(format!(
                        "{} record {id}: xml fails ({e}), binxml reads {fast:?}",
                        path.display()
                    )),
                }
            }
        }
        eprintln!("{total} records, {walked} walked, gave up: {gave_up:?}");
        assert!(
            mismatches.is_empty(),
            "{} mismatches, first: {}",
            mismatches.len(),
            mismatches
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(total > 60_000, "{total} records");
        assert!(walked * 100 >= total * 95, "{walked} of {total} walked");
    }

    /// relive's own walk over intact chunks gives exactly what the crate's
    /// record iteration gives, on every real sample (damaged ones included:
    /// their damaged chunks go through the crate), and it is really used.
    #[test]
    fn own_record_walk_reads_every_real_file_as_the_crate_iteration_does() {
        let opts = crate::ParseOptions {
            format: Some(Format::Evtx),
            ..crate::ParseOptions::default()
        };
        let mut files = 0;
        for entry in std::fs::read_dir(samples()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "evtx") {
                continue;
            }
            let mut own = crate::ParseOutput::default();
            crate::parse_path(&path, &opts, &mut own);
            CRATE_ITERATION_ONLY.with(|c| c.set(true));
            let mut theirs = crate::ParseOutput::default();
            crate::parse_path(&path, &opts, &mut theirs);
            CRATE_ITERATION_ONLY.with(|c| c.set(false));
            assert_eq!(own.events.len(), theirs.events.len(), "{}", path.display());
            for (a, b) in own.events.iter().zip(&theirs.events) {
                assert_eq!(a, b, "{}", path.display());
            }
            assert_eq!(own.errors, theirs.errors, "{}", path.display());
            files += 1;
        }
        assert!(files >= 9, "{files} files");
        // Used: the intact chunks of a real log give their events without
        // the crate's iteration (236 of its 247 chunks).
        let data =
            std::fs::read(samples().join("dfirmuseum-win2012r2-stolenszechuan__System.evtx"))
                .unwrap();
        let (mut walked, mut chunks, mut records, mut planned) = (0, 0, 0, 0);
        for bytes in data[HEADER_BYTES as usize..].chunks_exact(CHUNK_BYTES as usize) {
            let Ok(chunk) = EvtxChunkData::new(bytes.to_vec(), false) else {
                continue; // unused space at the end of the file
            };
            chunks += 1;
            let mut out = ChunkOut::default();
            let mut walker = Walker::default();
            let how = How {
                settings: &Arc::new(ParserSettings::new()),
                path: &None,
                own: true,
                lines: false,
            };
            if walk_chunk(
                &chunk,
                0,
                &how,
                &mut walker,
                &mut Builder::default(),
                &mut out,
            )
            .is_some()
            {
                assert!(
                    !out.items.is_empty() && out.items.iter().all(|i| matches!(i, Item::Event(_)))
                );
                // Its templates ran compiled, not token by token.
                assert!(walker.compiled_templates() > 0);
                walked += 1;
                records += out.items.len();
                planned += walker.planned_records();
            }
        }
        assert!(
            walked * 10 >= chunks * 9,
            "{walked} of {chunks} chunks walked"
        );
        // And nearly every record was read by its template's plan.
        assert!(
            planned * 10 >= records * 9,
            "{planned} of {records} records planned"
        );
    }

    /// A sink that takes JSON lines gets, line for line, what the events
    /// handed on whole serialize to: written on the workers for most, whole
    /// (and written by the sink) for the ones the VM-id resolver holds.
    #[test]
    fn json_lines_written_on_the_workers_equal_the_events_written_whole() {
        #[derive(Default)]
        struct Lines {
            lines: Vec<String>,
            heads: Vec<(chrono::DateTime<chrono::Utc>, String)>,
            from_workers: usize,
        }
        impl crate::Sink for Lines {
            fn event(&mut self, event: Event) {
                self.lines.push(event.to_json());
                self.heads.push((event.timestamp, event.host.to_string()));
            }
            fn error(&mut self, _: crate::RecordError) {}
            fn wants_lines(&self) -> bool {
                true
            }
            fn event_lines(&mut self, heads: &[EventHead], lines: &[u8]) {
                let text = std::str::from_utf8(lines).unwrap();
                let lines: Vec<&str> = text.split_terminator('\n').collect();
                assert!(text.ends_with('\n'));
                assert_eq!(lines.len(), heads.len());
                for (head, line) in heads.iter().zip(lines) {
                    self.lines.push(line.to_string());
                    self.heads.push((head.timestamp, head.host.to_string()));
                    self.from_workers += 1;
                }
            }
        }
        let (mut total, mut from_workers, mut whole) = (0, 0, 0);
        for entry in std::fs::read_dir(samples()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "evtx") {
                continue;
            }
            let opts = crate::ParseOptions::default();
            let mut events = crate::ParseOutput::default();
            crate::parse_path(&path, &opts, &mut events);
            let mut lines = Lines::default();
            crate::parse_path(&path, &opts, &mut lines);
            assert_eq!(events.events.len(), lines.lines.len(), "{}", path.display());
            for (i, event) in events.events.iter().enumerate() {
                assert_eq!(event.to_json(), lines.lines[i], "{}", path.display());
                assert_eq!(
                    (event.timestamp, event.host.to_string()),
                    lines.heads[i],
                    "{}",
                    path.display()
                );
            }
            total += lines.lines.len();
            from_workers += lines.from_workers;
            whole += lines.lines.len() - lines.from_workers;
        }
        // Both paths ran: most lines came from the workers, and the Hyper-V
        // events without a VM id came whole.
        assert!(from_workers * 10 >= total * 9, "{from_workers} of {total}");
        assert!(whole > 0);
    }

    /// Damaged BinXML never panics the walker: real chunks with bytes
    /// overwritten at random, every record header found in them walked
    /// (without the crate's checks in front).
    #[test]
    fn the_binxml_walker_survives_damaged_chunks() {
        let file = std::fs::read(samples().join("omerbenamram-evtx__system.evtx")).unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut walked, mut gave_up) = (0usize, 0usize);
        for chunk in file[HEADER_BYTES as usize..]
            .chunks_exact(CHUNK_BYTES as usize)
            .take(8)
        {
            for round in 0..40 {
                let mut data = chunk.to_vec();
                for _ in 0..1 + round % 16 {
                    let at = (next() as usize) % data.len();
                    data[at] = next() as u8;
                }
                let mut walker = Walker::default();
                let mut at = 512;
                while let Some(i) = memchr::memmem::find(&data[at..], b"**\0\0") {
                    let record = at + i;
                    let size = data
                        .get(record + 4..record + 8)
                        .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
                    let binxml = size.saturating_sub(RECORD_HEADER_BYTES as usize + 4);
                    match walker.event(&data, record + RECORD_HEADER_BYTES as usize, binxml) {
                        Ok(_) => walked += 1,
                        Err(_) => gave_up += 1,
                    }
                    at = record + 4;
                }
            }
        }
        eprintln!("damaged chunks: {walked} records walked, {gave_up} given up");
        assert!(
            walked > 1000 && gave_up > 0,
            "{walked} walked, {gave_up} given up"
        );
    }
}
