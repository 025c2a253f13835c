//! The one sampling loop behind `record` and `top`: a target opened (or a program started and
//! waited for), then sampled on a fixed schedule until a duration passes, Ctrl-C, the target
//! exits or the caller asks to stop. What each sample becomes (a profile, a live table) is the
//! caller's; the schedule, the counting of missed samples and errors and the ending are here.

use anyhow::{Context, Result};
use pymri_cpython::{
    Error as PyError, LiveProcess as Live, Located, SampleOptions, Sampler, Snapshot, ThreadDump, ThreadState,
};
use pymri_memory::MemoryError;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to sample.
pub enum Target {
    Pid(i32),
    /// A program to start, then sample until it exits.
    Command(Vec<String>),
}

/// Which threads a sample counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Wall,
    Cpu,
    Gil,
}

impl Mode {
    pub fn counts(self, thread: &ThreadDump) -> bool {
        match self {
            Mode::Wall => true,
            // A waiting thread is on a CPU (or queued for one) only to look at the GIL again.
            Mode::Cpu => thread.on_cpu == Some(true) && thread.state != ThreadState::WaitingForGil,
            Mode::Gil => thread.holds_gil,
        }
    }
}

/// Why the sampling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Duration,
    Interrupted,
    Exited,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub samples: u64,
    pub missed: u64,
    pub errors: u64,
    /// Time sampled so far (at the end: up to the deadline, not past it).
    pub elapsed: Duration,
}

impl Stats {
    /// Samples a second actually taken.
    pub fn rate(&self) -> f64 {
        per_second(self.samples, self.elapsed)
    }
}

pub fn per_second(n: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        n as f64 / elapsed.as_secs_f64()
    }
}

/// How often and how long to sample.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Samples a second.
    pub rate: u32,
    /// `None`: until the process exits or Ctrl-C.
    pub duration: Option<Duration>,
}

impl Schedule {
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.rate))
    }
}

/// What the loop calls: each sample, and with the figures so far after every attempt (taken or
/// failed) and every wait between two (at most [`LONGEST_SLEEP`] apart).
pub trait Observer {
    fn snapshot(&mut self, snapshot: &Snapshot);

    /// A sample of a descendant of the target (`--subprocesses`: see
    /// [`crate::commands::family::WithFamily`]), right after the target's; `label` names the
    /// process (`process PID (COMMAND)`).
    fn member(&mut self, _pid: i32, _label: &str, _snapshot: &Snapshot) {}

    /// `Break` ends the sampling as if interrupted.
    fn tick(&mut self, _stats: &Stats) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Samples in a row that must all fail, from the start, before sampling gives up: a target
/// that cannot be read at all is an error, not an empty result.
const FAILURES_BEFORE_GIVING_UP: u64 = 10;
/// The longest single sleep between samples, so that Ctrl-C and the observer's ticks come
/// promptly at low rates.
const LONGEST_SLEEP: Duration = Duration::from_millis(50);

/// How long a started program has to get its interpreter running.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a starting program is looked at.
const STARTUP_POLL: Duration = Duration::from_millis(2);

/// An opened target: the process, where its interpreter is, and the program pymri started.
pub struct Opened {
    pub live: Live,
    pub located: Located,
    child: Option<Child>,
}

impl Opened {
    /// Opens `target`. `prepare` runs once the target is known to exist but before a program
    /// is started (so that a bad output path costs nothing), and its value is returned.
    pub fn open<T>(target: &Target, prepare: impl FnOnce() -> Result<T>) -> Result<(Opened, T)> {
        let (live, child, prepared) = match target {
            Target::Pid(pid) => {
                let live = Live::open(*pid)?;
                let prepared = prepare()?;
                (live, None, prepared)
            }
            Target::Command(argv) => {
                let prepared = prepare()?;
                let (program, args) = argv.split_first().context("no command given")?;
                let mut child = std::process::Command::new(program)
                    .args(args)
                    .spawn()
                    .with_context(|| format!("cannot start {program}"))?;
                match started(&mut child) {
                    Ok(live) => (live, Some(child), prepared),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(e);
                    }
                }
            }
        };
        let located = live.locate()?;
        Ok((Opened { live, located, child }, prepared))
    }

    pub fn pid(&self) -> i32 {
        self.live.pid
    }

    pub fn sampler(&self) -> Sampler<'_> {
        Sampler::new(&self.live, &self.located)
    }

    /// pymri's exit status once sampling is over: 0 for a process it was given; for a program
    /// it started, the program's own, waited for (ended by a duration or Ctrl-C, the program
    /// goes on, as it would have under a shell).
    pub fn finish(mut self) -> Result<u8> {
        match self.child.as_mut() {
            Some(child) => {
                Ok(crate::commands::run::exit_code(child.wait().context("waiting for the program")?))
            }
            None => Ok(crate::exit::Status::Success as u8),
        }
    }
}

/// Waits until the started program runs a Python interpreter that can be read.
fn started(child: &mut Child) -> Result<Live> {
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

/// A flag raised by the first Ctrl-C (sampling ends, results are kept); a second Ctrl-C ends
/// pymri at once with status 130.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 130, Arc::clone(&stop))
        .context("cannot handle SIGINT")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))
        .context("cannot handle SIGINT")?;
    Ok(stop)
}

/// Samples on `schedule` until it ends, handing each sample to `observer`.
pub fn sample(
    sampler: &mut Sampler<'_>,
    options: &SampleOptions,
    schedule: Schedule,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<(End, Stats)> {
    let interval = schedule.interval();
    let mut stats = Stats::default();
    let start = Instant::now();
    let deadline = schedule.duration.map(|d| start + d);
    let mut slot: u32 = 0;
    let mut next = start;
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
            // At low rates the observer still hears from the loop often (keys in `top`).
            stats.elapsed = Instant::now().duration_since(start);
            if observer.tick(&stats).is_break() {
                break End::Interrupted;
            }
            continue;
        }
        match sampler.sample(options) {
            Ok(snapshot) => {
                stats.samples += 1;
                observer.snapshot(&snapshot);
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
        stats.elapsed = now.duration_since(start);
        if observer.tick(&stats).is_break() {
            break End::Interrupted;
        }
    };
    let now = Instant::now();
    stats.elapsed = deadline.map_or(now, |d| d.min(now)).duration_since(start);
    Ok((end, stats))
}

/// A progress line on a terminal's stderr, redrawn in place at most every [`StatusLine::EVERY`].
pub struct StatusLine {
    command: &'static str,
    drawn_at: Option<Duration>,
}

impl StatusLine {
    const EVERY: Duration = Duration::from_millis(250);

    pub fn new(command: &'static str) -> StatusLine {
        StatusLine { command, drawn_at: None }
    }

    pub fn update(&mut self, stats: &Stats) {
        let due = match self.drawn_at {
            None => stats.elapsed >= Self::EVERY,
            Some(at) => stats.elapsed.saturating_sub(at) >= Self::EVERY,
        };
        if !due {
            return;
        }
        self.drawn_at = Some(stats.elapsed);
        let _ = write!(
            io::stderr().lock(),
            "\r\x1b[K{}: {:.1} s, {} samples ({:.1}/s), {} errors",
            self.command,
            stats.elapsed.as_secs_f64(),
            stats.samples,
            stats.rate(),
            stats.errors
        );
    }

    /// Erases the line.
    pub fn clear(&self) {
        let _ = write!(io::stderr().lock(), "\r\x1b[K");
    }
}
