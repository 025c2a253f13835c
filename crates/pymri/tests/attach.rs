//! `pymri attach` through a pseudo-terminal, typing as a person would, against a running
//! multi-threaded HTTP server.

mod common;

use common::pty::Repl;
use common::{interpreter, mark, pymri, staging_dirs, text, Interpreter, Target};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SERVER: &str = "http_server.py";

fn start_server(interp: &Interpreter) -> (Target, u16) {
    let target = Target::start(interp, SERVER, &["{ready}"]);
    let port = target.ready_line.split_whitespace().nth(1).expect("port").parse().expect("port number");
    (target, port)
}

/// A GET with a deadline; the response body, or an error if the server did not answer.
fn get(port: u16, path: &str, deadline: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(deadline)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("no answer to {path}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{path}: {head}"));
    }
    Ok(body.to_string())
}

fn no_hooks_left(port: u16) {
    let hooks = get(port, "/hooks", Duration::from_secs(5)).expect("hooks endpoint");
    assert!(hooks.contains("\"trace\": \"None\""), "{hooks}");
    assert!(hooks.contains("\"threading_trace\": \"None\""), "{hooks}");
    if hooks.contains("tools") {
        assert!(hooks.contains("\"tools\": [null, null, null, null, null, null]"), "{hooks}");
    }
}

/// The scenario of scenarios.md: attach to the server, set a conditional breakpoint on one
/// endpoint, other requests keep being served while only the matching one stops, step into the
/// helper, fix a variable, continue, detach, and the server still answers.
fn conditional_breakpoint_in_a_live_server(version: &str) {
    let interp = interpreter(version).expect("interpreter");
    let (target, port) = start_server(&interp);
    let script = target.script_path(SERVER);
    let mut repl = Repl::attach(&interp, target.pid(), &[]);
    let first = repl.prompt();
    assert!(first.contains("Attaching to process"), "{first}");
    assert!(first.contains("> "), "the main thread stops where it is: {first}");

    let route = mark(SERVER, "route");
    let out = repl.cmd(&format!("b {script}:{route}, self.path.startswith('/crash')"));
    assert!(out.contains(&format!("Breakpoint 1 at {script}:{route}")), "{out}");
    repl.type_line("c");

    // Other requests are served while the breakpoint is set and not hit...
    assert!(get(port, "/add?a=2&b=3", Duration::from_secs(5)).expect("add").contains("\"result\": 5"));
    // ...and while the crash request is stopped at it.
    let crash = std::thread::spawn(move || get(port, "/crash?a=3&b=3", Duration::from_secs(60)));
    let stop = repl.prompt();
    assert!(stop.contains(&format!("{script}({route})do_GET()")), "{stop}");
    assert!(get(port, "/health", Duration::from_secs(5))
        .expect("health while stopped")
        .contains("\"ok\": true"));

    let mut at_call = false;
    for _ in 0..6 {
        let out = repl.cmd("n");
        if out.contains("ratio(100") {
            at_call = true;
            break;
        }
    }
    assert!(at_call, "stepped to the helper call:\n{}", repl.transcript);
    let inside = repl.cmd("s");
    assert!(inside.contains("ratio()"), "stepped into the helper: {inside}");
    assert!(repl.cmd("p a, b").contains("(3, 3)"));
    repl.cmd("!b = 2");
    assert!(repl.cmd("p b").contains('2'));
    repl.type_line("c");
    let answer = crash.join().expect("request thread").expect("the crash request completes");
    assert!(answer.contains("\"result\": -100.0"), "the fixed variable was used: {answer}");

    repl.control('c');
    repl.prompt();
    repl.type_line("detach");
    assert_eq!(repl.exit_status(), 0, "{}", repl.transcript);
    assert!(get(port, "/health", Duration::from_secs(5))
        .expect("served after detach")
        .contains("\"ok\": true"));
    no_hooks_left(port);
    assert!(!target.any_thread_stopped());
}

/// SIGKILL of the CLI while it holds the main thread stopped: the agent notices the lost
/// connection and detaches, and the server answers again within a second.
fn killed_cli_releases_the_target(version: &str, uid: u32) {
    let interp = interpreter(version).expect("interpreter");
    let target = Target::start_as(&interp, SERVER, &["{ready}"], &[], uid, |_| {});
    let port = target.ready_line.split_whitespace().nth(1).expect("port").parse().expect("port number");
    let mut repl = Repl::attach(&interp, target.pid(), &[]);
    repl.prompt();
    // The main thread is stopped: the server accepts nothing now.
    assert!(get(port, "/health", Duration::from_millis(300)).is_err(), "main thread should be stopped");
    let killed = Instant::now();
    repl.kill_hard();
    let answer = get(port, "/health", Duration::from_secs(5)).expect("the server answers again");
    let waited = killed.elapsed();
    assert!(answer.contains("\"ok\": true"));
    assert!(waited < Duration::from_millis(1000), "answered {waited:?} after the CLI died");
    no_hooks_left(port);
    // The agent removed the files pymri staged before it let the program go on.
    assert_eq!(staging_dirs(&interp, uid), Vec::<String>::new());
}

macro_rules! per_interpreter {
    ($($version:literal, $uid:literal => $scenario:ident, $killed:ident;)*) => {
        $(
            #[test]
            fn $scenario() { conditional_breakpoint_in_a_live_server($version) }
            #[test]
            fn $killed() { killed_cli_releases_the_target($version, $uid) }
        )*
    };
}

per_interpreter! {
    "3.9", 61009 => server_3_9, killed_cli_3_9;
    "3.11", 61011 => server_3_11, killed_cli_3_11;
    "3.13", 61013 => server_3_13, killed_cli_3_13;
    "3.14", 61014 => server_3_14, killed_cli_3_14;
    "3.15", 61015 => server_3_15, killed_cli_3_15;
}

#[test]
fn refused_when_the_target_disables_remote_debugging() {
    for (version, flags, env) in [
        ("3.14", &["-X", "disable-remote-debug"][..], None),
        ("3.15", &[][..], Some("1")),
        ("3.11", &[][..], Some("1")),
    ] {
        let interp = interpreter(version).expect("interpreter");
        let uid = 61001;
        let target = Target::start_as(&interp, SERVER, &["{ready}"], flags, uid, |c| {
            if let Some(v) = env {
                c.env("PYTHON_DISABLE_REMOTE_DEBUG", v);
            }
        });
        let before = pymri(&["dump", "--json", &target.pid().to_string()]);
        let out = pymri(&["attach", &target.pid().to_string()]);
        assert_eq!(out.status.code(), Some(6), "{version}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("has remote debugging disabled"), "{stderr}");
        assert!(stderr.contains("pymri wrote nothing to it"), "{stderr}");
        assert_eq!(staging_dirs(&interp, uid), Vec::<String>::new(), "no file was staged for the target");
        let after = pymri(&["dump", "--json", &target.pid().to_string()]);
        assert_eq!(before.status.code(), after.status.code());
        assert!(target.tracer_pid() == 0 && !target.any_thread_stopped());
    }
}

#[test]
fn a_main_thread_blocked_in_c_times_out_with_where_it_is() {
    let interp = interpreter("3.13").expect("3.13");
    let uid = 61002;
    let target = Target::start_as(&interp, "inject_target.py", &["{ready}", "sleep"], &[], uid, |_| {});
    let out = pymri(&["attach", "--timeout", "1", &target.pid().to_string()]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the main thread did not reach a safe point"), "{stderr}");
    assert!(stderr.contains("inject_target.py"), "names where it is blocked: {stderr}");
    assert!(stderr.contains("the request was withdrawn"), "{stderr}");
    assert!(!target.any_thread_stopped());
    assert_eq!(staging_dirs(&interp, uid), Vec::<String>::new(), "the staging directory is removed");
}

/// `--thread TID` stops the chosen thread, not the main one (PEP 768 writes that thread's
/// state; before 3.14 the main thread runs the bootstrap and pauses the chosen thread).
fn attach_to_a_chosen_thread(version: &str) {
    let interp = interpreter(version).expect("interpreter");
    let (target, port) = start_server(&interp);
    let dump = pymri(&["dump", "--json", &target.pid().to_string()]);
    let dump: serde_json::Value = serde_json::from_slice(&dump.stdout).expect("dump");
    let tid = dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == "background")
        .and_then(|t| t["tid"].as_i64())
        .expect("background thread id")
        .to_string();
    let mut repl = Repl::attach(&interp, target.pid(), &["--thread", &tid]);
    let stop = repl.prompt();
    assert!(stop.contains("(background)"), "{stop}");
    assert!(stop.contains("background()"), "stopped in the chosen thread's code: {stop}");
    // The main thread was not stopped: the server keeps answering.
    assert!(get(port, "/health", Duration::from_secs(5)).expect("served").contains("\"ok\": true"));
    repl.type_line("detach");
    assert_eq!(repl.exit_status(), 0, "{}", repl.transcript);
}

#[test]
fn chosen_thread_3_11() {
    attach_to_a_chosen_thread("3.11");
}

#[test]
fn chosen_thread_3_14() {
    attach_to_a_chosen_thread("3.14");
}

/// The target dies while the debugger holds it stopped: the session is lost, not detached, so
/// pymri says so and exits with status 1 instead of 0.
#[test]
fn a_lost_session_is_reported_and_fails() {
    let interp = interpreter("3.13").expect("3.13");
    let (mut target, _) = start_server(&interp);
    let mut repl = Repl::attach(&interp, target.pid(), &[]);
    repl.prompt();
    target.child.kill().expect("SIGKILL the target");
    target.child.wait().expect("reap the target");
    repl.type_line("p 1");
    let (_, status) = repl.finish();
    assert_eq!(status, 1, "{}", repl.transcript);
    assert!(repl.transcript.contains("error: the session with the agent was lost"), "{}", repl.transcript);
}
