//! Process trees: `dump --subprocesses` on a Python process that started Python children.

mod common;

use common::{interpreter, pymri, text, Target};
use serde_json::Value;

#[test]
fn dump_follows_children_and_grandchildren() {
    for name in ["3.9", "3.11", "3.14", "3.15"] {
        let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
        let mut target = Target::start(&interp, "record_family.py", &["{ready}", "{control}"]);
        let reply = target.ask("spawn");
        let (child, grandchild) = reply.split_once(' ').unwrap_or_else(|| panic!("{reply}"));
        let (child, grandchild): (i64, i64) =
            (child.trim().parse().expect("child pid"), grandchild.trim().parse().expect("grandchild pid"));
        let pid = target.pid().to_string();

        let out = pymri(&["dump", &pid, "--subprocesses", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let documents: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
        let pids: Vec<i64> = documents.iter().filter_map(|d| d["pid"].as_i64()).collect();
        assert_eq!(pids, [i64::from(target.pid()), child, grandchild], "{name}");
        let runs = |doc: &Value, function: &str| {
            doc["threads"]
                .as_array()
                .expect("threads")
                .iter()
                .flat_map(|t| t["frames"].as_array().into_iter().flatten())
                .any(|f| f["function"] == function)
        };
        assert!(runs(&documents[0], "spin"), "{:#}", documents[0]);
        assert!(runs(&documents[1], "child_spin"), "{:#}", documents[1]);
        assert!(runs(&documents[2], "grandchild_spin"), "{:#}", documents[2]);

        let out = pymri(&["dump", &pid, "--subprocesses"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dumped = text(&out.stdout);
        let headers: Vec<&str> = dumped.lines().filter(|l| l.starts_with("Process ")).collect();
        assert_eq!(headers.len(), 3, "{dumped}");
        assert!(headers[1].starts_with(&format!("Process {child}:")), "{dumped}");
        assert!(dumped.contains("grandchild_spin"), "{dumped}");

        // Without the flag, only the process itself.
        let out = pymri(&["dump", &pid, "--json"]);
        let one: Value = serde_json::from_slice(&out.stdout).expect("one document");
        assert!(!runs(&one, "child_spin"));
    }
}

/// A job of eight workers where seven wait in `all_reduce` and rank 3 spins in `backward`:
/// `--group` names rank 3 first, with its line, whether the workers are found by `--match`,
/// listed by pid, or reached from the job with `--subprocesses`.
#[test]
fn group_names_the_odd_rank_first() {
    for name in ["3.11", "3.14"] {
        let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
        let tag = format!("group-{}-{name}", std::process::id());
        let target = Target::start(&interp, "ml_job.py", &["{ready}", "8", "3", &tag]);
        let ready: Value = serde_json::from_str(&target.ready_line).expect("ready line");
        let workers: Vec<String> = (0..8)
            .map(|r| ready["workers"][r.to_string()].as_i64().expect("worker pid").to_string())
            .collect();
        let backward = common::mark("ml_job.py", "backward");
        let all_reduce = common::mark("ml_job.py", "all_reduce");

        let check = |args: &[&str], processes: usize| {
            let mut all = vec!["dump", "--group", "--json"];
            all.extend(args);
            let out = pymri(&all);
            assert!(out.status.success(), "{all:?}: {}", text(&out.stderr));
            let g: Value = serde_json::from_slice(&out.stdout).expect("json");
            assert_eq!(g["processes"], processes, "{g:#}");
            let first = &g["groups"][0];
            assert_eq!(first["processes"], 1, "{g:#}");
            assert_eq!(first["frames"][0]["function"], "backward", "{g:#}");
            assert_eq!(first["frames"][0]["line"], backward, "{g:#}");
            assert_eq!(first["members"][0]["pid"].as_i64().map(|p| p.to_string()), Some(workers[3].clone()));
            assert_eq!(first["members"][0]["rank"], "3", "{g:#}");
            let waiting = g["groups"]
                .as_array()
                .expect("groups")
                .iter()
                .find(|grp| grp["frames"][0]["function"] == "all_reduce")
                .unwrap_or_else(|| panic!("{g:#}"));
            assert_eq!(waiting["processes"], 7, "{g:#}");
            assert_eq!(waiting["frames"][0]["line"], all_reduce, "{g:#}");
        };
        let pattern = format!(r"ml_job\.py --worker \d+ \d+ {tag}$");
        check(&["--match", &pattern], 8);
        let mut by_pid: Vec<&str> = workers.iter().map(String::as_str).collect();
        by_pid.rotate_left(5);
        check(&by_pid, 8);

        let pid = target.pid().to_string();
        let out = pymri(&["dump", &pid, "--subprocesses", "--group"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert!(shown.starts_with("9 threads in 9 processes into 3 different stacks"), "{shown}");
        let odd = format!("1 process (pid {}, rank 3), 1 thread: in backward (", workers[3]);
        let waiting = "7 of 9 processes, 7 threads: in all_reduce (";
        let (at_odd, at_waiting) = (shown.find(&odd), shown.find(waiting));
        assert!(at_odd.is_some() && at_waiting.is_some(), "{shown}");
        assert!(at_odd < at_waiting, "{shown}");
    }
}

/// `pymri compare` over `dump --json` reports of two jobs in two roots, standing in for two
/// hosts with the same code deployed at the same path: the odd ranks of both come first, each
/// named by its host and rank; `dump --match` alone writes one report per matching process.
#[test]
fn compare_folds_reports_from_two_hosts() {
    let scratch = std::env::temp_dir().join(format!("pymri-compare-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch");
    let mut expected = Vec::new();
    let mut files = Vec::new();
    let mut jobs = Vec::new();
    let tag = format!("compare-{}", std::process::id());
    for (name, host, odd) in [("3.11", "node-a", 3), ("3.14", "node-b", 5)] {
        let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
        let target = Target::start(&interp, "ml_job.py", &["{ready}", "8", &odd.to_string(), &tag]);
        let ready: Value = serde_json::from_str(&target.ready_line).expect("ready line");
        let pids: Vec<String> =
            (0..8).map(|r| ready["workers"][r.to_string()].as_i64().expect("pid").to_string()).collect();
        expected.push((host, pids[odd].clone(), odd.to_string()));
        let mut args = vec!["dump", "--json"];
        args.extend(pids.iter().map(String::as_str));
        let out = pymri(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        // Another host, the same deployment: the host's name and the script's directory.
        let script_dir = target.script_path("ml_job.py").trim_end_matches("/ml_job.py").to_string();
        let report = text(&out.stdout)
            .replace(&script_dir, "/srv/job")
            .replace(&format!("\"host\": {}", Value::from(host_name())), &format!("\"host\": \"{host}\""));
        let file = scratch.join(format!("{host}.json"));
        std::fs::write(&file, report).expect("write report");
        files.push(file.display().to_string());
        jobs.push(target);
    }
    let mut args = vec!["compare", "--json"];
    args.extend(files.iter().map(String::as_str));
    let out = pymri(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(g["processes"], 16, "{g:#}");
    assert_eq!(g["groups"].as_array().map(Vec::len), Some(2), "{g:#}");
    let first = &g["groups"][0];
    assert_eq!(first["frames"][0]["function"], "backward", "{g:#}");
    assert_eq!(first["frames"][0]["file"], "/srv/job/ml_job.py", "{g:#}");
    let members: Vec<(String, String, String)> = first["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["host"].as_str().unwrap_or_default().to_string(),
                m["pid"].as_i64().unwrap_or_default().to_string(),
                m["rank"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> =
        expected.into_iter().map(|(h, p, r)| (h.to_string(), p, r)).collect();
    assert_eq!(members, expected, "{g:#}");
    assert_eq!(g["groups"][1]["processes"], 14, "{g:#}");

    let out = pymri(&["compare", &files[0], &files[1]]);
    let shown = text(&out.stdout);
    assert!(shown.contains("2 of 16 processes, 2 threads: in backward (/srv/job/ml_job.py:"), "{shown}");
    assert!(shown.contains(&format!("node-b:{} (rank 5) MainThread", members[1].1)), "{shown}");

    // Not a report, an empty file, a missing file.
    let junk = scratch.join("junk.json");
    std::fs::write(&junk, "{\"schema\": 1, \"pid\": 1}").expect("write");
    let out = pymri(&["compare", junk.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a `pymri dump --json` report: no \"threads\" list"),
        "{}",
        text(&out.stderr)
    );
    let empty = scratch.join("empty.json");
    std::fs::write(&empty, "").expect("write");
    assert_eq!(pymri(&["compare", empty.to_str().expect("path")]).status.code(), Some(1));
    assert_eq!(pymri(&["compare", "/nonexistent/report.json"]).status.code(), Some(3));

    // `--match` alone: one report per worker of both jobs.
    let pattern = format!(r"ml_job\.py --worker \d+ \d+ {tag}$");
    let out = pymri(&["dump", "--match", &pattern, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let count = serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>().count();
    assert_eq!(count, 16);
    let out = pymri(&["dump", "--match", "no such program anywhere 5f3a"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    drop(jobs);
    let _ = std::fs::remove_dir_all(&scratch);
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_string()
}
