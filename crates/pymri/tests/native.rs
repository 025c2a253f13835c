//! Below Python: how a core died (`dump --core`), and native frames merged with Python's
//! (`dump --native`, `--native-all`), against real interpreters.

mod common;

use common::{interpreter, mark, pymri, reported_tids, text, Interpreter, Target};
use serde_json::Value;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;

const FIXTURE: &str = "native_stacks.py";

fn interp(name: &str) -> Interpreter {
    interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"))
}

fn json(args: &[&str]) -> Value {
    let out = pymri(args);
    assert!(out.status.success(), "pymri {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON: {e}\n{}", text(&out.stdout)))
}

/// The fixture dereferences NULL through ctypes; the kernel writes its core into the fixture's
/// directory (kernel.core_pattern is a plain `core`, as scripts/test.sh makes it). Returns the
/// target (exited) and the core's path.
fn crash(interp: &Interpreter) -> (Target, PathBuf) {
    let mut target = Target::start_with(interp, FIXTURE, &["crash", "{ready}"], &[], |cmd| {
        // SAFETY: setrlimit is async-signal-safe, run in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
                if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let status = target.child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{}: {status:?}", interp.name);
    assert!(status.core_dumped(), "no core was dumped (kernel.core_pattern must be a plain file name)");
    let core = target.scratch.host.join("core");
    assert!(core.exists(), "no core in {}", target.scratch.host.display());
    (target, core)
}

/// The arguments reading a core of `interp`: its root as the sysroot when it runs in one.
fn core_args<'a>(interp: &'a Interpreter, core: &'a str) -> Vec<&'a str> {
    let mut args = vec!["dump", "--core", core];
    if interp.in_root() {
        args.extend(["--sysroot", interp.root.to_str().expect("utf-8")]);
    }
    args
}

/// A kernel core of a crash says which signal, where, in which thread, and the command line.
fn crash_signal(name: &str) {
    let interp = interp(name);
    let (target, core) = crash(&interp);
    let core = core.to_str().expect("utf-8");
    let crasher = reported_tids(&target)["crasher"];

    let mut args = core_args(&interp, core);
    args.push("--json");
    let dump = json(&args);
    let signal = &dump["signal"];
    assert_eq!(signal["number"], libc::SIGSEGV, "{signal:#}");
    assert_eq!(signal["name"], "SIGSEGV");
    assert_eq!(signal["code_name"], "SEGV_MAPERR");
    assert_eq!(signal["address"], 0, "ctypes.string_at(0) faults at 0");
    assert_eq!(signal["thread"], crasher, "the crasher received it");
    assert_eq!(dump["threads"][0]["tid"], crasher, "the thread that received it comes first");
    assert_eq!(dump["threads"].as_array().map(Vec::len), Some(3), "{dump:#}");
    let command = dump["command"].as_str().expect("command");
    // The kernel keeps the first 80 bytes of the command line.
    assert!(command.contains(&format!("{FIXTURE} crash ")), "arguments kept: {command}");

    let out = pymri(&core_args(&interp, core));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "Signal: SIGSEGV (SEGV_MAPERR) at address 0x0, received by thread {crasher}\n"
        )),
        "{shown}"
    );
    let threads: Vec<&str> = shown.lines().filter(|l| l.starts_with("Thread ")).collect();
    assert!(threads[0].starts_with(&format!("Thread {crasher} (")), "{shown}");
    assert!(threads[0].ends_with(": \"crasher\" [received SIGSEGV]"), "{shown}");
    assert_eq!(threads.iter().filter(|l| l.contains("[received")).count(), 1, "{shown}");
    let line = mark(FIXTURE, "crash");
    assert!(shown.contains(&format!("crash_inner ({}/{FIXTURE}:{line})", target.scratch.inside)), "{shown}");
}

macro_rules! per_interpreter {
    ($($version:literal => $signal:ident;)*) => {
        $(
            #[test]
            fn $signal() { crash_signal($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => crash_signal_3_9;
    "3.9d" => crash_signal_3_9d;
    "3.11" => crash_signal_3_11;
    "3.13" => crash_signal_3_13;
    "3.14" => crash_signal_3_14;
    "3.14d" => crash_signal_3_14d;
    "3.15" => crash_signal_3_15;
}
