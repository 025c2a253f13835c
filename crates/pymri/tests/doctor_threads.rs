//! `pymri doctor` against real interpreters: the patterns read from outside the target
//! (spiking_thread, blocked_threads, thread_leak, fd_leak, gil_contention) on the scenarios'
//! fixtures, and a healthy service that must get no alarming finding.

mod common;

use common::{interpreter, mark, pymri, reported_tids, text, Interpreter, Target};
use serde_json::Value;

fn interp(name: &str) -> Interpreter {
    interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned (PYMRI_INTERPRETERS)"))
}

/// Runs `pymri doctor --json` on the target for `seconds`, and checks the target runs on,
/// neither stopped nor traced.
fn doctor(target: &mut Target, seconds: &str) -> Value {
    doctor_with(target, seconds, &[])
}

fn doctor_with(target: &mut Target, seconds: &str, more: &[&str]) -> Value {
    let pid = target.pid().to_string();
    let mut args = vec!["doctor", pid.as_str(), "-d", seconds, "--json"];
    args.extend(more);
    let out = pymri(&args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{}: stdout:\n{stdout}\nstderr:\n{stderr}", target.interp.name);
    assert!(target.is_alive(), "{}: the target died", target.interp.name);
    assert!(!target.any_thread_stopped(), "{}: a thread of the target was left stopped", target.interp.name);
    assert_eq!(target.tracer_pid(), 0, "{}: the target was left traced", target.interp.name);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["schema"], 1);
    assert_eq!(report["pid"], target.pid());
    report
}

fn findings<'a>(report: &'a Value, pattern: &str) -> Vec<&'a Value> {
    report["findings"].as_array().expect("findings").iter().filter(|f| f["pattern"] == pattern).collect()
}

fn one<'a>(report: &'a Value, pattern: &str, severity: &str) -> &'a Value {
    let found: Vec<_> = findings(report, pattern).into_iter().filter(|f| f["severity"] == severity).collect();
    assert_eq!(found.len(), 1, "one {severity} {pattern} finding in {report:#}");
    found[0]
}

fn thread<'a>(finding: &'a Value, name: &str) -> &'a Value {
    finding["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread {name} in {finding:#}"))
}

fn names(finding: &Value) -> Vec<&str> {
    let mut names: Vec<&str> =
        finding["threads"].as_array().expect("threads").iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    names
}

/// The wait of the thread with that ident.
fn wait(finding: &Value, ident: &Value) -> Value {
    finding["waits"]
        .as_array()
        .expect("waits")
        .iter()
        .find(|w| &w["ident"] == ident)
        .cloned()
        .unwrap_or_else(|| panic!("no wait for {ident} in {finding:#}"))
}

/// The frame of `function` (a suffix: 3.11+ qualifies names) in the thread's evidence.
fn frame<'a>(thread: &'a Value, function: &str) -> &'a Value {
    thread["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| {
            f["function"].as_str().is_some_and(|n| n == function || n.ends_with(&format!(".{function}")))
        })
        .unwrap_or_else(|| panic!("no frame {function} in {thread:#}"))
}

fn local<'a>(frame: &'a Value, name: &str) -> Option<&'a str> {
    frame["locals"].as_array()?.iter().find(|l| l[0] == name)?[1].as_str()
}

fn spiking(version: &str) {
    const FIXTURE: &str = "doctor/spiking_thread.py";
    let mut target = Target::start(&interp(version), FIXTURE, &["{ready}"]);
    let tids = reported_tids(&target);
    let report = doctor(&mut target, "2");

    let spike = one(&report, "spiking_thread", "warning");
    assert_eq!(names(spike), ["worker-1"], "only the spiking thread: {spike:#}");
    let t = thread(spike, "worker-1");
    assert_eq!(t["tid"].as_i64(), Some(tids["worker-1"]));
    let hot = &t["frames"][0];
    assert_eq!(hot["function"], "bar", "the hot frame first: {t:#}");
    assert_eq!(hot["line"].as_i64(), Some(mark(FIXTURE, "hot").into()));
    assert!(hot["source"].as_str().is_some_and(|s| s.contains("math.sqrt(x + 2.0)")), "{hot:#}");
    assert_eq!(local(hot, "spike"), Some("True"), "{hot:#}");
    assert_eq!(local(frame(t, "thread_func"), "spike"), Some("True"), "{t:#}");

    // The others: two sleepers, and the main thread joining worker-0.
    let idle = one(&report, "blocked_threads", "info");
    let main = thread(idle, "MainThread");
    let joined = thread(idle, "worker-0");
    let w = wait(idle, &main["ident"]);
    assert_eq!(w["kind"], "join", "{idle:#}");
    assert_eq!(w["joins"], joined["ident"], "main joins worker-0: {idle:#}");
    assert!(w["seconds"].as_f64().is_some_and(|s| s > 1.0), "{w:#}");
    assert_eq!(frame(main, "main")["line"].as_i64(), Some(mark(FIXTURE, "join").into()));
    for name in ["worker-0", "worker-2"] {
        let sleeper = thread(idle, name);
        assert_eq!(wait(idle, &sleeper["ident"])["kind"], "sleep", "{name}: {idle:#}");
        assert_eq!(sleeper["frames"][0]["line"].as_i64(), Some(mark(FIXTURE, "sleep").into()));
    }
    assert!(!names(idle).contains(&"worker-1"), "the spiking thread progresses: {idle:#}");
}

fn stuck_pool(version: &str) {
    const FIXTURE: &str = "doctor/stuck_pool.py";
    let mut target = Target::start(&interp(version), FIXTURE, &["{ready}"]);
    let tids = reported_tids(&target);
    let report = doctor(&mut target, "2");

    let stuck = one(&report, "blocked_threads", "warning");
    assert_eq!(names(stuck), ["worker-1", "worker-2"], "{stuck:#}");
    let summary = stuck["summary"].as_str().expect("summary");
    assert!(summary.contains("stuck pool") && summary.contains("self._idle"), "{summary}");
    for name in ["worker-1", "worker-2"] {
        let t = thread(stuck, name);
        assert_eq!(t["tid"].as_i64(), Some(tids[name]));
        let w = wait(stuck, &t["ident"]);
        assert_eq!((w["kind"].as_str(), w["on"].as_str()), (Some("queue"), Some("self._idle")), "{w:#}");
        assert_eq!(w["for_work"], false);
        let acquire = frame(t, "acquire");
        assert_eq!(acquire["line"].as_i64(), Some(mark(FIXTURE, "acquire").into()));
        assert_eq!(acquire["source"], "return self._idle.get()  # @mark acquire");
        assert_eq!(frame(t, "handle")["line"].as_i64(), Some(mark(FIXTURE, "handle").into()));
    }
    // The holder of the connection waits on an event: idle, listed as such, not stuck.
    let idle = one(&report, "blocked_threads", "info");
    let reporter = thread(idle, "reporter");
    assert_eq!(wait(idle, &reporter["ident"])["kind"], "event", "{idle:#}");
    assert_eq!(frame(reporter, "reporter")["line"].as_i64(), Some(mark(FIXTURE, "reporter").into()));
}

fn thread_leak(version: &str) {
    const FIXTURE: &str = "doctor/thread_leak.py";
    let mut target = Target::start(&interp(version), FIXTURE, &["{ready}"]);
    let report = doctor(&mut target, "2");

    let leak = one(&report, "thread_leak", "warning");
    let series = &leak["series"][0];
    assert_eq!(series["name"], "threads");
    let points = series["points"].as_array().expect("points");
    let (first, last) = (points[0][1].as_f64().unwrap(), points[points.len() - 1][1].as_f64().unwrap());
    assert!(last >= first + 5.0, "{series:#}");
    let runs = &leak["counts"][0];
    assert_eq!(runs["by"], "function");
    assert_eq!(runs["value"], "serve_client", "{leak:#}");
    assert!(runs["count"].as_u64().is_some_and(|n| n >= 5), "{runs:#}");
    let group = &leak["threads"][0];
    assert!(group["name"].as_str().is_some_and(|n| n.starts_with("client-")), "{group:#}");
    let wait = frame(group, "serve_client");
    assert_eq!(wait["line"].as_i64(), Some(mark(FIXTURE, "wait").into()));
    assert_eq!(wait["source"], "forever.wait()  # @mark wait");
    assert!(findings(&report, "fd_leak").is_empty(), "{report:#}");
}

fn fd_leak(version: &str) {
    const FIXTURE: &str = "doctor/fd_leak.py";
    let mut target = Target::start(&interp(version), FIXTURE, &["{ready}"]);
    let port = serde_json::from_str::<Value>(&target.ready_line).expect("ready line")["port"].clone();
    let report = doctor(&mut target, "2");

    let leak = one(&report, "fd_leak", "warning");
    let count = |by: &str, value: &dyn Fn(&str) -> bool| {
        leak["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .find(|c| c["by"] == by && c["value"].as_str().is_some_and(value))
            .and_then(|c| c["count"].as_u64())
            .unwrap_or_else(|| panic!("no count by {by} in {leak:#}"))
    };
    let files = count("type", &|v| v == "file");
    let sockets = count("type", &|v| v == "socket");
    assert!(files >= 10 && sockets >= 5, "{leak:#}");
    assert_eq!(
        count("path", &|v| v.ends_with("/fd_leak.py")),
        files,
        "every new file is the fixture: {leak:#}"
    );
    assert_eq!(count("peer", &|v| v == format!("127.0.0.1:{port}")), sockets, "{leak:#}");
    assert_eq!(leak["series"][0]["name"], "fds");
    assert!(findings(&report, "thread_leak").is_empty(), "{report:#}");
}

fn gil(version: &str) {
    let mut target = Target::start(&interp(version), "thread_states.py", &["{ready}"]);
    let tids: serde_json::Map<String, Value> =
        serde_json::from_str(&target.ready.line(std::time::Duration::from_secs(10)).expect("tids"))
            .expect("tids line");
    // No thread of this target ever runs Python code: the agent could not start in it, and the
    // wait for it would only delay the window.
    let report = doctor_with(&mut target, "2", &["--no-inject"]);

    let gil = one(&report, "gil_contention", "warning");
    let holder = thread(gil, "MainThread");
    assert_eq!(holder["role"], "holds");
    assert_eq!(holder["tid"], tids["MainThread"]);
    for name in ["waiter-1", "waiter-2"] {
        let t = thread(gil, name);
        assert_eq!((t["role"].as_str(), &t["tid"]), (Some("waits"), &tids[name]), "{gil:#}");
    }
    let waiting: Vec<&str> = gil["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "waits")
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(waiting.len(), 2, "only the waiters wait for the GIL: {gil:#}");
}

fn healthy(version: &str) {
    const FIXTURE: &str = "doctor/healthy.py";
    let mut target = Target::start(&interp(version), FIXTURE, &["{ready}"]);
    let report = doctor(&mut target, "2");
    for f in report["findings"].as_array().expect("findings") {
        assert_eq!(f["severity"], "info", "nothing alarming in a healthy service: {f:#}");
    }
    // Whatever is listed idle is idle the ordinary way, and classified right.
    for f in findings(&report, "blocked_threads") {
        for t in f["threads"].as_array().unwrap() {
            let w = wait(f, &t["ident"]);
            match t["name"].as_str().unwrap_or_default() {
                "timer" | "MainThread" => assert_eq!(w["kind"], "sleep", "{f:#}"),
                "echo" => {
                    assert_eq!(w["kind"], "io", "{f:#}");
                    assert!(w["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{w:#}");
                }
                name if name.starts_with("worker-") => assert_eq!(w["for_work"], true, "{f:#}"),
                _ => {}
            }
        }
    }
}

macro_rules! per_interpreter {
    ($($check:ident),* $(,)?) => {
        $(
            mod $check {
                #[test]
                fn py3_9() { super::$check("3.9") }
                #[test]
                fn py3_11() { super::$check("3.11") }
                #[test]
                fn py3_14() { super::$check("3.14") }
                #[test]
                fn py3_15() { super::$check("3.15") }
            }
        )*
    };
}

per_interpreter!(spiking, stuck_pool, thread_leak, fd_leak, gil, healthy);

/// `--html`: one page, nothing loaded from elsewhere, every name from the target inert.
#[test]
fn html_page_is_self_contained_and_escaped() {
    let mut target = Target::start(&interp("3.11"), "hostile_names.py", &["{ready}", "arg"]);
    let scratch = common::Scratch::new(&target.interp);
    let page_path = scratch.host.join("report.html");
    let page_arg = page_path.to_str().expect("path");
    let pid = target.pid().to_string();
    let out = pymri(&["doctor", &pid, "-d", "1", "--html", page_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(target.is_alive() && !target.any_thread_stopped());
    let page = std::fs::read_to_string(&page_path).expect("the page");
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"), "{page}");
    for part in ["<h2>Findings</h2>", "<h2>Threads</h2>", "<h2>Counters</h2>", "<polyline", "samples, "] {
        assert!(page.contains(part), "{part} missing from the page");
    }
    for external in [" src=", "<link", "@import", "<iframe", "<img"] {
        assert!(!page.contains(external), "{external} in the page");
    }
    assert_eq!(
        page.matches("url(").count(),
        page.matches("url(#").count(),
        "only references within the page"
    );
    assert!(!page.contains(['\u{1b}', '\u{7}', '\u{202e}']), "a raw escape reached the page");
    assert!(page.contains("hostile\\x1b]0;pwned"), "the hostile thread's name, escaped");
    assert!(page.contains("&lt;module&gt;") && !page.contains("<module>"), "markup in names is escaped");

    // A page that cannot be written fails before the window, with the output error's status.
    let out = pymri(&["doctor", &pid, "-d", "1", "--html", "/nonexistent-dir/report.html"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: cannot write /nonexistent-dir/report.html"),
        "{}",
        text(&out.stderr)
    );
}

/// `--core`: what one instant allows. The stuck pool's threads are classified from their
/// frames and source lines (read under --sysroot), with no durations and no stuck-pool warning
/// (an instant cannot tell a stuck pool from one between two jobs).
fn core(version: &str) {
    const FIXTURE: &str = "doctor/stuck_pool.py";
    let target = Target::start(&interp(version), FIXTURE, &["{ready}"]);
    let core = target.scratch.host.join("core");
    let mut cmd = std::process::Command::new("gcore");
    cmd.arg("-o").arg(&core).arg(target.pid().to_string());
    let out = common::run_with_deadline(cmd, std::time::Duration::from_secs(120));
    assert!(out.status.success(), "gcore failed: {}", text(&out.stderr));
    let core = format!("{}.{}", core.display(), target.pid());
    let root = target.interp.root.to_str().expect("utf-8");
    let out = pymri(&["doctor", "--core", &core, "--sysroot", root, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_str(&text(&out.stdout)).expect("json");
    assert_eq!(
        (report["source"].as_str(), report["pid"].as_i64()),
        (Some("core"), Some(target.pid().into()))
    );
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(1), "{report:#}");
    let waiting = one(&report, "blocked_threads", "info");
    assert_eq!(names(waiting), ["MainThread", "reporter", "worker-1", "worker-2"], "{waiting:#}");
    for name in ["worker-1", "worker-2"] {
        let t = thread(waiting, name);
        let w = wait(waiting, &t["ident"]);
        assert_eq!((w["kind"].as_str(), w["on"].as_str()), (Some("queue"), Some("self._idle")), "{w:#}");
        assert_eq!(w["seconds"], 0.0);
        assert!(w.get("syscall").is_none(), "no kernel state in a core: {w:#}");
        assert_eq!(frame(t, "acquire")["source"], "return self._idle.get()  # @mark acquire");
    }
}

mod core {
    #[test]
    fn py3_11() {
        super::core("3.11")
    }
    #[test]
    fn py3_14() {
        super::core("3.14")
    }
}
