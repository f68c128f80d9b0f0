//! Pulls the VM name, the VM id and the HRESULT out of an event's data
//! fields or its text, in every shape Hyper-V writes them.

use compact_str::{CompactString, ToCompactString};
use memchr::memchr_iter;

use crate::event::Event;

/// Fills `vm_id`, `vm_name` and `hresult` where the parser did not: first
/// from named data fields, then from the message text.
pub fn enrich(event: &mut Event) {
    if event.vm_id.is_none() || event.vm_name.is_none() {
        let positional_id = event
            .data
            .get("Parameter1")
            .and_then(normalize_guid)
            .filter(|_| event.data.get("Parameter0").is_some());
        if event.vm_id.is_none() {
            event.vm_id = [
                "VmId",
                "VirtualMachineId",
                "VmGuid",
                "VirtualMachineGuid",
                "VM_ID",
            ]
            .iter()
            .find_map(|name| event.data.get_ignore_case(name).and_then(normalize_guid))
            .or_else(|| positional_id.clone());
        }
        if event.vm_name.is_none() {
            event.vm_name = ["VmName", "VirtualMachineName", "VM_NAME"]
                .iter()
                .find_map(|name| event.data.get_ignore_case(name))
                .map(|name| strip_resource_prefix(name.trim()).to_compact_string())
                .filter(|name| !name.is_empty())
                .or_else(|| {
                    positional_id
                        .as_ref()
                        .and_then(|_| event.data.get("Parameter0"))
                        .map(|name| name.trim().to_compact_string())
                });
        }
    }
    if event.hresult.is_none() {
        event.hresult = [
            "ErrorCode",
            "HResult",
            "Hresult",
            "Status",
            "NTStatus",
            "ErrorCodeHex",
        ]
        .iter()
        .find_map(|name| event.data.get(name).and_then(hresult_value));
    }
    if event.message.is_empty() {
        return;
    }
    if event.vm_id.is_none() {
        event.vm_id = find_vm_id(&event.message);
    }
    if event.vm_name.is_none() {
        event.vm_name = find_vm_name(&event.message).map(|s| s.to_compact_string());
    }
    if event.hresult.is_none() {
        event.hresult = find_hresult(&event.message);
    }
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// Normalizes a GUID to upper case without braces; `None` if it is not one.
pub fn normalize_guid(text: &str) -> Option<CompactString> {
    let t = text.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    let b = t.as_bytes();
    guid_at(b, 0).filter(|_| b.len() == 36)
}

/// A GUID (8-4-4-4-12 hex digits) starting at `start`, upper-cased.
fn guid_at(b: &[u8], start: usize) -> Option<CompactString> {
    let g = b.get(start..start + 36)?;
    for (i, &c) in g.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => is_hex(c),
        };
        if !ok {
            return None;
        }
    }
    // Not part of a longer hex run.
    if start > 0 && is_hex(b[start - 1]) || b.get(start + 36).is_some_and(|c| is_hex(*c)) {
        return None;
    }
    let mut out = CompactString::with_capacity(36);
    for &c in g {
        out.push(c.to_ascii_uppercase() as char);
    }
    Some(out)
}

/// What may stand right before a GUID that names a VM:
/// `(Virtual machine ID …)`, `[Virtual machine …]`, `(VMID …)`,
/// `NT VIRTUAL MACHINE\…`, `VM ID: …`.
fn names_a_vm(before: &[u8]) -> bool {
    let start = before.len().saturating_sub(24);
    let window: Vec<u8> = before[start..].iter().map(u8::to_ascii_lowercase).collect();
    let window = trim_end(&window, b" :=([{\"'\\");
    [
        &b"virtual machine id"[..],
        b"virtual machine",
        b"vmid",
        b"vm id",
        b"vm guid",
        b"virtual machine guid",
    ]
    .iter()
    .any(|marker| window.ends_with(marker))
}

fn trim_end<'a>(mut b: &'a [u8], set: &[u8]) -> &'a [u8] {
    while let Some((last, rest)) = b.split_last() {
        if set.contains(last) {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// The first GUID in `text` that the text says is a virtual machine's.
pub fn find_vm_id(text: &str) -> Option<CompactString> {
    let b = text.as_bytes();
    for dash in memchr_iter(b'-', b) {
        if dash < 8 {
            continue;
        }
        let start = dash - 8;
        if let Some(guid) = guid_at(b, start) {
            if names_a_vm(&b[..start]) {
                return Some(guid);
            }
        }
    }
    None
}

/// VM id from an Event Viewer `User:` (`NT VIRTUAL MACHINE\<GUID>`) or a
/// virtual machine's SID (`S-1-5-83-1-a-b-c-d`, the GUID's four 32-bit words).
pub fn vm_id_from_user(user: &str) -> Option<CompactString> {
    let user = user.trim();
    if let Some((domain, name)) = user.split_once('\\') {
        if domain.eq_ignore_ascii_case("NT VIRTUAL MACHINE") {
            return normalize_guid(name);
        }
        return None;
    }
    let words = user.strip_prefix("S-1-5-83-1-")?;
    let mut bytes = [0u8; 16];
    let mut n = 0;
    for word in words.split('-') {
        let value: u32 = word.parse().ok()?;
        bytes
            .get_mut(n * 4..n * 4 + 4)?
            .copy_from_slice(&value.to_le_bytes());
        n += 1;
    }
    if n != 4 {
        return None;
    }
    let d1 = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let d2 = u16::from_le_bytes([bytes[4], bytes[5]]);
    let d3 = u16::from_le_bytes([bytes[6], bytes[7]]);
    let mut out = format!("{d1:08X}-{d2:04X}-{d3:04X}-");
    for (i, b) in bytes[8..].iter().enumerate() {
        if i == 2 {
            out.push('-');
        }
        out.push_str(&format!("{b:02X}"));
    }
    Some(out.into())
}

fn strip_resource_prefix(name: &str) -> &str {
    for prefix in ["Virtual Machine Configuration ", "Virtual Machine "] {
        if name.len() > prefix.len()
            && name.is_char_boundary(prefix.len())
            && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return name[prefix.len()..].trim();
        }
    }
    name
}

fn closing_for(open: char) -> &'static [char] {
    match open {
        '\'' | '\u{2018}' => &['\'', '\u{2019}'],
        '"' | '\u{201C}' => &['"', '\u{201D}'],
        '<' => &['>'],
        _ => &[],
    }
}

/// Words that, right before a quoted name, say it is not a VM's.
const NOT_A_VM: [&str; 12] = [
    "source",
    "destination",
    "node",
    "host",
    "computer",
    "switch",
    "path",
    "file",
    "network",
    "folder",
    "server",
    "account",
];

/// The VM name a message quotes: `'Virtual Machine ADFS1'` (HA) → `ADFS1`,
/// `virtual machine  '773356-USTSTDB5'`, `for ‘ADFS1’ failed`,
/// `<Virtual Machine ADFS1>` (cluster.log), with straight or curly quotes.
pub fn find_vm_name(text: &str) -> Option<&str> {
    let mut fallback: Option<&str> = None;
    let mut after_vm_words: Option<&str> = None;
    let mut chars = text.char_indices();
    while let Some((open_at, open)) = chars.next() {
        let closers = closing_for(open);
        if closers.is_empty() {
            continue;
        }
        let body_start = open_at + open.len_utf8();
        let Some(rel_end) = text[body_start..].find(|c: char| closers.contains(&c) || c == '\n')
        else {
            continue;
        };
        let body = &text[body_start..body_start + rel_end];
        if text[body_start + rel_end..].starts_with('\n') {
            continue;
        }
        // Skip past the closing quote.
        let close_len = text[body_start + rel_end..]
            .chars()
            .next()
            .map_or(0, char::len_utf8);
        let resume = body_start + rel_end + close_len;
        while chars.offset() < resume {
            if chars.next().is_none() {
                break;
            }
        }
        let trimmed = body.trim();
        if trimmed.is_empty() || trimmed.len() > 128 || trimmed.contains(['\\', '/']) {
            continue;
        }
        let stripped = strip_resource_prefix(trimmed);
        if stripped.len() != trimmed.len() {
            return Some(stripped);
        }
        if open == '<' {
            continue;
        }
        let before = text[..open_at].trim_end().to_ascii_lowercase();
        if before.ends_with("virtual machine") || before.ends_with(" vm") {
            after_vm_words.get_or_insert(trimmed);
            continue;
        }
        let last_word = before.rsplit([' ', '(', ',']).next().unwrap_or("");
        if NOT_A_VM.contains(&last_word) || trimmed.starts_with("0x") {
            continue;
        }
        fallback.get_or_insert(trimmed);
    }
    if after_vm_words.is_some() {
        return after_vm_words;
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("virtual machine") || lower.contains("migrat") || lower.contains(" vm") {
        fallback
    } else {
        None
    }
}

/// Formats a 32-bit code as `0x80070002`.
fn format_code(digits: &[u8]) -> CompactString {
    let mut out = CompactString::with_capacity(10);
    out.push_str("0x");
    for &d in digits {
        out.push(d.to_ascii_uppercase() as char);
    }
    out
}

/// An HRESULT written as a field value: `0x80070002`, `80070002`, or a
/// signed decimal (`-2147024894`).
fn hresult_value(value: &str) -> Option<CompactString> {
    let v = value.trim();
    let hex = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    if hex.len() == 8 && hex.bytes().all(is_hex) && hex != "00000000" {
        return Some(format_code(hex.as_bytes()));
    }
    if let Ok(n) = v.parse::<i32>() {
        if n < 0 {
            return Some(format!("0x{:08X}", n as u32).into());
        }
    }
    None
}

/// The first HRESULT in a message: `(0x80070002)`, preferring codes with the
/// failure bit set, then bare `80042001` tokens (1106, 1840), then any
/// `0x` + 8 hex digits (`0x000013AB`).
pub fn find_hresult(text: &str) -> Option<CompactString> {
    let b = text.as_bytes();
    let boundary = |i: usize| b.get(i).is_none_or(|c| !c.is_ascii_alphanumeric());
    let mut low_code: Option<CompactString> = None;
    for x in memchr_iter(b'x', b).chain(memchr_iter(b'X', b)) {
        if x == 0 || b[x - 1] != b'0' || (x >= 2 && b[x - 2].is_ascii_alphanumeric()) {
            continue;
        }
        let Some(digits) = b.get(x + 1..x + 9) else {
            continue;
        };
        if digits.iter().all(|c| is_hex(*c)) && boundary(x + 9) {
            if matches!(digits[0].to_ascii_uppercase(), b'8'..=b'9' | b'A'..=b'F') {
                return Some(format_code(digits));
            }
            if low_code.is_none() && digits != b"00000000" {
                low_code = Some(format_code(digits));
            }
        }
    }
    let mut i = 0;
    while i + 8 <= b.len() {
        let start_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-');
        if start_ok && matches!(b[i], b'8' | b'C' | b'c') {
            let token = &b[i..i + 8];
            let end_ok = b
                .get(i + 8)
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'-'));
            if end_ok && token.iter().all(|c| is_hex(*c)) && token.iter().any(u8::is_ascii_digit) {
                return Some(format_code(token));
            }
        }
        i += 1;
    }
    low_code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_ids() {
        let check = |text: &str, want: Option<&str>| {
            assert_eq!(find_vm_id(text).as_deref(), want, "{text}");
        };
        let id = Some("4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7");
        check("failed at migration source ‘NODE-B’. (Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)", id);
        check(
            "[Virtual machine 4b5f2f6c-aea3-4c7b-8342-e255d1d112d7] onecore\\vm",
            id,
        );
        check(
            "blackout time of 0.5 seconds (VMID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7).",
            id,
        );
        check(
            "(Virtual Machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7).",
            id,
        );
        check(
            "Provider {6066F867-7CA1-4418-85FD-36E3F9C0600C} started",
            None,
        );
        check("(Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342)", None);
    }

    #[test]
    fn users_and_sids() {
        assert_eq!(
            vm_id_from_user("NT VIRTUAL MACHINE\\4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7").as_deref(),
            Some("4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7")
        );
        assert_eq!(
            vm_id_from_user("S-1-5-83-1-3655396106-1351506743-3915871121-3476744365").as_deref(),
            Some("D9E0EB0A-5B37-508E-9173-67E9ADE83ACF")
        );
        assert_eq!(vm_id_from_user("S-1-5-18"), None);
        assert_eq!(vm_id_from_user("SYSTEM"), None);
    }

    #[test]
    fn vm_names() {
        let check = |text: &str, want: Option<&str>| {
            assert_eq!(find_vm_name(text), want, "{text}");
        };
        check(
            "Live migration of ‘Virtual Machine ADFS1’ failed.",
            Some("ADFS1"),
        );
        check(
            "Virtual machine migration operation for ‘ADFS1’ failed at migration source ‘NODE-B’.",
            Some("ADFS1"),
        );
        check("live migration of virtual machine  '773356-USTSTDB5' with a blackout time of 0.5 seconds", Some("773356-USTSTDB5"));
        check(
            "Failed to verify collection registry for virtual machine ‘ADFS1’: The system",
            Some("ADFS1"),
        );
        check(
            "[RES] Virtual Machine <Virtual Machine ADFS1>: Current state 'MigrationFailed'",
            Some("ADFS1"),
        );
        check("'VM TOTAL' started successfully. (Virtual machine ID 5D9E9825-0000-0000-0000-000000000000)", Some("VM TOTAL"));
        check("The service 'Spooler' entered the stopped state.", None);
        check("migration failed at migration source 'NODE-B'", None);
    }

    #[test]
    fn hresults() {
        let check = |text: &str, want: Option<&str>| {
            assert_eq!(find_hresult(text).as_deref(), want, "{text}");
        };
        check(
            "The system cannot find the file specified. (0x80070002).",
            Some("0x80070002"),
        );
        check("vmwp.exe!00007FF6E7C46141: (caller: 00007FF6E7B8957D) Exception(2) tid(ff4) 80042001     CallContext", Some("0x80042001"));
        check(
            "Exception(998) tid(1fa0) 80070002 The system cannot find",
            Some("0x80070002"),
        );
        check(
            "A cluster network isn't available (0x000013AB)",
            Some("0x000013AB"),
        );
        check("ISO not found (0xc03a0014)", Some("0xC03A0014"));
        check(
            "VM id 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7 and C0FFEE",
            None,
        );
        check("nothing here 12345678", None);
        assert_eq!(hresult_value("-2147024894").as_deref(), Some("0x80070002"));
    }
}
