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

mod finding;
pub mod inside;
mod locks;
mod text;
mod threads;
mod window;

use crate::printer::{note, Printer};
use crate::sampling::{self, Opened, Schedule, Target};
use anyhow::Result;
pub use finding::Pattern;
use finding::{Finding, Report, SCHEMA};
use pymri_cpython::SampleOptions;
use std::time::Duration;
use window::Window;

pub struct DoctorOptions {
    pub pid: i32,
    pub duration: Duration,
    /// Samples a second during the window.
    pub rate: u32,
    pub json: bool,
    /// Only these patterns (all when empty).
    pub only: Vec<Pattern>,
    /// Leave out what needs code inside the target.
    pub no_inject: bool,
    /// `--expect`: a requirements file or a lock file of the versions meant to be loaded.
    pub expect: Option<std::path::PathBuf>,
}

/// What an analyzer may look at.
pub struct Context<'a> {
    pub window: &'a Window,
    /// The locks at the window's start and end.
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
    (Pattern::Deadlock, locks::deadlock),
    (Pattern::OrphanedLock, locks::orphaned),
    (Pattern::MemoryGrowth, inside::memory_growth),
    (Pattern::SwallowedExceptions, inside::swallowed_exceptions),
    (Pattern::ModuleVersions, inside::module_versions),
];

pub fn run(opts: DoctorOptions, printer: &mut Printer) -> Result<u8> {
    let expected = inside::read_expected(opts.expect.as_deref())?;
    let (opened, ()) = Opened::open(&Target::Pid(opts.pid), || Ok(()))?;
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
    let inside = agent.finish();

    let context = Context { window: &window, locks: &lock_readings, inside: &inside, only: &opts.only };
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
        window_seconds: stats.elapsed.as_secs_f64(),
        samples: stats.samples,
        counters: window.summary(),
        findings,
        skipped: inside.skipped.clone(),
        thread_starts: inside.thread_start_sites().to_vec(),
    };
    if opts.json {
        printer.json(&report)?;
    } else {
        printer.write_str(&text::report(&report))?;
    }
    Ok(crate::exit::Status::Success as u8)
}
