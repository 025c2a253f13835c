//! The text layout of `pymri dump`, in py-spy's shape. Every string read from the target is
//! shown as a [`Name`]: on one line, nothing in it a terminal acts on.

use crate::commands::dump::SignalReport;
use crate::escape::Name;
use crate::native::{MixedFrame, MixedThread};
use pymri_cpython::{Frame, Snapshot, TaskDump, ThreadDump};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

pub struct Header<'a> {
    pub pid: i32,
    pub command: &'a str,
    pub version: &'a str,
    pub debug: bool,
    pub binary: &'a str,
    pub root: Option<&'a str>,
    pub source: &'a str,
    /// The signal a core records, said under the header and marked on its thread.
    pub signal: Option<&'a SignalReport>,
}

pub fn dump_text(header: &Header<'_>, snapshot: &Snapshot, locals: bool) -> String {
    let mut out = header_text(header);
    for thread in &snapshot.threads {
        out.push('\n');
        thread_text(&mut out, thread, locals, header.signal);
    }
    out
}

/// `dump --native`: Python frames as `dump` shows them, native ones as
/// `(native) symbol+0x12 in libfoo.so`.
pub fn native_dump_text(header: &Header<'_>, threads: &[MixedThread], locals: bool) -> String {
    let mut out = header_text(header);
    for thread in threads {
        out.push('\n');
        match thread.tid {
            Some(tid) => {
                let _ = write!(out, "Thread {tid}");
            }
            None => {
                let _ = write!(out, "Thread {:#x}", thread.ident.unwrap_or_default());
            }
        }
        let no_python = if thread.python { "" } else { ", no Python" };
        let _ = write!(out, " ({}{no_python})", thread.state.describe());
        if let Some(name) = &thread.name {
            let _ = write!(out, ": \"{}\"", Name(name));
        }
        out.push_str(&signal_mark(thread.tid, header.signal));
        out.push('\n');
        for frame in &thread.frames {
            match frame {
                MixedFrame::Python(frame) => frame_text(&mut out, frame, locals),
                MixedFrame::Native { address, symbol, offset, module } => {
                    let file = module.as_deref().map(|m| m.rsplit('/').next().unwrap_or(m));
                    let _ = match (symbol, file) {
                        (Some(symbol), Some(file)) => {
                            writeln!(out, "    (native) {}+{offset:#x} in {}", Name(symbol), Name(file))
                        }
                        (None, Some(file)) => {
                            writeln!(out, "    (native) {address:#x} in {}+{offset:#x}", Name(file))
                        }
                        (_, None) => writeln!(out, "    (native) {address:#x}"),
                    };
                }
            }
        }
        if let Some(error) = &thread.error {
            let _ = writeln!(out, "    [{}]", Name(error));
        }
    }
    out
}

fn header_text(header: &Header<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Process {}: {}", header.pid, Name(header.command));
    let debug = if header.debug { " (debug build)" } else { "" };
    let _ = write!(out, "Python v{}{debug} ({}", Name(header.version), Name(header.binary));
    if let Some(root) = header.root {
        let _ = write!(out, " in root {}", Name(root));
    }
    let _ = writeln!(out, "){}", header.source);
    if let Some(signal) = header.signal {
        signal_line(&mut out, signal);
    }
    out
}

/// `Signal: SIGSEGV (SEGV_MAPERR) at address 0x0, received by thread 1234`.
pub fn signal_line(out: &mut String, signal: &SignalReport) {
    let _ = write!(out, "Signal: {}", signal.name);
    if let Some(code) = signal.code {
        match signal.code_name {
            Some(name) => {
                let _ = write!(out, " ({name})");
            }
            None => {
                let _ = write!(out, " (si_code {code})");
            }
        }
    }
    if let Some(address) = signal.address {
        let _ = write!(out, " at address {address:#x}");
    }
    if let (Some(pid), Some(uid)) = (signal.sender_pid, signal.sender_uid) {
        let _ = write!(out, " sent by process {pid} (uid {uid})");
    }
    let _ = write!(out, ", received by thread {}", signal.thread);
    if matches!(signal.number, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
        out.push_str(" (a stop, not a crash: the core of a process that kept running, as gcore writes)");
    }
    out.push('\n');
}

/// ` [received SIGSEGV]` after the thread that received the core's signal.
pub fn signal_mark(tid: Option<i32>, signal: Option<&SignalReport>) -> String {
    match signal {
        Some(s) if tid == Some(s.thread) => format!(" [received {}]", s.name),
        _ => String::new(),
    }
}

fn frame_text(out: &mut String, frame: &Frame, locals: bool) {
    let _ = writeln!(out, "    {} ({}:{})", Name(&frame.function), Name(&frame.file), frame.line);
    if !locals {
        return;
    }
    let Some(vars) = &frame.locals else { return };
    let (args, rest): (Vec<_>, Vec<_>) = vars.iter().partition(|l| l.is_argument);
    for (title, group) in [("Arguments", args), ("Locals", rest)] {
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "        {title}:");
        for l in group {
            let _ = writeln!(out, "            {}: {}", Name(&l.name), Name(&l.repr));
        }
    }
}

fn thread_text(out: &mut String, thread: &ThreadDump, locals: bool, signal: Option<&SignalReport>) {
    match thread.tid {
        Some(tid) => {
            let _ = write!(out, "Thread {tid}");
        }
        None => {
            let _ = write!(out, "Thread {:#x}", thread.ident);
        }
    }
    let _ = write!(out, " ({})", thread.state.describe());
    if let Some(name) = &thread.name {
        let _ = write!(out, ": \"{}\"", Name(name));
    }
    out.push_str(&signal_mark(thread.tid, signal));
    out.push('\n');
    for frame in &thread.frames {
        frame_text(out, frame, locals);
    }
    if let Some(error) = &thread.error {
        let _ = writeln!(out, "    [{}]", Name(error));
    }
}

/// `function (file:line)`, one line.
fn frame_place(frame: &Frame) -> String {
    format!("{} ({}:{})", Name(&frame.function), Name(&frame.file), frame.line)
}

/// `NAME (0xID)`, how one task names another.
fn task_label(task: &TaskDump) -> String {
    format!("\"{}\" ({:#x})", Name(&task.name), task.id)
}

/// `dump --tasks`: each task with its state, running thread, awaiters and stack.
pub fn tasks_list(header: &Header<'_>, tasks: &[TaskDump]) -> String {
    let mut out = header_text(header);
    let by_id: HashMap<u64, &TaskDump> = tasks.iter().map(|t| (t.id, t)).collect();
    if tasks.is_empty() {
        out.push_str("\nNo asyncio tasks.\n");
    }
    for task in tasks {
        let _ = write!(out, "\nTask {:#x} ({}): \"{}\"", task.id, task.state.describe(), Name(&task.name));
        if let Some(on) = task.running_on {
            match on.tid {
                Some(tid) => {
                    let _ = write!(out, ", running on thread {tid}");
                }
                None => {
                    let _ = write!(out, ", running on thread {:#x}", on.ident);
                }
            }
        }
        out.push('\n');
        if !task.awaited_by.is_empty() {
            let names: Vec<String> =
                task.awaited_by.iter().filter_map(|id| by_id.get(id)).map(|t| task_label(t)).collect();
            let _ = writeln!(out, "    awaited by {}", names.join(", "));
        }
        for frame in &task.frames {
            let _ = writeln!(out, "    {}", frame_place(frame));
        }
        if let Some(error) = &task.error {
            let _ = writeln!(out, "    [{}]", Name(error));
        }
    }
    out
}

/// `dump --tasks=table`: one line a task, like `python -m asyncio ps`.
pub fn tasks_table(header: &Header<'_>, tasks: &[TaskDump]) -> String {
    let mut out = header_text(header);
    out.push('\n');
    let by_id: HashMap<u64, &TaskDump> = tasks.iter().map(|t| (t.id, t)).collect();
    let rows: Vec<[String; 6]> = tasks
        .iter()
        .map(|t| {
            let thread = match t.running_on {
                Some(on) => on.tid.map_or_else(|| format!("{:#x}", on.ident), |tid| tid.to_string()),
                None => "-".into(),
            };
            let stack: Vec<String> = t.frames.iter().map(|f| Name(&f.function).to_string()).collect();
            let awaiters: Vec<String> =
                t.awaited_by.iter().filter_map(|id| by_id.get(id)).map(|a| task_label(a)).collect();
            [
                format!("{:#x}", t.id),
                Name(&t.name).to_string(),
                t.state.describe().to_string(),
                thread,
                if stack.is_empty() { "-".into() } else { stack.join(" <- ") },
                if awaiters.is_empty() { "-".into() } else { awaiters.join(", ") },
            ]
        })
        .collect();
    let titles = ["TASK", "NAME", "STATE", "THREAD", "COROUTINE STACK (innermost first)", "AWAITED BY"];
    let mut widths = titles.map(|t| t.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String], out: &mut String| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&titles.map(String::from), &mut out);
    for row in &rows {
        line(row, &mut out);
    }
    out
}

/// An await cycle: the tasks cannot be drawn as a tree.
#[derive(Debug)]
pub struct AwaitCycle {
    cycle: String,
}

impl std::fmt::Display for AwaitCycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the tasks await each other in a cycle, which a tree cannot show: {}\nhint: --tasks=table and --tasks=list show every task with what awaits it",
            self.cycle
        )
    }
}

impl std::error::Error for AwaitCycle {}

/// `dump --tasks=tree`: each task under the tasks that await it, like
/// `python -m asyncio pstree`; an await cycle is an error naming it.
pub fn tasks_tree(header: &Header<'_>, tasks: &[TaskDump]) -> Result<String, AwaitCycle> {
    let by_id: HashMap<u64, &TaskDump> = tasks.iter().map(|t| (t.id, t)).collect();
    // Children of a task: the tasks it awaits.
    let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
    for t in tasks {
        for by in t.awaited_by.iter().filter(|id| by_id.contains_key(id)) {
            children.entry(*by).or_default().push(t.id);
        }
    }
    if let Some(cycle) = find_cycle(tasks, &children) {
        let names: Vec<String> = cycle.iter().map(|id| task_label(by_id[id])).collect();
        return Err(AwaitCycle { cycle: names.join(" awaits ") });
    }
    let mut out = header_text(header);
    out.push('\n');
    let roots: Vec<&TaskDump> =
        tasks.iter().filter(|t| !t.awaited_by.iter().any(|id| by_id.contains_key(id))).collect();
    if roots.is_empty() {
        out.push_str("No asyncio tasks.\n");
    }
    for (i, root) in roots.iter().enumerate() {
        tree_node(&mut out, root, &by_id, &children, "", i + 1 == roots.len());
    }
    Ok(out)
}

fn tree_node(
    out: &mut String,
    task: &TaskDump,
    by_id: &HashMap<u64, &TaskDump>,
    children: &HashMap<u64, Vec<u64>>,
    prefix: &str,
    last: bool,
) {
    let (branch, inner) = if last { ("└── ", "    ") } else { ("├── ", "│   ") };
    let _ = writeln!(out, "{prefix}{branch}(T) {} [{}]", task_label(task), task.state.describe());
    let inner = format!("{prefix}{inner}");
    let kids = children.get(&task.id).map(Vec::as_slice).unwrap_or_default();
    let bar = if kids.is_empty() { " " } else { "│" };
    // Outermost first: the order the coroutines called one another.
    for frame in task.frames.iter().rev() {
        let _ = writeln!(out, "{inner}{bar}   {}", frame_place(frame));
    }
    for (i, kid) in kids.iter().enumerate() {
        tree_node(out, by_id[kid], by_id, children, &inner, i + 1 == kids.len());
    }
}

/// A cycle among the await edges, as the tasks along it (the first repeated at the end).
fn find_cycle(tasks: &[TaskDump], children: &HashMap<u64, Vec<u64>>) -> Option<Vec<u64>> {
    let mut done = HashSet::new();
    for start in tasks {
        if done.contains(&start.id) {
            continue;
        }
        // Iterative depth-first search: the path and, for each step, the next child to visit.
        let mut path: Vec<(u64, usize)> = vec![(start.id, 0)];
        let mut on_path: HashSet<u64> = HashSet::from([start.id]);
        while let Some((node, next)) = path.last_mut() {
            let kids = children.get(node).map(Vec::as_slice).unwrap_or_default();
            match kids.get(*next) {
                Some(&kid) => {
                    *next += 1;
                    if on_path.contains(&kid) {
                        let from = path.iter().position(|(n, _)| *n == kid).unwrap_or(0);
                        let mut cycle: Vec<u64> = path[from..].iter().map(|(n, _)| *n).collect();
                        cycle.push(kid);
                        return Some(cycle);
                    }
                    if !done.contains(&kid) {
                        on_path.insert(kid);
                        path.push((kid, 0));
                    }
                }
                None => {
                    let id = *node;
                    on_path.remove(&id);
                    done.insert(id);
                    path.pop();
                }
            }
        }
    }
    None
}
