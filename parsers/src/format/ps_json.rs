//! Get-WinEvent | ConvertTo-Json: one object or an array of them,
//! PowerShell 5.1 (`"\/Date(1595374458918)\/"`, two spaces after colons,
//! `TimeCreated` possibly an object with `value`) or 7.x (ISO dates).
//! The array is read element by element, never whole.

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::Reason;
use crate::format::ps_csv::{build, Guard};
use crate::read::{TextEncoding, Utf8Reader};
use crate::Ctx;

/// Counts bytes handed to serde_json, which reads one at a time.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // PowerShell 5.1 wraps DateTime as {"value": "\/Date(…)\/", "DateTime": "…"}
        // and SIDs as {"Value": "S-1-5-18", …}.
        Value::Object(map) => map
            .get("value")
            .or_else(|| map.get("Value"))
            .and_then(text_of),
        Value::Array(_) => None,
    }
}

fn emit_object(map: &Map<String, Value>, offset: u64, index: u64, ctx: &mut Ctx<'_>) {
    let get = |name: &str| map.get(name).and_then(text_of);
    match build(&get, ctx) {
        Ok(mut event) => {
            // `Properties` survives only with -Depth 3 or more: [{"Value": …}, …].
            if let Some(Value::Array(items)) = map.get("Properties") {
                for (i, item) in items.iter().enumerate() {
                    if let Some(value) = item
                        .as_object()
                        .and_then(|o| o.get("Value"))
                        .and_then(text_of)
                    {
                        event.data.insert(format!("param{}", i + 1), value);
                    }
                }
            }
            ctx.emit(event, offset)
        }
        Err(reason) => ctx.error(
            offset,
            None,
            Reason::Malformed(format!("array element {index}: {reason}")),
        ),
    }
}

struct Top<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    count: Rc<Cell<u64>>,
    mark: Rc<Cell<u64>>,
    base: u64,
}

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object or an array of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u64;
        loop {
            let start = self.base + self.count.get();
            let Some(value) = seq.next_element::<Value>()? else {
                break;
            };
            self.mark.set(self.count.get());
            match value {
                Value::Object(map) => emit_object(&map, start, index, self.ctx),
                other => self.ctx.error(
                    start,
                    None,
                    Reason::Malformed(format!("array element {index} is not an object: {other}")),
                ),
            }
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let mut map = Map::new();
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            map.insert(key, value);
        }
        emit_object(&map, self.base, 0, self.ctx);
        Ok(())
    }
}

/// Parses ConvertTo-Json output.
pub(crate) fn parse<R: Read>(reader: R, encoding: TextEncoding, ctx: &mut Ctx<'_>) {
    let count = Rc::new(Cell::new(0u64));
    let mark = Rc::new(Cell::new(0u64));
    let counted = Counting {
        inner: BufReader::with_capacity(64 * 1024, Utf8Reader::new(reader, encoding)),
        count: count.clone(),
    };
    // Bound one element's size: fail reads once an element runs too long.
    let limited = Guard {
        inner: counted,
        read: count.clone(),
        mark: mark.clone(),
        limit: ctx.opts.max_record_bytes as u64,
    };
    let mut de = serde_json::Deserializer::from_reader(limited);
    loop {
        match top_or_eof(&mut de) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                ctx.fatal(
                    count.get(),
                    Some(e.line() as u64),
                    Reason::Json(e.to_string()),
                );
                return;
            }
        }
        if let Err(e) = (Top {
            ctx: &mut *ctx,
            count: count.clone(),
            mark: mark.clone(),
            base: 0,
        })
        .deserialize(&mut de)
        {
            ctx.fatal(
                count.get(),
                Some(e.line() as u64),
                Reason::Json(e.to_string()),
            );
            return;
        }
    }
}

/// True if another top-level value follows (PowerShell may write several).
fn top_or_eof<R: serde_json::de::Read<'static>>(
    de: &mut serde_json::Deserializer<R>,
) -> serde_json::Result<bool> {
    match de.end() {
        Ok(()) => Ok(false),
        Err(e) if e.classify() == serde_json::error::Category::Syntax => Ok(true),
        Err(e) => Err(e),
    }
}
