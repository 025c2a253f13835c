//! `pymri dump`: every thread's Python stack of a live process or a core file.

use crate::native::{self, MixedThread};
use crate::printer::Printer;
use crate::render::{dump_text, native_dump_text, tasks_list, tasks_table, tasks_tree, Header};
use crate::target::Core;
use anyhow::{anyhow, Result};
use pymri_cpython::LiveProcess as Live;
use pymri_cpython::{ReprLimits, SampleOptions, Sampler, SnapshotOptions, TaskDump, ThreadDump, ThreadState};
use pymri_memory::{Freeze, MemoryError};
use pymri_native::{Modules, NativeStack};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Clone)]
pub struct DumpOptions {
    pub pid: Option<i32>,
    pub core: Option<PathBuf>,
    pub exe: Option<PathBuf>,
    pub sysroot: Option<PathBuf>,
    pub locals: bool,
    pub json: bool,
    pub blocking: bool,
    /// Then every descendant of `pid` that runs Python.
    pub subprocesses: bool,
    /// More processes, after `pid`.
    pub more: Vec<i32>,
    /// Every Python process whose command line this matches, too.
    pub matching: Option<regex::Regex>,
    /// Fold identical stacks of every process dumped into groups, fewest processes first.
    pub group: bool,
    /// Read the data of numpy arrays up to this many bytes for their statistics (0: none).
    pub array_values: u64,
    /// Read the asyncio tasks too, and show them in this form instead of the threads.
    pub tasks: Option<TasksForm>,
    /// Native frames merged with Python's (`--native`); `native_all` adds the threads that run
    /// no Python.
    pub native: bool,
    pub native_all: bool,
}

/// How the tasks are shown in text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TasksForm {
    List,
    Tree,
    Table,
}

/// The `--json` document. `schema` changes only when a field changes meaning or disappears.
#[derive(Serialize)]
struct Report<'a, T> {
    #[serde(flatten)]
    about: About<'a>,
    /// Whether frames are native and Python ones merged (`--native`): each then has a `kind`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    native: bool,
    threads: &'a [T],
    /// With `--tasks`: every asyncio task.
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<&'a [TaskDump]>,
}

/// The document's fields before the threads: the process and how it was read.
#[derive(Serialize, Clone)]
struct About<'a> {
    schema: u32,
    pid: i32,
    /// The machine the report was made on (`pymri compare` names processes by it).
    host: String,
    /// The process's rank in a distributed job, when its environment or command line says.
    #[serde(skip_serializing_if = "Option::is_none")]
    rank: Option<String>,
    command: &'a str,
    python_version: String,
    debug_build: bool,
    python_binary: &'a str,
    root: Option<String>,
    source: &'static str,
    blocking: bool,
    /// Present when the core file is shorter than its headers say: the threads are partial.
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<Truncated>,
    /// For a core that records one: the signal, and the thread that received it (listed first).
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<SignalReport>,
}

/// How the process a core was taken from died (or stopped, for `gcore`).
#[derive(Serialize, Clone)]
pub struct SignalReport {
    pub number: i32,
    pub name: String,
    /// `si_code`, absent when the core has no `NT_SIGINFO` note.
    pub code: Option<i32>,
    pub code_name: Option<&'static str>,
    /// The faulting address (SIGSEGV, SIGBUS, SIGILL, SIGFPE).
    pub address: Option<u64>,
    /// Who sent it, for a signal sent with `kill` or `tgkill`.
    pub sender_pid: Option<i32>,
    pub sender_uid: Option<u32>,
    pub thread: i32,
}

impl SignalReport {
    pub fn of(signal: &pymri_object::CoreSignal) -> SignalReport {
        SignalReport {
            number: signal.number,
            name: signal.name(),
            code: signal.code,
            code_name: signal.code_name(),
            address: signal.address,
            sender_pid: signal.sender.map(|(pid, _)| pid),
            sender_uid: signal.sender.map(|(_, uid)| uid),
            thread: signal.tid,
        }
    }
}

/// Puts the thread that received the signal first, keeping the others' order.
fn signalled_first(threads: &mut [ThreadDump], signal: Option<&SignalReport>) {
    if let Some(s) = signal {
        if let Some(i) = threads.iter().position(|t| t.tid == Some(s.thread)) {
            threads[..=i].rotate_right(1);
        }
    }
}

#[derive(Serialize, Clone, Copy)]
struct Truncated {
    present_bytes: u64,
    expected_bytes: u64,
}

pub fn run(opts: DumpOptions, printer: &mut Printer) -> Result<()> {
    if opts.group {
        return grouped(&opts, printer);
    }
    if opts.pid.is_none() && opts.core.is_none() {
        // `--match` alone: every process it finds, in turn.
        if others(&opts).is_empty() {
            return Err(no_match().into());
        }
        return dump_others(&opts, printer);
    }
    let locals = opts.locals;
    let mut truncated = None;
    let mut signal = None;
    let mut natives: Option<Vec<ThreadStack>> = None;
    let (header_pid, command, root, source, located, snapshot, tasks) = match (&opts.core, opts.pid) {
        (Some(path), _) => {
            let core = Core::open(path, opts.exe.as_deref(), opts.sysroot.as_deref())?;
            truncated = core
                .core
                .truncation()
                .map(|t| Truncated { present_bytes: t.present, expected_bytes: t.expected });
            // A truncated core fails; what could still be read is shown first, marked partial.
            let fail = |e: anyhow::Error| match truncated {
                Some(t) => e.context(truncation_message(path, t)),
                None => e,
            };
            signal = core.core.signal().map(|s| SignalReport::of(&s));
            let located = core.locate().map_err(fail)?;
            let tids = core.known_tids();
            let limits = ReprLimits { array_values: opts.array_values, ..ReprLimits::default() };
            let options = SnapshotOptions { locals, known_tids: &tids, limits, ..SnapshotOptions::default() };
            let snapshot = located.snapshot(&core.core, &options).map_err(|e| fail(e.into()))?;
            let tasks = match opts.tasks {
                Some(_) => Some(
                    core.with_files(|files| located.tasks(&core.core, files, &options))
                        .map_err(|e| fail(e.into()))?,
                ),
                None => None,
            };
            if opts.native {
                natives = Some(core_stacks(&core, opts.sysroot.as_deref()));
            }
            let root = opts.sysroot.as_ref().map(|p| p.display().to_string());
            (core.core.pid(), core.core.command().to_string(), root, "core", located, snapshot, tasks)
        }
        (None, Some(pid)) => {
            let live = Live::open(pid)?;
            let located = live.locate()?;
            let mut sampler = Sampler::new(&live, &located);
            // The freeze lives exactly as long as the read; dropping it resumes every thread,
            // and if pymri dies instead the kernel resumes them (see pymri_memory::Freeze).
            let (snapshot, tasks) = {
                let freeze = if opts.blocking { Some(Freeze::new(pid)?) } else { None };
                let limits = ReprLimits { array_values: opts.array_values, ..ReprLimits::default() };
                let snapshot =
                    sampler.sample(&SampleOptions { locals, limits, ..SampleOptions::default() })?;
                let tasks = match opts.tasks {
                    Some(_) => {
                        let tids = live.known_tids();
                        let options =
                            SnapshotOptions { known_tids: &tids, live: true, ..SnapshotOptions::default() };
                        Some(live.with_files(|files| located.tasks(&live.mem, files, &options))?)
                    }
                    None => None,
                };
                // Native stacks after the Python ones, whose run states a thread stopped and
                // resumed for its unwind would blur; each thread is stopped alone while it is
                // unwound (unless --blocking holds them all).
                if opts.native {
                    natives = Some(live_stacks(&live, freeze.as_ref())?);
                }
                (snapshot, tasks)
            };
            let root = live.root.as_ref().map(|p| p.display().to_string());
            (pid, live.command.clone(), root, "live", located, snapshot, tasks)
        }
        (None, None) => anyhow::bail!("give a process id or --core FILE"),
    };
    let mut snapshot = snapshot;
    signalled_first(&mut snapshot.threads, signal.as_ref());
    let version = located.version.to_string();
    let binary = crate::target::inside_root(&located.binary, root.as_deref());
    let header = Header {
        pid: header_pid,
        command: &command,
        version: &version,
        debug: located.version.debug_build,
        binary: &binary,
        root: root.as_deref(),
        source: source_note(source, truncated),
        signal: signal.as_ref(),
    };
    let about = About {
        schema: 1,
        pid: header_pid,
        host: host_name(),
        rank: if source == "live" { crate::commands::group::rank(header_pid, &command) } else { None },
        command: &command,
        python_version: version.clone(),
        debug_build: located.version.debug_build,
        python_binary: &binary,
        root: root.clone(),
        source,
        blocking: opts.blocking,
        truncated,
        signal: signal.clone(),
    };
    if let Some(natives) = natives {
        let mut mixed = mixed_threads(snapshot.threads, natives, opts.native_all, signal.as_ref());
        // Modules are named as the target sees them, as the interpreter's binary is.
        for frame in mixed.iter_mut().flat_map(|t| t.frames.iter_mut()) {
            if let native::MixedFrame::Native { module: Some(module), .. } = frame {
                *module = crate::target::inside_root(module, root.as_deref());
            }
        }
        if opts.json {
            printer.json(&Report { about, native: true, threads: &mixed[..], tasks: None })?;
        } else {
            printer.write_str(&native_dump_text(&header, &mixed, locals))?;
        }
    } else if opts.json {
        printer.json(&Report {
            about,
            native: false,
            threads: &snapshot.threads[..],
            tasks: tasks.as_deref(),
        })?;
    } else {
        let text = match (opts.tasks, &tasks) {
            (Some(TasksForm::List), Some(tasks)) => tasks_list(&header, tasks),
            (Some(TasksForm::Table), Some(tasks)) => tasks_table(&header, tasks),
            (Some(TasksForm::Tree), Some(tasks)) => tasks_tree(&header, tasks)?,
            _ => dump_text(&header, &snapshot, locals),
        };
        printer.write_str(&text)?;
    }
    printer.flush()?;
    if opts.core.is_none() {
        dump_others(&opts, printer)?;
    }
    match (&opts.core, truncated) {
        (Some(path), Some(t)) => {
            Err(anyhow!("{}; the stacks shown are partial", truncation_message(path, t)))
        }
        _ => Ok(()),
    }
}

fn source_note(source: &str, truncated: Option<Truncated>) -> &'static str {
    match (source, truncated) {
        ("core", None) => " [core file]",
        ("core", Some(_)) => " [truncated core file: partial stacks]",
        _ => "",
    }
}

/// One thread's native stack, with what is known of a thread that may run no Python.
struct ThreadStack {
    /// The thread's id as the target's PID namespace numbers it (as Python's thread states do).
    tid: i32,
    name: Option<String>,
    state: ThreadState,
    stack: NativeStack,
}

/// Every live thread's native stack, each thread stopped only while it is unwound (unless
/// `frozen` holds the whole process).
fn live_stacks(live: &Live, frozen: Option<&Freeze>) -> Result<Vec<ThreadStack>> {
    let pid = live.pid;
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let open = |p: &str| live.open_mapped(p);
    let mut modules = Modules::new(&live.maps, &open, Some(&root));
    let namespace: HashMap<i32, i32> = live.ns_tids.iter().map(|(&ns, &host)| (host, ns)).collect();
    let mut out = Vec::new();
    for tid in pymri_memory::thread_ids(pid)? {
        // Read before the thread is stopped, which would show it stopped, then running.
        let state = match pymri_memory::thread_run_state(pid, tid) {
            Some(pymri_memory::RunState::Running) => ThreadState::Running,
            Some(_) => ThreadState::Idle,
            None => ThreadState::Unknown,
        };
        let stack = match native::unwind_live(&mut modules, &live.mem, pid, tid, frozen) {
            Ok(stack) => stack,
            // Another tracer (a debugger, strace) holds the thread: only its stack is lost.
            Err(MemoryError::PermissionDenied { .. }) if tracer_of(pid, tid).is_some() => NativeStack {
                frames: Vec::new(),
                error: Some(format!(
                    "native stack not read: the thread is traced by process {}",
                    tracer_of(pid, tid).unwrap_or_default()
                )),
            },
            Err(e @ MemoryError::PermissionDenied { .. }) => return Err(e.into()),
            // The thread ended between listing and stopping it.
            Err(_) if !pymri_memory::process_exists(pid) => return Err(MemoryError::Exited { pid }.into()),
            Err(_) if !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() => continue,
            Err(e) => NativeStack { frames: Vec::new(), error: Some(format!("cannot unwind: {e}")) },
        };
        let name = pymri_memory::read_proc(&format!("/proc/{pid}/task/{tid}/comm"))
            .ok()
            .map(|n| n.trim_end_matches('\n').to_string());
        out.push(ThreadStack { tid: namespace.get(&tid).copied().unwrap_or(tid), name, state, stack });
    }
    Ok(out)
}

/// The process tracing thread `tid`, if one does.
fn tracer_of(pid: i32, tid: i32) -> Option<i32> {
    let status = pymri_memory::read_proc(&format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let tracer: i32 = status.lines().find_map(|l| l.strip_prefix("TracerPid:"))?.trim().parse().ok()?;
    (tracer != 0).then_some(tracer)
}

/// Every thread of a core, unwound from the registers it recorded.
fn core_stacks(core: &Core, sysroot: Option<&std::path::Path>) -> Vec<ThreadStack> {
    let open = |p: &str| core.core.open_mapped_file(p);
    let root = sysroot.unwrap_or(std::path::Path::new("/"));
    let mut modules = Modules::new(core.core.mappings(), &open, Some(root));
    core.core
        .threads()
        .iter()
        .map(|t| {
            let stack = match t.registers {
                Some(registers) => native::unwind(&mut modules, &core.core, registers),
                None => NativeStack {
                    frames: Vec::new(),
                    error: Some("the core records no registers for this thread".into()),
                },
            };
            ThreadStack { tid: t.tid, name: None, state: ThreadState::Unknown, stack }
        })
        .collect()
}

/// Python's threads with their native stacks merged in, then (with `all`) the threads that run
/// no Python; the thread that received a core's signal first.
fn mixed_threads(
    threads: Vec<ThreadDump>,
    natives: Vec<ThreadStack>,
    all: bool,
    signal: Option<&SignalReport>,
) -> Vec<MixedThread> {
    let mut natives: Vec<Option<ThreadStack>> = natives.into_iter().map(Some).collect();
    let mut take = |tid: Option<i32>| {
        let tid = tid?;
        natives.iter_mut().find(|n| n.as_ref().is_some_and(|n| n.tid == tid))?.take()
    };
    let mut out: Vec<MixedThread> = threads
        .into_iter()
        .map(|t| {
            let stack = take(t.tid).map(|n| n.stack);
            native::mixed(t, stack)
        })
        .collect();
    if all {
        out.extend(
            natives.into_iter().flatten().map(|n| native::native_only(n.tid, n.name, n.state, n.stack)),
        );
    }
    if let Some(s) = signal {
        if let Some(i) = out.iter().position(|t| t.tid == Some(s.thread)) {
            out[..=i].rotate_right(1);
        }
    }
    out
}

fn truncation_message(path: &std::path::Path, t: Truncated) -> String {
    format!(
        "core file {} is truncated: {} of {} bytes ({} missing)",
        path.display(),
        t.present_bytes,
        t.expected_bytes,
        t.expected_bytes - t.present_bytes
    )
}

/// The processes dumped after `pid`: its descendants that run Python (children first), the
/// other pids given, and the Python processes `--match` finds, each once, in that order.
fn others(opts: &DumpOptions) -> Vec<i32> {
    let mut seen: std::collections::HashSet<i32> = opts.pid.into_iter().collect();
    let mut pids = Vec::new();
    let mut add = |pid: i32, pids: &mut Vec<i32>| {
        if seen.insert(pid) {
            pids.push(pid);
        }
    };
    for &pid in opts.pid.iter().chain(&opts.more) {
        add(pid, &mut pids);
        if opts.subprocesses {
            for child in crate::commands::family::descendants(pid) {
                if runs_python(child) {
                    add(child, &mut pids);
                }
            }
        }
    }
    if let Some(pattern) = &opts.matching {
        for pid in python_processes() {
            if pattern.is_match(&pymri_cpython::command_line(pid)) {
                add(pid, &mut pids);
            }
        }
    }
    pids
}

fn runs_python(pid: i32) -> bool {
    Live::open(pid).ok().and_then(|live| live.locate().ok()).is_some()
}

/// Every process here that runs Python, pymri itself aside.
fn python_processes() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids.into_iter().filter(|&p| p != me && runs_python(p)).collect()
}

/// Dumps each of [`others`] in turn. One that exited meanwhile or cannot be read is named on
/// stderr and the rest are still dumped.
fn dump_others(opts: &DumpOptions, printer: &mut Printer) -> Result<()> {
    for pid in others(opts) {
        if !opts.json {
            printer.write_str("\n")?;
        }
        let one = DumpOptions {
            pid: Some(pid),
            subprocesses: false,
            more: Vec::new(),
            matching: None,
            ..opts.clone()
        };
        if let Err(e) = run(one, printer) {
            crate::printer::note(&format!("warning: process {pid} could not be dumped: {e:#}"));
        }
    }
    Ok(())
}

/// `--group`: every process's stacks read, then folded.
fn grouped(opts: &DumpOptions, printer: &mut Printer) -> Result<()> {
    use crate::commands::group;
    let pids: Vec<i32> = opts.pid.into_iter().chain(others(opts)).collect();
    if pids.is_empty() {
        return Err(no_match().into());
    }
    let mut processes = Vec::with_capacity(pids.len());
    for pid in pids {
        let read = || -> Result<group::Process> {
            let live = Live::open(pid)?;
            let located = live.locate()?;
            let snapshot = {
                let _freeze = if opts.blocking { Some(Freeze::new(pid)?) } else { None };
                Sampler::new(&live, &located).sample(&SampleOptions::default())?
            };
            Ok(group::Process {
                host: None,
                pid: pid.into(),
                rank: group::rank(pid, &live.command),
                threads: snapshot
                    .threads
                    .iter()
                    .map(|t| group::Thread {
                        tid: t.tid.map(i64::from),
                        name: t.name.clone(),
                        frames: t
                            .frames
                            .iter()
                            .map(|f| group::Frame {
                                function: f.function.clone(),
                                file: f.file.clone(),
                                line: f.line.into(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
        };
        match read() {
            Ok(p) => processes.push(p),
            // The first process is the one asked for by name: its failure is the command's.
            Err(e) if processes.is_empty() && Some(pid) == opts.pid => return Err(e),
            Err(e) => crate::printer::note(&format!("warning: process {pid} could not be read: {e:#}")),
        }
    }
    let g = group::group(&processes);
    if opts.json {
        printer.json(&g)?;
    } else {
        printer.write_str(&group::text(&g))?;
    }
    printer.flush()
}

/// This machine's name, as the kernel keeps it (`uname -n`).
fn host_name() -> String {
    pymri_memory::read_proc("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// `--match` found nothing: a missing target, as for a pid that does not exist.
fn no_match() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, "no Python process's command line matches --match")
}
