//! `setVariable`: assign a new value (a Python expression, evaluated in the frame) to a local,
//! a global, an attribute, an item.

use super::variables::{convert, reference};
use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::SetVariableArguments;
use pymri_session::protocol::requests;
use serde::Serialize;

pub(crate) struct SetVariable;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    pub value: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    pub variables_reference: i64,
}

impl Handler for SetVariable {
    const COMMAND: &'static str = "setVariable";
    type Arguments = SetVariableArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: SetVariableArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let v = convert(session.request(&requests::SetVariable {
            reference: reference(args.variables_reference)?,
            name: args.name,
            value: args.value,
        })?);
        Ok(Body { value: v.value, type_name: v.type_name, variables_reference: v.variables_reference })
    }
}
