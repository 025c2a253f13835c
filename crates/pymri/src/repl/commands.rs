//! The command table: names (the first is the canonical one, the others aliases as in pdb),
//! usage, help text and handler. `help` is generated from it, and so is tab completion of
//! command names.

use super::{breakpoints, execution, inspect, source, CmdResult, Repl};

pub(crate) struct Command {
    pub names: &'static [&'static str],
    pub usage: &'static str,
    pub help: &'static str,
    pub run: fn(&mut Repl, &str) -> CmdResult,
    /// Resumes the program (ends a breakpoint's `commands` list, like pdb).
    pub resumes: bool,
}

macro_rules! cmd {
    ($names:expr, $usage:expr, $help:expr, $run:expr) => {
        Command { names: $names, usage: $usage, help: $help, run: $run, resumes: false }
    };
    ($names:expr, $usage:expr, $help:expr, $run:expr, resumes) => {
        Command { names: $names, usage: $usage, help: $help, run: $run, resumes: true }
    };
}

pub(crate) static COMMANDS: &[Command] = &[
    cmd!(&["help", "h"], "h(elp) [command]", "Without argument, list the commands. With a command name, show its help.", help),
    cmd!(
        &["where", "w", "bt"],
        "w(here)",
        "Print a stack trace, most recent frame last. An arrow (>) marks the current frame, which\ndetermines the context of most commands.",
        inspect::where_
    ),
    cmd!(&["up", "u"], "u(p) [count]", "Move the current frame count (default one) levels up in the stack trace (to an\nolder frame).", inspect::up),
    cmd!(&["down", "d"], "d(own) [count]", "Move the current frame count (default one) levels down in the stack trace (to a\nnewer frame).", inspect::down),
    cmd!(
        &["break", "b"],
        "b(reak) [ ([filename:]lineno | function) [, condition] ]",
        "Without argument, list all breakpoints. With a line number, set a breakpoint at that\nline in the current file; with filename:lineno, in that file (a path, or a base name of a\nloaded module); with a function name, at its first line. The condition, an expression,\nmust be true for the breakpoint to stop.",
        breakpoints::break_
    ),
    cmd!(&["tbreak"], "tbreak [ ([filename:]lineno | function) [, condition] ]", "A temporary breakpoint: removed when it is first hit. Same arguments as break.", breakpoints::tbreak),
    cmd!(
        &["clear", "cl"],
        "cl(ear) [filename:lineno | bpnumber ...]",
        "With filename:lineno, delete the breakpoints at that line. With breakpoint numbers,\ndelete those. Without argument, delete all breakpoints (after confirmation).",
        breakpoints::clear
    ),
    cmd!(&["disable"], "disable bpnumber [bpnumber ...]", "Disable the breakpoints: they stay in the list but do not stop.", breakpoints::disable),
    cmd!(&["enable"], "enable bpnumber [bpnumber ...]", "Enable the breakpoints.", breakpoints::enable),
    cmd!(
        &["ignore"],
        "ignore bpnumber [count]",
        "Set the ignore count of a breakpoint: the next count times it is reached (and its\ncondition is true), it does not stop. 0 (the default) makes it stop again.",
        breakpoints::ignore
    ),
    cmd!(&["condition"], "condition bpnumber [condition]", "Set a new condition for the breakpoint; without one, make it unconditional.", breakpoints::condition),
    cmd!(
        &["commands"],
        "commands [bpnumber]",
        "Give commands to run when the breakpoint (default: the last one set) stops, one per line,\nended by 'end'. 'silent' does not show the location; a command that resumes the program\n(continue, step, next, ...) ends the list and resumes.",
        breakpoints::commands
    ),
    cmd!(&["step", "s"], "s(tep)", "Execute the current line, stop at the first possible occasion (in a function that is\ncalled or on the next line in the current function).", execution::step, resumes),
    cmd!(&["next", "n"], "n(ext)", "Continue execution until the next line in the current function is reached or it\nreturns.", execution::next, resumes),
    cmd!(
        &["until", "unt"],
        "unt(il) [lineno]",
        "Without argument, continue until a line with a number greater than the current one is\nreached. With a line number, continue until a line with a number greater or equal to it.\nIn both cases, also stop when the current frame returns.",
        execution::until,
        resumes
    ),
    cmd!(&["return", "r"], "r(eturn)", "Continue execution until the current function returns.", execution::return_, resumes),
    cmd!(
        &["continue", "c", "cont"],
        "c(ont(inue))",
        "Continue execution, only stop when a breakpoint is encountered. Other threads that\nare stopped stay stopped (and are shown next).",
        execution::continue_,
        resumes
    ),
    cmd!(
        &["jump", "j"],
        "j(ump) lineno",
        "Set the next line that will be executed (bottom frame only). Jumping into a loop or out\nof a finally clause is not allowed.",
        execution::jump,
        resumes
    ),
    cmd!(
        &["list", "l"],
        "l(ist) [first[, last] | .]",
        "List source code for the current file. Without arguments, list 11 lines around the\ncurrent line or continue the previous listing. With . as argument, list 11 lines around the\ncurrent line. With one argument, list 11 lines around that line. With two, list that range\n(if the second is smaller than the first, it is a count).",
        source::list
    ),
    cmd!(&["longlist", "ll"], "ll | longlist", "List the whole source code of the current function or frame.", source::longlist),
    cmd!(
        &["source"],
        "source expression",
        "Show the source code of the object the expression gives: a function, method, class or\nmodule.",
        source::source
    ),
    cmd!(&["args", "a"], "a(rgs)", "Print the argument list of the current function.", inspect::args),
    cmd!(&["p"], "p expression", "Print the value of the expression.", inspect::p),
    cmd!(&["pp"], "pp expression", "Pretty-print the value of the expression.", inspect::pp),
    cmd!(
        &["display"],
        "display [expression]",
        "Display the value of the expression if it changed, each time execution stops in the\ncurrent frame. Without expression, list the display expressions of the current frame.",
        inspect::display
    ),
    cmd!(
        &["undisplay"],
        "undisplay [expression]",
        "Do not display the expression any more in the current frame. Without expression, clear\nall display expressions of the current frame.",
        inspect::undisplay
    ),
    cmd!(&["whatis"], "whatis expression", "Print the type of the expression.", inspect::whatis),
    cmd!(&["retval", "rv"], "retval", "Print the return value of the last return of a function.", inspect::retval),
    cmd!(
        &["interact"],
        "interact",
        "Start an interactive interpreter whose global namespace contains all the (global and\nlocal) names found in the current scope. Ctrl-D leaves it.",
        inspect::interact
    ),
    cmd!(
        &["threads"],
        "threads",
        "List the program's threads with where each one is; * marks the selected thread.",
        inspect::threads
    ),
    cmd!(&["thread"], "thread [number]", "Switch to a stopped thread (numbers from 'threads').", inspect::thread),
    cmd!(
        &["sticky"],
        "sticky",
        "Toggle sticky mode: at each stop, clear the screen and show the current function's\nsource with the breakpoints and the current line.",
        source::sticky
    ),
    cmd!(
        &["restart", "run"],
        "restart",
        "Restart the program from its beginning (pymri run only). Breakpoints are kept.",
        execution::restart,
        resumes
    ),
    cmd!(
        &["detach"],
        "detach",
        "Let the program go on without the debugger (every stopped thread resumes).",
        execution::detach,
        resumes
    ),
    cmd!(
        &["quit", "q", "exit"],
        "q(uit) | exit",
        "Quit the debugger. With pymri run, the program is ended; with pymri attach, the\ndebugger detaches and the program goes on.",
        execution::quit,
        resumes
    ),
    cmd!(&["EOF"], "EOF", "Ctrl-D at the prompt: like quit.", execution::quit, resumes),
];

pub(crate) fn find(word: &str) -> Option<&'static Command> {
    if word.is_empty() {
        return None;
    }
    COMMANDS.iter().find(|c| c.names.contains(&word))
}

/// Every command name and alias, sorted.
pub(crate) fn all_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = COMMANDS.iter().flat_map(|c| c.names.iter().copied()).collect();
    names.sort_unstable();
    names
}

/// pdb's parsing: the command is the leading identifier characters, the argument the rest.
pub(crate) fn split(line: &str) -> (&str, &str) {
    let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(line.len());
    (&line[..end], line[end..].trim())
}

/// `c = 5` or `n += 1` assign to a variable that shares a command's name: Python, not a command.
pub(crate) fn looks_like_assignment(arg: &str) -> bool {
    let arg = arg.trim_start();
    let augmented = ["+=", "-=", "*=", "/=", "//=", "%=", "**=", "&=", "|=", "^=", ">>=", "<<=", "@="];
    (arg.starts_with('=') && !arg.starts_with("==")) || augmented.iter().any(|op| arg.starts_with(op))
}

/// Whether a line resumes the program (ends a `commands` list).
pub(crate) fn is_resuming(line: &str) -> bool {
    let (word, arg) = split(line.trim());
    find(word).is_some_and(|c| c.resumes && !looks_like_assignment(arg))
}

fn help(repl: &mut Repl, arg: &str) -> CmdResult {
    if arg.is_empty() {
        repl.out.line("");
        repl.out.line("Documented commands (type help <topic>):");
        repl.out.line("========================================");
        repl.out.line(&columnize(&all_names(), 80));
        repl.out.line("");
        repl.out.line("Anything else is a Python statement or expression, run in the current frame;");
        repl.out.line("'!' forces it (e.g. '!n = 3' when n is also a command).");
        repl.out.line("");
        return Ok(super::Flow::Stay);
    }
    match find(arg) {
        Some(c) => {
            repl.out.line(c.usage);
            for line in c.help.lines() {
                repl.out.line(&format!("        {line}"));
            }
        }
        None if arg == "exec" || arg == "!" => {
            repl.out.line("(!) statement");
            repl.out
                .line("        Execute the (one-line) statement in the context of the current stack frame.");
        }
        None => repl.out.error(&format!("No help for '{arg}'")),
    }
    Ok(super::Flow::Stay)
}

/// Names in columns, filled down then across, within `width` characters.
pub(crate) fn columnize(names: &[&str], width: usize) -> String {
    if names.is_empty() {
        return String::new();
    }
    for rows in 1..=names.len() {
        let cols = names.len().div_ceil(rows);
        let widths: Vec<usize> = (0..cols)
            .map(|c| names.iter().skip(c * rows).take(rows).map(|n| n.len()).max().unwrap_or(0))
            .collect();
        let total = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
        if total <= width || rows == names.len() {
            let mut lines = Vec::new();
            for r in 0..rows {
                let mut line = String::new();
                for (c, w) in widths.iter().enumerate() {
                    if let Some(name) = names.get(c * rows + r) {
                        line.push_str(&format!("{name:<w$}  "));
                    }
                }
                lines.push(line.trim_end().to_string());
            }
            return lines.join("\n");
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_aliases_resolve() {
        for (word, canonical) in
            [("w", "where"), ("bt", "where"), ("cont", "continue"), ("unt", "until"), ("rv", "retval")]
        {
            assert_eq!(find(word).map(|c| c.names[0]), Some(canonical));
        }
        assert!(find("x").is_none());
        assert!(find("").is_none());
        let names = all_names();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup, "a name is used twice");
    }

    #[test]
    fn lines_split_like_pdb() {
        assert_eq!(split("p x"), ("p", "x"));
        assert_eq!(split("p(x)"), ("p", "(x)"));
        assert_eq!(split("b file.py:3, x > 1"), ("b", "file.py:3, x > 1"));
        assert_eq!(split("ll"), ("ll", ""));
        assert!(looks_like_assignment("= 5"));
        assert!(looks_like_assignment("+= 1"));
        assert!(!looks_like_assignment("== 5"));
        assert!(!looks_like_assignment("x"));
        assert!(is_resuming("continue"));
        assert!(is_resuming("  n"));
        assert!(!is_resuming("n = 4"));
        assert!(!is_resuming("p x"));
    }

    #[test]
    fn help_columns_fit() {
        let text = columnize(&all_names(), 80);
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        for name in all_names() {
            assert!(text.split_whitespace().any(|w| w == name));
        }
    }
}
