//! `continue`: resume one thread. Stops are per thread in pymri (the others never stopped), so
//! only the named thread resumes.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::ThreadArguments;
use pymri_session::protocol::messages::ErrorCode;
use pymri_session::protocol::requests;
use serde::Serialize;

pub(crate) struct Continue;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    pub all_threads_continued: bool,
}

impl Handler for Continue {
    const COMMAND: &'static str = "continue";
    type Arguments = ThreadArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: ThreadArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let thread = adapter.ident(args.thread_id)?;
        adapter.stepping_out.remove(&thread);
        match session.request(&requests::Continue { thread: Some(thread) }) {
            Ok(_) => {}
            // Running already: what the client wants.
            Err(e) if e.agent_error().is_some_and(|a| a.code == ErrorCode::NotStopped) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Body { all_threads_continued: false })
    }
}
