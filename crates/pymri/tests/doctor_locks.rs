//! `pymri doctor`'s lock patterns against real interpreters: `deadlock` and `orphaned_lock`
//! named with their threads, locks and lines; a lock held inside its `with` block while a
//! thread waits named as neither; the target left running.

mod common;

use common::{interpreter, mark, pymri, text, Interpreter, Target};
use serde_json::Value;
use std::collections::HashMap;

const DEADLOCK: &str = "doctor/deadlock.py";
const ORPHANED: &str = "doctor/orphaned_lock.py";
const HELD: &str = "doctor/lock_held.py";
const INTERPRETERS: [&str; 4] = ["3.9", "3.11", "3.14", "3.15"];

fn interp(name: &str) -> Interpreter {
    interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"))
}

/// Thread name to ident, from the fixture's readiness line.
fn idents(target: &Target) -> HashMap<String, u64> {
    let line: Value = serde_json::from_str(&target.ready_line).expect("JSON readiness line");
    line["threads"]
        .as_object()
        .expect("threads")
        .iter()
        .map(|(name, ids)| (name.clone(), ids[1].as_u64().expect("ident")))
        .collect()
}

/// `pymri doctor PID --json` over a one-second window, looking for the lock patterns only.
fn doctor(target: &Target) -> Value {
    let pid = target.pid().to_string();
    let args = ["doctor", &pid, "--duration", "1", "--json", "--only", "deadlock,orphaned_lock"];
    let out = pymri(&args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "pymri {args:?}: {}\n{stdout}", text(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn left_running(target: &mut Target) {
    assert!(target.is_alive(), "the target exited");
    assert!(!target.any_thread_stopped(), "threads left stopped");
    assert_eq!(target.tracer_pid(), 0, "pymri left attached");
}

fn thread<'a>(finding: &'a Value, name: &str) -> &'a Value {
    finding["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread {name} in {finding:#}"))
}

fn lock<'a>(finding: &'a Value, name: &str) -> &'a Value {
    finding["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no lock {name} in {finding:#}"))
}

fn deadlock(name: &str) {
    let interp = interp(name);
    for variant in ["lock", "rlock"] {
        let what = format!("{name} {variant}");
        let mut target = Target::start(&interp, DEADLOCK, &["{ready}", variant]);
        let ids = idents(&target);
        let report = doctor(&target);
        let findings = report["findings"].as_array().expect("findings");
        assert_eq!(findings.len(), 1, "{what}: {report:#}");
        let f = &findings[0];
        assert_eq!(f["pattern"], "deadlock", "{what}");
        assert_eq!(f["severity"], "critical", "{what}");
        let summary = f["summary"].as_str().expect("summary");
        assert!(summary.contains("\"transfer\"") && summary.contains("\"audit\""), "{what}: {summary}");
        let kind = if variant == "rlock" { "RLock" } else { "Lock" };
        for (waiter, holder, lock_name, function, line) in [
            ("transfer", "audit", "self._lock", "transfer", "transfer-waits"),
            ("audit", "transfer", "__main__.GLOBAL_LOCK", "audit", "audit-waits"),
        ] {
            let t = thread(f, waiter);
            assert_eq!(t["role"], "waits", "{what}");
            assert_eq!(t["ident"].as_u64(), Some(ids[waiter]), "{what}");
            let top = &t["frames"][0];
            assert!(top["function"].as_str().is_some_and(|s| s.ends_with(function)), "{what}: {top}");
            assert_eq!(top["line"].as_i64(), Some(mark(DEADLOCK, line).into()), "{what}: {top}");
            assert!(top["source"].as_str().is_some_and(|s| s.contains("with")), "{what}: {top}");
            let detail = t["detail"].as_str().expect("detail");
            assert!(
                detail.contains(lock_name) && detail.contains(&format!("\"{holder}\"")),
                "{what}: {detail}"
            );
            let l = lock(f, lock_name);
            assert_eq!(l["kind"], kind, "{what}");
            assert_eq!(l["owner"].as_u64(), Some(ids[holder]), "{what}: {l}");
            assert_eq!(l["owner_inferred"], variant == "lock", "{what}: an RLock records its owner");
            assert_eq!(l["waiters"], serde_json::json!([ids[waiter]]), "{what}");
        }
        left_running(&mut target);
    }
}

fn orphaned(name: &str) {
    let interp = interp(name);
    for (variant, ends) in [("lock", false), ("rlock", false), ("rlock", true)] {
        let what = format!("{name} {variant}{}", if ends { " ends" } else { "" });
        let mut args = vec!["{ready}", variant];
        if ends {
            args.push("ends");
        }
        let mut target = Target::start(&interp, ORPHANED, &args);
        let ids = idents(&target);
        let report = doctor(&target);
        let findings = report["findings"].as_array().expect("findings");
        assert_eq!(findings.len(), 1, "{what}: {report:#}");
        let f = &findings[0];
        assert_eq!(f["pattern"], "orphaned_lock", "{what}");
        assert_eq!(f["severity"], "critical", "{what}");
        let l = lock(f, "__main__.CACHE_LOCK");
        let mut waiters: Vec<u64> =
            l["waiters"].as_array().expect("waiters").iter().map(|w| w.as_u64().expect("ident")).collect();
        waiters.sort_unstable();
        let mut readers = vec![ids["reader-1"], ids["reader-2"]];
        readers.sort_unstable();
        assert_eq!(waiters, readers, "{what}");
        for reader in ["reader-1", "reader-2"] {
            let t = thread(f, reader);
            assert_eq!(t["role"], "waits", "{what}");
            assert_eq!(
                t["frames"][0]["line"].as_i64(),
                Some(mark(ORPHANED, "reader-waits").into()),
                "{what}"
            );
        }
        let summary = f["summary"].as_str().expect("summary");
        match (variant, ends) {
            ("rlock", false) => {
                assert_eq!(l["owner"].as_u64(), Some(ids["loader"]), "{what}");
                let holder = thread(f, "loader");
                assert_eq!(holder["role"], "holds", "{what}");
                // Where the holder is now: serving, far from the code that took the lock.
                let top = &holder["frames"].as_array().expect("frames");
                assert!(
                    top.iter().any(|fr| fr["line"].as_i64() == Some(mark(ORPHANED, "serving").into())),
                    "{what}"
                );
                assert!(summary.contains("\"loader\""), "{what}: {summary}");
            }
            ("rlock", true) => {
                assert_eq!(l["owner"].as_u64(), Some(ids["loader"]), "{what}");
                assert!(summary.contains("has ended"), "{what}: {summary}");
            }
            _ => {
                assert!(l["owner"].is_null(), "{what}: a Lock does not record its holder: {l}");
                assert!(summary.contains("no running code"), "{what}: {summary}");
            }
        }
        left_running(&mut target);
    }
}

/// A lock held inside its `with` block for good while a thread waits, and two threads taking
/// and releasing another lock all the time: slow, but neither pattern.
fn held(name: &str) {
    let interp = interp(name);
    for variant in ["lock", "rlock"] {
        let mut target = Target::start(&interp, HELD, &["{ready}", variant]);
        let report = doctor(&target);
        assert_eq!(report["findings"], serde_json::json!([]), "{name} {variant}: {report:#}");
        left_running(&mut target);
    }
}

#[test]
fn deadlock_names_the_cycle() {
    for name in INTERPRETERS {
        deadlock(name);
    }
}

#[test]
fn orphaned_lock_names_holder_and_waiters() {
    for name in INTERPRETERS {
        orphaned(name);
    }
}

#[test]
fn a_lock_held_in_its_with_block_is_neither_pattern() {
    for name in INTERPRETERS {
        held(name);
    }
}

/// The text report, as read at 3 a.m.: the pattern, each thread, the line it waits on, the
/// locks by name and who holds them.
#[test]
fn deadlock_text_report() {
    let interp = interp("3.11");
    let target = Target::start(&interp, DEADLOCK, &["{ready}", "rlock"]);
    let pid = target.pid().to_string();
    let out = pymri(&["doctor", &pid, "--duration", "1", "--only", "deadlock"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("CRITICAL deadlock: 2 threads wait for each other's locks"), "{stdout}");
    assert!(stdout.contains("Thread \"transfer\""), "{stdout}");
    assert!(stdout.contains(&format!("deadlock.py:{})", mark(DEADLOCK, "transfer-waits"))), "{stdout}");
    assert!(stdout.contains("with self._lock:"), "{stdout}");
    assert!(stdout.contains("Lock self._lock (RLock at 0x"), "{stdout}");
    assert!(stdout.contains("held by \"audit\", waited for by \"transfer\""), "{stdout}");
    assert!(stdout.contains(&format!("next: pymri dump {pid} --locals")), "{stdout}");
}
