//! The text layout of `pymri dump`, in py-spy's shape. Every string read from the target is
//! shown as a [`Name`]: on one line, nothing in it a terminal acts on.

use crate::escape::Name;
use pymri_cpython::{Snapshot, ThreadDump};
use std::fmt::Write;

pub struct Header<'a> {
    pub pid: i32,
    pub command: &'a str,
    pub version: &'a str,
    pub debug: bool,
    pub binary: &'a str,
    pub root: Option<&'a str>,
    pub source: &'a str,
}

pub fn dump_text(header: &Header<'_>, snapshot: &Snapshot, locals: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Process {}: {}", header.pid, Name(header.command));
    let debug = if header.debug { " (debug build)" } else { "" };
    let _ = write!(out, "Python v{}{debug} ({}", Name(header.version), Name(header.binary));
    if let Some(root) = header.root {
        let _ = write!(out, " in root {}", Name(root));
    }
    let _ = writeln!(out, "){}", header.source);
    for thread in &snapshot.threads {
        out.push('\n');
        thread_text(&mut out, thread, locals);
    }
    out
}

fn thread_text(out: &mut String, thread: &ThreadDump, locals: bool) {
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
    out.push('\n');
    for frame in &thread.frames {
        let _ = writeln!(out, "    {} ({}:{})", Name(&frame.function), Name(&frame.file), frame.line);
        if !locals {
            continue;
        }
        let Some(vars) = &frame.locals else { continue };
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
    if let Some(error) = &thread.error {
        let _ = writeln!(out, "    [{}]", Name(error));
    }
}
