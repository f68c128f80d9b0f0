//! A segmented write-ahead log of checksummed records.
//!
//! The collector appends every accepted batch here and acknowledges it only
//! after the append is on disk (`fdatasync`); the indexer reads the log
//! behind the writers and records how far it got in a checkpoint file, and
//! segments wholly before that checkpoint are deleted. The agent uses the
//! same log as its spool.
//!
//! On disk, `DIR/<first-seq>.wal` files, each a run of records:
//!
//! ```text
//! u32 LE  body length
//! u32 LE  CRC-32C... (crc32fast: CRC-32/ISO-HDLC) of seq ++ body
//! u64 LE  sequence number (consecutive across segments)
//! body
//! ```
//!
//! A record whose header or body is cut short, or whose checksum does not
//! match, ends the log: on open, everything from the first such record on
//! is truncated away (a torn write from a crash is dropped, never misread).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Bytes of a record header.
pub const HEADER: usize = 16;
/// Largest record body accepted.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// What can go wrong with the log.
#[derive(Debug, Error)]
pub enum WalError {
    /// A file could not be read or written.
    #[error("write-ahead log {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// A record larger than [`MAX_RECORD`].
    #[error("record of {0} bytes is larger than the write-ahead log's limit of {MAX_RECORD}")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What opening the log found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Records found intact.
    pub records: u64,
    /// Bytes dropped from the end of the last segment (a torn write).
    pub truncated_bytes: u64,
    /// Where the damage was, when there was some.
    pub damage: Option<String>,
}

/// Sizing of the log.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// A new segment starts once the current one is this large.
    pub segment_bytes: u64,
    /// Call `fdatasync` after each append (off only in benchmarks of the
    /// non-durable path).
    pub sync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            sync: true,
        }
    }
}

/// The writing end of the log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// Current segment and its first sequence number.
    file: File,
    segment_start: u64,
    segment_len: u64,
    next_seq: u64,
    buf: Vec<u8>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// The segments in `dir`, oldest first, by first sequence number.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn checksum(seq: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Reads one record at the reader's position. `Ok(None)` at a clean end;
/// `Err(why)` for a torn or corrupt record.
fn read_record<R: Read>(
    r: &mut R,
    body: &mut Vec<u8>,
) -> Result<Option<u64>, std::borrow::Cow<'static, str>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("record header cut short".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read failed: {e}").into()),
        }
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if len > MAX_RECORD {
        return Err(format!("record claims {len} bytes").into());
    }
    body.clear();
    body.resize(len, 0);
    if let Err(e) = r.read_exact(body) {
        return Err(format!("record body cut short ({e})").into());
    }
    if checksum(seq, body) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(Some(seq))
}

impl Wal {
    /// Opens (or creates) the log in `dir`, dropping a torn tail.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Recovery), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let segs = segments(dir)?;
        let mut recovery = Recovery::default();
        let mut next_seq = 0u64;
        let mut last: Option<(u64, PathBuf, u64)> = None;
        let mut body = Vec::new();
        for (i, (first, path)) in segs.iter().enumerate() {
            let file = File::open(path).map_err(io_err(path))?;
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut offset = 0u64;
            let mut expected = *first;
            loop {
                match read_record(&mut reader, &mut body) {
                    Ok(None) => break,
                    Ok(Some(seq)) if seq == expected => {
                        offset += (HEADER + body.len()) as u64;
                        expected += 1;
                        recovery.records += 1;
                    }
                    Ok(Some(seq)) => {
                        recovery.damage = Some(format!(
                            "{} at byte {offset}: sequence {seq}, expected {expected}",
                            path.display()
                        ));
                        break;
                    }
                    Err(why) => {
                        recovery.damage =
                            Some(format!("{} at byte {offset}: {why}", path.display()));
                        break;
                    }
                }
            }
            let size = fs::metadata(path).map_err(io_err(path))?.len();
            if offset < size {
                if i + 1 != segs.len() {
                    // Damage before the last segment: everything after it
                    // is unreachable by sequence; keep what is intact and
                    // drop the later segments.
                    for (_, later) in &segs[i + 1..] {
                        let len = fs::metadata(later).map(|m| m.len()).unwrap_or(0);
                        recovery.truncated_bytes += len;
                        fs::remove_file(later).map_err(io_err(later))?;
                    }
                }
                recovery.truncated_bytes += size - offset;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(offset).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                next_seq = expected;
                last = Some((*first, path.clone(), offset));
                break;
            }
            next_seq = expected;
            last = Some((*first, path.clone(), offset));
        }
        let (segment_start, path, segment_len) = match last {
            Some(last) => last,
            None => {
                let path = dir.join(segment_name(0));
                (0, path, 0)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                options,
                file,
                segment_start,
                segment_len,
                next_seq,
                buf: Vec::new(),
            },
            recovery,
        ))
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The folder of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends records and makes them durable with one sync. Returns the
    /// sequence number of the first.
    pub fn append<B: AsRef<[u8]>>(&mut self, bodies: &[B]) -> Result<u64, WalError> {
        let first = self.next_seq;
        self.buf.clear();
        for body in bodies {
            let body = body.as_ref();
            if body.len() > MAX_RECORD {
                return Err(WalError::TooLarge(body.len()));
            }
        }
        for body in bodies {
            let body = body.as_ref();
            if self.segment_len > 0 && self.segment_len >= self.options.segment_bytes {
                self.flush_buf()?;
                self.rotate()?;
            }
            let seq = self.next_seq;
            self.buf
                .extend_from_slice(&(body.len() as u32).to_le_bytes());
            self.buf
                .extend_from_slice(&checksum(seq, body).to_le_bytes());
            self.buf.extend_from_slice(&seq.to_le_bytes());
            self.buf.extend_from_slice(body);
            self.segment_len += (HEADER + body.len()) as u64;
            self.next_seq += 1;
        }
        self.flush_buf()?;
        if self.options.sync {
            let path = self.dir.join(segment_name(self.segment_start));
            self.file.sync_data().map_err(io_err(&path))?;
        }
        Ok(first)
    }

    fn flush_buf(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            let path = self.dir.join(segment_name(self.segment_start));
            return Err(io_err(&path)(e));
        }
        self.buf.clear();
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        let old = self.dir.join(segment_name(self.segment_start));
        self.file.sync_data().map_err(io_err(&old))?;
        let path = self.dir.join(segment_name(self.next_seq));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.segment_start = self.next_seq;
        self.segment_len = 0;
        Ok(())
    }

    /// Deletes the segments whose records all come before `seq` (the
    /// current segment is never deleted). Returns how many went.
    pub fn release_before(&self, seq: u64) -> Result<usize, WalError> {
        release_before(&self.dir, seq, self.segment_start)
    }
}

/// Deletes segments of the log in `dir` whose records all come before
/// `seq`, never the one starting at `keep_from` or later.
pub fn release_before(dir: &Path, seq: u64, keep_from: u64) -> Result<usize, WalError> {
    let segs = segments(dir)?;
    let mut removed = 0;
    for (i, (first, path)) in segs.iter().enumerate() {
        let next_first = segs.get(i + 1).map(|(s, _)| *s);
        match next_first {
            Some(next) if next <= seq && *first < keep_from => {
                fs::remove_file(path).map_err(io_err(path))?;
                removed += 1;
            }
            _ => break,
        }
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    // Makes a created or renamed entry durable (a no-op where directories
    // cannot be opened).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads records from a log, following it as it grows.
#[derive(Debug)]
pub struct WalReader {
    dir: PathBuf,
    /// Next sequence number wanted.
    next: u64,
    current: Option<(u64, BufReader<File>, u64)>,
    body: Vec<u8>,
}

impl WalReader {
    /// A reader that starts at sequence number `from`.
    pub fn new(dir: &Path, from: u64) -> WalReader {
        WalReader {
            dir: dir.to_path_buf(),
            next: from,
            current: None,
            body: Vec::new(),
        }
    }

    /// The sequence number of the next record it will return.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next record, if one has been written (and synced, or at least
    /// written whole) since the last call. The body stays valid until the
    /// next call.
    pub fn next_record(&mut self) -> Result<Option<(u64, &[u8])>, WalError> {
        let mut switched = false;
        loop {
            if self.current.is_none() && !self.open_segment()? {
                return Ok(None);
            }
            let (first, reader, offset) = self.current.as_mut().expect("opened");
            let first = *first;
            match read_record(reader, &mut self.body) {
                Ok(Some(seq)) if seq < self.next => {
                    *offset += (HEADER + self.body.len()) as u64;
                }
                Ok(Some(seq)) => {
                    *offset += (HEADER + self.body.len()) as u64;
                    self.next = seq + 1;
                    return Ok(Some((seq, &self.body)));
                }
                Ok(None) | Err(_) => {
                    // End of what is written so far (or a record still
                    // being written): rewind to its start; if a later
                    // segment exists, this one is finished.
                    let at = *offset;
                    let path = self.dir.join(segment_name(first));
                    reader.seek(SeekFrom::Start(at)).map_err(io_err(&path))?;
                    if switched {
                        return Ok(None);
                    }
                    let later = segments(&self.dir)?
                        .into_iter()
                        .any(|(s, _)| s > first && s <= self.next);
                    if !later {
                        return Ok(None);
                    }
                    self.current = None;
                    switched = true;
                }
            }
        }
    }

    fn open_segment(&mut self) -> Result<bool, WalError> {
        let segs = segments(&self.dir)?;
        let Some((first, path)) = segs.iter().rev().find(|(s, _)| *s <= self.next) else {
            // Everything before the oldest segment was released: start there.
            return match segs.first() {
                Some((first, path)) => {
                    self.next = *first;
                    let file = File::open(path).map_err(io_err(path))?;
                    self.current = Some((*first, BufReader::with_capacity(1 << 20, file), 0));
                    Ok(true)
                }
                None => Ok(false),
            };
        };
        let file = File::open(path).map_err(io_err(path))?;
        self.current = Some((*first, BufReader::with_capacity(1 << 20, file), 0));
        Ok(true)
    }
}

/// A small file holding one number, replaced atomically.
pub fn store_u64(path: &Path, value: u64) -> Result<(), WalError> {
    store_bytes(path, format!("{value}\n").as_bytes())
}

/// Replaces a small file atomically: write a temporary, sync, rename,
/// sync the folder.
pub fn store_bytes(path: &Path, bytes: &[u8]) -> Result<(), WalError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Reads a number written by [`store_u64`]; `None` when there is none.
pub fn load_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}
