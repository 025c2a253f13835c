//! `source`: the text of a file the client cannot open itself (`<string>` code, or a path the
//! client does not have), read by the agent in the program.

use super::Handler;
use crate::adapter::Adapter;
use crate::error::DapError;
use crate::types::SourceArguments;
use pymri_session::protocol::requests;
use serde::Serialize;

pub(crate) struct Source;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Body {
    pub content: String,
    pub mime_type: &'static str,
}

impl Handler for Source {
    const COMMAND: &'static str = "source";
    type Arguments = SourceArguments;
    type Body = Body;

    fn handle(adapter: &mut Adapter, args: SourceArguments) -> Result<Body, DapError> {
        let session = adapter.session()?;
        let reference =
            args.source.as_ref().and_then(|s| s.source_reference).unwrap_or(args.source_reference);
        let file = match adapter.sources.name(reference) {
            Some(name) => name.to_string(),
            None => match args.source.and_then(|s| s.path) {
                Some(path) => adapter.paths.to_remote(&path),
                None => return Err(DapError::User(format!("unknown source reference {reference}"))),
            },
        };
        let body = session.request(&requests::Source { file: Some(file), ..Default::default() })?;
        let mut content = body.lines.join("\n");
        content.push('\n');
        Ok(Body { content, mime_type: "text/x-python" })
    }
}
