//! `pymri record PID` and `pymri record -- COMMAND`: a process's stacks sampled on a
//! schedule, written as a profile.

use crate::printer::note;
use anyhow::{Context, Result};
use pymri_cpython::{Error as PyError, LiveProcess as Live, SampleOptions, Sampler, ThreadDump};
use pymri_memory::MemoryError;
use pymri_profile::{Collapsed, Flamegraph, Options, Profile, Speedscope, ThreadId, Writer};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RecordOptions {
    pub target: Target,
    pub output: PathBuf,
    pub format: Format,
    /// `None`: until the process exits or Ctrl-C.
    pub duration: Option<Duration>,
    /// Samples a second.
    pub rate: u32,
    pub mode: Mode,
    pub split_threads: bool,
    pub lines: bool,
}

/// What to record.
pub enum Target {
    Pid(i32),
    /// A program to start, then record until it exits.
    Command(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Flamegraph,
    Speedscope,
    Collapsed,
}

/// Which threads a sample counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Wall,
    Cpu,
    Gil,
}

impl Format {
    fn writer(self) -> &'static dyn Writer {
        match self {
            Format::Flamegraph => &Flamegraph,
            Format::Speedscope => &Speedscope,
            Format::Collapsed => &Collapsed,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Format::Flamegraph => "flame graph",
            Format::Speedscope => "speedscope profile",
            Format::Collapsed => "collapsed stacks",
        }
    }
}

impl Mode {
    fn counts(self, thread: &ThreadDump) -> bool {
        match self {
            Mode::Wall => true,
            Mode::Cpu => thread.on_cpu == Some(true),
            Mode::Gil => thread.holds_gil,
        }
    }
}

/// The output file could not be created or written: exit status 1, whatever the I/O error.
#[derive(Debug)]
pub struct OutputError {
    path: PathBuf,
    source: io::Error,
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for OutputError {}

/// Why the recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Duration,
    Interrupted,
    Exited,
}

#[derive(Debug, Default)]
struct Stats {
    samples: u64,
    missed: u64,
    errors: u64,
    elapsed: Duration,
}

/// Samples in a row that must all fail, from the start, before the recording gives up: a
/// target that cannot be read at all is an error, not an empty profile.
const FAILURES_BEFORE_GIVING_UP: u64 = 10;
/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// The longest single sleep between samples, so that Ctrl-C is seen promptly at low rates.
const LONGEST_SLEEP: Duration = Duration::from_millis(50);

/// How long a started program has to get its interpreter running.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a starting program is looked at.
const STARTUP_POLL: Duration = Duration::from_millis(2);

/// Records; the exit status: 0, or a started program's own.
pub fn run(opts: RecordOptions) -> Result<u8> {
    let create =
        || File::create(&opts.output).map_err(|source| OutputError { path: opts.output.clone(), source });
    // Before any sampling (and before a program is started): an output that cannot be written
    // must not cost a recording.
    let (live, mut child, file) = match &opts.target {
        Target::Pid(pid) => {
            let live = Live::open(*pid)?;
            (live, None, create()?)
        }
        Target::Command(argv) => {
            let file = create()?;
            let (program, args) = argv.split_first().context("no command given")?;
            let mut child = std::process::Command::new(program)
                .args(args)
                .spawn()
                .with_context(|| format!("cannot start {program}"))?;
            match started(&mut child) {
                Ok(live) => (live, Some(child), file),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
        }
    };
    let pid = live.pid;
    let located = live.locate()?;

    let stop = Arc::new(AtomicBool::new(false));
    // A first Ctrl-C ends the recording (the profile is written); a second one ends pymri.
    signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 130, Arc::clone(&stop))
        .context("cannot handle SIGINT")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))
        .context("cannot handle SIGINT")?;

    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.rate));
    let mut profile = Profile::new(
        format!("pymri record {pid} (Python {})", located.version),
        Some(interval),
        Options { lines: opts.lines, split_threads: opts.split_threads },
    );
    let mut sampler = Sampler::new(&live, &located);
    let until = match opts.duration {
        Some(d) => format!("for {} s", d.as_secs_f64()),
        None => "until it exits or Ctrl-C".to_string(),
    };
    note(&format!(
        "pymri record: sampling process {pid} (Python {}) {} times a second {until}",
        located.version, opts.rate
    ));
    let terminal = io::stderr().is_terminal();
    let (end, stats) = sample(&mut sampler, &mut profile, &opts, interval, &stop, terminal)?;
    if terminal {
        let _ = write!(io::stderr().lock(), "\r\x1b[K");
    }

    let mut out = BufWriter::new(file);
    opts.format
        .writer()
        .write(&profile, &mut out)
        .and_then(|()| out.flush())
        .map_err(|source| OutputError { path: opts.output.clone(), source })?;
    note(&summary(&opts, end, &stats, &opts.output));
    match child.as_mut() {
        // Ended by --duration or Ctrl-C, the program goes on: pymri waits for it, as a shell
        // would have.
        Some(child) => Ok(super::run::exit_code(child.wait().context("waiting for the program")?)),
        None => Ok(crate::exit::Status::Success as u8),
    }
}

/// Waits until the started program runs a Python interpreter that can be read.
fn started(child: &mut std::process::Child) -> Result<Live> {
    let pid = i32::try_from(child.id()).context("process id")?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the program")? {
            anyhow::bail!("the program exited ({status}) before its Python interpreter could be read");
        }
        // Until the program has exec'd an interpreter and initialised it, each step fails.
        let last = match Live::open(pid) {
            Ok(live) => {
                match live.locate().and_then(|l| l.snapshot(&live.mem, &Default::default()).map(drop)) {
                    Ok(()) => return Ok(live),
                    Err(e) => anyhow::Error::new(e),
                }
            }
            Err(e) => anyhow::Error::new(e),
        };
        if Instant::now() >= deadline {
            return Err(last.context(format!(
                "the program (process {pid}) runs no Python interpreter pymri can read after {} s",
                STARTUP_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(STARTUP_POLL);
    }
}

fn sample(
    sampler: &mut Sampler<'_>,
    profile: &mut Profile,
    opts: &RecordOptions,
    interval: Duration,
    stop: &AtomicBool,
    terminal: bool,
) -> Result<(End, Stats)> {
    // Only the cpu mode needs the kernel's view of each thread (two /proc reads per thread).
    let options = SampleOptions { kernel_state: opts.mode == Mode::Cpu, ..SampleOptions::default() };
    let mut stats = Stats::default();
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let mut slot: u32 = 0;
    let mut next = start;
    let mut status_at = start;
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break End::Interrupted;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break End::Duration;
        }
        if now < next {
            let wake = deadline.map_or(next, |d| d.min(next));
            std::thread::sleep(wake.saturating_duration_since(now).min(LONGEST_SLEEP));
            continue;
        }
        match sampler.sample(&options) {
            Ok(mut snapshot) => {
                stats.samples += 1;
                for thread in
                    snapshot.threads.iter_mut().filter(|t| opts.mode.counts(t) && !t.frames.is_empty())
                {
                    let id = ThreadId { tid: thread.tid, ident: thread.ident, name: thread.name.take() };
                    profile.add(&id, thread.frames.iter().map(Sampled));
                }
                sampler.recycle(snapshot);
            }
            Err(PyError::Memory(MemoryError::Exited { .. })) => break End::Exited,
            Err(e) => {
                stats.errors += 1;
                if stats.samples == 0 && stats.errors >= FAILURES_BEFORE_GIVING_UP {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot sample process {}: every read failed", sampler.pid())));
                }
            }
        }
        // The schedule is fixed: slot N is due at start + N intervals, whatever the reads
        // cost. Slots that passed while reading are missed, not shifted.
        slot = slot.saturating_add(1);
        next = start + interval.saturating_mul(slot);
        let now = Instant::now();
        if now > next {
            let behind = (now - next).as_nanos() / interval.as_nanos().max(1);
            let behind = u32::try_from(behind).unwrap_or(u32::MAX);
            stats.missed += u64::from(behind);
            slot = slot.saturating_add(behind);
            next = start + interval.saturating_mul(slot);
        }
        if terminal && now.duration_since(status_at) >= STATUS_EVERY {
            status_at = now;
            let elapsed = now.duration_since(start);
            let _ = write!(
                io::stderr().lock(),
                "\r\x1b[Kpymri record: {:.1} s, {} samples ({:.1}/s), {} errors",
                elapsed.as_secs_f64(),
                stats.samples,
                per_second(stats.samples, elapsed),
                stats.errors
            );
        }
    };
    let now = Instant::now();
    stats.elapsed = deadline.map_or(now, |d| d.min(now)).duration_since(start);
    Ok((end, stats))
}

/// A frame as read, counted without copying its names.
struct Sampled<'a>(&'a pymri_cpython::Frame);

impl pymri_profile::FrameRef for Sampled<'_> {
    fn function(&self) -> &str {
        &self.0.function
    }
    fn file(&self) -> &str {
        &self.0.file
    }
    fn line(&self) -> Option<i32> {
        Some(self.0.line)
    }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        n as f64 / elapsed.as_secs_f64()
    }
}

/// The line printed when the recording is over.
fn summary(opts: &RecordOptions, end: End, stats: &Stats, path: &Path) -> String {
    let why = match end {
        End::Duration => "done",
        End::Interrupted => "interrupted",
        End::Exited => "the process exited",
    };
    format!(
        "pymri record: {why}: {} samples in {:.2} s ({:.1}/s of {} asked, {} missed), {} errors; {} written to {}",
        stats.samples,
        stats.elapsed.as_secs_f64(),
        per_second(stats.samples, stats.elapsed),
        opts.rate,
        stats.missed,
        stats.errors,
        opts.format.describe(),
        path.display()
    )
}
