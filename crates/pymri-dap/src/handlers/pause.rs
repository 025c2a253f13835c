//! `pause`: the thread stops at its next line of Python (a thread blocked in C code stops when
//! it returns to Python).

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Empty, ThreadArguments};
use pymri_session::protocol::requests;

pub(crate) struct Pause;

impl Handler for Pause {
    const COMMAND: &'static str = "pause";
    type Arguments = ThreadArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: ThreadArguments) -> Result<Empty, DapError> {
        let session = adapter.session()?;
        let thread = adapter.ident(args.thread_id)?;
        session.request(&requests::Pause { thread: Some(thread) })?;
        Ok(Empty {})
    }
}
