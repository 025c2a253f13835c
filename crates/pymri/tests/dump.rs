//! `pymri dump` against real interpreters: live, blocking, and from core files.

mod common;

use common::{interpreter, mark, pymri, reported_tids, run_with_deadline, text, Interpreter, Target};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

const FIXTURE: &str = "named_threads.py";

fn start(interp: &Interpreter) -> Target {
    Target::start(interp, FIXTURE, &["{ready}"])
}

fn thread<'a>(dump: &'a Value, name: &str) -> &'a Value {
    dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread named {name} in {dump:#}"))
}

/// The frame of `function` (a suffix, since 3.11+ shows qualified names) in the fixture file.
fn frame<'a>(thread: &'a Value, function: &str) -> &'a Value {
    thread["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| {
            f["function"].as_str().is_some_and(|n| n == function || n.ends_with(&format!(".{function}")))
                && f["file"].as_str().is_some_and(|p| p.ends_with(FIXTURE))
        })
        .unwrap_or_else(|| panic!("no frame {function} in {thread:#}"))
}

fn local<'a>(frame: &'a Value, name: &str) -> &'a str {
    frame["locals"][name].as_str().unwrap_or_else(|| panic!("no local {name} in {frame:#}"))
}

/// Everything the fixture guarantees, checked on one dump.
fn check_named_threads(interp: &Interpreter, dump: &Value, tids: &HashMap<String, i64>, live: bool) {
    let version = interp.name.trim_end_matches('d');
    assert!(
        dump["python_version"].as_str().is_some_and(|v| v.starts_with(&format!("{version}."))),
        "{interp:?}: version {}",
        dump["python_version"]
    );
    assert_eq!(dump["debug_build"].as_bool(), Some(interp.name.ends_with('d')));

    for name in ["MainThread", "worker-1", "worker-2", "mapper", "service"] {
        let t = thread(dump, name);
        assert_eq!(t["tid"].as_i64(), tids.get(name).copied(), "{name}: kernel thread id");
        if live {
            assert_eq!(t["state"], "idle", "{name} is parked: {t:#}");
        }
        assert_eq!(t["holds_gil"], false, "{name} is parked");
        let innermost = &t["frames"][0];
        assert!(innermost["line"].as_i64().is_some_and(|l| l > 0), "{name}: {innermost:#}");
    }

    let w1 = frame(thread(dump, "worker-1"), "park_worker");
    assert_eq!(w1["line"].as_i64(), Some(mark(FIXTURE, "worker").into()));
    assert_eq!(local(w1, "number"), "1");
    assert_eq!(local(w1, "label"), "'alpha'");
    assert_eq!(local(w1, "counter"), "10");
    assert_eq!(local(w1, "items"), "[1, 'x', None]");
    assert_eq!(w1["arguments"], serde_json::json!(["number", "label"]));
    let w2 = frame(thread(dump, "worker-2"), "park_worker");
    assert_eq!(local(w2, "label"), "'beta'");
    assert_eq!(local(w2, "counter"), "20");

    let m = frame(thread(dump, "mapper"), "park_mapper");
    assert_eq!(m["line"].as_i64(), Some(mark(FIXTURE, "mapper").into()));
    let expected = [
        ("config", "{'k': (1, 2)}"),
        ("rest", "(9,)"),
        ("flag", "True"),
        ("extra", "{'z': 1}"),
        ("ratio", "0.5"),
        ("big", "1267650600228229401496703205383"),
        ("negative", "-12345678901234567890"),
        ("text", r#"'it\'s a "quoted"\tline'"#),
        ("raw", r"b'\x00\xffbytes'"),
        ("nested", "[[[[...]]]]"),
        ("many", "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"),
        ("empty_set", "set()"),
        ("pair", "{3}"),
    ];
    for (name, repr) in expected {
        assert_eq!(local(m, name), repr, "{interp:?} local {name}");
    }
    let mut args: Vec<&str> =
        m["arguments"].as_array().expect("arguments").iter().filter_map(Value::as_str).collect();
    args.sort_unstable();
    assert_eq!(args, ["config", "extra", "flag", "rest"]);

    let s = frame(thread(dump, "service"), "handle");
    assert_eq!(s["line"].as_i64(), Some(mark(FIXTURE, "method").into()));
    assert!(local(s, "self").starts_with("<Service object at 0x"), "{s:#}");
    assert_eq!(local(s, "request_id"), "42");
    assert_eq!(local(s, "pending"), "{'id': 42, 'ok': False}");
    if version != "3.9" && version != "3.10" {
        assert_eq!(s["function"], "Service.handle");
    }

    let main = frame(thread(dump, "MainThread"), "main");
    assert_eq!(main["line"].as_i64(), Some(mark(FIXTURE, "main").into()));
}

fn dump_json(args: &[&str]) -> Value {
    let out = pymri(args);
    assert!(out.status.success(), "pymri {args:?} failed: {}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "unexpected stderr: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn live(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = start(&interp);
    let tids = reported_tids(&target);
    let pid = target.pid().to_string();

    let dump = dump_json(&["dump", "--locals", "--json", &pid]);
    check_named_threads(&interp, &dump, &tids, true);
    assert_eq!(dump["pid"].as_i64(), Some(target.pid().into()));
    assert_eq!(dump["source"], "live");
    if interp.in_root() {
        assert_eq!(dump["root"].as_str(), interp.root.to_str(), "the root is reported");
        assert_eq!(dump["python_binary"].as_str(), Some(interp.exe.as_str()), "binary as the target sees it");
    } else {
        assert_eq!(dump["root"], Value::Null);
    }

    // The text form carries the same facts in py-spy's shape.
    let out = pymri(&["dump", "--locals", &pid]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let script = target.script_path(FIXTURE);
    let w1_tid = tids["worker-1"];
    assert!(shown.starts_with(&format!("Process {pid}: ")), "{shown}");
    assert!(shown.contains(&format!("Thread {w1_tid} (idle): \"worker-1\"\n")), "{shown}");
    assert!(shown.contains(&format!("    park_worker ({script}:{})\n", mark(FIXTURE, "worker"))), "{shown}");
    assert!(
        shown.contains("        Arguments:\n            number: 1\n            label: 'alpha'\n"),
        "{shown}"
    );
    assert!(shown.contains("        Locals:\n            counter: 10\n"), "{shown}");
}

fn blocking(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = start(&interp);
    let tids = reported_tids(&target);
    let pid = target.pid().to_string();
    let dump = dump_json(&["dump", "--blocking", "--locals", "--json", &pid]);
    assert_eq!(dump["blocking"], true);
    check_named_threads(&interp, &dump, &tids, false);
    assert!(!target.any_thread_stopped(), "threads left stopped");
    assert_eq!(target.tracer_pid(), 0, "pymri left attached");
}

/// A core written by gdb's `gcore` while the process keeps running.
fn gcore(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = start(&interp);
    let tids = reported_tids(&target);
    let core = target.scratch.host.join("gcore");
    let mut cmd = Command::new("gcore");
    cmd.arg("-o").arg(&core).arg(target.pid().to_string());
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "gcore failed: {}", text(&out.stderr));
    let core = format!("{}.{}", core.display(), target.pid());
    let dump = dump_json(&["dump", "--locals", "--json", "--core", &core]);
    assert_eq!(dump["source"], "core");
    assert_eq!(dump["pid"].as_i64(), Some(target.pid().into()));
    check_named_threads(&interp, &dump, &tids, false);
    // gcore ran outside the target's root, so the core's paths already hold the root: with
    // --sysroot ROOT they are used as they are rather than looked for under ROOT/ROOT.
    let root = interp.root.to_str().expect("utf-8");
    let dump = dump_json(&["dump", "--locals", "--json", "--core", &core, "--sysroot", root]);
    assert_eq!(dump["pid"].as_i64(), Some(target.pid().into()));
    check_named_threads(&interp, &dump, &tids, false);
}

/// The holder of the GIL and a thread waiting for it are told apart from idle threads.
fn gil_states(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = Target::start(&interp, "gil_states.py", &["{ready}"]);
    // The holder says it is ready just before it calls pause(), still holding the GIL: wait
    // until the kernel shows it in pause (x86_64 syscall 34) so that its line is pause()'s.
    let first = dump_json(&["dump", "--json", &target.pid().to_string()]);
    let tid = thread(&first, "holder")["tid"].as_i64().expect("the holder's tid");
    let syscall = format!("/proc/{}/task/{tid}/syscall", target.pid());
    let deadline = std::time::Instant::now() + common::READY_TIMEOUT;
    while std::fs::read_to_string(&syscall).expect("syscall").split_whitespace().next() != Some("34") {
        assert!(std::time::Instant::now() < deadline, "the holder never reached pause()");
        std::thread::yield_now();
    }
    let dump = dump_json(&["dump", "--json", &target.pid().to_string()]);
    let holder = thread(&dump, "holder");
    assert_eq!(holder["state"], "holding_gil", "{holder:#}");
    assert_eq!(holder["holds_gil"], true);
    assert_eq!(holder["frames"][0]["line"].as_i64(), Some(mark("gil_states.py", "holder").into()));
    let waiter = thread(&dump, "waiter");
    assert_eq!(waiter["state"], "waiting_for_gil", "{waiter:#}");
    assert_eq!(waiter["holds_gil"], false);
    assert_eq!(waiter["frames"][0]["line"].as_i64(), Some(mark("gil_states.py", "waiter").into()));
    let holders =
        dump["threads"].as_array().expect("threads").iter().filter(|t| t["holds_gil"] == true).count();
    assert_eq!(holders, 1, "exactly one thread holds the GIL");
}

macro_rules! per_interpreter {
    ($($version:literal => $live:ident, $blocking:ident, $core:ident, $gil:ident;)*) => {
        $(
            #[test]
            fn $gil() { gil_states($version) }
            #[test]
            fn $live() { live($version) }
            #[test]
            fn $blocking() { blocking($version) }
            #[test]
            fn $core() { gcore($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => live_3_9, blocking_3_9, gcore_3_9, gil_3_9;
    "3.11" => live_3_11, blocking_3_11, gcore_3_11, gil_3_11;
    "3.13" => live_3_13, blocking_3_13, gcore_3_13, gil_3_13;
    "3.14" => live_3_14, blocking_3_14, gcore_3_14, gil_3_14;
    "3.14d" => live_3_14d, blocking_3_14d, gcore_3_14d, gil_3_14d;
    "3.15" => live_3_15, blocking_3_15, gcore_3_15, gil_3_15;
}

/// A target in its own mount and PID namespaces, as in a container: no extra flags, and
/// thread ids shown as this machine sees them.
#[test]
fn target_in_other_mount_and_pid_namespaces() {
    let interp = interpreter("3.14").expect("3.14");
    let proc_dir = interp.host_path("/proc");
    let target = Target::start_with(&interp, FIXTURE, &["{ready}"], &[], |cmd| {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut wrapped = Command::new("unshare");
        wrapped
            .arg("--mount")
            .arg("--pid")
            .arg("--fork")
            .arg("--kill-child")
            .arg(format!("--mount-proc={}", proc_dir.display()));
        wrapped.arg(program).args(args);
        wrapped.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        wrapped
            .stderr(std::fs::File::create(std::env::temp_dir().join("pymri-unshare.err")).expect("stderr"));
        *cmd = wrapped;
    });
    // `unshare --fork` runs Python as its only child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", target.pid())).expect("children");
    let python: i32 = children.split_whitespace().next().expect("python child").parse().expect("pid");
    let ns_tids = reported_tids(&target);
    assert_eq!(ns_tids["MainThread"], 1, "Python is pid 1 of its namespace");

    let dump = dump_json(&["dump", "--json", &python.to_string()]);
    for name in ["MainThread", "worker-1", "mapper"] {
        let host_tid = thread(&dump, name)["tid"].as_i64().expect("tid");
        let status = std::fs::read_to_string(format!("/proc/{python}/task/{host_tid}/status"))
            .expect("host tid exists");
        let inner: i64 = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last()?.parse().ok())
            .expect("NSpid");
        assert_eq!(inner, ns_tids[name], "{name}: host tid {host_tid} is the namespace's {}", ns_tids[name]);
    }
    let worker = frame(thread(&dump, "worker-1"), "park_worker");
    assert_eq!(worker["line"].as_i64(), Some(mark(FIXTURE, "worker").into()));
}

/// A cell that contains itself, and instances of classes merely named like builtin types with
/// pointers where the builtins keep sizes: the dump ends normally, each shown for what it is.
fn impostor_objects(name: &str) {
    const IMPOSTORS: &str = "impostor_objects.py";
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = Target::start(&interp, IMPOSTORS, &["{ready}"]);
    let pid = target.pid().to_string();
    let out = pymri(&["dump", "--locals", &pid]);
    assert_eq!(out.status.code(), Some(0), "text dump: {}", text(&out.stderr));
    let dump = dump_json(&["dump", "--locals", "--json", &pid]);
    let park = dump["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == "park")
        .unwrap_or_else(|| panic!("no park frame in {dump:#}"));
    assert_eq!(park["line"].as_i64(), Some(mark(IMPOSTORS, "park").into()));
    let local = |name: &str| park["locals"][name].as_str().unwrap_or_else(|| panic!("no {name} in {park:#}"));
    assert_eq!(local("selfish"), "<cell: <cell: ...>>");
    assert_eq!(local("holds_answer"), "<cell: 42>");
    for type_name in ["cell", "int", "str", "bytes", "list", "tuple", "dict", "set", "float", "bool", "none"]
    {
        let repr = local(&format!("fake_{type_name}"));
        let shown = if type_name == "none" { "NoneType" } else { type_name };
        assert!(repr.starts_with(&format!("<{shown} object at 0x")), "fake_{type_name}: {repr}");
    }
    assert!(local("fakes").starts_with("{'int': <int object at 0x"), "{}", local("fakes"));
}

#[test]
fn dump_locals_survives_a_self_referencing_cell_and_impostor_types_3_11() {
    impostor_objects("3.11")
}

#[test]
fn dump_locals_survives_a_self_referencing_cell_and_impostor_types_3_14() {
    impostor_objects("3.14")
}

/// Classes, functions and coroutines in locals are shown as `repr` names them, on every
/// interpreter: `<class 'module.Qualname'>` (made in Python, nested, with a metaclass, written
/// in C, builtin), `<function Qualname at 0x...>`, `<coroutine object Qualname at 0x...>`.
#[test]
fn classes_functions_and_coroutines_are_named_in_locals() {
    let interpreters = common::interpreters();
    assert!(!interpreters.is_empty(), "no interpreter is provisioned");
    for interp in interpreters {
        let target = Target::start(&interp, "class_reprs.py", &["{ready}"]);
        let dump = dump_json(&["dump", "--locals", "--json", &target.pid().to_string()]);
        let main = thread(&dump, "MainThread");
        let hold = main["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .find(|f| f["function"] == "hold")
            .unwrap_or_else(|| panic!("{}: no frame hold in {main:#}", interp.name));
        let locals = &hold["locals"];
        for (name, repr) in [
            ("session", "<class '__main__.Session'>"),
            ("token", "<class '__main__.Session.Token'>"),
            ("store", "<class '__main__.Store'>"),
            ("ordered", "<class 'collections.OrderedDict'>"),
            ("number", "<class 'int'>"),
        ] {
            assert_eq!(locals[name].as_str(), Some(repr), "{}: {name} in {locals:#}", interp.name);
        }
        for (name, prefix) in [
            ("function", "<function parse at 0x"),
            ("method", "<function Session.Token.renew at 0x"),
            ("coroutine", "<coroutine object Session.fetch at 0x"),
        ] {
            let repr =
                locals[name].as_str().unwrap_or_else(|| panic!("{}: no {name} in {locals:#}", interp.name));
            let address = repr.strip_prefix(prefix).and_then(|rest| rest.strip_suffix('>'));
            assert!(
                address.is_some_and(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_hexdigit())),
                "{}: {name} is {repr:?}",
                interp.name
            );
        }
    }
}
