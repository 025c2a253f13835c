//! `pymri dump`: every thread's Python stack of a live process or a core file.

use crate::printer::Printer;
use crate::render::{dump_text, tasks_list, tasks_table, tasks_tree, Header};
use crate::target::Core;
use anyhow::{anyhow, Result};
use pymri_cpython::LiveProcess as Live;
use pymri_cpython::{SampleOptions, Sampler, SnapshotOptions, TaskDump, ThreadDump};
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
    /// Read the asyncio tasks too, and show them in this form instead of the threads.
    pub tasks: Option<TasksForm>,
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
    threads: &'a [ThreadDump],
    /// With `--tasks`: every asyncio task.
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<&'a [TaskDump]>,
}

#[derive(Serialize, Clone, Copy)]
struct Truncated {
    present_bytes: u64,
    expected_bytes: u64,
}

pub fn run(opts: DumpOptions, printer: &mut Printer) -> Result<()> {
    let locals = opts.locals;
    let mut truncated = None;
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
            let located = core.locate().map_err(fail)?;
            let tids = core.known_tids();
            let options = SnapshotOptions { locals, known_tids: &tids, ..SnapshotOptions::default() };
            let snapshot = located.snapshot(&core.core, &options).map_err(|e| fail(e.into()))?;
            let tasks = match opts.tasks {
                Some(_) => Some(
                    core.with_files(|files| located.tasks(&core.core, files, &options))
                        .map_err(|e| fail(e.into()))?,
                ),
                None => None,
            };
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
                let _freeze = if opts.blocking { Some(Freeze::new(pid)?) } else { None };
                let snapshot = sampler.sample(&SampleOptions { locals, ..SampleOptions::default() })?;
                let tasks = match opts.tasks {
                    Some(_) => {
                        let tids = live.known_tids();
                        let options =
                            SnapshotOptions { known_tids: &tids, live: true, ..SnapshotOptions::default() };
                        Some(live.with_files(|files| located.tasks(&live.mem, files, &options))?)
                    }
                    None => None,
                };
                (snapshot, tasks)
            };
            let root = live.root.as_ref().map(|p| p.display().to_string());
            (pid, live.command.clone(), root, "live", located, snapshot, tasks)
        }
        (None, None) => anyhow::bail!("give a process id or --core FILE"),
    };
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
            threads: &snapshot.threads,
            tasks: tasks.as_deref(),
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
        };
        let text = match (opts.tasks, &tasks) {
            (Some(TasksForm::List), Some(tasks)) => tasks_list(&header, tasks),
            (Some(TasksForm::Table), Some(tasks)) => tasks_table(&header, tasks),
            (Some(TasksForm::Tree), Some(tasks)) => tasks_tree(&header, tasks)?,
            _ => dump_text(&header, &snapshot, locals),
        };
        printer.write_str(&text)?;
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
