//! Pulls the VM name, the VM id and the HRESULT out of an event's data
//! fields or its text, in every shape Hyper-V writes them.

use compact_str::{CompactString, ToCompactString};
use memchr::memchr_iter;

use crate::event::Event;

/// Renders the message of an event that arrived without one and whose
/// template relive knows ([`crate::catalog`]), then fills `vm_id`,
/// `vm_name` and `hresult` where the parser did not: first from named data
/// fields, then from the message text, then (no text at all) from any data
/// value.
pub fn enrich(event: &mut Event) {
    if event.message.is_empty() {
        crate::catalog::render_missing(event);
    }
    if !event.data.is_empty()
        && (event.vm_id.is_none() || event.vm_name.is_none() || event.hresult.is_none())
    {
        from_fields(event);
    }
    if event.message.is_empty() {
        from_values(event);
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

/// What a data field name says its value is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A VM id field; lower rank wins.
    VmId(u8),
    /// A VM name field; lower rank wins.
    VmName(u8),
    /// `Parameter0` (VMMS positional: VM name).
    Parameter0,
    /// `Parameter1` (VMMS positional: VM id).
    Parameter1,
    /// An HRESULT / status field; lower rank wins.
    Code(u8),
}

fn slot(name: &str) -> Option<Slot> {
    let n = name.as_bytes();
    let is = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    Some(match n.len() {
        4 if is("VmId") => Slot::VmId(0),
        5 if is("VM_ID") => Slot::VmId(4),
        6 if is("VmGuid") => Slot::VmId(2),
        6 if is("VmName") => Slot::VmName(0),
        6 if is("Status") => Slot::Code(3),
        7 if is("HResult") => Slot::Code(1),
        7 if is("VM_NAME") => Slot::VmName(2),
        8 if is("NTStatus") => Slot::Code(4),
        9 if is("ErrorCode") => Slot::Code(0),
        10 if name == "Parameter0" => Slot::Parameter0,
        10 if name == "Parameter1" => Slot::Parameter1,
        12 if is("ErrorCodeHex") => Slot::Code(5),
        16 if is("VirtualMachineId") => Slot::VmId(1),
        18 if is("VirtualMachineGuid") => Slot::VmId(3),
        18 if is("VirtualMachineName") => Slot::VmName(1),
        _ => return None,
    })
}

/// The rank of a VM name taken from a value that is a cluster resource
/// name (`Virtual Machine ADFS1` in `ResourceName`, `Parameter1`, `param1`).
const RESOURCE_NAME_RANK: u8 = 5;
/// The rank of a VM id taken from a value that is a bare GUID in a Hyper-V
/// event's data (`Parameter2` of HA 21502).
const BARE_GUID_RANK: u8 = 6;

/// Whether a data field of this name may hold the VM's id as a bare GUID:
/// a positional one (`Parameter2`, `param3`, `Data`) or an id field that
/// is not a device's, switch's, port's or disk's.
fn may_hold_vm_id(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let positional = ["parameter", "param", "data"].iter().any(|p| {
        lower
            .strip_prefix(p)
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    });
    if positional {
        return true;
    }
    (lower.ends_with("id") || lower.ends_with("guid"))
        && ![
            "switch",
            "port",
            "adapter",
            "nic",
            "disk",
            "device",
            "controller",
            "session",
            "activity",
            "provider",
            "network",
            "instance",
            "snapshot",
            "checkpoint",
        ]
        .iter()
        .any(|w| lower.contains(w))
}

/// `Virtual Machine X` or `Virtual Machine Configuration X`, but not the
/// cluster's `Virtual Machine Cluster WMI` resource: the VM's name.
fn resource_vm_name(value: &str) -> Option<&str> {
    let value = value.trim();
    let name = strip_resource_prefix(value);
    (name.len() < value.len() && !name.is_empty() && !name.eq_ignore_ascii_case("Cluster WMI"))
        .then_some(name)
}

/// One pass over the data fields: VM id, VM name and HRESULT by field name;
/// a cluster resource name or (in a Hyper-V event) a bare GUID in any field.
fn from_fields(event: &mut Event) {
    let mut vm_id: Option<(u8, CompactString)> = None;
    let mut vm_name: Option<(u8, &str)> = None;
    let mut code: Option<(u8, CompactString)> = None;
    let (mut p0, mut p1) = (None, None);
    let hyperv = crate::resolve::is_hyperv(event);
    for (name, value) in event.data.iter() {
        if vm_name.is_none_or(|(r, _)| RESOURCE_NAME_RANK < r) {
            if let Some(vm) = resource_vm_name(value) {
                vm_name = Some((RESOURCE_NAME_RANK, vm));
            }
        }
        if hyperv
            && vm_id.as_ref().is_none_or(|(r, _)| BARE_GUID_RANK < *r)
            && value.len() <= 40
            && may_hold_vm_id(name)
        {
            if let Some(id) = normalize_guid(value) {
                vm_id = Some((BARE_GUID_RANK, id));
            }
        }
        match slot(name) {
            Some(Slot::VmId(rank)) if vm_id.as_ref().is_none_or(|(r, _)| rank < *r) => {
                if let Some(id) = normalize_guid(value) {
                    vm_id = Some((rank, id));
                }
            }
            Some(Slot::VmName(rank)) if vm_name.is_none_or(|(r, _)| rank < r) => {
                let trimmed = strip_resource_prefix(value.trim());
                if !trimmed.is_empty() {
                    vm_name = Some((rank, trimmed));
                }
            }
            Some(Slot::Code(rank)) if code.as_ref().is_none_or(|(r, _)| rank < *r) => {
                if let Some(c) = hresult_value(value) {
                    code = Some((rank, c));
                }
            }
            Some(Slot::Parameter0) => p0 = Some(value),
            Some(Slot::Parameter1) => p1 = Some(value),
            _ => {}
        }
    }
    // VMMS 20415-style positional parameters: name, then id.
    let positional_id = p1.and_then(normalize_guid).filter(|_| p0.is_some());
    if event.vm_id.is_none() {
        event.vm_id = vm_id.map(|(_, id)| id).or_else(|| positional_id.clone());
    }
    if event.vm_name.is_none() {
        event.vm_name = vm_name
            .map(|(_, name)| name.to_compact_string())
            .or_else(|| {
                positional_id
                    .and(p0)
                    .map(|name| strip_resource_prefix(name.trim()).to_compact_string())
            });
    }
    if event.hresult.is_none() {
        event.hresult = code.map(|(_, c)| c);
    }
}

/// An event without any text: the VM id, name and HRESULT its data values
/// carry in prose (a template relive does not know).
fn from_values(event: &mut Event) {
    for (_, value) in event.data.iter() {
        if event.vm_id.is_none() {
            event.vm_id = find_vm_id(value);
        }
        if event.vm_name.is_none() {
            event.vm_name = find_vm_name(value).map(|s| s.to_compact_string());
        }
        if event.hresult.is_none() {
            event.hresult = find_hresult(value);
        }
    }
}

/// Phrasings that name the source host of a migration right before its
/// quoted name, in the order they are tried (hyperv-kb.md §2, relive's own
/// hosts).
const SOURCE_MARKERS: &[&str] = &[
    "failed at migration source",
    "from source host",
    "source host",
    "source node",
    "from node",
];

/// Phrasings that name the destination host.
const DESTINATION_MARKERS: &[&str] = &[
    "failed at migration destination",
    "migration destination",
    "on the destination node",
    "destination node",
    "to destination host",
    "destination host",
    "for a virtual machine migration with host",
    "with host",
    "to node",
    "not supported on host",
    "on physical computer",
    "destination",
];

/// The source and destination hosts a message names, short names (before
/// the first dot): "failed at migration source 'NODE-B'", "destination node
/// 'HV2'", "with host 'HV-WEST2'", "not supported on host 'HVA-02'",
/// FailoverClustering 1153 "from node 'A' to node 'B'" and 1673 "moved from
/// group 'G' on node 'A' to group 'G' on node 'B'" (every phrasing is in the
/// tests). Straight and curly quotes.
pub fn hosts_named(text: &str) -> (Option<&str>, Option<&str>) {
    let lower = text.to_ascii_lowercase();
    // 1673: the first `on node` is where the group was, the second where it went.
    if let Some(at) = lower.find(" moved from group ") {
        let rest = &lower[at..];
        if let Some(first) = rest.find(" on node ") {
            let from = at + first + " on node ".len();
            let source = quoted_host(&text[from..]);
            let second = lower[from..]
                .find(" on node ")
                .map(|k| from + k + " on node ".len());
            let destination = second.and_then(|k| quoted_host(&text[k..]));
            if source.is_some() || destination.is_some() {
                return (source, destination);
            }
        }
    }
    (
        named_after(text, &lower, SOURCE_MARKERS),
        named_after(text, &lower, DESTINATION_MARKERS),
    )
}

/// The host quoted right after the first marker (in order) that has one.
fn named_after<'a>(text: &'a str, lower: &str, markers: &[&str]) -> Option<&'a str> {
    for marker in markers {
        let mut from = 0;
        while let Some(at) = lower[from..].find(marker) {
            let end = from + at + marker.len();
            // A whole word: `destination` is not `destinations`.
            let word_end = lower
                .as_bytes()
                .get(end)
                .is_none_or(|b| !b.is_ascii_alphanumeric());
            if word_end {
                if let Some(host) = quoted_host(&text[end..]) {
                    return Some(host);
                }
            }
            from = end;
        }
    }
    None
}

/// `'HV-WEST2.contoso.local'` (after spaces or a colon) → `HV-WEST2`.
fn quoted_host(rest: &str) -> Option<&str> {
    let rest = rest.trim_start_matches([' ', ':']);
    let quote = rest.chars().next()?;
    if !matches!(quote, '\'' | '"' | '\u{2018}' | '\u{201c}') {
        return None;
    }
    let inner = &rest[quote.len_utf8()..];
    let end = inner.find(['\'', '"', '\u{2019}', '\u{201d}', '\n'])?;
    let name = inner[..end].trim().trim_end_matches('.');
    let short = name.split('.').next().unwrap_or(name).trim();
    // A host name: no more than a DNS label's worth, no brackets or slashes.
    (!short.is_empty()
        && short.len() <= 63
        && !short.contains(['\\', '/', '<', '>', '(', ')', '%']))
    .then_some(short)
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
    let mut upper = [0u8; 36];
    for (dst, src) in upper.iter_mut().zip(g) {
        *dst = src.to_ascii_uppercase();
    }
    // Only ASCII hex digits and dashes were accepted above.
    std::str::from_utf8(&upper).ok().map(CompactString::new)
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

/// `Virtual Machine ADFS1` (a cluster resource name) → `ADFS1`.
pub fn strip_resource_prefix(name: &str) -> &str {
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

/// The next opening quote at or after `from`: `'`, `"`, `<`, `‘` or `“`.
fn next_open_quote(b: &[u8], from: usize, has_curly: bool) -> Option<(usize, char)> {
    let rest = b.get(from..)?;
    let ascii = memchr::memchr3(b'\'', b'"', b'<', rest);
    let mut curly = None;
    let lead_bytes = if has_curly { rest } else { &[][..] };
    for i in memchr::memchr_iter(0xE2, lead_bytes) {
        if ascii.is_some_and(|a| a < i) {
            break;
        }
        match rest.get(i + 1..i + 3) {
            Some([0x80, 0x98]) => curly = Some((i, '\u{2018}')),
            Some([0x80, 0x9C]) => curly = Some((i, '\u{201C}')),
            _ => continue,
        }
        break;
    }
    let found = match (ascii, curly) {
        (Some(a), Some((c, ch))) if c < a => (c, ch),
        (Some(a), _) => (a, rest[a] as char),
        (None, Some((c, ch))) => (c, ch),
        (None, None) => return None,
    };
    Some((from + found.0, found.1))
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

/// `<unknown>`, `<none>`, `<Unknown VM>`: words in angle brackets, what a
/// writer puts where it did not know a name.
fn is_placeholder(text: &str) -> bool {
    text.len() > 2
        && text.starts_with('<')
        && text.ends_with('>')
        && text[1..text.len() - 1]
            .chars()
            .all(|c| c.is_alphabetic() || matches!(c, ' ' | '-' | '_' | '/'))
}

/// The VM name a message quotes: `'Virtual Machine ADFS1'` (HA) → `ADFS1`,
/// `virtual machine  '773356-USTSTDB5'`, `for ‘ADFS1’ failed`,
/// `<Virtual Machine ADFS1>` (cluster.log), with straight or curly quotes.
pub fn find_vm_name(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    // Every quote relive looks for is `'`, `"`, `<` or a curly quote (0xE2 lead byte).
    let has_curly = memchr::memchr(0xE2, b).is_some();
    if !has_curly && memchr::memchr3(b'\'', b'"', b'<', b).is_none() {
        return None;
    }
    let mut fallback: Option<&str> = None;
    let mut after_vm_words: Option<&str> = None;
    let mut from = 0;
    while let Some((open_at, open)) = next_open_quote(b, from, has_curly) {
        from = open_at + open.len_utf8();
        let closers = closing_for(open);
        let body_start = open_at + open.len_utf8();
        let Some(rel_end) = text[body_start..].find(|c: char| closers.contains(&c) || c == '\n')
        else {
            continue;
        };
        let body = &text[body_start..body_start + rel_end];
        if text[body_start + rel_end..].starts_with('\n') {
            continue;
        }
        // Go on after the closing quote.
        let close_len = text[body_start + rel_end..]
            .chars()
            .next()
            .map_or(0, char::len_utf8);
        from = body_start + rel_end + close_len;
        let trimmed = body.trim();
        if trimmed.is_empty() || trimmed.len() > 128 || trimmed.contains(['\\', '/']) {
            continue;
        }
        let stripped = strip_resource_prefix(trimmed);
        // `'Virtual Machine <unknown>'`: the writer did not know the VM,
        // and says so; nothing else quoted in the text is its name. Only
        // words in brackets are such a placeholder: a VM may be named
        // `<img src=x>`, and that is its name.
        if is_placeholder(stripped) {
            if stripped.len() != trimmed.len() {
                return None;
            }
            continue;
        }
        if stripped.len() != trimmed.len() {
            return Some(stripped);
        }
        if open == '<' {
            continue;
        }
        let before = text[..open_at].trim_end().as_bytes();
        if ends_with_ignore_case(before, b"virtual machine")
            || ends_with_ignore_case(before, b" vm")
        {
            after_vm_words.get_or_insert(trimmed);
            continue;
        }
        let word_start = before
            .iter()
            .rposition(|c| matches!(c, b' ' | b'(' | b','))
            .map_or(0, |i| i + 1);
        let last_word = &before[word_start..];
        if NOT_A_VM
            .iter()
            .any(|w| last_word.eq_ignore_ascii_case(w.as_bytes()))
            || trimmed.starts_with("0x")
        {
            continue;
        }
        fallback.get_or_insert(trimmed);
    }
    if after_vm_words.is_some() {
        return after_vm_words;
    }
    fallback?;
    let b = text.as_bytes();
    let mentions_vm = memchr::memchr2_iter(b'v', b'V', b).any(|i| {
        let word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        b[i..].len() >= 2 && b[i + 1].eq_ignore_ascii_case(&b'm') && word_start
            || b[i..].len() >= 15 && b[i..i + 15].eq_ignore_ascii_case(b"virtual machine")
    });
    if mentions_vm || contains_ignore_case(b, b"migrat") {
        fallback
    } else {
        None
    }
}

fn ends_with_ignore_case(text: &[u8], suffix: &[u8]) -> bool {
    text.len() >= suffix.len() && text[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// ASCII case-insensitive substring search; `needle` must be lower case.
fn contains_ignore_case(text: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), text).any(|i| {
        text.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
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
    for x in memchr::memchr2_iter(b'x', b'X', b) {
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
    // Bare codes are written in upper case (`80070002`, `C03A0014`).
    for i in memchr::memchr2_iter(b'8', b'C', b) {
        if i + 8 > b.len() {
            break;
        }
        let start_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-');
        if !start_ok {
            continue;
        }
        let token = &b[i..i + 8];
        let end_ok = b
            .get(i + 8)
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'-'));
        if end_ok && token.iter().all(|c| is_hex(*c)) && token.iter().any(u8::is_ascii_digit) {
            return Some(format_code(token));
        }
    }
    low_code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every phrasing the knowledge base (and relive's own hosts) uses to
    /// name a migration's source or destination host.
    #[test]
    fn hosts_in_every_phrasing() {
        let table: &[(&str, Option<&str>, Option<&str>)] = &[
            // VMMS 21024 (hyperv-kb.md §2.2), straight and curly quotes.
            ("Virtual machine migration operation for 'ADFS1' failed at migration source 'NODE-B'. (Virtual machine ID 4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7)", Some("NODE-B"), None),
            ("Virtual machine migration operation for \u{2018}ADFS1\u{2019} failed at migration source \u{2018}NODE-B.corp.local\u{2019}.", Some("NODE-B"), None),
            // The 21024 sibling.
            ("Virtual machine migration operation for 'VM' failed at migration destination 'S2D1'. (Virtual machine ID 1)", None, Some("S2D1")),
            ("Virtual machine migration operation for \"VM\" failed at migration destination \"S2D1\"", None, Some("S2D1")),
            // HA 21126, 21145, 21159 (§2.1).
            ("Failed to get the network address for the destination node 'HVN-2': A cluster Network isn't available for this operation. (0x000013AB).", None, Some("HVN-2")),
            ("'Virtual Machine A' failed to live migrate because a virtual switch used by the VM is disconnected on the destination node 'HV2'.", None, Some("HV2")),
            ("'Virtual Machine A' failed to live migrate because a virtual switch used by the VM does not exist on the destination node \"Host2\".", None, Some("Host2")),
            // The connection failure inside a 21502 body, with the source line before it.
            ("Live migration of 'Virtual Machine W' failed.\nVirtual machine migration operation for 'W' failed at migration source 'HV-WEST1'. (Virtual machine ID 0D526761-FCC2-44CB-9A4B-6522B08DD2B9)\nThe Virtual Machine Management Service failed to establish a connection for a Virtual Machine migration with host 'HV-WEST2': A connection attempt failed (0x8007274C).", Some("HV-WEST1"), Some("HV-WEST2")),
            // 20413's best-guess text and relive's hosts.
            ("The Virtual Machine Management Service initiated the live migration of virtual machine 'APP1' to destination host 'HV02' (VMID X).", None, Some("HV02")),
            ("The Virtual Machine Management Service is receiving the live migration of virtual machine 'APP1' from source host 'HV01' (VMID X).", Some("HV01"), None),
            // Processor (FM-05) and vTPM (FM-19) texts name the destination as a host or computer.
            ("Virtual machine 'BUILD-AGENT7' is using processor-specific features not supported on host 'HVA-02'.", None, Some("HVA-02")),
            ("Virtual machine 'X' is using processor-specific features not supported on host \"Node 1.\"", None, Some("Node 1")),
            ("The version of the device 'Microsoft Virtual TPM Device' of the virtual machine 'VM' is not compatible with device on physical computer 'GRD-HV02'.", None, Some("GRD-HV02")),
            // FailoverClustering 1153, 1252, 1673 (§2.4).
            ("The Cluster Service is attempting to fail over the clustered role 'FS01' from node 'HVN-11' to node 'HVN-12'.", Some("HVN-11"), Some("HVN-12")),
            ("Cluster resource 'Virtual Machine WEB03' in clustered role 'WEB03' rejected a move request to node 'BER-HV03'. The error code was '0x80071398'.", None, Some("BER-HV03")),
            ("Resource 'Virtual Machine SQL01' moved from group 'SQL01' on node 'NODE-C' to group 'SQL01' on node 'NODE-D'.", Some("NODE-C"), Some("NODE-D")),
            // A bare "destination 'X'".
            ("the move to destination 'S2D1' failed", None, Some("S2D1")),
            // Nothing named, or only a placeholder or an unquoted number.
            ("Live migration of 'Virtual Machine ADFS1' failed.", None, None),
            ("rcm::RcmGroup::Move: Live migration of group 'WEBFE01' to node 2 failed, error 10060", None, None),
            ("The destinations 'a' and 'b'", None, None),
            ("establish a connection with host '<computer>'", None, None),
        ];
        for (text, source, destination) in table {
            assert_eq!(hosts_named(text), (*source, *destination), "{text}");
        }
    }

    #[test]
    fn vm_and_codes_from_data_fields_without_any_text() {
        // HA 21502 as raw EVTX or XML without RenderingInfo: the VM as the
        // cluster resource in Parameter1, its id bare in Parameter2, the
        // whole text in Parameter3 (rendered from the catalog).
        let mut e = Event {
            provider: "Microsoft-Windows-Hyper-V-High-Availability".into(),
            event_id: 21502,
            ..Event::default()
        };
        e.data.push("Parameter1", "Virtual Machine APP1");
        e.data
            .push("Parameter2", "0d526761-fcc2-44cb-9a4b-6522b08dd2b9");
        e.data.push("Parameter3", "Live migration of 'Virtual Machine APP1' failed.\nThe Virtual Machine Management Service failed to establish a connection for a Virtual Machine migration with host 'HV2': timeout (0x8007274C).");
        enrich(&mut e);
        assert!(e.message_rendered);
        assert_eq!(e.vm_name.as_deref(), Some("APP1"));
        assert_eq!(
            e.vm_id.as_deref(),
            Some("0D526761-FCC2-44CB-9A4B-6522B08DD2B9")
        );
        assert_eq!(e.hresult.as_deref(), Some("0x8007274C"));
        // A VMMS event with the resource name positional: the prefix goes.
        let mut e = Event {
            provider: "Microsoft-Windows-Hyper-V-VMMS".into(),
            event_id: 1,
            ..Event::default()
        };
        e.data.push("Parameter0", "Virtual Machine APP2");
        e.data
            .push("Parameter1", "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7");
        enrich(&mut e);
        assert_eq!(e.vm_name.as_deref(), Some("APP2"));
        // An event relive has no template for: id, name and code from the prose of any value.
        let mut e = Event {
            provider: "Microsoft-Windows-Hyper-V-Worker".into(),
            event_id: 99,
            ..Event::default()
        };
        e.data.push("Text", "'SQL-REPORT' could not initialize memory: Ran out of memory (0x8007000E). (Virtual machine ID 2ABA3370-66D0-48FC-A175-F5037D9C2FC7)");
        enrich(&mut e);
        assert!(e.message.is_empty() && !e.message_rendered);
        assert_eq!(e.vm_name.as_deref(), Some("SQL-REPORT"));
        assert_eq!(
            e.vm_id.as_deref(),
            Some("2ABA3370-66D0-48FC-A175-F5037D9C2FC7")
        );
        assert_eq!(e.hresult.as_deref(), Some("0x8007000E"));
        // The cluster's own WMI resource is not a VM, and a GUID outside Hyper-V is not a VM id.
        let mut e = Event {
            provider: "Microsoft-Windows-FailoverClustering".into(),
            event_id: 99,
            ..Event::default()
        };
        e.data.push("ResourceName", "Virtual Machine Cluster WMI");
        e.data.push("Id", "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7");
        enrich(&mut e);
        assert_eq!((e.vm_name, e.vm_id), (None, None));
        // In a Hyper-V event, a switch's or a port's id is not the VM's.
        let mut e = Event {
            provider: "Microsoft-Windows-Hyper-V-VMMS".into(),
            event_id: 99,
            ..Event::default()
        };
        e.data
            .push("SwitchId", "4B5F2F6C-AEA3-4C7B-8342-E255D1D112D7");
        e.data
            .push("PortGuid", "5B5F2F6C-AEA3-4C7B-8342-E255D1D112D7");
        enrich(&mut e);
        assert_eq!(e.vm_id, None);
        assert!(
            may_hold_vm_id("Parameter2")
                && may_hold_vm_id("param3")
                && may_hold_vm_id("VirtualMachineGuid")
        );
        assert!(!may_hold_vm_id("ParameterName") && !may_hold_vm_id("NicGuid"));
    }

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
        // A writer that did not know the VM names none.
        check(
            "Live migration of 'Virtual Machine <unknown>' failed.\n\nVirtual machine migration operation for '<unknown>' failed at migration destination 'HV02'. Peer: 'HV01'.",
            None,
        );
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
        // A VM named with markup is named so (a placeholder is words only).
        check(
            "rcm::RcmGroup::Move: Live migration of group '<img src=x onerror=alert(1)>' to node 2 failed; the group stays online on node 1.",
            Some("<img src=x onerror=alert(1)>"),
        );
        check(
            "Live migration of 'Virtual Machine <img src=x onerror=alert(1)>' failed.",
            Some("<img src=x onerror=alert(1)>"),
        );
        check(
            "Live migration of 'Virtual Machine <Unknown VM>' failed.",
            None,
        );
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
