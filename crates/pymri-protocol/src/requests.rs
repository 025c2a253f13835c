//! Requests of §6, one struct per command, each naming its response body.
//!
//! `T` (thread) and `F` (frame index) are optional where the protocol allows it: without a
//! thread, the agent uses the only stopped thread.

use crate::messages::{Breakpoint, ExceptionInfo, Location, Ready};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A request: its `cmd` and the body of a successful response. The struct itself is `args`.
pub trait Request: Serialize {
    const COMMAND: &'static str;
    type Body: DeserializeOwned;

    /// The whole request message with the given id.
    fn to_message(&self, id: u64) -> Value {
        json!({"kind": "request", "id": id, "cmd": Self::COMMAND, "args": self})
    }
}

macro_rules! request {
    ($ty:ty, $cmd:literal, $body:ty) => {
        impl Request for $ty {
            const COMMAND: &'static str = $cmd;
            type Body = $body;
        }
    };
}

/// `{}` bodies.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Empty {}

// ---------------------------------------------------------------------------------------------
// Session

#[derive(Debug, Clone, Default, Serialize)]
pub struct Info {}
request!(Info, "info", Ready);

/// Byte offsets in `PyThreadState` that let the agent trace existing threads on 3.9-3.11 (§8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct ThreadOffsets {
    pub c_tracefunc: u64,
    pub c_traceobj: u64,
    pub thread_id: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Start {
    pub stop_on_entry: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_offsets: Option<ThreadOffsets>,
}
request!(Start, "start", Empty);

#[derive(Debug, Clone, Serialize)]
pub struct SetThreadOffsets {
    pub thread_offsets: ThreadOffsets,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BackendInfo {
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub tool_id: Option<i64>,
    #[serde(default)]
    pub all_threads: bool,
}
request!(SetThreadOffsets, "set_thread_offsets", BackendInfo);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Detach {}
request!(Detach, "detach", Empty);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Restart {}
request!(Restart, "restart", Empty);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Quit {}
request!(Quit, "quit", Empty);

// ---------------------------------------------------------------------------------------------
// Breakpoints

#[derive(Debug, Clone, Default, Serialize)]
pub struct SetBreakpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_message: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// For `function`: look the name up in this thread's frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BreakpointBody {
    pub breakpoint: Breakpoint,
}
request!(SetBreakpoint, "set_breakpoint", BreakpointBody);

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceBreakpoint {
    pub line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetBreakpoints {
    pub file: String,
    pub breakpoints: Vec<SourceBreakpoint>,
}

/// One entry of a `set_breakpoints` answer: a breakpoint, or why a line was refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BreakpointResult {
    Set(Breakpoint),
    Refused {
        #[serde(default)]
        line: Option<u32>,
        #[serde(default)]
        function: Option<String>,
        #[serde(default)]
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct BreakpointsResult {
    pub breakpoints: Vec<BreakpointResult>,
}
request!(SetBreakpoints, "set_breakpoints", BreakpointsResult);

#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionBreakpoint {
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_condition: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetFunctionBreakpoints {
    pub breakpoints: Vec<FunctionBreakpoint>,
}
request!(SetFunctionBreakpoints, "set_function_breakpoints", BreakpointsResult);

/// Changes some properties of a breakpoint; `None` leaves one as it is. `condition:
/// Some(None)` removes the condition (sent as `null`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateBreakpoint {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary: Option<bool>,
}
request!(UpdateBreakpoint, "update_breakpoint", BreakpointBody);

/// Which breakpoints to remove: by ids, at a file (and line), or all.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ClearBreakpoints {
    Ids {
        ids: Vec<u64>,
    },
    At {
        file: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
    },
    All {
        all: bool,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Removed {
    pub removed: Vec<Breakpoint>,
}
request!(ClearBreakpoints, "clear_breakpoints", Removed);

#[derive(Debug, Clone, Default, Serialize)]
pub struct ListBreakpoints {}

#[derive(Debug, Clone, Deserialize)]
pub struct BreakpointList {
    pub breakpoints: Vec<Breakpoint>,
}
request!(ListBreakpoints, "list_breakpoints", BreakpointList);

#[derive(Debug, Clone, Serialize)]
pub struct SetExceptionFilters {
    /// Subset of `raised`, `uncaught`.
    pub filters: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Filters {
    pub filters: Vec<String>,
}
request!(SetExceptionFilters, "set_exception_filters", Filters);

// ---------------------------------------------------------------------------------------------
// Execution

/// Resumes one thread, or every stopped thread without `thread`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Continue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resumed {
    /// Present when every stopped thread was resumed.
    #[serde(default)]
    pub threads: Option<Vec<u64>>,
}
request!(Continue, "continue", Resumed);

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub thread: u64,
    pub stop_at_return: bool,
}
request!(Step, "step", Empty);

#[derive(Debug, Clone, Serialize)]
pub struct Next {
    pub thread: u64,
    pub stop_at_return: bool,
}
request!(Next, "next", Empty);

#[derive(Debug, Clone, Serialize)]
pub struct StepOut {
    pub thread: u64,
}
request!(StepOut, "step_out", Empty);

#[derive(Debug, Clone, Serialize)]
pub struct Until {
    pub thread: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}
request!(Until, "until", Empty);

#[derive(Debug, Clone, Serialize)]
pub struct Jump {
    pub thread: u64,
    pub line: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Jumped {
    pub line: u32,
}
request!(Jump, "jump", Jumped);

#[derive(Debug, Clone, Default, Serialize)]
pub struct Pause {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Paused {
    #[serde(default)]
    pub paused: Vec<u64>,
}
request!(Pause, "pause", Paused);

// ---------------------------------------------------------------------------------------------
// Inspection

#[derive(Debug, Clone, Default, Serialize)]
pub struct Threads {}

#[derive(Debug, Clone, Deserialize)]
pub struct ThreadInfo {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub main: bool,
    #[serde(default)]
    pub stopped: bool,
    #[serde(default)]
    pub daemon: Option<bool>,
    #[serde(default)]
    pub native_id: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub frame: Option<Location>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ThreadList {
    pub threads: Vec<ThreadInfo>,
}
request!(Threads, "threads", ThreadList);

#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    pub thread: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StackFrame {
    pub index: u32,
    pub id: u64,
    pub file: String,
    pub line: u32,
    pub function: String,
    #[serde(default)]
    pub module: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StackBody {
    pub frames: Vec<StackFrame>,
    pub total: u32,
}
request!(Stack, "stack", StackBody);

/// Source lines of a file, or of a stopped thread's frame (`function: true`: the whole function).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub function: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SourceBody {
    pub file: String,
    pub first: u32,
    pub lines: Vec<String>,
    pub total: u32,
    #[serde(default)]
    pub breakpoints: Vec<u32>,
    #[serde(default)]
    pub current: Option<u32>,
}
request!(Source, "source", SourceBody);

/// How `evaluate` treats its text (§6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalMode {
    /// An expression if the text is one (no result for `None`), else statements.
    #[default]
    Auto,
    Eval,
    Exec,
    Pprint,
    Str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
    pub expression: String,
    pub mode: EvalMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub want_ref: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Evaluated {
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default, rename = "ref")]
    pub reference: Option<u64>,
    #[serde(default)]
    pub exception: Option<ExceptionInfo>,
}
request!(Evaluate, "evaluate", Evaluated);

#[derive(Debug, Clone, Serialize)]
pub struct Whatis {
    pub thread: u64,
    pub frame: u32,
    pub expression: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WhatisBody {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub exception: Option<ExceptionInfo>,
}
request!(Whatis, "whatis", WhatisBody);

#[derive(Debug, Clone, Serialize)]
pub struct Args {
    pub thread: u64,
    pub frame: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ArgsBody {
    pub args: Vec<Arg>,
}
request!(Args, "args", ArgsBody);

#[derive(Debug, Clone, Serialize)]
pub struct Retval {
    pub thread: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetvalBody {
    pub value: String,
    #[serde(default, rename = "type")]
    pub type_name: String,
}
request!(Retval, "retval", RetvalBody);

#[derive(Debug, Clone, Serialize)]
pub struct GetExceptionInfo {
    pub thread: u64,
}
request!(GetExceptionInfo, "exception_info", ExceptionInfo);

#[derive(Debug, Clone, Serialize)]
pub struct Completions {
    pub thread: u64,
    pub frame: u32,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionsBody {
    /// Where the completed word starts in `text`, in characters (Python string indices, not
    /// bytes): a match replaces everything from there.
    pub start: usize,
    pub matches: Vec<String>,
}
request!(Completions, "completions", CompletionsBody);

#[derive(Debug, Clone, Serialize)]
pub struct Scopes {
    pub thread: u64,
    pub frame: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Scope {
    pub name: String,
    #[serde(rename = "ref")]
    pub reference: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScopesBody {
    pub scopes: Vec<Scope>,
}
request!(Scopes, "scopes", ScopesBody);

#[derive(Debug, Clone, Serialize)]
pub struct Variables {
    #[serde(rename = "ref")]
    pub reference: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Variable {
    pub name: String,
    pub value: String,
    #[serde(default, rename = "type")]
    pub type_name: String,
    #[serde(default, rename = "ref")]
    pub reference: u64,
    #[serde(default)]
    pub evaluate_name: Option<String>,
    #[serde(default)]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VariablesBody {
    pub variables: Vec<Variable>,
    pub total: u64,
}
request!(Variables, "variables", VariablesBody);

#[derive(Debug, Clone, Serialize)]
pub struct SetVariable {
    #[serde(rename = "ref")]
    pub reference: u64,
    pub name: String,
    pub value: String,
}
request!(SetVariable, "set_variable", Variable);

/// pdb's `interact`: start a console session, push lines to it, end it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum InteractAction {
    Start,
    Push { session: u64, source: String },
    End { session: u64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Interact {
    pub thread: u64,
    pub frame: u32,
    #[serde(flatten)]
    pub action: InteractAction,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InteractBody {
    #[serde(default)]
    pub session: Option<u64>,
    #[serde(default)]
    pub more: bool,
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub exception: Option<ExceptionInfo>,
}
request!(Interact, "interact", InteractBody);

// ---------------------------------------------------------------------------------------------
// Running code (`pymri exec`)

/// Runs `source` in stopped thread `thread`, in the `__main__` module's globals. What the code
/// writes to stdout and stderr arrives before the answer as `output` events of categories
/// `stdout` and `stderr`; a final bare expression's repr (unless None) is part of its stdout.
#[derive(Debug, Clone, Serialize)]
pub struct Exec {
    pub thread: u64,
    pub source: String,
    /// The name tracebacks give the code.
    pub filename: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Executed {
    /// The exception that escaped the code (a SyntaxError too).
    #[serde(default)]
    pub exception: Option<ExceptionInfo>,
    /// Characters of output the agent did not send, past its limit.
    #[serde(default)]
    pub dropped: u64,
}
request!(Exec, "exec", Executed);

// ---------------------------------------------------------------------------------------------
// Tracing (`pymri trace`): hooks that report without stopping, as `trace` events

/// A logpoint: `format` rendered in the frame (`{expression}` parts) each time `line` runs.
#[derive(Debug, Clone, Serialize)]
pub struct TraceLogpoint {
    pub file: String,
    pub line: u32,
    pub format: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceStart {
    /// Report every raised exception (of `types` if not empty; names or dotted names, a class
    /// matching any of its bases).
    pub exceptions: bool,
    pub types: Vec<String>,
    pub logpoints: Vec<TraceLogpoint>,
    /// `module:qualname` or `qualname`: calls counted by call site.
    pub calls: Vec<String>,
    /// Report the arguments of each call reported.
    pub args: bool,
    /// Events reported per second and per site; the others are only counted (0: none).
    pub max_rate: u32,
}

/// Where a logpoint went, as the agent resolved it.
#[derive(Debug, Clone, Deserialize)]
pub struct LogpointPlaced {
    pub file: String,
    pub line: u32,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TraceStarted {
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub all_threads: bool,
    #[serde(default)]
    pub logpoints: Vec<LogpointPlaced>,
}
request!(TraceStart, "trace_start", TraceStarted);

/// Ends the trace: every hook removed; the answer is the summary (`kind: "summary"`, see
/// `docs/trace.md`), kept as JSON for the controller to render.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceStop {}
request!(TraceStop, "trace_stop", Value);

// ---------------------------------------------------------------------------------------------
// Doctor (`pymri doctor`): measurements over a window, hooks that only count

/// Opens the window: the start's census, container sizes and versions, then the hooks.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorStart {
    pub census: bool,
    pub containers: bool,
    pub exceptions: bool,
    pub thread_starts: bool,
    pub versions: bool,
    /// Seconds between readings of the containers' sizes.
    pub interval: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DoctorStarted {
    /// `monitoring` or `settrace`, when exceptions are counted.
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub tool_id: Option<u32>,
    #[serde(default)]
    pub containers: u64,
}
request!(DoctorStart, "doctor_start", DoctorStarted);

/// Closes the window: every hook removed; the answer is what the window saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DoctorStop {}
request!(DoctorStop, "doctor_stop", DoctorResults);

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DoctorResults {
    #[serde(default)]
    pub duration: f64,
    #[serde(default)]
    pub census: Option<Census>,
    #[serde(default)]
    pub containers: Option<Containers>,
    #[serde(default)]
    pub exceptions: Option<Vec<ExceptionGroup>>,
    #[serde(default)]
    pub exceptions_backend: Option<String>,
    /// The standard library's directories (each ending in `/`).
    #[serde(default)]
    pub stdlib: Vec<String>,
    #[serde(default)]
    pub thread_starts: Option<Vec<ThreadStartSite>>,
    #[serde(default)]
    pub versions: Option<Vec<Distribution>>,
    #[serde(default)]
    pub versions_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Census {
    pub start: CensusTotals,
    pub end: CensusTotals,
    /// The types that grew most and the largest at the end.
    #[serde(default)]
    pub types: Vec<CensusType>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CensusTotals {
    /// Objects the garbage collector tracks.
    pub objects: u64,
    /// How many of them were counted before the census ran out of time.
    pub examined: u64,
    pub cut: bool,
    pub seconds: f64,
    pub count: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CensusType {
    #[serde(rename = "type")]
    pub type_name: String,
    pub count: u64,
    pub size: u64,
    pub count_start: u64,
    pub size_start: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Containers {
    pub tracked: u64,
    pub cut: bool,
    #[serde(default)]
    pub grown: Vec<GrownContainer>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrownContainer {
    /// From a module: `registry.Registry._entries`.
    pub path: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub start: u64,
    pub end: u64,
    /// `(seconds into the window, entries)`.
    #[serde(default)]
    pub points: Vec<(f64, u64)>,
    /// Types of the newest entries (values of a dict), with their counts.
    #[serde(default)]
    pub newest: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Site {
    pub function: String,
    pub file: String,
    pub line: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExceptionGroup {
    #[serde(rename = "type")]
    pub type_name: String,
    pub raised: Site,
    #[serde(default)]
    pub handled: Option<Site>,
    /// `handled`, `native` (by native code), `escaped`, `unknown` (in flight at the end).
    pub outcome: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ThreadStartSite {
    /// The caller of `Thread.start`.
    pub function: String,
    pub file: String,
    pub line: i64,
    /// What the new threads run: `module.qualname`.
    pub target: String,
    pub count: u64,
    /// `threading.get_ident()` of the threads started there (the first ones).
    #[serde(default)]
    pub threads: Vec<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Distribution {
    pub name: String,
    pub version: String,
    /// Its top-level modules that are loaded.
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub file: Option<String>,
    /// Other versions of it found further down `sys.path` (import takes the first).
    #[serde(default)]
    pub shadowed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_serialise_as_the_protocol_shows() {
        let req = SetBreakpoint {
            file: Some("jobs.py".into()),
            line: Some(42),
            condition: Some("n > 3".into()),
            ..Default::default()
        };
        assert_eq!(
            req.to_message(1),
            json!({"kind": "request", "id": 1, "cmd": "set_breakpoint",
                   "args": {"file": "jobs.py", "line": 42, "condition": "n > 3"}})
        );
        let clear = UpdateBreakpoint { id: 3, condition: Some(None), ..Default::default() };
        assert_eq!(clear.to_message(2)["args"], json!({"id": 3, "condition": null}));
        let all = ClearBreakpoints::All { all: true };
        assert_eq!(all.to_message(3)["args"], json!({"all": true}));
        let push = Interact {
            thread: 5,
            frame: 0,
            action: InteractAction::Push { session: 1, source: "x = 1".into() },
        };
        assert_eq!(
            push.to_message(4)["args"],
            json!({"thread": 5, "frame": 0, "action": "push", "session": 1, "source": "x = 1"})
        );
        let eval = Evaluate { expression: "x".into(), mode: EvalMode::Pprint, ..Default::default() };
        assert_eq!(eval.to_message(5)["args"], json!({"expression": "x", "mode": "pprint"}));
        assert_eq!(Continue::default().to_message(6)["args"], json!({}));
    }

    #[test]
    fn set_breakpoints_answers_mix_breakpoints_and_refusals() {
        let body: BreakpointsResult = serde_json::from_value(json!({"breakpoints": [
            {"id": 2, "kind": "line", "file": "/a.py", "line": 3, "enabled": true, "temporary": false,
             "hits": 0, "ignore_count": 0, "verified": true},
            {"verified": false, "line": 9, "message": "Blank or comment"}]}))
        .expect("parse");
        assert!(matches!(&body.breakpoints[0], BreakpointResult::Set(b) if b.id == 2));
        assert!(matches!(&body.breakpoints[1], BreakpointResult::Refused { line: Some(9), .. }));
    }
}
