//! The ECS JSON line of an [`Event`], written by hand: the same bytes as the
//! `serde` form ([`Event`]'s `Serialize`, which the tests compare it with),
//! at a fraction of the cost, since `relive parse --json` and the agent write
//! one per event. Strings are escaped eight bytes at a time: a word with no
//! quote, backslash or control byte is copied as it is.

use std::cell::RefCell;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::event::{ecs, Event};

/// Appends the ECS JSON of `event` (no trailing newline) to `out`.
pub(crate) fn write_event(event: &Event, out: &mut Vec<u8>) {
    out.reserve(320 + event.message.len());
    out.extend_from_slice(b"{\"@timestamp\":\"");
    write_rfc3339(event.timestamp, out);
    out.extend_from_slice(b"\",\"event\":{\"code\":\"");
    let mut number = itoa::Buffer::new();
    let id = number.format(event.event_id).as_bytes();
    out.extend_from_slice(id);
    out.extend_from_slice(b"\"},\"host\":{\"name\":");
    let host = out.len();
    write_str(&event.host, out);
    let host = host..out.len();
    out.extend_from_slice(b"},\"winlog\":{\"channel\":");
    write_str(&event.channel, out);
    out.extend_from_slice(b",\"provider_name\":");
    write_str(&event.provider, out);
    out.extend_from_slice(b",\"event_id\":");
    out.extend_from_slice(id);
    if let Some(version) = event.version {
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(number.format(version).as_bytes());
    }
    if let Some(record_id) = event.record_id {
        out.extend_from_slice(b",\"record_id\":");
        out.extend_from_slice(number.format(record_id).as_bytes());
    }
    out.extend_from_slice(b",\"computer_name\":");
    out.extend_from_within(host);
    out.extend_from_slice(b",\"event_data\":{");
    let mut first = true;
    let mut field = |name: &str, value: &str, out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(name, out);
        out.push(b':');
        write_str(value, out);
    };
    for (name, value) in event.data.iter() {
        field(name, value, out);
    }
    if let Some(vm_name) = &event.vm_name {
        if event.data.get(ecs::VM_NAME).is_none() {
            field(ecs::VM_NAME, vm_name, out);
        }
    }
    if let Some(vm_id) = &event.vm_id {
        if event.data.get(ecs::VM_ID).is_none() {
            field(ecs::VM_ID, vm_id, out);
        }
    }
    out.extend_from_slice(b"}},\"log\":{\"level\":\"");
    out.extend_from_slice(event.level.as_str().as_bytes());
    out.push(b'"');
    if let Some(path) = &event.origin.path {
        out.extend_from_slice(b",\"file\":{\"path\":");
        write_path(path, out);
        out.push(b'}');
    }
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(number.format(event.origin.offset).as_bytes());
    out.extend_from_slice(b"},\"message\":");
    write_str(&event.message, out);
    if let Some(hresult) = &event.hresult {
        out.extend_from_slice(b",\"error\":{\"code\":");
        write_str(hresult, out);
        out.push(b'}');
    }
    out.extend_from_slice(b",\"relive\":{");
    if let Some(format) = event.origin.format {
        out.extend_from_slice(b"\"format\":");
        write_str(format.name(), out);
        out.push(b',');
    }
    out.extend_from_slice(if event.zone_assumed {
        b"\"zone_assumed\":true"
    } else {
        b"\"zone_assumed\":false"
    });
    if event.vm_id_inferred {
        out.extend_from_slice(b",\"vm_id_inferred\":true");
    }
    if event.message_rendered {
        out.extend_from_slice(b",\"message_rendered\":true");
    }
    out.extend_from_slice(b"}}");
}

thread_local! {
    /// The last file path written and its JSON: the events of a file all
    /// carry the same one.
    static LAST_PATH: RefCell<(Option<Arc<str>>, Vec<u8>)> =
        const { RefCell::new((None, Vec::new())) };
}

fn write_path(path: &Arc<str>, out: &mut Vec<u8>) {
    LAST_PATH.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return write_str(path, out);
        };
        let (cached, json) = &mut *last;
        if !cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, path)) {
            json.clear();
            write_str(path, json);
            *cached = Some(path.clone());
        }
        out.extend_from_slice(json);
    })
}

/// RFC 3339 in UTC with nine fraction digits and a `Z`, as chrono's
/// `to_rfc3339_opts(SecondsFormat::Nanos, true)` writes it.
pub(crate) fn write_rfc3339(time: DateTime<Utc>, out: &mut Vec<u8>) {
    let nanos = time.timestamp_subsec_nanos();
    let seconds = time.timestamp();
    // 0000-01-01 .. 9999-12-31 (chrono writes other years with a sign),
    // and no leap second: else left to chrono.
    if !(-62_167_219_200..253_402_300_800).contains(&seconds) || nanos >= 1_000_000_000 {
        out.extend_from_slice(time.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
        return;
    }
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400) as u32;
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    // Events come in time order: the date is mostly the last one's.
    let date = LAST_DATE.with(|last| {
        let (day, date) = last.get();
        if day == days {
            return date;
        }
        let (year, month, day) = civil_from_days(days);
        let mut date = *b"0000-00-00";
        let year = year as u32;
        put2(&mut date, 0, year / 100);
        put2(&mut date, 2, year % 100);
        put2(&mut date, 5, month);
        put2(&mut date, 8, day);
        last.set((days, date));
        date
    });
    text[..10].copy_from_slice(&date);
    put2(&mut text, 11, of_day / 3600);
    put2(&mut text, 14, of_day / 60 % 60);
    put2(&mut text, 17, of_day % 60);
    text[20] = b'0' + (nanos / 100_000_000) as u8;
    let nanos = nanos % 100_000_000;
    put2(&mut text, 21, nanos / 1_000_000);
    put2(&mut text, 23, nanos / 10_000 % 100);
    put2(&mut text, 25, nanos / 100 % 100);
    put2(&mut text, 27, nanos % 100);
    out.extend_from_slice(&text);
}

thread_local! {
    /// The day (since 1970) last written and its `YYYY-MM-DD`.
    static LAST_DATE: std::cell::Cell<(i64, [u8; 10])> =
        const { std::cell::Cell::new((i64::MIN, [0; 10])) };
}

/// Two decimal digits of `value` (below 100) at `at`.
fn put2(text: &mut [u8], at: usize, value: u32) {
    const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let i = (value as usize % 100) * 2;
    text[at] = PAIRS[i];
    text[at + 1] = PAIRS[i + 1];
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A JSON string literal, escaped as `serde_json` escapes it: `"`, `\` and
/// the control bytes below 0x20 (`\b \t \n \f \r` by name, the rest as
/// `\u00XX`); everything else, non-ASCII included, as it is.
pub(crate) fn write_str(text: &str, out: &mut Vec<u8>) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Bytes [start, i) need no escape and are copied in one go.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            // Any byte < 0x20, == '"' or == '\\' (the classic zero-byte test
            // on the word, its quote-xor and its backslash-xor).
            let quote = word ^ (ONES * u64::from(b'"'));
            let slash = word ^ (ONES * u64::from(b'\\'));
            let hit = (word.wrapping_sub(ONES * 0x20)
                | quote.wrapping_sub(ONES) & !quote
                | slash.wrapping_sub(ONES) & !slash)
                & !word
                & HIGH;
            if hit == 0 {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        while i < end {
            let byte = bytes[i];
            if byte >= 0x20 && byte != b'"' && byte != b'\\' {
                i += 1;
                continue;
            }
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => b"",
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&bytes[start..i]);
            if escape.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
            } else {
                out.extend_from_slice(escape);
            }
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_str(text: &str) -> Vec<u8> {
        serde_json::to_vec(text).unwrap()
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain ascii text longer than eight".into(),
            "\"quoted\" and \\back\\slashed\\".into(),
            "C:\\ClusterStorage\\Volume1\\ADFS1".into(),
            "tab\there\r\nnew line \u{8}\u{c}\u{1}\u{1f}\u{7f}".into(),
            "curly ‘Virtual Machine ADFS1’ “quotes” and ünïcödé €".into(),
            "\u{a0}no-break\u{a0}spaces".into(),
        ];
        for byte in 0u8..=0x7f {
            for at in 0..10 {
                let mut s = "x".repeat(at);
                s.push(char::from(byte));
                s.push_str("yyyyyyyyy");
                cases.push(s);
            }
        }
        for case in &cases {
            let mut ours = Vec::new();
            write_str(case, &mut ours);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde_str(case)),
                "{case:?}"
            );
        }
    }

    #[test]
    fn times_format_as_chrono_does() {
        let times = [
            "2020-09-17T15:52:06.978557Z",
            "1601-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000000001Z",
            "9999-12-31T23:59:59.999999999Z",
            "0000-01-01T00:00:00Z",
        ];
        for text in times {
            let time: DateTime<Utc> = text.parse().unwrap();
            let mut ours = Vec::new();
            write_rfc3339(time, &mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                time.to_rfc3339_opts(SecondsFormat::Nanos, true)
            );
        }
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let seconds = (seed % 320_000_000_000) as i64 - 62_200_000_000;
            let time =
                DateTime::from_timestamp(seconds, (seed >> 34) as u32 % 1_000_000_000).unwrap();
            let mut ours = Vec::new();
            write_rfc3339(time, &mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                time.to_rfc3339_opts(SecondsFormat::Nanos, true)
            );
        }
        for seconds in [
            -62_167_219_200i64,
            -62_167_219_201,
            253_402_300_799,
            -62_198_755_200 - 86_400,
            253_402_300_800,
            1_000_000_000_000,
        ] {
            let time = DateTime::from_timestamp(seconds, 5).unwrap();
            let mut ours = Vec::new();
            write_rfc3339(time, &mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                time.to_rfc3339_opts(SecondsFormat::Nanos, true)
            );
        }
    }
}
