//! Breakpoint commands: `break`, `tbreak`, `clear`, `disable`, `enable`, `ignore`,
//! `condition`, `commands`. Breakpoints live in the agent (they survive a restart); a
//! breakpoint's `commands` are kept here and run when it stops.

use super::editor::Input;
use super::{commands, invalid_argument, missing_argument, user_error, CmdError, CmdResult, Flow, Repl};
use crate::escape::{self, Name};
use pymri_session::protocol::messages::Breakpoint;
use pymri_session::protocol::requests::{
    ClearBreakpoints, ListBreakpoints, SetBreakpoint, Source, UpdateBreakpoint,
};

/// `file:line` of a breakpoint, as pdb prints it.
pub(crate) fn where_(bp: &Breakpoint) -> String {
    match (&bp.file, bp.line) {
        (Some(file), Some(line)) => format!("{}:{line}", Name(file)),
        (Some(file), None) => escape::name(file).into_owned(),
        _ => escape::name(bp.function.as_deref().unwrap_or_default()).into_owned(),
    }
}

/// Where a new breakpoint goes.
#[derive(Debug, PartialEq, Eq)]
enum Spot {
    Line(Option<String>, u32),
    Function(String),
}

/// `[file:]line` or a function name, then an optional `, condition`.
fn parse_spot(arg: &str) -> std::result::Result<(Spot, Option<String>), CmdError> {
    let (spot, condition) = match arg.split_once(',') {
        Some((s, c)) => (s.trim(), Some(c.trim()).filter(|c| !c.is_empty()).map(str::to_string)),
        None => (arg.trim(), None),
    };
    if let Some((file, line)) = spot.rsplit_once(':') {
        if let Ok(n) = line.trim().parse::<u32>() {
            return Ok((Spot::Line(Some(file.trim().to_string()), n), condition));
        }
        return user_error(format!("Bad lineno: {}", line.trim()));
    }
    if let Ok(n) = spot.parse::<u32>() {
        return Ok((Spot::Line(None, n), condition));
    }
    let valid = !spot.is_empty()
        && spot.split('.').all(|p| {
            p.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
    if !valid {
        return user_error(format!(
            "The specified object '{spot}' is not a function or was not found along sys.path."
        ));
    }
    Ok((Spot::Function(spot.to_string()), condition))
}

pub(crate) fn break_(repl: &mut Repl, arg: &str) -> CmdResult {
    set(repl, arg, false)
}

pub(crate) fn tbreak(repl: &mut Repl, arg: &str) -> CmdResult {
    set(repl, arg, true)
}

fn set(repl: &mut Repl, arg: &str, temporary: bool) -> CmdResult {
    if arg.is_empty() {
        // pdb's tbreak is break with a flag: without argument, both list.
        list(repl)?;
        return Ok(Flow::Stay);
    }
    let (spot, condition) = parse_spot(arg)?;
    let sel = repl.session.state().selection();
    let mut request = SetBreakpoint { condition, temporary, ..Default::default() };
    match spot {
        Spot::Line(file, line) => {
            let file = match file {
                Some(f) => f,
                None => repl.current_frame()?.file,
            };
            request.file = Some(file);
            request.line = Some(line);
        }
        Spot::Function(name) => {
            request.function = Some(name);
            if let Some(sel) = sel {
                request.thread = Some(sel.thread);
                request.frame = Some(sel.frame);
            }
        }
    }
    let bp = match repl.session.request(&request) {
        Ok(body) => body.breakpoint,
        // pdb also finds a function that is not defined yet (the program has not run its
        // `def`) by its `def` line in the current file; it stops at the body's first line.
        Err(e)
            if request.function.is_some()
                && e.agent_error().is_some_and(|a| a.code.as_str() == "not_found") =>
        {
            let name = request.function.take().unwrap_or_default();
            let Some((file, def, line)) = find_def(repl, &name)? else {
                return user_error(format!(
                    "The specified object '{name}' is not a function or was not found along sys.path."
                ));
            };
            request.file = Some(file);
            request.line = Some(line);
            request.thread = None;
            request.frame = None;
            match repl.session.request(&request) {
                Ok(body) => {
                    if !repl.python_at_least(13) {
                        // pdb up to 3.12 names such a breakpoint by its `def` line.
                        repl.bp_lines.insert(body.breakpoint.id, def);
                    }
                    body.breakpoint
                }
                Err(e) => return refused_line(repl, None, e),
            }
        }
        Err(e) if request.line.is_some() => return refused_line(repl, request.file.as_deref(), e),
        Err(e) => return Err(e.into()),
    };
    repl.out.line(&format!("Breakpoint {} at {}", bp.id, where_(&shown(repl, &bp))));
    Ok(Flow::Stay)
}

/// `bp` as the REPL names it (see `Repl::bp_lines`).
pub(crate) fn shown(repl: &Repl, bp: &Breakpoint) -> Breakpoint {
    let mut bp = bp.clone();
    if let Some(&line) = repl.bp_lines.get(&bp.id) {
        bp.line = Some(line);
    }
    bp
}

/// A line breakpoint the agent refused, said as pdb says it (the agent's messages, made for
/// every controller, also say which file and how long it is). `typed`: the file as the user
/// named it, if they did.
fn refused_line(repl: &mut Repl, typed: Option<&str>, e: pymri_session::SessionError) -> CmdResult {
    let Some(agent) = e.agent_error() else { return Err(e.into()) };
    match agent.code.as_str() {
        "not_found" if typed.is_some() => {
            user_error(format!("'{}' not found from sys.path", typed.unwrap_or_default()))
        }
        "invalid_location" if agent.message.starts_with("End of file") => {
            // pdb's message, not an error.
            repl.out.line("End of file");
            Ok(Flow::Stay)
        }
        "invalid_location" if agent.message.starts_with("Blank or comment") => user_error("Blank or comment"),
        _ => Err(e.into()),
    }
}

/// The `def NAME` line and the first line of its body in the current frame's file.
fn find_def(repl: &mut Repl, name: &str) -> std::result::Result<Option<(String, u32, u32)>, CmdError> {
    if name.contains('.') {
        return Ok(None);
    }
    let file = repl.current_frame()?.file;
    let source = repl.session.request(&Source { file: Some(file.clone()), ..Default::default() })?;
    Ok(function_lines(&source.lines, name).map(|(def, body)| (file, def, body)))
}

/// 1-based line of the first statement of `def name(...)` in `lines`: after the signature
/// (which may span lines), blank lines, comments and the docstring.
#[cfg(test)]
fn function_body_line(lines: &[String], name: &str) -> Option<u32> {
    function_lines(lines, name).map(|(_, body)| body)
}

/// 1-based lines of `def name(...)` in `lines` and of its body's first statement.
fn function_lines(lines: &[String], name: &str) -> Option<(u32, u32)> {
    let is_def = |l: &str| {
        let l = l.trim_start();
        let l = l.strip_prefix("async").map(str::trim_start).unwrap_or(l);
        l.strip_prefix("def").filter(|r| r.starts_with(char::is_whitespace)).is_some_and(|r| {
            let r = r.trim_start();
            r.strip_prefix(name).is_some_and(|after| after.trim_start().starts_with('('))
        })
    };
    let start = lines.iter().position(|l| is_def(l))?;
    // The signature ends at the first ':' outside brackets.
    let mut depth = 0i32;
    let mut end = None;
    'scan: for (i, l) in lines.iter().enumerate().skip(start) {
        for (j, c) in l.char_indices() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                '#' => break,
                ':' if depth == 0 => {
                    let rest = l[j + 1..].trim();
                    if !rest.is_empty() && !rest.starts_with('#') {
                        return Some((start as u32 + 1, i as u32 + 1)); // `def f(): return x`
                    }
                    end = Some(i);
                    break 'scan;
                }
                _ => {}
            }
        }
    }
    let mut i = end? + 1;
    let skip_blank = |i: &mut usize| {
        while lines.get(*i).is_some_and(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            *i += 1;
        }
    };
    skip_blank(&mut i);
    let first = lines.get(i)?.trim_start();
    let body = first.trim_start_matches(|c: char| "rRbBuU".contains(c));
    if let Some(quote) = ["\"\"\"", "'''"].into_iter().find(|q| body.starts_with(q)) {
        let after = &body[3..];
        if !after.contains(quote) {
            i += 1;
            while lines.get(i).is_some_and(|l| !l.contains(quote)) {
                i += 1;
            }
        }
        i += 1;
        skip_blank(&mut i);
    } else if body.starts_with('"') || body.starts_with('\'') {
        i += 1;
        skip_blank(&mut i);
    }
    lines.get(i).map(|_| (start as u32 + 1, i as u32 + 1))
}

fn all(repl: &mut Repl) -> std::result::Result<Vec<Breakpoint>, CmdError> {
    Ok(repl.session.request(&ListBreakpoints {})?.breakpoints)
}

/// pdb's table: `Num Type         Disp Enb   Where`, then details.
fn list(repl: &mut Repl) -> std::result::Result<(), CmdError> {
    let bps = all(repl)?;
    if bps.is_empty() {
        return Ok(());
    }
    repl.out.line("Num Type         Disp Enb   Where");
    for bp in &bps {
        repl.out.line(&format_breakpoint(&shown(repl, bp)));
    }
    Ok(())
}

pub(crate) fn format_breakpoint(bp: &Breakpoint) -> String {
    let disp = if bp.temporary { "del  " } else { "keep " };
    let enabled = if bp.enabled { "yes  " } else { "no   " };
    let mut text = format!("{:<4}breakpoint   {disp}{enabled} at {}", bp.id, where_(bp));
    if let Some(cond) = &bp.condition {
        text.push_str(&format!("\n\tstop only if {cond}"));
    }
    if bp.ignore_count > 0 {
        text.push_str(&format!("\n\tignore next {} hits", bp.ignore_count));
    }
    if bp.hits > 0 {
        let s = if bp.hits > 1 { "s" } else { "" };
        text.push_str(&format!("\n\tbreakpoint already hit {} time{s}", bp.hits));
    }
    text
}

/// Breakpoint numbers from an argument, with pdb's complaints for the bad ones.
fn numbers(repl: &mut Repl, arg: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for word in arg.split_whitespace() {
        match word.parse::<u64>() {
            Ok(n) => out.push(n),
            Err(_) => repl.out.error(&format!("Non-numeric breakpoint number {word}")),
        }
    }
    out
}

fn no_such(repl: &mut Repl, id: u64, e: CmdError) -> CmdResult {
    match e {
        CmdError::Session(s) if s.agent_error().is_some() => {
            repl.out.error(&format!("Breakpoint number {id} out of range"));
            Ok(Flow::Stay)
        }
        other => Err(other),
    }
}

pub(crate) fn clear(repl: &mut Repl, arg: &str) -> CmdResult {
    if arg.is_empty() {
        // The web console has no prompt to confirm with: typing `cl` there is the answer.
        let reply = match repl.editor.read("Clear all breaks? ") {
            _ if repl.headless => "y".to_string(),
            Input::Line(l) => l.trim().to_lowercase(),
            _ => String::new(),
        };
        if reply == "y" || reply == "yes" {
            let removed = repl.session.request(&ClearBreakpoints::All { all: true })?.removed;
            for bp in removed {
                deleted(repl, &bp);
            }
        }
        return Ok(Flow::Stay);
    }
    if let Some((file, line)) = arg.rsplit_once(':') {
        let Ok(line) = line.trim().parse::<u32>() else {
            return user_error(format!("Invalid line number ({})", line.trim()));
        };
        let request = ClearBreakpoints::At { file: file.trim().to_string(), line: Some(line) };
        match repl.session.request(&request) {
            Ok(body) => {
                for bp in body.removed {
                    deleted(repl, &bp);
                }
            }
            Err(e) if e.agent_error().is_some() => {
                // pdb names the file as it resolved it (its absolute path); so does the agent.
                let message = e.agent_error().map(|a| a.message.clone()).unwrap_or_default();
                let place = message
                    .strip_prefix("no breakpoint at ")
                    .map_or_else(|| format!("{}:{line}", file.trim()), str::to_string);
                repl.out.error(&format!("There is no breakpoint at {place}"));
            }
            Err(e) => return Err(e.into()),
        }
        return Ok(Flow::Stay);
    }
    for id in numbers(repl, arg) {
        match repl.session.request(&ClearBreakpoints::Ids { ids: vec![id] }) {
            Ok(body) => {
                for bp in body.removed {
                    deleted(repl, &bp);
                }
            }
            Err(e) => {
                no_such(repl, id, e.into())?;
            }
        }
    }
    Ok(Flow::Stay)
}

fn deleted(repl: &mut Repl, bp: &Breakpoint) {
    repl.bp_commands.remove(&bp.id);
    let text = format!("Deleted breakpoint {} at {}", bp.id, where_(&shown(repl, bp)));
    repl.bp_lines.remove(&bp.id);
    repl.out.line(&text);
}

fn update(repl: &mut Repl, arg: &str, enabled: bool) -> CmdResult {
    for id in numbers(repl, arg) {
        match repl.session.request(&UpdateBreakpoint { id, enabled: Some(enabled), ..Default::default() }) {
            Ok(body) => {
                let verb = if enabled { "Enabled" } else { "Disabled" };
                repl.out
                    .line(&format!("{verb} breakpoint {id} at {}", where_(&shown(repl, &body.breakpoint))));
            }
            Err(e) => {
                no_such(repl, id, e.into())?;
            }
        }
    }
    Ok(Flow::Stay)
}

pub(crate) fn disable(repl: &mut Repl, arg: &str) -> CmdResult {
    if arg.trim().is_empty() && repl.python_at_least(14) {
        return missing_argument("disable bpnumber [bpnumber ...]");
    }
    update(repl, arg, false)
}

pub(crate) fn enable(repl: &mut Repl, arg: &str) -> CmdResult {
    if arg.trim().is_empty() && repl.python_at_least(14) {
        return missing_argument("enable bpnumber [bpnumber ...]");
    }
    update(repl, arg, true)
}

fn one_number(arg: &str) -> std::result::Result<(u64, &str), CmdError> {
    let (first, rest) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
    match first.parse::<u64>() {
        Ok(n) => Ok((n, rest.trim())),
        Err(_) if first.is_empty() => user_error("Breakpoint number expected"),
        Err(_) => user_error(format!("Non-numeric breakpoint number {first}")),
    }
}

pub(crate) fn ignore(repl: &mut Repl, arg: &str) -> CmdResult {
    const USAGE: &str = "ignore bpnumber [count]";
    if arg.trim().is_empty() && repl.python_at_least(14) {
        return missing_argument(USAGE);
    }
    let (id, rest) = one_number(arg)?;
    let count = if rest.is_empty() {
        0
    } else {
        match rest.parse::<u64>() {
            Ok(n) => n,
            Err(_) if repl.python_at_least(13) => return invalid_argument(arg.trim(), USAGE),
            // Before 3.13 pdb takes a count it cannot read as 0.
            Err(_) => 0,
        }
    };
    match repl.session.request(&UpdateBreakpoint { id, ignore_count: Some(count), ..Default::default() }) {
        Ok(_) if count > 0 => {
            let crossings = if count == 1 { "1 crossing".to_string() } else { format!("{count} crossings") };
            repl.out.line(&format!("Will ignore next {crossings} of breakpoint {id}."));
        }
        Ok(_) => repl.out.line(&format!("Will stop next time breakpoint {id} is reached.")),
        Err(e) => return no_such(repl, id, e.into()),
    }
    Ok(Flow::Stay)
}

pub(crate) fn condition(repl: &mut Repl, arg: &str) -> CmdResult {
    if arg.trim().is_empty() && repl.python_at_least(14) {
        return missing_argument("condition bpnumber [condition]");
    }
    let (id, cond) = one_number(arg)?;
    let new = if cond.is_empty() { None } else { Some(cond.to_string()) };
    match repl.session.request(&UpdateBreakpoint { id, condition: Some(new.clone()), ..Default::default() }) {
        Ok(_) if new.is_none() => repl.out.line(&format!("Breakpoint {id} is now unconditional.")),
        Ok(_) => repl.out.line(&format!("New condition set for breakpoint {id}.")),
        Err(e) if e.agent_error().is_some_and(|a| a.code.as_str() == "invalid_breakpoint") => {
            return user_error(e.to_string());
        }
        Err(e) => return no_such(repl, id, e.into()),
    }
    Ok(Flow::Stay)
}

/// `commands [bpnumber]`: reads lines at the `(com) ` prompt until `end` or a resuming command.
pub(crate) fn commands(repl: &mut Repl, arg: &str) -> CmdResult {
    let bps = all(repl)?;
    let id = if arg.is_empty() {
        match bps.iter().map(|b| b.id).max() {
            Some(id) => id,
            None => return user_error("No breakpoints set"),
        }
    } else {
        one_number(arg)?.0
    };
    if !bps.iter().any(|b| b.id == id) {
        return user_error(format!("cannot set commands: Breakpoint number {id} out of range"));
    }
    if repl.headless {
        return user_error("commands reads lines at its own prompt: use it in pymri run or pymri attach");
    }
    let mut lines = Vec::new();
    loop {
        let line = match repl.editor.read("(com) ") {
            Input::Line(l) => l.trim().to_string(),
            Input::Interrupted | Input::Eof => {
                repl.out.line("command definition aborted, old commands restored");
                return Ok(Flow::Stay);
            }
        };
        if line.is_empty() {
            continue;
        }
        if line == "end" {
            break;
        }
        let resumes = commands::is_resuming(&line);
        lines.push(line);
        if resumes {
            break;
        }
    }
    if lines.is_empty() {
        repl.bp_commands.remove(&id);
    } else {
        repl.bp_commands.insert(id, lines);
    }
    Ok(Flow::Stay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_parse_like_pdb() {
        let p = |s: &str| parse_spot(s).ok();
        assert_eq!(p("12"), Some((Spot::Line(None, 12), None)));
        assert_eq!(p("a/b.py:7"), Some((Spot::Line(Some("a/b.py".into()), 7), None)));
        assert_eq!(
            p("shop.py:9, final_result < 0"),
            Some((Spot::Line(Some("shop.py".into()), 9), Some("final_result < 0".into())))
        );
        assert_eq!(p("mod.Class.meth"), Some((Spot::Function("mod.Class.meth".into()), None)));
        assert_eq!(p("f ,"), Some((Spot::Function("f".into()), None)));
        assert!(p("x.py:abc").is_none());
        assert!(p("1x").is_none());
    }

    #[test]
    fn functions_not_defined_yet_are_found_by_their_def() {
        let src: Vec<String> = [
            "import x",                    // 1
            "def other(): pass",           // 2
            "async def target(a,",         // 3
            "                 b):  # sig", // 4
            "",                            // 5
            "    \"\"\"Doc",               // 6
            "    string.\"\"\"",           // 7
            "    # comment",               // 8
            "    return a + b",            // 9
            "def short(): return 1",       // 10
            "def single():",               // 11
            "    'doc'",                   // 12
            "    x = 1",                   // 13
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(function_body_line(&src, "target"), Some(9));
        assert_eq!(function_body_line(&src, "short"), Some(10));
        assert_eq!(function_body_line(&src, "other"), Some(2));
        assert_eq!(function_body_line(&src, "single"), Some(13));
        assert_eq!(function_body_line(&src, "targe"), None);
        assert_eq!(function_body_line(&src, "missing"), None);
    }

    #[test]
    fn breakpoint_rows_have_pdbs_shape() {
        let bp = Breakpoint {
            id: 1,
            kind: "line".into(),
            file: Some("/srv/a.py".into()),
            line: Some(3),
            function: None,
            enabled: true,
            temporary: false,
            hits: 2,
            ignore_count: 1,
            verified: true,
            condition: Some("x > 1".into()),
            hit_condition: None,
            log_message: None,
            message: None,
        };
        assert_eq!(
            format_breakpoint(&bp),
            "1   breakpoint   keep yes   at /srv/a.py:3\n\tstop only if x > 1\n\tignore next 1 hits\n\tbreakpoint already hit 2 times"
        );
        let t =
            Breakpoint { temporary: true, enabled: false, hits: 0, ignore_count: 0, condition: None, ..bp };
        assert_eq!(format_breakpoint(&t), "1   breakpoint   del  no    at /srv/a.py:3");
    }
}
