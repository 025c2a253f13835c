//! What the REPL prints. Like pdb, the whole conversation (locations, values, `*** ` errors)
//! goes to stdout, which is what tools driving pdb read; colours only when stdout is a terminal
//! and `NO_COLOR` is unset. The web console's REPL prints into a buffer instead, without
//! colours.

use super::highlight::{style, Highlighter};
use pymri_session::protocol::requests::SourceBody;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

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
}

impl Out {
    pub fn new() -> Out {
        let out = io::stdout();
        let terminal = out.is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Out { sink: Sink::Stdout(out), colour: terminal && !no_colour, terminal }
    }

    /// Output into `buffer`, plain text.
    pub fn buffer(buffer: SharedBuffer) -> Out {
        Out { sink: Sink::Buffer(buffer), colour: false, terminal: false }
    }

    fn write(&mut self, parts: &[&[u8]]) {
        match &mut self.sink {
            Sink::Stdout(out) => {
                let mut lock = out.lock();
                for part in parts {
                    let _ = lock.write_all(part);
                }
                let _ = lock.flush();
            }
            Sink::Buffer(buffer) => {
                let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
                for part in parts {
                    buffer.extend_from_slice(part);
                }
            }
        }
    }

    /// One line of output (a newline is added).
    pub fn line(&mut self, text: &str) {
        self.write(&[text.as_bytes(), b"\n"]);
    }

    /// Text as it is (program output captured by the agent, which has its own newlines).
    pub fn raw(&mut self, text: &str) {
        self.write(&[text.as_bytes()]);
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
            self.raw("\x1b[H\x1b[2J");
        }
    }

    /// One source line for `-> code`, coloured when colours are on.
    pub fn code(&self, code: &str) -> String {
        if self.colour {
            Highlighter::new().line(code)
        } else {
            code.to_string()
        }
    }

    /// Prints a listing as pdb does: `  5 B->\tcode` (`B`: a breakpoint, `->`: the current line,
    /// `>>`: the line an exception was raised at, when it is not the current one).
    pub fn listing(&mut self, body: &SourceBody, current: Option<u32>, exception_line: Option<u32>) {
        let mut highlighter = Highlighter::new();
        let mut text = String::new();
        for (i, line) in body.lines.iter().enumerate() {
            let number = body.first + i as u32;
            text.push_str(&listing_line(
                number,
                line,
                body.breakpoints.contains(&number),
                current == Some(number),
                exception_line == Some(number),
                self.colour.then_some(&mut highlighter),
            ));
            text.push('\n');
        }
        self.raw(&text);
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
) -> String {
    let colour = highlighter.is_some();
    let mut s = format!("{number:>3}");
    if s.len() < 4 {
        s.push(' ');
    }
    let paint = |s: &mut String, style: &str, text: &str| {
        if colour {
            s.push_str(style);
            s.push_str(text);
            s.push_str(style::RESET);
        } else {
            s.push_str(text);
        }
    };
    if breakpoint {
        paint(&mut s, style::BREAK, "B");
    } else {
        s.push(' ');
    }
    if current {
        paint(&mut s, style::CURRENT, "->");
    } else if exception {
        paint(&mut s, style::BREAK, ">>");
    }
    s.push('\t');
    let code = code.trim_end();
    match highlighter {
        Some(h) => s.push_str(&h.line(code)),
        None => s.push_str(code),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines_have_pdbs_shape() {
        assert_eq!(listing_line(5, "x = 1  ", false, true, false, None), "  5  ->\tx = 1");
        assert_eq!(listing_line(3, "def f():", true, false, false, None), "  3 B\tdef f():");
        assert_eq!(listing_line(12, "y", true, true, false, None), " 12 B->\ty");
        assert_eq!(listing_line(7, "1/0", false, false, true, None), "  7  >>\t1/0");
        assert_eq!(listing_line(1234, "z", false, false, false, None), "1234 \tz");
        let mut h = Highlighter::new();
        let coloured = listing_line(5, "return 1", true, true, false, Some(&mut h));
        assert!(coloured.starts_with("  5 \x1b[1;31mB\x1b[0m\x1b[1;33m->\x1b[0m\t"), "{coloured:?}");
    }
}
