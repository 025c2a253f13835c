//! `pymri trace`: raised exceptions, logpoints and call counts from a program that keeps
//! running.
//!
//! The agent is injected without stopping any thread (`attach::connect` with `stop: false`), or
//! the program is launched under it (`-- COMMAND ARGS`, the launcher of `pymri run`). The
//! `trace_start` request installs the hooks (python/pymri_agent/tracing.py); the agent reports
//! `trace` events, already rate limited per site, until `--duration` runs out, Ctrl-C, or the
//! program ends. `trace_stop` then removes every hook and answers the summary, and pymri
//! detaches. If pymri dies, the agent sees the connection go and removes the hooks itself.
//!
//! Output: text for a person (every string from the target escaped), or with `--json` one
//! JSON object per line: the events and the summary as the agent sends them (docs/trace.md).

use crate::commands::attach::{self, Attached};
use crate::commands::run;
use crate::escape;
use crate::printer::{note, Printer};
use anyhow::{bail, Context, Result};
use pymri_launch::{launch, LaunchOptions, Launched, Process, Program, Streams};
use pymri_session::protocol::messages::Event;
use pymri_session::protocol::requests::{Detach, Quit, TraceLogpoint, TraceStart, TraceStop};
use pymri_session::{Session, SessionEvent};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub enum Target {
    Pid(i32),
    /// `-- COMMAND ARGS`: `python3 script.py ARGS`, `python3 -m module ARGS`, or `script.py ARGS`.
    Command {
        words: Vec<String>,
        root: Option<PathBuf>,
    },
}

pub struct TraceOptions {
    pub target: Target,
    pub exceptions: bool,
    pub types: Vec<String>,
    /// (`FILE:LINE`, `FORMAT`)
    pub logpoints: Vec<(String, String)>,
    pub calls: Vec<String>,
    pub args: bool,
    pub json: bool,
    pub max_rate: u32,
    pub duration: Option<Duration>,
    pub timeout: Duration,
}

/// How long a request of the trace may take (the agent answers from its reader thread).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(opts: TraceOptions, printer: &mut Printer) -> Result<u8> {
    let start = start_request(&opts)?;
    match &opts.target {
        Target::Pid(pid) => {
            let Attached { live: _live, pending, session } =
                attach::connect(*pid, None, opts.timeout, false)?;
            let outcome = trace(&session, &start, &opts, printer, None);
            let _ = session.request_with_timeout(&Detach {}, Some(REQUEST_TIMEOUT));
            session.close();
            // The staging directory goes after the session, as for `attach`.
            drop(pending);
            outcome.map(|_| 0)
        }
        Target::Command { words, root } => {
            let (mut process, session) = launch_program(words, root.clone())?;
            let outcome = trace(&session, &start, &opts, printer, Some(&mut process));
            let status = match outcome {
                Ok(Ended::ProgramExited) => {
                    let _ = session.request_with_timeout(&Quit {}, Some(REQUEST_TIMEOUT));
                    session.close();
                    process.child.wait().context("waiting for the program")?
                }
                Ok(Ended::Stopped) => {
                    let _ = session.request_with_timeout(&Detach {}, Some(REQUEST_TIMEOUT));
                    session.close();
                    run::wait_detached(&mut process.child)?
                }
                Err(e) => {
                    run::kill(&mut process.child);
                    return Err(e);
                }
            };
            drop(process);
            Ok(run::exit_code(status))
        }
    }
}

fn start_request(opts: &TraceOptions) -> Result<TraceStart> {
    if !opts.exceptions && opts.logpoints.is_empty() && opts.calls.is_empty() {
        bail!(Usage(
            "nothing to trace\nhint: add --exceptions, --log FILE:LINE FORMAT or --calls FUNC".into()
        ));
    }
    if !opts.types.is_empty() && !opts.exceptions {
        bail!(Usage("--type needs --exceptions".into()));
    }
    let mut logpoints = Vec::new();
    for (place, format) in &opts.logpoints {
        let parsed = place.rsplit_once(':').and_then(|(file, line)| {
            let line: u32 = line.parse().ok().filter(|l| *l > 0)?;
            (!file.is_empty()).then(|| (file.to_string(), line))
        });
        let Some((file, line)) = parsed else {
            bail!(Usage(format!("--log {place:?}: expected FILE:LINE (a line number from 1)")));
        };
        logpoints.push(TraceLogpoint { file, line, format: format.clone() });
    }
    let mut calls = Vec::new();
    for spec in opts.calls.iter().flat_map(|s| s.split(',')) {
        let spec = spec.trim();
        let valid = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|p| {
                    !p.is_empty()
                        && p.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '<' || c == '>')
                })
        };
        let ok = match spec.split_once(':') {
            Some((module, qualname)) => valid(module) && valid(qualname),
            None => valid(spec),
        };
        if !ok {
            bail!(Usage(format!("--calls {spec:?}: expected MODULE:QUALNAME or QUALNAME")));
        }
        calls.push(spec.to_string());
    }
    Ok(TraceStart {
        exceptions: opts.exceptions,
        types: opts.types.clone(),
        logpoints,
        calls,
        args: opts.args,
        max_rate: opts.max_rate,
    })
}

/// A usage error found after parsing (exit status 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn launch_program(words: &[String], root: Option<PathBuf>) -> Result<(Process, Session)> {
    let Some(first) = words.first() else { bail!(Usage("-- needs a command".into())) };
    let is_python = std::path::Path::new(first)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("python"));
    let (python, rest) = if is_python { (Some(PathBuf::from(first)), &words[1..]) } else { (None, words) };
    let (program, args) = match rest {
        [flag, module, args @ ..] if flag == "-m" => (Program::Module(module.clone()), args.to_vec()),
        [script, args @ ..] if !script.starts_with('-') => (Program::Script(script.clone()), args.to_vec()),
        _ => bail!(Usage("-- COMMAND: expected [PYTHON] SCRIPT ARGS or [PYTHON] -m MODULE ARGS".into())),
    };
    let mut options = LaunchOptions::new(program);
    options.python = python;
    options.root = root;
    options.args = args;
    options.streams = Streams::Inherit;
    // Ctrl-C ends the trace (pymri's), not the program: it goes on untraced, as after `detach`.
    options.ignore_sigint = true;
    let Launched { process, session } = launch(&options)?;
    Ok((process, session))
}

enum Ended {
    /// Duration over, or Ctrl-C: the program goes on.
    Stopped,
    /// A launched program ended (the agent waits for `quit`).
    ProgramExited,
}

fn trace(
    session: &Session,
    start: &TraceStart,
    opts: &TraceOptions,
    printer: &mut Printer,
    launched: Option<&mut Process>,
) -> Result<Ended> {
    let started = session
        .request_with_timeout(start, Some(REQUEST_TIMEOUT))
        .context("starting the trace in the target")?;
    for lp in &started.logpoints {
        if !lp.verified {
            let why = lp.message.as_deref().unwrap_or("not an executable line (yet)");
            note(&format!("warning: logpoint {}:{}: {why}", lp.file, lp.line));
        }
    }
    if !started.all_threads {
        note("warning: only threads started from now on (and the main thread) are traced");
    }
    if launched.is_some() {
        pymri_launch::start(session, false).context("starting the program")?;
    }
    let until = match opts.duration {
        Some(d) => format!("for {} s", d.as_secs_f64()),
        None => "until Ctrl-C".into(),
    };
    note(&format!("Tracing ({}) {until}...", started.backend.as_deref().unwrap_or("logpoints only")));
    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let waker = session.waker();
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            waker.wake();
        }
    });
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let outcome = events(session, opts, printer, deadline);
    handle.close();
    let _ = forwarder.join();
    let (summary, ended) = match outcome? {
        Finished::Summary(summary) => (summary, Ended::ProgramExited),
        finished => {
            let summary = session
                .request_with_timeout(&TraceStop {}, Some(REQUEST_TIMEOUT))
                .context("ending the trace in the target")?;
            (summary, if matches!(finished, Finished::Stop) { Ended::Stopped } else { Ended::ProgramExited })
        }
    };
    write_summary(&summary, opts.json, printer)?;
    printer.flush()?;
    Ok(ended)
}

enum Finished {
    /// Duration, Ctrl-C: the summary is to be asked for.
    Stop,
    /// A launched program ended; the agent still answers.
    Exited,
    /// The program exited while traced and sent its summary itself.
    Summary(Value),
}

fn events(
    session: &Session,
    opts: &TraceOptions,
    printer: &mut Printer,
    deadline: Option<Instant>,
) -> Result<Finished> {
    loop {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(Finished::Stop),
            },
            None => None,
        };
        let Some(event) = session.next_event(wait) else { continue };
        match event {
            SessionEvent::Woken => return Ok(Finished::Stop),
            SessionEvent::Closed(reason) => bail!("the session with the agent was lost: {reason}"),
            SessionEvent::Event(Event::Unknown { event, body }) if event == "trace" => {
                if body.get("kind").and_then(Value::as_str) == Some("summary") {
                    return Ok(Finished::Summary(body));
                }
                write_event(&body, opts.json, printer)?;
                printer.flush()?;
            }
            SessionEvent::Event(Event::Exited(_)) => return Ok(Finished::Exited),
            SessionEvent::Event(Event::Detached(d)) => {
                bail!("the agent detached: {}", d.reason)
            }
            SessionEvent::Event(Event::Output(o)) if o.category == "agent_error" => {
                note(&format!("warning: agent error: {}", o.text.trim_end()));
            }
            SessionEvent::Event(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn write_event(body: &Value, json: bool, printer: &mut Printer) -> Result<()> {
    if json {
        return printer.write_raw(&escape::json_line(body)?);
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let head = format!("{} {}", clock(body.get("time")), escape::name(&s(body, "thread_name")));
    let text = match body.get("kind").and_then(Value::as_str) {
        Some("exception") => {
            let mut out = format!(
                "{head} {}: {}\n    raised  at {}\n",
                escape::name(&s(body, "type")),
                escape::name(&s(body, "message")),
                site(body.get("raised"))
            );
            match body.get("outcome").and_then(Value::as_str) {
                Some("handled") => out.push_str(&format!("    handled at {}\n", site(body.get("handled")))),
                Some("native") => out.push_str(&format!(
                    "    handled by native code called at {}\n",
                    site(body.get("handled"))
                )),
                Some("escaped") => out.push_str("    escaped (no Python frame handled it)\n"),
                _ => out.push_str("    still in flight when the trace ended\n"),
            }
            if let Some(frames) = body.get("traceback").and_then(Value::as_array) {
                if frames.len() > 1 {
                    out.push_str("    Traceback (most recent call last):\n");
                    for f in frames {
                        out.push_str(&format!("      {}\n", site(Some(f))));
                    }
                }
            }
            out
        }
        Some("log") => format!(
            "{head} {}:{} {}\n",
            escape::name(&s(body, "file")),
            body.get("line").and_then(Value::as_u64).unwrap_or(0),
            escape::name(&s(body, "text"))
        ),
        Some("call") => {
            let mut out = format!(
                "{head} call {} from {}",
                escape::name(&s(body, "function")),
                site(body.get("caller"))
            );
            if let Some(args) = body.get("args").and_then(Value::as_array) {
                let shown: Vec<String> = args
                    .iter()
                    .map(|pair| {
                        let part = |i: usize| pair.get(i).and_then(Value::as_str).unwrap_or("");
                        format!("{}={}", escape::name(part(0)), escape::name(part(1)))
                    })
                    .collect();
                out.push_str(&format!(" ({})", shown.join(", ")));
            }
            out.push('\n');
            out
        }
        _ => return Ok(()),
    };
    printer.write_str(&text)
}

/// `function (file:line)`, escaped.
fn site(v: Option<&Value>) -> String {
    let Some(v) = v else { return "?".into() };
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?");
    format!(
        "{} ({}:{})",
        escape::name(s("function")),
        escape::name(s("file")),
        v.get("line").and_then(Value::as_u64).unwrap_or(0)
    )
}

/// Wall-clock time of day (UTC) of an event, to the millisecond.
fn clock(t: Option<&Value>) -> String {
    let secs = t.and_then(Value::as_f64).filter(|t| t.is_finite() && *t >= 0.0).unwrap_or(0.0);
    let millis = (secs * 1000.0) as u64;
    let day = millis % 86_400_000;
    format!("{:02}:{:02}:{:02}.{:03}", day / 3_600_000, day / 60_000 % 60, day / 1000 % 60, day % 1000)
}

fn write_summary(summary: &Value, json: bool, printer: &mut Printer) -> Result<()> {
    if json {
        return printer.write_raw(&escape::json_line(summary)?);
    }
    let list = |k: &str| summary.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let count = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out =
        format!("\nSummary ({:.1} s)\n", summary.get("duration").and_then(Value::as_f64).unwrap_or(0.0));
    let exceptions = list("exceptions");
    if !exceptions.is_empty() {
        out.push_str("Exceptions by (type, raised at, handled at):\n");
        for e in &exceptions {
            let handled = match s(e, "outcome").as_str() {
                "handled" => format!("handled at {}", site(e.get("handled"))),
                "native" => format!("handled by native code called at {}", site(e.get("handled"))),
                "escaped" => "escaped".into(),
                _ => "in flight at the end".into(),
            };
            out.push_str(&format!(
                "  {:>8}  {}  raised at {}  {handled}{}\n",
                count(e, "count"),
                escape::name(&s(e, "type")),
                site(e.get("raised")),
                unreported(count(e, "suppressed"))
            ));
        }
    }
    let calls = list("calls");
    if !calls.is_empty() {
        out.push_str("Calls by call site:\n");
        let mut current = None;
        for c in &calls {
            let function = s(c, "function");
            if current.as_ref() != Some(&function) {
                out.push_str(&format!("  {}\n", escape::name(&function)));
                current = Some(function);
            }
            out.push_str(&format!(
                "  {:>8}  from {}{}\n",
                count(c, "count"),
                site(c.get("caller")),
                unreported(count(c, "suppressed"))
            ));
        }
    }
    let logs = list("logpoints");
    if !logs.is_empty() {
        out.push_str("Logpoints:\n");
        for l in &logs {
            out.push_str(&format!(
                "  {:>8}  {}:{}{}\n",
                count(l, "hits"),
                escape::name(&s(l, "file")),
                count(l, "line"),
                unreported(count(l, "suppressed"))
            ));
        }
    }
    if exceptions.is_empty() && calls.is_empty() && logs.is_empty() {
        out.push_str("  nothing was traced\n");
    }
    printer.write_str(&out)
}

fn unreported(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("  ({n} not printed: --max-rate)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_the_time_of_day() {
        assert_eq!(clock(Some(&Value::from(86_400.0 + 3_723.5))), "01:02:03.500");
        assert_eq!(clock(Some(&Value::from(f64::NAN))), "00:00:00.000");
        assert_eq!(clock(None), "00:00:00.000");
    }
}
