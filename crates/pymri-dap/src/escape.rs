//! Text from the debugged program, its agent or a client, made safe to show on a terminal.
//!
//! JSON carries any string exactly, but clients show `output` events as terminal text (VS
//! Code's debug console interprets escape sequences, nvim-dap's REPL and the adapter's own
//! stderr are terminals): a program that prints `ESC ] 0 ; title BEL` would set the editor's or
//! root's window title, and a right-to-left override would make the text after it read
//! backwards. [`terminal_text`] writes control characters as `\xNN` and bidirectional
//! overrides and isolates as `\uNNNN`, so what they were stays visible.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every C0 control character (but line feeds, tabs, and carriage returns that
/// end a line as `\r\n`), DEL, every C1 control character and every bidirectional override or
/// isolate (U+202A-U+202E, U+2066-U+2069) escaped.
pub fn terminal_text(text: &str) -> Cow<'_, str> {
    let mut chars = text.char_indices().peekable();
    let mut out: Option<String> = None;
    while let Some((at, c)) = chars.next() {
        let line_end = c == '\r' && chars.peek().is_some_and(|(_, next)| *next == '\n');
        let kept = c == '\n' || c == '\t' || line_end || !needs_escape(c);
        match (&mut out, kept) {
            (Some(out), true) => out.push(c),
            (None, true) => {}
            (out, false) => {
                let out = out.get_or_insert_with(|| text.get(..at).unwrap_or_default().to_string());
                if u32::from(c) <= 0xff {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                } else {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
            }
        }
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_escaped() {
        assert_eq!(terminal_text("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(terminal_text("\x1b[2J\x1b[H$ "), "\\x1b[2J\\x1b[H$ ");
        assert_eq!(terminal_text("a\u{202e}cba\u{202c}"), "a\\u202ecba\\u202c");
        assert_eq!(terminal_text("\u{2066}\u{2069}\u{202a}"), "\\u2066\\u2069\\u202a");
        assert_eq!(terminal_text("\0\x08\x7f\u{85}\u{9b}"), "\\x00\\x08\\x7f\\x85\\x9b");
    }

    #[test]
    fn lines_tabs_and_plain_text_stay() {
        for text in ["", "plain", "tab\there\n", "windows\r\nlines\r\n", "é€😀 عربى", "\u{200f}mark"]
        {
            assert!(matches!(terminal_text(text), Cow::Borrowed(t) if t == text), "{text:?}");
        }
        // A carriage return that does not end a line rewrites it: shown, not obeyed.
        assert_eq!(terminal_text("100%\rfake"), "100%\\x0dfake");
        assert_eq!(terminal_text("end\r"), "end\\x0d");
        assert_eq!(terminal_text("\r\r\n"), "\\x0d\r\n");
        assert_eq!(terminal_text("é\x1bé"), "é\\x1bé");
    }
}
