//! `evaluate`: Python in a stopped frame. In the debug console (`repl`) the text may be an
//! expression or statements (`x = 3`, `import os`), as pdb takes them; hovers, watches and
//! clipboard copies are expressions only. Expandable results get a variables reference.
//! What the evaluated code prints is shown as `stdout` output; an exception is an error
//! response carrying its one-line form (`NameError: name 'y' is not defined`).

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{EvaluateArguments, Event, OutputEvent};
use pymri_session::protocol::requests::{self, EvalMode};
use serde::Serialize;
use std::time::Duration;

pub(crate) struct Evaluate;

/// How long console code may run before the adapter stops waiting (it goes on in the program).
const REPL_TIMEOUT: Duration = Duration::from_secs(120);
/// Hovers and watches show a short value: longer reprs are cut by the agent.
const SHORT_VALUE: u64 = 4096;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    pub result: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    pub variables_reference: i64,
}

impl Handler for Evaluate {
    const COMMAND: &'static str = "evaluate";
    type Arguments = EvaluateArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: EvaluateArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let (thread, frame) = match args.frame_id {
            Some(id) => adapter.frame(id).map(|(t, f)| (Some(t), Some(f)))?,
            // The agent then uses the only stopped thread.
            None => (None, None),
        };
        let context = args.context.as_deref().unwrap_or("repl");
        let repl = context == "repl";
        let request = requests::Evaluate {
            thread,
            frame,
            expression: args.expression,
            mode: if repl { EvalMode::Auto } else { EvalMode::Eval },
            max_length: matches!(context, "hover" | "watch" | "variables").then_some(SHORT_VALUE),
            want_ref: true,
        };
        let timeout = if repl { REPL_TIMEOUT } else { pymri_session::REQUEST_TIMEOUT };
        let body = session.request_with_timeout(&request, Some(timeout))?;
        if !body.output.is_empty() {
            adapter.event_now(Event::new(
                "output",
                OutputEvent { category: "stdout", output: body.output, source: None, line: None },
            ));
        }
        if let Some(exception) = body.exception {
            return Err(DapError::User(exception.text));
        }
        Ok(Body {
            result: body.result.unwrap_or_default(),
            type_name: body.type_name,
            variables_reference: body.reference.and_then(|r| i64::try_from(r).ok()).unwrap_or(0),
        })
    }
}
