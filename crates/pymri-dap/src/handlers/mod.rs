//! One handler per DAP request, each in its own file (the shape of ruff's language server):
//! the request's arguments, typed, in; its response body, or an error for the user, out.
//!
//! [`dispatch`] parses the arguments (a missing or ill-typed member is an error response,
//! never a panic) and calls the handler named by the request's `command`.

mod attach;
mod completions;
mod configuration_done;
mod continue_;
mod disconnect;
mod evaluate;
mod exception_info;
mod initialize;
mod launch;
mod pause;
mod scopes;
mod set_breakpoints;
mod set_exception_breakpoints;
mod set_function_breakpoints;
mod set_variable;
mod source;
mod stack_trace;
mod steps;
mod terminate;
mod threads;
mod variables;

use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{to_value, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub(crate) trait Handler {
    const COMMAND: &'static str;
    type Arguments: DeserializeOwned;
    type Body: Serialize;

    fn handle(adapter: &mut Adapter, args: Self::Arguments) -> Result<Self::Body, DapError>;
}

fn run<H: Handler>(adapter: &mut Adapter, arguments: &Value) -> Result<Value, DapError> {
    let arguments =
        if arguments.is_null() { Value::Object(serde_json::Map::new()) } else { arguments.clone() };
    let args: H::Arguments = serde_json::from_value(arguments)
        .map_err(|e| DapError::BadArguments { command: H::COMMAND, detail: e.to_string() })?;
    H::handle(adapter, args).map(to_value)
}

macro_rules! table {
    ($adapter:expr, $request:expr, $($handler:ty),* $(,)?) => {
        match $request.command.as_str() {
            $( <$handler as Handler>::COMMAND => run::<$handler>($adapter, &$request.arguments), )*
            other => Err(DapError::Unsupported(other.to_string())),
        }
    };
}

pub(crate) fn dispatch(adapter: &mut Adapter, request: &Request) -> Result<Value, DapError> {
    table!(
        adapter,
        request,
        initialize::Initialize,
        launch::Launch,
        attach::Attach,
        set_breakpoints::SetBreakpoints,
        set_function_breakpoints::SetFunctionBreakpoints,
        set_exception_breakpoints::SetExceptionBreakpoints,
        configuration_done::ConfigurationDone,
        threads::Threads,
        stack_trace::StackTrace,
        scopes::Scopes,
        variables::Variables,
        set_variable::SetVariable,
        evaluate::Evaluate,
        completions::Completions,
        source::Source,
        exception_info::ExceptionInfo,
        continue_::Continue,
        steps::Next,
        steps::StepIn,
        steps::StepOut,
        pause::Pause,
        terminate::Terminate,
        disconnect::Disconnect,
    )
}

/// `None` for a missing or empty string (clients send `""` for "no condition").
pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}
