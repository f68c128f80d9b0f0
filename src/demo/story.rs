//! What `relive demo` shows as it goes: a spinner and lines on a
//! terminal (indicatif), plain time-stamped lines otherwise. Every text
//! that may hold log text goes through [`crate::display::clean`] before it
//! gets here.

use std::io::Write;
use std::time::{Duration, Instant};

/// The kind of a line: its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A step began.
    Step,
    /// Something worked.
    Ok,
    /// Something failed (on purpose, or for real).
    Fail,
    /// relive found something.
    Found,
    /// An email.
    Mail,
    /// The remediation engine did something.
    Act,
    /// Demo mode decided for a person.
    Demo,
    /// Context.
    Note,
}

impl Mark {
    fn glyph(self) -> &'static str {
        match self {
            Mark::Step => "==>",
            Mark::Ok => " ok",
            Mark::Fail => "  x",
            Mark::Found => "  !",
            Mark::Mail => " @ ",
            Mark::Act => "  >",
            Mark::Demo => "  *",
            Mark::Note => "   ",
        }
    }
}

/// Where the story goes.
pub trait Story {
    /// One finished line.
    fn say(&mut self, mark: Mark, text: &str);
    /// What is being waited for now (a spinner on a terminal; nothing otherwise).
    fn waiting(&mut self, what: &str);
    /// The story ended: the spinner goes.
    fn done(&mut self);
}

/// Plain lines, each with the seconds since the start: for pipes, files, CI.
pub struct Plain<W: Write> {
    out: W,
    start: Instant,
}

impl<W: Write> Plain<W> {
    /// Lines to `out`.
    pub fn new(out: W) -> Plain<W> {
        Plain {
            out,
            start: Instant::now(),
        }
    }
}

impl<W: Write> Story for Plain<W> {
    fn say(&mut self, mark: Mark, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        for (i, line) in text.lines().enumerate() {
            let _ = if i == 0 {
                writeln!(self.out, "[{t:5.1}s] {} {line}", mark.glyph())
            } else {
                writeln!(self.out, "             {line}")
            };
        }
        let _ = self.out.flush();
    }

    fn waiting(&mut self, _what: &str) {}

    fn done(&mut self) {
        let _ = self.out.flush();
    }
}

/// A terminal: lines above a spinner that says what is awaited.
pub struct Terminal {
    bar: indicatif::ProgressBar,
    start: Instant,
}

impl Terminal {
    /// A spinner on standard output.
    pub fn new() -> Terminal {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stdout());
        let style = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Terminal {
            bar,
            start: Instant::now(),
        }
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new()
    }
}

impl Story for Terminal {
    fn say(&mut self, mark: Mark, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let mut block = String::new();
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                block.push_str(&format!("[{t:5.1}s] {} {line}", mark.glyph()));
            } else {
                block.push_str(&format!("\n             {line}"));
            }
        }
        self.bar.println(block);
    }

    fn waiting(&mut self, what: &str) {
        self.bar.set_message(what.to_string());
    }

    fn done(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The story for standard output: a spinner on a terminal, plain lines
/// otherwise.
pub fn for_stdout() -> Box<dyn Story> {
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        Box::new(Terminal::new())
    } else {
        Box::new(Plain::new(std::io::stdout()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_carry_time_mark_and_indented_continuations() {
        let mut out = Vec::new();
        {
            let mut story = Plain::new(&mut out);
            story.waiting("ignored");
            story.say(Mark::Found, "FS1: shared-storage-path-missing\nevidence");
            story.done();
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("[  0.0s]   ! FS1"), "{text}");
        assert_eq!(lines[1], "             evidence");
    }
}
