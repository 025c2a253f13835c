//! `pymri exec PID`: code run in a live process, its output back on pymri's streams, on every
//! provisioned interpreter.

mod common;

use common::{interpreters, pymri, reported_tids, staging_dirs, text, Interpreter, Scratch, Target};
use std::io::Write;
use std::process::{Output, Stdio};

const FIXTURE: &str = "exec_target.py";

fn start(interp: &Interpreter) -> Target {
    Target::start(interp, FIXTURE, &["{ready}", "{control}"])
}

fn exec(target: &Target, args: &[&str]) -> Output {
    let pid = target.pid().to_string();
    pymri(&[&["exec", &pid][..], args].concat())
}

/// The target's own view of its hooks and streams (the fixture's `state` answer).
fn state(target: &mut Target) -> serde_json::Value {
    serde_json::from_str(&target.ask("state")).expect("state is JSON")
}

/// Nothing of pymri is left: no trace function, no monitoring tool, the program's own stream
/// objects, no agent module.
fn assert_untouched(name: &str, state: &serde_json::Value) {
    assert_eq!(state["trace"], "None", "{name}: {state}");
    assert_eq!(state["threading_trace"], "None", "{name}: {state}");
    if let Some(tools) = state["tools"].as_array() {
        assert!(tools.iter().all(|t| t.is_null()), "{name}: a monitoring tool is left: {state}");
    }
    assert_eq!(state["stdout_is_own"], true, "{name}: {state}");
    assert_eq!(state["stderr_is_own"], true, "{name}: {state}");
    assert_eq!(state["agent_modules"], serde_json::json!([]), "{name}: {state}");
}

#[test]
fn output_and_the_final_expression_come_back() {
    for interp in interpreters() {
        let target = start(&interp);
        let out = exec(
            &target,
            &["-c", "import sys\nprint('hello', 6)\nprint('to stderr', file=sys.stderr)\n6 * 7"],
        );
        let name = &interp.name;
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "hello 6\n42\n", "{name}");
        assert_eq!(text(&out.stderr), "to stderr\n", "{name}");
        // As at the Python prompt: a final None is not shown, a string shows its repr.
        let out = exec(&target, &["-c", "None"]);
        assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), String::new()), "{name}");
        let out = exec(&target, &["-c", "x = 'a'\nx * 2"]);
        assert_eq!(text(&out.stdout), "'aa'\n", "{name}");
    }
}

#[test]
fn an_exception_prints_its_traceback_and_exits_1() {
    for interp in interpreters() {
        let mut target = start(&interp);
        let name = &interp.name;
        let out = exec(&target, &["-c", "print('before')\ndef fail():\n    return 1 / 0\nfail()"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "before\n", "{name}");
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("Traceback (most recent call last):"), "{name}: {stderr}");
        assert!(stderr.contains("File \"<exec>\", line 3, in fail"), "{name}: {stderr}");
        assert!(stderr.contains("return 1 / 0"), "{name}: the code's own line is shown: {stderr}");
        assert!(stderr.trim_end().ends_with("ZeroDivisionError: division by zero"), "{name}: {stderr}");
        assert!(!stderr.contains("pymri_agent"), "{name}: the agent's frames are not shown: {stderr}");

        let out = exec(&target, &["-c", "def f(:\n    pass"]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(text(&out.stderr).contains("SyntaxError"), "{name}: {}", text(&out.stderr));
        // The program goes on, unhooked.
        assert_untouched(name, &state(&mut target));
    }
}

#[test]
fn a_global_changed_on_purpose_is_seen_by_the_target() {
    for interp in interpreters() {
        let mut target = start(&interp);
        assert_eq!(target.ask("global answer"), "<unset>");
        let out = exec(&target, &["-c", "answer = 6 * 7"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", interp.name, text(&out.stderr));
        assert_eq!(target.ask("global answer"), "42", "{}", interp.name);
    }
}

/// Another thread of the target prints while the code runs: its line goes to the program's
/// stdout, the code's line to pymri's, and neither to the other.
#[test]
fn the_targets_own_output_stays_in_its_streams() {
    for interp in interpreters() {
        let name = &interp.name;
        let scratch = Scratch::new(&interp);
        let target_out = scratch.host.join("target-stdout");
        let file = std::fs::File::create(&target_out).expect("target stdout file");
        let mut target = Target::start_with(&interp, FIXTURE, &["{ready}", "{control}"], &[], |c| {
            c.stdout(Stdio::from(file));
        });
        let code = "go.set()\nassert printed.wait(10)\nprint('exec line')";
        let out = exec(&target, &["-c", code]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "exec line\n", "{name}");
        // The printer flushed before setting `printed`.
        let own = std::fs::read_to_string(&target_out).expect("target stdout");
        assert_eq!(own, "printer line 1\n", "{name}");
        assert_untouched(name, &state(&mut target));
    }
}

/// Every hook is gone after exec, and running it again adds nothing: the second run leaves the
/// same modules as the first.
#[test]
fn no_hook_or_module_is_left_after_exec() {
    for interp in interpreters() {
        let name = &interp.name;
        let mut target = start(&interp);
        let out = exec(&target, &["-c", "1"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let first = state(&mut target);
        assert_untouched(name, &first);
        let out = exec(&target, &["-c", "print(2)"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let second = state(&mut target);
        assert_untouched(name, &second);
        assert_eq!(first["modules"], second["modules"], "{name}: a second exec loaded more modules");
    }
}

#[test]
fn code_from_stdin_and_from_a_file() {
    for interp in interpreters() {
        let name = &interp.name;
        let target = start(&interp);
        let pid = target.pid().to_string();
        // stdin at its end at once (/dev/null): empty code runs and prints nothing.
        let out = pymri(&["exec", &pid, "-"]);
        assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), String::new()), "{name}");

        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pymri"))
            .args(["exec", &pid, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pymri");
        child.stdin.take().expect("stdin").write_all(b"import sys\nsys.version_info[:2]\n").expect("write");
        let out = child.wait_with_output().expect("pymri ends");
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let minor = name.trim_end_matches('d').trim_start_matches("3.");
        assert_eq!(text(&out.stdout), format!("(3, {minor})\n"), "{name}");

        let file = Scratch::new(&interp);
        let path = file.host.join("census.py");
        std::fs::write(&path, "import sys\nprint(len([m for m in sys.modules if m == 'json']))\n")
            .expect("code file");
        let out = pymri(&["exec", &pid, path.to_str().expect("path")]);
        assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "1\n".to_string()), "{name}");
    }
}

/// A missing file or code that is too long is refused before anything reaches the target.
#[test]
fn bad_code_input_is_refused_before_attaching() {
    let interp = common::interpreter("3.14").expect("3.14");
    let uid = 61170;
    let target = Target::start_as(&interp, FIXTURE, &["{ready}", "{control}"], &[], uid, |_| {});
    let pid = target.pid().to_string();
    let out = pymri(&["exec", &pid, "/nonexistent/code.py"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: cannot open /nonexistent/code.py"), "{stderr}");
    let scratch = Scratch::new(&interp);
    let long = scratch.host.join("long.py");
    std::fs::write(&long, "#".repeat(1024 * 1024 + 1)).expect("long file");
    let out = pymri(&["exec", &pid, long.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the code is longer than 1024 KiB"), "{}", text(&out.stderr));
    assert_eq!(staging_dirs(&interp, uid), Vec::<String>::new(), "nothing was staged for the target");
}

#[test]
fn refused_when_the_target_disables_remote_debugging() {
    for (version, flags, env, uid) in [
        ("3.14", &["-X", "disable-remote-debug"][..], None, 61171),
        ("3.15", &[][..], Some("1"), 61172),
        ("3.11", &[][..], Some("1"), 61173),
        ("3.9", &[][..], Some("1"), 61174),
    ] {
        let interp = common::interpreter(version).expect("interpreter");
        let mut target = Target::start_as(&interp, FIXTURE, &["{ready}", "{control}"], flags, uid, |c| {
            if let Some(v) = env {
                c.env("PYTHON_DISABLE_REMOTE_DEBUG", v);
            }
        });
        let out = exec(&target, &["-c", "answer = 1"]);
        assert_eq!(out.status.code(), Some(6), "{version}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("has remote debugging disabled"), "{stderr}");
        assert!(stderr.contains("pymri wrote nothing to it"), "{stderr}");
        assert_eq!(text(&out.stdout), "");
        assert_eq!(staging_dirs(&interp, uid), Vec::<String>::new(), "{version}: no file was staged");
        assert_eq!(target.ask("global answer"), "<unset>", "{version}: the code did not run");
    }
}

/// `--thread TID` runs the code in that thread (a kernel id, as `dump` shows it).
#[test]
fn runs_in_the_chosen_thread() {
    for interp in interpreters() {
        let name = &interp.name;
        let target = start(&interp);
        let tids = reported_tids(&target);
        let worker = tids["worker"].to_string();
        let code = "import threading\nthreading.current_thread().name";
        let out = exec(&target, &["--thread", &worker, "-c", code]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "'worker'\n", "{name}");
        let out = exec(&target, &["-c", code]);
        assert_eq!(text(&out.stdout), "'MainThread'\n", "{name}");
    }
}

/// Code that prints without end cannot fill the target's memory or pymri's: the agent sends
/// 8 MiB and counts the rest, and pymri says so.
#[test]
fn output_is_bounded() {
    let interp = common::interpreter("3.14").expect("3.14");
    let target = start(&interp);
    let out = exec(&target, &["-c", "print('x' * (10 * 1024 * 1024 - 1))"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 8 * 1024 * 1024);
    assert!(out.stdout.iter().all(|b| *b == b'x' || *b == b'\n'));
    assert_eq!(
        text(&out.stderr),
        "pymri: 2097152 more characters of output were not sent (the limit is 8 MiB per run)\n"
    );
}

/// A chosen thread blocked in C never runs the code: pymri gives up after --timeout with exit
/// status 7, on both injection paths (a pause armed by the agent before 3.14, PEP 768's request
/// in that thread from 3.14), and the program is left unhooked with the code not run.
#[test]
fn a_chosen_thread_blocked_in_c_times_out() {
    for version in ["3.11", "3.14"] {
        let interp = common::interpreter(version).expect("interpreter");
        let mut target = start(&interp);
        let printer = reported_tids(&target)["printer"].to_string();
        let out = exec(&target, &["--thread", &printer, "--timeout", "1", "-c", "answer = 1"]);
        assert_eq!(out.status.code(), Some(7), "{version}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("did not reach a safe point within 1s"), "{version}: {stderr}");
        assert_eq!(target.ask("global answer"), "<unset>", "{version}: the code did not run");
        assert_untouched(version, &state(&mut target));
    }
}
