//! All output goes through here: data to stdout, messages to stderr, both made inert for a
//! terminal ([`crate::escape`]). A closed stdout (as in `pymri dump PID | head`) ends the
//! command quietly; any other failure to write it (a full disk, `> /dev/full`) is an error.

use crate::escape;
use std::io::{self, Write};

/// Buffered stdout.
pub struct Printer {
    out: io::BufWriter<io::Stdout>,
}

/// Raised when stdout was closed by the reader; `main` exits 0 on it.
#[derive(Debug)]
pub struct BrokenPipe;

impl std::fmt::Display for BrokenPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for BrokenPipe {}

/// The error for a failed write to stdout: [`BrokenPipe`] when the reader went away, else the
/// I/O error itself.
pub fn stdout_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(BrokenPipe)
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

impl Printer {
    pub fn new() -> Printer {
        Printer { out: io::BufWriter::with_capacity(64 * 1024, io::stdout()) }
    }

    /// Text for a person (escaped; newlines and tabs kept).
    pub fn write_str(&mut self, text: &str) -> anyhow::Result<()> {
        self.out.write_all(escape::text(text).as_bytes()).map_err(stdout_error)
    }

    /// `value` as pretty JSON: exact strings, nothing a terminal acts on.
    pub fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> anyhow::Result<()> {
        let document = escape::json(value)?;
        self.out.write_all(document.as_bytes()).map_err(stdout_error)
    }

    /// Text already made inert (a JSON line from `escape::json_line`), written as it is.
    pub fn write_raw(&mut self, text: &str) -> anyhow::Result<()> {
        self.out.write_all(text.as_bytes()).map_err(stdout_error)
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().map_err(stdout_error)
    }
}

/// Writes an error and its hints to stderr: `error: ...` then `hint: ...` lines.
pub fn report_error(err: &anyhow::Error) {
    note(&error_text(err));
}

fn error_text(err: &anyhow::Error) -> String {
    let mut text = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    escape::text(&text).into_owned()
}

/// A message for the user that is not data (progress, warnings).
pub fn note(message: &str) {
    let _ = writeln!(io::stderr().lock(), "{}", escape::text(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quoting_target_strings_are_inert() {
        let err = anyhow::anyhow!("no thread named \x1b]0;pwned\x07\u{202e}").context("dumping \x1b[2J");
        assert_eq!(
            error_text(&err),
            "error: dumping \\x1b[2J\n  caused by: no thread named \\x1b]0;pwned\\x07\\u202e"
        );
    }
}
