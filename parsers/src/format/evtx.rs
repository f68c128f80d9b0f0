//! Binary EVTX through the `evtx` crate. Every chunk with a valid header is
//! read (not just the count a dirty file header declares), records are
//! normalized on the crate's worker threads straight from their BinXML
//! (`format::binxml`; a record that walker leaves alone is rendered to XML
//! by the crate and read back), and each record or chunk the crate cannot
//! read is reported with its position.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use evtx::err::EvtxError;
use evtx::{EvtxParser, ParserSettings};

use crate::error::Reason;
use crate::event::{Event, Origin};
use crate::extract;
use crate::format::binxml::Walker;
use crate::format::event_xml;
use crate::{Ctx, Format};

/// Size of the file header block and of a chunk.
const HEADER_BYTES: u64 = 4096;
const CHUNK_BYTES: u64 = 65536;
/// Size of a record header, which precedes the record's BinXML.
const RECORD_HEADER_BYTES: u64 = 24;

/// File offset of every chunk with a valid header, keyed by the chunk's first
/// record number and first record id, so a record can say where it is in
/// the file (the crate keeps chunk numbers to itself).
type ChunkOffsets = HashMap<(u64, u64), u64>;

fn chunk_offsets<R: Read + Seek>(reader: &mut R) -> std::io::Result<ChunkOffsets> {
    let len = reader.seek(SeekFrom::End(0))?;
    let mut offsets = HashMap::new();
    let mut offset = HEADER_BYTES;
    let mut head = [0u8; 40];
    while offset + CHUNK_BYTES <= len {
        reader.seek(SeekFrom::Start(offset))?;
        reader.read_exact(&mut head)?;
        if &head[..8] == b"ElfChnk\0" {
            let number = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
            let id = u64::from_le_bytes(head[24..32].try_into().unwrap_or_default());
            offsets.insert((number, id), offset);
        }
        offset += CHUNK_BYTES;
    }
    reader.seek(SeekFrom::Start(0))?;
    Ok(offsets)
}

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

/// Parses an EVTX file into events.
pub(crate) fn parse<R: Read + Seek + Send + 'static>(mut reader: R, ctx: &mut Ctx<'_>) {
    let offsets = Arc::new(chunk_offsets(&mut reader).unwrap_or_default());
    let parser = match EvtxParser::from_read_seek(reader) {
        Ok(parser) => parser,
        Err(e) => {
            ctx.fatal(0, None, Reason::Evtx(describe(&e)));
            return;
        }
    };
    let settings = ParserSettings::new()
        .num_threads(ctx.opts.evtx_threads)
        .indent(false)
        .separate_json_attributes(false);
    let mut parser = parser.with_configuration(settings);
    let path: Option<Arc<str>> = ctx.path.clone();
    // Cloned with the closure for each chunk: names are decoded once per chunk.
    let mut walker = Walker::default();
    let mapped = parser.serialized_records(move |record| {
        let record = record?;
        let record_id = record.event_record_id;
        let header = record.chunk.header;
        let offset = offsets
            .get(&(
                header.first_event_record_number,
                header.first_event_record_id,
            ))
            .map_or(0, |chunk| {
                chunk + record.binxml_offset.saturating_sub(RECORD_HEADER_BYTES)
            });
        let header_time = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(
            record.timestamp.as_nanosecond() as i64,
        );
        let parts = walker.event(
            record.chunk.data,
            record.binxml_offset as usize,
            record.binxml_size as usize,
        );
        let parts = match parts {
            Ok(parts) => Ok(parts),
            Err(_) => {
                let rendered = record.into_xml()?;
                event_xml::parse_event_parts(&rendered.data)
            }
        };
        Ok(finish(parts, record_id, header_time, offset, path.clone()))
    });
    for item in mapped {
        match item {
            Ok(Ok(event)) => ctx.emit_complete(event),
            Ok(Err(error)) => {
                let (record_id, offset, reason) = error;
                ctx.error(
                    offset,
                    None,
                    Reason::Evtx(format!("record {record_id}: {reason}")),
                );
            }
            Err(e) => {
                let offset = error_offset(&e);
                ctx.error(offset, None, Reason::Evtx(describe(&e)));
            }
        }
    }
}

/// An event, or (record id, file offset, reason) for a record that rendered
/// to XML relive cannot read.
type Mapped = Result<Event, (u64, u64, String)>;

fn finish(
    parts: Result<(Event, bool), String>,
    header_record_id: u64,
    header_time: chrono::DateTime<chrono::Utc>,
    offset: u64,
    path: Option<Arc<str>>,
) -> Mapped {
    let (mut event, has_time) = parts.map_err(|e| (header_record_id, offset, e))?;
    if !has_time {
        // Some records render without System/TimeCreated; the record header has a time.
        event.timestamp = header_time;
    }
    if event.record_id.is_none() {
        event.record_id = Some(header_record_id);
    }
    event.origin = Origin {
        path,
        offset,
        format: Some(Format::Evtx),
    };
    extract::enrich(&mut event);
    Ok(event)
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
