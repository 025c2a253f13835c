//! Looking at the stopped program: `where`, `up`, `down`, `p`, `pp`, `args`, `whatis`,
//! `retval`, `display`, `undisplay`, `interact`, `threads`, `thread`, and Python statements.

use super::editor::Input;
use super::output::location;
use super::{invalid_argument, missing_argument, user_error, CmdError, CmdResult, Display, Flow, Repl};
use crate::escape::Name;
use pymri_session::protocol::messages::{Location, StopReason};
use pymri_session::protocol::requests::{
    Args, EvalMode, Evaluate, Evaluated, Interact, InteractAction, Retval, StackFrame, Threads, Whatis,
};

pub(crate) fn location_of(frame: &StackFrame) -> Location {
    Location {
        file: frame.file.clone(),
        line: frame.line,
        function: frame.function.clone(),
        module: frame.module.clone(),
    }
}

pub(crate) fn where_(repl: &mut Repl, _arg: &str) -> CmdResult {
    let sel = repl.selection()?;
    let stop = repl.selected_stop()?;
    let frames = repl.frames()?;
    for frame in frames.iter().rev() {
        let retval = if frame.index == 0 { super::location_retval(&stop) } else { None };
        let text = repl.entry_text(&location_of(frame), retval, frame.index == sel.frame);
        repl.out.styled_line(&text);
    }
    Ok(Flow::Stay)
}

fn select_frame(repl: &mut Repl, index: u32) -> CmdResult {
    repl.session.state().select_frame(index);
    repl.listed_to = None;
    let frame = repl.current_frame()?;
    let text = repl.entry_text(&location_of(&frame), None, true);
    repl.out.styled_line(&text);
    Ok(Flow::Stay)
}

fn count(arg: &str) -> std::result::Result<i64, CmdError> {
    if arg.is_empty() {
        return Ok(1);
    }
    arg.parse::<i64>().or_else(|_| user_error(format!("Invalid frame count ({arg})")))
}

pub(crate) fn up(repl: &mut Repl, arg: &str) -> CmdResult {
    let sel = repl.selection()?;
    let total = repl.frames()?.len() as u32;
    // The count is read first: pdb, whose own frames lie above the program's, has not reached
    // its oldest frame where pymri has.
    let n = count(arg)?;
    if sel.frame + 1 >= total {
        return user_error("Oldest frame");
    }
    let target = if n < 0 { total - 1 } else { (sel.frame as u64 + n as u64).min(total as u64 - 1) as u32 };
    select_frame(repl, target)
}

pub(crate) fn down(repl: &mut Repl, arg: &str) -> CmdResult {
    let sel = repl.selection()?;
    if sel.frame == 0 {
        return user_error("Newest frame");
    }
    let n = count(arg)?;
    let target = if n < 0 { 0 } else { sel.frame.saturating_sub(n.min(u32::MAX as i64) as u32) };
    select_frame(repl, target)
}

/// Evaluates in the selected frame; no time limit (user code may take long), Ctrl-C abandons.
pub(crate) fn evaluate(
    repl: &mut Repl,
    expression: &str,
    mode: EvalMode,
) -> std::result::Result<Evaluated, CmdError> {
    let sel = repl.selection()?;
    let request = Evaluate {
        thread: Some(sel.thread),
        frame: Some(sel.frame),
        expression: expression.to_string(),
        mode,
        ..Default::default()
    };
    Ok(repl.session.request_with_timeout(&request, None)?)
}

/// Prints what evaluated code wrote, then its value or pdb's `*** Error: message`.
fn show(repl: &mut Repl, result: &Evaluated) {
    repl.out.text(&result.output);
    if let Some(exc) = &result.exception {
        repl.out.error(&exc.text);
    } else if let Some(value) = &result.result {
        repl.out.line(value);
    }
}

/// `!statement` and anything that is not a command.
pub(crate) fn evaluate_line(repl: &mut Repl, line: &str) -> CmdResult {
    let result = evaluate(repl, line, EvalMode::Auto)?;
    show(repl, &result);
    Ok(Flow::Stay)
}

/// An empty expression: pdb 3.14 asks for one; earlier pdb evaluates it, and so does pymri
/// there (the SyntaxError is that Python's).
pub(crate) fn expression_arg(repl: &Repl, arg: &str, usage: &str) -> std::result::Result<(), CmdError> {
    if arg.is_empty() && repl.python_at_least(14) {
        return missing_argument(usage);
    }
    Ok(())
}

pub(crate) fn p(repl: &mut Repl, arg: &str) -> CmdResult {
    expression_arg(repl, arg, "p expression")?;
    let result = evaluate(repl, arg, EvalMode::Eval)?;
    show(repl, &result);
    Ok(Flow::Stay)
}

pub(crate) fn pp(repl: &mut Repl, arg: &str) -> CmdResult {
    expression_arg(repl, arg, "pp expression")?;
    let result = evaluate(repl, arg, EvalMode::Pprint)?;
    show(repl, &result);
    Ok(Flow::Stay)
}

pub(crate) fn args(repl: &mut Repl, arg: &str) -> CmdResult {
    if !arg.trim().is_empty() && repl.python_at_least(13) {
        return invalid_argument(arg.trim(), "a(rgs)");
    }
    let sel = repl.selection()?;
    let body = repl.session.request(&Args { thread: sel.thread, frame: sel.frame })?;
    for a in body.args {
        repl.out.line(&format!("{} = {}", a.name, a.value));
    }
    Ok(Flow::Stay)
}

pub(crate) fn whatis(repl: &mut Repl, arg: &str) -> CmdResult {
    expression_arg(repl, arg, "whatis expression")?;
    let sel = repl.selection()?;
    let body = repl.session.request(&Whatis {
        thread: sel.thread,
        frame: sel.frame,
        expression: arg.to_string(),
    })?;
    match (body.text, body.exception) {
        (_, Some(exc)) => repl.out.error(&exc.text),
        (Some(text), None) => repl.out.line(&text),
        (None, None) => {}
    }
    Ok(Flow::Stay)
}

pub(crate) fn retval(repl: &mut Repl, _arg: &str) -> CmdResult {
    let stop = repl.selected_stop()?;
    if stop.reason != StopReason::Return {
        return user_error("Not yet returned!");
    }
    let body = repl.session.request(&Retval { thread: stop.thread })?;
    repl.out.line(&body.value);
    Ok(Flow::Stay)
}

/// The value of a display expression as pdb shows it (errors included). From 3.13 on, pdb
/// refuses to display an expression that does not compile.
fn display_value(repl: &mut Repl, expression: &str) -> std::result::Result<String, CmdError> {
    Ok(displayed(evaluate(repl, expression, EvalMode::Eval)?))
}

fn displayed(result: Evaluated) -> String {
    match (result.exception, result.result) {
        (Some(exc), _) => format!("** raised {} **", exc.text),
        (None, Some(v)) => v,
        (None, None) => "None".into(),
    }
}

pub(crate) fn display(repl: &mut Repl, arg: &str) -> CmdResult {
    let key = repl.frame_key()?;
    if arg.is_empty() {
        let lines: Vec<String> = repl
            .displays
            .iter()
            .filter(|d| d.key == key)
            .map(|d| format!("{}: {}", d.expression, d.last))
            .collect();
        if lines.is_empty() && repl.python_at_least(13) {
            repl.out.line("No expression is being displayed");
        } else {
            repl.out.line("Currently displaying:");
        }
        for line in lines {
            repl.out.line(&line);
        }
        return Ok(Flow::Stay);
    }
    let result = evaluate(repl, arg, EvalMode::Eval)?;
    if let Some(exc) = &result.exception {
        let syntax = matches!(exc.type_name.as_str(), "SyntaxError" | "IndentationError" | "TabError");
        if syntax && repl.python_at_least(13) {
            // pdb 3.13+ refuses an expression that does not compile.
            return user_error(format!("Unable to display {arg}: {}", exc.text));
        }
    }
    let value = displayed(result);
    repl.displays.retain(|d| !(d.key == key && d.expression == arg));
    repl.displays.push(Display { key, expression: arg.to_string(), last: value.clone() });
    repl.out.line(&format!("display {arg}: {value}"));
    Ok(Flow::Stay)
}

pub(crate) fn undisplay(repl: &mut Repl, arg: &str) -> CmdResult {
    let key = repl.frame_key()?;
    if arg.is_empty() {
        repl.displays.retain(|d| d.key != key);
        return Ok(Flow::Stay);
    }
    let before = repl.displays.len();
    repl.displays.retain(|d| !(d.key == key && d.expression == arg));
    if repl.displays.len() == before {
        return user_error(format!("not displaying {arg}"));
    }
    Ok(Flow::Stay)
}

impl Repl {
    /// At a stop: the display expressions of this frame whose value changed (pdb's format).
    pub(crate) fn show_displays(&mut self) {
        if self.displays.is_empty() {
            return;
        }
        let Ok(key) = self.frame_key() else { return };
        let exprs: Vec<String> =
            self.displays.iter().filter(|d| d.key == key).map(|d| d.expression.clone()).collect();
        for expression in exprs {
            let Ok(value) = display_value(self, &expression) else { continue };
            let Some(d) = self.displays.iter_mut().find(|d| d.key == key && d.expression == expression)
            else {
                continue;
            };
            if d.last != value {
                let old = std::mem::replace(&mut d.last, value.clone());
                self.out.line(&format!("display {expression}: {value}  [old: {old}]"));
            }
        }
    }
}

/// pdb's `interact`: a console on the frame's names, until Ctrl-D.
pub(crate) fn interact(repl: &mut Repl, _arg: &str) -> CmdResult {
    if repl.headless {
        return user_error("interact needs a terminal: use pymri run or pymri attach");
    }
    let sel = repl.selection()?;
    let start = Interact { thread: sel.thread, frame: sel.frame, action: InteractAction::Start };
    let Some(mut session) = repl.session.request(&start)?.session else {
        return user_error("the agent did not open a console");
    };
    // pdb's banners for the version.
    let (banner, exit) = if repl.python_at_least(13) {
        ("*pdb interact start*", "*exit from pdb interact command*")
    } else {
        ("*interactive*", "now exiting InteractiveConsole...")
    };
    repl.out.line(banner);
    let mut more = false;
    loop {
        let line = match repl.editor.read(if more { "... " } else { ">>> " }) {
            Input::Line(l) => {
                repl.editor.add_history(&l);
                l
            }
            Input::Eof => break,
            Input::Interrupted => {
                repl.out.line("KeyboardInterrupt");
                if more {
                    // Drop the unfinished block: a fresh console (its names are the frame's).
                    let _ = repl.session.request(&Interact {
                        thread: sel.thread,
                        frame: sel.frame,
                        action: InteractAction::End { session },
                    });
                    match repl.session.request(&start)?.session {
                        Some(s) => session = s,
                        None => break,
                    }
                    more = false;
                }
                continue;
            }
        };
        let push = Interact {
            thread: sel.thread,
            frame: sel.frame,
            action: InteractAction::Push { session, source: line },
        };
        let body = repl.session.request_with_timeout(&push, None)?;
        more = body.more;
        repl.out.text(&body.output);
        if let Some(exc) = body.exception {
            repl.out.text(&exc.traceback);
        }
    }
    repl.out.line("");
    repl.out.line(exit);
    let end = Interact { thread: sel.thread, frame: sel.frame, action: InteractAction::End { session } };
    repl.session.request(&end)?;
    Ok(Flow::Stay)
}

pub(crate) fn threads(repl: &mut Repl, _arg: &str) -> CmdResult {
    let list = repl.session.request(&Threads {})?.threads;
    let selected = repl.session.state().selection().map(|s| s.thread);
    let mut rows = Vec::new();
    for t in &list {
        let number = repl.threads.number(t.id);
        let state = if t.stopped {
            format!("stopped ({})", Name(t.reason.as_deref().unwrap_or("?")))
        } else {
            "running".to_string()
        };
        let at = t.frame.as_ref().map(|f| location(&f.file, f.line, &f.function)).unwrap_or_default();
        let mark = if Some(t.id) == selected { "*" } else { " " };
        rows.push((number, [mark.to_string(), number.to_string(), Name(&t.name).to_string(), state, at]));
    }
    rows.sort_by_key(|(n, _)| *n);
    // Columns as wide as their longest cell, pdb's widths at least; a name longer than
    // LONGEST (the program chose it) pushes only its own row.
    const LONGEST: usize = 48;
    let header = [" ".to_string(), "Id".into(), "Name".into(), "State".into(), "Where".into()];
    let mut widths = [1, 3, 16, 21];
    for (_, cells) in &rows {
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count().min(LONGEST));
        }
    }
    for cells in std::iter::once(&header).chain(rows.iter().map(|(_, cells)| cells)) {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            line.push_str(&format!("{cell:<width$} "));
        }
        line.push_str(&cells[4]);
        repl.out.line(line.trim_end());
    }
    Ok(Flow::Stay)
}

pub(crate) fn thread(repl: &mut Repl, arg: &str) -> CmdResult {
    if arg.is_empty() {
        let sel = repl.selection()?;
        let stop = repl.selected_stop()?;
        let number = repl.threads.number(sel.thread);
        repl.out.line(&format!("Current thread is {number} ({})", Name(&stop.thread_name)));
        return Ok(Flow::Stay);
    }
    let Ok(number) = arg.parse::<usize>() else {
        return user_error(format!("Invalid thread number ({arg})"));
    };
    let ident = match repl.threads.ident(number) {
        Some(ident) => ident,
        // A thread ident (as `threads` reports in the agent's terms) is accepted too.
        None if repl.session.state().is_stopped(number as u64) => number as u64,
        None => return user_error(format!("No thread {number} (see 'threads')")),
    };
    if !repl.session.state().select_thread(ident) {
        return user_error(format!("Thread {number} is not stopped"));
    }
    repl.stack = None;
    repl.listed_to = None;
    repl.last_presented = Some(ident);
    let stop = repl.selected_stop()?;
    repl.out.line(&format!("[Thread {number} ({})]", Name(&stop.thread_name)));
    let frame = repl.current_frame()?;
    let retval = super::location_retval(&stop).map(str::to_string);
    let text = repl.entry_text(&location_of(&frame), retval.as_deref(), true);
    repl.out.styled_line(&text);
    Ok(Flow::Stay)
}
