//! `deadlock` and `orphaned_lock`: the locks each thread holds and waits for, read from memory
//! by [`pymri_cpython::Located::locks`] at the window's start and at its end. A finding is
//! reported only when both readings show it (a cycle of the same threads and locks, an orphan
//! of the same lock) and its waiting threads stayed on one line through the window: a wait
//! that ends within the window is contention, not a deadlock.
//!
//! With a core there is one reading, and the waits in it are inferred (the kernel's futex
//! words are not in a core); the findings say so.

use super::finding::{Finding, FrameEvidence, LockEvidence, Pattern, Severity, ThreadEvidence};
use super::Context;
use pymri_cpython::{Deadlock, LockInfo, LockOptions, Locks, SampleOptions, Sampler, ThreadDump};
use pymri_memory::Memory;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The lock readings of a window.
#[derive(Default)]
pub struct LockReadings {
    /// At the window's start (`None` for a core, or when it could not be read).
    pub first: Option<Locks>,
    /// At the window's end, or the core's one instant.
    pub last: Option<Locks>,
    /// Where the target's files are (its root), to show source lines.
    pub root: Option<PathBuf>,
}

/// Longest source file read for a line.
const MAX_SOURCE: u64 = 16 << 20;
/// Characters of a source line shown.
const MAX_LINE: usize = 200;

/// Reads the locks of a live process now: one sample of `sampler`, then the objects its frames
/// refer to, with each sleeping thread's futex from the kernel. `None` when the process could
/// not be read (the analysis then finds nothing, never a guess).
pub fn read_live<M: Memory>(
    located: &pymri_cpython::Located,
    mem: &M,
    sampler: &mut Sampler<'_>,
) -> Option<Locks> {
    let snapshot = sampler.sample(&SampleOptions::default()).ok()?;
    let pid = sampler.pid();
    let futex = move |tid: i32| pymri_memory::thread_futex_wait(pid, tid);
    located.locks(mem, snapshot, &LockOptions { futex_wait: Some(&futex), source_line: None }).ok()
}

/// What a thread waits for, as the blocked-threads pattern shows it: the lock by its name, its
/// kind, and its holder when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWaitSummary {
    pub ident: u64,
    pub lock: String,
    pub kind: &'static str,
    pub address: u64,
    pub holder: Option<u64>,
    pub holder_inferred: bool,
    /// Whether the wait itself is inferred (no kernel word for it).
    pub wait_inferred: bool,
}

/// Every thread's lock wait in `locks`.
pub fn lock_waits(locks: &Locks) -> Vec<LockWaitSummary> {
    locks
        .threads
        .iter()
        .filter_map(|t| {
            let (wait, lock) = locks.wait_of(t.ident)?;
            Some(LockWaitSummary {
                ident: t.ident,
                lock: lock.label(),
                kind: lock.kind.name(),
                address: lock.address,
                holder: lock.owner,
                holder_inferred: lock.owner_inferred,
                wait_inferred: wait.evidence.inferred(),
            })
        })
        .collect()
}

/// `deadlock`: each cycle of threads waiting for a lock the next one holds.
pub fn deadlock(cx: &Context<'_>) -> Vec<Finding> {
    let readings = cx.locks;
    let Some(last) = &readings.last else { return Vec::new() };
    let sources = Sources::new(readings.root.clone());
    last.deadlocks()
        .into_iter()
        .filter(|cycle| readings.first.as_ref().is_none_or(|first| first.deadlocks().contains(cycle)))
        .filter(|cycle| cycle.edges.iter().all(|(ident, _)| stayed(cx, *ident)))
        .map(|cycle| deadlock_finding(cx, last, &cycle, &sources))
        .collect()
}

fn deadlock_finding(cx: &Context<'_>, locks: &Locks, cycle: &Deadlock, sources: &Sources) -> Finding {
    let names: Vec<String> =
        cycle.edges.iter().map(|(ident, _)| format!("\"{}\"", thread_label(locks, *ident))).collect();
    let mut finding = Finding::new(
        Pattern::Deadlock,
        Severity::Critical,
        format!("{} threads wait for each other's locks: {}", cycle.edges.len(), names.join(", ")),
    );
    let waits = lock_waits(locks);
    for (ident, _) in &cycle.edges {
        let Some(wait) = waits.iter().find(|w| w.ident == *ident) else { continue };
        let held: Vec<String> =
            locks.locks.iter().filter(|l| l.locked && l.owner == Some(*ident)).map(|l| l.label()).collect();
        let mut detail = wait_detail(locks, wait);
        if !held.is_empty() {
            detail.push_str(&format!("; holds {}", held.join(", ")));
        }
        finding.threads.push(thread_evidence(locks, *ident, "waits", detail, sources));
    }
    for (_, lock_at) in &cycle.edges {
        if let Some(lock) = locks.lock(*lock_at) {
            finding.locks.push(lock_evidence(lock));
        }
    }
    if cx.window.pid > 0 {
        finding.next.push(format!("pymri dump {} --locals", cx.window.pid));
    }
    finding.notes.push(
        "A lock taken in one order by one thread and in the other order by another: take them in one order everywhere"
            .into(),
    );
    finding
}

/// `orphaned_lock`: a lock threads wait for and no running code will release.
pub fn orphaned(cx: &Context<'_>) -> Vec<Finding> {
    let readings = cx.locks;
    let Some(last) = &readings.last else { return Vec::new() };
    let sources = Sources::new(readings.root.clone());
    let before: Option<Vec<u64>> =
        readings.first.as_ref().map(|first| first.orphans().iter().map(|l| l.address).collect());
    last.orphans()
        .into_iter()
        .filter(|lock| before.as_ref().is_none_or(|b| b.contains(&lock.address)))
        .filter(|lock| lock.waiters.iter().all(|w| stayed(cx, *w)))
        .map(|lock| orphan_finding(cx, last, lock, &sources))
        .collect()
}

fn orphan_finding(cx: &Context<'_>, locks: &Locks, lock: &LockInfo, sources: &Sources) -> Finding {
    let holder = lock.owner;
    let holder_alive = holder.is_some_and(|h| locks.thread(h).is_some());
    let whose = match (holder, holder_alive) {
        (Some(h), true) => {
            format!("thread \"{}\", which no longer runs code that refers to it", thread_label(locks, h))
        }
        (Some(h), false) => format!("thread {h:#x}, which has ended"),
        (None, _) => "no running code (a Lock does not record who took it)".into(),
    };
    let mut finding = Finding::new(
        Pattern::OrphanedLock,
        Severity::Critical,
        format!(
            "{} ({}) is held by {whose}; {} waiting for it",
            lock.label(),
            lock.kind.name(),
            plural(lock.waiters.len(), "thread is", "threads are")
        ),
    );
    if let (Some(h), true) = (holder, holder_alive) {
        finding.threads.push(thread_evidence(
            locks,
            h,
            "holds",
            format!("holds {} ({}) and is outside any code that names it", lock.label(), describe(lock)),
            sources,
        ));
    }
    for wait in lock_waits(locks).iter().filter(|w| w.address == lock.address) {
        let detail = wait_detail(locks, wait);
        finding.threads.push(thread_evidence(locks, wait.ident, "waits", detail, sources));
    }
    finding.locks.push(lock_evidence(lock));
    finding.notes.push(
        "The holder left the code that took it (an exception between acquire() and release(), or a return): take it with `with`, or release it in `finally`"
            .into(),
    );
    if cx.window.pid > 0 {
        finding.next.push(format!("pymri dump {} --locals", cx.window.pid));
    }
    finding
}

/// One line on a thread's wait: the lock by its name, what it is, who holds it, and what is
/// inferred.
fn wait_detail(locks: &Locks, wait: &LockWaitSummary) -> String {
    let holder = match wait.holder {
        Some(h) if locks.thread(h).is_none() => format!("held by thread {h:#x}, which has ended"),
        Some(h) => format!(
            "held by \"{}\"{}",
            thread_label(locks, h),
            if wait.holder_inferred { " (holder inferred)" } else { "" }
        ),
        None => "holder unknown".into(),
    };
    format!(
        "waits for {} ({} at {:#x}), {holder}{}",
        wait.lock,
        wait.kind,
        wait.address,
        if wait.wait_inferred { "; the wait is inferred from its line" } else { "" }
    )
}

/// Whether the window saw the thread on one line throughout (or did not see it: a core).
fn stayed(cx: &Context<'_>, ident: u64) -> bool {
    cx.window.threads.get(&ident).is_none_or(|w| w.moves == 0)
}

fn describe(lock: &LockInfo) -> String {
    format!("{} at {:#x}", lock.kind.name(), lock.address)
}

fn lock_evidence(lock: &LockInfo) -> LockEvidence {
    LockEvidence {
        name: lock.label(),
        kind: lock.kind.name().into(),
        address: lock.address,
        owner: lock.owner,
        owner_inferred: lock.owner_inferred,
        waiters: lock.waiters.clone(),
    }
}

fn dump_of(locks: &Locks, ident: u64) -> Option<&ThreadDump> {
    locks.snapshot.threads.iter().find(|t| t.ident == ident)
}

fn thread_label(locks: &Locks, ident: u64) -> String {
    match dump_of(locks, ident) {
        Some(ThreadDump { name: Some(name), .. }) => name.clone(),
        Some(ThreadDump { tid: Some(tid), .. }) => format!("tid {tid}"),
        _ => format!("thread {ident:#x}"),
    }
}

fn thread_evidence(
    locks: &Locks,
    ident: u64,
    role: &str,
    detail: String,
    sources: &Sources,
) -> ThreadEvidence {
    let dump = dump_of(locks, ident);
    let frames = dump
        .map(|d| {
            d.frames
                .iter()
                .map(|f| FrameEvidence {
                    function: f.function.clone(),
                    file: f.file.clone(),
                    line: f.line,
                    source: sources.line(&f.file, f.line),
                    locals: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    ThreadEvidence {
        ident,
        tid: dump.and_then(|d| d.tid),
        name: dump.and_then(|d| d.name.clone()),
        role: role.into(),
        detail: Some(detail),
        frames,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Source lines of the target's files, each file read once, inside the target's root (a file
/// the target names is opened only if it is a regular file of bounded size).
pub struct Sources {
    root: Option<PathBuf>,
    files: RefCell<HashMap<String, Option<Vec<String>>>>,
}

impl Sources {
    pub fn new(root: Option<PathBuf>) -> Sources {
        Sources { root, files: RefCell::default() }
    }

    pub fn line(&self, file: &str, line: i32) -> Option<String> {
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        let mut files = self.files.borrow_mut();
        let lines = files.entry(file.to_owned()).or_insert_with(|| self.read(file));
        let text = lines.as_ref()?.get(index)?;
        Some(text.chars().take(MAX_LINE).collect())
    }

    fn read(&self, file: &str) -> Option<Vec<String>> {
        let root = self.root.as_deref().unwrap_or(Path::new("/"));
        let opened = pymri_memory::open_in_root(root, Path::new(file), MAX_SOURCE).ok()?;
        let lines = BufReader::new(opened).split(b'\n');
        Some(lines.map_while(Result::ok).map(|l| String::from_utf8_lossy(&l).into_owned()).collect())
    }
}
