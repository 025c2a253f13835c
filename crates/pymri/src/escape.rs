//! Text from targets, cores and agents, made inert for a terminal.
//!
//! A target's user chooses its thread names, function and file names, type names, reprs, source
//! and command line. Printed raw, they could set root's window title, clear the screen, draw a
//! fake prompt, write the clipboard (OSC 52) or reverse a line with a bidi override. So every
//! character a terminal acts on (C0 but newline and tab, DEL, C1) and every invisible character
//! that reorders or hides text is shown as an escape, the way Python's repr writes them:
//! `\x1b`, `\x9b`, `\u202e`. Backslashes are left as they are: a repr already doubles its own,
//! and paths and source would become unreadable.
//!
//! The output layer applies [`text`] to everything it writes (`Printer`, `report_error`, `note`,
//! the REPL's `Out`), so no new message can forget it. A name shown inside a line goes through
//! [`name`] as well, which also escapes newlines and tabs: a thread name must not start a line
//! of its own. JSON output keeps the exact strings, with the same characters written as JSON
//! escapes ([`JsonFormatter`]).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

/// Multi-line text (reprs, source, tracebacks, messages): newlines and tabs stay.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// A name within a line (thread, function, file, type, command line): newlines and tabs are
/// escaped too.
pub fn name(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Whether `s` is shown as it is, as a name.
pub fn is_inert(s: &str) -> bool {
    !s.chars().any(|c| needs_escape(c, false))
}

/// [`name`] for `format!`: `format!("Thread {}", Name(&thread.name))`.
pub struct Name<'a>(pub &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&name(self.0))
    }
}

/// Whether `c` is shown escaped; `lines`: newlines and tabs are part of the text.
fn needs_escape(c: char, lines: bool) -> bool {
    match c {
        '\n' | '\t' => !lines,
        // C0, DEL and C1: a terminal acts on them (ESC starts every sequence, 0x9b is CSI).
        c if c.is_control() => true,
        c => invisible_format(c),
    }
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

fn escape(s: &str, lines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c, lines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c, lines) {
            push_escape(&mut out, c);
        } else {
            out.push(c);
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

/// serde_json's pretty formatter, also writing as `\uXXXX` the characters [`name`] escapes
/// that JSON allows raw (DEL, C1, the invisible ones): the document's strings are exactly the
/// target's, and a terminal showing the document acts on none of them.
pub struct JsonFormatter(serde_json::ser::PrettyFormatter<'static>);

impl JsonFormatter {
    pub fn new() -> JsonFormatter {
        JsonFormatter(serde_json::ser::PrettyFormatter::new())
    }
}

impl serde_json::ser::Formatter for JsonFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if !needs_escape(c, false) {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// `value` as pretty JSON through [`JsonFormatter`], with a final newline.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, JsonFormatter::new());
    value.serialize(&mut serializer)?;
    bytes.push(b'\n');
    // The serializer writes UTF-8 only, and escapes only whole characters.
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\x1b]0;pwned\x07\x1b[2J\u{202e}x\u{9b}\u{7f}\r\n\t\u{e0041}";

    #[test]
    fn every_control_and_invisible_character_is_escaped() {
        assert_eq!(text(HOSTILE), "\\x1b]0;pwned\\x07\\x1b[2J\\u202ex\\x9b\\x7f\\r\n\t\\U000e0041");
        assert_eq!(name(HOSTILE), "\\x1b]0;pwned\\x07\\x1b[2J\\u202ex\\x9b\\x7f\\r\\n\\t\\U000e0041");
        assert_eq!(Name("a\nb").to_string(), "a\\nb");
        assert_eq!(format!("{:<6}|", Name("\x07")), "\\x07  |", "widths count what is shown");
        for c in ['\u{200e}', '\u{2029}', '\u{2066}', '\u{2069}', '\u{feff}', '\u{0}', '\u{85}'] {
            assert!(name(&c.to_string()).starts_with('\\'), "{c:?}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched_and_escaping_is_idempotent() {
        for s in ["café ☕ 中文 \\x1b", "emoji 👨\u{200d}👩", "a/b c.py", "עברית"] {
            assert!(matches!(text(s), Cow::Borrowed(_)), "{s}");
            assert!(matches!(name(s), Cow::Borrowed(_)), "{s}");
        }
        let once = name(HOSTILE).into_owned();
        assert_eq!(name(&once), once);
        assert!(is_inert(&once) && is_inert("abc") && !is_inert("a\x1b") && !is_inert("a\n"));
    }

    #[test]
    fn json_keeps_the_exact_string_with_nothing_raw() {
        let value = serde_json::json!({ "name": HOSTILE, "plain": ["é", 1] });
        let document = json(&value).expect("json");
        assert!(!document.chars().any(|c| needs_escape(c, true)), "{document}");
        assert!(document.contains("\\u202e") && document.contains("\\udb40\\udc41"), "{document}");
        let back: serde_json::Value = serde_json::from_str(&document).expect("parses");
        assert_eq!(back, value);
        let plain = serde_json::json!({ "a": [1, "é"], "b": {} });
        assert_eq!(json(&plain).expect("json"), serde_json::to_string_pretty(&plain).expect("json") + "\n");
    }
}
