//! `pymri run`: start a program under the debugger, like `python -m pdb`.
//!
//! The launch (`pymri-launch`) follows the protocol's §9: the agent package is written into a private directory
//! (mode 0700, ours), the program is started as
//! `python -m pymri_agent.launch [-m module | script] ARGS` with that directory on
//! `PYTHONPATH`, the session secret in a pipe it inherits (`PYMRI_AGENT_SECRET_FD`), and one end
//! of a socket pair as its connection (`PYMRI_AGENT_ADDRESS=fd:N`): no listening socket, no
//! file in the file system that anyone else could connect to. The launcher removes all of that
//! from the program's view before the program's first line.
//!
//! The program keeps our stdin, stdout and stderr: it and the REPL share the terminal, as with
//! pdb (the program only runs while the REPL waits). It starts with SIGINT ignored: Ctrl-C
//! while it runs stops it in the debugger instead of raising `KeyboardInterrupt`.
//!
//! With `--root DIR` the program runs chrooted in DIR (a container's or a Debian root's file
//! system): `--python` and the script are paths inside DIR, and the private directory is made
//! in DIR's `/tmp`.
//!
//! The exit status is the program's own (128 + N if signal N killed it).

use crate::repl::{self, ExitOutcome, Mode, ReplOptions};
use anyhow::{Context, Result};
use pymri_launch::{launch, LaunchOptions, Launched, Process, Streams};
use pymri_session::Session;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Child;

pub use pymri_launch::Program;

pub struct RunOptions {
    /// The interpreter (a path inside `root`); `python3` from `PATH` if `None`.
    pub python: Option<PathBuf>,
    /// Run the program chrooted in this directory.
    pub root: Option<PathBuf>,
    /// pdb's `-c`: commands run at the first stop.
    pub commands: Vec<String>,
    pub program: Program,
    pub args: Vec<String>,
}

/// Runs the program under the REPL; returns the program's exit status.
pub fn run(opts: RunOptions) -> Result<u8> {
    let (mut process, session) =
        launch_to_first_line(opts.python, opts.root, opts.program, opts.args, Streams::Inherit)?;
    let options =
        ReplOptions { mode: Mode::Run, commands: opts.commands, program: process.program_name.clone() };
    let outcome = match repl::run_session(session, options) {
        Ok(o) => o,
        Err(e) => {
            kill(&mut process.child);
            return Err(e);
        }
    };
    let status = match outcome {
        // The program goes on undebugged: wait for it, letting Ctrl-C end it.
        ExitOutcome::Detached => wait_detached(&mut process.child)?,
        ExitOutcome::Quit | ExitOutcome::Lost(_) => {
            process.child.wait().context("waiting for the program")?
        }
    };
    if let ExitOutcome::Lost(reason) = &outcome {
        crate::printer::note(&format!("pymri: {reason}"));
    }
    // The agent's private directory goes last: the program may import more of it until its end.
    drop(process);
    Ok(exit_code(status))
}

/// Launches the program under the agent (`pymri run`, `pymri web SCRIPT`), SIGINT ignored, and
/// lets it run to its first line; a program that could not be started is killed.
pub(crate) fn launch_to_first_line(
    python: Option<PathBuf>,
    root: Option<PathBuf>,
    program: Program,
    args: Vec<String>,
    streams: Streams,
) -> Result<(Process, Session)> {
    let mut options = LaunchOptions::new(program);
    options.python = python;
    options.root = root;
    options.args = args;
    options.streams = streams;
    options.ignore_sigint = true;
    let Launched { mut process, session } = launch(&options)?;
    if let Err(e) = pymri_launch::start(&session, true) {
        kill(&mut process.child);
        return Err(anyhow::Error::new(e).context("starting the program"));
    }
    Ok((process, session))
}

/// The program's exit status as a shell reports it (128 + N if signal N killed it).
pub(crate) fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => 1,
    }
}

/// Ends a launched program that pymri gives up on, and reaps it.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a detached program; Ctrl-C (which it ignores) ends it with SIGTERM.
pub(crate) fn wait_detached(child: &mut Child) -> Result<std::process::ExitStatus> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
    let handle = signals.handle();
    let pid = child.id() as libc::pid_t;
    let forwarder = std::thread::spawn(move || {
        for _ in signals.forever() {
            // SAFETY: kill(2) with a pid we started and have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    });
    let status = child.wait();
    handle.close();
    let _ = forwarder.join();
    Ok(status?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_programs() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
