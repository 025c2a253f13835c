//! All output goes through here: data to stdout, messages to stderr. A closed stdout (as in
//! `pymri dump PID | head`) ends the command quietly.

use std::io::{self, Write};

/// Buffered stdout that turns a broken pipe into a quiet stop.
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

impl Printer {
    pub fn new() -> Printer {
        Printer { out: io::BufWriter::with_capacity(64 * 1024, io::stdout()) }
    }

    pub fn write_str(&mut self, text: &str) -> Result<(), BrokenPipe> {
        self.out.write_all(text.as_bytes()).map_err(|_| BrokenPipe)
    }

    pub fn flush(&mut self) -> Result<(), BrokenPipe> {
        self.out.flush().map_err(|_| BrokenPipe)
    }
}

/// Writes an error and its hints to stderr: `error: ...` then `hint: ...` lines.
pub fn report_error(err: &anyhow::Error) {
    let mut text = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

/// A message for the user that is not data (progress, warnings).
pub fn note(message: &str) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}
