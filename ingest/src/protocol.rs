//! The agent protocol: what `relive agent` and the collector say over TCP
//! (optionally inside TLS).
//!
//! Every frame is a u32 big-endian length (of what follows), a type byte
//! and the payload. Frames over [`MAX_FRAME`] are refused and the
//! connection closed.
//!
//! ```text
//! agent                                   collector
//!   Hello{version, agent name, token} ──►
//!                                     ◄── Welcome{version}  | Refused{reason}
//!   Batch{seq, kind, format, payload} ──►   (any number in flight)
//!                                     ◄── Ack{seq}          once the batch is durable
//!                                     ◄── Nack{seq, reason} if it could not be made durable
//! ```
//!
//! Sequence numbers are per agent and increase by one per batch; acks come
//! in order. After a reconnect the agent resends every batch it has no ack
//! for; the collector's dedup key makes that harmless.

use std::io::{self, Read, Write};

/// Protocol version spoken here.
pub const VERSION: u16 = 1;
/// Largest frame accepted (16 MiB).
pub const MAX_FRAME: u32 = 16 * 1024 * 1024;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame from an agent.
    Hello {
        /// Protocol version.
        version: u16,
        /// Agent name (its host, by default).
        agent: String,
        /// Shared secret for this agent.
        token: String,
    },
    /// The collector accepts.
    Welcome {
        /// Protocol version it speaks.
        version: u16,
    },
    /// The collector refuses (bad token, version) and closes.
    Refused {
        /// Why.
        reason: String,
    },
    /// A batch of records.
    Batch {
        /// Per-agent batch number.
        seq: u64,
        /// [`crate::record::Kind`] as a byte.
        kind: u8,
        /// Forced format code (0 = detect), as in [`crate::record`].
        format: u8,
        /// The records.
        payload: Vec<u8>,
    },
    /// The batch is durable.
    Ack {
        /// Its number.
        seq: u64,
    },
    /// The batch was not stored.
    Nack {
        /// Its number.
        seq: u64,
        /// Why.
        reason: String,
    },
}

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const REFUSED: u8 = 3;
const BATCH: u8 = 0x10;
const ACK: u8 = 0x11;
const NACK: u8 = 0x12;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer claimed a frame larger than the limit.
    #[error("frame of {0} bytes claimed; the limit is {MAX_FRAME}")]
    TooLarge(u32),
    /// The bytes are not a frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection failed or closed mid-frame.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Malformed(
                "frame shorter than its fields".into(),
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self) -> Result<String, FrameError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| FrameError::Malformed("text field is not UTF-8".into()))
    }
}

impl Frame {
    /// Encodes the frame with its length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Frame::Hello {
                version,
                agent,
                token,
            } => {
                body.push(HELLO);
                body.extend_from_slice(&version.to_be_bytes());
                put_str(&mut body, agent);
                put_str(&mut body, token);
            }
            Frame::Welcome { version } => {
                body.push(WELCOME);
                body.extend_from_slice(&version.to_be_bytes());
            }
            Frame::Refused { reason } => {
                body.push(REFUSED);
                put_str(&mut body, reason);
            }
            Frame::Batch {
                seq,
                kind,
                format,
                payload,
            } => {
                body.reserve(11 + payload.len());
                body.push(BATCH);
                body.extend_from_slice(&seq.to_be_bytes());
                body.push(*kind);
                body.push(*format);
                body.extend_from_slice(payload);
            }
            Frame::Ack { seq } => {
                body.push(ACK);
                body.extend_from_slice(&seq.to_be_bytes());
            }
            Frame::Nack { seq, reason } => {
                body.push(NACK);
                body.extend_from_slice(&seq.to_be_bytes());
                put_str(&mut body, reason);
            }
        }
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a frame body (without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        let mut c = Cursor(body);
        let frame = match c.u8()? {
            HELLO => Frame::Hello {
                version: c.u16()?,
                agent: c.string()?,
                token: c.string()?,
            },
            WELCOME => Frame::Welcome { version: c.u16()? },
            REFUSED => Frame::Refused {
                reason: c.string()?,
            },
            BATCH => Frame::Batch {
                seq: c.u64()?,
                kind: c.u8()?,
                format: c.u8()?,
                payload: c.0.to_vec(),
            },
            ACK => Frame::Ack { seq: c.u64()? },
            NACK => Frame::Nack {
                seq: c.u64()?,
                reason: c.string()?,
            },
            other => {
                return Err(FrameError::Malformed(format!(
                    "unknown frame type {other:#04x}"
                )))
            }
        };
        Ok(frame)
    }

    /// Reads one frame from a blocking stream. `Ok(None)` at a clean end.
    pub fn read_from<R: Read>(r: &mut R) -> Result<Option<Frame>, FrameError> {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len);
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let mut body = vec![0u8; len as usize];
        r.read_exact(&mut body)?;
        Frame::decode(&body).map(Some)
    }

    /// Writes the frame to a blocking stream.
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Hello {
                version: 1,
                agent: "NODE-A".into(),
                token: "s3cret".into(),
            },
            Frame::Welcome { version: 1 },
            Frame::Refused {
                reason: "wrong token".into(),
            },
            Frame::Batch {
                seq: 7,
                kind: 1,
                format: 6,
                payload: b"{}\n".to_vec(),
            },
            Frame::Ack { seq: 7 },
            Frame::Nack {
                seq: 8,
                reason: "disk full".into(),
            },
        ] {
            let bytes = f.encode();
            let mut r = bytes.as_slice();
            assert_eq!(Frame::read_from(&mut r).unwrap(), Some(f));
        }
    }

    #[test]
    fn a_frame_claiming_4_gb_is_refused_without_allocating() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1];
        assert!(matches!(
            Frame::read_from(&mut r),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for body in [
            &[][..],
            &[0x99],
            &[HELLO, 0],
            &[BATCH, 1, 2],
            &[HELLO, 0, 1, 0, 5, b'a'],
        ] {
            assert!(Frame::decode(body).is_err());
        }
    }
}
