//! The pdb-compatible REPL, on top of a [`Session`].
//!
//! `pymri run` and `pymri attach` both end here: they produce an authenticated session and call
//! [`run_session`]. The REPL waits for a thread to stop, shows where (`> file(line)func()` then
//! `-> code`, like pdb), reads commands with line editing until one resumes the program, and
//! waits again. Commands are a table ([`commands::COMMANDS`]); each group lives in its own
//! module. Anything that is not a command is Python, evaluated in the selected frame.
//!
//! The prompt is pdb's own, `(Pdb) `: people's muscle memory and the tools that drive pdb
//! (editors' gud modes, scripts that wait for the prompt) work unchanged.
//!
//! Threads: a stop is per thread. The REPL shows one stopped thread at a time (the selected
//! one); other threads that stop meanwhile are announced, listed by `threads`, and reached with
//! `thread N`. After `continue`, a thread that is still stopped is shown next; after a step, the
//! REPL waits for the next stop.

mod breakpoints;
mod commands;
mod console;
mod editor;
mod execution;
mod highlight;
mod inspect;
mod interrupt;
mod output;
mod source;

use crate::escape::Name;
use anyhow::Result;
pub(crate) use console::WebConsole;
use editor::{Input, LineEditor};
use output::{location, Out, Styled};
use pymri_session::protocol::messages::{Event, Exited, Location, StopReason, Stopped};
use pymri_session::protocol::requests::{Pause, Restart, Source, Stack, StackFrame};
use pymri_session::{Selection, Session, SessionError, SessionEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The value a location shows after `->` at a return stop, as pdb abbreviates it.
pub(crate) fn location_retval(stop: &Stopped) -> Option<&str> {
    if stop.reason != StopReason::Return {
        return None;
    }
    stop.return_value_short.as_deref().or(stop.return_value.as_deref())
}

/// How the program came under the debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Started by `pymri run`: `q` ends the program; when it ends it is restarted, like pdb.
    Run,
    /// A running process (`pymri attach`): `q` detaches and the program goes on.
    Attach,
    /// An agent that listens or connected out (`pymri connect`, `pymri listen`): `q` detaches,
    /// leaving the program running (even one the agent started for its debugger); when that
    /// program ends, the agent is told to let its process exit instead of restarting it.
    Remote,
}

pub struct ReplOptions {
    pub mode: Mode,
    /// Commands run at the first stop, as if typed (`-c`), like pdb's.
    pub commands: Vec<String>,
    /// How the program is named in messages ("The script.py will be restarted").
    pub program: String,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitOutcome {
    /// `q` in run mode: the program was ended.
    Quit,
    /// The debugger detached; the program goes on (or went on to its end) without it.
    Detached,
    /// The connection ended without a detach: the program died or closed it.
    Lost(String),
}

/// Runs the REPL until the user quits or detaches, or the session ends.
pub fn run_session(session: Session, options: ReplOptions) -> Result<ExitOutcome> {
    let session = Arc::new(session);
    let running = Arc::new(AtomicBool::new(false));
    let interrupts = interrupt::Interrupts::install(session.waker(), Arc::clone(&running))?;
    let mut repl = Repl::new(Arc::clone(&session), options, running)?;
    let outcome = repl.main_loop();
    repl.editor.save_history();
    interrupts.close();
    outcome
}

/// What a command asks the REPL to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading commands.
    Stay,
    /// A thread (`None`: the program) was resumed: wait for the next stop. With
    /// `others_first`, a thread that is already stopped is shown at once.
    Resume {
        thread: Option<u64>,
        others_first: bool,
    },
    End(ExitOutcome),
}

impl Flow {
    fn resumed(thread: u64) -> Flow {
        Flow::Resume { thread: Some(thread), others_first: false }
    }
}

/// A command's failure: printed as `*** message`, the REPL goes on (unless the session died).
#[derive(Debug)]
pub(crate) enum CmdError {
    User(String),
    Session(SessionError),
}

impl From<SessionError> for CmdError {
    fn from(e: SessionError) -> CmdError {
        CmdError::Session(e)
    }
}

pub(crate) type CmdResult = std::result::Result<Flow, CmdError>;

pub(crate) fn user_error<T>(message: impl Into<String>) -> std::result::Result<T, CmdError> {
    Err(CmdError::User(message.into()))
}

/// pdb 3.14's answer to a command that needs an argument and got none; `usage` is the first
/// line of the command's help.
pub(crate) fn missing_argument<T>(usage: &str) -> std::result::Result<T, CmdError> {
    user_error(format!("Argument is required for this command\n      Usage: {usage}"))
}

/// pdb 3.13's answer to an argument it cannot use.
pub(crate) fn invalid_argument<T>(arg: &str, usage: &str) -> std::result::Result<T, CmdError> {
    user_error(format!("Invalid argument: {arg}\n      Usage: {usage}"))
}

/// A `display` expression and the value it showed last, per frame.
struct Display {
    key: FrameKey,
    expression: String,
    last: String,
}

/// Identifies "the same frame" across stops: thread, code location, and depth from the
/// outermost frame (frame ids do not survive a resume).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FrameKey {
    thread: u64,
    file: String,
    function: String,
    depth: u32,
}

/// Small numbers for threads, main thread first, in order of first sight (`thread N`).
#[derive(Default)]
struct ThreadNumbers {
    numbers: Vec<u64>,
}

impl ThreadNumbers {
    fn number(&mut self, ident: u64) -> usize {
        match self.numbers.iter().position(|&t| t == ident) {
            Some(i) => i + 1,
            None => {
                self.numbers.push(ident);
                self.numbers.len()
            }
        }
    }

    fn ident(&self, number: usize) -> Option<u64> {
        number.checked_sub(1).and_then(|i| self.numbers.get(i)).copied()
    }
}

pub(crate) struct Repl {
    session: Arc<Session>,
    out: Out,
    editor: LineEditor,
    mode: Mode,
    program: String,
    /// `-c` commands still to run (at the next stop).
    rc_lines: VecDeque<String>,
    /// Set while the program runs and the REPL waits: Ctrl-C then means "pause".
    running: Arc<AtomicBool>,
    last_command: String,
    /// pdb's `lineno`: the last line `list` showed, so that `list` again continues.
    listed_to: Option<(String, u32)>,
    /// The selected thread's frames at this stop, fetched on first use.
    stack: Option<Vec<StackFrame>>,
    files: HashMap<String, Option<Arc<Vec<String>>>>,
    displays: Vec<Display>,
    bp_commands: HashMap<u64, Vec<String>>,
    /// Breakpoints named at another line than theirs: pdb up to 3.12 names a breakpoint on a
    /// function that is not defined yet by its `def` line; pymri's is a line breakpoint at the
    /// body's first line.
    bp_lines: HashMap<u64, u32>,
    threads: ThreadNumbers,
    sticky: bool,
    last_presented: Option<u64>,
    /// A stop has been shown since the program (re)started (run mode).
    stopped_this_run: bool,
    /// The program ended while another thread was stopped at the prompt.
    pending_exit: Option<Exited>,
    /// Commands come one at a time from elsewhere (the web console) and print into a buffer;
    /// another front end takes the session's events.
    headless: bool,
    /// Say, once the first wait has begun, that the program runs (a remote agent in attach
    /// mode lets it run when the session starts) and how to stop it.
    announce_running: bool,
}

impl Repl {
    fn new(session: Arc<Session>, options: ReplOptions, running: Arc<AtomicBool>) -> Result<Repl> {
        let editor = LineEditor::new(Arc::clone(&session))?;
        let announce_running = options.mode == Mode::Remote && session.ready().mode == "attach";
        Ok(Repl {
            editor,
            rc_lines: options.commands.into_iter().collect(),
            running,
            headless: false,
            announce_running,
            ..Repl::headless(session, options.mode, options.program, Out::new())
        })
    }

    /// A REPL that only runs commands ([`Repl::execute`]), printing into `out`; it never reads
    /// input nor takes events out of the session.
    fn headless(session: Arc<Session>, mode: Mode, program: String, out: Out) -> Repl {
        let mut threads = ThreadNumbers::default();
        threads.number(session.ready().main_thread);
        Repl {
            session,
            out,
            editor: LineEditor::closed(),
            mode,
            program,
            rc_lines: VecDeque::new(),
            running: Arc::new(AtomicBool::new(false)),
            last_command: String::new(),
            listed_to: None,
            stack: None,
            files: HashMap::new(),
            displays: Vec::new(),
            bp_commands: HashMap::new(),
            bp_lines: HashMap::new(),
            threads,
            sticky: false,
            last_presented: None,
            stopped_this_run: false,
            pending_exit: None,
            headless: true,
            announce_running: false,
        }
    }

    fn main_loop(&mut self) -> Result<ExitOutcome> {
        let mut flow = Flow::Resume { thread: None, others_first: true };
        loop {
            flow = match flow {
                Flow::Stay => self.prompt_loop(),
                Flow::Resume { thread, others_first } => self.wait_for_stop(thread, others_first),
                Flow::End(outcome) => {
                    return match self.out.failure() {
                        Some(e) => Err(e),
                        None => Ok(outcome),
                    }
                }
            };
        }
    }

    // -----------------------------------------------------------------------------------------
    // Waiting for the program

    /// Waits until a thread stops (and shows it), the program ends, or the session does.
    fn wait_for_stop(&mut self, resumed: Option<u64>, others_first: bool) -> Flow {
        self.stack = None;
        if others_first {
            let other = self.session.state().stopped().iter().find(|s| Some(s.thread) != resumed).cloned();
            if let Some(stop) = other {
                self.running.store(false, Ordering::SeqCst);
                return self.present(&stop);
            }
        }
        if let Some(exited) = self.pending_exit.take() {
            if let Some(flow) = self.on_exit(&exited) {
                self.running.store(false, Ordering::SeqCst);
                return flow;
            }
        }
        self.running.store(true, Ordering::SeqCst);
        if std::mem::take(&mut self.announce_running) {
            // Only now: Ctrl-C pauses the program from here on.
            self.out.line("The program is running: Ctrl-C stops its main thread at its next line.");
        }
        let flow = loop {
            let Some(event) = self.session.next_event(None) else {
                break Flow::End(ExitOutcome::Lost("the session ended".into()));
            };
            match event {
                SessionEvent::Event(Event::Stopped(stop)) => {
                    self.running.store(false, Ordering::SeqCst);
                    break self.present(&stop);
                }
                SessionEvent::Event(Event::Exited(exited)) => {
                    if let Some(flow) = self.on_exit(&exited) {
                        break flow;
                    }
                }
                SessionEvent::Woken => {
                    if self.running.load(Ordering::SeqCst) {
                        self.interrupt();
                    }
                }
                other => {
                    if let Some(flow) = self.on_background_event(other) {
                        break flow;
                    }
                }
            }
        };
        self.running.store(false, Ordering::SeqCst);
        flow
    }

    /// Ctrl-C while the program runs: stop the main thread at its next line (pdb's behaviour).
    fn interrupt(&mut self) {
        self.out.line("\nProgram interrupted. (Use 'cont' to resume).");
        let main = self.session.ready().main_thread;
        let paused = match self.session.request(&Pause { thread: Some(main) }) {
            Ok(_) => Ok(()),
            // The main thread is gone, or cannot be paused on this version: pause them all.
            Err(e) if e.agent_error().is_some() => self.session.request(&Pause { thread: None }).map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = paused {
            self.out.error(&e.to_string());
        }
    }

    /// Events that need no stop: output, consumed temporary breakpoints, thread news, the end.
    /// Returns a flow when the session is over.
    fn on_background_event(&mut self, event: SessionEvent) -> Option<Flow> {
        match event {
            SessionEvent::Event(Event::Output(o)) => {
                if o.category == "agent_error" {
                    self.out.error(&format!("pymri agent error (please report it):\n{}", o.text.trim_end()));
                } else {
                    self.out.text(&o.text);
                }
            }
            SessionEvent::Event(Event::Breakpoint(b)) if b.reason == "removed" => {
                self.bp_commands.remove(&b.breakpoint.id);
                let text = format!(
                    "Deleted breakpoint {} at {}",
                    b.breakpoint.id,
                    breakpoints::where_(&breakpoints::shown(self, &b.breakpoint))
                );
                self.bp_lines.remove(&b.breakpoint.id);
                self.out.line(&text);
            }
            SessionEvent::Event(Event::Thread(t)) => {
                self.threads.number(t.thread);
            }
            SessionEvent::Event(Event::Detached(d)) => {
                if d.reason == "exit" {
                    self.out.line("The program exited; the debugger is detached.");
                }
                return Some(Flow::End(ExitOutcome::Detached));
            }
            SessionEvent::Closed(reason) => return Some(Flow::End(ExitOutcome::Lost(reason))),
            _ => {}
        }
        None
    }

    /// The program ended (run mode). Like pdb, it is restarted; `None` means "keep waiting".
    fn on_exit(&mut self, exited: &Exited) -> Option<Flow> {
        if self.mode == Mode::Remote && exited.reason != "quit" {
            // Nobody here can start it again: its process ends with the program's status.
            self.out.line(&format!("The program finished (exit status {}).", exited.code));
            return Some(self.quit_program());
        }
        if self.mode != Mode::Run || exited.reason == "quit" {
            return Some(Flow::End(ExitOutcome::Quit));
        }
        if !self.stopped_this_run {
            // It never reached its first line (a missing module, a syntax error: the launcher
            // printed why). Restarting would fail the same way.
            return Some(self.quit_program());
        }
        match exited.reason.as_str() {
            // pdb 3.13 says the same after a post-mortem as after a normal end.
            "exception" if self.python_at_least(13) => {
                self.out.line("The program finished and will be restarted")
            }
            "exception" => self.out.line(&format!(
                "Post mortem debugger finished. The {} will be restarted",
                Name(&self.program)
            )),
            _ if exited.code != 0 => {
                self.out.line(&format!("The program exited via sys.exit(). Exit status: {}", exited.code));
                // pdb 3.13 adds its line of every restart.
                if self.python_at_least(13) {
                    self.out.line("The program finished and will be restarted");
                }
            }
            _ => self.out.line("The program finished and will be restarted"),
        }
        self.stopped_this_run = false;
        self.session.state().restarted();
        self.forget_run();
        match self.session.request(&Restart {}) {
            Ok(_) => None,
            Err(e) => {
                self.out.error(&e.to_string());
                Some(self.quit_program())
            }
        }
    }

    /// Sends `quit` and waits for the agent to let go (run mode).
    fn quit_program(&mut self) -> Flow {
        match self.session.request(&pymri_session::protocol::requests::Quit {}) {
            Ok(_) => {}
            Err(e) if e.is_fatal() => return Flow::End(ExitOutcome::Quit),
            Err(e) => self.out.error(&e.to_string()),
        }
        self.wait_for_end(ExitOutcome::Quit)
    }

    /// After `quit`/`detach`: waits (bounded) for the agent's last events.
    fn wait_for_end(&mut self, outcome: ExitOutcome) -> Flow {
        if self.headless {
            // The front end that owns the events sees the agent let go.
            return Flow::End(outcome);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.session.next_event(Some(left)) {
                None | Some(SessionEvent::Closed(_)) | Some(SessionEvent::Event(Event::Detached(_))) => break,
                Some(SessionEvent::Event(Event::Output(o))) => self.out.text(&o.text),
                Some(_) => {}
            }
        }
        Flow::End(outcome)
    }

    // -----------------------------------------------------------------------------------------
    // Showing a stop

    fn present(&mut self, stop: &Stopped) -> Flow {
        // A thread stopped before the program was seen running (one waiting in `set_trace`).
        self.announce_running = false;
        self.session.state().select_thread(stop.thread);
        self.stack = None;
        self.listed_to = None;
        self.stopped_this_run = true;
        let number = self.threads.number(stop.thread);
        let main = self.session.ready().main_thread;
        let switched = match self.last_presented {
            Some(last) => last != stop.thread,
            None => stop.thread != main,
        };
        self.last_presented = Some(stop.thread);
        if switched {
            self.out.line(&format!("[Thread {number} ({})]", Name(&stop.thread_name)));
        }
        if stop.post_mortem {
            if self.mode == Mode::Run && stop.thread == main {
                self.out.line("Uncaught exception. Entering post mortem debugging");
                self.out.line("Running 'cont' or 'step' will restart the program");
            } else {
                let what = stop.exception.as_ref().map_or("an exception", |e| e.text.as_str());
                self.out.line(&format!(
                    "Uncaught exception in thread {}: {what}. Entering post mortem debugging",
                    Name(&stop.thread_name)
                ));
            }
        }
        if let Some(e) = &stop.condition_error {
            self.out.error(&format!("Error in breakpoint condition (stopping): {e}"));
        }
        // `-c` commands, before the location is shown (pdb's order); one that resumes keeps the
        // rest for the next stop.
        while let Some(line) = self.rc_lines.pop_front() {
            match self.execute(&line) {
                Flow::Stay => {}
                flow => return flow,
            }
        }
        if stop.reason == StopReason::Breakpoint {
            let lines: Vec<String> = stop
                .breakpoints
                .iter()
                .filter_map(|id| self.bp_commands.get(id))
                .flatten()
                .cloned()
                .collect();
            if !lines.is_empty() {
                return self.run_breakpoint_commands(stop, &lines);
            }
        }
        self.show_stop(stop);
        self.show_displays();
        Flow::Stay
    }

    /// A breakpoint's `commands`: run in order; `silent` hides the location; a resuming command
    /// ends the list and resumes without a prompt (pdb).
    fn run_breakpoint_commands(&mut self, stop: &Stopped, lines: &[String]) -> Flow {
        // They do not change what an empty line repeats (pdb).
        let last_command = self.last_command.clone();
        let flow = self.run_breakpoint_commands_inner(stop, lines);
        self.last_command = last_command;
        flow
    }

    fn run_breakpoint_commands_inner(&mut self, stop: &Stopped, lines: &[String]) -> Flow {
        let silent = lines.iter().any(|l| l.trim() == "silent");
        for line in lines.iter().filter(|l| l.trim() != "silent") {
            if commands::is_resuming(line) {
                if !silent {
                    self.show_stop(stop);
                }
                let flow = self.execute(line);
                if flow != Flow::Stay {
                    return flow;
                }
            } else if let Flow::End(o) = self.execute(line) {
                return Flow::End(o);
            }
        }
        if !silent {
            self.show_stop(stop);
        }
        self.show_displays();
        Flow::Stay
    }

    /// `--Call--` or `--Return--` (where a step entered or left a function) or the exception
    /// (where a step met one) and the location, or the sticky view.
    fn show_stop(&mut self, stop: &Stopped) {
        if self.sticky {
            self.show_sticky();
            return;
        }
        match stop.reason {
            StopReason::Call => self.out.line("--Call--"),
            StopReason::Return => self.out.line("--Return--"),
            _ => {}
        }
        if stop.reason == StopReason::Exception && !stop.post_mortem {
            // pdb's `user_exception`: the exception's line, before the frame unwinds.
            if let Some(exc) = &stop.exception {
                self.out.line(&exc.text);
            }
        }
        if let Some(frame) = &stop.frame {
            let retval = location_retval(stop);
            let text = self.entry_text(frame, retval, true);
            self.out.styled_line(&text);
        }
    }

    /// pdb's stack entry: `> /path/file.py(LINE)function()[->retval]` and `-> code`.
    fn entry_text(&mut self, frame: &Location, retval: Option<&str>, current: bool) -> Styled {
        let mut text = Styled::new();
        text.text(if current { "> " } else { "  " });
        text.text(&location(&frame.file, frame.line, &frame.function));
        if let Some(rv) = retval {
            text.text("->").name(rv);
        }
        if let Some(code) = self.source_line(&frame.file, frame.line) {
            text.text("\n-> ").append(&self.out.code(code.trim()));
        }
        text
    }

    /// One line of a file, through a cache of whole files (cleared when the program restarts).
    fn source_line(&mut self, file: &str, line: u32) -> Option<String> {
        if !self.files.contains_key(file) {
            let lines = self
                .session
                .request(&Source { file: Some(file.to_string()), ..Default::default() })
                .ok()
                .map(|body| Arc::new(body.lines));
            self.files.insert(file.to_string(), lines);
        }
        let lines = self.files.get(file)?.as_ref()?;
        lines.get((line as usize).checked_sub(1)?).cloned()
    }

    /// Whether the program's Python is `3.minor` or newer: pdb's messages changed between
    /// versions, and pymri says what the program's own pdb would.
    fn python_at_least(&self, minor: u32) -> bool {
        let version = &self.session.ready().python.version_info;
        version.first().is_some_and(|&major| major > 3)
            || (version.first() == Some(&3) && version.get(1).is_some_and(|&m| m >= minor))
    }

    /// The selected thread and frame, or a user error if no thread is stopped.
    fn selection(&self) -> std::result::Result<Selection, CmdError> {
        match self.session.state().selection() {
            Some(s) => Ok(s),
            None => user_error("No thread is stopped"),
        }
    }

    fn selected_stop(&self) -> std::result::Result<Stopped, CmdError> {
        match self.session.state().selected_stop() {
            Some(s) => Ok(s.clone()),
            None => user_error("No thread is stopped"),
        }
    }

    /// The selected thread's frames (innermost first), fetched once per stop.
    fn frames(&mut self) -> std::result::Result<Vec<StackFrame>, CmdError> {
        if let Some(frames) = &self.stack {
            return Ok(frames.clone());
        }
        let sel = self.selection()?;
        let body = self.session.request(&Stack { thread: sel.thread, start: None, levels: None })?;
        self.stack = Some(body.frames.clone());
        Ok(body.frames)
    }

    /// The selected frame's location.
    fn current_frame(&mut self) -> std::result::Result<StackFrame, CmdError> {
        let sel = self.selection()?;
        let frames = self.frames()?;
        match frames.into_iter().find(|f| f.index == sel.frame) {
            Some(f) => Ok(f),
            None => user_error("the selected frame is gone"),
        }
    }

    fn frame_key(&mut self) -> std::result::Result<FrameKey, CmdError> {
        let sel = self.selection()?;
        let frames = self.frames()?;
        let total = frames.len() as u32;
        let frame = frames.iter().find(|f| f.index == sel.frame).cloned();
        match frame {
            Some(f) => Ok(FrameKey {
                thread: sel.thread,
                file: f.file,
                function: f.function,
                depth: total.saturating_sub(sel.frame + 1),
            }),
            None => user_error("the selected frame is gone"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reading and running commands

    fn prompt_loop(&mut self) -> Flow {
        loop {
            if self.out.failed() {
                // Nobody sees the conversation any more: end it as at the end of input.
                return self.end_of_input();
            }
            if let Some(flow) = self.drain_events() {
                return flow;
            }
            if self.session.state().selection().is_none() {
                // The selected thread went away (it ended, or the agent let it go).
                return Flow::Resume { thread: None, others_first: true };
            }
            let line = match self.editor.read("(Pdb) ") {
                Input::Line(line) => {
                    self.editor.add_history(&line);
                    line
                }
                Input::Interrupted => continue,
                Input::Eof => {
                    self.out.line("");
                    return self.end_of_input();
                }
            };
            let flow = self.execute(&line);
            if flow != Flow::Stay {
                return flow;
            }
        }
    }

    /// No more input: `EOF` (like `quit`). If the agent does not let go, asking again would
    /// loop for ever on an input that stays at its end: the connection is closed instead (the
    /// agent detaches when it sees it closed).
    fn end_of_input(&mut self) -> Flow {
        match self.execute("EOF") {
            Flow::Stay => Flow::End(ExitOutcome::Lost(
                "end of input, and the agent did not let go: the connection was closed".into(),
            )),
            flow => flow,
        }
    }

    /// Events that arrived while the user was at the prompt.
    fn drain_events(&mut self) -> Option<Flow> {
        while let Some(event) = self.session.try_event() {
            match event {
                SessionEvent::Event(Event::Stopped(stop)) => {
                    let number = self.threads.number(stop.thread);
                    let at = stop
                        .frame
                        .as_ref()
                        .map(|f| format!(" at {}", location(&f.file, f.line, &f.function)))
                        .unwrap_or_default();
                    self.out.line(&format!(
                        "Thread {number} ({}) stopped ({}){at}; \"thread {number}\" switches to it",
                        Name(&stop.thread_name),
                        stop.reason.as_str()
                    ));
                }
                SessionEvent::Event(Event::Exited(exited)) => {
                    self.out.line(&format!("The main thread finished (exit status {}).", exited.code));
                    self.pending_exit = Some(exited);
                }
                other => {
                    if let Some(flow) = self.on_background_event(other) {
                        return Some(flow);
                    }
                }
            }
        }
        None
    }

    /// Runs one input line (an empty one repeats the last command, like pdb).
    pub(crate) fn execute(&mut self, line: &str) -> Flow {
        let line = line.trim();
        let line = if line.is_empty() {
            if self.last_command.is_empty() {
                return Flow::Stay;
            }
            self.last_command.clone()
        } else {
            self.last_command = line.to_string();
            line.to_string()
        };
        let result = self.dispatch(&line);
        match result {
            Ok(flow) => flow,
            Err(CmdError::User(message)) => {
                self.out.error(&message);
                Flow::Stay
            }
            Err(CmdError::Session(e)) => self.session_error(e),
        }
    }

    fn session_error(&mut self, e: SessionError) -> Flow {
        if let Some(agent) = e.agent_error() {
            self.out.error(&agent.message);
            return Flow::Stay;
        }
        if e.is_fatal() {
            self.out.error(&e.to_string());
            return Flow::End(ExitOutcome::Lost(e.to_string()));
        }
        self.out.error(&e.to_string());
        Flow::Stay
    }

    fn dispatch(&mut self, line: &str) -> CmdResult {
        if let Some(statement) = line.strip_prefix('!') {
            return inspect::evaluate_line(self, statement);
        }
        let (word, arg) = commands::split(line);
        match commands::find(word) {
            Some(spec) if !commands::looks_like_assignment(arg) => (spec.run)(self, arg),
            _ => inspect::evaluate_line(self, line),
        }
    }

    /// Drops what belonged to the last run of the program (its source may have changed).
    fn forget_run(&mut self) {
        self.files.clear();
        self.stack = None;
    }
}
