//! Text from logs on a terminal.

/// Keeps log text printable on one line: control characters (escape
/// sequences included) become spaces and runs of white space one space, so
/// nothing from a log reaches the terminal as a control sequence.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
