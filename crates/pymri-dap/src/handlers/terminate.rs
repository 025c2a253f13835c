//! `terminate`: end the debuggee gracefully. A launched program ends at its stop (or its next
//! line) as with pdb's `q`, so its `finally` blocks and `atexit` handlers run; SIGTERM follows
//! if it is still running two seconds later (blocked in C code). An attached program is never
//! killed by `terminate`: the debugger detaches and the program goes on.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::Empty;

pub(crate) struct Terminate;

impl Handler for Terminate {
    const COMMAND: &'static str = "terminate";
    type Arguments = Empty;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, _args: Empty) -> Result<Empty, DapError> {
        let launched = adapter.debuggee.as_ref().map(|d| d.is_launch());
        match launched {
            None => adapter.terminate_session(),
            // `exited` and `terminated` follow when the program has ended.
            Some(true) => adapter.terminate_program(),
            Some(false) => {
                adapter.end_debuggee(Some(false));
                adapter.terminate_session();
            }
        }
        Ok(Empty {})
    }
}
