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

fn frames(thread: &Value) -> &Vec<Value> {
    thread["frames"].as_array().expect("frames")
}

fn is_native(frame: &Value) -> bool {
    frame["kind"] == "native"
}

fn module_has(frame: &Value, part: &str) -> bool {
    frame["module"].as_str().is_some_and(|m| m.rsplit('/').next().unwrap_or(m).contains(part))
}

/// In the C library: glibc before 2.34 (3.9's Debian 11) keeps `read` and `pause` in
/// libpthread.
fn in_libc(frame: &Value) -> bool {
    module_has(frame, "libc") || module_has(frame, "libpthread")
}

/// The index of the Python frame running `function` in the fixture.
fn python_at(thread: &Value, function: &str) -> usize {
    frames(thread)
        .iter()
        .position(|f| {
            f["kind"] == "python"
                && f["function"]
                    .as_str()
                    .is_some_and(|n| n == function || n.ends_with(&format!(".{function}")))
        })
        .unwrap_or_else(|| panic!("no Python frame {function} in {thread:#}"))
}

fn thread_by_tid(dump: &Value, tid: i64) -> &Value {
    dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["tid"] == tid)
        .unwrap_or_else(|| panic!("no thread {tid} in {dump:#}"))
}

/// Every interpreter call was replaced by the Python frames it ran: none is left, and the
/// native and Python stacks agreed (no error).
fn merged_whole(thread: &Value) {
    let left = frames(thread).iter().filter(|f| {
        f["symbol"]
            .as_str()
            .is_some_and(|s| s.starts_with("_PyEval_EvalFrameDefault") || s.starts_with("_TAIL_CALL_"))
    });
    assert_eq!(left.count(), 0, "interpreter frames left: {thread:#}");
    assert!(thread["error"].is_null(), "{thread:#}");
}

/// The kernel core of the ctypes crash: the native frames of the crash (libc's strlen, libffi,
/// _ctypes) above the Python frames that led there, in order.
fn crash_native(name: &str) {
    let interp = interp(name);
    let (target, core) = crash(&interp);
    let crasher = reported_tids(&target)["crasher"];
    let core = core.to_str().expect("utf-8");
    let mut args = core_args(&interp, core);
    args.extend(["--native", "--json"]);
    let dump = json(&args);
    assert_eq!(dump["native"], true);
    let thread = &dump["threads"][0];
    assert_eq!(thread["tid"], crasher, "{dump:#}");
    let all = frames(thread);
    assert!(is_native(&all[0]) && module_has(&all[0], "libc"), "the fault is in libc (strlen): {thread:#}");
    let ctypes = all.iter().position(|f| is_native(f) && module_has(f, "_ctypes")).expect("a _ctypes frame");
    let ffi = all.iter().position(|f| is_native(f) && module_has(f, "libffi")).expect("a libffi frame");
    let inner = python_at(thread, "crash_inner");
    let outer = python_at(thread, "crash_outer");
    assert!(ffi < inner && ctypes < inner, "the C call is above the Python frames: {thread:#}");
    assert!(
        all[..inner].iter().filter(|f| f["kind"] == "python").all(|f| f["function"] == "string_at"),
        "{thread:#}"
    );
    // 3.9 and 3.10 run each Python frame in an eval call of its own, with native calls between.
    assert!(
        outer > inner && all[inner + 1..outer].iter().all(is_native),
        "crash_outer called crash_inner: {thread:#}"
    );
    assert_eq!(all[inner]["line"], mark(FIXTURE, "crash"));
    assert_eq!(all[outer]["line"], mark(FIXTURE, "outer"));
    assert!(all[outer + 1..].iter().any(is_native), "the thread's start is native: {thread:#}");
    merged_whole(thread);

    // The text shows the same order, native frames marked.
    let mut args = core_args(&interp, core);
    args.push("--native");
    let out = pymri(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let at = |needle: &str| shown.find(needle).unwrap_or_else(|| panic!("{needle:?} not in\n{shown}"));
    assert!(
        at("    (native) ") < at("    crash_inner (") && at("    crash_inner (") < at("    crash_outer ("),
        "{shown}"
    );
    assert!(at("[received SIGSEGV]") < at("    (native) "), "{shown}");
}

/// A live process: threads asleep in libc through Python (time.sleep, os.read) show their libc
/// frame above their Python frames; --native-all adds the thread that runs no Python. Each
/// thread is released: the target runs on, untraced.
fn live_native(name: &str) {
    let interp = interp(name);
    let mut target = Target::start(&interp, FIXTURE, &["live", "{ready}"]);
    let tids = reported_tids(&target);
    let pid = target.pid().to_string();
    let dump = json(&["dump", "--native", "--json", &pid]);
    assert_eq!(dump["native"], true);

    let sleeper = thread_by_tid(&dump, tids["sleeper"]);
    assert_eq!(sleeper["python"], true);
    let at = python_at(sleeper, "sleeper");
    assert_eq!(frames(sleeper)[at]["line"], mark(FIXTURE, "sleep"));
    let above = &frames(sleeper)[..at];
    assert!(!above.is_empty() && above.iter().all(is_native), "only native frames above: {sleeper:#}");
    assert!(in_libc(&above[0]), "asleep in libc: {sleeper:#}");
    assert!(
        above.iter().any(|f| in_libc(f)
            && f["symbol"].as_str().is_some_and(|s| s.contains("sleep") || s.contains("select"))),
        "time.sleep's libc call is named: {sleeper:#}"
    );
    merged_whole(sleeper);

    let reader = thread_by_tid(&dump, tids["reader"]);
    let at = python_at(reader, "reader");
    assert_eq!(frames(reader)[at]["line"], mark(FIXTURE, "read"));
    let above = &frames(reader)[..at];
    assert!(above.iter().all(is_native), "{reader:#}");
    assert!(
        above.iter().any(|f| in_libc(f) && f["symbol"] == "read"),
        "os.read, the GIL released, is in libc's read: {reader:#}"
    );
    merged_whole(reader);

    let native_tid = tids["native"];
    let listed =
        |dump: &Value| dump["threads"].as_array().expect("threads").iter().any(|t| t["tid"] == native_tid);
    assert!(!listed(&dump), "--native lists Python's threads only: {dump:#}");
    let dump = json(&["dump", "--native-all", "--json", &pid]);
    let native = thread_by_tid(&dump, native_tid);
    assert_eq!(native["python"], false, "{native:#}");
    assert!(native["ident"].is_null(), "{native:#}");
    assert!(frames(native).iter().all(is_native), "{native:#}");
    assert!(frames(native).iter().any(|f| f["symbol"] == "pause" && in_libc(f)), "{native:#}");

    let out = pymri(&["dump", "--native-all", &pid]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("Thread {native_tid} (idle, no Python)")), "{shown}");
    assert!(shown.contains("    (native) pause+0x"), "{shown}");

    // With --blocking the whole process is held for the read, and the stacks merge the same.
    let dump = json(&["dump", "--native", "--blocking", "--json", &pid]);
    merged_whole(thread_by_tid(&dump, tids["sleeper"]));
    merged_whole(thread_by_tid(&dump, tids["reader"]));

    assert!(target.is_alive(), "the target died");
    assert!(!target.any_thread_stopped(), "threads left stopped");
    assert_eq!(target.tracer_pid(), 0, "pymri left attached");
}

macro_rules! native_per_interpreter {
    ($($version:literal => $core:ident, $live:ident;)*) => {
        $(
            #[test]
            fn $core() { crash_native($version) }
            #[test]
            fn $live() { live_native($version) }
        )*
    };
}

native_per_interpreter! {
    "3.9" => crash_native_3_9, live_native_3_9;
    "3.9d" => crash_native_3_9d, live_native_3_9d;
    "3.11" => crash_native_3_11, live_native_3_11;
    "3.13" => crash_native_3_13, live_native_3_13;
    "3.14" => crash_native_3_14, live_native_3_14;
    "3.14d" => crash_native_3_14d, live_native_3_14d;
    "3.15" => crash_native_3_15, live_native_3_15;
}

/// A thread another tracer holds (strace here) cannot be stopped for its unwind: the dump goes
/// on, that thread shows its Python frames and says why its native ones are missing.
#[test]
fn a_thread_traced_by_another_tool_is_reported_not_fatal() {
    let interp = interp("3.11");
    let target = Target::start(&interp, FIXTURE, &["live", "{ready}"]);
    let tids = reported_tids(&target);
    let reader = tids["reader"];
    let mut strace = std::process::Command::new("strace")
        .args(["-o", "/dev/null", "-p", &reader.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace");
    let status = format!("/proc/{}/task/{reader}/status", target.pid());
    let deadline = std::time::Instant::now() + common::READY_TIMEOUT;
    while !std::fs::read_to_string(&status)
        .expect("status")
        .lines()
        .any(|l| l.strip_prefix("TracerPid:").is_some_and(|v| v.trim() == strace.id().to_string()))
    {
        assert!(std::time::Instant::now() < deadline, "strace never attached");
        std::thread::yield_now();
    }
    let dump = json(&["dump", "--native", "--json", &target.pid().to_string()]);
    let _ = strace.kill();
    let _ = strace.wait();
    let traced = thread_by_tid(&dump, reader);
    let error = traced["error"].as_str().expect("an error");
    assert!(error.contains(&format!("traced by process {}", strace.id())), "{traced:#}");
    assert!(frames(traced).iter().all(|f| f["kind"] == "python"), "{traced:#}");
    python_at(traced, "reader");
    let sleeper = thread_by_tid(&dump, tids["sleeper"]);
    merged_whole(sleeper);
}

/// `record --native`: each sampled stack runs from the thread's native start through its
/// Python frames to the C call it sleeps in, every thread let go after each unwind.
fn record_native(name: &str) {
    let interp = interp(name);
    let mut target = Target::start(&interp, FIXTURE, &["live", "{ready}"]);
    let out_path = target.scratch.host.join("native.collapsed");
    let out_file = out_path.to_str().expect("utf-8");
    let pid = target.pid().to_string();
    let out =
        pymri(&["record", &pid, "--native", "--duration", "0.5", "--format", "collapsed", "-o", out_file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let collapsed = std::fs::read_to_string(&out_path).expect("profile");
    // Root first, leaf last: `...;sleeper (FILE:LINE);...;clock_nanosleep (libc.so.6) COUNT`.
    let stack = |function: &str| {
        collapsed
            .lines()
            .find(|l| l.contains(&format!("{function} (")) && l.contains(FIXTURE))
            .unwrap_or_else(|| panic!("no stack through {function}:\n{collapsed}"))
    };
    let sleeps = |f: &str| f.contains("sleep") || f.contains("select");
    let reads = |f: &str| f.starts_with("read (") || f.starts_with("__libc_read (");
    for (function, call) in [("sleeper", &sleeps as &dyn Fn(&str) -> bool), ("reader", &reads)] {
        let line = stack(function);
        let (frames, _count) = line.rsplit_once(' ').expect("count");
        let frames: Vec<&str> = frames.split(';').collect();
        let python = frames.iter().position(|f| f.starts_with(&format!("{function} ("))).expect("frame");
        let leaf = frames.last().expect("leaf");
        assert!(leaf.contains("(libc") || leaf.contains("(libpthread"), "{function} sleeps in libc: {line}");
        assert!(
            frames[python + 1..].iter().any(|f| call(f)),
            "{function}'s C call below its Python frame: {line}"
        );
        assert!(frames[..python].iter().any(|f| f.contains("(libc") || f.contains("(libpthread")), "{line}");
    }
    assert!(target.is_alive(), "the target died");
    assert!(!target.any_thread_stopped(), "threads left stopped");
    assert_eq!(target.tracer_pid(), 0, "pymri left attached");
}

#[test]
fn record_native_3_9() {
    record_native("3.9")
}

#[test]
fn record_native_3_11() {
    record_native("3.11")
}

#[test]
fn record_native_3_14() {
    record_native("3.14")
}

#[test]
fn record_native_3_15() {
    record_native("3.15")
}
