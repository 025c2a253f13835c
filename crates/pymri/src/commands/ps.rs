//! `pymri ps`: the Python processes on this machine.

use crate::escape;
use crate::printer::{note, Printer};
use anyhow::Result;
use pymri_cpython::LiveProcess as Live;
use pymri_memory::MemoryError;
use serde::Serialize;

pub struct PsOptions {
    pub json: bool,
    /// Each process under its nearest Python ancestor (workers under their master).
    pub tree: bool,
}

/// Parents followed up from a process to find its nearest Python ancestor.
const MAX_ANCESTORS: usize = 64;

#[derive(Serialize)]
struct Entry {
    pid: i32,
    /// The parent process (`null` when it could not be read).
    ppid: Option<i32>,
    /// With `--tree`: the nearest ancestor that is listed too, and how deep the process is.
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<TreePlace>,
    python_version: String,
    python_binary: String,
    command: String,
    /// The root directory the process runs in, when it is not `/`.
    root: Option<String>,
    /// 3.14+: whether PEP 768 remote debugging is enabled, read from the process's memory;
    /// `null` for versions without it.
    remote_debug: Option<bool>,
}

#[derive(Serialize, Clone, Copy)]
struct TreePlace {
    /// `null` for a process no listed process started.
    parent: Option<i32>,
    depth: usize,
}

pub fn run(opts: PsOptions, printer: &mut Printer) -> Result<()> {
    let me = std::process::id() as i32;
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&p| p != me)
        .collect();
    pids.sort_unstable();
    let mut entries = Vec::new();
    let mut denied = Denied::default();
    for pid in pids {
        // Cheap filter before any memory read: an interpreter maps python3.X or libpython3.X.
        let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            Ok(maps) => maps,
            // The maps of a process we may not trace are closed to us too: its command line
            // (readable by anyone) is the only sign that it is Python.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                if looks_like_python(pid) {
                    denied.add(pid, pymri_memory::diagnose_permission(pid));
                }
                continue;
            }
            Err(_) => continue,
        };
        if !maps.contains("python3") {
            continue;
        }
        match inspect(pid) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(e) => {
                if let Some(cause) = e.chain().find_map(|c| match c.downcast_ref::<MemoryError>() {
                    Some(MemoryError::PermissionDenied { cause, .. }) => Some(cause.clone()),
                    _ => None,
                }) {
                    denied.add(pid, cause);
                }
            }
        }
    }
    if opts.tree {
        entries = as_tree(entries);
    }
    if opts.json {
        printer.json(&entries)?;
    } else {
        printer.write_str(&table(&entries))?;
    }
    printer.flush()?;
    denied.report();
    Ok(())
}

/// Python processes that could not be read, grouped by why.
#[derive(Default)]
struct Denied(Vec<(String, Vec<i32>)>);

impl Denied {
    fn add(&mut self, pid: i32, cause: pymri_memory::PermissionCause) {
        let why = cause.to_string();
        match self.0.iter_mut().find(|(w, _)| *w == why) {
            Some((_, pids)) => pids.push(pid),
            None => self.0.push((why, vec![pid])),
        }
    }

    /// One `warning:` per cause, with `dump`'s explanation and hint for it.
    fn report(&self) {
        for (why, pids) in &self.0 {
            let list: Vec<String> = pids.iter().map(i32::to_string).collect();
            let what = match pids.len() {
                1 => "1 Python process is".to_owned(),
                n => format!("{n} Python processes are"),
            };
            note(&format!(
                "warning: {what} not listed: permission denied reading pid {}: {why}",
                list.join(", ")
            ));
        }
    }
}

/// Whether `pid` runs a Python interpreter, judged by its program name alone.
fn looks_like_python(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let name = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
    name.starts_with(b"python") || comm.starts_with(b"python")
}

fn inspect(pid: i32) -> Result<Option<Entry>> {
    let live = Live::open(pid)?;
    let Ok(located) = live.locate() else { return Ok(None) };
    let root = live.root.map(|r| r.display().to_string());
    Ok(Some(Entry {
        pid,
        ppid: pymri_memory::parent_pid(pid),
        tree: None,
        python_version: located.version.to_string(),
        remote_debug: located.remote_debug_enabled(&live.mem).ok().flatten(),
        python_binary: crate::target::inside_root(&located.binary, root.as_deref()),
        command: live.command,
        root,
    }))
}

/// The entries in tree order: each process after its nearest listed ancestor, children by pid.
fn as_tree(entries: Vec<Entry>) -> Vec<Entry> {
    let listed: std::collections::HashSet<i32> = entries.iter().map(|e| e.pid).collect();
    let parent_of = |e: &Entry| {
        let mut pid = e.ppid;
        for _ in 0..MAX_ANCESTORS {
            match pid {
                Some(p) if listed.contains(&p) => return Some(p),
                Some(p) if p > 1 => pid = pymri_memory::parent_pid(p),
                _ => return None,
            }
        }
        None
    };
    let parents: Vec<Option<i32>> = entries.iter().map(parent_of).collect();
    let mut children: std::collections::BTreeMap<Option<i32>, Vec<usize>> = Default::default();
    for (i, parent) in parents.iter().enumerate() {
        children.entry(*parent).or_default().push(i);
    }
    let mut order = Vec::with_capacity(entries.len());
    // Depth first; a parent loop (pids reused while listing) cannot make a process appear twice.
    let mut placed = vec![false; entries.len()];
    let mut stack: Vec<(usize, usize)> =
        children.get(&None).into_iter().flatten().rev().map(|&i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut placed[i], true) {
            continue;
        }
        order.push((i, depth));
        if let Some(kids) = children.get(&Some(entries[i].pid)) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    // Processes only reachable through a loop: at the top, in pid order.
    order.extend((0..entries.len()).filter(|&i| !placed[i]).map(|i| (i, 0)));
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, depth)| {
            let mut e = slots[i].take()?;
            e.tree = Some(TreePlace { parent: parents[i], depth });
            Some(e)
        })
        .collect()
}

fn table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            let indent = match e.tree {
                Some(TreePlace { depth: d @ 1.., .. }) => format!("{}\\_ ", "    ".repeat(d - 1)),
                _ => String::new(),
            };
            [
                e.pid.to_string(),
                e.ppid.map_or_else(|| "-".into(), |p| p.to_string()),
                e.python_version.clone(),
                match e.remote_debug {
                    Some(true) => "enabled".into(),
                    Some(false) => "disabled".into(),
                    None => "-".into(),
                },
                e.root.as_deref().map_or_else(|| "/".into(), |r| escape::name(r).into_owned()),
                format!("{indent}{}", escape::name(&e.command)),
            ]
        })
        .collect();
    let titles = ["PID", "PPID", "PYTHON", "REMOTE-DEBUG", "ROOT", "COMMAND"];
    let mut widths = titles.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        for (i, cell) in cells.iter().enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(titles);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
    out
}
