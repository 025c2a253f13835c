//! Lock analysis against real interpreters: the deadlock and orphaned-lock fixtures, read live
//! (waits from the kernel) and from a core file (waits inferred).

use pymri_cpython::{
    locate, LiveProcess, LockKind, LockOptions, Locks, SampleOptions, Sampler, SnapshotOptions, TargetFiles,
};
use pymri_object::CoreFile;
use pymri_testkit::{interpreter, interpreters, mark, run_with_deadline, text, Interpreter, Target};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

const DEADLOCK: &str = "doctor/deadlock.py";
const ORPHANED: &str = "doctor/orphaned_lock.py";

/// Thread name to (kernel id, ident), from the fixture's readiness line.
fn thread_ids(target: &Target) -> HashMap<String, (i32, u64)> {
    let line: serde_json::Value = serde_json::from_str(&target.ready_line).expect("JSON readiness line");
    line["threads"]
        .as_object()
        .expect("threads")
        .iter()
        .map(|(name, ids)| {
            (name.clone(), (ids[0].as_i64().expect("native id") as i32, ids[1].as_u64().expect("ident")))
        })
        .collect()
}

fn live_locks(target: &Target) -> Locks {
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    let snapshot = Sampler::new(&live, &located).sample(&SampleOptions::default()).expect("sample");
    let pid = target.pid();
    let futex = move |tid: i32| pymri_memory::thread_futex_wait(pid, tid);
    located
        .locks(&live.mem, snapshot, &LockOptions { futex_wait: Some(&futex), source_line: None })
        .expect("locks")
}

fn kind_of(variant: &str) -> LockKind {
    if variant == "rlock" {
        LockKind::RLock
    } else {
        LockKind::Lock
    }
}

/// The one cycle: "transfer" waits at its second `with` for `self._lock`, held by "audit",
/// which waits for `__main__.GLOBAL_LOCK`, held by "transfer". `inferred_waits`: whether the
/// waits were read from the kernel or inferred.
fn check_cycle(
    interp: &Interpreter,
    variant: &str,
    locks: &Locks,
    ids: &HashMap<String, (i32, u64)>,
    inferred_waits: bool,
) {
    let who = |name: &str| ids[name].1;
    let deadlocks = locks.deadlocks();
    assert_eq!(deadlocks.len(), 1, "{} {variant}: {deadlocks:?}\n{locks:#?}", interp.name);
    let edges = &deadlocks[0].edges;
    assert_eq!(edges.len(), 2, "{} {variant}: {edges:?}", interp.name);
    for (waiter, holder, name, line) in [
        ("transfer", "audit", "self._lock", "transfer-waits"),
        ("audit", "transfer", "__main__.GLOBAL_LOCK", "audit-waits"),
    ] {
        let &(_, lock) = edges.iter().find(|(t, _)| *t == who(waiter)).expect("the waiter is in the cycle");
        let (wait, info) = locks.wait_of(who(waiter)).expect("a wait");
        assert_eq!(info.address, lock);
        assert_eq!(info.label(), name, "{} {variant}: {info:?}", interp.name);
        assert_eq!(info.kind, kind_of(variant));
        assert_eq!(info.owner, Some(who(holder)), "{} {variant}: {info:?}", interp.name);
        assert_eq!(info.owner_inferred, variant == "lock", "an RLock records its owner");
        assert_eq!(info.waiters, vec![who(waiter)]);
        assert_eq!(wait.evidence.inferred(), inferred_waits, "{} {variant}: {wait:?}", interp.name);
        let dump = locks.snapshot.threads.iter().find(|t| t.ident == who(waiter)).expect("thread");
        assert_eq!(
            dump.frames[0].line,
            mark(DEADLOCK, line),
            "{} {variant}: {:?}",
            interp.name,
            dump.frames[0]
        );
    }
    assert!(locks.orphans().is_empty(), "a deadlock's locks are not orphans: {:?}", locks.orphans());
}

fn deadlock_live(interp: &Interpreter) {
    for variant in ["lock", "rlock"] {
        let mut target = Target::start(interp, DEADLOCK, &["{ready}", variant]);
        let locks = live_locks(&target);
        check_cycle(interp, variant, &locks, &thread_ids(&target), false);
        assert!(target.is_alive() && !target.any_thread_stopped(), "the target is left running");
    }
}

/// Every provisioned interpreter, both kinds of lock.
#[test]
fn a_deadlock_is_read_live_on_every_interpreter() {
    for interp in interpreters() {
        deadlock_live(&interp);
    }
}

fn orphaned(interp: &Interpreter, variant: &str, ends: bool) {
    let mut args = vec!["{ready}", variant];
    if ends {
        args.push("ends");
    }
    let mut target = Target::start(interp, ORPHANED, &args);
    let ids = thread_ids(&target);
    let locks = live_locks(&target);
    let what = format!("{} {variant}{}", interp.name, if ends { " ends" } else { "" });
    assert!(locks.deadlocks().is_empty(), "{what}: {:?}", locks.deadlocks());
    let orphans = locks.orphans();
    assert_eq!(orphans.len(), 1, "{what}: {orphans:?}\n{locks:#?}");
    let lock = orphans[0];
    assert_eq!(lock.label(), "__main__.CACHE_LOCK", "{what}");
    assert_eq!(lock.kind, kind_of(variant));
    let mut waiters = lock.waiters.clone();
    waiters.sort_unstable();
    let mut readers = vec![ids["reader-1"].1, ids["reader-2"].1];
    readers.sort_unstable();
    assert_eq!(waiters, readers, "{what}");
    for reader in ["reader-1", "reader-2"] {
        let dump = locks.snapshot.threads.iter().find(|t| t.ident == ids[reader].1).expect("reader");
        assert_eq!(dump.frames[0].line, mark(ORPHANED, "reader-waits"), "{what}");
    }
    // An RLock names the thread that left it held, ended or not; a Lock cannot.
    match variant {
        "rlock" => assert_eq!(lock.owner, Some(ids["loader"].1), "{what}: {lock:?}"),
        _ => assert_eq!(lock.owner, None, "{what}: {lock:?}"),
    }
    let loader_alive = locks.snapshot.threads.iter().any(|t| t.ident == ids["loader"].1);
    assert_eq!(loader_alive, !ends, "{what}");
    assert!(target.is_alive() && !target.any_thread_stopped(), "the target is left running");
}

#[test]
fn an_orphaned_lock_is_read_live_on_every_interpreter() {
    for interp in interpreters() {
        for variant in ["lock", "rlock"] {
            orphaned(&interp, variant, false);
        }
    }
}

#[test]
fn an_orphaned_lock_whose_thread_ended() {
    for name in ["3.9", "3.11", "3.14", "3.15"] {
        let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
        for variant in ["lock", "rlock"] {
            orphaned(&interp, variant, true);
        }
    }
}

/// The locks in gcore's core of `target`: no kernel word for the waits, which are inferred
/// from the locks the innermost frame names on its line.
fn core_locks(interp: &Interpreter, target: &Target) -> Locks {
    let core_base = target.scratch.host.join("core");
    let mut cmd = Command::new("gcore");
    cmd.arg("-o").arg(&core_base).arg(target.pid().to_string());
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "gcore failed: {}", text(&out.stderr));
    let path = std::path::PathBuf::from(format!("{}.{}", core_base.display(), target.pid()));
    let core = CoreFile::open(&path, None, None).expect("core");
    let open = |p: &str| core.open_mapped_file(p);
    let files = TargetFiles { mappings: core.mappings(), exe: core.exe(), open: &open };
    let located = locate(&core, &files).expect("locate in the core");
    let tids: Vec<i32> = core.threads().iter().map(|t| t.tid).collect();
    let snapshot = located
        .snapshot(&core, &SnapshotOptions { known_tids: &tids, ..SnapshotOptions::default() })
        .expect("snapshot");
    let source = |file: &str, line: i32| -> Option<String> {
        let text = std::fs::read_to_string(interp.host_path(file)).ok()?;
        text.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?).map(str::to_owned)
    };
    located
        .locks(&core, snapshot, &LockOptions { futex_wait: None, source_line: Some(&source) })
        .expect("locks")
}

fn deadlock_in_core(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    for variant in ["lock", "rlock"] {
        let target = Target::start(&interp, DEADLOCK, &["{ready}", variant]);
        let locks = core_locks(&interp, &target);
        check_cycle(&interp, variant, &locks, &thread_ids(&target), true);
    }
}

/// In a core of the lock held in its `with` block (threads running as it was written), the
/// inferred waits make neither a deadlock nor an orphan.
fn held_in_core(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    for variant in ["lock", "rlock"] {
        let target = Target::start(&interp, "doctor/lock_held.py", &["{ready}", variant]);
        let ids = thread_ids(&target);
        let locks = core_locks(&interp, &target);
        let what = format!("{name} {variant}");
        assert!(locks.deadlocks().is_empty(), "{what}: {:?}", locks.deadlocks());
        assert!(locks.orphans().is_empty(), "{what}: {:?}\n{locks:#?}", locks.orphans());
        let (wait, lock) = locks.wait_of(ids["waiter"].1).expect("the waiter waits");
        assert!(wait.evidence.inferred(), "{what}: {wait:?}");
        assert_eq!(lock.label(), "__main__.STATE_LOCK", "{what}");
        assert_eq!(lock.owner, Some(ids["holder"].1), "{what}: {lock:?}");
    }
}

#[test]
fn a_lock_held_in_its_with_block_is_no_orphan_in_a_core_3_11() {
    held_in_core("3.11")
}

#[test]
fn a_lock_held_in_its_with_block_is_no_orphan_in_a_core_3_14() {
    held_in_core("3.14")
}

#[test]
fn a_deadlock_is_found_in_a_core_3_11() {
    deadlock_in_core("3.11")
}

#[test]
fn a_deadlock_is_found_in_a_core_3_14() {
    deadlock_in_core("3.14")
}

/// A lock held inside its `with` block while another thread waits, and two threads taking and
/// releasing a lock all the time: no deadlock, no orphan, and the holder named.
#[test]
fn a_lock_held_inside_its_with_block_is_no_orphan_on_every_interpreter() {
    for interp in interpreters() {
        for variant in ["lock", "rlock"] {
            let mut target = Target::start(&interp, "doctor/lock_held.py", &["{ready}", variant]);
            let ids = thread_ids(&target);
            let what = format!("{} {variant}", interp.name);
            for _ in 0..5 {
                let locks = live_locks(&target);
                assert!(locks.deadlocks().is_empty(), "{what}: {:?}", locks.deadlocks());
                let (wait, lock) = locks.wait_of(ids["waiter"].1).expect("the waiter waits");
                // The workers' lock may look orphaned at one instant (both seen asleep on it,
                // the kernel read one thread after the other): the doctor asks that waiters
                // stay still over its window. The lock held in its block never does.
                assert!(
                    locks.orphans().iter().all(|o| o.address != lock.address),
                    "{what}: {:?}\n{locks:#?}",
                    locks.orphans()
                );
                assert!(!wait.evidence.inferred(), "{what}: {wait:?}");
                assert_eq!(lock.label(), "__main__.STATE_LOCK", "{what}");
                assert_eq!(lock.owner, Some(ids["holder"].1), "{what}: {lock:?}");
                assert_eq!(lock.owner_inferred, variant == "lock", "{what}");
            }
            assert!(target.is_alive() && !target.any_thread_stopped(), "the target is left running");
        }
    }
}
