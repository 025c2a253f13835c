//! The adapter's state and its one loop: everything that happens (a client request, an agent
//! event, program output, the program's end) arrives as an [`Input`] on one queue and is
//! handled here in arrival order, on one thread. Requests go to their handler
//! (`handlers/`); agent events become DAP events.
//!
//! Ordering: a handler's response is written before any event it caused (events raised while
//! a request is handled wait in `deferred`), and the agent's events reach the client in the
//! order the agent sent them.

use crate::codec::{self, CodecError};
use crate::debuggee::{Debuggee, Origin};
use crate::error::DapError;
use crate::escape::terminal_text;
use crate::handlers;
use crate::ids::{FrameIds, SourceRefs, ThreadIds};
use crate::paths::PathMap;
use crate::types::{
    Breakpoint, BreakpointEvent, ContinuedEvent, Event, ExitedEvent, NotARequest, OutputEvent, Request,
    Response, Source, StoppedEvent, ThreadEvent,
};
use pymri_session::protocol::messages::{Event as AgentEvent, StopReason, Stopped};
use pymri_session::protocol::requests::{Continue, Next, Quit};
use pymri_session::{Session, SessionEvent};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// What the adapter's loop takes in.
pub enum Input {
    /// A decoded message from the client, or why it could not be decoded.
    Client(Result<Value, CodecError>),
    /// The client's stream ended.
    ClientClosed,
    /// An agent event of the debuggee of that epoch.
    Agent(u64, SessionEvent),
    /// Program output (`stdout` or `stderr`) of a launched program.
    Output(u64, &'static str, String),
    /// The launched program exited and its output was read.
    ProgramEnded(u64),
}

/// Where diagnostics for the person running the adapter go (stderr, in the binary).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// Writes numbered messages to the client; after a write error it drops everything.
pub struct Sink {
    writer: Box<dyn Write + Send>,
    seq: i64,
    broken: bool,
}

impl Sink {
    pub fn new(writer: Box<dyn Write + Send>) -> Sink {
        Sink { writer, seq: 0, broken: false }
    }

    fn send(&mut self, build: impl FnOnce(i64) -> Value) {
        if self.broken {
            return;
        }
        self.seq = self.seq.saturating_add(1);
        let bytes = codec::encode(&build(self.seq));
        if self.writer.write_all(&bytes).and_then(|()| self.writer.flush()).is_err() {
            self.broken = true;
        }
    }
}

pub struct Adapter {
    sink: Sink,
    pub(crate) tx: Sender<Input>,
    pub(crate) log: Log,
    /// Whether the client counts lines and columns from 1 (the default) or 0.
    pub(crate) lines_from_1: bool,
    pub(crate) columns_from_1: bool,
    /// `initialize` succeeded. Every other request is refused before it: a client that does
    /// not begin so is not an editor (a web page posting to the port, say).
    pub(crate) initialized: bool,
    pub(crate) debuggee: Option<Debuggee>,
    epochs: u64,
    pub(crate) threads: ThreadIds,
    pub(crate) frames: FrameIds,
    pub(crate) sources: SourceRefs,
    pub(crate) paths: PathMap,
    /// `configurationDone` was received.
    pub(crate) configured: bool,
    pub(crate) stop_on_entry: bool,
    /// The first stop of an attach, held back until `configurationDone` decides whether the
    /// client sees it (`stopOnEntry`) or the thread just goes on.
    pub(crate) held_stop: Option<Box<Stopped>>,
    /// Threads in a DAP `stepOut`: the agent stops at the return, then steps into the caller.
    pub(crate) stepping_out: HashSet<u64>,
    /// Threads resumed by the adapter on its own, whose `continued` the client must not see.
    quiet: HashSet<u64>,
    pub(crate) exception_filters: Vec<String>,
    pub(crate) function_breakpoints: HashSet<u64>,
    /// The launched program said it exited; `quit` was sent.
    program_exited: bool,
    terminated: bool,
    /// Events raised while a request is handled, sent after its response.
    deferred: Option<Vec<Event>>,
    /// The client said goodbye (or left): the loop ends.
    pub(crate) done: bool,
}

impl Adapter {
    pub fn new(sink: Sink, tx: Sender<Input>, log: Log) -> Adapter {
        Adapter {
            sink,
            tx,
            log,
            lines_from_1: true,
            columns_from_1: true,
            initialized: false,
            debuggee: None,
            epochs: 0,
            threads: ThreadIds::default(),
            frames: FrameIds::default(),
            sources: SourceRefs::default(),
            paths: PathMap::default(),
            configured: false,
            stop_on_entry: false,
            held_stop: None,
            stepping_out: HashSet::new(),
            quiet: HashSet::new(),
            exception_filters: Vec::new(),
            function_breakpoints: HashSet::new(),
            program_exited: false,
            terminated: false,
            deferred: None,
            done: false,
        }
    }

    pub fn done(&self) -> bool {
        self.done || self.sink.broken
    }

    pub fn handle(&mut self, input: Input) {
        match input {
            Input::Client(Ok(value)) => match Request::from_value(value) {
                Ok(request) => self.on_request(request),
                Err(NotARequest::Ignored) => {}
                Err(NotARequest::Malformed { seq, command, why }) => {
                    (self.log)(&format!("pymri dap: malformed request from the client: {why}"));
                    self.respond(Response { request_seq: seq, command, result: Err(why) });
                }
            },
            Input::Client(Err(e)) => {
                (self.log)(&format!("pymri dap: {e}"));
                if e.is_fatal() {
                    self.client_gone();
                } else {
                    self.respond(Response {
                        request_seq: 0,
                        command: String::new(),
                        result: Err(e.to_string()),
                    });
                }
            }
            Input::ClientClosed => self.client_gone(),
            Input::Agent(epoch, event) if self.current(epoch) => self.on_agent(event),
            Input::Output(epoch, category, text) if self.current(epoch) => {
                let output = terminal_text(&text).into_owned();
                self.event(Event::new("output", OutputEvent { category, output, source: None, line: None }));
            }
            Input::ProgramEnded(epoch) if self.current(epoch) => self.program_ended(),
            // Leftovers of an earlier debuggee.
            Input::Agent(..) | Input::Output(..) | Input::ProgramEnded(_) => {}
        }
    }

    fn current(&self, epoch: u64) -> bool {
        self.debuggee.as_ref().is_some_and(|d| d.epoch == epoch)
    }

    pub(crate) fn next_epoch(&mut self) -> u64 {
        self.epochs = self.epochs.saturating_add(1);
        self.epochs
    }

    /// Takes on the debuggee `launch` or `attach` made (of epoch `epoch`, from
    /// [`next_epoch`](Self::next_epoch)) and tells the client to configure it.
    pub(crate) fn begin(
        &mut self,
        epoch: u64,
        session: Session,
        origin: Origin,
        paths: PathMap,
        stop_on_entry: bool,
    ) {
        self.paths = paths;
        self.stop_on_entry = stop_on_entry;
        self.debuggee = Some(Debuggee::new(session, origin, epoch, &self.tx));
        self.event(Event::new("initialized", Value::Null));
    }

    fn on_request(&mut self, request: Request) {
        self.deferred = Some(Vec::new());
        let result = if self.initialized || request.command == "initialize" {
            handlers::dispatch(self, &request)
        } else {
            Err(DapError::NotInitialized(request.command.clone()))
        };
        let result = result.map_err(|e| {
            // What the person running the adapter may need: protocol mistakes and failed starts
            // (the user sees every error in the editor anyway).
            let starting = matches!(request.command.as_str(), "launch" | "attach");
            if starting
                || matches!(
                    e,
                    DapError::BadArguments { .. } | DapError::Unsupported(_) | DapError::NotInitialized(_)
                )
            {
                (self.log)(&format!("pymri dap: {} failed: {e}", request.command));
            }
            e.to_string()
        });
        self.respond(Response { request_seq: request.seq, command: request.command, result });
        for event in self.deferred.take().unwrap_or_default() {
            self.event(event);
        }
    }

    fn respond(&mut self, response: Response) {
        self.sink.send(|seq| response.to_message(seq));
    }

    /// Sends an event, after the response if a request is being handled.
    pub(crate) fn event(&mut self, event: Event) {
        match &mut self.deferred {
            Some(queue) => queue.push(event),
            None => self.sink.send(|seq| event.to_message(seq)),
        }
    }

    /// Sends an event at once, even before the response of the request being handled.
    pub(crate) fn event_now(&mut self, event: Event) {
        self.sink.send(|seq| event.to_message(seq));
    }

    /// A message in the client's console; what it quotes may come from the program.
    pub(crate) fn console(&mut self, text: &str) {
        let mut output = terminal_text(text).into_owned();
        if !output.ends_with('\n') {
            output.push('\n');
        }
        self.event(Event::new(
            "output",
            OutputEvent { category: "console", output, source: None, line: None },
        ));
    }

    // -----------------------------------------------------------------------------------------
    // Helpers for handlers

    pub(crate) fn session(&self) -> Result<Arc<Session>, DapError> {
        self.debuggee.as_ref().map(|d| Arc::clone(&d.session)).ok_or(DapError::NoDebuggee)
    }

    /// The agent's thread for a client's thread id.
    pub(crate) fn ident(&self, thread_id: i64) -> Result<u64, DapError> {
        self.threads.ident(thread_id).ok_or(DapError::NoSuchThread(thread_id))
    }

    /// The agent's thread and frame index for a client's frame id.
    pub(crate) fn frame(&self, frame_id: i64) -> Result<(u64, u32), DapError> {
        self.frames.get(frame_id).ok_or(DapError::NoSuchFrame(frame_id))
    }

    /// A line from the client, as the agent counts (from 1).
    pub(crate) fn line_in(&self, line: i64) -> u32 {
        let line = if self.lines_from_1 { line } else { line.saturating_add(1) };
        u32::try_from(line).unwrap_or(0)
    }

    /// A line from the agent, as the client counts.
    pub(crate) fn line_out(&self, line: u32) -> i64 {
        let line = i64::from(line);
        if self.lines_from_1 {
            line
        } else {
            line.saturating_sub(1).max(0)
        }
    }

    pub(crate) fn first_column(&self) -> i64 {
        i64::from(self.columns_from_1)
    }

    /// How the client names a file of the program: a path it can open, or a reference to ask
    /// us for the text of a file that does not exist (`<string>`).
    pub(crate) fn source_for(&mut self, file: &str) -> Source {
        if file.starts_with('<') && file.ends_with('>') {
            return Source {
                name: Some(file.to_string()),
                path: None,
                source_reference: Some(self.sources.reference(file)),
            };
        }
        let local = self.paths.to_local(file);
        let name = std::path::Path::new(&local).file_name().map(|n| n.to_string_lossy().into_owned());
        Source { name, path: Some(local), source_reference: None }
    }

    /// Resumes a thread without the client seeing a `continued` event.
    pub(crate) fn resume_quietly(&mut self, ident: u64) {
        let Ok(session) = self.session() else { return };
        self.quiet.insert(ident);
        if let Err(e) = session.request(&Continue { thread: Some(ident) }) {
            self.quiet.remove(&ident);
            (self.log)(&format!("pymri dap: resuming thread {ident}: {e}"));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Agent events

    fn on_agent(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Event(event) => self.on_agent_event(event),
            SessionEvent::Woken => {}
            SessionEvent::Closed(reason) => {
                let launched = self.debuggee.as_ref().is_some_and(Debuggee::is_launch);
                if launched {
                    // The program's end (`ProgramEnded`) ends the session.
                    if !self.program_exited {
                        self.console(&format!(
                            "pymri: the debugger's connection to the program ended: {reason}"
                        ));
                    }
                } else {
                    self.terminate_session();
                }
            }
        }
    }

    fn on_agent_event(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Stopped(stop) => self.on_stopped(stop),
            AgentEvent::Continued(c) => {
                self.frames.resumed(c.thread);
                if !self.quiet.remove(&c.thread) {
                    let thread_id = self.threads.id(c.thread);
                    self.event(Event::new(
                        "continued",
                        ContinuedEvent { thread_id, all_threads_continued: false },
                    ));
                }
            }
            AgentEvent::Thread(t) => {
                let reason = if t.reason == "exited" { "exited" } else { "started" };
                let thread_id = self.threads.id(t.thread);
                if reason == "exited" {
                    self.frames.resumed(t.thread);
                }
                self.event(Event::new("thread", ThreadEvent { reason, thread_id }));
            }
            AgentEvent::Output(o) => {
                let (output, source, line) = if o.category == "log" {
                    let source = o.file.as_deref().map(|f| self.source_for(f));
                    (terminal_text(&o.text).into_owned(), source, o.line.map(|l| self.line_out(l)))
                } else {
                    (format!("pymri agent: {}", terminal_text(&o.text)), None, None)
                };
                self.event(Event::new("output", OutputEvent { category: "console", output, source, line }));
            }
            AgentEvent::Breakpoint(b) if b.reason == "removed" => {
                let breakpoint = Breakpoint {
                    id: i64::try_from(b.breakpoint.id).ok(),
                    verified: false,
                    ..Breakpoint::default()
                };
                self.event(Event::new("breakpoint", BreakpointEvent { reason: "removed", breakpoint }));
            }
            AgentEvent::Exited(_) => {
                // `run` keeps the program's interpreter waiting for `restart` or `quit`: end it.
                self.program_exited = true;
                if let Ok(session) = self.session() {
                    let _ = session.request(&Quit {});
                }
            }
            AgentEvent::Detached(d) => {
                let launched = self.debuggee.as_ref().is_some_and(Debuggee::is_launch);
                if !launched && d.reason == "exit" {
                    self.terminate_session();
                }
            }
            // `ready` came with the handshake; unknown events are a newer agent's.
            _ => {}
        }
    }

    fn on_stopped(&mut self, stop: Box<Stopped>) {
        let ident = stop.thread;
        self.frames.resumed(ident);
        self.threads.id(ident);
        let attached = self.debuggee.as_ref().is_some_and(|d| !d.is_launch());
        if stop.reason == StopReason::Attach && attached {
            if !self.configured {
                self.held_stop = Some(stop);
                return;
            }
            if !self.stop_on_entry {
                self.resume_quietly(ident);
                return;
            }
        }
        if self.stepping_out.remove(&ident) && stop.reason == StopReason::Return {
            // DAP's step out ends in the caller; the agent stopped at the return: one `next`
            // from there lands in the caller.
            if let Ok(session) = self.session() {
                self.quiet.insert(ident);
                if session.request(&Next { thread: ident, stop_at_return: false }).is_ok() {
                    return;
                }
                self.quiet.remove(&ident);
            }
        }
        if stop.post_mortem && !self.exception_filters.iter().any(|f| f == "uncaught") {
            // `run` always stops after an uncaught exception; the client did not ask for it.
            self.resume_quietly(ident);
            return;
        }
        self.send_stopped(&stop);
    }

    pub(crate) fn send_stopped(&mut self, stop: &Stopped) {
        let function_bp = stop.breakpoints.iter().any(|id| self.function_breakpoints.contains(id));
        let reason: &'static str = match stop.reason {
            StopReason::Attach | StopReason::Entry => "entry",
            StopReason::Breakpoint if function_bp => "function breakpoint",
            StopReason::Breakpoint => "breakpoint",
            StopReason::Step | StopReason::Return => "step",
            StopReason::Pause => "pause",
            StopReason::Exception => "exception",
            _ => "pause",
        };
        let (description, text) = match (&stop.condition_error, &stop.exception) {
            (Some(err), _) => {
                (Some("Breakpoint condition error".to_string()), Some(terminal_text(err).into_owned()))
            }
            (None, Some(exc)) => {
                let what = if stop.post_mortem { "Uncaught exception" } else { "Exception" };
                let description = format!("{what}: {}", terminal_text(&exc.type_name));
                (Some(description), Some(terminal_text(&exc.text).into_owned()))
            }
            (None, None) => (None, None),
        };
        let body = StoppedEvent {
            reason,
            thread_id: self.threads.id(stop.thread),
            all_threads_stopped: false,
            preserve_focus_hint: false,
            description,
            text,
            hit_breakpoint_ids: stop.breakpoints.iter().filter_map(|id| i64::try_from(*id).ok()).collect(),
        };
        self.event(Event::new("stopped", body));
    }

    fn program_ended(&mut self) {
        let status = self.debuggee.as_mut().and_then(Debuggee::launched).and_then(|l| l.reap());
        let exit_code = match status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => i64::from(code),
                (None, Some(sig)) => 128 + i64::from(sig),
                (None, None) => 1,
            },
            None => 1,
        };
        self.event(Event::new("exited", ExitedEvent { exit_code }));
        self.terminate_session();
    }

    /// Says `terminated` (once): the client then disconnects.
    pub(crate) fn terminate_session(&mut self) {
        if !self.terminated {
            self.terminated = true;
            self.event(Event::new("terminated", Value::Null));
        }
    }

    // -----------------------------------------------------------------------------------------
    // The end

    /// The loop ended: whatever is still being debugged is let go as `disconnect` would.
    pub fn finish(&mut self) {
        self.end_debuggee(None);
    }

    /// The client went away without `disconnect`: what `disconnect` does by default.
    fn client_gone(&mut self) {
        self.end_debuggee(None);
        self.done = true;
    }

    /// Lets the debuggee go: a launched program is killed (unless `terminate` is false: then
    /// it runs on without the debugger); an attached one is detached (and sent SIGTERM if
    /// `terminate` is true).
    pub(crate) fn end_debuggee(&mut self, terminate: Option<bool>) {
        let Some(mut debuggee) = self.debuggee.take() else { return };
        match &mut debuggee.origin {
            Origin::Launch(launched) => {
                if terminate.unwrap_or(true) {
                    launched.signal(libc::SIGKILL);
                    launched.reap();
                } else {
                    detach(&debuggee.session);
                    // It runs on undebugged: reap it when it ends, and only then remove the
                    // agent's directory (the program may still read from it).
                    if let Origin::Launch(mut launched) =
                        std::mem::replace(&mut debuggee.origin, Origin::Connect)
                    {
                        let _ = std::thread::Builder::new().name("pymri-dap-reap".into()).spawn(move || {
                            launched.reap();
                        });
                    }
                }
            }
            Origin::Attach { pid, .. } => {
                let pid = *pid;
                detach(&debuggee.session);
                if terminate == Some(true) {
                    // SAFETY: kill(2) with a pid and a signal; the user asked for it to end.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
            Origin::Connect => detach(&debuggee.session),
        }
        drop(debuggee);
    }

    /// Ends the launched program gracefully: the agent's `quit` ends it at its stop (or next
    /// line); SIGTERM follows if it is still running a moment later (blocked in C code).
    pub(crate) fn terminate_program(&mut self) {
        let Some(debuggee) = self.debuggee.as_mut() else { return };
        let session = Arc::clone(&debuggee.session);
        let Some(launched) = debuggee.launched() else { return };
        if launched.exited() {
            return;
        }
        if session.request(&Quit {}).is_ok() {
            launched.signal_later(libc::SIGTERM, Duration::from_secs(2));
        } else {
            launched.signal(libc::SIGTERM);
        }
    }
}

fn detach(session: &Session) {
    if !session.is_closed() {
        let _ = session.request_with_timeout(
            &pymri_session::protocol::requests::Detach {},
            Some(Duration::from_secs(5)),
        );
    }
    session.close();
}
