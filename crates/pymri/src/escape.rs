//! The CLI's side of making target text inert: the rules themselves live in `pymri-text`,
//! shared with the DAP server; this module re-exports them for the output layer and adds the
//! JSON formatter.
//!
//! The output layer applies [`text`] to everything it writes (`Printer`, `report_error`, `note`,
//! the REPL's `Out`), so no new message can forget it. A name shown inside a line goes through
//! [`name`] as well, which also escapes newlines and tabs: a thread name must not start a line
//! of its own. JSON output keeps the exact strings, with the same characters written as JSON
//! escapes ([`JsonFormatter`]).

use std::io;

use pymri_text::escaped_in_name;
pub use pymri_text::{is_inert, name, text, Name};

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
            if !escaped_in_name(c) {
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

/// `value` as one line of JSON (JSON Lines), with the same strings and the same escapes as
/// [`json`]: compact JSON puts the characters [`name`] escapes only inside strings, where a
/// `\uXXXX` escape means the same character.
pub fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let compact = serde_json::to_string(value)?;
    let mut out = String::with_capacity(compact.len() + 1);
    for c in compact.chars() {
        if escaped_in_name(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\x1b]0;pwned\x07\x1b[2J\u{202e}x\u{9b}\u{7f}\r\n\t\u{e0041}";

    #[test]
    fn json_keeps_the_exact_string_with_nothing_raw() {
        let value = serde_json::json!({ "name": HOSTILE, "plain": ["é", 1] });
        let document = json(&value).expect("json");
        assert!(!document.chars().any(|c| escaped_in_name(c) && c != '\n'), "{document}");
        assert!(document.contains("\\u202e") && document.contains("\\udb40\\udc41"), "{document}");
        let back: serde_json::Value = serde_json::from_str(&document).expect("parses");
        assert_eq!(back, value);
        let line = json_line(&value).expect("json line");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(!line.trim_end().chars().any(escaped_in_name), "{line}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&line).expect("parses"), value);
        let plain = serde_json::json!({ "a": [1, "é"], "b": {} });
        assert_eq!(json(&plain).expect("json"), serde_json::to_string_pretty(&plain).expect("json") + "\n");
    }
}
