//! `pymri exec PID (-c CODE | FILE | -)`: run code in a running process at the next safe point
//! of one of its threads, show what it prints, and let go.
//!
//! The agent is injected as for `attach` and stops the chosen thread where the injection ran;
//! one `exec` request runs the code there (its output arrives as `output` events while it runs)
//! and a `detach` removes every hook and lets the thread go on. Nobody is prompted in between:
//! besides the code, the thread waits for the agent's start and a few messages on a local socket.

use super::attach::{connect_quietly, Attached};
use crate::escape;
use anyhow::{bail, Context, Result};
use pymri_inject::attach::AttachError;
use pymri_session::protocol::messages::{Event, Output};
use pymri_session::protocol::requests::{Detach, Exec, Executed};
use pymri_session::{Session, SessionError, SessionEvent};
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The most code pymri sends (the agent refuses more too).
const MAX_CODE: u64 = 1024 * 1024;
/// How long the agent gets to confirm its detach (hooks removed) before pymri exits anyway.
const DETACH_WAIT: Duration = Duration::from_secs(5);

pub enum Code {
    Inline(String),
    File(PathBuf),
    Stdin,
}

pub struct ExecOptions {
    pub pid: i32,
    /// Kernel thread id (as `pymri dump` shows it) of the thread to run in; the main one if absent.
    pub thread: Option<i32>,
    pub timeout: Duration,
    pub code: Code,
}

/// Returns the exit status: 0 when the code ran, 1 when it raised.
pub fn run(opts: ExecOptions) -> Result<u8> {
    // Read before attaching: bad input leaves the target untouched.
    let (source, filename) = read_code(&opts.code)?;
    let Attached { pending, session, .. } = connect_quietly(opts.pid, opts.thread, opts.timeout, true)?;
    let outcome = execute(&session, source, filename, opts.timeout);
    detach(&session);
    // The staging directory goes after the session: the agent imports parts of itself lazily.
    drop(pending);
    outcome
}

fn read_code(code: &Code) -> Result<(String, String)> {
    let (bytes, filename) = match code {
        Code::Inline(text) => (text.clone().into_bytes(), "<exec>".to_string()),
        Code::Stdin => {
            (read_bounded(io::stdin().lock()).context("reading the code from stdin")?, "<stdin>".into())
        }
        Code::File(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            (
                read_bounded(file).with_context(|| format!("reading {}", path.display()))?,
                path.display().to_string(),
            )
        }
    };
    if bytes.len() as u64 > MAX_CODE {
        bail!(
            "the code is longer than {} KiB\nhint: import a module from the target's path instead",
            MAX_CODE / 1024
        );
    }
    match String::from_utf8(bytes) {
        Ok(source) => Ok((source, filename)),
        Err(_) => bail!("the code in {filename} is not UTF-8"),
    }
}

/// At most one byte more than [`MAX_CODE`]: enough to tell that it is too long.
fn read_bounded(reader: impl Read) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(MAX_CODE + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn execute(session: &Session, source: String, filename: String, timeout: Duration) -> Result<u8> {
    let thread = wait_for_stop(session, timeout)?;
    let request = Exec { thread, source, filename };
    let waker = session.waker();
    let mut streams = Streams::new();
    let answer = std::thread::scope(|scope| {
        let asked = scope.spawn(|| {
            // As long as the code runs: it is the user's to bound (Ctrl-C ends pymri, and the
            // agent then detaches on its own).
            let answer = session.request_with_timeout(&request, None);
            waker.wake();
            answer
        });
        loop {
            match session.next_event(None) {
                Some(SessionEvent::Event(Event::Output(output))) => streams.show(&output),
                Some(SessionEvent::Woken) | Some(SessionEvent::Closed(_)) | None => break,
                Some(SessionEvent::Event(_)) => {}
            }
        }
        asked.join()
    });
    let answer = match answer {
        Ok(answer) => answer,
        Err(_) => bail!("the request to the agent failed"),
    };
    let executed: Executed = match answer {
        Ok(executed) => executed,
        Err(SessionError::Closed(reason)) => bail!("the session with the agent was lost: {reason}"),
        Err(e) => return Err(e).context("running the code"),
    };
    if executed.dropped > 0 {
        streams.err(&format!(
            "pymri: {} more characters of output were not sent (the limit is 8 MiB per run)\n",
            executed.dropped
        ));
    }
    streams.flush();
    match executed.exception {
        Some(exception) => {
            let text = if exception.traceback.is_empty() { exception.text } else { exception.traceback };
            streams.err(&text);
            if !text.ends_with('\n') {
                streams.err("\n");
            }
            Ok(1)
        }
        None => Ok(0),
    }
}

/// The thread the agent stopped for us (the `stopped` event after the injection).
fn wait_for_stop(session: &Session, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut streams = Streams::new();
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(AttachError::Timeout(format!(
                "the chosen thread did not reach a safe point within {timeout:?}\nhint: pymri runs the code when that thread next runs Python code; try again, or use --timeout"
            ))
            .into());
        };
        match session.next_event(Some(left)) {
            Some(SessionEvent::Event(Event::Stopped(stop))) => return Ok(stop.thread),
            Some(SessionEvent::Event(Event::Output(output))) => streams.show(&output),
            Some(SessionEvent::Closed(reason)) => bail!("the session with the agent was lost: {reason}"),
            _ => {}
        }
    }
}

/// Removes every hook and lets the thread go on; waits (bounded) until the agent says it did.
fn detach(session: &Session) {
    if session.request(&Detach {}).is_err() {
        return;
    }
    let deadline = Instant::now() + DETACH_WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match session.next_event(Some(left)) {
            None | Some(SessionEvent::Closed(_)) | Some(SessionEvent::Event(Event::Detached(_))) => break,
            Some(_) => {}
        }
    }
}

/// pymri's stdout and stderr as the code's: its text made inert where it reaches a terminal,
/// unchanged into a file or a pipe. A closed stdout stops that stream, not the run.
struct Streams {
    out: Option<io::Stdout>,
    out_tty: bool,
    err_tty: bool,
}

impl Streams {
    fn new() -> Streams {
        let out = io::stdout();
        let out_tty = out.is_terminal();
        Streams { out: Some(out), out_tty, err_tty: io::stderr().is_terminal() }
    }

    fn show(&mut self, output: &Output) {
        match output.category.as_str() {
            "stdout" => self.out(&output.text),
            _ => self.err(&output.text),
        }
    }

    fn out(&mut self, text: &str) {
        let Some(out) = &self.out else { return };
        let text = if self.out_tty { escape::text(text) } else { text.into() };
        let mut out = out.lock();
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            self.out = None;
        }
    }

    fn err(&mut self, text: &str) {
        let text = if self.err_tty { escape::text(text) } else { text.into() };
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }

    fn flush(&mut self) {
        if let Some(out) = &self.out {
            let _ = out.lock().flush();
        }
    }
}
