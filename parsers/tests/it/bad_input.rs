//! Bad input gets a clear error with its position, the rest still parses,
//! memory stays bounded, and nothing panics.

use std::io::Read;

use parsers::{Format, ParseOptions, ParseOutput, Reason};

use crate::{parse_str, samples_real};

/// A reader of `len` bytes of one repeated byte, generated on the fly.
struct Repeat {
    byte: u8,
    left: u64,
}

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(self.byte);
        self.left -= n as u64;
        Ok(n)
    }
}

/// This process's peak resident memory so far, in MiB (each test runs in
/// a process of its own under nextest).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// What "bounded" means here: far below the input's size.
const BOUND_MIB: u64 = 160;

#[test]
fn binary_garbage_is_an_unknown_format() {
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let out = parsers::parse_bytes(&garbage, &ParseOptions::default());
    assert!(out.events.is_empty());
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].reason, Reason::UnknownFormat);
    assert!(!out.errors[0].can_continue);
}

#[test]
fn binary_garbage_forced_through_every_format_does_not_panic() {
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for format in Format::ALL {
        let opts = ParseOptions {
            format: Some(format),
            ..ParseOptions::default()
        };
        let _ = parsers::parse_bytes(&garbage, &opts);
    }
}

#[test]
fn a_one_gigabyte_line_without_a_newline_is_skipped_in_bounded_memory() {
    let first = b"{\"@timestamp\":\"2018-09-27T13:36:44Z\"}\n";
    let mut reader = std::io::Cursor::new(first.to_vec())
        .chain(Repeat {
            byte: b'a',
            left: 1 << 30,
        })
        .chain(std::io::Cursor::new(
            b"\n{\"@timestamp\":\"2018-09-27T13:36:45Z\"}\n".to_vec(),
        ));
    let opts = ParseOptions {
        format: Some(Format::EcsJson),
        max_record_bytes: 1 << 20,
        ..ParseOptions::default()
    };
    let mut out = ParseOutput::default();
    parsers::parse_reader(&mut reader, Some("big.json"), &opts, &mut out);
    assert_eq!(out.events.len(), 2);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].reason, Reason::TooLong { limit: 1 << 20 });
    assert_eq!(out.errors[0].line, Some(2));
    assert_eq!(out.errors[0].offset, first.len() as u64);
    assert_eq!(
        out.events[1].origin.offset,
        first.len() as u64 + (1 << 30) + 1
    );
    let peak = peak_rss_mib();
    assert!(
        peak > 0 && peak < BOUND_MIB,
        "peak RSS {peak} MiB for a 1 GiB line"
    );
}

#[test]
fn a_huge_csv_field_stops_with_a_clear_error() {
    let header = b"\"Message\",\"Id\",\"ProviderName\",\"TimeCreated\"\n\"".to_vec();
    let mut reader = std::io::Cursor::new(header).chain(Repeat {
        byte: b'x',
        left: 64 << 20,
    });
    let opts = ParseOptions {
        max_record_bytes: 1 << 20,
        ..ParseOptions::default()
    };
    let mut out = ParseOutput::default();
    parsers::parse_reader(&mut reader, Some("huge.csv"), &opts, &mut out);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(!out.errors[0].can_continue);
    assert!(
        out.errors[0].to_string().contains("longer than"),
        "{}",
        out.errors[0]
    );
}

#[test]
fn invalid_utf16_is_replaced_not_fatal() {
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend("Log Name:      System\r\nSource:        S\r\nDate:          9/27/2018 15:36:44\r\nEvent ID:      1\r\nLevel:         Error\r\nComputer:      H\r\nDescription:\r\nbad ".encode_utf16().flat_map(u16::to_le_bytes));
    bytes.extend([0x00, 0xD8, 0x41, 0x00]); // lone high surrogate, then 'A'
    bytes.extend("\r\n".encode_utf16().flat_map(u16::to_le_bytes));
    bytes.push(0x41); // odd trailing byte
    let out = parsers::parse_bytes(&bytes, &ParseOptions::default());
    assert_eq!(out.events.len(), 1, "{:?}", out.errors);
    assert!(out.events[0].message.contains('\u{FFFD}'));
}

#[test]
fn truncated_and_damaged_evtx_files() {
    let bytes = std::fs::read(samples_real().join("evtx/omerbenamram-evtx__system.evtx")).unwrap();
    // Cut in the middle of a chunk.
    let cut = &bytes[..4096 + 3 * 65536 + 30_000];
    let out = parsers::parse_bytes(cut, &ParseOptions::default());
    assert!(out.events.len() > 300, "{}", out.events.len());
    // Header only.
    let out = parsers::parse_bytes(&bytes[..4096], &ParseOptions::default());
    assert!(out.events.is_empty());
    // A damaged header: records are still found chunk by chunk.
    let mut damaged = bytes.clone();
    damaged[8..120].fill(0xAA);
    let out = parsers::parse_bytes(&damaged, &ParseOptions::default());
    assert_eq!(out.events.len(), 1881, "{:?}", out.errors.first());
    // The magic alone.
    let out = parsers::parse_bytes(b"ElfFile\0", &ParseOptions::default());
    assert!(out.events.is_empty());
    assert_eq!(out.errors.len(), 1);
    assert!(!out.errors[0].can_continue);
}

#[test]
fn unreadable_path_is_an_error_not_a_panic() {
    let mut out = ParseOutput::default();
    parsers::parse_path(
        std::path::Path::new("/nonexistent/relive.evtx"),
        &ParseOptions::default(),
        &mut out,
    );
    assert_eq!(out.errors.len(), 1);
    assert!(matches!(out.errors[0].reason, Reason::Io(_)));
    assert!(out.errors[0]
        .to_string()
        .starts_with("/nonexistent/relive.evtx"));
}

#[test]
fn empty_input_yields_nothing() {
    let out = parse_str("");
    assert!(out.events.is_empty() && out.errors.is_empty());
    let out = parse_str("\n\n   \n");
    assert!(out.events.is_empty());
}

#[test]
fn a_ten_gigabyte_file_without_line_breaks_is_read_in_bounded_memory() {
    // A sparse file: 10 GiB of zero bytes that take no disk space.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("NODE-A_cluster.log");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(10 << 30).unwrap();
    drop(file);
    // Detection sees no known format and stops at once.
    let mut out = ParseOutput::default();
    parsers::parse_path(&path, &ParseOptions::default(), &mut out);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].reason, Reason::UnknownFormat);
    // Forced through the line reader, the whole file is read and skipped as one line.
    let opts = ParseOptions {
        format: Some(Format::ClusterLog),
        max_record_bytes: 1 << 20,
        ..ParseOptions::default()
    };
    let mut out = ParseOutput::default();
    let summary = parsers::parse_path(&path, &opts, &mut out);
    assert_eq!(summary.events, 0);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].reason, Reason::TooLong { limit: 1 << 20 });
    assert_eq!(out.errors[0].offset, 0);
    let peak = peak_rss_mib();
    assert!(
        peak > 0 && peak < BOUND_MIB,
        "peak RSS {peak} MiB for a 10 GiB file"
    );
}

#[test]
fn fuzz_crashes_stay_fixed() {
    // See: inputs that crashed a fuzz target (parsers/tests/data/fuzz/).
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for format in Format::ALL.into_iter().map(Some).chain([None]) {
            let opts = ParseOptions {
                format,
                max_record_bytes: 64 * 1024,
                year: Some(2026),
                ..ParseOptions::default()
            };
            let _ = parsers::parse_bytes(&bytes, &opts);
        }
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn an_evtx_stream_is_read_through_a_temporary_file_like_the_file_itself() {
    let path = samples_real().join("evtx/dfirmuseum-belkasoft__System.evtx");
    let mut from_file = ParseOutput::default();
    parsers::parse_path(&path, &ParseOptions::default(), &mut from_file);
    let mut from_stream = ParseOutput::default();
    let summary = parsers::parse_reader(
        std::fs::File::open(&path).unwrap(),
        Some("-"),
        &ParseOptions::default(),
        &mut from_stream,
    );
    assert_eq!(summary.format, Some(Format::Evtx));
    assert!(!from_file.events.is_empty());
    assert_eq!(from_stream.events.len(), from_file.events.len());
    assert_eq!(from_stream.errors.len(), from_file.errors.len());
    let ids = |o: &ParseOutput| {
        o.events
            .iter()
            .map(|e| (e.record_id, e.event_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&from_stream), ids(&from_file));
    // Nothing is left in the temporary folder.
    let left = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("relive-stdin-{}-", std::process::id()))
        })
        .count();
    assert_eq!(left, 0);
}
