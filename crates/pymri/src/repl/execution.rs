//! Commands that run the program: `step`, `next`, `until`, `return`, `continue`, `jump`,
//! `restart`, `detach`, `quit`.

use super::{missing_argument, user_error, CmdResult, ExitOutcome, Flow, Mode, Repl};
use pymri_session::protocol::messages::StopReason;
use pymri_session::protocol::requests::{
    Continue, Detach, Jump, Next, Quit, Request, Restart, Step, StepOut, Until,
};
use pymri_session::SessionError;
use std::sync::atomic::Ordering;

/// Sends a request that lets the program run. The program may run, and print, before the
/// agent's answer arrives: a Ctrl-C from the moment the request leaves must pause it, not
/// abandon the wait for the answer.
fn resume<R: Request>(repl: &mut Repl, request: &R) -> Result<(), SessionError> {
    repl.running.store(true, Ordering::SeqCst);
    let answer = repl.session.request(request);
    if answer.is_err() {
        repl.running.store(false, Ordering::SeqCst);
    }
    answer.map(|_| ())
}

pub(crate) fn step(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    resume(repl, &Step { thread, stop_at_return: true })?;
    Ok(Flow::resumed(thread))
}

pub(crate) fn next(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    resume(repl, &Next { thread, stop_at_return: true })?;
    Ok(Flow::resumed(thread))
}

pub(crate) fn until(repl: &mut Repl, arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    let line = if arg.is_empty() {
        None
    } else {
        match arg.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => return user_error(format!("Error in argument: '{arg}'")),
        }
    };
    resume(repl, &Until { thread, line })?;
    Ok(Flow::resumed(thread))
}

pub(crate) fn return_(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    resume(repl, &StepOut { thread })?;
    Ok(Flow::resumed(thread))
}

pub(crate) fn continue_(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    resume(repl, &Continue { thread: Some(thread) })?;
    Ok(Flow::Resume { thread: Some(thread), others_first: true })
}

pub(crate) fn jump(repl: &mut Repl, arg: &str) -> CmdResult {
    let sel = repl.selection()?;
    if arg.trim().is_empty() && repl.python_at_least(14) {
        return missing_argument("j(ump) lineno");
    }
    let Ok(line) = arg.trim().parse::<u32>() else {
        return user_error("The 'jump' command requires a line number");
    };
    if sel.frame != 0 {
        return user_error("You can only jump within the bottom frame");
    }
    let stop = repl.selected_stop()?;
    if stop.post_mortem || stop.reason == StopReason::Exception {
        return user_error(
            "You can only jump within the bottom frame of a running program, not after an exception",
        );
    }
    repl.session.request(&Jump { thread: sel.thread, line })?;
    repl.stack = None;
    repl.listed_to = None;
    let frame = repl.current_frame()?;
    let location = super::inspect::location_of(&frame);
    let text = repl.entry_text(&location, None, true);
    repl.out.styled_line(&text);
    Ok(Flow::Stay)
}

pub(crate) fn restart(repl: &mut Repl, _arg: &str) -> CmdResult {
    if repl.mode != Mode::Run {
        return user_error("restart is only possible for a program started with pymri run");
    }
    repl.session.request(&Restart {})?;
    repl.out.line(&format!("Restarting {}", crate::escape::Name(&repl.program)));
    repl.stopped_this_run = false;
    repl.forget_run();
    Ok(Flow::Resume { thread: None, others_first: false })
}

pub(crate) fn detach(repl: &mut Repl, _arg: &str) -> CmdResult {
    let flow = match repl.session.request(&Detach {}) {
        Ok(_) => repl.wait_for_end(ExitOutcome::Detached),
        // The agent let go as it closed the connection (its process ended with the program,
        // as a reverse agent's does); a closed connection is a detach for the agent anyway.
        Err(SessionError::Closed(_)) => Flow::End(ExitOutcome::Detached),
        Err(e) => return Err(e.into()),
    };
    match repl.mode {
        Mode::Run => repl.out.line("Detached: the program goes on without the debugger."),
        Mode::Attach | Mode::Remote => repl.out.line("Detached."),
    }
    Ok(flow)
}

pub(crate) fn quit(repl: &mut Repl, arg: &str) -> CmdResult {
    match repl.mode {
        Mode::Run => Ok(repl.quit_program()),
        Mode::Attach => {
            // `quit` in attach mode is a detach (§6): the program is never killed.
            repl.session.request(&Quit {})?;
            Ok(repl.wait_for_end(ExitOutcome::Detached))
        }
        // A remote agent may have started the program itself (`--wait`), where `quit` would
        // end it: the session's end is asked for by name.
        Mode::Remote => detach(repl, arg),
    }
}
