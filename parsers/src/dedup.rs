//! When two deliveries are the same event, and which copy to keep. The
//! index and the correlator both decide with these functions, so a record
//! exported twice (EVTX and a syslog relay, XML and an Event Viewer paste)
//! is one event to both, whatever order the copies arrive in.
//!
//! Keys are FNV-1a (the `fnv` crate): stable across Rust versions and
//! platforms, because index keys and incident ids derived from them are
//! stored.

use std::hash::Hasher;

use fnv::FnvHasher;

use crate::Event;

/// The host as keys use it: the short name, lower-cased.
fn host(event: &Event) -> String {
    event.short_host().to_ascii_lowercase()
}

/// The channel as keys use it: lower-cased, `/` as `-` (`…-VMMS/Admin` in
/// EVTX and `…-VMMS-Admin` in a file name or a relay are one channel).
pub fn channel(event: &Event) -> String {
    event
        .channel
        .chars()
        .map(|c| {
            if c == '/' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// FNV-1a over `parts`, each followed by a `0xff` separator byte.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = FnvHasher::default();
    for part in parts {
        h.write(part);
        h.write_u8(0xff);
    }
    h.finish()
}

/// Host + channel + record id, when the event has both a record id and a
/// channel: the identity of a record, whatever format carried it.
pub fn record_key(event: &Event) -> Option<u64> {
    let record = event.record_id.filter(|_| !event.channel.is_empty())?;
    Some(fnv1a(&[
        host(event).as_bytes(),
        channel(event).as_bytes(),
        &record.to_le_bytes(),
    ]))
}

/// Host + event id + second + message with white space runs as one space
/// and curly quotes straight: joins a copy without a record id (an Event
/// Viewer paste, a second-precision relay) to the exported record.
pub fn content_key(event: &Event) -> u64 {
    let mut h = FnvHasher::default();
    h.write(host(event).as_bytes());
    h.write_u32(event.event_id);
    h.write_i64(event.timestamp.timestamp());
    let mut space = true;
    let mut buf = [0u8; 4];
    for c in event.message.chars() {
        let c = match c {
            '\u{2018}' | '\u{2019}' => '\'',
            '\u{201c}' | '\u{201d}' => '"',
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' {
            if space {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        h.write(c.encode_utf8(&mut buf).as_bytes());
    }
    h.finish()
}

/// The index's key: `host|channel|record id`, or, for a format without
/// record ids, `host|channel|h` + a hash of the event id, the exact time
/// and the message (two identical lines in one second of a text log are
/// still two events to the index; the correlator's [`content_key`] is
/// coarser).
pub fn index_key(event: &Event) -> String {
    let host = host(event);
    let channel = channel(event);
    match event.record_id {
        Some(id) => format!("{host}|{channel}|{id}"),
        None => {
            let nanos = event
                .timestamp
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .to_le_bytes();
            let hash = fnv1a(&[
                host.as_bytes(),
                channel.as_bytes(),
                &event.event_id.to_le_bytes(),
                &nanos,
                event.message.as_bytes(),
            ]);
            format!("{host}|{channel}|h{hash:016x}")
        }
    }
}

/// How much a copy says; of two copies of one record the richer is kept
/// (ties: the first to arrive). In order of weight: data fields, the VM id
/// (read, not inferred), the rendered message, the VM name, a known zone,
/// an HRESULT, and last the timestamp's precision (an EVTX's 100 ns beats a
/// relay's microseconds beats a paste's seconds).
pub fn richness(event: &Event) -> u32 {
    let said = u32::from(event.vm_id.is_some()) * 64
        + u32::from(event.vm_id.is_some() && !event.vm_id_inferred) * 32
        + u32::from(!event.message.is_empty()) * 16
        + u32::from(event.vm_name.is_some()) * 8
        + u32::from(!event.zone_assumed) * 4
        + u32::from(event.hresult.is_some()) * 2
        + (own_fields(event) as u32).min(1000) * 256;
    said * 16 + subsecond_digits(event)
}

/// Data fields but `VmName`/`VmId`, which the ECS form adds when the VM was
/// read from the text (so a copy that went through an agent's ECS JSON
/// counts as the same copy read directly).
fn own_fields(event: &Event) -> usize {
    event
        .data
        .iter()
        .filter(|(name, _)| {
            *name != crate::event::ecs::VM_NAME && *name != crate::event::ecs::VM_ID
        })
        .count()
}

/// Significant sub-second digits of the timestamp (0 to 9).
fn subsecond_digits(event: &Event) -> u32 {
    let mut nanos = event.timestamp.timestamp_subsec_nanos() % 1_000_000_000;
    if nanos == 0 {
        return 0;
    }
    let mut digits = 9;
    while nanos.is_multiple_of(10) {
        nanos /= 10;
        digits -= 1;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn event(channel: &str, record: Option<u64>, nanos: u32, message: &str) -> Event {
        Event {
            host: "NODE-B.datawisetech.corp".into(),
            channel: channel.into(),
            event_id: 21502,
            record_id: record,
            message: message.into(),
            timestamp: Utc
                .timestamp_opt(1_538_055_404, nanos)
                .single()
                .expect("valid"),
            ..Event::default()
        }
    }

    #[test]
    fn one_record_in_two_exports_has_one_key() {
        let evtx = event(
            "Microsoft-Windows-Hyper-V-VMMS/Admin",
            Some(7),
            301_000_000,
            "x",
        );
        let relay = event(
            "microsoft-windows-hyper-v-vmms-admin",
            Some(7),
            301_000_000,
            "x",
        );
        assert_eq!(record_key(&evtx), record_key(&relay));
        assert_eq!(index_key(&evtx), index_key(&relay));
        assert_ne!(
            record_key(&evtx),
            record_key(&event("System", Some(7), 0, "x"))
        );
        assert_eq!(record_key(&event("", Some(7), 0, "x")), None);
    }

    #[test]
    fn a_paste_joins_its_record_by_content() {
        let evtx = event(
            "Microsoft-Windows-Hyper-V-VMMS/Admin",
            Some(7),
            301_234_500,
            "Live  migration \u{2018}A\u{2019} failed",
        );
        let paste = event("", None, 0, "Live migration 'A' failed");
        assert_eq!(content_key(&evtx), content_key(&paste));
        assert_ne!(index_key(&evtx), index_key(&paste));
        assert_ne!(
            content_key(&paste),
            content_key(&event("", None, 0, "Live migration 'B' failed"))
        );
    }

    #[test]
    fn the_more_precise_copy_is_richer_when_nothing_else_differs() {
        let evtx = event("c", Some(7), 861_882_900, "m");
        let relay = event("c", Some(7), 861_882_000, "m");
        let paste = event("c", Some(7), 0, "m");
        assert!(richness(&evtx) > richness(&relay));
        assert!(richness(&relay) > richness(&paste));
        let mut with_vm = paste.clone();
        with_vm.vm_name = Some("A".into());
        assert!(
            richness(&with_vm) > richness(&evtx),
            "what a copy says outweighs precision"
        );
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; a part adds the 0xff separator.
        let mut h = FnvHasher::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut h = FnvHasher::default();
        h.write(b"a");
        h.write_u8(0xff);
        assert_eq!(fnv1a(&[b"a"]), h.finish());
    }
}
