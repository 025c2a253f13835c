//! What the REPL prints. Like pdb, the whole conversation (locations, values, `*** ` errors)
//! goes to stdout, which is what tools driving pdb read; colours only when stdout is a terminal
//! and `NO_COLOR` is unset. The web console's REPL prints into a buffer instead, without
//! colours.
//!
//! Nearly everything printed comes from the agent, so from the target: every `&str` given to
//! [`Out`] is escaped ([`crate::escape::text`]). The only escape sequences that reach the
//! terminal are pymri's own colours and screen clearing, put in a [`Styled`] by this module and
//! the highlighter; names inside a line go through [`Styled::name`] or [`location`].

use super::highlight::{style, Highlighter};
use crate::escape::{self, Name};
use pymri_session::protocol::requests::SourceBody;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

/// Text ready for the terminal: escaped text and pymri's own colours, nothing else.
#[derive(Debug, Default)]
pub struct Styled(String);

impl Styled {
    pub fn new() -> Styled {
        Styled::default()
    }

    /// Multi-line text from the target (escaped, newlines kept).
    pub fn text(&mut self, text: &str) -> &mut Styled {
        self.0.push_str(&escape::text(text));
        self
    }

    /// A name within the line (escaped, newlines too).
    pub fn name(&mut self, text: &str) -> &mut Styled {
        self.0.push_str(&escape::name(text));
        self
    }

    /// `text` in one of the highlighter's styles.
    pub(super) fn paint(&mut self, style: &'static str, text: &str) -> &mut Styled {
        self.0.push_str(style);
        self.text(text);
        self.0.push_str(style::RESET);
        self
    }

    pub fn append(&mut self, other: &Styled) -> &mut Styled {
        self.0.push_str(&other.0);
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// pdb's way of naming a place, `file(line)function()`, with the agent's names made inert.
pub fn location(file: &str, line: u32, function: &str) -> String {
    format!("{}({line}){}()", Name(file), Name(function))
}

/// Text printed by a REPL that has no terminal (the web console), taken out after each command.
pub type SharedBuffer = Arc<Mutex<Vec<u8>>>;

enum Sink {
    Stdout(io::Stdout),
    Buffer(SharedBuffer),
}

pub struct Out {
    sink: Sink,
    pub colour: bool,
    pub terminal: bool,
    /// The first failed write to stdout; nothing more is written after it, and the REPL ends
    /// the session ([`Out::failure`]).
    failed: Option<io::Error>,
}

impl Out {
    pub fn new() -> Out {
        let out = io::stdout();
        let terminal = out.is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Out { sink: Sink::Stdout(out), colour: terminal && !no_colour, terminal, failed: None }
    }

    /// Output into `buffer`, plain text.
    pub fn buffer(buffer: SharedBuffer) -> Out {
        Out { sink: Sink::Buffer(buffer), colour: false, terminal: false, failed: None }
    }

    fn write(&mut self, parts: &[&[u8]]) {
        match &mut self.sink {
            Sink::Stdout(out) => {
                if self.failed.is_some() {
                    return;
                }
                let mut lock = out.lock();
                let written =
                    parts.iter().try_for_each(|part| lock.write_all(part)).and_then(|()| lock.flush());
                if let Err(e) = written {
                    self.failed = Some(e);
                }
            }
            Sink::Buffer(buffer) => {
                let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
                for part in parts {
                    buffer.extend_from_slice(part);
                }
            }
        }
    }

    /// Whether a write to stdout failed.
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// The failed write, as `Printer` reports one: a reader that went away is a quiet end.
    pub fn failure(&mut self) -> Option<anyhow::Error> {
        self.failed.take().map(crate::printer::stdout_error)
    }

    /// One line of output (a newline is added).
    pub fn line(&mut self, text: &str) {
        self.write(&[escape::text(text).as_bytes(), b"\n"]);
    }

    /// Text that has its own newlines (output captured by the agent, a traceback).
    pub fn text(&mut self, text: &str) {
        self.write(&[escape::text(text).as_bytes()]);
    }

    /// One line of styled output (a newline is added).
    pub fn styled_line(&mut self, text: &Styled) {
        self.write(&[text.as_str().as_bytes(), b"\n"]);
    }

    /// pdb's error form: `*** message`.
    pub fn error(&mut self, message: &str) {
        let mut lines = message.lines();
        let first = lines.next().unwrap_or("");
        self.line(&format!("*** {first}"));
        for more in lines {
            self.line(more);
        }
    }

    /// Clears the screen (sticky mode), only on a terminal.
    pub fn clear_screen(&mut self) {
        if self.terminal {
            self.write(&[b"\x1b[H\x1b[2J"]);
        }
    }

    /// One source line for `-> code`, coloured when colours are on.
    pub fn code(&self, code: &str) -> Styled {
        let mut styled = Styled::new();
        if self.colour {
            Highlighter::new().line(code, &mut styled);
        } else {
            styled.text(code);
        }
        styled
    }

    /// Prints a listing as pdb does: `  5 B->\tcode` (`B`: a breakpoint, `->`: the current line,
    /// `>>`: the line an exception was raised at, when it is not the current one).
    pub fn listing(&mut self, body: &SourceBody, current: Option<u32>, exception_line: Option<u32>) {
        let mut highlighter = Highlighter::new();
        let mut text = Styled::new();
        for (i, line) in body.lines.iter().enumerate() {
            let number = body.first + i as u32;
            text.append(&listing_line(
                number,
                line,
                body.breakpoints.contains(&number),
                current == Some(number),
                exception_line == Some(number),
                self.colour.then_some(&mut highlighter),
            ));
            text.0.push('\n');
        }
        self.write(&[text.as_str().as_bytes()]);
    }
}

/// One listing line: the number right-aligned in three columns then a space, `B` or a space,
/// `->`/`>>` or nothing, a tab, the code without trailing white space.
pub fn listing_line(
    number: u32,
    code: &str,
    breakpoint: bool,
    current: bool,
    exception: bool,
    highlighter: Option<&mut Highlighter>,
) -> Styled {
    let colour = highlighter.is_some();
    let mut s = Styled(format!("{number:>3}"));
    if s.0.len() < 4 {
        s.0.push(' ');
    }
    let paint = |s: &mut Styled, style: &'static str, text: &str| {
        if colour {
            s.paint(style, text);
        } else {
            s.text(text);
        }
    };
    if breakpoint {
        paint(&mut s, style::BREAK, "B");
    } else {
        s.0.push(' ');
    }
    if current {
        paint(&mut s, style::CURRENT, "->");
    } else if exception {
        paint(&mut s, style::BREAK, ">>");
    }
    s.0.push('\t');
    let code = code.trim_end();
    match highlighter {
        Some(h) => h.line(code, &mut s),
        None => {
            s.text(code);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(number: u32, code: &str, breakpoint: bool, current: bool, exception: bool) -> String {
        listing_line(number, code, breakpoint, current, exception, None).as_str().to_string()
    }

    #[test]
    fn listing_lines_have_pdbs_shape() {
        assert_eq!(line(5, "x = 1  ", false, true, false), "  5  ->\tx = 1");
        assert_eq!(line(3, "def f():", true, false, false), "  3 B\tdef f():");
        assert_eq!(line(12, "y", true, true, false), " 12 B->\ty");
        assert_eq!(line(7, "1/0", false, false, true), "  7  >>\t1/0");
        assert_eq!(line(1234, "z", false, false, false), "1234 \tz");
        let mut h = Highlighter::new();
        let coloured = listing_line(5, "return 1", true, true, false, Some(&mut h));
        let coloured = coloured.as_str();
        assert!(coloured.starts_with("  5 \x1b[1;31mB\x1b[0m\x1b[1;33m->\x1b[0m\t"), "{coloured:?}");
    }

    #[test]
    fn target_text_is_escaped_and_only_our_colours_remain() {
        let hostile = "x = 1  # \x1b]0;pwned\x07\u{202e}";
        assert_eq!(line(3, hostile, false, false, false), "  3  \tx = 1  # \\x1b]0;pwned\\x07\\u202e");
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let mut out = Out::buffer(Arc::clone(&buffer));
        out.line("a\x1b[2J\nb\tc");
        out.text("\u{9b}31m\n");
        out.error("\x07bell");
        let mut styled = Styled::new();
        styled.text("> ").name("f\ng").paint(style::BREAK, "\x1b");
        out.styled_line(&styled);
        out.line(&location("a\x1b.py", 3, "f\n"));
        let text = String::from_utf8(buffer.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(
            text,
            "a\\x1b[2J\nb\tc\n\\x9b31m\n*** \\x07bell\n> f\\ng\x1b[1;31m\\x1b\x1b[0m\na\\x1b.py(3)f\\n()\n"
        );
    }
}
