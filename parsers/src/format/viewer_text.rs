//! Event Viewer "Copy details as text" blocks, as admins paste them into
//! tickets and blogs: `Log Name:` … `Description:` then the message, an
//! optional `Event Xml:` tail, many blocks per file, CRLF or LF, U+00A0
//! padding, curly quotes, UTF-8 or UTF-16. Also `wevtutil qe /f:text`
//! (`Event[0]:` followed by indented keys).
//!
//! Dates are local time without a zone; when the XML tail is present its
//! UTC `SystemTime` wins.

use std::io::Read;

use nom::bytes::complete::take_while1;
use nom::character::complete::char as ch;
use nom::combinator::rest;
use nom::sequence::separated_pair;
use nom::{IResult, Parser};

use crate::error::Reason;
use crate::event::{Event, Level};
use crate::extract::vm_id_from_user;
use crate::format::event_xml;
use crate::read::LineReader;
use crate::time::parse_local;
use crate::Ctx;

fn is_pad(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{A0}' || c == '\u{FEFF}'
}

/// `Key:   value` → (key, value).
fn header_line(input: &str) -> IResult<&str, (&str, &str)> {
    separated_pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == ' ' || c == '\u{A0}'),
        ch(':'),
        rest,
    )
    .parse(input)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    LogName,
    Source,
    Date,
    EventId,
    TaskCategory,
    Level,
    Opcode,
    Keywords,
    User,
    UserName,
    Computer,
    Description,
}

fn key(name: &str) -> Option<Key> {
    let normalized: String = name
        .chars()
        .map(|c| if c == '\u{A0}' { ' ' } else { c })
        .collect();
    Some(match normalized.trim() {
        "Log Name" => Key::LogName,
        "Source" => Key::Source,
        "Date" => Key::Date,
        "Event ID" => Key::EventId,
        "Task Category" | "Task" => Key::TaskCategory,
        "Level" => Key::Level,
        "Opcode" | "OpCode" => Key::Opcode,
        "Keywords" | "Keyword" => Key::Keywords,
        "User" => Key::User,
        "User Name" => Key::UserName,
        "Computer" => Key::Computer,
        "Description" => Key::Description,
        _ => return None,
    })
}

#[derive(Default)]
struct Block {
    offset: u64,
    line: u64,
    log_name: String,
    source: String,
    date: String,
    event_id: String,
    level: String,
    user: String,
    computer: String,
    task: String,
    keywords: String,
    description: Vec<String>,
    xml: Option<String>,
    in_description: bool,
}

fn starts_block(trimmed: &str) -> bool {
    if trimmed.starts_with("Event[") && trimmed.ends_with("]:") {
        return true;
    }
    matches!(header_line(trimmed), Ok((_, (k, _))) if key(k) == Some(Key::LogName))
}

/// Parses a stream of Event Viewer text blocks.
pub(crate) fn parse<R: Read>(mut lines: LineReader<R>, ctx: &mut Ctx<'_>) {
    let mut block: Option<Block> = None;
    let mut wevtutil = false;
    loop {
        let line = crate::next_line!(lines, ctx);
        let trimmed = line.text.trim_matches(is_pad);
        if starts_block(trimmed) {
            // `Event[0]:` opens a wevtutil block; its `Log Name:` follows.
            let is_index = trimmed.starts_with("Event[");
            let continues_wevtutil =
                !is_index && wevtutil && block.as_ref().is_some_and(|b| b.log_name.is_empty());
            if !continues_wevtutil {
                if let Some(done) = block.take() {
                    finish(done, ctx);
                }
                block = Some(Block {
                    offset: line.offset,
                    line: line.number,
                    ..Block::default()
                });
            }
            wevtutil = is_index;
            if is_index {
                continue;
            }
        }
        let Some(current) = block.as_mut() else {
            if !trimmed.is_empty() {
                ctx.error(
                    line.offset,
                    Some(line.number),
                    Reason::Malformed("text outside an event block (expected `Log Name:`)".into()),
                );
            }
            continue;
        };
        if let Some(xml) = current.xml.as_mut() {
            xml.push_str(line.text);
            xml.push('\n');
            continue;
        }
        if trimmed == "Event Xml:" {
            current.xml = Some(String::new());
            current.in_description = false;
            continue;
        }
        if current.in_description {
            current.description.push(line.text.trim_end().to_owned());
            continue;
        }
        match header_line(trimmed) {
            Ok((_, (name, value))) if key(name).is_some() => {
                let value = value.trim_matches(is_pad).to_owned();
                match key(name) {
                    Some(Key::LogName) => current.log_name = value,
                    Some(Key::Source) => current.source = value,
                    Some(Key::Date) => current.date = value,
                    Some(Key::EventId) => current.event_id = value,
                    Some(Key::TaskCategory) => current.task = value,
                    Some(Key::Level) => current.level = value,
                    Some(Key::Keywords) => current.keywords = value,
                    Some(Key::User) | Some(Key::UserName) => {
                        if current.user.is_empty() || value.contains('\\') {
                            current.user = value
                        }
                    }
                    Some(Key::Computer) => current.computer = value,
                    Some(Key::Description) => {
                        current.in_description = true;
                        if !value.is_empty() {
                            current.description.push(value);
                        }
                    }
                    Some(Key::Opcode) | None => {}
                }
            }
            _ if trimmed.is_empty() => {}
            _ => {
                // An unknown header line (another locale's key, a wrapped value): keep it.
                current.description.push(line.text.trim().to_owned());
            }
        }
    }
    if let Some(done) = block.take() {
        finish(done, ctx);
    }
}

fn finish(block: Block, ctx: &mut Ctx<'_>) {
    let from_xml = block
        .xml
        .as_deref()
        .map(str::trim)
        .filter(|x| x.starts_with('<'))
        .map(event_xml::parse_event);
    let (mut event, has_xml_time) = match from_xml {
        Some(Ok(event)) => (event, true),
        Some(Err(reason)) => {
            ctx.error(
                block.offset,
                Some(block.line),
                Reason::Xml(format!("in the `Event Xml:` part: {reason}")),
            );
            (Event::default(), false)
        }
        None => (Event::default(), false),
    };
    if !has_xml_time {
        let Some(stamp) = parse_local(&block.date, ctx.opts.day_first) else {
            ctx.error(
                block.offset,
                Some(block.line),
                Reason::Malformed(format!("bad or missing `Date:` {:?}", block.date)),
            );
            return;
        };
        let (timestamp, assumed) = ctx.resolve(stamp);
        event.timestamp = timestamp;
        event.zone_assumed = assumed;
        let Ok(event_id) = block.event_id.parse::<u32>() else {
            ctx.error(
                block.offset,
                Some(block.line),
                Reason::Malformed(format!("bad or missing `Event ID:` {:?}", block.event_id)),
            );
            return;
        };
        event.event_id = event_id;
        event.level = Level::parse(&block.level).unwrap_or_default();
    }
    if !block.log_name.is_empty() {
        event.channel = block.log_name.into();
    }
    if event.provider.is_empty() {
        event.provider = block.source.into();
    }
    if !block.computer.is_empty() {
        event.host = block.computer.into();
    }
    if event.vm_id.is_none() {
        event.vm_id = vm_id_from_user(&block.user);
    }
    if !block.task.is_empty() && block.task != "None" {
        event.data.insert("TaskCategory", block.task);
    }
    let mut description = block.description;
    while description.last().is_some_and(|l| l.trim().is_empty()) {
        description.pop();
    }
    let message = description.join("\n");
    if !message.is_empty() {
        event.message = message;
    }
    ctx.emit(event, block.offset);
}
