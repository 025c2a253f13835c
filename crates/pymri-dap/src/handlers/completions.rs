//! `completions`: names for the debug console, completed in the frame's namespace.
//! Positions are in UTF-16 code units, from 0 or 1 as the client counts columns.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{CompletionItem, CompletionsArguments};
use pymri_session::protocol::requests;
use serde::Serialize;

pub(crate) struct Completions;

#[derive(Debug, Serialize)]
pub(crate) struct Body {
    pub targets: Vec<CompletionItem>,
}

impl Handler for Completions {
    const COMMAND: &'static str = "completions";
    type Arguments = CompletionsArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: CompletionsArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let Some(frame_id) = args.frame_id else { return Ok(Body { targets: Vec::new() }) };
        let (thread, frame) = adapter.frame(frame_id)?;
        let base = adapter.first_column();
        let cursor = usize::try_from(args.column.saturating_sub(base)).unwrap_or(0);
        let before = utf16_prefix(&args.text, cursor);
        let body = session.request(&requests::Completions { thread, frame, text: before.to_string() })?;
        // The agent counts characters; the client counts UTF-16 units.
        let start_units: usize = before.chars().take(body.start).map(char::len_utf16).sum();
        let cursor_units: usize = before.chars().map(char::len_utf16).sum();
        let start = i64::try_from(start_units).unwrap_or(0).saturating_add(base);
        let length = i64::try_from(cursor_units.saturating_sub(start_units)).unwrap_or(0);
        let targets = body.matches.into_iter().map(|label| CompletionItem { label, start, length }).collect();
        Ok(Body { targets })
    }
}

/// The part of `text` before UTF-16 offset `units` (a split surrogate pair is left out).
fn utf16_prefix(text: &str, units: usize) -> &str {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += c.len_utf16();
        if used > units {
            return text.get(..i).unwrap_or(text);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::utf16_prefix;

    #[test]
    fn prefixes_in_utf16_units() {
        assert_eq!(utf16_prefix("os.pa", 5), "os.pa");
        assert_eq!(utf16_prefix("os.pa", 3), "os.");
        assert_eq!(utf16_prefix("😀x", 1), "");
        assert_eq!(utf16_prefix("😀x", 2), "😀");
        assert_eq!(utf16_prefix("é", 9), "é");
    }
}
