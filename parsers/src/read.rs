//! Reading text of any encoding Windows writes, in bounded memory: a buffer
//! that never grows past the record limit, lines with exact byte offsets in
//! the original file (UTF-16 included), element slices for XML, and a
//! transcoding reader for the formats parsed by other crates.

use std::io::{self, Read};

/// Text encodings relive reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 (with or without a BOM); invalid bytes are read as Windows-1252.
    Utf8,
    /// UTF-16 little-endian (PowerShell 5.1 `Out-File`, `Get-ClusterLog`).
    Utf16Le,
    /// UTF-16 big-endian.
    Utf16Be,
}

/// Sniffs the encoding from the first bytes; returns it and the BOM length.
pub fn sniff_encoding(head: &[u8]) -> (TextEncoding, usize) {
    match head {
        [0xEF, 0xBB, 0xBF, ..] => (TextEncoding::Utf8, 3),
        [0xFF, 0xFE, ..] => (TextEncoding::Utf16Le, 2),
        [0xFE, 0xFF, ..] => (TextEncoding::Utf16Be, 2),
        _ => {
            // No BOM: UTF-16 text of mostly ASCII has a zero in every other byte.
            let sample = &head[..head.len().min(512) & !1];
            if sample.len() >= 4 {
                let odd_zeros = sample
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .filter(|b| **b == 0)
                    .count();
                let even_zeros = sample.iter().step_by(2).filter(|b| **b == 0).count();
                let half = sample.len() / 2;
                if odd_zeros * 10 >= half * 9 && even_zeros * 10 < half {
                    return (TextEncoding::Utf16Le, 0);
                }
                if even_zeros * 10 >= half * 9 && odd_zeros * 10 < half {
                    return (TextEncoding::Utf16Be, 0);
                }
            }
            (TextEncoding::Utf8, 0)
        }
    }
}

/// Decodes bytes of `encoding` into `out` (cleared first). Invalid UTF-8 is
/// read as Windows-1252 ("ANSI" exports); unpaired surrogates become U+FFFD.
pub fn decode_into(bytes: &[u8], encoding: TextEncoding, out: &mut String) {
    out.clear();
    match encoding {
        TextEncoding::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => out.push_str(s),
            Err(_) => out.extend(bytes.iter().map(|b| cp1252(*b))),
        },
        TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
            let le = encoding == TextEncoding::Utf16Le;
            let units = bytes.chunks_exact(2).map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            });
            out.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')));
        }
    }
}

/// Decodes bytes into a new string (see [`decode_into`]).
pub fn decode(bytes: &[u8], encoding: TextEncoding) -> String {
    let mut out = String::new();
    decode_into(bytes, encoding, &mut out);
    out
}

fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

const CHUNK: usize = 256 * 1024;

/// A read buffer over any reader that tracks absolute offsets and never
/// holds more than `limit + CHUNK` bytes.
pub struct Scanner<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    base: u64,
    eof: bool,
}

impl<R: Read> Scanner<R> {
    /// Wraps `inner`; `base` is the absolute offset of its first byte.
    pub fn new(inner: R, base: u64) -> Self {
        Scanner {
            inner,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            base,
            eof: false,
        }
    }

    /// The unconsumed bytes in the buffer.
    pub fn window(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    /// Absolute offset of the first unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// True once the reader is exhausted (the window may still hold bytes).
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Drops `n` bytes from the front of the window.
    pub fn consume(&mut self, n: usize) {
        self.pos += n.min(self.len - self.pos);
    }

    /// Reads more bytes at the end of the window; returns how many (0 at end).
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.base += self.pos as u64;
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() < self.len + CHUNK {
            self.buf.resize(self.len + CHUNK, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One line of text: content without the line break, its absolute byte
/// offset in the original file and its 1-based number.
#[derive(Debug)]
pub struct Line<'a> {
    /// Text without `\r\n` / `\n`.
    pub text: &'a str,
    /// Byte offset of the line's first byte in the original file.
    pub offset: u64,
    /// 1-based line number.
    pub number: u64,
}

/// What reading a line produced.
#[derive(Debug)]
pub enum LineItem<'a> {
    /// A line.
    Line(Line<'a>),
    /// A line longer than the limit was skipped (offset, number).
    TooLong {
        /// Where it began.
        offset: u64,
        /// Its number.
        number: u64,
    },
    /// Reading failed; nothing more can be read.
    Io(io::Error),
}

/// Splits a stream into lines in any [`TextEncoding`], with exact original
/// offsets, skipping (and reporting) lines longer than `limit` bytes.
pub struct LineReader<R> {
    scanner: Scanner<R>,
    encoding: TextEncoding,
    limit: usize,
    number: u64,
    text: String,
    done: bool,
}

impl<R: Read> LineReader<R> {
    /// `base` is the absolute offset of the first byte `inner` yields (after any BOM).
    pub fn new(inner: R, base: u64, encoding: TextEncoding, limit: usize) -> Self {
        LineReader {
            scanner: Scanner::new(inner, base),
            encoding,
            limit,
            number: 0,
            text: String::new(),
            done: false,
        }
    }

    /// The encoding lines are decoded from.
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// Finds the end of the line in `window`: (content length, delimiter length).
    fn find_break(&self, window: &[u8], from: usize) -> Option<(usize, usize)> {
        match self.encoding {
            TextEncoding::Utf8 => memchr::memchr(b'\n', &window[from..]).map(|i| (from + i, 1)),
            TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
                let le = self.encoding == TextEncoding::Utf16Le;
                let mut i = from & !1;
                while let Some(rel) = memchr::memchr(b'\n', &window[i..]) {
                    let at = i + rel;
                    let unit_start = if le { at } else { at.wrapping_sub(1) };
                    if unit_start % 2 == 0 && unit_start + 1 < window.len() {
                        let other = if le { window[at + 1] } else { window[at - 1] };
                        if other == 0 {
                            return Some((unit_start, 2));
                        }
                    }
                    i = at + 1;
                }
                None
            }
        }
    }

    /// The next line, or `None` at the end.
    pub fn next_line(&mut self) -> Option<LineItem<'_>> {
        if self.done {
            return None;
        }
        let mut searched = 0;
        let mut skipping: Option<(u64, u64)> = None;
        loop {
            let window = self.scanner.window();
            if let Some((end, delim)) = self.find_break(window, searched) {
                self.number += 1;
                let offset = self.scanner.offset();
                if let Some((offset, number)) = skipping {
                    self.scanner.consume(end + delim);
                    return Some(LineItem::TooLong { offset, number });
                }
                if end > self.limit {
                    self.scanner.consume(end + delim);
                    return Some(LineItem::TooLong {
                        offset,
                        number: self.number,
                    });
                }
                let mut content = &window[..end];
                let cr: &[u8] = match self.encoding {
                    TextEncoding::Utf8 => b"\r",
                    TextEncoding::Utf16Le => b"\r\0",
                    TextEncoding::Utf16Be => b"\0\r",
                };
                if content.ends_with(cr) {
                    content = &content[..content.len() - cr.len()];
                }
                let (start, len) = (self.scanner.pos, content.len());
                self.scanner.consume(end + delim);
                let bytes = &self.scanner.buf[start..start + len];
                // Valid UTF-8 is lent straight from the buffer; the rest is decoded.
                let borrowed = match self.encoding {
                    TextEncoding::Utf8 => std::str::from_utf8(bytes).ok(),
                    _ => None,
                };
                let text = match borrowed {
                    Some(text) => text,
                    None => {
                        decode_into(bytes, self.encoding, &mut self.text);
                        &self.text
                    }
                };
                return Some(LineItem::Line(Line {
                    text,
                    offset,
                    number: self.number,
                }));
            }
            if window.len() > self.limit {
                // Too long: drop what we have and keep looking for the break.
                if skipping.is_none() {
                    skipping = Some((self.scanner.offset(), self.number + 1));
                }
                let keep = window.len() % 2;
                let drop = window.len() - keep;
                self.scanner.consume(drop);
                searched = 0;
            } else {
                searched = window.len();
            }
            match self.scanner.fill() {
                Ok(0) => {
                    self.done = true;
                    let window = self.scanner.window();
                    if let Some((offset, number)) = skipping {
                        self.number += 1;
                        return Some(LineItem::TooLong { offset, number });
                    }
                    if window.is_empty() {
                        return None;
                    }
                    self.number += 1;
                    let offset = self.scanner.offset();
                    if window.len() > self.limit {
                        let n = window.len();
                        self.scanner.consume(n);
                        return Some(LineItem::TooLong {
                            offset,
                            number: self.number,
                        });
                    }
                    let mut content = window;
                    if content.last() == Some(&b'\r') {
                        content = &content[..content.len() - 1];
                    }
                    decode_into(content, self.encoding, &mut self.text);
                    let n = window.len();
                    self.scanner.consume(n);
                    return Some(LineItem::Line(Line {
                        text: &self.text,
                        offset,
                        number: self.number,
                    }));
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(LineItem::Io(e));
                }
            }
        }
    }
}

/// A reader that turns UTF-16 into UTF-8 on the fly (UTF-8 passes through),
/// for the formats parsed by other crates (CSV, JSON documents).
pub struct Utf8Reader<R> {
    inner: R,
    encoding: TextEncoding,
    pending: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl<R: Read> Utf8Reader<R> {
    /// Wraps `inner`, whose bytes (after any BOM) are in `encoding`.
    pub fn new(inner: R, encoding: TextEncoding) -> Self {
        Utf8Reader {
            inner,
            encoding,
            pending: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
        }
    }
}

impl<R: Read> Read for Utf8Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.encoding == TextEncoding::Utf8 {
            return self.inner.read(buf);
        }
        while self.out_pos >= self.out.len() {
            let mut raw = [0u8; 64 * 1024];
            let n = self.inner.read(&mut raw)?;
            if n == 0 {
                if self.pending.is_empty() {
                    return Ok(0);
                }
                // A dangling odd byte or lone high surrogate at the end.
                self.pending.clear();
                self.out.clear();
                self.out.extend_from_slice("\u{FFFD}".as_bytes());
                self.out_pos = 0;
                break;
            }
            self.pending.extend_from_slice(&raw[..n]);
            let mut usable = self.pending.len() & !1;
            // Keep a trailing high surrogate for the next read.
            if usable >= 2 {
                let last = &self.pending[usable - 2..usable];
                let unit = if self.encoding == TextEncoding::Utf16Le {
                    u16::from_le_bytes([last[0], last[1]])
                } else {
                    u16::from_be_bytes([last[0], last[1]])
                };
                if (0xD800..0xDC00).contains(&unit) {
                    usable -= 2;
                }
            }
            let mut text = String::new();
            decode_into(&self.pending[..usable], self.encoding, &mut text);
            self.pending.drain(..usable);
            self.out.clear();
            self.out.extend_from_slice(text.as_bytes());
            self.out_pos = 0;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn lines(bytes: &[u8], enc: TextEncoding, limit: usize) -> Vec<String> {
        let mut reader = LineReader::new(bytes, 0, enc, limit);
        let mut out = Vec::new();
        while let Some(item) = reader.next_line() {
            out.push(match item {
                LineItem::Line(l) => format!("{}@{}#{}", l.text, l.offset, l.number),
                LineItem::TooLong { offset, number } => format!("LONG@{offset}#{number}"),
                LineItem::Io(e) => format!("IO {e}"),
            });
        }
        out
    }

    #[test]
    fn utf8_lines_with_offsets() {
        assert_eq!(
            lines(b"ab\r\ncd\nef", TextEncoding::Utf8, 100),
            ["ab@0#1", "cd@4#2", "ef@7#3"]
        );
        assert_eq!(
            lines(b"ab\nxxxxxxxxxx\ncd\n", TextEncoding::Utf8, 4),
            ["ab@0#1", "LONG@3#2", "cd@14#3"]
        );
    }

    #[test]
    fn utf16_lines_with_offsets() {
        let bytes = utf16le("ab\r\n\u{0A00}c\nd");
        assert_eq!(
            lines(&bytes, TextEncoding::Utf16Le, 100),
            ["ab@0#1", "\u{0A00}c@8#2", "d@14#3"]
        );
        let mut with_bom = vec![0xFF, 0xFE];
        with_bom.extend(utf16le("Log Name: x"));
        assert_eq!(sniff_encoding(&with_bom), (TextEncoding::Utf16Le, 2));
        assert_eq!(
            sniff_encoding(&utf16le("Log Name: x")).0,
            TextEncoding::Utf16Le
        );
        assert_eq!(sniff_encoding(b"Log Name: x").0, TextEncoding::Utf8);
    }

    #[test]
    fn transcoding_reader() {
        let bytes = utf16le("h\u{e9}llo \u{1F600} world");
        let mut out = String::new();
        Utf8Reader::new(&bytes[..], TextEncoding::Utf16Le)
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "h\u{e9}llo \u{1F600} world");
    }
}
