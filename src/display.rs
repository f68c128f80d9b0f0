//! Text from logs on a terminal.

use std::fmt::Write as _;

/// Makes log text safe to print on one terminal line: tabs, newlines and
/// runs of white space become one space; every other control character
/// (C0, DEL, C1 — ESC included), bidirectional override or isolate, and
/// other invisible format character is shown escaped (`\x1b`, `\u{202e}`),
/// so nothing from a log reaches the terminal as a control sequence or
/// reorders what the admin reads.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r') || (c.is_whitespace() && !is_format(c)) {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else if is_format(c) {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode format characters (category Cf) and the line and paragraph
/// separators: invisible, and some reorder text (bidi controls).
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn control_and_format_characters_are_shown_escaped() {
        let cases = [
            ("plain text", "plain text"),
            ("two\nlines\r\n  and\ttabs", "two lines and tabs"),
            ("\u{1b}[31mred\u{1b}[0m", "\\x1b[31mred\\x1b[0m"),
            ("c1 \u{9b}2J", "c1 \\x9b2J"),
            ("del\u{7f}", "del\\x7f"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("bell\u{7}", "bell\\x07"),
            ("Ölfeld 😀", "Ölfeld 😀"),
            ("  lead and trail  ", "lead and trail"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }
}
