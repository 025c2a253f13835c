//! `blocked_threads`: every thread that did not progress over the window, and what it waits
//! for, read from its innermost Python frames and from the kernel (the system call it sleeps
//! in, the descriptor it reads, the socket's peer). A worker waiting for its next piece of
//! work or a server in `accept` is idle the ordinary way (Info); a pool whose every worker
//! waits on something other than its work is stuck (Warning).

use super::fds;
use super::finding::{Finding, FrameEvidence, Pattern, Severity, ThreadEvidence, Wait};
use super::source::Sources;
use super::stacks::{self, basename, is, short};
use super::window::ThreadWatch;
use super::Context;
use pymri_cpython::{Frame, Snapshot, ThreadDump, ThreadState};
use std::collections::{BTreeMap, HashMap};

/// A thread is blocked when its innermost frame stayed the same for at least this share of the
/// window, ending at the window's end...
const STILL_SHARE: f64 = 0.5;
/// ...while on a CPU in at most this share of its samples.
const ON_CPU_SHARE: f64 = 0.2;
/// Idle threads listed in one finding (a stuck pool lists all of its threads).
const THREADS_SHOWN: usize = 32;
/// Frames shown for each thread.
const FRAMES_SHOWN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Lock,
    Queue,
    Condition,
    Event,
    Io,
    Sleep,
    Join,
    Subprocess,
    Select,
    Gil,
    Unknown,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Lock => "lock",
            Kind::Queue => "queue",
            Kind::Condition => "condition",
            Kind::Event => "event",
            Kind::Io => "io",
            Kind::Sleep => "sleep",
            Kind::Join => "join",
            Kind::Subprocess => "subprocess",
            Kind::Select => "select",
            Kind::Gil => "gil",
            Kind::Unknown => "unknown",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Lock => "waits for a lock",
            Kind::Queue => "waits on a queue",
            Kind::Condition => "waits on a condition",
            Kind::Event => "waits for an event",
            Kind::Io => "waits for I/O",
            Kind::Sleep => "sleeps",
            Kind::Join => "waits for a thread to end",
            Kind::Subprocess => "waits for a child process",
            Kind::Select => "waits in select/poll",
            Kind::Gil => "waits for the GIL",
            Kind::Unknown => "waits",
        }
    }

    /// The methods whose receiver names what the thread waits on.
    fn methods(self) -> &'static [&'static str] {
        match self {
            Kind::Lock => &["acquire"],
            Kind::Queue => &["get", "put", "join"],
            Kind::Condition | Kind::Event => &["wait", "wait_for", "result"],
            Kind::Join => &["join"],
            Kind::Subprocess => &["wait", "communicate", "check_output", "run", "call"],
            Kind::Select => &["select", "poll"],
            Kind::Io => {
                &["recv", "recv_into", "recvfrom", "accept", "connect", "read", "readline", "sendall"]
            }
            Kind::Sleep | Kind::Gil | Kind::Unknown => &[],
        }
    }
}

/// The system call a thread sleeps in, from `/proc/PID/task/TID/syscall`: its number and first
/// argument. `None` when the thread runs or is not in a system call.
pub fn syscall(pid: i32, tid: i32) -> Option<(i64, u64)> {
    parse_syscall(&pymri_memory::read_proc(&format!("/proc/{pid}/task/{tid}/syscall")).ok()?)
}

fn parse_syscall(text: &str) -> Option<(i64, u64)> {
    let mut fields = text.split_whitespace();
    let number: i64 = fields.next()?.parse().ok()?;
    if number < 0 {
        return None;
    }
    let arg = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    Some((number, arg))
}

/// What a system call is, for a thread asleep in it: its kind and name, and whether its first
/// argument is a descriptor.
fn syscall_kind(number: i64) -> Option<(Kind, &'static str, bool)> {
    let table: &[(i64, Kind, &str, bool)] = &[
        (libc::SYS_futex, Kind::Lock, "futex", false),
        (libc::SYS_nanosleep, Kind::Sleep, "nanosleep", false),
        (libc::SYS_clock_nanosleep, Kind::Sleep, "clock_nanosleep", false),
        (libc::SYS_read, Kind::Io, "read", true),
        (libc::SYS_readv, Kind::Io, "readv", true),
        (libc::SYS_pread64, Kind::Io, "pread64", true),
        (libc::SYS_recvfrom, Kind::Io, "recvfrom", true),
        (libc::SYS_recvmsg, Kind::Io, "recvmsg", true),
        (libc::SYS_accept, Kind::Io, "accept", true),
        (libc::SYS_accept4, Kind::Io, "accept4", true),
        (libc::SYS_connect, Kind::Io, "connect", true),
        (libc::SYS_write, Kind::Io, "write", true),
        (libc::SYS_sendto, Kind::Io, "sendto", true),
        (libc::SYS_wait4, Kind::Subprocess, "wait4", false),
        (libc::SYS_waitid, Kind::Subprocess, "waitid", false),
        (libc::SYS_ppoll, Kind::Select, "ppoll", false),
        (libc::SYS_pselect6, Kind::Select, "pselect6", false),
        (libc::SYS_epoll_pwait, Kind::Select, "epoll_pwait", false),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_poll, Kind::Select, "poll", false),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_select, Kind::Select, "select", false),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_epoll_wait, Kind::Select, "epoll_wait", false),
        (libc::SYS_epoll_pwait2, Kind::Select, "epoll_pwait2", false),
    ];
    table.iter().find(|(n, ..)| *n == number).map(|&(_, kind, name, fd)| (kind, name, fd))
}

/// What the standard library frames say the thread waits in, and the frame (innermost first)
/// whose line shows it; `None` when no frame says.
fn python_kind(frames: &[Frame]) -> Option<(Kind, usize)> {
    for (i, f) in frames.iter().enumerate().take(8) {
        if !stacks::is_stdlib(&f.file) {
            return None;
        }
        let kind = match (basename(&f.file), short(&f.function)) {
            ("threading.py", "join" | "_wait_for_tstate_lock") => Kind::Join,
            ("threading.py", "wait") => {
                let outer = frames.get(i + 1);
                match outer {
                    Some(o) if is(o, "queue.py", "get") || is(o, "queue.py", "put") => Kind::Queue,
                    Some(o) if is(o, "threading.py", "wait") => Kind::Event,
                    Some(o)
                        if is(o, "threading.py", "join")
                            || is(o, "threading.py", "_wait_for_tstate_lock") =>
                    {
                        Kind::Join
                    }
                    _ if f.function.starts_with("Event.") => Kind::Event,
                    _ => Kind::Condition,
                }
            }
            ("threading.py", "acquire") => Kind::Lock,
            ("queue.py", "get" | "put" | "join") => Kind::Queue,
            ("subprocess.py", "wait" | "_wait" | "_try_wait" | "communicate" | "_communicate") => {
                Kind::Subprocess
            }
            ("selectors.py", "select") => Kind::Select,
            ("socket.py", "accept" | "create_connection" | "readinto") => Kind::Io,
            ("ssl.py", "read" | "recv" | "recv_into" | "do_handshake") => Kind::Io,
            ("_base.py", "result" | "wait" | "as_completed") => Kind::Condition,
            ("thread.py", "_worker") => Kind::Queue,
            _ => continue,
        };
        return Some((kind, i));
    }
    None
}

/// What a line of the thread's own code that calls into C says it waits in.
fn line_kind(line: &str) -> Option<Kind> {
    let code = line.split('#').next().unwrap_or(line);
    let calls = |names: &[&str]| names.iter().any(|n| code.contains(n));
    if calls(&["sleep("]) {
        Some(Kind::Sleep)
    } else if calls(&[".acquire("]) || code.trim_start().starts_with("with ") {
        Some(Kind::Lock)
    } else if calls(&[".recv(", ".recv_into(", ".recvfrom(", ".accept(", ".connect(", ".read(", ".readline("])
    {
        Some(Kind::Io)
    } else if calls(&["select(", ".poll("]) {
        Some(Kind::Select)
    } else {
        None
    }
}

/// One blocked thread, read.
struct Blocked<'a> {
    ident: u64,
    watch: &'a ThreadWatch,
    dump: &'a ThreadDump,
    wait: Wait,
    /// The function it was started on.
    entry: Option<String>,
}

pub fn blocked(cx: &Context<'_>) -> Vec<Finding> {
    let w = cx.window;
    let Some(closing) = w.closing.as_ref().or(w.last.as_ref()) else { return Vec::new() };
    let end = w.elapsed.as_secs_f64();
    let mut sources = Sources::in_root(w.root.clone());
    let sockets = if w.live { fds::tcp_sockets(w.pid) } else { HashMap::new() };
    // The Thread object each thread runs, from the `self` of its bootstrap frames, to say
    // which thread a `join` waits for.
    let thread_objects: HashMap<u64, u64> = closing
        .threads
        .iter()
        .filter_map(|t| {
            let run = t.frames.iter().rev().find(|f| is(f, "threading.py", "_bootstrap"))?;
            Some((stacks::repr_address(stacks::local(run, "self")?)?, t.ident))
        })
        .collect();

    let mut found: Vec<Blocked<'_>> = Vec::new();
    for dump in &closing.threads {
        let Some(watch) = w.threads.get(&dump.ident) else { continue };
        if dump.frames.is_empty() {
            continue;
        }
        let still = (watch.last_seen - watch.still_since).max(0.0);
        // A core file is one instant: every thread whose frames say it waits is listed.
        let blocked = !w.live
            || (end > 0.0
                && still >= STILL_SHARE * end
                && (watch.on_cpu as f64) <= ON_CPU_SHARE * watch.samples.max(1) as f64);
        let gil = watch.states.get(&ThreadState::WaitingForGil).copied().unwrap_or(0) * 2 > watch.samples;
        if !blocked && !gil {
            continue;
        }
        let wait = classify(cx, dump, watch, gil, &mut sources, &sockets, &thread_objects);
        if !w.live && wait.kind == Kind::Unknown.name() {
            continue;
        }
        let entry = stacks::entry(&dump.frames).map(|i| dump.frames[i].function.clone());
        found.push(Blocked { ident: dump.ident, watch, dump, wait, entry });
    }
    if found.is_empty() {
        return Vec::new();
    }

    let mut findings = Vec::new();
    // Stuck is a matter of time: an instant cannot tell it from a pool between two jobs.
    let stuck = if w.live { stuck_pools(&found, closing) } else { Vec::new() };
    let mut in_pool = vec![false; found.len()];
    for pool in &stuck {
        for &i in &pool.members {
            in_pool[i] = true;
        }
        findings.push(pool_finding(cx, &found, pool, &mut sources));
    }
    let rest: Vec<&Blocked<'_>> = found.iter().zip(&in_pool).filter(|(_, p)| !**p).map(|(b, _)| b).collect();
    if !rest.is_empty() {
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for b in &rest {
            let name = if b.wait.for_work { "waiting for work" } else { b.wait.kind.as_str() };
            *by_kind.entry(name).or_default() += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mut f = Finding::new(
            Pattern::BlockedThreads,
            Severity::Info,
            format!(
                "{} {} ({})",
                super::threads::plural(rest.len(), "thread", "threads"),
                if w.live {
                    "did not progress during the window"
                } else {
                    "waiting when the core was written"
                },
                kinds.join(", ")
            ),
        );
        for b in rest.iter().take(THREADS_SHOWN) {
            f.threads.push(evidence(b, &w.threads, &mut sources));
            f.waits.push(b.wait.clone());
        }
        if rest.len() > THREADS_SHOWN {
            f.notes.push(format!("{} more threads not shown", rest.len() - THREADS_SHOWN));
        }
        findings.push(f);
    }
    findings
}

/// A pool of threads (started on the same function) all blocked, none waiting for work.
struct Pool {
    entry: String,
    members: Vec<usize>,
}

fn stuck_pools(found: &[Blocked<'_>], closing: &Snapshot) -> Vec<Pool> {
    let mut pools: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, b) in found.iter().enumerate() {
        if let Some(entry) = &b.entry {
            pools.entry(entry.as_str()).or_default().push(i);
        }
    }
    pools
        .into_iter()
        .filter(|(_, members)| members.len() >= 2)
        .filter(|(_, members)| {
            members.iter().all(|&i| {
                let w = &found[i].wait;
                !w.for_work && matches!(w.kind.as_str(), "lock" | "queue" | "condition" | "event")
            })
        })
        // Every thread started on that function is in it: the pool has no worker left.
        .filter(|(entry, members)| members.len() == started_on(closing, entry))
        .map(|(entry, members)| Pool { entry: entry.to_string(), members })
        .collect()
}

/// How many threads run `entry`.
fn started_on(closing: &Snapshot, entry: &str) -> usize {
    closing
        .threads
        .iter()
        .filter(|t| stacks::entry(&t.frames).is_some_and(|i| t.frames[i].function == entry))
        .count()
}

fn pool_finding(cx: &Context<'_>, found: &[Blocked<'_>], pool: &Pool, sources: &mut Sources) -> Finding {
    let first = &found[pool.members[0]];
    let on = first.wait.on.as_deref().map(|o| format!(" on {o}")).unwrap_or_default();
    let spot = first
        .dump
        .frames
        .iter()
        .find(|f| !stacks::is_stdlib(&f.file))
        .map(|f| format!(" in {} ({}:{})", f.function, basename(&f.file), f.line))
        .unwrap_or_default();
    let mut f = Finding::new(
        Pattern::BlockedThreads,
        Severity::Warning,
        format!(
            "stuck pool: the {} threads running {} all wait ({}){on}{spot}, not on their work, for the whole window",
            pool.members.len(),
            pool.entry,
            first.wait.kind
        ),
    );
    for &i in &pool.members {
        f.threads.push(evidence(&found[i], &cx.window.threads, sources));
        f.waits.push(found[i].wait.clone());
    }
    f.notes.push(
        "a worker waiting for its next piece of work waits where its loop takes it; these wait further in, \
         for something another thread took and did not give back"
            .into(),
    );
    if let Some(tid) = first.watch.tid {
        f.next.push(format!("pymri dump {} --locals", cx.window.pid));
        f.next.push(format!("pymri attach {} --thread {tid}", cx.window.pid));
    }
    f
}

fn evidence(b: &Blocked<'_>, threads: &BTreeMap<u64, ThreadWatch>, sources: &mut Sources) -> ThreadEvidence {
    let w = &b.wait;
    let mut detail = match w.kind.as_str() {
        _ if w.for_work => "waits for work",
        k => kind_of(k).describe(),
    }
    .to_string();
    // A core file's instant has no durations.
    if w.seconds > 0.0 {
        detail.push_str(&format!(" since {:.1} s into the window ({:.1} s)", w.still_since, w.seconds));
    }
    if let Some(on) = &w.on {
        detail.push_str(&format!("; on {on}"));
    }
    if let Some(sc) = &w.syscall {
        detail.push_str(&format!("; in {sc}"));
    }
    if let Some(fd) = w.fd {
        detail.push_str(&format!("; fd {fd}"));
        if let Some(t) = &w.fd_target {
            detail.push_str(&format!(" ({t})"));
        }
    }
    if let Some(peer) = &w.peer {
        detail.push_str(&format!("; peer {peer}"));
    }
    if let Some(joins) = w.joins {
        let name = threads
            .get(&joins)
            .map_or_else(|| format!("thread {joins:#x}"), |t| super::threads::label(joins, t));
        detail.push_str(&format!("; joins {name}"));
    }
    ThreadEvidence {
        ident: b.ident,
        tid: b.watch.tid,
        name: b.watch.name.clone(),
        role: w.kind.clone(),
        detail: Some(detail),
        // From the last library frame the thread's own code called: the frames inside the
        // library say less than the code that waits.
        frames: b
            .dump
            .frames
            .iter()
            .skip(stacks::innermost_user(&b.dump.frames).map_or(0, |u| u.saturating_sub(1)))
            .take(FRAMES_SHOWN)
            .map(|f| frame_evidence(f, sources))
            .collect(),
    }
}

pub fn frame_evidence(f: &Frame, sources: &mut Sources) -> FrameEvidence {
    FrameEvidence {
        function: f.function.clone(),
        file: f.file.clone(),
        line: f.line,
        source: sources.line(&f.file, f.line).map(|s| s.trim().to_string()),
        locals: Vec::new(),
    }
}

fn kind_of(name: &str) -> Kind {
    [
        Kind::Lock,
        Kind::Queue,
        Kind::Condition,
        Kind::Event,
        Kind::Io,
        Kind::Sleep,
        Kind::Join,
        Kind::Subprocess,
        Kind::Select,
        Kind::Gil,
    ]
    .into_iter()
    .find(|k| k.name() == name)
    .unwrap_or(Kind::Unknown)
}

fn classify(
    cx: &Context<'_>,
    dump: &ThreadDump,
    watch: &ThreadWatch,
    gil: bool,
    sources: &mut Sources,
    sockets: &HashMap<u64, fds::TcpEnds>,
    thread_objects: &HashMap<u64, u64>,
) -> Wait {
    let w = cx.window;
    let mut wait = Wait {
        ident: dump.ident,
        kind: Kind::Unknown.name().into(),
        still_since: watch.still_since,
        seconds: (watch.last_seen - watch.still_since).max(0.0),
        for_work: false,
        on: None,
        syscall: None,
        fd: None,
        fd_target: None,
        local: None,
        peer: None,
        joins: None,
    };
    let kernel = if w.live { dump.tid.and_then(|tid| syscall(w.pid, tid)) } else { None };
    let kernel_kind = kernel.and_then(|(n, arg)| syscall_kind(n).map(|k| (k, arg)));
    if let Some(((_, name, _), _)) = kernel_kind {
        wait.syscall = Some(name.into());
    }
    let python = python_kind(&dump.frames);
    // The line that waits: the innermost frame of the thread's own code.
    let user = stacks::innermost_user(&dump.frames);
    let line = user.and_then(|u| sources.line(&dump.frames[u].file, dump.frames[u].line));
    // A thread caught waking up waits for the GIL on a futex, whatever put it to sleep.
    let kernel_says =
        kernel_kind.filter(|((k, ..), _)| !(*k == Kind::Lock && dump.state == ThreadState::WaitingForGil));
    let kind = if gil {
        Kind::Gil
    } else if let Some((k, _)) = python {
        k
    } else if let Some(k) = line.as_deref().and_then(line_kind) {
        k
    } else if let Some(((k, ..), _)) = kernel_says {
        k
    } else {
        Kind::Unknown
    };
    wait.kind = kind.name().into();
    if let Some(line) = &line {
        wait.on = stacks::receiver(line, kind.methods());
    }
    // A worker waiting for work: the wait is made by the very function the thread runs.
    let entry = stacks::entry(&dump.frames);
    let waits_for_work = match (user, entry) {
        (Some(u), Some(e)) => u == e,
        // A standard library worker (concurrent.futures) waits for work in its own loop.
        (None, Some(e)) => python.is_some_and(|(_, i)| i == e),
        _ => false,
    };
    wait.for_work = waits_for_work && matches!(kind, Kind::Queue | Kind::Condition);

    if let Some(((Kind::Io, _, true), arg)) = kernel_kind {
        if let Ok(fd) = i32::try_from(arg) {
            wait.fd = Some(fd);
            if let Some(target) = fds::target(w.pid, fd) {
                if let Some(ends) = fds::socket_inode(&target).and_then(|i| sockets.get(&i)) {
                    wait.local = Some(ends.local.clone());
                    if !ends.remote.ends_with(":0") {
                        wait.peer = Some(ends.remote.clone());
                    }
                }
                wait.fd_target = Some(target);
            }
        }
    }
    if kind == Kind::Join {
        let join = dump.frames.iter().find(|f| is(f, "threading.py", "join"));
        wait.joins = join
            .and_then(|f| stacks::local(f, "self"))
            .and_then(stacks::repr_address)
            .and_then(|a| thread_objects.get(&a).copied());
    }
    wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        assert_eq!(parse_syscall("202 0x7f00 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x7f01"), Some((202, 0x7f00)));
        assert_eq!(parse_syscall("running"), None);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f01"), None);
        assert_eq!(parse_syscall(""), None);
    }

    fn frame(function: &str, file: &str) -> Frame {
        Frame::new(function, file, 1)
    }

    #[test]
    fn python_kinds() {
        let lib = "/usr/lib/python3.11/";
        let queue = [
            frame("Condition.wait", &format!("{lib}threading.py")),
            frame("Queue.get", &format!("{lib}queue.py")),
            frame("worker", "/srv/app.py"),
        ];
        assert_eq!(python_kind(&queue), Some((Kind::Queue, 0)));
        let event = [
            frame("wait", &format!("{lib}threading.py")),
            frame("wait", &format!("{lib}threading.py")),
            frame("main", "/srv/app.py"),
        ];
        assert_eq!(python_kind(&event), Some((Kind::Event, 0)));
        assert_eq!(python_kind(&[frame("main", "/srv/app.py")]), None);
    }
}
