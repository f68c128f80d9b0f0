//! Binary EVTX through the `evtx` crate. Every chunk with a valid header is
//! read (not just the count a dirty file header declares), records are
//! rendered to XML and normalized on the crate's worker threads, and each
//! record or chunk the crate cannot read is reported with its position.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use evtx::err::EvtxError;
use evtx::{EvtxParser, ParserSettings};

use crate::error::Reason;
use crate::event::{Event, Origin};
use crate::extract;
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
        let rendered = record.into_xml()?;
        let header_time = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(
            rendered.timestamp.as_nanosecond() as i64,
        );
        Ok(to_event(
            &rendered.data,
            record_id,
            header_time,
            offset,
            path.clone(),
        ))
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

fn to_event(
    xml: &str,
    header_record_id: u64,
    header_time: chrono::DateTime<chrono::Utc>,
    offset: u64,
    path: Option<Arc<str>>,
) -> Mapped {
    let (mut event, has_time) =
        event_xml::parse_event_parts(xml).map_err(|e| (header_record_id, offset, e))?;
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
