//! `setExceptionBreakpoints`: the agent's two filters, `raised` and `uncaught` (protocol §5.5).

use super::initialize::FILTERS;
use super::set_breakpoints::Body;
use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Breakpoint, SetExceptionBreakpointsArguments};
use pymri_session::protocol::requests;

pub(crate) struct SetExceptionBreakpoints;

impl Handler for SetExceptionBreakpoints {
    const COMMAND: &'static str = "setExceptionBreakpoints";
    type Arguments = SetExceptionBreakpointsArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: SetExceptionBreakpointsArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let asked: Vec<String> = args
            .filters
            .iter()
            .cloned()
            .chain(args.filter_options.iter().map(|o| o.filter_id.clone()))
            .collect();
        let filters: Vec<String> =
            FILTERS.iter().filter(|f| asked.iter().any(|a| a == *f)).map(|f| f.to_string()).collect();
        session.request(&requests::SetExceptionFilters { filters: filters.clone() })?;
        adapter.exception_filters = filters;
        let breakpoints = asked
            .iter()
            .map(|f| Breakpoint {
                verified: FILTERS.contains(&f.as_str()),
                message: (!FILTERS.contains(&f.as_str())).then(|| format!("unknown exception filter {f:?}")),
                ..Default::default()
            })
            .collect();
        Ok(Body { breakpoints })
    }
}
