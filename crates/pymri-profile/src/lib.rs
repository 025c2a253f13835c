//! Stacks sampled over time, counted and written in the formats profilers read.
//!
//! A [`Profile`] is fed one thread's stack at a time ([`Profile::add`], innermost frame
//! first, as a sampler reads them). Identical stacks of a thread are counted once, so memory
//! grows with the number of distinct stacks, not with the length of the recording: a distinct
//! stack keeps its count and the time it was first seen, nothing per sample. A [`Writer`]
//! turns the counts into a file: [`Collapsed`] (Brendan Gregg's folded stacks), [`Flamegraph`]
//! (an SVG drawn by `inferno`), [`Speedscope`] (speedscope's JSON file format, one sampled
//! profile per thread), [`Gecko`] (the Firefox Profiler's processed format, one thread per
//! thread) or [`Pprof`] (gzipped `profile.proto`, for `go tool pprof` and Pyroscope).
//!
//! This crate knows nothing of Python or of pymri's readers: a frame is a function name, a
//! file and a line.

mod collapsed;
mod flamegraph;
mod gecko;
mod pprof;
mod speedscope;

pub use collapsed::Collapsed;
pub use flamegraph::Flamegraph;
pub use gecko::Gecko;
pub use pprof::Pprof;
pub use speedscope::Speedscope;

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime};

/// One frame of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: String,
    pub file: String,
    /// The line, or `None` when lines are left out (`--nolineno`) or unknown.
    pub line: Option<i32>,
}

/// What [`Profile::add`] reads of a frame, so that a caller's own frame type is counted
/// without being copied into a [`Frame`] first.
pub trait FrameRef {
    fn function(&self) -> &str;
    fn file(&self) -> &str;
    fn line(&self) -> Option<i32>;
}

impl FrameRef for &Frame {
    fn function(&self) -> &str {
        &self.function
    }
    fn file(&self) -> &str {
        &self.file
    }
    fn line(&self) -> Option<i32> {
        self.line
    }
}

/// The thread a stack was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadId {
    /// The kernel thread id, when known.
    pub tid: Option<i32>,
    /// The interpreter's id of the thread (`threading.get_ident()`), which tells threads apart
    /// when the kernel id is unknown.
    pub ident: u64,
    /// The thread's name, when it has one.
    pub name: Option<String>,
}

impl ThreadId {
    /// `thread NAME (TID)`, the root frame of a thread's stacks when they are split by thread.
    pub fn label(&self) -> String {
        let name = self.name.as_deref().unwrap_or("?");
        match self.tid {
            Some(tid) => format!("thread {name} ({tid})"),
            None => format!("thread {name} (ident {:#x})", self.ident),
        }
    }
}

/// How stacks are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Keep line numbers: a function seen at two lines makes two frames.
    pub lines: bool,
    /// Start every stack with a frame naming its thread ([`ThreadId::label`]) in the formats
    /// that merge threads (collapsed stacks, flame graphs).
    pub split_threads: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { lines: true, split_threads: false }
    }
}

/// Counted stacks of every thread seen.
#[derive(Debug, Clone)]
pub struct Profile {
    /// What was profiled, for titles.
    pub name: String,
    /// Time between two samples, when sampling was on a schedule.
    pub interval: Option<Duration>,
    pub options: Options,
    /// The profiled process, when there is one.
    pub pid: Option<u32>,
    /// What a sample's interval measures, for the formats that name it (pprof's second sample
    /// type): `wall` unless told otherwise, `cpu` when only threads on a CPU were counted.
    pub clock: String,
    /// When the profile was made: times are counted from here.
    started: Instant,
    started_at: SystemTime,
    /// The time of the latest stack added, from `started`.
    last: Duration,
    frames: Vec<Frame>,
    frame_index: HashMap<Frame, u32>,
    threads: Vec<ThreadStacks>,
    /// Where each thread (kernel id, ident) is in `threads`: a sample of a thousand threads
    /// looks each one up.
    thread_index: HashMap<(Option<i32>, u64), usize>,
}

/// The stacks of one thread.
#[derive(Debug, Clone)]
pub struct ThreadStacks {
    pub thread: ThreadId,
    /// Where each stack is in `entries`.
    index: HashMap<Vec<u32>, usize>,
    /// Stacks in the order they were first seen, so that output is deterministic.
    entries: Vec<StackCount>,
    /// The position in `entries` of the stack added last: a thread's next stack is most often
    /// the same, or shares its outer frames.
    last: Option<usize>,
}

/// A distinct stack of a thread and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCount {
    /// Indices into [`Profile::frames`], root first.
    pub frames: Vec<u32>,
    pub count: u64,
    /// When it was first seen, from the profile's start.
    pub first_seen: Duration,
}

impl ThreadStacks {
    /// Each distinct stack (frame indices, root first) with how many times it was seen, in
    /// the order first seen.
    pub fn stacks(&self) -> impl Iterator<Item = (&[u32], u64)> + '_ {
        self.entries.iter().map(|e| (e.frames.as_slice(), e.count))
    }

    /// The distinct stacks with their counts and times, in the order first seen.
    pub fn entries(&self) -> &[StackCount] {
        &self.entries
    }

    pub fn samples(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum()
    }
}

impl Profile {
    pub fn new(name: impl Into<String>, interval: Option<Duration>, options: Options) -> Profile {
        Profile {
            name: name.into(),
            interval,
            options,
            pid: None,
            clock: "wall".into(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            last: Duration::ZERO,
            frames: Vec::new(),
            frame_index: HashMap::new(),
            threads: Vec::new(),
            thread_index: HashMap::new(),
        }
    }

    /// Counts one stack of `thread`, given innermost frame first. A thread is known by its
    /// kernel id and ident; its name is the latest seen.
    pub fn add<F: FrameRef>(
        &mut self,
        thread: &ThreadId,
        innermost_first: impl DoubleEndedIterator<Item = F>,
    ) {
        let at = match self.thread_index.get(&(thread.tid, thread.ident)) {
            Some(&at) => at,
            None => {
                self.thread_index.insert((thread.tid, thread.ident), self.threads.len());
                self.threads.push(ThreadStacks {
                    thread: thread.clone(),
                    index: HashMap::new(),
                    entries: Vec::new(),
                    last: None,
                });
                self.threads.len() - 1
            }
        };
        self.last = self.started.elapsed();
        if thread.name.is_some() && self.threads[at].thread.name != thread.name {
            self.threads[at].thread.name.clone_from(&thread.name);
        }
        // The outer frames the stack shares with the thread's last one are found by comparing
        // them, without hashing or copying names.
        let lines = self.options.lines;
        let last = self.threads[at].last.map(|i| &self.threads[at].entries[i].frames);
        let mut stack = Vec::with_capacity(last.map_or(0, Vec::len));
        let mut same = true;
        for frame in innermost_first.rev() {
            let line = frame.line().filter(|_| lines);
            let known = last.filter(|_| same).and_then(|l| l.get(stack.len())).copied().filter(|&i| {
                let f = &self.frames[i as usize];
                f.line == line && f.function == frame.function() && f.file == frame.file()
            });
            let index = match known {
                Some(i) => i,
                None => {
                    same = false;
                    let frame = Frame { function: frame.function().into(), file: frame.file().into(), line };
                    let next = self.frames.len() as u32;
                    *self.frame_index.entry(frame).or_insert_with_key(|f| {
                        self.frames.push(f.clone());
                        next
                    })
                }
            };
            stack.push(index);
        }
        let now = self.last;
        let t = &mut self.threads[at];
        let found = match t.last.filter(|&i| t.entries[i].frames == stack) {
            Some(i) => Some(i),
            None => t.index.get(&stack).copied(),
        };
        let i = match found {
            Some(i) => i,
            None => {
                t.index.insert(stack.clone(), t.entries.len());
                t.entries.push(StackCount { frames: stack, count: 0, first_seen: now });
                t.entries.len() - 1
            }
        };
        t.entries[i].count += 1;
        t.last = Some(i);
    }

    /// The wall-clock time the profile was made.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// From the profile's start to the latest stack added.
    pub fn duration(&self) -> Duration {
        self.last
    }

    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    pub fn threads(&self) -> &[ThreadStacks] {
        &self.threads
    }

    /// Stacks counted, all threads together.
    pub fn samples(&self) -> u64 {
        self.threads.iter().map(ThreadStacks::samples).sum()
    }

    /// Every stack as frame names (`function (file:line)`), root first, with its count:
    /// threads merged, or each under a frame naming it if [`Options::split_threads`].
    /// Stacks equal once threads are merged are counted together.
    pub fn folded(&self) -> Vec<(Vec<String>, u64)> {
        let names: Vec<String> = self.frames.iter().map(frame_name).collect();
        let mut out: Vec<(Vec<String>, u64)> = Vec::new();
        let mut index: HashMap<Vec<String>, usize> = HashMap::new();
        for t in &self.threads {
            let label = self.options.split_threads.then(|| t.thread.label());
            for (stack, count) in t.stacks() {
                let key: Vec<String> =
                    label.iter().cloned().chain(stack.iter().map(|&i| names[i as usize].clone())).collect();
                match index.get(&key) {
                    Some(&at) => out[at].1 += count,
                    None => {
                        index.insert(key.clone(), out.len());
                        out.push((key, count));
                    }
                }
            }
        }
        out
    }
}

/// `function (file:line)`, or `function (file)` without a line; a frame of no file (one that
/// names a process or a thread rather than code) is its name alone.
pub fn frame_name(frame: &Frame) -> String {
    match frame.line {
        Some(line) => format!("{} ({}:{line})", frame.function, frame.file),
        None if frame.file.is_empty() => frame.function.clone(),
        None => format!("{} ({})", frame.function, frame.file),
    }
}

/// A file format for a [`Profile`].
pub trait Writer {
    /// The usual file name extension of the format, without the dot.
    fn extension(&self) -> &'static str;
    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn frame(function: &str, line: i32) -> Frame {
        Frame { function: function.into(), file: "app.py".into(), line: Some(line) }
    }

    pub fn thread(tid: i32, name: &str) -> ThreadId {
        ThreadId { tid: Some(tid), ident: tid as u64 * 16, name: Some(name.into()) }
    }

    /// Two threads: `worker` spends 3 samples in hot and 1 in cold, `main` 2 in wait.
    pub fn sample_profile(options: Options) -> Profile {
        let mut p = Profile::new("test", Some(Duration::from_millis(10)), options);
        let worker = thread(11, "worker");
        let main = thread(10, "MainThread");
        for _ in 0..3 {
            p.add(&worker, [frame("hot", 5), frame("run", 20), frame("<module>", 30)].iter());
        }
        p.add(&worker, [frame("cold", 9), frame("run", 21), frame("<module>", 30)].iter());
        p.add(&main, [frame("wait", 40), frame("<module>", 30)].iter());
        p.add(&main, [frame("wait", 41), frame("<module>", 30)].iter());
        p
    }

    #[test]
    fn identical_stacks_are_counted_once() {
        let p = sample_profile(Options::default());
        assert_eq!(p.samples(), 6);
        let worker = &p.threads()[0];
        assert_eq!(worker.thread.name.as_deref(), Some("worker"));
        let counts: Vec<u64> = worker.stacks().map(|(_, n)| n).collect();
        assert_eq!(counts, [3, 1]);
        let (first, _) = worker.stacks().next().expect("a stack");
        let names: Vec<&str> = first.iter().map(|&i| p.frames()[i as usize].function.as_str()).collect();
        assert_eq!(names, ["<module>", "run", "hot"], "root first");
    }

    #[test]
    fn without_lines_a_function_is_one_frame() {
        let p = sample_profile(Options { lines: false, split_threads: false });
        let main = &p.threads()[1];
        assert_eq!(main.stacks().count(), 1, "wait at lines 40 and 41 is one stack");
        assert_eq!(main.samples(), 2);
    }

    /// A stack that shares outer frames with the one before is counted as its own stack, and
    /// one equal to an earlier (not the last) stack adds to that stack's count.
    #[test]
    fn stacks_sharing_outer_frames_stay_apart() {
        let mut p = Profile::new("test", None, Options::default());
        let t = thread(1, "t");
        let a = [frame("a", 1), frame("mid", 2), frame("root", 3)];
        let b = [frame("b", 1), frame("mid", 2), frame("root", 3)];
        let shorter = [frame("mid", 2), frame("root", 3)];
        let moved = [frame("a", 1), frame("mid", 7), frame("root", 3)];
        for stack in [&a[..], &b, &a, &shorter, &a, &moved] {
            p.add(&t, stack.iter());
        }
        let stacks: Vec<(Vec<String>, u64)> = p.threads()[0]
            .stacks()
            .map(|(s, n)| (s.iter().map(|&i| frame_name(&p.frames()[i as usize])).collect(), n))
            .collect();
        let names = |s: &[Frame]| s.iter().rev().map(frame_name).collect::<Vec<_>>();
        assert_eq!(stacks, [(names(&a), 3), (names(&b), 1), (names(&shorter), 1), (names(&moved), 1)]);
    }

    #[test]
    fn a_stack_keeps_the_time_it_was_first_seen() {
        let mut p = Profile::new("test", None, Options::default());
        let t = thread(1, "a");
        p.add(&t, [frame("f", 1)].iter());
        let first = p.threads()[0].entries()[0].first_seen;
        p.add(&t, [frame("f", 1)].iter());
        p.add(&t, [frame("g", 1)].iter());
        let entries = p.threads()[0].entries();
        assert_eq!(entries.len(), 2, "one entry per distinct stack, not per sample");
        assert_eq!((entries[0].count, entries[0].first_seen), (2, first), "seeing it again keeps its time");
        assert!(entries[1].first_seen >= first, "{entries:?}");
        assert_eq!(p.duration(), entries[1].first_seen);
    }

    #[test]
    fn a_thread_keeps_its_latest_name() {
        let mut p = Profile::new("test", None, Options::default());
        p.add(&ThreadId { name: None, ..thread(5, "") }, [frame("f", 1)].iter());
        p.add(&thread(5, "renamed"), [frame("f", 1)].iter());
        assert_eq!(p.threads().len(), 1);
        assert_eq!(p.threads()[0].thread.label(), "thread renamed (5)");
    }
}
