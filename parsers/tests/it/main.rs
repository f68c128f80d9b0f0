//! Integration tests of the parsers against real public logs
//! (`../shared/samples-real`), the shipped scenarios (`samples/`) and
//! generated inputs.

mod bad_input;
mod formats;
mod real_evtx;
mod real_text;
mod roundtrip;
mod samples;

use std::path::PathBuf;

use parsers::{Event, ParseOptions, ParseOutput};

/// `shared/samples-real` next to the repository.
pub fn samples_real() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        here.join("../../shared/samples-real"),
        here.join("../../../shared/samples-real"),
    ];
    candidates
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .unwrap_or_else(|| panic!("shared/samples-real not found near {}", here.display()))
}

/// The repository's `samples/`.
pub fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

pub fn parse_file(path: &std::path::Path, opts: &ParseOptions) -> ParseOutput {
    let mut out = ParseOutput::default();
    parsers::parse_path(path, opts, &mut out);
    out
}

pub fn parse_str(text: &str) -> ParseOutput {
    parsers::parse_bytes(text.as_bytes(), &ParseOptions::default())
}

pub fn one(text: &str) -> Event {
    let out = parse_str(text);
    assert!(out.errors.is_empty(), "errors: {:?}", out.errors);
    assert_eq!(out.events.len(), 1, "events: {:?}", out.events);
    out.events.into_iter().next().unwrap()
}

pub fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}
