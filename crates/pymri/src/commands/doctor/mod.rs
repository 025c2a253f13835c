//! `pymri doctor PID`: watch a process for a window, then name what is wrong with it the way
//! the debugging book names it (deadlock, spiking thread, leaks, ...), with the evidence and
//! the command to run next.
//!
//! The window is the sampling loop `record` and `top` use ([`crate::sampling`]), folded into a
//! [`window::Window`]; each pattern is an analyzer, a function from what the window saw to
//! findings. An analyzer finds nothing rather than guessing: a healthy process gets no
//! alarming finding.
//!
//! Not a goal: fixing anything, or changing the target's state. The doctor only reads (and,
//! for what can only be learned inside, runs read-only code through the one attach path).

mod blocked;
mod fds;
mod finding;
mod html;
pub mod inside;
mod leaks;
mod locks;
mod source;
mod stacks;
mod text;
mod threads;
mod window;

use crate::commands::record::OutputError;
use crate::printer::{note, Printer};
use crate::sampling::{self, Opened, Schedule, Target};
use anyhow::Result;
pub use finding::Pattern;
use finding::{Finding, Report, SCHEMA};
use pymri_cpython::SampleOptions;
use std::io::Write as _;
use std::time::Duration;
use window::Window;

pub struct DoctorOptions {
    pub pid: i32,
    pub duration: Duration,
    /// Samples a second during the window.
    pub rate: u32,
    pub json: bool,
    /// Also write the report as one self-contained HTML page there.
    pub html: Option<std::path::PathBuf>,
    /// Only these patterns (all when empty).
    pub only: Vec<Pattern>,
    /// Leave out what needs code inside the target.
    pub no_inject: bool,
    /// `--expect`: a requirements file or a lock file of the versions meant to be loaded.
    pub expect: Option<std::path::PathBuf>,
    /// Read this core file instead of a live process (`pid` is then the core's).
    pub core: Option<std::path::PathBuf>,
    /// With `core`: the executable that produced it, and the root its process saw as `/`.
    pub exe: Option<std::path::PathBuf>,
    pub sysroot: Option<std::path::PathBuf>,
}

/// What an analyzer may look at.
pub struct Context<'a> {
    pub window: &'a Window,
    /// The locks at the window's start and end (a core's one instant).
    pub locks: &'a locks::LockReadings,
    /// What the agent learned inside the target over the window (empty without it).
    pub inside: &'a inside::Inside,
    /// `--only` (all patterns when empty): a pattern named there shows its Info findings.
    pub only: &'a [Pattern],
}

type Analyzer = fn(&Context<'_>) -> Vec<Finding>;

/// Every pattern the doctor knows, and the analyzer that looks for it.
const ANALYZERS: &[(Pattern, Analyzer)] = &[
    (Pattern::SpikingThread, threads::spiking),
    (Pattern::BlockedThreads, blocked::blocked),
    (Pattern::ThreadLeak, leaks::thread_leak),
    (Pattern::FdLeak, leaks::fd_leak),
    (Pattern::GilContention, threads::gil),
    (Pattern::Deadlock, locks::deadlock),
    (Pattern::OrphanedLock, locks::orphaned),
    (Pattern::MemoryGrowth, inside::memory_growth),
    (Pattern::SwallowedExceptions, inside::swallowed_exceptions),
    (Pattern::ModuleVersions, inside::module_versions),
];

pub fn run(opts: DoctorOptions, printer: &mut Printer) -> Result<u8> {
    if let Some(path) = &opts.core {
        return run_core(&opts, path, printer);
    }
    let expected = inside::read_expected(opts.expect.as_deref())?;
    let (opened, html_file) = Opened::open(&Target::Pid(opts.pid), || create_html(&opts))?;
    let pid = opened.pid();
    let python = opened.located.version.to_string();
    let stop = sampling::interrupt_flag()?;
    note(&format!(
        "pymri doctor: watching process {pid} (Python {python}) for {} s",
        opts.duration.as_secs_f64()
    ));
    let agent =
        inside::open(pid, &opened.located.version, &opts.only, opts.no_inject, expected, opts.duration);
    let mut window = Window::new(pid);
    let mut sampler = opened.sampler();
    let wants = |p: Pattern| opts.only.is_empty() || opts.only.contains(&p);
    let read_locks = wants(Pattern::Deadlock) || wants(Pattern::OrphanedLock);
    let mut lock_readings =
        locks::LockReadings { root: Some(format!("/proc/{pid}/root").into()), ..Default::default() };
    if read_locks {
        lock_readings.first = locks::read_live(&opened.located, &opened.live.mem, &mut sampler);
    }
    let schedule = Schedule { rate: opts.rate, duration: Some(opts.duration) };
    let (_, stats) = sampling::sample(&mut sampler, &SampleOptions::default(), schedule, &stop, &mut window)?;
    window.elapsed = stats.elapsed;
    if read_locks {
        lock_readings.last = locks::read_live(&opened.located, &opened.live.mem, &mut sampler);
    }
    // One more sample, with locals, for the evidence: the window's own samples read none (they
    // cost the target more than stacks alone).
    window.closing = sampler.sample(&SampleOptions { locals: true, ..SampleOptions::default() }).ok();
    let inside = agent.finish();

    let samples = stats.samples;
    conclude(&opts, &window, &lock_readings, &inside, python, samples, html_file, printer)
}

/// What a single instant allows: a core file read as a window of one sample, with no counters
/// and no kernel state. The patterns that need time (spikes, leaks, how long a thread waits)
/// find nothing; the threads' waits are still classified from their frames.
fn run_core(opts: &DoctorOptions, path: &std::path::Path, printer: &mut Printer) -> Result<u8> {
    let html_file = create_html(opts)?;
    let core = crate::target::Core::open(path, opts.exe.as_deref(), opts.sysroot.as_deref())?;
    let located = core.locate()?;
    let tids = core.known_tids();
    let options = pymri_cpython::SnapshotOptions { locals: true, known_tids: &tids, ..Default::default() };
    let snapshot = located.snapshot(&core.core, &options)?;
    let root = opts.sysroot.clone().unwrap_or_else(|| std::path::PathBuf::from("/"));
    // One reading of the locks, whose waits are inferred from the source lines (a core keeps no
    // futex words).
    let sources = locks::Sources::new(Some(root.clone()));
    let source_line = |file: &str, line: i32| sources.line(file, line);
    let options = pymri_cpython::LockOptions { futex_wait: None, source_line: Some(&source_line) };
    let lock_readings = locks::LockReadings {
        last: located.locks(&core.core, snapshot.clone(), &options).ok(),
        root: Some(root.clone()),
        ..Default::default()
    };
    let mut window = Window::instant(core.core.pid(), root);
    sampling::Observer::snapshot(&mut window, &snapshot);
    window.closing = Some(snapshot);
    let inside = inside::Inside {
        skipped: vec!["memory_growth, swallowed_exceptions and the packages of module_versions: a core file runs no code".into()],
        ..inside::Inside::default()
    };
    conclude(opts, &window, &lock_readings, &inside, located.version.to_string(), 1, html_file, printer)
}

/// The `--html` page's file, created before any reading: a page that cannot be written must
/// not cost a window.
fn create_html(opts: &DoctorOptions) -> Result<Option<std::fs::File>> {
    let Some(path) = &opts.html else { return Ok(None) };
    Ok(Some(std::fs::File::create(path).map_err(|source| OutputError { path: path.clone(), source })?))
}

/// Runs the analyzers over the window and writes the report.
#[allow(clippy::too_many_arguments)]
fn conclude(
    opts: &DoctorOptions,
    window: &Window,
    locks: &locks::LockReadings,
    inside: &inside::Inside,
    python: String,
    samples: u64,
    html_file: Option<std::fs::File>,
    printer: &mut Printer,
) -> Result<u8> {
    let pid = window.pid;
    let context = Context { window, locks, inside, only: &opts.only };
    let mut findings: Vec<Finding> = ANALYZERS
        .iter()
        .filter(|(pattern, _)| opts.only.is_empty() || opts.only.contains(pattern))
        .flat_map(|(_, analyze)| analyze(&context))
        .collect();
    findings.sort_by_key(|f| (f.severity, f.pattern));
    let report = Report {
        schema: SCHEMA,
        pid,
        python,
        source: if window.live { "live" } else { "core" },
        window_seconds: window.elapsed.as_secs_f64(),
        samples,
        counters: window.summary(),
        findings,
        skipped: inside.skipped.clone(),
        thread_starts: inside.thread_start_sites().to_vec(),
    };
    if let (Some(path), Some(mut file)) = (&opts.html, html_file) {
        file.write_all(html::page(&report, window).as_bytes())
            .map_err(|source| OutputError { path: path.clone(), source })?;
    }
    if opts.json {
        printer.json(&report)?;
    } else {
        printer.write_str(&text::report(&report))?;
    }
    Ok(crate::exit::Status::Success as u8)
}
