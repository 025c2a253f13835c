//! `scopes`: a frame's locals (and globals, below module level).

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::{Scope, ScopesArguments};
use pymri_session::protocol::requests;
use serde::Serialize;

pub(crate) struct Scopes;

#[derive(Debug, Serialize)]
pub(crate) struct Body {
    pub scopes: Vec<Scope>,
}

impl Handler for Scopes {
    const COMMAND: &'static str = "scopes";
    type Arguments = ScopesArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: ScopesArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let (thread, frame) = adapter.frame(args.frame_id)?;
        let body = session.request(&requests::Scopes { thread, frame })?;
        let scopes = body
            .scopes
            .into_iter()
            .map(|s| Scope {
                presentation_hint: if s.name == "Locals" { Some("locals") } else { None },
                variables_reference: i64::try_from(s.reference).unwrap_or(0),
                expensive: s.name == "Globals",
                name: s.name,
            })
            .collect();
        Ok(Body { scopes })
    }
}
