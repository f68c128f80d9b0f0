//! Lumberjack, the Beats → Logstash protocol (v2, and v1's key/value data
//! frames), so Winlogbeat and Elastic Agent configured with a Logstash
//! output ship to relive unchanged.
//!
//! Frames are big-endian, each a version byte (`'2'`, or `'1'`) and a type:
//!
//! ```text
//! '2' 'W' u32 window            the client will send `window` events, then wait
//! '2' 'C' u32 len, zlib[len]    compressed: more frames inside
//! '2' 'J' u32 seq, u32 len, json[len]
//! '1' 'D' u32 seq, u32 pairs, (u32 klen, key, u32 vlen, value) * pairs
//! '2' 'A' u32 seq               server → client: every event up to `seq` is safe
//! ```
//!
//! A window's events are collected, handed to the write-ahead log as one
//! record of JSON lines, and acknowledged with the window's last sequence
//! number only once that record is durable. Windows may be pipelined; their
//! acks go out in order. Every length is bounded (a frame, an inflated
//! `C` payload, a window) so a hostile peer cannot grow memory.

use std::io::Read;

use flate2::read::ZlibDecoder;

/// Largest window a client may announce, in events.
pub const MAX_WINDOW: u32 = 1 << 20;
/// Largest `C` payload, compressed or inflated, and largest `J` event.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// How deep `C` frames may nest.
const MAX_DEPTH: usize = 2;

/// A protocol violation; the connection is closed after it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LumberjackError {
    /// A version byte other than `'1'` or `'2'`.
    #[error("unknown protocol version byte 0x{0:02x}")]
    Version(u8),
    /// A frame type this server does not take.
    #[error("unknown frame type 0x{0:02x}")]
    FrameType(u8),
    /// A length over its bound.
    #[error("{what} of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its claimed length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A window over [`MAX_WINDOW`] or of zero events.
    #[error("a window of {0} events is not accepted (1..={MAX_WINDOW})")]
    Window(u32),
    /// A compressed payload that does not inflate.
    #[error("bad zlib payload: {0}")]
    Zlib(String),
    /// A frame cut short inside a compressed payload.
    #[error("a frame inside a compressed payload is cut short")]
    Truncated,
    /// `C` frames nested too deep.
    #[error("compressed frames nested deeper than {MAX_DEPTH}")]
    Nesting,
}

/// One thing a frame said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `W`: a window of this many events begins.
    Window(u32),
    /// `J` (or `D`, turned into JSON): one event.
    Event {
        /// The client's sequence number.
        seq: u32,
        /// The event as one line of JSON.
        json: Vec<u8>,
        /// The version byte it came with (acks answer in kind).
        version: u8,
    },
}

/// Inflates a `C` payload, refusing to expand past [`MAX_PAYLOAD`].
pub fn inflate(compressed: &[u8]) -> Result<Vec<u8>, LumberjackError> {
    let mut out = Vec::new();
    ZlibDecoder::new(compressed)
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| LumberjackError::Zlib(e.to_string()))?;
    if out.len() > MAX_PAYLOAD {
        return Err(LumberjackError::TooLarge {
            what: "an inflated payload",
            len: out.len() as u64,
            max: MAX_PAYLOAD as u64,
        });
    }
    Ok(out)
}

fn u32_at(buf: &[u8], at: usize) -> Result<u32, LumberjackError> {
    buf.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(LumberjackError::Truncated)
}

fn bytes_at(buf: &[u8], at: usize, len: usize) -> Result<&[u8], LumberjackError> {
    buf.get(at..at.checked_add(len).ok_or(LumberjackError::Truncated)?)
        .ok_or(LumberjackError::Truncated)
}

/// The version byte is `'1'` or `'2'`.
pub fn check_version(version: u8) -> Result<(), LumberjackError> {
    match version {
        b'1' | b'2' => Ok(()),
        other => Err(LumberjackError::Version(other)),
    }
}

/// Checks an announced window.
pub fn check_window(window: u32) -> Result<(), LumberjackError> {
    if window == 0 || window > MAX_WINDOW {
        return Err(LumberjackError::Window(window));
    }
    Ok(())
}

/// Checks a length against [`MAX_PAYLOAD`].
pub fn check_len(what: &'static str, len: u32) -> Result<usize, LumberjackError> {
    if len as usize > MAX_PAYLOAD {
        return Err(LumberjackError::TooLarge {
            what,
            len: len as u64,
            max: MAX_PAYLOAD as u64,
        });
    }
    Ok(len as usize)
}

/// Parses every frame in `buf` (an inflated `C` payload) into `out`.
pub fn parse_frames(buf: &[u8], depth: usize, out: &mut Vec<Item>) -> Result<(), LumberjackError> {
    if depth > MAX_DEPTH {
        return Err(LumberjackError::Nesting);
    }
    let mut at = 0;
    while at < buf.len() {
        let version = buf[at];
        check_version(version)?;
        let kind = *buf.get(at + 1).ok_or(LumberjackError::Truncated)?;
        at += 2;
        match kind {
            b'W' => {
                let window = u32_at(buf, at)?;
                check_window(window)?;
                out.push(Item::Window(window));
                at += 4;
            }
            b'C' => {
                let len = check_len("a compressed payload", u32_at(buf, at)?)?;
                let inner = inflate(bytes_at(buf, at + 4, len)?)?;
                parse_frames(&inner, depth + 1, out)?;
                at += 4 + len;
            }
            b'J' => {
                let seq = u32_at(buf, at)?;
                let len = check_len("a JSON event", u32_at(buf, at + 4)?)?;
                let json = one_line(bytes_at(buf, at + 8, len)?);
                out.push(Item::Event { seq, json, version });
                at += 8 + len;
            }
            b'D' => {
                let seq = u32_at(buf, at)?;
                let pairs = u32_at(buf, at + 4)?;
                at += 8;
                let mut map = serde_json::Map::new();
                for _ in 0..pairs {
                    let klen = check_len("a data key", u32_at(buf, at)?)?;
                    let key = bytes_at(buf, at + 4, klen)?;
                    at += 4 + klen;
                    let vlen = check_len("a data value", u32_at(buf, at)?)?;
                    let value = bytes_at(buf, at + 4, vlen)?;
                    at += 4 + vlen;
                    let key = String::from_utf8_lossy(key);
                    // logstash-forwarder's names, in ECS (flat dotted keys).
                    let key = match key.as_ref() {
                        "line" => "message".into(),
                        "host" => "host.name".into(),
                        "file" => "log.file.path".into(),
                        _ => key,
                    };
                    map.insert(
                        key.into_owned(),
                        serde_json::Value::String(String::from_utf8_lossy(value).into_owned()),
                    );
                }
                // v1 data carries no time; Logstash stamps it on receipt.
                map.entry("@timestamp").or_insert_with(|| {
                    chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                        .into()
                });
                let json = serde_json::Value::Object(map).to_string().into_bytes();
                out.push(Item::Event { seq, json, version });
            }
            other => return Err(LumberjackError::FrameType(other)),
        }
    }
    Ok(())
}

/// The event as a single line: a JSON text with raw line breaks (pretty
/// printed) is re-serialized compactly; one that does not parse has its
/// breaks replaced so it stays one (reported, unparsable) line.
pub fn one_line(json: &[u8]) -> Vec<u8> {
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        return json.to_vec();
    }
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(value) => value.to_string().into_bytes(),
        Err(_) => json
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect(),
    }
}

/// The acknowledgement frame for `seq`.
pub fn ack(version: u8, seq: u32) -> [u8; 6] {
    let s = seq.to_be_bytes();
    [version, b'A', s[0], s[1], s[2], s[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn json_frame(seq: u32, json: &str) -> Vec<u8> {
        let mut out = vec![b'2', b'J'];
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(json.as_bytes());
        out
    }

    fn compressed(inner: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(inner).unwrap();
        let z = z.finish().unwrap();
        let mut out = vec![b'2', b'C'];
        out.extend_from_slice(&(z.len() as u32).to_be_bytes());
        out.extend_from_slice(&z);
        out
    }

    #[test]
    fn window_compressed_json_and_data_frames() {
        let mut inner = json_frame(1, r#"{"message":"a"}"#);
        inner.extend(json_frame(2, "{\n \"message\": \"b\"\n}"));
        inner.extend([b'1', b'D', 0, 0, 0, 3, 0, 0, 0, 1]);
        inner.extend([0, 0, 0, 4]);
        inner.extend(b"line");
        inner.extend([0, 0, 0, 1]);
        inner.extend(b"c");
        let mut buf = vec![b'2', b'W', 0, 0, 0, 3];
        buf.extend(compressed(&inner));
        let mut items = Vec::new();
        parse_frames(&buf, 0, &mut items).unwrap();
        assert_eq!(items[0], Item::Window(3));
        let lines: Vec<serde_json::Value> = items[1..]
            .iter()
            .map(|i| match i {
                Item::Event { json, .. } => serde_json::from_slice(json).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lines[0], serde_json::json!({"message": "a"}));
        assert_eq!(lines[1], serde_json::json!({"message": "b"}));
        assert_eq!(lines[2]["message"], "c");
        assert!(lines[2]["@timestamp"].is_string(), "stamped on receipt");
        assert_eq!(ack(b'2', 3), [b'2', b'A', 0, 0, 0, 3]);
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        let check = |buf: &[u8], want: LumberjackError| {
            let mut items = Vec::new();
            assert_eq!(parse_frames(buf, 0, &mut items), Err(want));
        };
        check(b"3W\0\0\0\x01", LumberjackError::Version(b'3'));
        check(b"2X", LumberjackError::FrameType(b'X'));
        check(b"2W\0\0\0\0", LumberjackError::Window(0));
        check(b"2J\0\0\0\x01\0\0\0\x09{}", LumberjackError::Truncated);
        check(
            b"2J\0\0\0\x01\xff\xff\xff\xff",
            LumberjackError::TooLarge {
                what: "a JSON event",
                len: u32::MAX as u64,
                max: MAX_PAYLOAD as u64,
            },
        );
        let mut nested = json_frame(1, "{}");
        for _ in 0..4 {
            nested = compressed(&nested);
        }
        check(&nested, LumberjackError::Nesting);
    }

    #[test]
    fn a_zlib_bomb_is_refused() {
        let zeros = vec![0u8; MAX_PAYLOAD + 1024];
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&zeros).unwrap();
        let z = z.finish().unwrap();
        assert!(matches!(inflate(&z), Err(LumberjackError::TooLarge { .. })));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut items = Vec::new();
            let _ = parse_frames(&bytes, 0, &mut items);
        }
    }
}
