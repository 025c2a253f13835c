//! Why a request failed. Every variant's text is meant for the user: it becomes the error
//! response's `message`, which clients show as it is.

use pymri_session::SessionError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DapError {
    #[error("invalid arguments for '{command}': {detail}")]
    BadArguments { command: &'static str, detail: String },
    #[error("'{0}' before 'initialize': a client must send 'initialize' first")]
    NotInitialized(String),
    #[error("pymri does not support the '{0}' request")]
    Unsupported(String),
    #[error("no program is being debugged yet: send 'launch' or 'attach' first")]
    NoDebuggee,
    #[error("a program is already being debugged in this session")]
    AlreadyDebugging,
    #[error("unknown thread {0}")]
    NoSuchThread(i64),
    #[error("unknown or stale frame {0}: the thread has resumed since")]
    NoSuchFrame(i64),
    /// The agent's answer (a `SessionError::Agent` shows the agent's message as it is), or the
    /// session's failure.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    User(String),
}

/// An error and its causes on one text, as the CLI prints them (`caused by:` lines), skipping
/// causes whose text is already there.
pub fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str("\n  caused by: ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}
