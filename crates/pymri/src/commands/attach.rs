//! `pymri attach PID`: the debugger, in a process that is already running.

use crate::printer::note;
use crate::repl::{self, ExitOutcome, Mode, ReplOptions};
use anyhow::{bail, Context, Result};
use pymri_cpython::{LiveProcess, Located, SnapshotOptions};
use pymri_inject::attach::{self, Options, Pending};
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

pub fn run(opts: AttachOptions) -> Result<()> {
    let Attached { live, pending, session } = connect(opts.pid, opts.thread, opts.timeout, true)?;
    let outcome = repl::run_session(
        session,
        ReplOptions { mode: Mode::Attach, commands: opts.commands, program: live.command.clone() },
    );
    // The staging directory (agent package, socket) goes when `pending` is dropped, after the
    // session: the agent may import more of itself while it runs.
    drop(pending);
    match outcome? {
        ExitOutcome::Lost(reason) => bail!("the session with the agent was lost: {reason}"),
        ExitOutcome::Quit | ExitOutcome::Detached => Ok(()),
    }
}

/// An authenticated session with the agent injected into a running process.
pub(crate) struct Attached {
    pub live: LiveProcess,
    /// Holds the staging directory: drop it only after the session.
    pub pending: Pending,
    pub session: Session,
}

/// Injects the agent into process `pid` at the next safe point of thread `thread` (a kernel
/// id; the main thread without one), stopping it there if `stop`, and authenticates the agent
/// that connects back.
pub(crate) fn connect(pid: i32, thread: Option<i32>, timeout: Duration, stop: bool) -> Result<Attached> {
    inject(pid, thread, timeout, stop, true)
}

/// [`connect`] without the "Attaching..." note: for commands whose stderr is the code's own
/// (`exec`).
pub(crate) fn connect_quietly(
    pid: i32,
    thread: Option<i32>,
    timeout: Duration,
    stop: bool,
) -> Result<Attached> {
    inject(pid, thread, timeout, stop, false)
}

fn inject(pid: i32, thread: Option<i32>, timeout: Duration, stop: bool, announce: bool) -> Result<Attached> {
    let live = LiveProcess::open(pid)?;
    let located = live.locate()?;
    let ident = thread_ident(&live, &located, thread)?;
    if announce {
        note(&format!("Attaching to process {pid} (Python {})...", located.version));
    }
    let pending = attach::start(&live, &located, &Options { thread: ident, timeout, stop })?;
    let stream = pending.stream.try_clone().context("duplicating the agent's socket")?;
    let session = Session::connect(stream, &pending.secret, &pending.nonce)
        .context("the agent that connected did not prove it was started by this attach")?;
    pending.checked_in(&live);
    Ok(Attached { live, pending, session })
}

/// The `threading` ident of the Python thread whose kernel id (as `pymri dump` shows it) is
/// `tid`; `None` (the main thread) without one.
fn thread_ident(live: &LiveProcess, located: &Located, tid: Option<i32>) -> Result<Option<u64>> {
    let Some(tid) = tid else { return Ok(None) };
    let snapshot = located.snapshot(&live.mem, &SnapshotOptions::default())?;
    let host = |t: Option<i32>| t.map(|t| live.host_tid(t));
    match snapshot.threads.iter().find(|t| host(t.tid) == Some(tid)) {
        Some(thread) => Ok(Some(thread.ident)),
        None => bail!(
            "process {} has no Python thread {tid}\nhint: `pymri dump {}` lists them",
            live.pid,
            live.pid
        ),
    }
}
