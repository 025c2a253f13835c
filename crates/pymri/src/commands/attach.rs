//! `pymri attach PID`: the debugger, in a process that is already running.

use crate::printer::note;
use crate::repl::{self, ExitOutcome, Mode, ReplOptions};
use anyhow::{bail, Context, Result};
use pymri_cpython::{LiveProcess, SnapshotOptions};
use pymri_inject::attach::{self, Options};
use pymri_session::Session;
use std::time::Duration;

pub struct AttachOptions {
    pub pid: i32,
    /// Kernel thread id (as `pymri dump` shows it) of the thread to stop; the main one if absent.
    pub thread: Option<i32>,
    pub timeout: Duration,
    /// Commands run at the first stop, as if typed.
    pub commands: Vec<String>,
}

pub fn run(opts: AttachOptions) -> Result<ExitOutcome> {
    let live = LiveProcess::open(opts.pid)?;
    let located = live.locate()?;
    let ident = match opts.thread {
        None => None,
        Some(tid) => {
            let snapshot = located.snapshot(&live.mem, &SnapshotOptions::default())?;
            let host = |t: Option<i32>| t.map(|t| live.host_tid(t));
            match snapshot.threads.iter().find(|t| host(t.tid) == Some(tid)) {
                Some(thread) => Some(thread.ident),
                None => bail!(
                    "process {} has no Python thread {tid}\nhint: `pymri dump {}` lists them",
                    opts.pid,
                    opts.pid
                ),
            }
        }
    };
    note(&format!("Attaching to process {} (Python {})...", opts.pid, located.version));
    let pending = attach::start(&live, &located, &Options { thread: ident, timeout: opts.timeout })?;
    let stream = pending.stream.try_clone().context("duplicating the agent's socket")?;
    let session = Session::connect(stream, &pending.secret, &pending.nonce)
        .context("the agent that connected did not prove it was started by this attach")?;
    pending.checked_in(&live);
    let outcome = repl::run_session(
        session,
        ReplOptions { mode: Mode::Attach, commands: opts.commands, program: live.command.clone() },
    );
    // The staging directory (agent package, socket) goes when `pending` is dropped, after the
    // session: the agent may import more of itself while it runs.
    drop(pending);
    outcome
}
