//! Text chosen by a target, a core or an agent, made inert for a terminal.
//!
//! A target's user chooses its thread names, function and file names, type names, reprs, source,
//! command line and everything its program prints. Shown raw, they could set root's window
//! title, clear the screen, draw a fake prompt, write the clipboard (OSC 52) or reverse a line
//! with a bidi override. So every character a terminal acts on (C0 but newline and tab, DEL,
//! C1) and every invisible character that reorders or hides text is shown as an escape, the way
//! Python's repr writes them: `\x1b`, `\x9b`, `\u202e`. Backslashes are left as they are: a
//! repr already doubles its own, and paths and source would become unreadable.
//!
//! Every front end that shows such text uses this crate, so they agree on what is escaped: the
//! CLI's output layer (the printer, error lines, the REPL), the DAP server's `output` events and
//! log. Non-goals: escaping for HTML (the web page puts text in DOM text nodes) or for JSON
//! (JSON escapes itself; the CLI's JSON formatter asks [`escaped_in_name`] which characters to
//! write as `\u` escapes).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Multi-line text (reprs, source, tracebacks, messages): newlines and tabs stay.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, Keep::Lines)
}

/// A name within a line (thread, function, file, type, command line): newlines and tabs are
/// escaped too, so that a name cannot start a line of its own.
pub fn name(s: &str) -> Cow<'_, str> {
    escape(s, Keep::Nothing)
}

/// A program's output stream: as [`text`], and a carriage return that ends a line (`\r\n`)
/// stays too. A lone one, which would rewrite the line, is escaped. A chunk ending in `\r`
/// has it escaped: callers that relay a stream hold such a final `\r` back for the next chunk.
pub fn output(s: &str) -> Cow<'_, str> {
    escape(s, Keep::LinesAndCrlf)
}

/// Whether `s` is shown as it is, as a name.
pub fn is_inert(s: &str) -> bool {
    !s.chars().any(escaped_in_name)
}

/// Whether [`name`] escapes `c`.
pub fn escaped_in_name(c: char) -> bool {
    c.is_control() || invisible_format(c)
}

/// [`name`] for `format!`: `format!("Thread {}", Name(&thread.name))`; widths count what is
/// shown.
pub struct Name<'a>(pub &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&name(self.0))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Keep {
    Nothing,
    Lines,
    LinesAndCrlf,
}

/// Invisible characters that reorder or hide text: bidi marks, embeddings, overrides and
/// isolates; zero-width space and word joiners; line and paragraph separators (some terminals
/// break lines at them); the byte order mark; interlinear annotations; tag characters (which
/// hide ASCII text). Zero-width (non-)joiners are left alone: scripts and emoji need them.
fn invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

fn kept(c: char, next: Option<char>, keep: Keep) -> bool {
    match c {
        '\n' | '\t' => keep != Keep::Nothing,
        '\r' => keep == Keep::LinesAndCrlf && next == Some('\n'),
        c => !escaped_in_name(c),
    }
}

fn escape(s: &str, keep: Keep) -> Cow<'_, str> {
    let mut chars = s.chars().peekable();
    let mut clean = true;
    while let Some(c) = chars.next() {
        if !kept(c, chars.peek().copied(), keep) {
            clean = false;
            break;
        }
    }
    if clean {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if kept(c, chars.peek().copied(), keep) {
            out.push(c);
        } else {
            push_escape(&mut out, c);
        }
    }
    Cow::Owned(out)
}

fn push_escape(out: &mut String, c: char) {
    let _ = match c {
        '\n' => out.write_str("\\n"),
        '\t' => out.write_str("\\t"),
        '\r' => out.write_str("\\r"),
        c if u32::from(c) < 0x100 => write!(out, "\\x{:02x}", u32::from(c)),
        c if u32::from(c) < 0x10000 => write!(out, "\\u{:04x}", u32::from(c)),
        c => write!(out, "\\U{:08x}", u32::from(c)),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\x1b]0;pwned\x07\x1b[2J\u{202e}x\u{9b}\u{7f}\r\n\t\u{e0041}";

    #[test]
    fn every_control_and_invisible_character_is_escaped() {
        assert_eq!(text(HOSTILE), "\\x1b]0;pwned\\x07\\x1b[2J\\u202ex\\x9b\\x7f\\r\n\t\\U000e0041");
        assert_eq!(name(HOSTILE), "\\x1b]0;pwned\\x07\\x1b[2J\\u202ex\\x9b\\x7f\\r\\n\\t\\U000e0041");
        assert_eq!(output(HOSTILE), "\\x1b]0;pwned\\x07\\x1b[2J\\u202ex\\x9b\\x7f\r\n\t\\U000e0041");
        assert_eq!(Name("a\nb").to_string(), "a\\nb");
        assert_eq!(format!("{:<6}|", Name("\x07")), "\\x07  |", "widths count what is shown");
        for c in ['\u{200e}', '\u{2029}', '\u{2066}', '\u{2069}', '\u{feff}', '\u{0}', '\u{85}'] {
            assert!(name(&c.to_string()).starts_with('\\'), "{c:?}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched_and_escaping_is_idempotent() {
        for s in ["café ☕ 中文 \\x1b", "emoji 👨\u{200d}👩", "a/b c.py", "עברית", ""] {
            assert!(matches!(text(s), Cow::Borrowed(_)), "{s}");
            assert!(matches!(name(s), Cow::Borrowed(_)), "{s}");
            assert!(matches!(output(s), Cow::Borrowed(_)), "{s}");
        }
        let once = name(HOSTILE).into_owned();
        assert_eq!(name(&once), once);
        assert!(is_inert(&once) && is_inert("abc") && !is_inert("a\x1b") && !is_inert("a\n"));
    }

    #[test]
    fn output_keeps_line_ends_but_not_lone_carriage_returns() {
        assert!(matches!(output("windows\r\nlines\r\n"), Cow::Borrowed(_)));
        assert_eq!(output("100%\rfake"), "100%\\rfake");
        assert_eq!(output("end\r"), "end\\r");
        assert_eq!(output("\r\r\n"), "\\r\r\n");
        assert_eq!(output("é\x1bé"), "é\\x1bé");
    }
}
