//! `pymri dump`: every thread's Python stack of a live process or a core file.

use crate::printer::Printer;
use crate::render::{dump_text, Header};
use crate::target::Core;
use anyhow::{anyhow, Result};
use pymri_cpython::LiveProcess as Live;
use pymri_cpython::{SampleOptions, Sampler, SnapshotOptions, ThreadDump};
use pymri_memory::Freeze;
use serde::Serialize;
use std::path::PathBuf;

pub struct DumpOptions {
    pub pid: Option<i32>,
    pub core: Option<PathBuf>,
    pub exe: Option<PathBuf>,
    pub sysroot: Option<PathBuf>,
    pub locals: bool,
    pub json: bool,
    pub blocking: bool,
}

/// The `--json` document. `schema` changes only when a field changes meaning or disappears.
#[derive(Serialize)]
struct Report<'a> {
    schema: u32,
    pid: i32,
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
    threads: &'a [ThreadDump],
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
    let locals = opts.locals;
    let mut truncated = None;
    let mut signal = None;
    let (header_pid, command, root, source, located, snapshot) = match (&opts.core, opts.pid) {
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
            let options = SnapshotOptions { locals, known_tids: &tids, ..SnapshotOptions::default() };
            let snapshot = located.snapshot(&core.core, &options).map_err(|e| fail(e.into()))?;
            let root = opts.sysroot.as_ref().map(|p| p.display().to_string());
            (core.core.pid(), core.core.command().to_string(), root, "core", located, snapshot)
        }
        (None, Some(pid)) => {
            let live = Live::open(pid)?;
            let located = live.locate()?;
            let mut sampler = Sampler::new(&live, &located);
            // The freeze lives exactly as long as the read; dropping it resumes every thread,
            // and if pymri dies instead the kernel resumes them (see pymri_memory::Freeze).
            let snapshot = {
                let _freeze = if opts.blocking { Some(Freeze::new(pid)?) } else { None };
                sampler.sample(&SampleOptions { locals, ..SampleOptions::default() })?
            };
            let root = live.root.as_ref().map(|p| p.display().to_string());
            (pid, live.command.clone(), root, "live", located, snapshot)
        }
        (None, None) => anyhow::bail!("give a process id or --core FILE"),
    };
    let mut snapshot = snapshot;
    signalled_first(&mut snapshot.threads, signal.as_ref());
    let version = located.version.to_string();
    let binary = crate::target::inside_root(&located.binary, root.as_deref());
    if opts.json {
        let report = Report {
            schema: 1,
            pid: header_pid,
            command: &command,
            python_version: version,
            debug_build: located.version.debug_build,
            python_binary: &binary,
            root,
            source,
            blocking: opts.blocking,
            truncated,
            signal: signal.clone(),
            threads: &snapshot.threads,
        };
        printer.json(&report)?;
    } else {
        let header = Header {
            pid: header_pid,
            command: &command,
            version: &version,
            debug: located.version.debug_build,
            binary: &binary,
            root: root.as_deref(),
            source: match (source, truncated) {
                ("core", None) => " [core file]",
                ("core", Some(_)) => " [truncated core file: partial stacks]",
                _ => "",
            },
            signal: signal.as_ref(),
        };
        printer.write_str(&dump_text(&header, &snapshot, locals))?;
    }
    printer.flush()?;
    match (&opts.core, truncated) {
        (Some(path), Some(t)) => {
            Err(anyhow!("{}; the stacks shown are partial", truncation_message(path, t)))
        }
        _ => Ok(()),
    }
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
