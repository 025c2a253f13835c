//! `next`, `stepIn`, `stepOut`: one thread steps; the stop arrives as a `stopped` event.
//!
//! DAP steps never stop at a function's return (the agent's `stop_at_return: false`), and a
//! step out ends in the caller: the agent's `step_out` stops at the return, and the adapter
//! then takes one `next`, which lands in the caller (see `Adapter::on_stopped`).

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Empty, ThreadArguments};
use pymri_session::protocol::requests::{self, Request};

pub(crate) struct Next;
pub(crate) struct StepIn;
pub(crate) struct StepOut;

/// Sends the step `request` makes for the thread, which is no longer stepping out.
fn step<R: Request>(
    adapter: &mut Adapter,
    args: &ThreadArguments,
    request: impl FnOnce(u64) -> R,
) -> Result<Empty, DapError> {
    let session = adapter.session()?;
    let thread = adapter.ident(args.thread_id)?;
    adapter.stepping_out.remove(&thread);
    session.request(&request(thread))?;
    Ok(Empty {})
}

impl Handler for Next {
    const COMMAND: &'static str = "next";
    type Arguments = ThreadArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: ThreadArguments) -> Result<Empty, DapError> {
        step(adapter, &args, |thread| requests::Next { thread, stop_at_return: false })
    }
}

impl Handler for StepIn {
    const COMMAND: &'static str = "stepIn";
    type Arguments = ThreadArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: ThreadArguments) -> Result<Empty, DapError> {
        step(adapter, &args, |thread| requests::Step { thread, stop_at_return: false })
    }
}

impl Handler for StepOut {
    const COMMAND: &'static str = "stepOut";
    type Arguments = ThreadArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: ThreadArguments) -> Result<Empty, DapError> {
        let session = adapter.session()?;
        let thread = adapter.ident(args.thread_id)?;
        adapter.stepping_out.insert(thread);
        if let Err(e) = session.request(&requests::StepOut { thread }) {
            adapter.stepping_out.remove(&thread);
            return Err(e.into());
        }
        Ok(Empty {})
    }
}
