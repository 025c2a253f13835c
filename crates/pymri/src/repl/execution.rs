//! Commands that run the program: `step`, `next`, `until`, `return`, `continue`, `jump`,
//! `restart`, `detach`, `quit`.

use super::{user_error, CmdResult, ExitOutcome, Flow, Mode, Repl};
use pymri_session::protocol::messages::StopReason;
use pymri_session::protocol::requests::{Continue, Detach, Jump, Next, Quit, Restart, Step, StepOut, Until};

pub(crate) fn step(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    repl.session.request(&Step { thread, stop_at_return: true })?;
    Ok(Flow::resumed(thread))
}

pub(crate) fn next(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    repl.session.request(&Next { thread, stop_at_return: true })?;
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
    repl.session.request(&Until { thread, line })?;
    Ok(Flow::resumed(thread))
}

pub(crate) fn return_(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    repl.session.request(&StepOut { thread })?;
    Ok(Flow::resumed(thread))
}

pub(crate) fn continue_(repl: &mut Repl, _arg: &str) -> CmdResult {
    let thread = repl.selection()?.thread;
    repl.session.request(&Continue { thread: Some(thread) })?;
    Ok(Flow::Resume { thread: Some(thread), others_first: true })
}

pub(crate) fn jump(repl: &mut Repl, arg: &str) -> CmdResult {
    let sel = repl.selection()?;
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
    repl.out.line(&text);
    Ok(Flow::Stay)
}

pub(crate) fn restart(repl: &mut Repl, _arg: &str) -> CmdResult {
    if repl.mode != Mode::Run {
        return user_error("restart is only possible for a program started with pymri run");
    }
    repl.session.request(&Restart {})?;
    repl.out.line(&format!("Restarting {}", repl.program));
    repl.stopped_this_run = false;
    repl.forget_run();
    Ok(Flow::Resume { thread: None, others_first: false })
}

pub(crate) fn detach(repl: &mut Repl, _arg: &str) -> CmdResult {
    repl.session.request(&Detach {})?;
    let flow = repl.wait_for_end(ExitOutcome::Detached);
    match repl.mode {
        Mode::Run => repl.out.line("Detached: the program goes on without the debugger."),
        Mode::Attach => repl.out.line("Detached."),
    }
    Ok(flow)
}

pub(crate) fn quit(repl: &mut Repl, _arg: &str) -> CmdResult {
    match repl.mode {
        Mode::Run => Ok(repl.quit_program()),
        Mode::Attach => {
            // `quit` in attach mode is a detach (§6): the program is never killed.
            repl.session.request(&Quit {})?;
            Ok(repl.wait_for_end(ExitOutcome::Detached))
        }
    }
}
