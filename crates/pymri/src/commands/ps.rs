//! `pymri ps`: the Python processes on this machine.

use crate::escape;
use crate::printer::{note, Printer};
use anyhow::Result;
use pymri_cpython::LiveProcess as Live;
use pymri_memory::MemoryError;
use serde::Serialize;

pub struct PsOptions {
    pub json: bool,
}

#[derive(Serialize)]
struct Entry {
    pid: i32,
    python_version: String,
    python_binary: String,
    command: String,
    /// The root directory the process runs in, when it is not `/`.
    root: Option<String>,
    /// 3.14+: whether PEP 768 remote debugging is enabled, read from the process's memory;
    /// `null` for versions without it.
    remote_debug: Option<bool>,
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
        python_version: located.version.to_string(),
        remote_debug: located.remote_debug_enabled(&live.mem).ok().flatten(),
        python_binary: crate::target::inside_root(&located.binary, root.as_deref()),
        command: live.command,
        root,
    }))
}

fn table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.pid.to_string(),
                e.python_version.clone(),
                match e.remote_debug {
                    Some(true) => "enabled".into(),
                    Some(false) => "disabled".into(),
                    None => "-".into(),
                },
                e.root.as_deref().map_or_else(|| "/".into(), |r| escape::name(r).into_owned()),
                escape::name(&e.command).into_owned(),
            ]
        })
        .collect();
    let titles = ["PID", "PYTHON", "REMOTE-DEBUG", "ROOT", "COMMAND"];
    let mut widths = titles.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        for (i, cell) in cells.iter().enumerate() {
            if i == 4 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(titles);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}
