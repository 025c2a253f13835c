//! What the doctor saw during its window: every sample folded into per-thread figures as it
//! arrives (the window keeps no list of samples: its memory does not grow with its length),
//! the counters `/proc` keeps over time, and the last sample whole.

use super::finding::{CounterSummary, Series};
use crate::sampling::{Observer, Stats};
use pymri_cpython::{Snapshot, ThreadState};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// How often the `/proc` counters are read.
const COUNTER_EVERY: Duration = Duration::from_millis(250);

/// Where a thread is: its innermost frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spot {
    pub function: String,
    pub file: String,
    pub line: i32,
}

#[derive(Debug, Clone, Default)]
pub struct ThreadWatch {
    pub tid: Option<i32>,
    pub name: Option<String>,
    /// Seconds into the window.
    pub first_seen: f64,
    /// Seconds into the window.
    pub last_seen: f64,
    pub samples: u64,
    pub states: HashMap<ThreadState, u64>,
    pub on_cpu: u64,
    pub holds_gil: u64,
    /// Samples whose innermost frame differs from the previous sample's.
    pub moves: u64,
    /// Seconds into the window when the innermost frame last changed (or was first seen).
    pub still_since: f64,
    pub last_spot: Option<Spot>,
    /// Innermost frames of the samples taken while the thread was on a CPU.
    pub hot: HashMap<Spot, u64>,
}

/// One reading of the counters the kernel keeps for the process.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Seconds into the window.
    pub at: f64,
    pub threads: u64,
    pub fds: u64,
    pub rss_bytes: u64,
    /// CPU time (user + system) of each thread so far, in clock ticks.
    pub cpu_ticks: HashMap<i32, u64>,
    /// Time each thread spent on a CPU or waiting in a run queue for one so far, in
    /// nanoseconds (`schedstat`): a thread that wants a CPU all the time, whether the machine
    /// had one to give or not.
    pub runnable_ns: HashMap<i32, u64>,
}

pub struct Window {
    pub pid: i32,
    started: Instant,
    next_counters: Instant,
    pub samples: u64,
    /// By `threading.get_ident()`.
    pub threads: BTreeMap<u64, ThreadWatch>,
    pub counters: Vec<Counters>,
    /// The last sample, whole.
    pub last: Option<Snapshot>,
    /// How long the window lasted.
    pub elapsed: Duration,
    /// One sample taken after the window with locals, for the evidence.
    pub closing: Option<Snapshot>,
    /// What each descriptor was at the window's start (the link's text, never followed).
    pub fds_at_start: BTreeMap<i32, String>,
    /// Whether the target is a live process (a core file has no kernel state to read).
    pub live: bool,
    /// Where the target's files are (its root).
    pub root: std::path::PathBuf,
    /// Every thread's stacks over the window, for the flame graph.
    pub profile: pymri_profile::Profile,
}

impl Window {
    pub fn new(pid: i32) -> Window {
        let now = Instant::now();
        let mut window = Window {
            pid,
            started: now,
            next_counters: now,
            samples: 0,
            threads: BTreeMap::new(),
            counters: Vec::new(),
            last: None,
            elapsed: Duration::ZERO,
            closing: None,
            fds_at_start: super::fds::targets(pid),
            live: true,
            root: std::path::PathBuf::from(format!("/proc/{pid}/root")),
            profile: pymri_profile::Profile::new(
                format!("pymri doctor {pid}"),
                None,
                pymri_profile::Options { lines: true, split_threads: true },
            ),
        };
        window.read_counters();
        window
    }

    /// A window of one instant (a core file): no process to read counters or descriptors from.
    pub fn instant(pid: i32, root: std::path::PathBuf) -> Window {
        let now = Instant::now();
        Window {
            pid,
            started: now,
            next_counters: now + Duration::from_secs(u64::from(u32::MAX)),
            samples: 0,
            threads: BTreeMap::new(),
            counters: Vec::new(),
            last: None,
            elapsed: Duration::ZERO,
            closing: None,
            fds_at_start: BTreeMap::new(),
            live: false,
            root,
            profile: pymri_profile::Profile::new(
                format!("pymri doctor {pid}"),
                None,
                pymri_profile::Options { lines: true, split_threads: true },
            ),
        }
    }

    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Reads the counters again if they are due.
    fn read_counters(&mut self) {
        let now = Instant::now();
        if now < self.next_counters {
            return;
        }
        self.next_counters = now + COUNTER_EVERY;
        if let Some(mut c) = read_counters(self.pid) {
            c.at = self.seconds();
            self.counters.push(c);
        }
    }

    /// The counters at the start and the end of the window.
    pub fn summary(&self) -> CounterSummary {
        let (Some(a), Some(b)) = (self.counters.first(), self.counters.last()) else {
            return CounterSummary::default();
        };
        CounterSummary {
            threads: (a.threads, b.threads),
            fds: (a.fds, b.fds),
            rss_bytes: (a.rss_bytes, b.rss_bytes),
        }
    }

    /// The counters as series over the window.
    pub fn series(&self, name: &str, unit: &str, value: impl Fn(&Counters) -> f64) -> Series {
        Series {
            name: name.into(),
            unit: unit.into(),
            points: self.counters.iter().map(|c| (c.at, value(c))).collect(),
        }
    }

    /// Share of one CPU a thread used over the window (1.0: one CPU all the time), from the
    /// kernel's per-thread times at the first and last readings.
    pub fn cpu_share(&self, tid: i32) -> Option<f64> {
        let (first, last) = (self.counters.first()?, self.counters.last()?);
        let span = last.at - first.at;
        if span <= 0.0 {
            return None;
        }
        let ticks = last.cpu_ticks.get(&tid)?.saturating_sub(*first.cpu_ticks.get(&tid).unwrap_or(&0));
        Some(ticks as f64 / clock_ticks_per_second() / span)
    }
}

impl Window {
    /// Share of the window a thread was on a CPU or waiting for one (1.0: all the time), from
    /// the kernel's scheduler statistics at the first and last readings.
    pub fn runnable_share(&self, tid: i32) -> Option<f64> {
        let (first, last) = (self.counters.first()?, self.counters.last()?);
        let span = last.at - first.at;
        if span <= 0.0 {
            return None;
        }
        let ns = last.runnable_ns.get(&tid)?.saturating_sub(*first.runnable_ns.get(&tid).unwrap_or(&0));
        Some(ns as f64 / 1e9 / span)
    }
}

impl Observer for Window {
    fn snapshot(&mut self, snapshot: &Snapshot) {
        let at = self.seconds();
        self.samples += 1;
        for t in &snapshot.threads {
            let w = self.threads.entry(t.ident).or_insert_with(|| ThreadWatch {
                still_since: at,
                first_seen: at,
                ..ThreadWatch::default()
            });
            w.tid = t.tid.or(w.tid);
            if t.name.is_some() {
                w.name.clone_from(&t.name);
            }
            w.last_seen = at;
            w.samples += 1;
            *w.states.entry(t.state).or_default() += 1;
            if t.on_cpu == Some(true) {
                w.on_cpu += 1;
            }
            if t.holds_gil {
                w.holds_gil += 1;
            }
            let spot = t.frames.first().map(|f| Spot {
                function: f.function.clone(),
                file: f.file.clone(),
                line: f.line,
            });
            if spot != w.last_spot {
                if w.last_spot.is_some() {
                    w.moves += 1;
                }
                w.still_since = at;
                w.last_spot.clone_from(&spot);
            }
            if t.on_cpu == Some(true) && t.state != ThreadState::WaitingForGil {
                if let Some(spot) = spot {
                    *w.hot.entry(spot).or_default() += 1;
                }
            }
            if !t.frames.is_empty() {
                let id = pymri_profile::ThreadId { tid: t.tid, ident: t.ident, name: t.name.clone() };
                self.profile.add(&id, t.frames.iter().map(crate::commands::record::Sampled));
            }
        }
        match &mut self.last {
            Some(last) => last.clone_from(snapshot),
            None => self.last = Some(snapshot.clone()),
        }
        self.read_counters();
    }

    fn tick(&mut self, stats: &Stats) -> ControlFlow<()> {
        self.elapsed = stats.elapsed;
        self.read_counters();
        ControlFlow::Continue(())
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The process's thread and descriptor counts, resident size and per-thread CPU times; `None`
/// once the process is gone.
fn read_counters(pid: i32) -> Option<Counters> {
    let statm = pymri_memory::read_proc(&format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0);
    let tids = pymri_memory::thread_ids(pid).ok()?;
    let mut cpu_ticks = HashMap::with_capacity(tids.len());
    let mut runnable_ns = HashMap::with_capacity(tids.len());
    for &tid in &tids {
        if let Ok(stat) = pymri_memory::read_proc(&format!("/proc/{pid}/task/{tid}/stat")) {
            if let Some(ticks) = parse_cpu_ticks(&stat) {
                cpu_ticks.insert(tid, ticks);
            }
        }
        if let Ok(stat) = pymri_memory::read_proc(&format!("/proc/{pid}/task/{tid}/schedstat")) {
            if let Some(ns) = parse_runnable_ns(&stat) {
                runnable_ns.insert(tid, ns);
            }
        }
    }
    Some(Counters {
        at: 0.0,
        threads: tids.len() as u64,
        fds,
        rss_bytes: resident_pages.saturating_mul(page),
        cpu_ticks,
        runnable_ns,
    })
}

/// Time on a CPU plus time waiting for one, from a `schedstat` line (`RUN WAIT SLICES`).
fn parse_runnable_ns(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace();
    let run: u64 = fields.next()?.parse().ok()?;
    let wait: u64 = fields.next()?.parse().ok()?;
    Some(run.saturating_add(wait))
}

/// utime + stime of a `stat` line. The command name (field 2) may hold spaces and parentheses:
/// the fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

#[cfg(test)]
mod tests {
    use super::{parse_cpu_ticks, parse_runnable_ns};

    #[test]
    fn runnable_time() {
        assert_eq!(parse_runnable_ns("366885 1049276 2\n"), Some(1416161));
        assert_eq!(parse_runnable_ns("366885"), None);
    }

    #[test]
    fn cpu_ticks_after_a_hostile_name() {
        let stat = "4242 (a) b) (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }
}
