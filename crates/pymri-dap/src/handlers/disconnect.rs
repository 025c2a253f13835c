//! `disconnect`: the client is done. A launched program is killed unless `terminateDebuggee`
//! is false (then it runs on without the debugger, as long as the adapter does: over stdio the
//! adapter exits after `disconnect`, and a launched program is started to die with it); an
//! attached program is detached and keeps running unless `terminateDebuggee` is true (then it
//! is sent SIGTERM). The connection ends after the response.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{DisconnectArguments, Empty};

pub(crate) struct Disconnect;

impl Handler for Disconnect {
    const COMMAND: &'static str = "disconnect";
    type Arguments = DisconnectArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: DisconnectArguments) -> Result<Empty, DapError> {
        adapter.end_debuggee(args.terminate_debuggee);
        adapter.done = true;
        Ok(Empty {})
    }
}
