//! `stackTrace`: a stopped thread's frames, innermost first, with `startFrame`/`levels` paging.
//! Each frame gets a fresh `frameId`, valid until the thread resumes.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{StackFrame, StackTraceArguments};
use pymri_session::protocol::requests::Stack;
use serde::Serialize;

pub(crate) struct StackTrace;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    pub stack_frames: Vec<StackFrame>,
    pub total_frames: u32,
}

impl Handler for StackTrace {
    const COMMAND: &'static str = "stackTrace";
    type Arguments = StackTraceArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: StackTraceArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let thread = adapter.ident(args.thread_id)?;
        let start = args.start_frame.and_then(|s| u32::try_from(s).ok()).unwrap_or(0);
        // 0 or absent: all frames.
        let levels = args.levels.and_then(|l| u32::try_from(l).ok()).filter(|l| *l > 0);
        let stack = session.request(&Stack { thread, start: Some(start), levels })?;
        let column = adapter.first_column();
        let stack_frames = stack
            .frames
            .into_iter()
            .map(|f| StackFrame {
                id: adapter.frames.add(thread, f.index),
                name: f.function,
                source: Some(adapter.source_for(&f.file)),
                line: adapter.line_out(f.line),
                column,
            })
            .collect();
        Ok(Body { stack_frames, total_frames: stack.total })
    }
}
