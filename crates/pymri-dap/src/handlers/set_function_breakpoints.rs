//! `setFunctionBreakpoints`: stop at the first line of each call of the named functions
//! (`func`, `module.func`, `Class.method`, `module.Class.method`).

use super::set_breakpoints::{convert, Body};
use super::{non_empty, Handler};
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Breakpoint, SetFunctionBreakpointsArguments};
use pymri_session::protocol::requests::{self, BreakpointResult};

pub(crate) struct SetFunctionBreakpoints;

impl Handler for SetFunctionBreakpoints {
    const COMMAND: &'static str = "setFunctionBreakpoints";
    type Arguments = SetFunctionBreakpointsArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: SetFunctionBreakpointsArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let request = requests::SetFunctionBreakpoints {
            breakpoints: args
                .breakpoints
                .iter()
                .map(|b| requests::FunctionBreakpoint {
                    function: b.name.clone(),
                    condition: non_empty(b.condition.clone()),
                    hit_condition: non_empty(b.hit_condition.clone()),
                })
                .collect(),
        };
        let answer = session.request(&request)?;
        adapter.function_breakpoints = answer
            .breakpoints
            .iter()
            .filter_map(|b| match b {
                BreakpointResult::Set(b) => Some(b.id),
                BreakpointResult::Refused { .. } => None,
            })
            .collect();
        let mut breakpoints: Vec<Breakpoint> =
            answer.breakpoints.into_iter().map(|b| convert(adapter, b)).collect();
        breakpoints.resize_with(args.breakpoints.len(), || Breakpoint {
            verified: false,
            message: Some("not set".into()),
            ..Default::default()
        });
        Ok(Body { breakpoints })
    }
}
