//! `threads`: the program's Python threads (the agent's own thread is never listed).

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Empty, Thread};
use pymri_session::protocol::requests;
use serde::Serialize;

pub(crate) struct Threads;

#[derive(Debug, Serialize)]
pub(crate) struct Body {
    pub threads: Vec<Thread>,
}

impl Handler for Threads {
    const COMMAND: &'static str = "threads";
    type Arguments = Empty;
    type Body = Body;

    fn handle(adapter: &mut Adapter, _args: Empty) -> Result<Body, DapError> {
        // Before a program, or after it ended, there are no threads (not an error: clients ask
        // at any time).
        let Ok(session) = adapter.session() else { return Ok(Body { threads: Vec::new() }) };
        if session.is_closed() {
            return Ok(Body { threads: Vec::new() });
        }
        let list = session.request(&requests::Threads {})?;
        let threads =
            list.threads.into_iter().map(|t| Thread { id: adapter.threads.id(t.id), name: t.name }).collect();
        Ok(Body { threads })
    }
}
