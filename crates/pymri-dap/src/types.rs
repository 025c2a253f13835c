//! The part of the Debug Adapter Protocol pymri speaks, written from Microsoft's specification
//! (`debugProtocol.json`): the base messages, the arguments of each request handled, the
//! response bodies and the events sent. Field names follow the specification (camelCase on the
//! wire); members this adapter does not use are not declared and are ignored when received.
//!
//! Numbers the client sends are read leniently: a missing optional member takes its default,
//! an ill-typed one makes the request fail with an error response (never a panic).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Base protocol

/// A request from the client, as framed by the codec.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub seq: i64,
    pub command: String,
    /// `null` when the request has none.
    pub arguments: Value,
}

/// Why a decoded message is not a request we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotARequest {
    /// A response or an event (the client answering a reverse request we never send): ignored.
    Ignored,
    /// Malformed: answered with an error response carrying whatever `seq` and `command` could
    /// be read.
    Malformed { seq: i64, command: String, why: String },
}

impl Request {
    pub fn from_value(value: Value) -> Result<Request, NotARequest> {
        let Value::Object(mut obj) = value else {
            return Err(NotARequest::Malformed {
                seq: 0,
                command: String::new(),
                why: "a message must be a JSON object".into(),
            });
        };
        let seq = obj.get("seq").and_then(Value::as_i64);
        let command = obj.get("command").and_then(Value::as_str).map(str::to_string);
        match obj.get("type").and_then(Value::as_str) {
            Some("request") => {}
            Some("response" | "event") => return Err(NotARequest::Ignored),
            _ => {
                return Err(NotARequest::Malformed {
                    seq: seq.unwrap_or(0),
                    command: command.unwrap_or_default(),
                    why: "a message's \"type\" must be \"request\"".into(),
                })
            }
        }
        match (seq, command) {
            (Some(seq), Some(command)) => {
                Ok(Request { seq, command, arguments: obj.remove("arguments").unwrap_or(Value::Null) })
            }
            (seq, command) => Err(NotARequest::Malformed {
                seq: seq.unwrap_or(0),
                command: command.unwrap_or_default(),
                why: "a request needs an integer \"seq\" and a string \"command\"".into(),
            }),
        }
    }
}

/// A response, before the writer numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub request_seq: i64,
    pub command: String,
    pub result: Result<Value, String>,
}

/// An event, before the writer numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: &'static str,
    pub body: Value,
}

impl Event {
    pub fn new<B: Serialize>(event: &'static str, body: B) -> Event {
        Event { event, body: to_value(body) }
    }
}

/// Serialises a body; our body types always serialise (string keys, no foreign types).
pub fn to_value<B: Serialize>(body: B) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

impl Response {
    pub fn to_message(&self, seq: i64) -> Value {
        let mut m = Map::new();
        m.insert("seq".into(), seq.into());
        m.insert("type".into(), "response".into());
        m.insert("request_seq".into(), self.request_seq.into());
        m.insert("command".into(), self.command.clone().into());
        match &self.result {
            Ok(body) => {
                m.insert("success".into(), true.into());
                if !body.is_null() {
                    m.insert("body".into(), body.clone());
                }
            }
            Err(message) => {
                m.insert("success".into(), false.into());
                m.insert("message".into(), message.clone().into());
                // `body.error` lets clients such as VS Code show the text as it is.
                m.insert(
                    "body".into(),
                    serde_json::json!({"error": {"id": 1, "format": message, "showUser": false}}),
                );
            }
        }
        Value::Object(m)
    }
}

impl Event {
    pub fn to_message(&self, seq: i64) -> Value {
        let mut m = Map::new();
        m.insert("seq".into(), seq.into());
        m.insert("type".into(), "event".into());
        m.insert("event".into(), self.event.into());
        if !self.body.is_null() {
            m.insert("body".into(), self.body.clone());
        }
        Value::Object(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared types

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_reference: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Breakpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionBreakpointsFilter {
    pub filter: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub default: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub supports_configuration_done_request: bool,
    pub supports_function_breakpoints: bool,
    pub supports_conditional_breakpoints: bool,
    pub supports_hit_conditional_breakpoints: bool,
    pub supports_evaluate_for_hovers: bool,
    pub exception_breakpoint_filters: Vec<ExceptionBreakpointsFilter>,
    pub supports_set_variable: bool,
    pub supports_completions_request: bool,
    pub supports_exception_info_request: bool,
    pub support_terminate_debuggee: bool,
    pub supports_delayed_stack_trace_loading: bool,
    pub supports_log_points: bool,
    pub supports_terminate_request: bool,
    pub supports_clipboard_context: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thread {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackFrame {
    pub id: i64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    pub line: i64,
    pub column: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presentation_hint: Option<&'static str>,
    pub variables_reference: i64,
    pub expensive: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    pub name: String,
    pub value: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluate_name: Option<String>,
    pub variables_reference: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionItem {
    pub label: String,
    pub start: i64,
    pub length: i64,
}

// ---------------------------------------------------------------------------------------------
// Request arguments

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeArguments {
    #[serde(default, rename = "clientID")]
    pub client_id: Option<String>,
    #[serde(default, rename = "adapterID")]
    pub adapter_id: Option<String>,
    #[serde(default)]
    pub lines_start_at1: Option<bool>,
    #[serde(default)]
    pub columns_start_at1: Option<bool>,
    #[serde(default)]
    pub path_format: Option<String>,
}

/// A string, or a list of strings (`python: ["/usr/bin/python3", "-X", "dev"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// A number, or a string holding one (VS Code's `${command:pickProcess}` gives a string).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberOrString {
    Number(i64),
    String(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathMapping {
    pub local_root: String,
    pub remote_root: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchArguments {
    #[serde(default)]
    pub program: Option<String>,
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub args: Option<StringOrList>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub python: Option<StringOrList>,
    #[serde(default)]
    pub python_args: Vec<String>,
    #[serde(default)]
    pub stop_on_entry: bool,
    /// pymri's own: run the program chrooted in this directory.
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default)]
    pub path_mappings: Vec<PathMapping>,
    #[serde(default)]
    pub console: Option<String>,
    #[serde(default)]
    pub no_debug: bool,
}

/// Where a listening agent is (debugpy's shape).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Connect {
    #[serde(default)]
    pub host: Option<String>,
    pub port: u16,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachArguments {
    #[serde(default)]
    pub process_id: Option<NumberOrString>,
    #[serde(default)]
    pub connect: Option<Connect>,
    /// debugpy's older spelling of `connect`: `host` and `port` at the top level.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// pymri's own: any transport address (`tcp:`, `tls:`, `unix:`, `fifo:`), as `pymri connect`
    /// takes it.
    #[serde(default)]
    pub address: Option<String>,
    /// With `connect`: TLS (pymri is the TLS server; the agent listens on a `tls:` address).
    #[serde(default)]
    pub tls: bool,
    /// With `connect`: a private file holding the agent's hex secret (else the file
    /// `PYMRI_SECRET_FILE` names in the adapter's environment).
    #[serde(default)]
    pub secret_file: Option<String>,
    /// With `connect`: the agent's attach nonce, if it was given one.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Seconds the target may take to reach a safe point.
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub stop_on_entry: bool,
    #[serde(default)]
    pub path_mappings: Vec<PathMapping>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceBreakpoint {
    pub line: i64,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub hit_condition: Option<String>,
    #[serde(default)]
    pub log_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetBreakpointsArguments {
    pub source: Source,
    #[serde(default)]
    pub breakpoints: Option<Vec<SourceBreakpoint>>,
    /// Deprecated form: lines only.
    #[serde(default)]
    pub lines: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionBreakpoint {
    pub name: String,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub hit_condition: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SetFunctionBreakpointsArguments {
    pub breakpoints: Vec<FunctionBreakpoint>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionFilterOptions {
    pub filter_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetExceptionBreakpointsArguments {
    #[serde(default)]
    pub filters: Vec<String>,
    #[serde(default)]
    pub filter_options: Vec<ExceptionFilterOptions>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadArguments {
    pub thread_id: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackTraceArguments {
    pub thread_id: i64,
    #[serde(default)]
    pub start_frame: Option<i64>,
    #[serde(default)]
    pub levels: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopesArguments {
    pub frame_id: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariablesArguments {
    pub variables_reference: i64,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub start: Option<i64>,
    #[serde(default)]
    pub count: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetVariableArguments {
    pub variables_reference: i64,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateArguments {
    pub expression: String,
    #[serde(default)]
    pub frame_id: Option<i64>,
    #[serde(default)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionsArguments {
    #[serde(default)]
    pub frame_id: Option<i64>,
    pub text: String,
    pub column: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceArguments {
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub source_reference: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectArguments {
    #[serde(default)]
    pub restart: bool,
    #[serde(default)]
    pub terminate_debuggee: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Event bodies

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoppedEvent {
    pub reason: &'static str,
    pub thread_id: i64,
    pub all_threads_stopped: bool,
    pub preserve_focus_hint: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hit_breakpoint_ids: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinuedEvent {
    pub thread_id: i64,
    pub all_threads_continued: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadEvent {
    pub reason: &'static str,
    pub thread_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputEvent {
    pub category: &'static str,
    pub output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitedEvent {
    pub exit_code: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakpointEvent {
    pub reason: &'static str,
    pub breakpoint: Breakpoint,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_and_what_is_not_one() {
        let r = Request::from_value(json!({"seq": 3, "type": "request", "command": "threads"}));
        assert_eq!(r, Ok(Request { seq: 3, command: "threads".into(), arguments: Value::Null }));
        assert_eq!(
            Request::from_value(json!({"seq": 4, "type": "response", "command": "runInTerminal"})),
            Err(NotARequest::Ignored)
        );
        let Err(NotARequest::Malformed { seq, command, .. }) =
            Request::from_value(json!({"seq": 5, "type": "request"}))
        else {
            panic!("no command");
        };
        assert_eq!((seq, command.as_str()), (5, ""));
        assert!(matches!(Request::from_value(json!([1, 2])), Err(NotARequest::Malformed { seq: 0, .. })));
        assert!(matches!(
            Request::from_value(json!({"seq": "x", "type": "request", "command": "c"})),
            Err(NotARequest::Malformed { .. })
        ));
    }

    #[test]
    fn responses_and_events_as_the_specification_shows() {
        let ok = Response { request_seq: 2, command: "threads".into(), result: Ok(json!({"threads": []})) };
        assert_eq!(
            ok.to_message(7),
            json!({"seq": 7, "type": "response", "request_seq": 2, "command": "threads",
                   "success": true, "body": {"threads": []}})
        );
        let err = Response { request_seq: 3, command: "next".into(), result: Err("not stopped".into()) };
        let m = err.to_message(8);
        assert_eq!(m["success"], false);
        assert_eq!(m["message"], "not stopped");
        let ev = Event::new("exited", ExitedEvent { exit_code: 3 });
        assert_eq!(
            ev.to_message(9),
            json!({"seq": 9, "type": "event", "event": "exited", "body": {"exitCode": 3}})
        );
    }

    #[test]
    fn launch_arguments_in_their_usual_spellings() {
        let a: LaunchArguments = serde_json::from_value(json!({
            "type": "pymri", "request": "launch", "program": "app.py", "args": ["-v"],
            "env": {"A": "1", "B": null}, "python": ["/usr/bin/python3", "-X", "dev"],
            "stopOnEntry": true, "pathMappings": [{"localRoot": "/l", "remoteRoot": "/r"}]}))
        .expect("parse");
        assert_eq!(a.program.as_deref(), Some("app.py"));
        assert_eq!(a.env.get("B"), Some(&None));
        assert_eq!(a.python.map(StringOrList::into_vec).map(|v| v.len()), Some(3));
        assert!(a.stop_on_entry);
        let at: AttachArguments = serde_json::from_value(json!({"processId": "4242"})).expect("parse");
        assert!(matches!(at.process_id, Some(NumberOrString::String(s)) if s == "4242"));
    }
}
