//! `variables`: the children of a scope or of an expandable value (the agent's references).

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Variable, VariablesArguments};
use pymri_session::protocol::requests;
use serde::Serialize;

pub(crate) struct Variables;

#[derive(Debug, Serialize)]
pub(crate) struct Body {
    pub variables: Vec<Variable>,
}

/// An agent variable as the client sees it.
pub(crate) fn convert(v: requests::Variable) -> Variable {
    Variable {
        name: v.name,
        value: v.value,
        type_name: Some(v.type_name).filter(|t| !t.is_empty()),
        evaluate_name: v.evaluate_name,
        variables_reference: i64::try_from(v.reference).unwrap_or(0),
    }
}

/// A client's variables reference as the agent's.
pub(crate) fn reference(r: i64) -> Result<u64, DapError> {
    u64::try_from(r)
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(|| DapError::User(format!("unknown variables reference {r}")))
}

impl Handler for Variables {
    const COMMAND: &'static str = "variables";
    type Arguments = VariablesArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: VariablesArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        // No value advertises indexed children, so "indexed" asks for none.
        if args.filter.as_deref() == Some("indexed") {
            return Ok(Body { variables: Vec::new() });
        }
        let body = session.request(&requests::Variables {
            reference: reference(args.variables_reference)?,
            start: args.start.and_then(|s| u64::try_from(s).ok()),
            count: args.count.and_then(|c| u64::try_from(c).ok()).filter(|c| *c > 0),
        })?;
        Ok(Body { variables: body.variables.into_iter().map(convert).collect() })
    }
}
