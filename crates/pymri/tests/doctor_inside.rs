//! `pymri doctor`'s patterns that need the injected agent (memory_growth, swallowed_exceptions,
//! module_versions, and the thread start sites), against live CPython processes of every
//! provisioned interpreter: what each names, that they are skipped with a note under
//! `--no-inject` or when the target refuses remote debugging, and that no hook of the agent is
//! left in the target afterwards (pymri ending normally or SIGKILLed in the window).

mod common;

use common::{interpreters, mark, pymri, text, Interpreter, Target};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: &str = "doctor/registry_leak.py";
const SWALLOWED: &str = "doctor/swallowed.py";
const VERSIONS: &str = "doctor/versions.py";

fn start(interp: &Interpreter, fixture: &str) -> Target {
    Target::start(interp, fixture, &["{ready}", "{control}"])
}

/// `pymri doctor PID --json ARGS`: the report, after checking the exit status.
fn doctor(target: &Target, args: &[&str]) -> Value {
    let pid = target.pid().to_string();
    let mut all = vec!["doctor", pid.as_str(), "--json", "--duration", "1.5"];
    all.extend_from_slice(args);
    let out = pymri(&all);
    let name = &target.interp.name;
    assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}: {}", text(&out.stdout)))
}

fn findings<'a>(report: &'a Value, pattern: &str) -> Vec<&'a Value> {
    report["findings"].as_array().expect("findings").iter().filter(|f| f["pattern"] == pattern).collect()
}

fn rows(finding: &Value) -> Vec<Vec<String>> {
    finding["table"]["rows"]
        .as_array()
        .expect("table rows")
        .iter()
        .map(|r| r.as_array().expect("row").iter().map(|c| c.as_str().expect("cell").to_string()).collect())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The doctor's hooks that `pymri exec` finds in the target: `threading.Thread.start` not
/// threading's own, a sys.monitoring tool of the trace machinery, threading's trace hook or a
/// frame's trace function from the agent's tracing module, the agent's size-reading thread.
const HOOKS_LEFT: &str = r#"
import json, sys, threading
left = []
if threading.Thread.__dict__["start"].__code__.co_filename != threading.__file__:
    left.append("Thread.start")
m = getattr(sys, "monitoring", None)
if m is not None:
    left += ["tool %d: %s" % (i, m.get_tool(i)) for i in range(6) if m.get_tool(i) == "pymri-trace"]
def agents(fn):
    return "pymri_agent" in getattr(getattr(fn, "__code__", None), "co_filename", "") and "tracing" in fn.__code__.co_filename
if agents(getattr(threading, "_trace_hook", None)):
    left.append("threading trace hook")
for f in sys._current_frames().values():
    while f is not None:
        if agents(f.f_trace):
            left.append("frame %s" % f.f_code.co_name)
        f = f.f_back
left += ["thread " + t.name for t in threading.enumerate() if t.name == "pymri-doctor"]
print(json.dumps(left))
"#;

fn hooks_left(target: &Target) -> Vec<String> {
    let out = pymri(&["exec", &target.pid().to_string(), "-c", HOOKS_LEFT]);
    let name = &target.interp.name;
    assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
    serde_json::from_str::<Vec<String>>(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{name}: {e}: {}", text(&out.stdout)))
}

/// Not stopped, not traced, and still answering.
fn left_running(target: &mut Target, command: &str) -> String {
    let name = target.interp.name.clone();
    assert!(!target.any_thread_stopped(), "{name}: a thread was left stopped");
    assert_eq!(target.tracer_pid(), 0, "{name}: still traced");
    target.ask(command)
}

#[test]
fn registry_leak_names_the_growing_container_and_the_type_of_its_entries() {
    for interp in interpreters() {
        let mut target = start(&interp, REGISTRY);
        let name = &interp.name;
        let before: u64 = target.ask("size").parse().expect("size");
        let report = doctor(&target, &[]);
        let memory = findings(&report, "memory_growth");
        assert_eq!(memory.len(), 1, "{name}: {report:#}");
        let f = memory[0];
        assert_eq!(f["severity"], "warning", "{name}: {f:#}");
        let summary = f["summary"].as_str().expect("summary");
        assert!(
            summary.starts_with("registry_leak.Registry._entries grows steadily: +"),
            "{name}: {summary}"
        );
        assert!(summary.contains("entries of registry_leak.Session"), "{name}: {summary}");
        let notes = strings(&f["notes"]);
        assert!(
            notes.iter().any(|n| n.starts_with("registry_leak.Registry._entries (dict): ")
                && n.ends_with("entries of registry_leak.Session")),
            "{name}: {notes:?}"
        );
        // The balanced cache beside it does not grow.
        assert!(!notes.iter().any(|n| n.contains("_recent")), "{name}: {notes:?}");
        let series: Vec<&Value> = f["series"].as_array().expect("series").iter().collect();
        assert_eq!(series[0]["name"], "resident memory", "{name}");
        let entries = series.iter().find(|s| s["name"] == "registry_leak.Registry._entries").expect("series");
        let points = entries["points"].as_array().expect("points");
        assert!(points.len() >= 3, "{name}: {entries}");
        let counts: Vec<f64> = points.iter().map(|p| p[1].as_f64().expect("count")).collect();
        assert!(
            counts.windows(2).all(|w| w[1] >= w[0]) && counts[counts.len() - 1] > counts[0],
            "{name}: {counts:?}"
        );
        // The census by type, with Session among the growing types.
        let census = rows(f);
        let session = census
            .iter()
            .find(|r| r[0] == "registry_leak.Session")
            .unwrap_or_else(|| panic!("{name}: {census:?}"));
        let growth: i64 = session[3].parse().expect("count growth");
        assert!(growth > 20, "{name}: {session:?}");
        assert!(!census.iter().any(|r| r[0].starts_with("pymri_agent.")), "{name}: {census:?}");
        // No other alarm on this program.
        assert!(findings(&report, "swallowed_exceptions").is_empty(), "{name}: {report:#}");
        // Before 3.12 counting exceptions costs every call: only when asked for.
        let skipped = skipped(&report);
        if minor(&interp) < 12 {
            assert_eq!(skipped.len(), 1, "{name}: {skipped:?}");
            assert!(
                skipped[0].starts_with("swallowed_exceptions: on Python 3.")
                    && skipped[0].ends_with("ask for it with --only swallowed_exceptions"),
                "{name}: {skipped:?}"
            );
        } else {
            assert!(skipped.is_empty(), "{name}: {skipped:?}");
        }
        let after: u64 = left_running(&mut target, "size").parse().expect("size");
        assert!(after > before, "{name}: the program stopped registering");
        assert_eq!(hooks_left(&target), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn swallowed_exceptions_name_the_raise_and_the_handler_lines_with_their_rate() {
    for interp in interpreters() {
        let mut target = start(&interp, SWALLOWED);
        let name = &interp.name;
        let script = target.script_path("swallowed.py");
        let report = doctor(&target, &["--only", "swallowed_exceptions,memory_growth"]);
        let swallowed = findings(&report, "swallowed_exceptions");
        assert_eq!(swallowed.len(), 1, "{name}: {report:#}");
        let f = swallowed[0];
        assert_eq!(f["severity"], "warning", "{name}: {f:#}");
        let table = rows(f);
        let raised = format!("lookup ({script}:{})", mark(SWALLOWED, "raise"));
        let handled = format!("lookup ({script}:{})", mark(SWALLOWED, "handler"));
        let row = table.iter().find(|r| r[2] == "KeyError").unwrap_or_else(|| panic!("{name}: {table:?}"));
        assert_eq!((&row[3], &row[4]), (&raised, &handled), "{name}: {row:?}");
        let rate: f64 = row[0].parse().expect("rate");
        // About 100 a second; a loaded machine slows the loop, not below the threshold.
        assert!((10.0..=150.0).contains(&rate), "{name}: {row:?}");
        assert_eq!(
            strings(&f["next"]),
            [format!("pymri trace {} --exceptions --type KeyError --duration 5", target.pid())],
            "{name}"
        );
        // Only the program's own: threading's probes for optional methods are not listed.
        assert!(table.iter().all(|r| r[3].contains(&script)), "{name}: {table:?}");
        // --only memory_growth: the census alone, as Info.
        let memory = findings(&report, "memory_growth");
        assert_eq!(memory.len(), 1, "{name}: {report:#}");
        assert_eq!(memory[0]["severity"], "info", "{name}");
        assert!(findings(&report, "module_versions").is_empty(), "{name}: --only");
        let hooks: Value = serde_json::from_str(&left_running(&mut target, "hooks")).expect("hooks JSON");
        assert_eq!(hooks["main"], "None", "{name}: {hooks}");
        assert_eq!(hooks["threading_trace"], "None", "{name}: {hooks}");
        assert!(hooks["tools"].as_array().is_none_or(|t| t.iter().all(Value::is_null)), "{name}: {hooks}");
        assert_eq!(hooks_left(&target), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn versions_with_expect_name_the_package_that_is_not_the_one_pinned() {
    for interp in interpreters() {
        let mut target = start(&interp, VERSIONS);
        let name = &interp.name;
        let script = target.script_path("versions.py");
        let requirements = target.scratch.host.join("requirements.txt");
        std::fs::write(&requirements, "# pins\npymri_demo_pkg==1.2.4\nsomething-else==9.9\n").expect("write");
        let expect = requirements.display().to_string();
        let report = doctor(&target, &["--expect", &expect]);
        let versions = findings(&report, "module_versions");
        let warnings: Vec<&&Value> = versions.iter().filter(|f| f["severity"] == "warning").collect();
        assert_eq!(warnings.len(), 1, "{name}: {report:#}");
        assert_eq!(
            warnings[0]["summary"],
            format!("not my version: pymri-demo-pkg 1.2.3 is loaded, {expect} expects pymri_demo_pkg==1.2.4"),
            "{name}"
        );
        let notes = strings(&warnings[0]["notes"]);
        assert_eq!(
            notes[0],
            format!("pymri_demo_pkg is loaded from {}/pymri_demo_pkg/__init__.py", target.scratch.inside),
            "{name}"
        );
        let info = versions.iter().find(|f| f["severity"] == "info").expect("the Info finding");
        let table = rows(info);
        assert!(
            table.iter().any(|r| r[0] == "pymri-demo-pkg" && r[1] == "1.2.3" && r[2] == "pymri_demo_pkg"),
            "{name}: {table:?}"
        );
        // The interpreter's binary, with the build id read from outside.
        let binary = interp.exe.rsplit('/').next().expect("binary name");
        assert!(
            table.iter().any(|r| r[0] == binary && r[1].starts_with("build id ") && r[2] == "(native)"),
            "{name}: {table:?}"
        );
        // The thread start sites: the spawner's line, and what the threads run.
        let starts = report["thread_starts"].as_array().unwrap_or_else(|| panic!("{name}: {report:#}"));
        let site = starts
            .iter()
            .find(|s| s["function"] == "spawn_worker")
            .unwrap_or_else(|| panic!("{name}: {starts:?}"));
        assert_eq!(site["file"], script.as_str(), "{name}");
        assert_eq!(site["line"], mark(VERSIONS, "start"), "{name}");
        assert_eq!(site["target"], "__main__.work", "{name}");
        assert!(site["count"].as_u64().expect("count") >= 5, "{name}: {site}");

        // The pin that matches: no warning; and this busy little program alarms nothing else
        // (threading's own exceptions while starting threads are not "swallowed").
        std::fs::write(&requirements, "pymri-demo-pkg == 1.2.3\n").expect("write");
        let report = doctor(&target, &["--expect", &expect]);
        let alarms: Vec<&Value> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["severity"] != "info")
            .collect();
        assert!(alarms.is_empty(), "{name}: {alarms:#?}");
        assert_eq!(left_running(&mut target, "ping"), "pong", "{name}");
        assert_eq!(hooks_left(&target), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn a_bad_expect_file_is_a_usage_error_and_leaves_the_target_alone() {
    let interp = &interpreters()[0];
    let target = start(interp, VERSIONS);
    let empty = target.scratch.host.join("empty.txt");
    std::fs::write(&empty, "# nothing pinned\n").expect("write");
    for file in [empty.display().to_string(), "/nonexistent/requirements.txt".to_string()] {
        let out = pymri(&["doctor", &target.pid().to_string(), "--expect", &file]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with(&format!("error: --expect {file}: ")), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

fn minor(interp: &Interpreter) -> u32 {
    interp.name.trim_end_matches('d').strip_prefix("3.").and_then(|m| m.parse().ok()).expect("3.N")
}

fn skipped(report: &Value) -> Vec<String> {
    strings(&report["skipped"])
}

#[test]
fn no_inject_skips_what_needs_the_agent_with_a_note() {
    for interp in interpreters() {
        let mut target = start(&interp, SWALLOWED);
        let name = &interp.name;
        let report = doctor(&target, &["--no-inject"]);
        let skipped = skipped(&report);
        assert_eq!(skipped.len(), 4, "{name}: {skipped:?}");
        for (line, pattern) in
            skipped.iter().zip(["memory_growth", "swallowed_exceptions", "module_versions", "thread_leak"])
        {
            assert!(
                line.starts_with(pattern) && line.ends_with("needs code inside the target, and --no-inject"),
                "{name}: {line}"
            );
        }
        assert!(findings(&report, "swallowed_exceptions").is_empty(), "{name}: {report:#}");
        assert!(report.get("thread_starts").is_none(), "{name}");
        // What is read from outside still is: the native libraries.
        let versions = findings(&report, "module_versions");
        assert_eq!(versions.len(), 1, "{name}: {report:#}");
        assert!(rows(versions[0]).iter().all(|r| r[2] == "(native)"), "{name}: {:?}", rows(versions[0]));
        left_running(&mut target, "lookups");
    }
}

#[test]
fn a_target_refusing_remote_debugging_is_examined_from_outside_only() {
    let mut seen = 0;
    let minor =
        |i: &Interpreter| i.name.trim_end_matches('d').strip_prefix("3.").and_then(|m| m.parse::<u32>().ok());
    for interp in interpreters().into_iter().filter(|i| minor(i).is_some_and(|m| m >= 14)) {
        seen += 1;
        let mut target = Target::start_with(&interp, SWALLOWED, &["{ready}", "{control}"], &[], |c| {
            c.env("PYTHON_DISABLE_REMOTE_DEBUG", "1");
        });
        let name = &interp.name;
        let report = doctor(&target, &[]);
        let skipped = skipped(&report);
        assert_eq!(skipped.len(), 4, "{name}: {skipped:?}");
        assert!(
            skipped.iter().all(|s| s.ends_with("and the target refuses remote debugging (-X disable-remote-debug or PYTHON_DISABLE_REMOTE_DEBUG)")),
            "{name}: {skipped:?}"
        );
        assert!(findings(&report, "swallowed_exceptions").is_empty(), "{name}");
        assert_eq!(findings(&report, "module_versions").len(), 1, "{name}: native libraries still");
        left_running(&mut target, "lookups");
    }
    assert!(seen >= 2, "3.14 and 3.15 must be provisioned");
}

#[test]
fn pymri_killed_in_the_window_leaves_no_hook() {
    for interp in interpreters() {
        let mut target = start(&interp, SWALLOWED);
        let name = interp.name.clone();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pymri"))
            .args(["doctor", &target.pid().to_string(), "--duration", "60", "--only", "swallowed_exceptions"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pymri");
        // The window is open once the exception hooks are in: the main thread's trace function
        // (3.9-3.11) or the trace machinery's sys.monitoring tool (3.12+).
        let hooked = |h: &Value| {
            h["main"] != "None" || h["tools"].as_array().is_some_and(|t| t.iter().any(|x| x == "pymri-trace"))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h: Value = serde_json::from_str(&target.ask("hooks")).expect("hooks JSON");
            if hooked(&h) {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: the doctor's hooks never appeared: {h}");
            assert!(child.try_wait().expect("wait").is_none(), "{name}: pymri ended early");
        }
        child.kill().expect("kill pymri");
        child.wait().expect("reap pymri");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h: Value = serde_json::from_str(&left_running(&mut target, "hooks")).expect("hooks JSON");
            if h["main"] == "None" && h["threading_trace"] == "None" && !hooked(&h) {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: hooks left after pymri died: {h}");
        }
        assert_eq!(hooks_left(&target), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn a_process_where_no_thread_runs_python_code_is_examined_from_outside_after_a_short_wait() {
    // One interpreter per way in (a pending call before 3.14, PEP 768 from 3.14): the fixture
    // keeps a CPU busy in native code for as long as it lives.
    for interp in interpreters().into_iter().filter(|i| i.name == "3.11" || i.name == "3.14") {
        let target = Target::start(&interp, "thread_states.py", &["{ready}"]);
        let name = &interp.name;
        let started = Instant::now();
        let out = pymri(&["doctor", &target.pid().to_string(), "--json", "--duration", "1"]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let skipped = skipped(&report);
        let why = "the agent did not start within 3 s (no thread ran Python code: a blocked or deadlocked process cannot take it)";
        assert!(!skipped.is_empty() && skipped.iter().all(|s| s.ends_with(why)), "{name}: {skipped:?}");
        // The window itself was watched from outside.
        assert!(report["samples"].as_u64().expect("samples") > 10, "{name}: {report:#}");
        assert!(took < Duration::from_secs(20), "{name}: {took:?}");
    }
}
