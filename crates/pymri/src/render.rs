//! The text layout of `pymri dump`, in py-spy's shape. Every string read from the target is
//! shown as a [`Name`]: on one line, nothing in it a terminal acts on.

use crate::commands::dump::SignalReport;
use crate::escape::Name;
use crate::native::{MixedFrame, MixedThread};
use pymri_cpython::{Frame, Snapshot, ThreadDump};
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
