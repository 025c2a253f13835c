//! Messages from the agent (§4, §7): responses and events, with the bodies this crate knows as
//! structs. Unknown members are ignored everywhere (serde's default), unknown events are kept as
//! [`Event::Unknown`] so a newer agent does not break an older controller.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A frame received after the handshake.
#[derive(Debug, Clone)]
pub enum Incoming {
    Response(Response),
    Event(Event),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("message without a valid \"kind\"")]
    NoKind,
    #[error("unexpected message kind {0:?} from the agent")]
    UnexpectedKind(String),
    #[error("response without a valid id")]
    NoId,
    #[error("malformed {what}: {detail}")]
    Malformed { what: String, detail: String },
}

impl Incoming {
    /// Classifies a decoded frame (see [`crate::frame::FrameDecoder::next_object`]).
    pub fn from_object(mut msg: Map<String, Value>) -> Result<Incoming, MessageError> {
        let kind = match msg.get("kind") {
            Some(Value::String(k)) => k.clone(),
            _ => return Err(MessageError::NoKind),
        };
        match kind.as_str() {
            "response" => {
                let id = msg.get("id").and_then(Value::as_u64).ok_or(MessageError::NoId)?;
                let ok = msg.get("ok").and_then(Value::as_bool).unwrap_or(false);
                let result = if ok {
                    Ok(msg.remove("body").unwrap_or_else(|| Value::Object(Map::new())))
                } else {
                    let error = msg.remove("error").unwrap_or(Value::Null);
                    Err(serde_json::from_value::<ResponseError>(error).unwrap_or_else(|e| ResponseError {
                        code: ErrorCode::Other("malformed".into()),
                        message: format!("malformed error response: {e}"),
                    }))
                };
                Ok(Incoming::Response(Response { id, result }))
            }
            "event" => Event::from_object(msg).map(Incoming::Event),
            other => Err(MessageError::UnexpectedKind(other.to_string())),
        }
    }
}

/// A response: the body on success, the agent's error otherwise.
#[derive(Debug, Clone)]
pub struct Response {
    pub id: u64,
    pub result: Result<Value, ResponseError>,
}

/// An error answer (§4.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ResponseError {
    pub code: ErrorCode,
    #[serde(default)]
    pub message: String,
}

/// Error codes of §4.2; codes added by newer agents are kept as [`ErrorCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownCommand,
    NotStopped,
    NoSuchThread,
    NoSuchFrame,
    NoSuchReference,
    NoSuchBreakpoint,
    InvalidLocation,
    InvalidBreakpoint,
    NotFound,
    Ambiguous,
    BadState,
    EvalError,
    Unsupported,
    TooLarge,
    Internal,
    Other(String),
}

impl ErrorCode {
    const NAMES: [(&'static str, ErrorCode); 16] = [
        ("bad_request", ErrorCode::BadRequest),
        ("unknown_command", ErrorCode::UnknownCommand),
        ("not_stopped", ErrorCode::NotStopped),
        ("no_such_thread", ErrorCode::NoSuchThread),
        ("no_such_frame", ErrorCode::NoSuchFrame),
        ("no_such_reference", ErrorCode::NoSuchReference),
        ("no_such_breakpoint", ErrorCode::NoSuchBreakpoint),
        ("invalid_location", ErrorCode::InvalidLocation),
        ("invalid_breakpoint", ErrorCode::InvalidBreakpoint),
        ("not_found", ErrorCode::NotFound),
        ("ambiguous", ErrorCode::Ambiguous),
        ("bad_state", ErrorCode::BadState),
        ("eval_error", ErrorCode::EvalError),
        ("unsupported", ErrorCode::Unsupported),
        ("too_large", ErrorCode::TooLarge),
        ("internal", ErrorCode::Internal),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(s) => s,
            known => Self::NAMES.iter().find(|(_, c)| c == known).map_or("other", |(n, _)| n),
        }
    }

    pub fn parse(text: &str) -> ErrorCode {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == text)
            .map_or_else(|| ErrorCode::Other(text.to_string()), |(_, c)| c.clone())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(ErrorCode::parse(&text))
    }
}

/// Events of §7. The large bodies are boxed, so that events stay cheap to queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    Ready(Box<Ready>),
    Stopped(Box<Stopped>),
    Continued(Continued),
    Thread(ThreadEvent),
    Output(Output),
    Breakpoint(Box<BreakpointEvent>),
    Exited(Exited),
    Detached(Detached),
    /// An event this controller does not know (a newer agent); ignore it.
    Unknown {
        event: String,
        body: Value,
    },
}

impl Event {
    /// Parses an event message (`kind` already known to be `"event"`).
    pub fn from_object(mut msg: Map<String, Value>) -> Result<Event, MessageError> {
        let name = match msg.get("event") {
            Some(Value::String(n)) => n.clone(),
            _ => {
                return Err(MessageError::Malformed { what: "event".into(), detail: "no event name".into() })
            }
        };
        let body = msg.remove("body").unwrap_or_else(|| Value::Object(Map::new()));
        fn parse<T: serde::de::DeserializeOwned>(name: &str, body: Value) -> Result<T, MessageError> {
            serde_json::from_value(body)
                .map_err(|e| MessageError::Malformed { what: format!("{name} event"), detail: e.to_string() })
        }
        Ok(match name.as_str() {
            "ready" => Event::Ready(parse(&name, body)?),
            "stopped" => Event::Stopped(parse(&name, body)?),
            "continued" => Event::Continued(parse(&name, body)?),
            "thread" => Event::Thread(parse(&name, body)?),
            "output" => Event::Output(parse(&name, body)?),
            "breakpoint" => Event::Breakpoint(parse(&name, body)?),
            "exited" => Event::Exited(parse(&name, body)?),
            "detached" => Event::Detached(parse(&name, body)?),
            _ => Event::Unknown { event: name, body },
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Event::Ready(_) => "ready",
            Event::Stopped(_) => "stopped",
            Event::Continued(_) => "continued",
            Event::Thread(_) => "thread",
            Event::Output(_) => "output",
            Event::Breakpoint(_) => "breakpoint",
            Event::Exited(_) => "exited",
            Event::Detached(_) => "detached",
            Event::Unknown { event, .. } => event,
        }
    }
}

/// The `ready` event and the `info` response.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Ready {
    pub protocol: i64,
    #[serde(default)]
    pub agent_version: String,
    pub pid: i64,
    /// `attach` or `launch`.
    pub mode: String,
    pub python: PythonInfo,
    pub main_thread: u64,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub tool_id: Option<i64>,
    #[serde(default)]
    pub all_threads: bool,
    #[serde(default)]
    pub all_threads_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PythonInfo {
    pub version: String,
    pub version_info: Vec<u32>,
    #[serde(default)]
    pub implementation: String,
    #[serde(default)]
    pub executable: String,
    #[serde(default)]
    pub debug_build: bool,
}

impl PythonInfo {
    /// `(major, minor)`, `(0, 0)` if the agent sent nothing usable.
    pub fn minor_version(&self) -> (u32, u32) {
        (self.version_info.first().copied().unwrap_or(0), self.version_info.get(1).copied().unwrap_or(0))
    }
}

/// Where a frame is (`frame` members of events and responses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub function: String,
    #[serde(default)]
    pub module: Option<String>,
}

/// An exception as the agent describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExceptionInfo {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub message: String,
    /// pdb's one-line form, `ZeroDivisionError: division by zero`.
    pub text: String,
    #[serde(default)]
    pub traceback: String,
    #[serde(default)]
    pub post_mortem: Option<bool>,
}

/// Stop reasons of §7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Attach,
    Entry,
    Breakpoint,
    Step,
    /// A pdb-style `step` entered a function (pdb's `--Call--`).
    Call,
    Return,
    Pause,
    Exception,
    Other(String),
}

impl StopReason {
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::Attach => "attach",
            StopReason::Entry => "entry",
            StopReason::Breakpoint => "breakpoint",
            StopReason::Step => "step",
            StopReason::Call => "call",
            StopReason::Return => "return",
            StopReason::Pause => "pause",
            StopReason::Exception => "exception",
            StopReason::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "attach" => StopReason::Attach,
            "entry" => StopReason::Entry,
            "breakpoint" => StopReason::Breakpoint,
            "step" => StopReason::Step,
            "call" => StopReason::Call,
            "return" => StopReason::Return,
            "pause" => StopReason::Pause,
            "exception" => StopReason::Exception,
            _ => StopReason::Other(text),
        })
    }
}

impl Serialize for StopReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Stopped {
    pub thread: u64,
    #[serde(default)]
    pub thread_name: String,
    pub reason: StopReason,
    #[serde(default)]
    pub frame: Option<Location>,
    #[serde(default)]
    pub breakpoints: Vec<u64>,
    #[serde(default)]
    pub return_value: Option<String>,
    /// The return value as pdb shows it after `->` in a location (`reprlib.repr`: a long one
    /// abbreviated); `return_value` is the whole repr (`retval`).
    #[serde(default)]
    pub return_value_short: Option<String>,
    #[serde(default)]
    pub exception: Option<ExceptionInfo>,
    #[serde(default)]
    pub post_mortem: bool,
    #[serde(default)]
    pub condition_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Continued {
    pub thread: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ThreadEvent {
    /// `started` or `exited`.
    pub reason: String,
    pub thread: u64,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Output {
    /// `log` (a log point) or `agent_error`.
    pub category: String,
    pub text: String,
    #[serde(default)]
    pub breakpoint: Option<u64>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BreakpointEvent {
    /// `removed` (a temporary breakpoint was consumed).
    pub reason: String,
    pub breakpoint: Breakpoint,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Exited {
    pub code: i64,
    /// `exit`, `exception` or `quit`.
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Detached {
    /// `request`, `quit` or `exit`.
    pub reason: String,
}

/// A breakpoint (§5.4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Breakpoint {
    pub id: u64,
    /// `line` or `function`.
    pub kind: String,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub temporary: bool,
    #[serde(default)]
    pub hits: u64,
    #[serde(default)]
    pub ignore_count: u64,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub hit_condition: Option<String>,
    #[serde(default)]
    pub log_message: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn responses_carry_bodies_or_typed_errors() {
        let ok =
            Incoming::from_object(obj(json!({"kind": "response", "id": 7, "ok": true, "body": {"x": 1}})));
        let Ok(Incoming::Response(r)) = ok else { panic!("{ok:?}") };
        assert_eq!(r.id, 7);
        assert_eq!(r.result.expect("ok"), json!({"x": 1}));

        let err = Incoming::from_object(obj(json!({"kind": "response", "id": 8, "ok": false,
            "error": {"code": "not_stopped", "message": "thread 1402 is not stopped"}})));
        let Ok(Incoming::Response(r)) = err else { panic!("{err:?}") };
        let e = r.result.expect_err("error");
        assert_eq!(e.code, ErrorCode::NotStopped);
        assert_eq!(e.to_string(), "thread 1402 is not stopped");

        let future = Incoming::from_object(obj(json!({"kind": "response", "id": 9, "ok": false,
            "error": {"code": "brand_new", "message": "m"}})));
        let Ok(Incoming::Response(r)) = future else { panic!() };
        assert_eq!(r.result.expect_err("error").code, ErrorCode::Other("brand_new".into()));
    }

    #[test]
    fn events_parse_and_unknown_ones_are_kept() {
        let stopped = Incoming::from_object(obj(json!({"kind": "event", "event": "stopped", "body": {
            "thread": 139901u64, "thread_name": "worker-1", "reason": "breakpoint",
            "frame": {"file": "/srv/jobs.py", "line": 42, "function": "run", "module": "jobs"},
            "breakpoints": [1], "new_member": 3}})));
        let Ok(Incoming::Event(Event::Stopped(s))) = stopped else { panic!("{stopped:?}") };
        assert_eq!(s.reason, StopReason::Breakpoint);
        assert_eq!(s.frame.expect("frame").line, 42);
        assert_eq!(s.breakpoints, vec![1]);

        let unknown =
            Incoming::from_object(obj(json!({"kind": "event", "event": "telemetry", "body": {"a": 1}})));
        let Ok(Incoming::Event(Event::Unknown { event, .. })) = unknown else { panic!() };
        assert_eq!(event, "telemetry");
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for v in [
            json!({}),
            json!({"kind": 3}),
            json!({"kind": "request", "id": 1, "cmd": "x"}),
            json!({"kind": "response", "ok": true}),
            json!({"kind": "response", "id": -1, "ok": true}),
            json!({"kind": "event"}),
            json!({"kind": "event", "event": "stopped", "body": {"thread": "one"}}),
            json!({"kind": "event", "event": "exited", "body": []}),
        ] {
            assert!(Incoming::from_object(obj(v.clone())).is_err(), "{v}");
        }
    }

    #[test]
    fn thread_ids_are_u64() {
        let e =
            Event::from_object(obj(json!({"event": "continued", "body": {"thread": u64::MAX}}))).expect("ok");
        let Event::Continued(c) = e else { panic!() };
        assert_eq!(c.thread, u64::MAX);
    }
}
