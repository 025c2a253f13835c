//! `pymri record PID` and `pymri record -- COMMAND`: a process's stacks sampled on a
//! schedule, written as a profile.

use crate::commands::family::{self, Family, WithFamily};
use crate::native::{self, MixedFrame};
use crate::printer::note;
use crate::sampling::{self, End, Observer, Opened, Schedule, Stats, StatusLine};
use anyhow::Result;
use pymri_cpython::{SampleOptions, Snapshot, ThreadDump, ThreadState};
use pymri_native::Modules;
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
    /// Native frames merged with Python's (not with `subprocesses`).
    pub native: bool,
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
    let recorder = Recorder {
        profile,
        mode: opts.mode,
        idle: opts.idle,
        threads: opts.split_threads,
        frames: Vec::new(),
        status: terminal.then(|| StatusLine::new("pymri record")),
        root: opts.subprocesses.then(|| family::label(pid)),
        native: opts.native.then(|| NativeSampling::new(&opened.live)),
    };
    let family = opts.subprocesses.then(|| Family::new(pid, &slots));
    let mut observer = WithFamily::new(recorder, family, options);
    let mut sampler = opened.sampler();
    let (end, stats) = sampling::sample(&mut sampler, &options, schedule, &stop, &mut observer)?;
    let recorder = observer.inner;
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
    /// With `--subprocesses`: the target's label (its descendants come through `member`).
    root: Option<String>,
    /// With `--native`: what unwinds each counted thread at each sample.
    native: Option<NativeSampling<'a>>,
}

/// `record --native`: the target's modules, read once, and the process to unwind.
struct NativeSampling<'a> {
    live: &'a pymri_cpython::LiveProcess,
    modules: Modules,
}

impl<'a> NativeSampling<'a> {
    fn new(live: &'a pymri_cpython::LiveProcess) -> NativeSampling<'a> {
        let root = PathBuf::from(format!("/proc/{}/root", live.pid));
        let open = |p: &str| live.open_mapped(p);
        NativeSampling { live, modules: Modules::new(&live.maps, &open, Some(&root)) }
    }

    /// The thread's frames, native ones merged in; its Python frames alone when its native
    /// stack cannot be read (it ended, another tracer holds it).
    fn frames(&mut self, thread: &ThreadDump, out: &mut Vec<pymri_profile::Frame>) {
        let python = thread.frames.clone();
        let stack = thread.tid.and_then(|tid| {
            let host = self.live.host_tid(tid);
            native::unwind_live(&mut self.modules, &self.live.mem, self.live.pid, host, None).ok()
        });
        let merged = match stack {
            Some(stack) => native::merge(&stack.frames, python).0,
            None => python.into_iter().map(MixedFrame::Python).collect(),
        };
        out.extend(merged.into_iter().map(|frame| match frame {
            MixedFrame::Python(f) => {
                pymri_profile::Frame { function: f.function, file: f.file, line: Some(f.line) }
            }
            MixedFrame::Native { symbol, offset, module, .. } => {
                let file = module
                    .as_deref()
                    .map(|m| m.rsplit('/').next().unwrap_or(m).to_string())
                    .unwrap_or_default();
                // Without a symbol, the address within its module is what is the same from
                // sample to sample.
                let function = symbol.unwrap_or_else(|| format!("{file}+{offset:#x}"));
                pymri_profile::Frame { function, file, line: None }
            }
        }));
    }
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
            if let Some(native) = &mut self.native {
                self.frames.clear();
                native.frames(thread, &mut self.frames);
                self.profile.add(&id, self.frames.iter());
                continue;
            }
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
        let root = self.root.take();
        self.add(root.as_deref(), snapshot);
        self.root = root;
    }

    fn member(&mut self, _pid: i32, label: &str, snapshot: &Snapshot) {
        self.add(Some(label), snapshot);
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
