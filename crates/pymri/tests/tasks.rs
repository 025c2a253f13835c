//! `pymri dump --tasks` against real interpreters: asyncio tasks of a live service and of its
//! core, in the list, tree, table and JSON forms, and an await cycle.

mod common;

use common::{interpreter, mark, pymri, reported_tids, run_with_deadline, text, Interpreter, Target};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const FIXTURE: &str = "asyncio_service.py";
const HOSTILE: &str = "bad\x1b]0;title\x07name";

fn start(interp: &Interpreter, args: &[&str]) -> Target {
    let mut all = vec!["{ready}"];
    all.extend_from_slice(args);
    Target::start(interp, FIXTURE, &all)
}

fn dump_json(args: &[&str]) -> Value {
    let out = pymri(args);
    assert!(out.status.success(), "pymri {args:?} failed: {}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "unexpected stderr: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn dump_text(args: &[&str]) -> String {
    let out = pymri(args);
    assert!(out.status.success(), "pymri {args:?} failed: {}", text(&out.stderr));
    assert!(!out.stdout.contains(&0x1b), "a raw escape reached the terminal");
    text(&out.stdout)
}

fn task<'a>(dump: &'a Value, name: &str) -> &'a Value {
    tasks(dump)
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task named {name:?} in {dump:#}"))
}

fn tasks(dump: &Value) -> &Vec<Value> {
    dump["tasks"].as_array().expect("tasks")
}

/// `(function, line)` of each frame of a task's stack, innermost first; functions without
/// their class (3.9 and 3.10 show plain names).
fn stack(task: &Value) -> Vec<(String, i64)> {
    task["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            let function = f["function"].as_str().expect("function");
            (function.rsplit('.').next().unwrap_or(function).to_string(), f["line"].as_i64().expect("line"))
        })
        .collect()
}

fn at(name: &str) -> i64 {
    mark(FIXTURE, name).into()
}

fn awaiters(dump: &Value, name: &str) -> Vec<String> {
    let mut names: Vec<String> = task(dump, name)["awaited_by"]
        .as_array()
        .expect("awaited_by")
        .iter()
        .map(|id| {
            let t = tasks(dump).iter().find(|t| t["id"] == *id).unwrap_or_else(|| panic!("no task {id}"));
            t["name"].as_str().expect("name").to_string()
        })
        .collect();
    names.sort();
    names
}

/// Everything the fixture guarantees, on one dump of it.
fn check_service(interp: &Interpreter, dump: &Value, loop_thread: i64) {
    let v = interp.name.trim_end_matches('d');
    let groups = v != "3.9" && v != "3.10";
    let mut names: Vec<&str> = tasks(dump).iter().map(|t| t["name"].as_str().expect("name")).collect();
    names.sort_unstable();
    let mut expected =
        vec!["blocker", "consumer", "fetch-alpha", "fetch-beta", "gatherer", "service", "side-main"];
    expected.push(HOSTILE);
    if groups {
        expected.extend(["supervisor", "worker-1", "worker-2"]);
    }
    // 3.14+ take a task off its thread's list once it is done.
    let registered_until_collected = !matches!(v, "3.14" | "3.15");
    if registered_until_collected {
        expected.extend(["finished", "stopped"]);
        assert_eq!(task(dump, "finished")["state"], "done");
        assert_eq!(task(dump, "stopped")["state"], "cancelled");
        assert_eq!(task(dump, "finished")["frames"], serde_json::json!([]));
    }
    expected.sort_unstable();
    assert_eq!(names, expected, "{}: tasks", interp.name);

    for name in ["service", "gatherer", "fetch-alpha", "consumer", "blocker", "side-main", HOSTILE] {
        assert_eq!(task(dump, name)["state"], "pending", "{name}");
        assert!(task(dump, name).get("error").is_none(), "{name}: {:#}", task(dump, name));
    }
    for name in ["fetch-alpha", "fetch-beta"] {
        assert_eq!(stack(task(dump, name)), [("leaf".into(), at("leaf")), ("fetch".into(), at("fetch"))]);
    }
    assert_eq!(stack(task(dump, HOSTILE)), [("leaf".to_string(), at("leaf"))]);
    assert_eq!(stack(task(dump, "gatherer")), [("gatherer".to_string(), at("gather"))]);
    assert_eq!(stack(task(dump, "service")), [("service".to_string(), at("service"))]);
    assert_eq!(stack(task(dump, "side-main")), [("side".to_string(), at("side"))]);
    assert_eq!(stack(task(dump, "blocker")), [("blocker".to_string(), at("blocker"))]);
    // Through the async generator's `asend` into the queue's own coroutine.
    let consumer = stack(task(dump, "consumer"));
    assert_eq!(consumer.len(), 3, "{consumer:?}");
    assert_eq!(consumer[0].0, "get", "{consumer:?}");
    assert_eq!(consumer[1..], [("ticker".into(), at("ticker")), ("consume".into(), at("consume"))]);

    assert_eq!(awaiters(dump, "fetch-alpha"), ["gatherer"]);
    assert_eq!(awaiters(dump, "fetch-beta"), ["gatherer"]);
    assert_eq!(awaiters(dump, "gatherer"), ["service"]);
    assert_eq!(awaiters(dump, "consumer"), ["service"]);
    assert_eq!(awaiters(dump, "blocker"), ["side-main"]);
    assert!(awaiters(dump, "service").is_empty());
    assert!(awaiters(dump, "side-main").is_empty());
    if groups {
        assert_eq!(awaiters(dump, "supervisor"), ["service"]);
        assert_eq!(awaiters(dump, "worker-1"), ["supervisor"]);
        assert_eq!(awaiters(dump, "worker-2"), ["supervisor"]);
        let supervisor = stack(task(dump, "supervisor"));
        assert_eq!(supervisor.last().map(|f| f.0.as_str()), Some("supervise"), "{supervisor:?}");
        assert!(supervisor[0].0.contains("aexit"), "{supervisor:?}");
        assert_eq!(stack(task(dump, "worker-1")), [("work".to_string(), at("work"))]);
    }

    // Only the blocked task is running, on the second loop's thread.
    for t in tasks(dump) {
        if t["name"] == "blocker" {
            assert_eq!(t["running_on"]["tid"].as_i64(), Some(loop_thread), "{t:#}");
        } else {
            assert_eq!(t["running_on"], Value::Null, "{t:#}");
        }
    }
}

fn live(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = start(&interp, &[]);
    let loop_thread = reported_tids(&target)["loop-thread"];
    let pid = target.pid().to_string();

    let dump = dump_json(&["dump", "--tasks", "--json", &pid]);
    check_service(&interp, &dump, loop_thread);
    assert!(!dump["threads"].as_array().expect("threads").is_empty(), "threads are kept in the JSON");
    let id = |name: &str| format!("{:#x}", task(&dump, name)["id"].as_u64().expect("id"));

    // The list: a paragraph per task.
    let script = target.script_path(FIXTURE);
    let shown = dump_text(&["dump", "--tasks", &pid]);
    assert!(
        shown.contains(&format!(
            "\nTask {} (pending): \"fetch-alpha\"\n    awaited by \"gatherer\" ({})\n    leaf ({script}:{})\n    fetch ({script}:{})\n",
            id("fetch-alpha"),
            id("gatherer"),
            at("leaf"),
            at("fetch")
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "\nTask {} (pending): \"blocker\", running on thread {loop_thread}\n",
            id("blocker")
        )),
        "{shown}"
    );
    assert!(shown.contains(r#": "bad\x1b]0;title\x07name""#), "{shown}");

    // The tree: each task under its awaiter, its stack outermost first.
    let tree = dump_text(&["dump", "--tasks=tree", &pid]);
    let lines: Vec<&str> = tree.lines().collect();
    let node = |name: &str| {
        let needle = format!("(T) \"{name}\" ");
        let i = lines.iter().position(|l| l.contains(&needle)).unwrap_or_else(|| panic!("{name}: {tree}"));
        (i, lines[i].chars().take_while(|c| !c.is_alphanumeric() && *c != '(').count())
    };
    for (parent, child) in [("service", "gatherer"), ("gatherer", "fetch-alpha"), ("side-main", "blocker")] {
        let (p, p_indent) = node(parent);
        let (c, c_indent) = node(child);
        assert!(c > p && c_indent == p_indent + 4, "{child} under {parent}:\n{tree}");
    }
    let (alpha, _) = node("fetch-alpha");
    assert!(lines[alpha + 1].ends_with(&format!("fetch ({script}:{})", at("fetch"))), "{tree}");
    assert!(lines[alpha + 2].ends_with(&format!("leaf ({script}:{})", at("leaf"))), "{tree}");

    // The table: a row per task.
    let table = dump_text(&["dump", "--tasks=table", &pid]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&id("blocker")))
        .unwrap_or_else(|| panic!("no blocker row: {table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..5], ["blocker", "pending", &loop_thread.to_string(), "blocker"], "{row}");
    assert!(row.ends_with(&format!("\"side-main\" ({})", id("side-main"))), "{row}");
    let alpha_row = table.lines().find(|l| l.starts_with(&id("fetch-alpha"))).expect("fetch-alpha row");
    assert!(alpha_row.contains(" leaf <- fetch "), "{alpha_row}");
}

/// A core written by `gcore` shows the same tasks.
fn gcore(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = start(&interp, &[]);
    let loop_thread = reported_tids(&target)["loop-thread"];
    let core = target.scratch.host.join("gcore");
    let mut cmd = Command::new("gcore");
    cmd.arg("-o").arg(&core).arg(target.pid().to_string());
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "gcore failed: {}", text(&out.stderr));
    let core = format!("{}.{}", core.display(), target.pid());
    let dump = dump_json(&["dump", "--tasks", "--json", "--core", &core]);
    assert_eq!(dump["source"], "core");
    check_service(&interp, &dump, loop_thread);
}

/// Two tasks awaiting each other: the tree refuses with the cycle named, the other forms show
/// both tasks with their awaiters.
fn cycle(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = start(&interp, &["cycle"]);
    let pid = target.pid().to_string();
    let out = pymri(&["dump", "--tasks=tree", &pid]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: the tasks await each other in a cycle"), "{err}");
    assert!(err.contains("\"chase-a\"") && err.contains("\"chase-b\""), "{err}");
    assert!(err.contains("\nhint: "), "{err}");
    let dump = dump_json(&["dump", "--tasks", "--json", &pid]);
    assert_eq!(awaiters(&dump, "chase-a"), ["chase-b"]);
    assert_eq!(awaiters(&dump, "chase-b"), ["chase-a"]);
    assert_eq!(stack(task(&dump, "chase-a")), [("chase".to_string(), at("chase"))]);
    dump_text(&["dump", "--tasks=table", &pid]);
}

macro_rules! per_interpreter {
    ($($version:literal => $live:ident, $core:ident, $cycle:ident;)*) => {
        $(
            #[test]
            fn $live() { live($version) }
            #[test]
            fn $core() { gcore($version) }
            #[test]
            fn $cycle() { cycle($version) }
        )*
        /// Every provisioned interpreter has its tests above.
        #[test]
        fn every_provisioned_interpreter_is_tested() {
            let covered = [$($version),*];
            for interp in common::interpreters() {
                assert!(covered.contains(&interp.name.as_str()), "no task tests for {}", interp.name);
            }
        }
    };
}

per_interpreter! {
    "3.9" => tasks_live_3_9, tasks_gcore_3_9, tasks_cycle_3_9;
    "3.9d" => tasks_live_3_9d, tasks_gcore_3_9d, tasks_cycle_3_9d;
    "3.11" => tasks_live_3_11, tasks_gcore_3_11, tasks_cycle_3_11;
    "3.13" => tasks_live_3_13, tasks_gcore_3_13, tasks_cycle_3_13;
    "3.14" => tasks_live_3_14, tasks_gcore_3_14, tasks_cycle_3_14;
    "3.14d" => tasks_live_3_14d, tasks_gcore_3_14d, tasks_cycle_3_14d;
    "3.15" => tasks_live_3_15, tasks_gcore_3_15, tasks_cycle_3_15;
}
