//! What `pymri connect`, `pymri listen` and `pymri web --connect` share (`docs/transports.md`
//! §8): where the secret comes from, and how a session with an agent that pymri did not start
//! begins.
//!
//! The secret never comes from the command line itself (§3): a private file (`--secret-file`,
//! else the file `PYMRI_SECRET_FILE` names) or one line of standard input (`--secret-stdin`).

use crate::printer::note;
use crate::repl::{self, ExitOutcome, Mode, ReplOptions};
use anyhow::{Context, Result};
use pymri_session::protocol::messages::ErrorCode;
use pymri_session::Session;
use pymri_transport::secret::{self, SecretError};
use pymri_transport::{Address, SharedSecret};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `--secret-file FILE`.
    File(PathBuf),
    /// `--secret-stdin`.
    Stdin,
    /// Neither: the file `PYMRI_SECRET_FILE` names, if it is set.
    Default,
}

impl SecretSource {
    pub fn new(file: Option<PathBuf>, stdin: bool) -> SecretSource {
        match (file, stdin) {
            (Some(file), _) => SecretSource::File(file),
            (None, true) => SecretSource::Stdin,
            (None, false) => SecretSource::Default,
        }
    }

    /// Reads the secret; `None` when none was given anywhere.
    pub fn read(&self) -> Result<Option<SharedSecret>, SecretError> {
        match self {
            SecretSource::File(path) => secret::read_file(path).map(Some),
            SecretSource::Stdin => secret::read_line_from_stdin("Secret: ").map(Some),
            SecretSource::Default => secret::file_from_env().map(|path| secret::read_file(&path)).transpose(),
        }
    }

    /// The file holding the secret, if it is one (to show the agent's command line).
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            SecretSource::File(path) => Some(path.clone()),
            SecretSource::Stdin => None,
            SecretSource::Default => secret::file_from_env(),
        }
    }
}

/// Connecting needs the agent's secret, and none was given.
#[derive(Debug)]
pub struct NoSecret {
    pub address: String,
}

impl fmt::Display for NoSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connecting to {} needs the agent's secret\n\
             hint: pass the file the agent reads with --secret-file FILE (an agent that listens on a local \
             address without one printed the path of the secret it made), or give it with --secret-stdin",
            self.address
        )
    }
}

impl std::error::Error for NoSecret {}

/// The secret for connecting to `address`, which must have been given.
fn required_secret(source: &SecretSource, address: &str) -> Result<SharedSecret> {
    match source.read()? {
        Some(secret) => Ok(secret),
        None => Err(NoSecret { address: address.to_string() }.into()),
    }
}

/// Connects to the agent listening at `address` (`pymri connect`, `pymri web --connect`) and
/// [`begin`]s the session.
pub fn connect(address: &str, secret: &SecretSource) -> Result<Session> {
    let address = Address::parse(address)?;
    let shown = address.to_string();
    let secret = required_secret(secret, &shown)?;
    let session = pymri_transport::connect(&address, &secret)?;
    begin(&session, &format!("at {shown}"))?;
    Ok(session)
}

/// Says which program the session is with, and starts it if it waits for its debugger
/// (`python -m pymri_agent --wait`: the agent is in `launch` mode until `start`), stopping at
/// its first line so that breakpoints can be set first, as `pymri run` does. A program that
/// runs already (`attach` mode) is left running; the REPL says how to stop it.
/// `whence` says where it is: "at tcp:HOST:PORT", "from 10.0.0.5:41234".
pub fn begin(session: &Session, whence: &str) -> Result<()> {
    let ready = session.ready();
    note(&format!(
        "Connected to process {} (Python {}) {whence}{}",
        ready.pid,
        ready.python.version,
        program_of(session).map(|p| format!(": {}", crate::escape::Name(&p))).unwrap_or_default()
    ));
    if ready.mode == "launch" {
        match pymri_launch::start(session, true) {
            Ok(()) => {}
            // Started by an earlier session: it runs already.
            Err(e) if e.agent_error().is_some_and(|a| a.code == ErrorCode::BadState) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("starting the program")),
        }
    }
    Ok(())
}

/// The program's command line as the agent reports it.
fn program_of(session: &Session) -> Option<String> {
    let argv = &session.ready().argv;
    (!argv.is_empty()).then(|| argv.join(" "))
}

/// How the program is named in messages: its command line, else its process.
pub fn program_name(session: &Session) -> String {
    program_of(session).unwrap_or_else(|| format!("process {}", session.ready().pid))
}

/// The REPL over a remote session, until the user detaches or the session ends.
pub fn run_repl(session: Session, commands: Vec<String>) -> Result<()> {
    let program = program_name(&session);
    let outcome = repl::run_session(session, ReplOptions { mode: Mode::Remote, commands, program })
        .context("running the debugger")?;
    if let ExitOutcome::Lost(reason) = outcome {
        note(&format!("pymri: {reason}"));
    }
    Ok(())
}
