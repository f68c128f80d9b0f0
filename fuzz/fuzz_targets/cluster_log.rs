#![no_main]
//! Fuzzes the cluster_log parser: any bytes must yield events and errors, never a panic.

use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    if data.len() < 4 {
        return Corpus::Reject;
    }
    let options = parsers::ParseOptions {
        format: Some(parsers::Format::ClusterLog),
        max_record_bytes: 64 * 1024,
        evtx_threads: 1,
        year: Some(2026),
        ..parsers::ParseOptions::default()
    };
    let out = parsers::parse_bytes(data, &options);
    for event in &out.events {
        let _ = event.to_json();
    }
    Corpus::Keep
});
