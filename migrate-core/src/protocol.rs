//! The wire protocol between a source and a destination host.
//!
//! Every message is a frame: a little-endian `u32` length (of what follows),
//! a one-byte [`Command`], then the body. Frames over [`MAX_FRAME`] are
//! refused before anything is allocated.
//!
//! ```text
//!  source                                         destination
//!    | Hello{version, source, initiator, nonce} ------> |
//!    | <------------------------ Challenge{nonce}       |  (or Reject: version)
//!    | Proof{HMAC-SHA256(secret, both nonces)} -------> |
//!    | Offer{VM config, pages, streams, codec} -------> |  pre-flight checks,
//!    | <---------------- Accept{session} | Reject{kind} |  memory reserved
//!    | (streams 2..N: Join{session, index} -----------> |)
//!    | Pages{pass, pages...} ... PassEnd{pass} -------> |  pre-copy, repeated
//!    |        ... the VM is paused on the source ...    |
//!    | Pages{final pass} ... PassEnd{final} ----------> |  on every stream
//!    | Device{state blob} ----------------------------> |
//!    | VerifySummary{pages, digests folded} ----------> |  compare with its own
//!    | <----------------------- Verified{0 | differs}  |  (protocol 2)
//!    | Verify{digest of every page} ------------------> |  only if it differs,
//!    | <----------------------- Verified{mismatches}    |  or to a version-1 peer
//!    | Commit ----------------------------------------> |  resumes the VM,
//!    | <----------------------- CommitAck{announced}    |  announces it
//!    |  source frees its copy                           |
//! ```
//! Any failure before `CommitAck` leaves the VM running on the source: the
//! source sends `Abort` when it can, and the destination frees its
//! reservation when the connection drops without a `Commit`. A source that
//! lost the answer to `Commit` is in doubt: it writes that down before it
//! sends `Commit`, keeps the VM paused, and asks the destination with
//! `Resolve{vm id, migration id}` (authenticated) until it answers:
//! "committed" (the VM runs or ran there: the source discards its copy) or
//! "aborted" (the destination fences that migration, so a late `Commit` is
//! refused, and the source resumes). It never resumes on a timeout; an
//! operator can decide instead (`relive resolve`).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, MigrationError};

/// Protocol version spoken; the previous one is accepted too. Version 2
/// adds [`Command::VerifySummary`] (and `version` in `Accept`).
pub const VERSION: u16 = 2;
/// Largest frame accepted.
pub const MAX_FRAME: usize = 64 << 20;
/// Magic at the start of `Hello`.
pub const MAGIC: &[u8; 4] = b"RLMG";

/// What a frame says.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Source → destination: magic, version, source host, initiator, nonce.
    Hello = 1,
    /// Destination → source: the destination's nonce.
    Challenge = 2,
    /// Source → destination: HMAC over both nonces with the shared secret.
    Proof = 3,
    /// Source → destination: the VM configuration and transfer options (JSON).
    Offer = 4,
    /// Destination → source: pre-flight passed, memory reserved (JSON).
    Accept = 5,
    /// Either way: the failure kind and its Hyper-V message (JSON).
    Reject = 6,
    /// Source → destination: a batch of pages.
    Pages = 7,
    /// Source → destination: the end of a pass on this stream.
    PassEnd = 8,
    /// Source → destination: the device state blob.
    Device = 9,
    /// Source → destination: a digest of every page.
    Verify = 10,
    /// Destination → source: the pages whose digests differ (none = ok).
    Verified = 11,
    /// Source → destination: resume the VM.
    Commit = 12,
    /// Destination → source: the VM runs here and was announced.
    CommitAck = 13,
    /// Source → destination: give up, free the reservation.
    Abort = 14,
    /// Extra stream → destination: joins session `id` as stream `index`.
    Join = 15,
    /// Source → destination (new connection): does VM `id` run here?
    Query = 16,
    /// Destination → source: the answer to `Query` or `Resolve` (JSON).
    Status = 17,
    /// Source → destination (protocol 2): the page count and the digests of
    /// every page folded into one; `Verified` answers 0 when they agree, or
    /// [`SUMMARY_DIFFERS`] to ask for the per-page list (`Verify`).
    VerifySummary = 18,
    /// Source → destination (new connection): settle an in-doubt commit
    /// (see `ResolveRequest`).
    Resolve = 19,
}

/// `Verified` to a `VerifySummary` whose fold differs: send the list.
pub const SUMMARY_DIFFERS: u64 = u64::MAX;

impl Command {
    fn from_u8(value: u8) -> Option<Command> {
        use Command::*;
        Some(match value {
            1 => Hello,
            2 => Challenge,
            3 => Proof,
            4 => Offer,
            5 => Accept,
            6 => Reject,
            7 => Pages,
            8 => PassEnd,
            9 => Device,
            10 => Verify,
            11 => Verified,
            12 => Commit,
            13 => CommitAck,
            14 => Abort,
            15 => Join,
            16 => Query,
            19 => Resolve,
            17 => Status,
            18 => VerifySummary,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it says.
    pub command: Command,
    /// The body.
    pub body: Vec<u8>,
}

/// Bytes of a frame head: the length (u32 LE, command byte included) and
/// the command.
pub const HEAD: usize = 5;

/// Fills the head of a frame whose body follows it in `frame`
/// (`frame[..HEAD]` reserved), so the whole frame goes out in one write.
pub fn seal_frame(command: Command, frame: &mut [u8]) {
    let len = (frame.len() - HEAD + 1) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4] = command as u8;
}

/// Writes a frame (`parts` concatenated form the body).
pub fn write_frame(out: &mut impl Write, command: Command, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&(len as u32).to_le_bytes());
    head[4] = command as u8;
    out.write_all(&head)?;
    for part in parts {
        out.write_all(part)?;
    }
    Ok(())
}

/// Reads a frame into `body` (reused); `Ok(None)` at a clean end of stream.
pub fn read_frame(input: &mut impl Read, body: &mut Vec<u8>) -> io::Result<Option<Command>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes refused (limit {MAX_FRAME})"),
        ));
    }
    let command = Command::from_u8(head[4]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown command {}", head[4]),
        )
    })?;
    // Resized, not cleared first: a reused buffer of the same size is not
    // zero-filled again before every page batch.
    body.resize(len - 1, 0);
    input.read_exact(body)?;
    Ok(Some(command))
}

/// A protocol error for an unexpected frame.
pub fn unexpected(got: Option<Command>, wanted: &str) -> MigrationError {
    MigrationError::new(
        ErrorKind::Protocol,
        format!(
            "The migration protocol failed: expected {wanted}, got {}.",
            got.map(|c| format!("{c:?}"))
                .unwrap_or_else(|| "end of stream".into())
        ),
    )
}

/// Little-endian field reader over a body.
pub struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, at: 0 }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let out = &self.data[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame body shorter than its fields",
            )),
        }
    }

    /// A `u16`.
    pub fn u16(&mut self) -> io::Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A `u32`.
    pub fn u32(&mut self) -> io::Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> io::Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A string with a `u16` length.
    pub fn str(&mut self) -> io::Result<String> {
        let n = self.u16()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "string is not UTF-8"))
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.data[self.at..];
        self.at = self.data.len();
        out
    }
}

/// Appends a string with a `u16` length.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// HMAC-SHA256 (RFC 2104, the `hmac` crate) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in message {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC-SHA256 of `message` under `key` (compared in
/// constant time).
pub fn hmac_sha256_verify(key: &[u8], message: &[&[u8]], tag: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in message {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// Compares two secrets (tokens) in constant time.
pub fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------- bodies

/// The offer a source makes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Offer {
    pub vm: crate::config::VmConfig,
    pub pages: u64,
    /// Disk blocks that follow the pages (a shared-nothing disk), or 0.
    #[serde(default)]
    pub disk_blocks: u64,
    pub streams: u32,
    pub codec: Codec,
    /// The source's migration id (fences name it; empty from older sources).
    #[serde(default)]
    pub migration: String,
}

/// `Resolve`: a source whose commit answer was lost asks the destination
/// to settle the migration: "committed" if the VM runs (or ran) there,
/// otherwise the destination fences the migration (a late `Commit` is
/// refused) and answers "aborted". Authenticated like the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResolveRequest {
    pub source: String,
    pub vm_id: String,
    pub migration: String,
    pub nonce: String,
    /// HMAC-SHA256 (hex) over `resolve|vm_id|migration|nonce` with the
    /// secret the two hosts share.
    pub mac: String,
}

impl ResolveRequest {
    pub(crate) fn signed_text(&self) -> String {
        format!("resolve|{}|{}|{}", self.vm_id, self.migration, self.nonce)
    }
}

/// The destination's answer to `Resolve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResolveAnswer {
    pub vm_id: String,
    /// True: the VM was committed here (it runs here, or ran here until
    /// this host restarted). False: it was not, and now never will be.
    pub committed: bool,
    /// Whether it runs here now.
    pub running: bool,
}

/// The destination's acceptance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Accept {
    pub session: u64,
    /// The destination's protocol version (absent from version 1).
    #[serde(default)]
    pub version: u16,
}

/// Device state sent in the blackout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceState {
    pub blob: Vec<u8>,
}

/// Marks the pass number of the last pass.
pub(crate) const FINAL: u64 = 1 << 63;

/// Page encodings inside a `Pages` body.
pub mod page {
    /// A page of zeros: the header only.
    pub const ZERO: u8 = 0;
    /// 4096 raw bytes follow.
    pub const RAW: u8 = 1;
}

/// `Pages` batch codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// As is.
    #[default]
    None,
    /// The batch compressed with LZ4.
    Lz4,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_is_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, Command::Pages, &[b"ab", b"cd"]).unwrap();
        write_frame(&mut wire, Command::Commit, &[]).unwrap();
        let mut input = &wire[..];
        let mut body = Vec::new();
        assert_eq!(
            read_frame(&mut input, &mut body).unwrap(),
            Some(Command::Pages)
        );
        assert_eq!(body, b"abcd");
        assert_eq!(
            read_frame(&mut input, &mut body).unwrap(),
            Some(Command::Commit)
        );
        assert_eq!(read_frame(&mut input, &mut body).unwrap(), None);
        let huge = [0xff, 0xff, 0xff, 0xff, 7];
        assert!(read_frame(&mut &huge[..], &mut body).is_err());
        let unknown = [1, 0, 0, 0, 99];
        assert!(read_frame(&mut &unknown[..], &mut body).is_err());
        let torn = [9, 0, 0, 0, 7, 1];
        assert!(read_frame(&mut &torn[..], &mut body).is_err());
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_sha256_verify(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &mac
        ));
        assert!(!hmac_sha256_verify(b"Jefe", &[b"what do ya want"], &mac));
        assert!(!hmac_sha256_verify(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &mac[..31]
        ));
    }
}
