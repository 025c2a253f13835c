//! The debugger behind the page: the page's API requests turned into agent requests, and the
//! session's events turned into live updates.
//!
//! One thread (the caller of [`Debugger::run`]) takes every event out of the session, keeps the
//! selection (the thread and frame the page and the console look at: the first stopped thread
//! unless the user picked another) and broadcasts each event to the event sockets. The page
//! answers an event by asking for the state again ([`Debugger::state`]), so every page shows the
//! same thing whatever it missed.

use crate::server::{Handler, Hub, Running, Server};
use pymri_session::protocol::messages::Event;
use pymri_session::protocol::requests::{
    ClearBreakpoints, Continue, Detach, EvalMode, Evaluate, ListBreakpoints, Next, Pause, Quit, Request,
    Restart, SetBreakpoint, Step, StepOut,
};
use pymri_session::{Session, SessionError, SessionEvent};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the program came under the debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A running process (`pymri web PID`, `--connect`): ending the session detaches.
    Attach,
    /// Started by pymri: ending the session ends the program (like pdb's `q`).
    Launch,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Attach => "attach",
            Mode::Launch => "launch",
        }
    }
}

/// The console's command layer: pdb's commands and Python, as typed at pdb's prompt.
pub trait Console: Send {
    /// Runs one line in the selected thread and frame; returns what it printed.
    fn execute(&mut self, line: &str) -> ConsoleOutput;
    /// The program moved on or another thread or frame was selected: forget what was cached
    /// about the last stop.
    fn reset(&mut self);
}

#[derive(Debug, Clone, Default)]
pub struct ConsoleOutput {
    pub text: String,
    /// The command ended the session (`q`, `detach`).
    pub ended: bool,
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The program was ended (launch mode).
    Quit,
    /// The debugger let go; the program goes on without it.
    Detached,
    /// The connection ended without a detach: the program died or closed it.
    Lost(String),
}

pub struct WebOptions {
    pub mode: Mode,
    /// How the program is named on the page.
    pub program: String,
    /// Messages for the person who started pymri (the program exited, the session ended).
    pub notify: Box<dyn Fn(&str) + Send + Sync>,
}

/// How long the agent has to let go after a detach or quit before the connection is cut.
const END_TIMEOUT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct ConsoleSlot {
    console: Box<dyn Console>,
    /// The stop generation the console's caches belong to.
    seen: u64,
}

pub struct Debugger {
    session: Arc<Session>,
    console: Mutex<ConsoleSlot>,
    hub: Hub,
    options: WebOptions,
    /// Bumped whenever what the console looks at may have changed.
    generation: AtomicU64,
    /// Set once the user asked to end (detach, quit, Ctrl-C).
    ending: AtomicBool,
    /// What the end request asked for.
    wanted: Mutex<Option<Outcome>>,
}

/// Requests whose answers go to the page as the agent sent them.
macro_rules! raw_request {
    ($name:ident, $cmd:literal) => {
        #[derive(Serialize)]
        #[serde(transparent)]
        struct $name(Value);
        impl Request for $name {
            const COMMAND: &'static str = $cmd;
            type Body = Value;
        }
    };
}
raw_request!(RawThreads, "threads");
raw_request!(RawStack, "stack");
raw_request!(RawSource, "source");
raw_request!(RawScopes, "scopes");
raw_request!(RawVariables, "variables");

/// An API failure, shown to the user as is.
struct ApiError(String);

impl From<SessionError> for ApiError {
    /// The agent's message as it is for its errors (that is `SessionError::Agent`'s text).
    fn from(e: SessionError) -> ApiError {
        ApiError(e.to_string())
    }
}

type ApiResult = Result<Value, ApiError>;

fn arg_u64(request: &Value, name: &str) -> Result<u64, ApiError> {
    request.get(name).and_then(Value::as_u64).ok_or_else(|| ApiError(format!("missing {name}")))
}

fn arg_str<'a>(request: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    request.get(name).and_then(Value::as_str).ok_or_else(|| ApiError(format!("missing {name}")))
}

impl Debugger {
    pub fn new(
        session: Arc<Session>,
        console: Box<dyn Console>,
        options: WebOptions,
        hub: Hub,
    ) -> Arc<Debugger> {
        Arc::new(Debugger {
            session,
            console: Mutex::new(ConsoleSlot { console, seen: 0 }),
            hub,
            options,
            generation: AtomicU64::new(1),
            ending: AtomicBool::new(false),
            wanted: Mutex::new(None),
        })
    }

    /// Serves `server` and follows the session until it ends; returns how it ended.
    pub fn run(self: &Arc<Self>, server: Server) -> std::io::Result<Outcome> {
        let mut running = server.spawn(Arc::clone(self) as Arc<dyn Handler>)?;
        let outcome = self.pump();
        self.finish(&mut running, &outcome);
        Ok(outcome)
    }

    /// Ends the session: detaches (attach mode) or ends the program (launch mode). Returns at
    /// once; a second call cuts the connection without waiting for the agent.
    pub fn end(&self) {
        self.end_with(self.ending_outcome());
    }

    /// What ending the session means in this mode.
    fn ending_outcome(&self) -> Outcome {
        match self.options.mode {
            Mode::Attach => Outcome::Detached,
            Mode::Launch => Outcome::Quit,
        }
    }

    fn end_with(&self, outcome: Outcome) {
        if self.ending.swap(true, Ordering::SeqCst) {
            self.session.close();
            return;
        }
        *lock(&self.wanted) = Some(outcome.clone());
        let session = Arc::clone(&self.session);
        let _ = std::thread::Builder::new().name("pymri-web-end".into()).spawn(move || {
            let sent = match outcome {
                Outcome::Quit => session.request_with_timeout(&Quit {}, Some(END_TIMEOUT)).map(|_| ()),
                _ => session.request_with_timeout(&Detach {}, Some(END_TIMEOUT)).map(|_| ()),
            };
            if sent.is_err() {
                session.close();
                return;
            }
            // The agent lets go and closes the connection; if it does not, cut it.
            let deadline = Instant::now() + END_TIMEOUT;
            while Instant::now() < deadline && !session.is_closed() {
                std::thread::sleep(Duration::from_millis(50));
            }
            session.close();
        });
    }

    fn pump(&self) -> Outcome {
        loop {
            let Some(event) = self.session.next_event(None) else {
                return self.ended_as(Outcome::Lost("the session ended".into()));
            };
            match event {
                SessionEvent::Event(event) => {
                    if let Some(outcome) = self.on_event(event) {
                        return outcome;
                    }
                }
                SessionEvent::Woken => {}
                SessionEvent::Closed(reason) => return self.ended_as(Outcome::Lost(reason)),
            }
        }
    }

    /// What the session's end means: what the user asked for, if they asked.
    fn ended_as(&self, otherwise: Outcome) -> Outcome {
        lock(&self.wanted).clone().unwrap_or(otherwise)
    }

    fn on_event(&self, event: Event) -> Option<Outcome> {
        let message = match &event {
            Event::Stopped(stop) => json!({"type": "stopped", "body": **stop}),
            Event::Continued(c) => json!({"type": "continued", "body": c}),
            Event::Thread(t) => json!({"type": "thread", "body": t}),
            Event::Output(o) => json!({"type": "output", "body": o}),
            Event::Breakpoint(b) => json!({"type": "breakpoint", "body": **b}),
            Event::Exited(e) if self.options.mode == Mode::Attach => {
                // Only an agent that started the program itself (`python -m pymri_agent
                // --wait`, reached with `--connect`) says so; nobody here can restart it, so its
                // process is let go to exit with the program's status.
                (self.options.notify)(&format!("The program exited (status {}).", e.code));
                self.hub.broadcast(&json!({"type": "exited", "body": e}));
                self.end_with(Outcome::Quit);
                return None;
            }
            Event::Exited(e) => {
                if e.reason != "quit" {
                    (self.options.notify)(&format!(
                        "The program exited (status {}); restart it from the page, or press Ctrl-C to end.",
                        e.code
                    ));
                }
                json!({"type": "exited", "body": e})
            }
            Event::Detached(d) => {
                let outcome = match (self.options.mode, d.reason.as_str()) {
                    (Mode::Launch, "quit") => Outcome::Quit,
                    _ => Outcome::Detached,
                };
                return Some(self.ended_as(outcome));
            }
            // `ready` came with the handshake; unknown events are a newer agent's.
            _ => return None,
        };
        if matches!(event, Event::Stopped(_) | Event::Continued(_) | Event::Thread(_)) {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.select_a_stopped_thread();
        }
        self.hub.broadcast(&message);
        None
    }

    /// Nothing selected (the selected thread resumed): the oldest stop is shown next.
    fn select_a_stopped_thread(&self) {
        let mut state = self.session.state();
        if state.selection().is_none() {
            if let Some(first) = state.stopped().first().map(|s| s.thread) {
                state.select_thread(first);
            }
        }
    }

    fn finish(&self, running: &mut Running, outcome: &Outcome) {
        let reason = match outcome {
            Outcome::Quit => "The program was ended.".to_string(),
            Outcome::Detached => "Detached: the program goes on without the debugger.".to_string(),
            Outcome::Lost(reason) => format!("The session ended: {reason}."),
        };
        self.hub.broadcast(&json!({"type": "ended", "body": {"reason": reason}}));
        // Let the event sockets send it before they close.
        self.hub.close_all();
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.hub.sockets() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        running.stop();
    }

    /// Text the program wrote (`stdout` or `stderr`) when its streams are ours to show.
    pub fn program_output(&self, stream: &str, text: &str) {
        self.hub.broadcast(&json!({"type": "output", "body": {"category": stream, "text": text}}));
    }

    /// Everything a page shows outside the selected frame.
    pub fn state(&self) -> Value {
        let ready = self.session.ready().clone();
        let breakpoints =
            self.session.request(&ListBreakpoints {}).map(|b| b.breakpoints).unwrap_or_default();
        let state = self.session.state();
        let selection = state.selection().map(|s| json!({"thread": s.thread, "frame": s.frame}));
        json!({
            "mode": self.options.mode.as_str(),
            "program": self.options.program,
            "pid": ready.pid,
            "python": ready.python.version,
            "main_thread": ready.main_thread,
            "stopped": state.stopped(),
            "selection": selection,
            "exited": state.exited(),
            "ending": self.ending.load(Ordering::SeqCst),
            "breakpoints": breakpoints,
        })
    }

    fn selected_thread(&self, request: &Value) -> Result<u64, ApiError> {
        if let Some(t) = request.get("thread").and_then(Value::as_u64) {
            return Ok(t);
        }
        self.session
            .state()
            .selection()
            .map(|s| s.thread)
            .ok_or_else(|| ApiError("No thread is stopped".into()))
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.hub.broadcast(&json!({"type": "changed"}));
    }

    fn dispatch(&self, op: &str, request: &Value) -> ApiResult {
        match op {
            "state" => Ok(self.state()),
            "threads" => Ok(self.session.request(&RawThreads(json!({})))?),
            "select" => {
                let thread = arg_u64(request, "thread")?;
                let frame = request.get("frame").and_then(Value::as_u64).unwrap_or(0);
                {
                    let mut state = self.session.state();
                    if !state.select_thread(thread) {
                        return Err(ApiError(format!("thread {thread} is not stopped")));
                    }
                    state.select_frame(u32::try_from(frame).unwrap_or(0));
                }
                self.changed();
                Ok(json!({}))
            }
            "stack" => {
                let thread = self.selected_thread(request)?;
                Ok(self.session.request(&RawStack(json!({"thread": thread})))?)
            }
            "source" => {
                let file = arg_str(request, "file")?;
                Ok(self.session.request(&RawSource(json!({"file": file})))?)
            }
            "scopes" => {
                let thread = self.selected_thread(request)?;
                let frame = request.get("frame").and_then(Value::as_u64).unwrap_or(0);
                Ok(self.session.request(&RawScopes(json!({"thread": thread, "frame": frame})))?)
            }
            "variables" => {
                let reference = arg_u64(request, "ref")?;
                let mut args = json!({"ref": reference});
                for name in ["start", "count"] {
                    if let Some(n) = request.get(name).and_then(Value::as_u64) {
                        args[name] = json!(n);
                    }
                }
                Ok(self.session.request(&RawVariables(args))?)
            }
            "evaluate" => {
                let thread = self.selected_thread(request)?;
                let frame = request.get("frame").and_then(Value::as_u64).unwrap_or(0);
                let body = self.session.request_with_timeout(
                    &Evaluate {
                        thread: Some(thread),
                        frame: u32::try_from(frame).ok(),
                        expression: arg_str(request, "expression")?.to_string(),
                        mode: EvalMode::Eval,
                        ..Default::default()
                    },
                    None,
                )?;
                Ok(json!({"output": body.output, "result": body.result,
                          "exception": body.exception.map(|e| e.text)}))
            }
            "toggle_breakpoint" => {
                self.toggle_breakpoint(arg_str(request, "file")?, arg_u64(request, "line")?)
            }
            "continue" | "next" | "step" | "return" => {
                let thread = self.selected_thread(request)?;
                match op {
                    "continue" => self.session.request(&Continue { thread: Some(thread) }).map(|_| ()),
                    "next" => self.session.request(&Next { thread, stop_at_return: true }).map(|_| ()),
                    "step" => self.session.request(&Step { thread, stop_at_return: true }).map(|_| ()),
                    _ => self.session.request(&StepOut { thread }).map(|_| ()),
                }?;
                Ok(json!({}))
            }
            "pause" => {
                let paused = self.session.request(&Pause { thread: None })?;
                Ok(json!({"paused": paused.paused}))
            }
            "restart" => {
                if self.options.mode != Mode::Launch {
                    return Err(ApiError("restart is only possible for a program started by pymri".into()));
                }
                self.session.request(&Restart {})?;
                self.session.state().restarted();
                self.changed();
                Ok(json!({}))
            }
            "detach" => {
                self.end_with(Outcome::Detached);
                Ok(json!({}))
            }
            "quit" => {
                self.end();
                Ok(json!({}))
            }
            "console" => Ok(self.console(arg_str(request, "line")?)),
            _ => Err(ApiError(format!("unknown request {op:?}"))),
        }
    }

    /// Sets a breakpoint at `file:line`, or removes the ones there.
    fn toggle_breakpoint(&self, file: &str, line: u64) -> ApiResult {
        let line = u32::try_from(line).map_err(|_| ApiError("bad line".into()))?;
        let existing = self.session.request(&ListBreakpoints {})?.breakpoints;
        let here: Vec<u64> = existing
            .iter()
            .filter(|b| b.kind == "line" && b.file.as_deref() == Some(file) && b.line == Some(line))
            .map(|b| b.id)
            .collect();
        let answer = if here.is_empty() {
            let set = self.session.request(&SetBreakpoint {
                file: Some(file.to_string()),
                line: Some(line),
                ..Default::default()
            })?;
            json!({"set": true, "breakpoint": set.breakpoint})
        } else {
            self.session.request(&ClearBreakpoints::Ids { ids: here })?;
            json!({"set": false})
        };
        self.changed();
        Ok(answer)
    }

    fn console(&self, line: &str) -> Value {
        let before = self.session.state().selection();
        let output = {
            let mut slot = lock(&self.console);
            let now = self.generation.load(Ordering::SeqCst);
            if slot.seen != now {
                slot.console.reset();
                slot.seen = now;
            }
            slot.console.execute(line)
        };
        if output.ended {
            // `q` or `detach` already asked the agent to let go.
            self.ending.store(true, Ordering::SeqCst);
            lock(&self.wanted).get_or_insert_with(|| self.ending_outcome());
        }
        let after = self.session.state().selection();
        // Breakpoints, the selection (`up`, `thread 2`) or values may have changed.
        self.hub.broadcast(&json!({"type": "changed", "body": {"selection_moved": before != after}}));
        json!({"output": output.text})
    }
}

impl Handler for Debugger {
    fn api(&self, request: Value) -> Value {
        let op = request.get("op").and_then(Value::as_str).unwrap_or("").to_string();
        match self.dispatch(&op, &request) {
            Ok(body) => json!({"ok": true, "body": body}),
            Err(ApiError(message)) => json!({"ok": false, "error": message}),
        }
    }

    fn greeting(&self) -> Vec<Value> {
        vec![json!({"type": "hello"})]
    }

    fn page_state(&self) -> Value {
        self.state()
    }
}
