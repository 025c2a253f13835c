//! `pymri ps` against real interpreters, in roots and on the host.

mod common;

use common::{interpreter, pymri, text, Target};
use serde_json::Value;

fn entry(list: &Value, pid: i32) -> &Value {
    list.as_array()
        .expect("array")
        .iter()
        .find(|e| e["pid"].as_i64() == Some(pid.into()))
        .unwrap_or_else(|| panic!("pid {pid} not listed in {list:#}"))
}

#[test]
fn lists_versions_roots_and_remote_debug_state() {
    let host = interpreter("3.11").expect("3.11");
    let old = interpreter("3.9").expect("3.9");
    let new = interpreter("3.14").expect("3.14");
    let next = interpreter("3.15").expect("3.15");
    let args = ["{ready}"];
    let t311 = Target::start(&host, "named_threads.py", &args);
    let t39 = Target::start(&old, "named_threads.py", &args);
    let t314 = Target::start(&new, "named_threads.py", &args);
    let off_flag =
        Target::start_with(&new, "named_threads.py", &args, &["-X", "disable-remote-debug"], |_| {});
    let off_env = Target::start_with(&new, "named_threads.py", &args, &[], |c| {
        c.env("PYTHON_DISABLE_REMOTE_DEBUG", "1");
    });
    // CPython ignores the underscore spelling: remote debugging stays on.
    let underscore =
        Target::start_with(&new, "named_threads.py", &args, &["-X", "disable_remote_debug"], |_| {});
    let t315_off =
        Target::start_with(&next, "named_threads.py", &args, &["-X", "disable-remote-debug"], |_| {});

    let out = pymri(&["ps", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");

    let e = entry(&list, t311.pid());
    assert!(e["python_version"].as_str().is_some_and(|v| v.starts_with("3.11.")));
    assert_eq!(e["root"], Value::Null);
    assert_eq!(e["remote_debug"], Value::Null);
    assert!(e["command"].as_str().is_some_and(|c| c.contains("named_threads.py")));

    let e = entry(&list, t39.pid());
    assert!(e["python_version"].as_str().is_some_and(|v| v.starts_with("3.9.")));
    assert_eq!(e["root"].as_str(), old.root.to_str());
    assert_eq!(e["remote_debug"], Value::Null);

    for (target, enabled) in
        [(&t314, true), (&off_flag, false), (&off_env, false), (&underscore, true), (&t315_off, false)]
    {
        let e = entry(&list, target.pid());
        assert_eq!(e["root"].as_str(), new.root.to_str());
        assert_eq!(e["remote_debug"], Value::Bool(enabled), "{e:#}");
    }

    let out = pymri(&["ps"]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    assert!(table.starts_with("PID"), "{table}");
    let line = table.lines().find(|l| l.starts_with(&format!("{} ", off_flag.pid()))).expect("row");
    assert!(line.contains(" disabled "), "{line}");
}

/// An unprivileged user sees no row for a root target, and is told how many Python processes
/// were left out and why, with `dump`'s hint (not an empty table and silence).
#[test]
fn unreadable_processes_are_counted_with_the_reason() {
    let host = interpreter("3.11").expect("3.11");
    let target = Target::start(&host, "named_threads.py", &["{ready}"]);
    let attacker = common::attacker();
    for json in [false, true] {
        let mut cmd = attacker.command(env!("CARGO_BIN_EXE_pymri"));
        cmd.arg("ps").args(json.then_some("--json")).stdin(std::process::Stdio::null());
        let out = common::run_with_deadline(cmd, std::time::Duration::from_secs(60));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let stdout = text(&out.stdout);
        if json {
            let list: Value = serde_json::from_str(&stdout).expect("json");
            assert!(list
                .as_array()
                .expect("array")
                .iter()
                .all(|e| e["pid"].as_i64() != Some(target.pid().into())));
        } else {
            assert!(stdout.starts_with("PID"), "{stdout}");
            assert!(!stdout.lines().any(|l| l.starts_with(&format!("{} ", target.pid()))), "{stdout}");
        }
        let warning = stderr
            .lines()
            .find(|l| l.starts_with("warning: ") && l.contains("uid 0"))
            .unwrap_or_else(|| panic!("no warning for root's processes:\n{stderr}"));
        let count: usize = warning["warning: ".len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {warning:?}"));
        let (_, pids) = warning.split_once("permission denied reading pid ").expect("pids");
        let pids: Vec<&str> = pids.split(':').next().expect("list").split(", ").collect();
        assert_eq!(pids.len(), count, "{warning}");
        assert!(pids.contains(&target.pid().to_string().as_str()), "{warning}");
        assert!(warning.ends_with(": the process belongs to uid 0"), "{warning}");
        assert!(stderr.contains("\nhint: run pymri as that user or with sudo"), "{stderr}");
    }
}

/// `ps --json` and `dump --json` name a target's interpreter the same way: as the target sees
/// it, inside its root, with `root` saying where that root is here.
#[test]
fn ps_and_dump_agree_on_paths_in_a_root() {
    for name in ["3.11", "3.13"] {
        let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
        let target = Target::start(&interp, "named_threads.py", &["{ready}"]);
        let out = pymri(&["ps", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let list: Value = serde_json::from_slice(&out.stdout).expect("json");
        let listed = entry(&list, target.pid()).clone();
        let out = pymri(&["dump", "--json", &target.pid().to_string()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dump: Value = serde_json::from_slice(&out.stdout).expect("json");
        let binary = listed["python_binary"].as_str().expect("python_binary");
        assert_eq!(binary, interp.exe.as_str(), "{name}: ps names {listed:#}");
        assert_eq!(dump["python_binary"].as_str(), Some(binary), "{name}");
        let root = interp.in_root().then(|| interp.root.to_str().expect("utf-8"));
        assert_eq!(listed["root"].as_str(), root, "{name}");
        assert_eq!(dump["root"].as_str(), root, "{name}");
    }
}

/// `ps --tree`: a Python child and grandchild are shown under the process that started them,
/// each with its parent; the JSON says where each sits.
#[test]
fn workers_sit_under_their_master() {
    for name in ["3.9", "3.11", "3.14"] {
        let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
        let mut target = Target::start(&interp, "record_family.py", &["{ready}", "{control}"]);
        let reply = target.ask("spawn");
        let (child, grandchild) = reply.split_once(' ').unwrap_or_else(|| panic!("{reply}"));
        let (child, grandchild): (i32, i32) =
            (child.trim().parse().expect("child pid"), grandchild.trim().parse().expect("grandchild pid"));

        let out = pymri(&["ps", "--tree", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let list: Value = serde_json::from_slice(&out.stdout).expect("json");
        let master = entry(&list, target.pid());
        assert_eq!(master["tree"]["depth"], 0, "{master:#}");
        let c = entry(&list, child);
        assert_eq!(c["ppid"].as_i64(), Some(target.pid().into()), "{c:#}");
        assert_eq!(c["tree"]["parent"].as_i64(), Some(target.pid().into()), "{c:#}");
        assert_eq!(c["tree"]["depth"], 1, "{c:#}");
        let g = entry(&list, grandchild);
        assert_eq!(g["tree"]["parent"].as_i64(), Some(child.into()), "{g:#}");
        assert_eq!(g["tree"]["depth"], 2, "{g:#}");
        let order: Vec<i64> =
            list.as_array().expect("array").iter().filter_map(|e| e["pid"].as_i64()).collect();
        let at = |pid: i32| order.iter().position(|&p| p == i64::from(pid)).expect("listed");
        assert!(at(target.pid()) < at(child) && at(child) < at(grandchild), "{order:?}");

        let out = pymri(&["ps", "--tree"]);
        assert!(out.status.success());
        let table = text(&out.stdout);
        assert!(table.starts_with("PID    PPID ") || table.starts_with("PID"), "{table}");
        let row = |pid: i32| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("{pid} ")))
                .unwrap_or_else(|| panic!("{table}"))
                .to_owned()
        };
        assert!(row(child).contains(&format!(" {} ", target.pid())), "{table}");
        assert!(row(child).contains("\\_ "), "{table}");
        assert!(row(grandchild).contains("    \\_ "), "{table}");
        assert!(!row(target.pid()).contains("\\_ "), "{table}");
    }
}
