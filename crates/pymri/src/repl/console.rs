//! The REPL's command layer for `pymri web`'s console: the same table of pdb commands and the
//! same Python evaluation, printing into a buffer that the page shows after each command.
//!
//! The web front end owns the session's events and the selection; this REPL never reads input
//! or waits for a stop. Commands that need a prompt of their own (`interact`, `commands`) say
//! so; `cl` without argument clears every breakpoint without asking (there is no one to ask).

use super::output::{Out, SharedBuffer};
use super::{Flow, Mode, Repl};
use pymri_session::Session;
use std::sync::{Arc, Mutex};

pub(crate) struct WebConsole {
    repl: Repl,
    buffer: SharedBuffer,
}

impl WebConsole {
    pub(crate) fn new(session: Arc<Session>, mode: Mode, program: String) -> WebConsole {
        let buffer: SharedBuffer = Arc::new(Mutex::new(Vec::new()));
        let repl = Repl::headless(session, mode, program, Out::buffer(Arc::clone(&buffer)));
        WebConsole { repl, buffer }
    }

    fn take_output(&self) -> String {
        let bytes = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl pymri_web::Console for WebConsole {
    fn execute(&mut self, line: &str) -> pymri_web::ConsoleOutput {
        let flow = self.repl.execute(line);
        pymri_web::ConsoleOutput { text: self.take_output(), ended: matches!(flow, Flow::End(_)) }
    }

    fn reset(&mut self) {
        let repl = &mut self.repl;
        repl.stack = None;
        repl.listed_to = None;
        repl.files.clear();
        let stopped: Vec<u64> = repl.session.state().stopped().iter().map(|s| s.thread).collect();
        for thread in stopped {
            repl.threads.number(thread);
        }
        repl.last_presented = repl.session.state().selection().map(|s| s.thread);
    }
}

#[cfg(test)]
mod tests {
    use super::super::output::Out;
    use std::sync::{Arc, Mutex};

    #[test]
    fn buffered_output_is_plain_text() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let mut out = Out::buffer(Arc::clone(&buffer));
        out.line("> /srv/a.py(3)f()");
        out.error("NameError: name 'x' is not defined\nmore");
        out.text("printed\n");
        let text = String::from_utf8(buffer.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text, "> /srv/a.py(3)f()\n*** NameError: name 'x' is not defined\nmore\nprinted\n");
        assert_eq!(out.code("x = 1").as_str(), "x = 1", "no colours in a buffer");
    }
}
