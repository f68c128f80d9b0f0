//! Property tests: ECS JSON written by relive reads back to the same event,
//! and no parser panics on arbitrary or mutated input.

use chrono::{DateTime, Utc};
use parsers::{Event, Fields, Format, Level, ParseOptions};
use proptest::prelude::*;

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        Just(Level::Critical),
        Just(Level::Error),
        Just(Level::Warning),
        Just(Level::Information),
        Just(Level::Verbose),
    ]
}

prop_compose! {
    fn event()(
        nanos in 0i64..4_000_000_000_000_000_000,
        zone_assumed in any::<bool>(),
        host in "[A-Za-z0-9.-]{0,30}",
        channel in "[A-Za-z0-9 /-]{0,40}",
        provider in "[A-Za-z0-9 -]{0,40}",
        event_id in any::<u32>(),
        level in level(),
        record_id in proptest::option::of(any::<u64>()),
        message in "\\PC{0,200}",
        version in proptest::option::of(any::<u8>()),
        message_rendered in any::<bool>(),
        data in proptest::collection::vec(("[A-Za-z][A-Za-z0-9_]{0,12}", "\\PC{0,40}"), 0..6),
    ) -> Event {
        let mut fields = Fields::new();
        for (name, value) in data {
            fields.insert(name, value);
        }
        Event {
            timestamp: DateTime::<Utc>::from_timestamp_nanos(nanos),
            zone_assumed,
            host: host.into(),
            channel: channel.into(),
            provider: provider.into(),
            event_id,
            version,
            level,
            record_id,
            message,
            message_rendered,
            data: fields,
            ..Event::default()
        }
    }
}

prop_compose! {
    /// Any event at all: control bytes, quotes and non-ASCII in every string,
    /// times from year -2 to 30828, every optional part present or not.
    fn any_event()(
        seconds in -62_230_000_000i64..910_000_000_000,
        nanos in 0u32..1_000_000_000,
        zone_assumed in any::<bool>(),
        strings in proptest::collection::vec(any::<String>(), 3),
        event_id in any::<u32>(),
        level in level(),
        record_id in proptest::option::of(any::<u64>()),
        message in any::<String>(),
        data in proptest::collection::vec((prop_oneof![Just("VmName".to_string()), Just("VmId".to_string()), any::<String>()], any::<String>()), 0..6),
        vm in (proptest::option::of(any::<String>()), proptest::option::of(any::<String>()), any::<bool>()),
        hresult in proptest::option::of(any::<String>()),
        version in proptest::option::of(any::<u8>()),
        message_rendered in any::<bool>(),
        origin in (proptest::option::of(any::<String>()), any::<u64>(), proptest::option::of(0usize..14)),
    ) -> Event {
        let mut fields = Fields::new();
        for (name, value) in data {
            fields.push(name, value);
        }
        Event {
            timestamp: DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap_or_default(),
            zone_assumed,
            host: strings[0].as_str().into(),
            channel: strings[1].as_str().into(),
            provider: strings[2].as_str().into(),
            event_id,
            version,
            level,
            record_id,
            vm_name: vm.0.map(Into::into),
            vm_id: vm.1.map(Into::into),
            vm_id_inferred: vm.2,
            hresult: hresult.map(Into::into),
            message,
            message_rendered,
            data: fields,
            origin: parsers::Origin {
                path: origin.0.map(Into::into),
                offset: origin.1,
                format: origin.2.and_then(|i| Format::ALL.get(i).copied()),
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The hand-written ECS JSON writer gives the bytes serde gives.
    #[test]
    fn written_json_equals_the_serde_form(e in any_event()) {
        let mut ours = Vec::new();
        e.write_json(&mut ours);
        let serde = serde_json::to_vec(&e).unwrap();
        prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
    }

    #[test]
    fn ecs_json_round_trips(e in event()) {
        let first = e.to_json();
        let out = parsers::parse_bytes(format!("{first}\n").as_bytes(), &ParseOptions::default());
        prop_assert!(out.errors.is_empty(), "{:?}\n{}", out.errors, first);
        prop_assert_eq!(out.events.len(), 1);
        let back = &out.events[0];
        prop_assert_eq!(back.timestamp, e.timestamp);
        prop_assert_eq!(back.event_id, e.event_id);
        prop_assert_eq!(back.level, e.level);
        prop_assert_eq!(back.record_id, e.record_id);
        prop_assert_eq!(&back.message, &e.message);
        prop_assert_eq!(&back.host, &e.host);
        prop_assert_eq!(back.zone_assumed, e.zone_assumed);
        for (name, value) in e.data.iter() {
            prop_assert_eq!(back.data.get(name), Some(value));
        }
        // Writing it again gives the same bytes, apart from where it came from.
        let mut again = back.clone();
        again.origin = e.origin.clone();
        let mut original = e.clone();
        parsers::extract::enrich(&mut original);
        let mut reparsed = again.clone();
        reparsed.vm_id_inferred = original.vm_id_inferred;
        prop_assert_eq!(reparsed.to_json(), original.to_json());
    }

    #[test]
    fn no_format_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096), pick in 0usize..14) {
        let format = Format::ALL.get(pick).copied();
        let opts = ParseOptions { format, max_record_bytes: 1024, year: Some(2026), ..ParseOptions::default() };
        let _ = parsers::parse_bytes(&bytes, &opts);
    }

    #[test]
    fn mutated_real_samples_do_not_panic(seed_pick in 0usize..4, cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..20), truncate in any::<prop::sample::Index>()) {
        let seeds = seed_texts();
        let mut bytes = seeds[seed_pick % seeds.len()].clone();
        for (at, byte) in cuts {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let keep = truncate.index(bytes.len() + 1);
        bytes.truncate(keep.max(1));
        let _ = parsers::parse_bytes(&bytes, &ParseOptions::default());
    }
}

fn seed_texts() -> Vec<Vec<u8>> {
    let real = crate::samples_real();
    let samples = crate::samples();
    vec![
        std::fs::read(real.join("text/seed-workinghardinit-sharedstoragepath-chain.txt")).unwrap(),
        std::fs::read(real.join("text/ezmaps-hyperv-vmms-worker-events.xml")).unwrap(),
        std::fs::read(real.join("evtx/omerbenamram-evtx__Application_no_crc32.evtx")).unwrap(),
        first_file_with(&samples, "cluster.log"),
    ]
}

fn first_file_with(dir: &std::path::Path, suffix: &str) -> Vec<u8> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                return std::fs::read(p).unwrap();
            }
        }
    }
    panic!("no {suffix} under {}", dir.display())
}

/// Every event of every sample file, written as ECS JSON (what an agent
/// ships) and read back, is the same event to dedup: same keys, same
/// richness. Otherwise which copy of a record is kept would depend on
/// whether it came through an agent.
#[test]
fn dedup_sees_an_event_and_its_ecs_json_alike() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("md" | "py") | None
            ) && path.file_name() != Some(std::ffi::OsStr::new("expected.json"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut compared = 0;
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let out = parsers::parse_bytes(&bytes, &ParseOptions::default());
        for e in out.events {
            let line = e.to_json();
            let back =
                parsers::parse_bytes(format!("{line}\n").as_bytes(), &ParseOptions::default());
            assert_eq!(back.events.len(), 1, "{}: {line}", file.display());
            let b = &back.events[0];
            use parsers::dedup::*;
            assert_eq!(record_key(b), record_key(&e), "{}: {line}", file.display());
            assert_eq!(
                content_key(b),
                content_key(&e),
                "{}: {line}",
                file.display()
            );
            assert_eq!(index_key(b), index_key(&e), "{}: {line}", file.display());
            assert_eq!(richness(b), richness(&e), "{}: {line}", file.display());
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared}");
}
