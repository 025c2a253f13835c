//! `pymri trace` against live CPython processes of every provisioned interpreter: the
//! swallowed-exception and registry-leak scenarios, logpoints, `--json`, a launched program,
//! refusal, and that no hook is left after the trace ends (normally, by SIGINT, by SIGKILL).

mod common;

use common::{interpreter, interpreters, mark, pymri, text, Interpreter, Target};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FIXTURE: &str = "trace_resolver.py";

fn start(interp: &Interpreter) -> Target {
    Target::start(interp, FIXTURE, &["{ready}", "{control}"])
}

/// The hooks the fixture finds in itself: every thread's trace function, threading's trace
/// hook, and on 3.12+ the sys.monitoring tools; `None` when none is left.
fn hooks_left(target: &mut Target) -> Option<String> {
    let answer = target.ask("hooks");
    let v: Value = serde_json::from_str(&answer).expect("hooks answer is JSON");
    let threads = v["threads"].as_object().expect("threads");
    assert_eq!(threads.len(), 3, "{answer}");
    let clean = threads.values().all(|t| t == "None")
        && v["threading_trace"] == "None"
        && v.get("tools").is_none_or(|tools| tools.as_array().expect("tools").iter().all(Value::is_null));
    (!clean).then_some(answer)
}

fn rounds(target: &mut Target) -> (u64, u64) {
    let v: Value = serde_json::from_str(&target.ask("rounds")).expect("rounds answer is JSON");
    (v["main"].as_u64().expect("main"), v["monitor"].as_u64().expect("monitor"))
}

/// The program went on: both of its threads made progress since `before`.
fn still_running(target: &mut Target, before: (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = rounds(target);
        if now.0 > before.0 && now.1 > before.1 {
            return;
        }
        assert!(Instant::now() < deadline, "{}: the program stopped making progress", target.interp.name);
    }
}

#[test]
fn swallowed_exceptions_name_the_raising_and_the_handling_line() {
    for interp in interpreters() {
        let mut target = start(&interp);
        let script = target.script_path(FIXTURE);
        let (raise, handler, log) = (mark(FIXTURE, "raise"), mark(FIXTURE, "handler"), mark(FIXTURE, "log"));
        let before = rounds(&mut target);
        let out = pymri(&[
            "trace",
            &target.pid().to_string(),
            "--exceptions",
            "--log",
            &format!("{script}:{log}"),
            "round {round_} host={host!r}",
            "--duration",
            "1.5",
        ]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let name = &interp.name;
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        assert!(
            stdout.contains("MainThread socket.gaierror: [Errno -2] Name or service not known"),
            "{name}: {stdout}"
        );
        assert!(stdout.contains(&format!("raised  at resolve ({script}:{raise})")), "{name}: {stdout}");
        assert!(stdout.contains(&format!("handled at resolve ({script}:{handler})")), "{name}: {stdout}");
        assert!(stdout.contains(&format!("first_octet ({script}:")), "the traceback: {name}: {stdout}");
        // One summary line for the whole loop, with its count and what --max-rate held back.
        let summary =
            stdout.split("\nSummary (").nth(1).unwrap_or_else(|| panic!("{name}: no summary: {stdout}"));
        let line = summary
            .lines()
            .find(|l| l.contains("socket.gaierror"))
            .unwrap_or_else(|| panic!("{name}: {summary}"));
        let count: u64 = line.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a count");
        assert!(count > 20, "{name}: {line}");
        assert!(line.contains(&format!("handled at resolve ({script}:{handler})")), "{name}: {line}");
        assert!(line.contains("not printed: --max-rate"), "{name}: {line}");
        // The logpoint, in the same run.
        let logged = stdout
            .lines()
            .filter(|l| {
                l.contains(&format!(" MainThread {script}:{log} round ")) && l.contains(" host='host-")
            })
            .count();
        assert!(logged > 0, "{name}: no logpoint output: {stdout}");
        assert!(
            stdout.contains(&format!("{script}:{log}")) && summary.contains("Logpoints:"),
            "{name}: {summary}"
        );
        assert_eq!(hooks_left(&mut target), None, "{name}: hooks left after the trace");
        still_running(&mut target, before);
    }
}

#[test]
fn json_lines_parse_and_the_registry_leak_stands_out_by_call_site() {
    for interp in interpreters() {
        let mut target = start(&interp);
        let script = target.script_path(FIXTURE);
        let name = &interp.name;
        let out = pymri(&[
            "trace",
            &target.pid().to_string(),
            "--calls",
            "Registry.add,__main__:Registry.remove",
            "--args",
            "--exceptions",
            "--type",
            "OSError",
            "--json",
            "--max-rate",
            "3",
            "--duration",
            "1.5",
        ]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {l}")))
            .collect();
        let (summary, events) = lines.split_last().expect("lines");
        assert_eq!(summary["kind"], "summary", "{name}: the summary comes last");
        assert!(events.iter().all(|e| e["kind"] != "summary"), "{name}: one summary");
        let calls: Vec<&Value> = events.iter().filter(|e| e["kind"] == "call").collect();
        assert!(
            calls.iter().any(|c| c["function"] == "Registry.add"
                && c["args"].as_array().is_some_and(|a| a.iter().any(|p| p[0] == "key"))),
            "{name}: {stdout}"
        );
        // --type OSError takes socket.gaierror, a subclass.
        assert!(events.iter().any(|e| e["kind"] == "exception" && e["type"] == "socket.gaierror"), "{name}");

        let sites = summary["calls"].as_array().expect("calls");
        let count = |function: &str, line: i32| {
            sites
                .iter()
                .filter(|s| {
                    s["function"] == function
                        && s["caller"]["file"] == script.as_str()
                        && s["caller"]["line"] == line
                })
                .map(|s| s["count"].as_u64().expect("count"))
                .sum::<u64>()
        };
        let main_add = count("Registry.add", mark(FIXTURE, "main_add"));
        let main_remove = count("__main__:Registry.remove", mark(FIXTURE, "main_remove"));
        let monitor_add = count("Registry.add", mark(FIXTURE, "monitor_add"));
        assert!(main_add > 10 && monitor_add > 10, "{name}: {summary}");
        // The main loop is balanced (one add may be in flight when the trace ends)...
        assert!(main_add.abs_diff(main_remove) <= 1, "{name}: {summary}");
        // ...the monitor's site adds with no remove anywhere in the monitor: the leak.
        assert!(
            sites
                .iter()
                .filter(|s| s["function"] == "__main__:Registry.remove")
                .all(|s| s["caller"]["function"] == "main_loop"),
            "{name}: {summary}"
        );
        let with_suppressed = sites.iter().any(|s| s["suppressed"].as_u64().is_some_and(|n| n > 0));
        assert!(with_suppressed, "{name}: --max-rate 3 held events back: {summary}");
        let exc = summary["exceptions"].as_array().expect("exceptions");
        assert!(
            exc.iter().all(|e| e["type"] == "socket.gaierror"),
            "{name}: only OSError and subclasses: {summary}"
        );
        assert_eq!(hooks_left(&mut target), None, "{name}: hooks left after the trace");
    }
}

/// `pymri trace` in the background, its stdout read line by line.
struct Tracing {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tracing {
    fn start(pid: i32) -> Tracing {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pymri"))
            .args(["trace", &pid.to_string(), "--exceptions", "--calls", "Registry.add", "--max-rate", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pymri trace");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tracing { child, lines }
    }

    /// Waits for a line containing `needle`; all lines read so far.
    fn expect(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(needle) {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with {needle:?} in time; got:\n{seen}"),
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a child we started and have not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "pymri trace did not end in time");
            // Waiting on a child process, not synchronising with a target: a short poll.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn no_hook_is_left_after_sigint_or_sigkill() {
    for interp in interpreters() {
        let mut target = start(&interp);
        let name = interp.name.clone();

        let mut tracing = Tracing::start(target.pid());
        tracing.expect("socket.gaierror", Duration::from_secs(20));
        tracing.signal(libc::SIGINT);
        // Events already on their way may come first; the summary's call table ends the output.
        tracing.expect("Summary (", Duration::from_secs(10));
        let rest = tracing.expect("Registry.add", Duration::from_secs(10));
        assert!(rest.contains("Calls by call site"), "{name}: Ctrl-C prints the summary: {rest}");
        assert_eq!(tracing.wait(Duration::from_secs(10)).code(), Some(0), "{name}");
        assert_eq!(hooks_left(&mut target), None, "{name}: hooks left after SIGINT");

        let before = rounds(&mut target);
        let mut killed = Tracing::start(target.pid());
        killed.expect("socket.gaierror", Duration::from_secs(20));
        killed.signal(libc::SIGKILL);
        killed.wait(Duration::from_secs(10));
        // The agent sees its connection end and removes the hooks from its reader thread.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = hooks_left(&mut target) {
            assert!(Instant::now() < deadline, "{name}: hooks left after SIGKILL of pymri: {left}");
        }
        still_running(&mut target, before);
    }
}

/// A traced process that exits sends its summary on its way out; pymri prints it and ends.
#[test]
fn a_process_exiting_while_traced_sends_its_summary() {
    for interp in interpreters() {
        let mut target = start(&interp);
        let name = &interp.name;
        let tracing = Tracing::start(target.pid());
        tracing.expect("socket.gaierror", Duration::from_secs(20));
        assert_eq!(target.ask("exit"), "exiting");
        let summary = tracing.expect("Summary (", Duration::from_secs(10));
        let rest = summary + &tracing.expect("Registry.add", Duration::from_secs(10));
        assert!(
            rest.contains("Summary (") && rest.contains("socket.gaierror  raised at resolve"),
            "{name}: {rest}"
        );
        let mut tracing = tracing;
        assert_eq!(tracing.wait(Duration::from_secs(10)).code(), Some(0), "{name}");
        let status = target.child.wait().expect("wait target");
        assert_eq!(status.code(), Some(0), "{name}: the program exited normally");
    }
}

#[test]
fn a_launched_program_is_traced_to_its_end_with_its_exit_status() {
    for interp in interpreters() {
        let scratch = common::Scratch::new(&interp);
        let script = scratch.copy_fixture("trace_launch.py");
        let name = &interp.name;
        let log = format!("{script}:{}", mark("trace_launch.py", "log"));
        let mut args = vec!["trace", "--exceptions", "--log", &log, "{n}", "--max-rate", "0", "--json"];
        let root = interp.root.to_string_lossy().into_owned();
        if interp.in_root() {
            args.extend(["--root", &root]);
        }
        args.extend(["--", &interp.exe, &script, "40"]);
        let out = pymri(&args);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{name}: the program's status: {}\n{stdout}",
            text(&out.stderr)
        );
        let summary: Value = serde_json::from_str(stdout.lines().last().expect("a line")).expect("JSON");
        let exc = &summary["exceptions"][0];
        assert_eq!(exc["count"], 40, "{name}: {summary}");
        assert_eq!(exc["suppressed"], 40, "{name}: --max-rate 0 prints none: {summary}");
        assert_eq!(exc["handled"]["line"], mark("trace_launch.py", "handler"), "{name}: {summary}");
        assert_eq!(summary["logpoints"][0]["hits"], 40, "{name}: {summary}");
        assert_eq!(stdout.lines().count(), 1, "{name}: only the summary: {stdout}");
    }
}

/// Strings from the target (an exception's message, a logpoint's value) reach the terminal
/// with their control and invisible characters escaped.
#[test]
fn target_strings_are_escaped() {
    let interp = interpreter("3.14").expect("3.14");
    let scratch = common::Scratch::new(&interp);
    let script = scratch.copy_fixture("trace_launch.py");
    let log = format!("{script}:{}", mark("trace_launch.py", "log"));
    let root = interp.root.to_string_lossy().into_owned();
    let hostile = "\x1b]0;pwned\x07\u{202e}evil\x1b[2J";
    let out = pymri(&[
        "trace",
        "--exceptions",
        "--log",
        &log,
        "{name}",
        "--root",
        &root,
        "--",
        &interp.exe,
        &script,
        "2",
        hostile,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\u{202e}') && !stdout.contains('\x07'),
        "{stdout:?}"
    );
    assert!(stdout.contains("Name or service not known: \\x1b]0;pwned\\x07\\u202eevil\\x1b[2J"), "{stdout}");
    assert!(
        stdout.contains(&format!("{log} \\x1b]0;pwned\\x07\\u202eevil")),
        "the logpoint's value: {stdout}"
    );
}

#[test]
fn refused_when_the_target_disables_remote_debugging() {
    for (version, flags, env) in
        [("3.14", &["-X", "disable-remote-debug"][..], None), ("3.11", &[][..], Some("1"))]
    {
        let interp = interpreter(version).expect("interpreter");
        let mut target = Target::start_with(&interp, FIXTURE, &["{ready}", "{control}"], flags, |c| {
            if let Some(v) = env {
                c.env("PYTHON_DISABLE_REMOTE_DEBUG", v);
            }
        });
        let tmp_before = staged(&interp);
        let out = pymri(&["trace", &target.pid().to_string(), "--exceptions", "--duration", "1"]);
        assert_eq!(out.status.code(), Some(6), "{version}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("has remote debugging disabled"), "{stderr}");
        assert!(stderr.contains("pymri wrote nothing to it"), "{stderr}");
        assert!(text(&out.stdout).is_empty());
        assert_eq!(staged(&interp), tmp_before, "{version}: nothing staged");
        assert_eq!(hooks_left(&mut target), None);
    }
}

/// The agent staging directories in the root's /tmp.
fn staged(interp: &Interpreter) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(interp.host_path("/tmp"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| {
                    n.starts_with("pymri-") && !n.starts_with("pymri-test-") && !n.starts_with("pymri-agent-")
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn bad_arguments_are_usage_errors() {
    for (args, needle) in [
        (&["trace", "1"][..], "nothing to trace"),
        (&["trace", "1", "--log", "file.py", "x"][..], "expected FILE:LINE"),
        (&["trace", "1", "--calls", "a:b:c"][..], "expected MODULE:QUALNAME or QUALNAME"),
        (&["trace", "1", "--type", "KeyError", "--calls", "f"][..], "--type needs --exceptions"),
    ] {
        let out = pymri(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{args:?}: {stderr}");
    }
}
