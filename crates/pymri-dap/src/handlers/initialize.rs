//! `initialize`: what pymri can do. The `initialized` event follows `launch`/`attach`, once
//! there is a program to configure.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Capabilities, ExceptionBreakpointsFilter, InitializeArguments};

pub(crate) struct Initialize;

/// The agent's exception filters (protocol §5.5).
pub(crate) const FILTERS: [&str; 2] = ["raised", "uncaught"];

pub(crate) fn capabilities() -> Capabilities {
    Capabilities {
        supports_configuration_done_request: true,
        supports_function_breakpoints: true,
        supports_conditional_breakpoints: true,
        supports_hit_conditional_breakpoints: true,
        supports_evaluate_for_hovers: true,
        exception_breakpoint_filters: vec![
            ExceptionBreakpointsFilter {
                filter: "raised",
                label: "Raised Exceptions",
                description: "Stop where any exception is raised, handled or not",
                default: false,
            },
            ExceptionBreakpointsFilter {
                filter: "uncaught",
                label: "Uncaught Exceptions",
                description: "Stop in the failing frame when an exception is not handled",
                default: true,
            },
        ],
        supports_set_variable: true,
        supports_completions_request: true,
        supports_exception_info_request: true,
        support_terminate_debuggee: true,
        supports_delayed_stack_trace_loading: true,
        supports_log_points: true,
        supports_terminate_request: true,
        supports_clipboard_context: true,
    }
}

impl Handler for Initialize {
    const COMMAND: &'static str = "initialize";
    type Arguments = InitializeArguments;
    type Body = Capabilities;

    fn handle(adapter: &mut Adapter, args: InitializeArguments) -> Result<Capabilities, DapError> {
        adapter.lines_from_1 = args.lines_start_at1.unwrap_or(true);
        adapter.columns_from_1 = args.columns_start_at1.unwrap_or(true);
        if args.path_format.as_deref().is_some_and(|f| f != "path") {
            return Err(DapError::User(format!(
                "pymri speaks file paths; the client asked for {:?}",
                args.path_format.unwrap_or_default()
            )));
        }
        adapter.initialized = true;
        Ok(capabilities())
    }
}
