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
    let mut denied = 0;
    for pid in pids {
        // Cheap filter before any memory read: an interpreter maps python3.X or libpython3.X.
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { continue };
        if !maps.contains("python3") {
            continue;
        }
        match inspect(pid) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(e)
                if e.chain().any(|c| {
                    matches!(c.downcast_ref::<MemoryError>(), Some(MemoryError::PermissionDenied { .. }))
                }) =>
            {
                denied += 1
            }
            Err(_) => {}
        }
    }
    if opts.json {
        printer.json(&entries)?;
    } else {
        printer.write_str(&table(&entries))?;
    }
    printer.flush()?;
    if denied > 0 {
        note(&format!(
            "{denied} Python process(es) could not be read (permission denied)\nhint: run pymri with sudo to see them"
        ));
    }
    Ok(())
}

fn inspect(pid: i32) -> Result<Option<Entry>> {
    let live = Live::open(pid)?;
    let Ok(located) = live.locate() else { return Ok(None) };
    Ok(Some(Entry {
        pid,
        python_version: located.version.to_string(),
        remote_debug: located.remote_debug_enabled(&live.mem).ok().flatten(),
        python_binary: located.binary,
        command: live.command,
        root: live.root.map(|r| r.display().to_string()),
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
