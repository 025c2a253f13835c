//! A small Python tokenizer for colouring source listings: keywords, strings (with prefixes and
//! triple quotes spanning lines), comments and numbers. Everything else is left as it is.
//!
//! It is a highlighter, not a parser: it never fails, and a listing that starts inside a
//! triple-quoted string is coloured as code until the string's end is seen.

/// ANSI colours used for listings.
pub mod style {
    pub const KEYWORD: &str = "\x1b[35m";
    pub const STRING: &str = "\x1b[32m";
    pub const COMMENT: &str = "\x1b[90m";
    pub const NUMBER: &str = "\x1b[36m";
    pub const CURRENT: &str = "\x1b[1;33m";
    pub const BREAK: &str = "\x1b[1;31m";
    pub const RESET: &str = "\x1b[0m";
}

use super::output::Styled;

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def",
    "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
    "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield", "match",
    "case",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Keyword,
    String,
    Comment,
    Number,
}

/// Colours lines one after the other, carrying an open triple-quoted string across lines.
#[derive(Debug, Default)]
pub struct Highlighter {
    /// The closing quotes of a triple-quoted string still open at the end of the last line.
    open: Option<&'static str>,
}

impl Highlighter {
    pub fn new() -> Highlighter {
        Highlighter::default()
    }

    /// Appends `line` to `out` with ANSI colours (its text escaped by `out`).
    pub fn line(&mut self, line: &str, out: &mut Styled) {
        for (kind, text) in self.tokens(line) {
            match kind {
                Kind::Plain => out.text(text),
                Kind::Keyword => out.paint(style::KEYWORD, text),
                Kind::String => out.paint(style::STRING, text),
                Kind::Comment => out.paint(style::COMMENT, text),
                Kind::Number => out.paint(style::NUMBER, text),
            };
        }
    }

    fn tokens<'a>(&mut self, line: &'a str) -> Vec<(Kind, &'a str)> {
        let bytes = line.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        let mut plain_start = 0;
        let flush = |out: &mut Vec<(Kind, &'a str)>, from: usize, to: usize| {
            if to > from {
                out.push((Kind::Plain, &line[from..to]));
            }
        };
        if let Some(close) = self.open {
            match line.find(close) {
                Some(end) => {
                    let end = end + close.len();
                    out.push((Kind::String, &line[..end]));
                    self.open = None;
                    i = end;
                    plain_start = end;
                }
                None => return vec![(Kind::String, line)],
            }
        }
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'#' {
                flush(&mut out, plain_start, i);
                out.push((Kind::Comment, &line[i..]));
                return out;
            }
            if let Some((prefix_len, quote_len)) = string_start(&bytes[i..]) {
                // Only a prefix that starts a word (not the tail of an identifier).
                if prefix_len == 0 || i == 0 || !is_ident(bytes[i - 1]) {
                    flush(&mut out, plain_start, i);
                    let body = i + prefix_len + quote_len;
                    let quote = &line[i + prefix_len..body];
                    let close: &'static str = match quote {
                        "\"\"\"" => "\"\"\"",
                        "'''" => "'''",
                        "\"" => "\"",
                        _ => "'",
                    };
                    match find_close(&bytes[body..], close.as_bytes()) {
                        Some(end) => {
                            let end = body + end + close.len();
                            out.push((Kind::String, &line[i..end]));
                            i = end;
                        }
                        None => {
                            out.push((Kind::String, &line[i..]));
                            if quote_len == 3 {
                                self.open = Some(close);
                            }
                            return out;
                        }
                    }
                    plain_start = i;
                    continue;
                }
            }
            if is_ident_start(c) {
                let end = i + bytes[i..].iter().take_while(|b| is_ident(**b)).count();
                let word = &line[i..end];
                if KEYWORDS.contains(&word) {
                    flush(&mut out, plain_start, i);
                    out.push((Kind::Keyword, word));
                    plain_start = end;
                }
                i = end;
                continue;
            }
            if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
                flush(&mut out, plain_start, i);
                let end = i + bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'_')
                    .count();
                out.push((Kind::Number, &line[i..end]));
                i = end;
                plain_start = end;
                continue;
            }
            // Skip a whole UTF-8 character.
            i += utf8_len(c);
        }
        flush(&mut out, plain_start, bytes.len().min(line.len()));
        out
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// At a string start: (prefix length, quote length).
fn string_start(s: &[u8]) -> Option<(usize, usize)> {
    let prefix = s
        .iter()
        .take(3)
        .take_while(|c| matches!(c.to_ascii_lowercase(), b'r' | b'b' | b'f' | b'u' | b't'))
        .count();
    let rest = &s[prefix..];
    let q = *rest.first()?;
    if q != b'"' && q != b'\'' {
        return None;
    }
    let triple = rest.len() >= 3 && rest[1] == q && rest[2] == q;
    Some((prefix, if triple { 3 } else { 1 }))
}

/// Offset of the closing quotes in `s`, honouring backslash escapes.
fn find_close(s: &[u8], close: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(close) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(h: &mut Highlighter, line: &str) -> Vec<(Kind, String)> {
        h.tokens(line).into_iter().map(|(k, t)| (k, t.to_string())).collect()
    }

    #[test]
    fn keywords_strings_comments_numbers() {
        let mut h = Highlighter::new();
        let got = kinds(&mut h, "    return price - 0.5 * x  # not 'quoted'");
        assert_eq!(
            got,
            vec![
                (Kind::Plain, "    ".into()),
                (Kind::Keyword, "return".into()),
                (Kind::Plain, " price - ".into()),
                (Kind::Number, "0.5".into()),
                (Kind::Plain, " * x  ".into()),
                (Kind::Comment, "# not 'quoted'".into()),
            ]
        );
        let got = kinds(&mut h, r#"s = f"a\"b" + rb'c' if is_x else x1"#);
        assert!(got.contains(&(Kind::String, r#"f"a\"b""#.into())));
        assert!(got.contains(&(Kind::String, "rb'c'".into())));
        assert!(got.contains(&(Kind::Keyword, "if".into())));
        assert!(!got.iter().any(|(k, t)| *k == Kind::Keyword && t == "is"), "is_x is a name");
        assert!(!got.iter().any(|(k, _)| *k == Kind::Number), "x1 is a name");
    }

    #[test]
    fn triple_quoted_strings_span_lines() {
        let mut h = Highlighter::new();
        assert_eq!(kinds(&mut h, r#"doc = """start"#).last(), Some(&(Kind::String, r#""""start"#.into())));
        assert_eq!(
            kinds(&mut h, "middle # not a comment"),
            vec![(Kind::String, "middle # not a comment".into())]
        );
        let end = kinds(&mut h, r#"end""" + 1"#);
        assert_eq!(end[0], (Kind::String, r#"end""""#.into()));
        assert_eq!(end.last(), Some(&(Kind::Number, "1".into())));
    }

    #[test]
    fn colours_wrap_tokens_and_never_lose_text() {
        let mut h = Highlighter::new();
        let line = "def f(é, x='ü'):  # ünïcode";
        let painted = coloured(&mut h, line);
        assert!(painted.contains("\x1b[35mdef\x1b[0m"));
        let plain: String = strip(&painted);
        assert_eq!(plain, line);
        for odd in ["'", "\"\"\"", "r", "0x", "#", "\\", "b'\\", "1e-3.real"] {
            assert_eq!(strip(&coloured(&mut Highlighter::new(), odd)), odd);
        }
    }

    #[test]
    fn escapes_in_the_source_are_shown_not_sent() {
        let got = coloured(&mut Highlighter::new(), "x = '\x1b[2J'  # \u{202e}\x07");
        assert_eq!(got, "x = \x1b[32m'\\x1b[2J'\x1b[0m  \x1b[90m# \\u202e\\x07\x1b[0m");
    }

    fn coloured(h: &mut Highlighter, line: &str) -> String {
        let mut out = Styled::new();
        h.line(line, &mut out);
        out.as_str().to_string()
    }

    fn strip(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
