//! Every real EVTX file parses to the record count `evtx_dump` 0.15.1 finds
//! (manifest.json), and spot-checked fields match python-evtx 0.8.1, a
//! second, independent reader (values read with it on 2026-11-23).

use std::collections::BTreeMap;

use parsers::{Format, Level, ParseOptions};

use crate::{parse_file, samples_real};

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(samples_real().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn record_counts_match_evtx_dump() {
    let manifest = manifest();
    let files = manifest.as_object().unwrap();
    assert_eq!(files.len(), 9);
    for (name, entry) in files {
        let want_records = entry["evtx_dump_0_15_1"]["records"].as_u64().unwrap();
        let want_errors = entry["evtx_dump_0_15_1"]["errors"].as_u64().unwrap();
        let out = parse_file(
            &samples_real().join("evtx").join(name),
            &ParseOptions::default(),
        );
        assert_eq!(out.events.len() as u64, want_records, "{name}: records");
        assert_eq!(
            out.errors.len() as u64,
            want_errors,
            "{name}: errors {:?}",
            out.errors
        );
        assert!(out
            .events
            .iter()
            .all(|e| e.origin.format == Some(Format::Evtx)));
    }
}

#[test]
fn damaged_file_reports_each_lost_chunk_with_its_offset() {
    let path = samples_real().join("evtx/omerbenamram-evtx__sample_with_a_bad_chunk_magic.evtx");
    let out = parse_file(&path, &ParseOptions::default());
    let mut offsets: Vec<u64> = out.errors.iter().map(|e| e.offset).collect();
    offsets.sort();
    // Chunks 6 and 10 (4096 + n * 65536) and the record at file offset 0x73060.
    assert_eq!(offsets, [4096 + 6 * 65536, 0x73060, 4096 + 10 * 65536]);
    assert!(out
        .errors
        .iter()
        .all(|e| e.can_continue && e.path.is_some()));
    let ids: std::collections::BTreeSet<_> = out.events.iter().map(|e| e.record_id).collect();
    assert_eq!(ids.len(), out.events.len(), "record ids are unique");
}

#[test]
fn dirty_header_file_reads_every_chunk_and_counts_by_event_id() {
    let path = samples_real().join("evtx/dfirmuseum-win2012r2-stolenszechuan__System.evtx");
    let out = parse_file(&path, &ParseOptions::default());
    assert_eq!(out.events.len(), 60_189);
    let mut ids: Vec<u64> = out.events.iter().filter_map(|e| e.record_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60_189);
    assert_eq!((ids[0], ids[ids.len() - 1]), (1, 60_189));
    // Top event ids per provider, as the manifest lists them (pyevtx-rs).
    let manifest = manifest();
    let want = manifest["dfirmuseum-win2012r2-stolenszechuan__System.evtx"]
        ["evtx_rust_crate_via_pyevtx_rs"]["top_event_ids"]
        .as_object()
        .unwrap();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for e in &out.events {
        *counts
            .entry(format!("{}/{}", e.provider, e.event_id))
            .or_default() += 1;
    }
    for (key, n) in want {
        assert_eq!(counts.get(key).copied(), n.as_u64(), "{key}");
    }
}

struct Spot {
    file: &'static str,
    record_id: u64,
    host: &'static str,
    channel: &'static str,
    provider: &'static str,
    event_id: u32,
    time_micros: &'static str,
}

const SPOTS: [Spot; 8] = [
    Spot {
        file: "dfirmuseum-win2012r2-stolenszechuan__System.evtx",
        record_id: 1,
        host: "WIN-HRJHA99CCDO",
        channel: "System",
        provider: "Service Control Manager",
        event_id: 7036,
        time_micros: "2014-03-21T19:14:08.901726",
    },
    Spot {
        file: "dfirmuseum-win2012r2-stolenszechuan__System.evtx",
        record_id: 500,
        host: "WIN-E0PO207ERMD",
        channel: "System",
        provider: "Service Control Manager",
        event_id: 7036,
        time_micros: "2020-09-17T17:03:41.635860",
    },
    Spot {
        file: "dfirmuseum-belkasoft__Microsoft-Windows-Hyper-V-Guest-Drivers%4Admin.evtx",
        record_id: 1,
        host: "WIN-AN5B2T7E4GI",
        channel: "Microsoft-Windows-Hyper-V-Guest-Drivers/Admin",
        provider: "Microsoft-Windows-Hyper-V-Guest-Drivers-Storage-Filter",
        event_id: 3,
        time_micros: "2020-08-01T21:47:55.703291",
    },
    Spot {
        file: "dfirmuseum-belkasoft__Microsoft-Windows-Hyper-V-Guest-Drivers%4Admin.evtx",
        record_id: 72,
        host: "DESKTOP-23PS6ES.praivacymatrix.com",
        channel: "Microsoft-Windows-Hyper-V-Guest-Drivers/Admin",
        provider: "Microsoft-Windows-Hyper-V-Guest-Drivers-Dynamic-Memory",
        event_id: 102,
        time_micros: "2021-02-14T02:32:48.253710",
    },
    Spot {
        file: "dfirmuseum-server2022-aptsim__System.evtx",
        record_id: 1,
        host: "WIN-FUDU2CKJOE8",
        channel: "System",
        provider: "EventLog",
        event_id: 6009,
        time_micros: "2023-10-18T05:43:49.832741",
    },
    Spot {
        file: "dfirmuseum-server2022-aptsim__System.evtx",
        record_id: 100,
        host: "WIN-FUDU2CKJOE8",
        channel: "System",
        provider: "Service Control Manager",
        event_id: 7026,
        time_micros: "2023-10-18T05:43:50.707779",
    },
    Spot {
        file: "omerbenamram-evtx__Application_no_crc32.evtx",
        record_id: 426,
        host: "DESKTOP-0HIJB49",
        channel: "Application",
        provider: "SecurityCenter",
        event_id: 1,
        time_micros: "2021-03-31T23:51:45.018768",
    },
    Spot {
        file: "omerbenamram-evtx__Application_no_crc32.evtx",
        record_id: 442,
        host: "DESKTOP-0HIJB49",
        channel: "Application",
        provider: "Microsoft-Windows-WMI",
        event_id: 5617,
        time_micros: "2021-03-31T23:54:34.704884",
    },
];

#[test]
fn spot_checked_fields_match_a_second_reader() {
    let mut cache: BTreeMap<&str, parsers::ParseOutput> = BTreeMap::new();
    for spot in &SPOTS {
        let out = cache.entry(spot.file).or_insert_with(|| {
            parse_file(
                &samples_real().join("evtx").join(spot.file),
                &ParseOptions::default(),
            )
        });
        let e = out
            .events
            .iter()
            .find(|e| e.record_id == Some(spot.record_id))
            .unwrap_or_else(|| panic!("{} record {}", spot.file, spot.record_id));
        assert_eq!(e.host, spot.host);
        assert_eq!(e.channel, spot.channel);
        assert_eq!(e.provider, spot.provider);
        assert_eq!(e.event_id, spot.event_id);
        assert_eq!(e.level, Level::Information);
        let micros = e.timestamp.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
        // python-evtx rounds to microseconds; the crate keeps 100 ns.
        let diff = (chrono::NaiveDateTime::parse_from_str(&micros, "%Y-%m-%dT%H:%M:%S%.6f")
            .unwrap()
            - chrono::NaiveDateTime::parse_from_str(spot.time_micros, "%Y-%m-%dT%H:%M:%S%.6f")
                .unwrap())
        .num_microseconds()
        .unwrap()
        .abs();
        assert!(diff <= 1, "{}: {micros} vs {}", spot.file, spot.time_micros);
        assert!(!e.zone_assumed);
    }
}

#[test]
fn forwarded_event_with_string_values_and_unnamed_data() {
    let path = samples_real().join("evtx/omerbenamram-evtx__MSExchange_Management_wec.evtx");
    let out = parse_file(&path, &ParseOptions::default());
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    // The XML EventRecordID (3229), not the record header's id (1).
    assert_eq!(e.record_id, Some(3229));
    assert_eq!(e.host, "WEC.ave.local");
    assert_eq!(e.channel, "MSExchange Management");
    assert_eq!(e.event_id, 1);
    // Unnamed <Data> become param1..paramN in order (Winlogbeat's naming).
    assert_eq!(e.data.len(), 27, "{:?}", e.data);
    assert_eq!(e.data.get("param1"), Some("Set-Mailbox"));
    assert_eq!(e.data.get("param27"), Some("fr-FR"));
    assert!(e.data.get("param11").unwrap().contains("forêt entière"));
}

#[test]
fn guest_driver_events_keep_named_data() {
    let path = samples_real()
        .join("evtx/dfirmuseum-belkasoft__Microsoft-Windows-Hyper-V-Guest-Drivers%4Admin.evtx");
    let out = parse_file(&path, &ParseOptions::default());
    let storage = out.events.iter().find(|e| e.event_id == 3).unwrap();
    assert!(storage.data.get("Location").is_some(), "{:?}", storage.data);
    assert!(storage.data.get("NTStatus").is_some());
    assert_eq!(storage.data.get("NTStatus"), Some("0x0"));
    let memory = out.events.iter().find(|e| e.event_id == 101).unwrap();
    assert_eq!(
        memory.data.get("SupportsHotAdd"),
        Some("true"),
        "{:?}",
        memory.data
    );
    assert_eq!(memory.data.len(), 7);
}

#[test]
fn each_record_points_at_its_record_header_in_the_file() {
    let path = samples_real().join("evtx/omerbenamram-evtx__system.evtx");
    let bytes = std::fs::read(&path).unwrap();
    let out = parse_file(&path, &ParseOptions::default());
    assert_eq!(out.events.len(), 1881);
    for e in &out.events {
        let at = e.origin.offset as usize;
        assert!(at >= 4096 + 512, "offset {at}");
        // A record header: magic `**\0\0`, size, record id, time.
        assert_eq!(&bytes[at..at + 4], b"**\0\0", "offset {at}");
        let id = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        assert_eq!(Some(id), e.record_id, "offset {at}");
    }
}
