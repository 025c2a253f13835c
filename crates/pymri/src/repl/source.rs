//! Source listings: `list`, `longlist`, and the sticky view.

use super::inspect::{evaluate, expression_arg};
use super::output::location;
use super::{user_error, CmdError, CmdResult, Flow, Repl};
use crate::escape;
use pymri_session::protocol::requests::{EvalMode, Source};

/// The lines `list ARG` shows, as pdb computes them; `None` for a bad argument.
pub(crate) fn list_range(arg: &str, current: u32, continue_from: Option<u32>) -> Option<(u32, u32)> {
    let arg = arg.trim();
    let (first, last) = if !arg.is_empty() && arg != "." {
        if let Some((a, b)) = arg.split_once(',') {
            let first: u32 = a.trim().parse().ok()?;
            let last: u32 = b.trim().parse().ok()?;
            // A second number smaller than the first is a count.
            (first, if last < first { first + last } else { last })
        } else {
            let first = arg.parse::<u32>().ok()?.saturating_sub(5).max(1);
            (first, first + 10)
        }
    } else if arg == "." || continue_from.is_none() {
        let first = current.saturating_sub(5).max(1);
        (first, first + 10)
    } else {
        let first = continue_from.unwrap_or(0) + 1;
        (first, first + 10)
    };
    Some((first.max(1), last))
}

/// The line the exception was raised at in the selected frame, for the `>>` marker.
fn exception_line(repl: &Repl) -> Option<u32> {
    let stop = repl.session.state().selected_stop().cloned()?;
    if !stop.post_mortem {
        return None;
    }
    stop.frame.map(|f| f.line)
}

pub(crate) fn list(repl: &mut Repl, arg: &str) -> CmdResult {
    let frame = repl.current_frame()?;
    let continue_from = match &repl.listed_to {
        Some((file, line)) if *file == frame.file => Some(*line),
        _ => None,
    };
    let Some((first, last)) = list_range(arg, frame.line, continue_from) else {
        return user_error(format!("Error in argument: '{arg}'"));
    };
    let body = repl.session.request(&Source {
        file: Some(frame.file.clone()),
        start: Some(first),
        end: Some(last),
        ..Default::default()
    })?;
    if !body.lines.is_empty() {
        let exc = if frame.index == 0 { exception_line(repl) } else { None };
        repl.out.listing(&body, Some(frame.line), exc);
        repl.listed_to = Some((frame.file.clone(), body.first + body.lines.len() as u32 - 1));
    }
    // pdb's mark of a listing that asked for lines past the end, shown or not.
    if body.total < last {
        repl.out.line("[EOF]");
    }
    // Like pdb, an empty line after any `list` continues the listing.
    repl.last_command = "list".into();
    Ok(Flow::Stay)
}

pub(crate) fn longlist(repl: &mut Repl, _arg: &str) -> CmdResult {
    let sel = repl.selection()?;
    let frame = repl.current_frame()?;
    let body = repl.session.request(&Source {
        thread: Some(sel.thread),
        frame: Some(sel.frame),
        function: true,
        ..Default::default()
    })?;
    let exc = if frame.index == 0 { exception_line(repl) } else { None };
    repl.out.listing(&body, Some(frame.line), exc);
    Ok(Flow::Stay)
}

/// `source EXPRESSION`: the expression is evaluated once, in the selected frame, and `inspect`
/// says where its object's source lies (first line, number of lines, file); the lines come from
/// the agent's view of the file, as for `list`, shown as pdb shows them (no markers).
pub(crate) fn source(repl: &mut Repl, arg: &str) -> CmdResult {
    expression_arg(repl, arg, "source expression")?;
    if arg.trim().is_empty() {
        // Before 3.14 pdb evaluates the empty expression: that Python's SyntaxError.
        let result = evaluate(repl, arg, EvalMode::Eval)?;
        return match result.exception {
            Some(exc) => user_error(exc.text),
            None => Ok(Flow::Stay),
        };
    }
    let probe = format!(
        "(lambda o, i=__import__('inspect'): (lambda found: '%d %d %s' % (max(1, found[1]), \
         len(found[0]), i.getsourcefile(o) or i.getfile(o)))(i.getsourcelines(o)))(({arg}\n))"
    );
    let result = evaluate(repl, &probe, EvalMode::Str)?;
    repl.out.text(&result.output);
    if let Some(exc) = result.exception {
        // pdb shows inspect's refusals by their message alone (`could not get source code`),
        // and the expression's own errors as `Type: message`.
        let refusal = matches!(exc.type_name.as_str(), "OSError" | "TypeError");
        return user_error(if refusal { exc.message } else { exc.text });
    }
    let found = result.result.unwrap_or_default();
    let mut parts = found.splitn(3, ' ');
    let (Some(Ok(first)), Some(Ok(count)), Some(file)) =
        (parts.next().map(str::parse::<u32>), parts.next().map(str::parse::<u32>), parts.next())
    else {
        return user_error("could not get source code");
    };
    let mut body = repl.session.request(&Source {
        file: Some(file.to_string()),
        start: Some(first),
        end: Some(first.saturating_add(count.saturating_sub(1))),
        ..Default::default()
    })?;
    body.breakpoints.clear();
    repl.out.listing(&body, None, None);
    Ok(Flow::Stay)
}

pub(crate) fn sticky(repl: &mut Repl, _arg: &str) -> CmdResult {
    repl.sticky = !repl.sticky;
    if repl.sticky {
        repl.show_sticky();
    } else {
        repl.out.line("sticky mode off");
    }
    Ok(Flow::Stay)
}

impl Repl {
    /// pdb++'s sticky view: a cleared screen, the location, the current function's source.
    pub(crate) fn show_sticky(&mut self) {
        let shown: std::result::Result<(), CmdError> = (|| {
            let frame = self.current_frame()?;
            let stop = self.selected_stop()?;
            self.out.clear_screen();
            let retval =
                if frame.index == 0 { super::location_retval(&stop).map(str::to_string) } else { None };
            let at = super::inspect::location_of(&frame);
            let mut header = format!("> {}", location(&at.file, at.line, &at.function));
            if let Some(rv) = retval {
                header.push_str("->");
                header.push_str(&escape::name(&rv));
            }
            self.out.line(&header);
            self.out.line("");
            longlist(self, "")?;
            Ok(())
        })();
        if let Err(e) = shown {
            match e {
                CmdError::User(m) => self.out.error(&m),
                CmdError::Session(s) => self.out.error(&s.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::list_range;

    #[test]
    fn list_ranges_follow_pdb() {
        assert_eq!(list_range("", 20, None), Some((15, 25)));
        assert_eq!(list_range("", 3, None), Some((1, 11)));
        assert_eq!(list_range("", 20, Some(25)), Some((26, 36)));
        assert_eq!(list_range(".", 20, Some(25)), Some((15, 25)));
        assert_eq!(list_range("10", 20, None), Some((5, 15)));
        assert_eq!(list_range("4, 8", 20, None), Some((4, 8)));
        assert_eq!(list_range("10,3", 20, None), Some((10, 13)));
        assert_eq!(list_range("x", 20, None), None);
    }
}
