//! `setBreakpoints`: all line breakpoints of one file, replaced at once (the agent's
//! `set_breakpoints` has the same meaning). Conditions, hit conditions and log messages pass
//! through: DAP's `{expression}` log messages are the agent's syntax too.

use super::{non_empty, Handler};
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Breakpoint, SetBreakpointsArguments, SourceBreakpoint};
use pymri_session::protocol::requests::{self, BreakpointResult};
use serde::Serialize;

pub(crate) struct SetBreakpoints;

/// The answer of each of the `set*Breakpoints` requests.
#[derive(Debug, Serialize)]
pub(crate) struct Body {
    pub breakpoints: Vec<Breakpoint>,
}

impl Handler for SetBreakpoints {
    const COMMAND: &'static str = "setBreakpoints";
    type Arguments = SetBreakpointsArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: SetBreakpointsArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let wanted: Vec<SourceBreakpoint> = match (args.breakpoints, args.lines) {
            (Some(b), _) => b,
            (None, Some(lines)) => {
                lines.into_iter().map(|line| SourceBreakpoint { line, ..Default::default() }).collect()
            }
            (None, None) => Vec::new(),
        };
        let Some(path) = args.source.path.filter(|p| !p.is_empty()) else {
            let message = "breakpoints need a file on disk".to_string();
            return Ok(Body { breakpoints: refused(&wanted, &message) });
        };
        let request = requests::SetBreakpoints {
            file: adapter.paths.to_remote(&path),
            breakpoints: wanted
                .iter()
                .map(|b| requests::SourceBreakpoint {
                    line: adapter.line_in(b.line),
                    condition: non_empty(b.condition.clone()),
                    hit_condition: non_empty(b.hit_condition.clone()),
                    log_message: non_empty(b.log_message.clone()),
                })
                .collect(),
        };
        let answer = match session.request(&request) {
            Ok(answer) => answer,
            // The file is unknown, say: every breakpoint is unverified, with the reason.
            Err(e) if e.agent_error().is_some() => {
                let message = DapError::from(e).to_string();
                return Ok(Body { breakpoints: refused(&wanted, &message) });
            }
            Err(e) => return Err(e.into()),
        };
        let mut breakpoints: Vec<Breakpoint> =
            answer.breakpoints.into_iter().map(|b| convert(adapter, b)).collect();
        // One answer per breakpoint asked for, in order, whatever the agent sent.
        for b in wanted.iter().skip(breakpoints.len()) {
            breakpoints.push(Breakpoint {
                verified: false,
                line: Some(b.line),
                message: Some("not set".into()),
                ..Default::default()
            });
        }
        breakpoints.truncate(wanted.len());
        Ok(Body { breakpoints })
    }
}

fn refused(wanted: &[SourceBreakpoint], message: &str) -> Vec<Breakpoint> {
    wanted
        .iter()
        .map(|b| Breakpoint {
            verified: false,
            line: Some(b.line),
            message: Some(message.to_string()),
            ..Default::default()
        })
        .collect()
}

/// An agent breakpoint (or refusal) as the client sees it.
pub(crate) fn convert(adapter: &mut Adapter, result: BreakpointResult) -> Breakpoint {
    match result {
        BreakpointResult::Set(b) => Breakpoint {
            id: i64::try_from(b.id).ok(),
            verified: b.verified,
            message: b.message,
            source: b.file.as_deref().map(|f| adapter.source_for(f)),
            line: b.line.map(|l| adapter.line_out(l)),
        },
        BreakpointResult::Refused { line, message, .. } => Breakpoint {
            id: None,
            verified: false,
            message: Some(message),
            source: None,
            line: line.map(|l| adapter.line_out(l)),
        },
    }
}
