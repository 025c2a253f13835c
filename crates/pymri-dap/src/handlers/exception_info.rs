//! `exceptionInfo`: the exception a thread stopped on, with its traceback.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::escape::terminal_text;
use crate::types::ThreadArguments;
use pymri_session::protocol::requests::GetExceptionInfo;
use serde::Serialize;

pub(crate) struct ExceptionInfo;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Details {
    pub message: String,
    pub type_name: String,
    pub stack_trace: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    pub exception_id: String,
    pub description: String,
    pub break_mode: &'static str,
    pub details: Details,
}

impl Handler for ExceptionInfo {
    const COMMAND: &'static str = "exceptionInfo";
    type Arguments = ThreadArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: ThreadArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let thread = adapter.ident(args.thread_id)?;
        let info = session.request(&GetExceptionInfo { thread })?;
        // Shown as text by clients (nvim-dap prints it in its REPL).
        let shown = |text: &str| terminal_text(text).into_owned();
        Ok(Body {
            exception_id: shown(&info.type_name),
            description: shown(&info.text),
            break_mode: if info.post_mortem == Some(true) { "unhandled" } else { "always" },
            details: Details {
                message: shown(&info.message),
                type_name: shown(&info.type_name),
                stack_trace: shown(&info.traceback),
            },
        })
    }
}
