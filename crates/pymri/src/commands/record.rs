//! `pymri record PID` and `pymri record -- COMMAND`: a process's stacks sampled on a
//! schedule, written as a profile.

use crate::commands::family::{self, Family};
use crate::printer::note;
use crate::sampling::{self, End, Observer, Opened, Schedule, Stats, StatusLine};
use anyhow::Result;
use pymri_cpython::{SampleOptions, Snapshot, ThreadDump, ThreadState};
use pymri_profile::{Collapsed, Flamegraph, Gecko, Options, Pprof, Profile, Speedscope, ThreadId, Writer};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::sampling::{Mode, Target};

pub struct RecordOptions {
    pub target: Target,
    pub output: PathBuf,
    pub format: Format,
    /// `None`: until the process exits or Ctrl-C.
    pub duration: Option<Duration>,
    /// Samples a second.
    pub rate: u32,
    pub mode: Mode,
    /// With [`Mode::Cpu`]: also the samples of threads that are idle (off a CPU, not waiting
    /// for the GIL).
    pub idle: bool,
    /// Stop the target's Python threads while each sample is read.
    pub blocking: bool,
    /// Sample the processes the target starts too, each stack under its process's label.
    pub subprocesses: bool,
    pub split_threads: bool,
    pub lines: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Flamegraph,
    Speedscope,
    Collapsed,
    Gecko,
    Pprof,
}

impl Format {
    fn writer(self) -> &'static dyn Writer {
        match self {
            Format::Flamegraph => &Flamegraph,
            Format::Speedscope => &Speedscope,
            Format::Collapsed => &Collapsed,
            Format::Gecko => &Gecko,
            Format::Pprof => &Pprof,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Format::Flamegraph => "flame graph",
            Format::Speedscope => "speedscope profile",
            Format::Collapsed => "collapsed stacks",
            Format::Gecko => "Firefox Profiler profile",
            Format::Pprof => "pprof profile",
        }
    }
}

/// The output file could not be created or written: exit status 1, whatever the I/O error.
#[derive(Debug)]
pub struct OutputError {
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for OutputError {}

/// Records; the exit status: 0, or a started program's own.
pub fn run(opts: RecordOptions) -> Result<u8> {
    let create =
        || File::create(&opts.output).map_err(|source| OutputError { path: opts.output.clone(), source });
    // Before any sampling (and before a program is started): an output that cannot be written
    // must not cost a recording.
    let (opened, file) = Opened::open(&opts.target, || Ok(create()?))?;
    let pid = opened.pid();
    let version = opened.located.version;
    let stop = sampling::interrupt_flag()?;

    let schedule = Schedule { rate: opts.rate, duration: opts.duration };
    // With subprocesses the process is the root frame, and a thread's frame comes below it,
    // so the recorder adds both itself.
    let mut profile = Profile::new(
        format!("pymri record {pid} (Python {version})"),
        Some(schedule.interval()),
        Options { lines: opts.lines, split_threads: opts.split_threads && !opts.subprocesses },
    );
    profile.pid = u32::try_from(pid).ok();
    profile.clock = match opts.mode {
        Mode::Wall => "wall",
        Mode::Cpu => "cpu",
        Mode::Gil => "gil",
    }
    .into();
    let until = match opts.duration {
        Some(d) => format!("for {} s", d.as_secs_f64()),
        None => "until it exits or Ctrl-C".to_string(),
    };
    note(&format!(
        "pymri record: sampling process {pid} (Python {version}) {} times a second {until}",
        opts.rate
    ));
    let terminal = io::stderr().is_terminal();
    // Only the cpu mode needs the kernel's view of each thread (two /proc reads per thread).
    let options = SampleOptions {
        blocking: opts.blocking,
        kernel_state: opts.mode == Mode::Cpu,
        ..SampleOptions::default()
    };
    let slots = family::slots();
    let mut recorder = Recorder {
        profile,
        mode: opts.mode,
        idle: opts.idle,
        threads: opts.split_threads,
        frames: Vec::new(),
        status: terminal.then(|| StatusLine::new("pymri record")),
        family: opts.subprocesses.then(|| (family::label(pid), Family::new(pid, &slots))),
        options,
    };
    let mut sampler = opened.sampler();
    let (end, stats) = sampling::sample(&mut sampler, &options, schedule, &stop, &mut recorder)?;
    if let Some(status) = &recorder.status {
        status.clear();
    }

    let mut out = BufWriter::new(file);
    opts.format
        .writer()
        .write(&recorder.profile, &mut out)
        .and_then(|()| out.flush())
        .map_err(|source| OutputError { path: opts.output.clone(), source })?;
    note(&summary(&opts, end, &stats, &opts.output));
    drop(sampler);
    opened.finish()
}

/// Samples into a profile.
struct Recorder<'a> {
    profile: Profile,
    mode: Mode,
    idle: bool,
    /// Split by thread (done here when the process is the root frame).
    threads: bool,
    /// Reused between threads and samples.
    frames: Vec<pymri_profile::Frame>,
    /// On a terminal only.
    status: Option<StatusLine>,
    /// With `--subprocesses`: the target's label, and its descendants.
    family: Option<(String, Family<'a>)>,
    options: SampleOptions,
}

impl Recorder<'_> {
    fn counts(&self, thread: &ThreadDump) -> bool {
        self.mode.counts(thread)
            || (self.idle && thread.on_cpu == Some(false) && thread.state != ThreadState::WaitingForGil)
    }

    /// Adds a sample's threads, under `process` (a label) when there is one.
    fn add(&mut self, process: Option<&str>, snapshot: &Snapshot) {
        for thread in &snapshot.threads {
            if !self.counts(thread) || thread.frames.is_empty() {
                continue;
            }
            let id = ThreadId { tid: thread.tid, ident: thread.ident, name: thread.name.clone() };
            let Some(process) = process else {
                self.profile.add(&id, thread.frames.iter().map(Sampled));
                continue;
            };
            self.frames.clear();
            self.frames.extend(thread.frames.iter().map(|f| pymri_profile::Frame {
                function: f.function.clone(),
                file: f.file.clone(),
                line: Some(f.line),
            }));
            if self.threads {
                self.frames.push(root_frame(id.label()));
            }
            self.frames.push(root_frame(process.to_string()));
            self.profile.add(&id, self.frames.iter());
        }
    }
}

/// A frame as read, counted without copying its names.
pub(crate) struct Sampled<'a>(pub &'a pymri_cpython::Frame);

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

/// A frame naming a process or a thread: no file, no line.
fn root_frame(name: String) -> pymri_profile::Frame {
    pymri_profile::Frame { function: name, file: String::new(), line: None }
}

impl Observer for Recorder<'_> {
    fn snapshot(&mut self, snapshot: &Snapshot) {
        let Some((root, mut family)) = self.family.take() else {
            self.add(None, snapshot);
            return;
        };
        self.add(Some(&root), snapshot);
        let options = self.options;
        family.sample(&options, |label, snapshot| self.add(Some(label), snapshot));
        self.family = Some((root, family));
    }

    fn tick(&mut self, stats: &Stats) -> ControlFlow<()> {
        if let Some(status) = &mut self.status {
            status.update(stats);
        }
        ControlFlow::Continue(())
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
        stats.rate(),
        opts.rate,
        stats.missed,
        stats.errors,
        opts.format.describe(),
        path.display()
    )
}
