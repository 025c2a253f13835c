//! `record --subprocesses`: the processes a target starts while it is recorded, and theirs,
//! found by polling `/proc` and sampled beside it.
//!
//! Polling costs one directory listing and one small read per thread of each process in the
//! tree, at most every [`POLL_EVERY`], over at most [`MAX_TREE`] processes. A descendant that
//! cannot be read as Python is looked at again at each poll for [`TRIES`] polls (an interpreter
//! starting up, or a fork about to run another program, cannot be read yet), then only once it
//! has run another program; one that stops being readable (a fork that ran another program) is
//! opened again.

use crate::sampling::{Observer, Stats};
use pymri_cpython::{command_line, LiveProcess as Live, Located, SampleOptions, Sampler, Snapshot};
use pymri_memory::child_pids;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the process tree is listed.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Processes listed in one poll, the target included: a target that forks without end costs
/// a bounded time per poll.
const MAX_TREE: usize = 1024;
/// Processes opened during one recording (each program a process runs counts once): what
/// their samplers keep is bounded by this.
pub const MAX_OPENED: usize = 256;
/// Polls at which a descendant that cannot be read as Python is tried again (3 s): long enough
/// for an interpreter to start on a loaded machine.
const TRIES: u32 = 30;
/// Characters of a command line kept in a process's label.
const LABEL_COMMAND_CHARS: usize = 120;

/// The opened processes, made once per recording; samplers borrow from it.
pub type Slots = Vec<OnceCell<(Live, Located)>>;

pub fn slots() -> Slots {
    (0..MAX_OPENED).map(|_| OnceCell::new()).collect()
}

/// `process PID (COMMAND LINE)`, the root frame of a process's stacks; the command line is the
/// target's text, so made one line and inert, and bounded.
pub fn label(pid: i32) -> String {
    let line = command_line(pid);
    let line = pymri_text::name(&line);
    let mut shown: String = line.chars().take(LABEL_COMMAND_CHARS).collect();
    if line.chars().nth(LABEL_COMMAND_CHARS).is_some() {
        shown.push_str("...");
    }
    format!("process {pid} ({shown})")
}

/// A process's executable, to notice when it runs another program.
fn executable(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

struct Member<'a> {
    pid: i32,
    label: String,
    exe: Option<PathBuf>,
    sampler: Sampler<'a>,
}

/// The descendants of one process that run Python.
pub struct Family<'a> {
    root: i32,
    slots: &'a Slots,
    opened: usize,
    members: Vec<Member<'a>>,
    /// Descendants not read as Python: the executable they ran when looked at, and how many
    /// polls tried them with it.
    others: HashMap<i32, (Option<PathBuf>, u32)>,
    polled: Option<Instant>,
}

impl<'a> Family<'a> {
    pub fn new(root: i32, slots: &'a Slots) -> Family<'a> {
        Family { root, slots, opened: 0, members: Vec::new(), others: HashMap::new(), polled: None }
    }

    /// Samples every descendant running Python, after looking for new ones if it is time;
    /// `each` gets a process's label and its sample.
    pub fn sample(&mut self, options: &SampleOptions, mut each: impl FnMut(i32, &str, &Snapshot)) {
        if self.polled.is_none_or(|at| at.elapsed() >= POLL_EVERY) {
            self.polled = Some(Instant::now());
            self.poll();
        }
        // A process that ended, or whose memory no longer reads as the Python it was, is
        // dropped; if it runs Python again, the next poll opens it again.
        self.members.retain_mut(|m| match m.sampler.sample(options) {
            Ok(snapshot) => {
                each(m.pid, &m.label, &snapshot);
                true
            }
            Err(_) => false,
        });
    }

    fn poll(&mut self) {
        let tree = descendants(self.root);
        let alive: HashSet<i32> = tree.iter().copied().collect();
        self.others.retain(|pid, _| alive.contains(pid));
        self.members.retain(|m| alive.contains(&m.pid) && executable(m.pid) == m.exe);
        for pid in tree {
            if self.members.iter().any(|m| m.pid == pid) {
                continue;
            }
            let exe = executable(pid);
            let tries = match self.others.get(&pid) {
                Some((seen, tries)) if *seen == exe => *tries,
                _ => 0,
            };
            if tries >= TRIES {
                continue;
            }
            match self.open(pid) {
                Some(sampler) => {
                    self.others.remove(&pid);
                    self.members.push(Member { pid, label: label(pid), exe, sampler });
                }
                None => {
                    self.others.insert(pid, (exe, tries + 1));
                }
            }
        }
    }

    fn open(&mut self, pid: i32) -> Option<Sampler<'a>> {
        let slot = self.slots.get(self.opened)?;
        let live = Live::open(pid).ok()?;
        let located = live.locate().ok()?;
        // The first read proves the interpreter is initialised (a process between fork and
        // exec, or starting up, is not yet).
        located.snapshot(&live.mem, &Default::default()).ok()?;
        self.opened += 1;
        let _ = slot.set((live, located));
        let (live, located) = slot.get()?;
        Some(Sampler::new(live, located))
    }
}

/// An observer that, with a family, also samples the target's descendants after each sample
/// of the target and hands theirs to [`Observer::member`]; without one, the observer alone.
pub struct WithFamily<'f, O> {
    pub inner: O,
    family: Option<Family<'f>>,
    options: SampleOptions,
}

impl<'f, O: Observer> WithFamily<'f, O> {
    pub fn new(inner: O, family: Option<Family<'f>>, options: SampleOptions) -> WithFamily<'f, O> {
        WithFamily { inner, family, options }
    }
}

impl<O: Observer> Observer for WithFamily<'_, O> {
    fn snapshot(&mut self, snapshot: &Snapshot) {
        self.inner.snapshot(snapshot);
        if let Some(family) = &mut self.family {
            let inner = &mut self.inner;
            family.sample(&self.options, |pid, label, s| inner.member(pid, label, s));
        }
    }

    fn tick(&mut self, stats: &Stats) -> ControlFlow<()> {
        self.inner.tick(stats)
    }
}

/// Every process below `root` (children first), at most [`MAX_TREE`] - 1 of them.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut next = 0;
    let mut parent = root;
    loop {
        for child in child_pids(parent) {
            if found.len() + 1 >= MAX_TREE {
                return found;
            }
            if seen.insert(child) {
                found.push(child);
            }
        }
        let Some(&p) = found.get(next) else { return found };
        parent = p;
        next += 1;
    }
}
