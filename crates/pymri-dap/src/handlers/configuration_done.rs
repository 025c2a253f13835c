//! `configurationDone`: breakpoints and filters are in place. A launched program starts now
//! (stopping at its first line with `stopOnEntry`), and so does one whose listening agent
//! waits for its debugger; an attached thread held at the attach stop goes on (or is shown
//! stopped, with `stopOnEntry`).

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::Empty;

pub(crate) struct ConfigurationDone;

impl Handler for ConfigurationDone {
    const COMMAND: &'static str = "configurationDone";
    type Arguments = Empty;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, _args: Empty) -> Result<Empty, DapError> {
        let session = adapter.session()?;
        if adapter.configured {
            return Ok(Empty {});
        }
        adapter.configured = true;
        let waiting = adapter.debuggee.as_ref().is_some_and(|d| d.is_launch() || d.awaits_start());
        if waiting {
            pymri_launch::start(&session, adapter.stop_on_entry)?;
        } else if let Some(stop) = adapter.held_stop.take() {
            if adapter.stop_on_entry {
                adapter.send_stopped(&stop);
            } else {
                adapter.resume_quietly(stop.thread);
            }
        }
        Ok(Empty {})
    }
}
