//! The real seed chain (Event Viewer text pasted into a blog) and the
//! Hyper-V XML examples from EvtxECmd's maps.

use parsers::{Format, Level, LocalZone, ParseOptions};

use crate::{parse_file, samples_real, utf16le_bom};

const VM_ID: &str = "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7";

struct Want {
    host: &'static str,
    channel: &'static str,
    provider: &'static str,
    event_id: u32,
    local: &'static str,
    inferred: bool,
}

const SEED: [Want; 7] = [
    Want {
        host: "NODE-B.datawisetech.corp",
        channel: "System",
        provider: "Microsoft-Windows-Hyper-V-High-Availability",
        event_id: 21502,
        local: "2018-09-27 15:36:44",
        inferred: false,
    },
    Want {
        host: "NODE-A.datawisetech.corp",
        channel: "Microsoft-Windows-Hyper-V-VMMS-Admin",
        provider: "Microsoft-Windows-Hyper-V-VMMS",
        event_id: 21066,
        local: "2018-09-27 15:36:45",
        inferred: false,
    },
    Want {
        host: "NODE-A.datawisetech.corp",
        channel: "Microsoft-Windows-Hyper-V-VMMS-Operational",
        provider: "Microsoft-Windows-Hyper-V-VMMS",
        event_id: 1106,
        local: "2018-09-27 15:36:45",
        inferred: true,
    },
    Want {
        host: "NODE-B.datawisetech.corp",
        channel: "Microsoft-Windows-Hyper-V-Worker-Operational",
        provider: "Microsoft-Windows-Hyper-V-Worker",
        event_id: 1840,
        local: "2018-09-27 15:36:44",
        inferred: false,
    },
    Want {
        host: "NODE-B.datawisetech.corp",
        channel: "Microsoft-Windows-Hyper-V-High-Availability-Admin",
        provider: "Microsoft-Windows-Hyper-V-High-Availability",
        event_id: 21111,
        local: "2018-09-27 15:36:44",
        inferred: true,
    },
    Want {
        host: "NODE-B.datawisetech.corp",
        channel: "Microsoft-Windows-Hyper-V-VMMS-Admin",
        provider: "Microsoft-Windows-Hyper-V-VMMS",
        event_id: 21066,
        local: "2018-09-27 15:36:44",
        inferred: false,
    },
    Want {
        host: "NODE-B.datawisetech.corp",
        channel: "Microsoft-Windows-Hyper-V-VMMS-Admin",
        provider: "Microsoft-Windows-Hyper-V-VMMS",
        event_id: 21024,
        local: "2018-09-27 15:36:44",
        inferred: false,
    },
];

fn check_seed(out: &parsers::ParseOutput) {
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.events.len(), 7);
    for (e, want) in out.events.iter().zip(SEED.iter()) {
        let ctx = format!("event {} on {}", want.event_id, want.host);
        assert_eq!(e.host, want.host, "{ctx}");
        assert_eq!(e.channel, want.channel, "{ctx}");
        assert_eq!(e.provider, want.provider, "{ctx}");
        assert_eq!(e.event_id, want.event_id, "{ctx}");
        assert_eq!(e.level, Level::Error, "{ctx}");
        assert_eq!(e.origin.format, Some(Format::ViewerText));
        // The blog's hosts run UTC+2: local 15:36 is 13:36 UTC.
        let local = (e.timestamp + chrono::Duration::hours(2))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(local, want.local, "{ctx}");
        assert!(e.zone_assumed, "{ctx}");
        assert_eq!(e.vm_id.as_deref(), Some(VM_ID), "{ctx}");
        assert_eq!(e.vm_id_inferred, want.inferred, "{ctx}");
    }
    let e21502 = &out.events[0];
    assert_eq!(e21502.vm_name.as_deref(), Some("ADFS1"));
    assert_eq!(e21502.hresult.as_deref(), Some("0x80070002"));
    assert_eq!(e21502.message.lines().count(), 3);
    assert_eq!(out.events[3].hresult.as_deref(), Some("0x80042001"));
    assert_eq!(out.events[2].hresult.as_deref(), Some("0x80070002"));
    assert_eq!(out.events[4].vm_name.as_deref(), Some("ADFS1"));
}

fn plus_two() -> ParseOptions {
    ParseOptions {
        local_zone: "+02:00".parse::<LocalZone>().unwrap(),
        ..ParseOptions::default()
    }
}

#[test]
fn seed_chain_parses_into_seven_events() {
    let path = samples_real().join("text/seed-workinghardinit-sharedstoragepath-chain.txt");
    check_seed(&parse_file(&path, &plus_two()));
}

#[test]
fn seed_chain_as_utf16_crlf_gives_the_same_events() {
    let path = samples_real().join("text/seed-workinghardinit-sharedstoragepath-chain.txt");
    let text = std::fs::read_to_string(path).unwrap().replace('\n', "\r\n");
    let out = parsers::parse_bytes(&utf16le_bom(&text), &plus_two());
    check_seed(&out);
    // Offsets are in the original UTF-16 bytes: each block starts at `L\0o\0g\0`.
    let bytes = utf16le_bom(&text);
    for e in &out.events {
        let at = e.origin.offset as usize;
        assert_eq!(&bytes[at..at + 6], b"L\0o\0g\0", "offset {at}");
    }
}

#[test]
fn hyperv_xml_examples_take_vm_from_user_data() {
    let path = samples_real().join("text/ezmaps-hyperv-vmms-worker-events.xml");
    let out = parse_file(&path, &ParseOptions::default());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.events.len(), 10);
    let ids: Vec<u32> = out.events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids,
        [13002, 18304, 13003, 18303, 18500, 18502, 18504, 18508, 18512, 18514]
    );
    for e in &out.events {
        assert!(e.vm_name.is_some(), "{} has no VmName", e.event_id);
        let id = e
            .vm_id
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no VmId", e.event_id));
        assert_eq!(id, id.to_ascii_uppercase());
        assert_eq!(e.data.get("VmName").map(str::trim), e.vm_name.as_deref());
        assert!(!e.vm_id_inferred);
        assert!(!e.zone_assumed, "EvtxECmd's SystemTime is UTC");
    }
    let e18504 = out.events.iter().find(|e| e.event_id == 18504).unwrap();
    assert!(e18504.data.get("Reason").is_some());
}
