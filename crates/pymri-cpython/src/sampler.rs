//! A live process read again and again (the shape of py-spy's `PythonSpy` and rbspy's
//! `RubySpy`): opened and located once, then sampled as often as asked.
//!
//! Between samples it keeps decoded code objects (checked against the object's fields before
//! each reuse, since a freed code object's address is soon another's) and thread names
//! (re-read for a thread never seen and at least every second), and the pages of memory the
//! last sample used, read again with one system call at the start of the next. The process's
//! threads are listed again when a thread state names a kernel thread not listed yet (a thread
//! started since), and at least every second, so threads started after the sampler was made
//! have their kernel id and run state. The kernel's view of each thread (`/proc` reads) is
//! read only when [`SampleOptions::kernel_state`] asks for it. A thread whose stack changed
//! while it was read is read once more from
//! the target; if it is still torn, its stack is kept as far as it could be read, with the
//! reason in [`ThreadDump::error`], and the other threads are unaffected. A sample whose
//! thread list itself was torn is read once more before it counts as failed.

use crate::cache::Caches;
use crate::live::{namespace_tid, shares_our_pid_namespace};
use crate::{Error, LiveProcess, Located, ReprLimits, Result, Snapshot, SnapshotOptions};
use pymri_memory::{parse_futex_wait, parse_run_state, read_proc, thread_ids, Freeze, MemoryError, RunState};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// What one sample reads besides stacks.
#[derive(Debug, Clone, Copy)]
pub struct SampleOptions {
    pub locals: bool,
    pub limits: ReprLimits,
    /// Frames read per thread before the stack is reported as cut.
    pub max_frames: usize,
    /// Stop the process's Python threads (those the last sample found, the very first sample
    /// being read once beforehand to find them) while the sample is read, and only then: a
    /// consistent view for a pause of each thread. Threads without a Python thread state are
    /// never stopped.
    pub blocking: bool,
    /// Whether to ask the kernel what each thread is doing (on a CPU, asleep, waiting for the
    /// GIL): two `/proc` reads per thread. Without it a thread's state is
    /// [`ThreadState::Unknown`](crate::ThreadState::Unknown) unless it holds the GIL, and
    /// `on_cpu` is `None`.
    pub kernel_state: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        let d = SnapshotOptions::default();
        SampleOptions {
            locals: d.locals,
            limits: d.limits,
            max_frames: d.max_frames,
            blocking: false,
            kernel_state: true,
        }
    }
}

/// Stacks kept for [`Sampler::recycle`].
const MAX_POOLED_STACKS: usize = 4096;

/// The thread list is read again at least this often, to forget threads that ended.
const RELIST_EVERY: Duration = Duration::from_secs(1);

/// A sampler of one live process.
pub struct Sampler<'a> {
    live: &'a LiveProcess,
    located: &'a Located,
    caches: Caches,
    /// Whether the target numbers threads as we do (no PID namespace of its own).
    shared_namespace: bool,
    /// The target's thread ids (as its namespace numbers them) to ours, as of the last listing.
    tids: HashMap<i32, i32>,
    /// When the threads were last listed.
    listed_at: Option<Instant>,
    /// Thread ids read from thread states that were not threads of the process when listed
    /// again (3.9/3.10 learn them from glibc's thread structure, which may not be glibc's):
    /// not a reason to list the threads again until the next periodic listing.
    not_threads: HashSet<i32>,
    proc_files: ProcFiles,
    /// Kernel ids (ours) of the threads with a Python thread state, as of the last sample.
    python_tids: Vec<i32>,
    /// With `blocking`: each stopped thread's run state and futex wait just before it stopped.
    before_stop: Option<HashMap<i32, KernelView>>,
}

/// What the kernel says a thread does: its run state, and the futex it sleeps on.
type KernelView = (Option<RunState>, Option<u64>);

impl<'a> Sampler<'a> {
    pub fn new(live: &'a LiveProcess, located: &'a Located) -> Sampler<'a> {
        Sampler {
            live,
            located,
            caches: Caches::persistent(),
            shared_namespace: shares_our_pid_namespace(live.pid),
            tids: HashMap::new(),
            listed_at: None,
            not_threads: HashSet::new(),
            proc_files: ProcFiles { pid: live.pid, open: RefCell::default() },
            python_tids: Vec::new(),
            before_stop: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.live.pid
    }

    /// Every thread's stack now, with kernel thread ids as this machine numbers them. Fails
    /// with [`MemoryError::Exited`] once the process is gone.
    pub fn sample(&mut self, options: &SampleOptions) -> Result<Snapshot> {
        if !options.blocking {
            return self.sample_running(options);
        }
        if self.python_tids.is_empty() {
            self.sample_running(options)?;
        }
        // A stopped thread is `t` to the kernel, whatever it was doing: what each was doing is
        // read first, and the sample shows that.
        let view = self.python_tids.iter().map(|&tid| (tid, self.proc_files.view(tid))).collect();
        let pid = self.live.pid;
        let freeze = Freeze::only(pid, &self.python_tids).map_err(|e| match e {
            MemoryError::NoSuchProcess { .. } => MemoryError::Exited { pid },
            e => e,
        })?;
        self.before_stop = Some(view);
        let snapshot = self.sample_running(options);
        drop(freeze);
        self.before_stop = None;
        snapshot
    }

    fn sample_running(&mut self, options: &SampleOptions) -> Result<Snapshot> {
        let mut listed = false;
        if self.listed_at.is_none_or(|at| at.elapsed() >= RELIST_EVERY) {
            self.refresh_threads()?;
            listed = true;
        }
        let mut snapshot = self.read_again_if_torn(options)?;
        let unlisted = |s: &Snapshot, me: &Self| {
            s.threads
                .iter()
                .filter_map(|t| t.tid)
                .any(|t| !me.tids.contains_key(&t) && !me.not_threads.contains(&t))
        };
        if !listed && unlisted(&snapshot, self) {
            // A thread started since the last listing: list them, and read again so that its
            // run state is read too.
            self.refresh_threads()?;
            snapshot = self.read_again_if_torn(options)?;
        }
        for t in &mut snapshot.threads {
            t.tid = match t.tid {
                Some(tid) if self.tids.contains_key(&tid) => Some(self.host_tid(tid)),
                Some(tid) => {
                    self.not_threads.insert(tid);
                    None
                }
                None => None,
            };
        }
        self.python_tids.clear();
        self.python_tids.extend(snapshot.threads.iter().filter_map(|t| t.tid));
        Ok(snapshot)
    }

    /// Gives a sample back once it has been used: the next samples write their frames over
    /// its frames, saving an allocation per name.
    pub fn recycle(&mut self, snapshot: Snapshot) {
        let pool = &mut self.caches.frame_pool;
        for t in snapshot.threads {
            if pool.len() >= MAX_POOLED_STACKS {
                break;
            }
            pool.push(t.frames);
        }
    }

    fn read_again_if_torn(&mut self, options: &SampleOptions) -> Result<Snapshot> {
        match self.read(options) {
            Ok(s) => Ok(s),
            Err(e) if self.gone() => Err(exited(self.live.pid, e)),
            // The thread list may have changed under the reader (a thread ending): once more.
            Err(_) => self.read(options).map_err(|e| match self.gone() {
                true => exited(self.live.pid, e),
                false => e,
            }),
        }
    }

    fn read(&mut self, options: &SampleOptions) -> Result<Snapshot> {
        let tids = &self.tids;
        let host = |tid: i32| tids.get(&tid).copied();
        let files = &self.proc_files;
        let before = self.before_stop.as_ref();
        let seen = |tid: i32| before.and_then(|b| b.get(&host(tid)?));
        let run_state = |tid: i32| match seen(tid) {
            Some(view) => view.0,
            None => files.read(host(tid)?, "stat").as_deref().and_then(parse_run_state),
        };
        let futex_wait = |tid: i32| match seen(tid) {
            Some(view) => view.1,
            None => files.read(host(tid)?, "syscall").as_deref().and_then(parse_futex_wait),
        };
        let snapshot_options = SnapshotOptions {
            locals: options.locals,
            limits: options.limits,
            max_frames: options.max_frames,
            run_state: options.kernel_state.then_some(&run_state as &dyn Fn(i32) -> Option<RunState>),
            // Checked after the read, against a listing made again if need be.
            known_tids: &[],
            live: true,
            futex_wait: options.kernel_state.then_some(&futex_wait as &dyn Fn(i32) -> Option<u64>),
            max_read: SnapshotOptions::default().max_read,
        };
        self.located.snapshot_cached(&self.live.mem, &snapshot_options, &mut self.caches)
    }

    fn host_tid(&self, ns_tid: i32) -> i32 {
        self.tids.get(&ns_tid).copied().unwrap_or(ns_tid)
    }

    /// Lists the threads again: new ones are mapped to our numbering, ended ones forgotten.
    fn refresh_threads(&mut self) -> Result<()> {
        let pid = self.live.pid;
        let now = thread_ids(pid).map_err(|e| match e {
            MemoryError::NoSuchProcess { .. } => MemoryError::Exited { pid },
            e => e,
        })?;
        if now.is_empty() {
            return Err(MemoryError::Exited { pid }.into());
        }
        let mut known: HashMap<i32, i32> = self.tids.iter().map(|(&ns, &host)| (host, ns)).collect();
        known.retain(|host, _| now.binary_search(host).is_ok());
        for host in now {
            known.entry(host).or_insert_with(|| match self.shared_namespace {
                true => host,
                false => namespace_tid(pid, host),
            });
        }
        self.proc_files.open.borrow_mut().retain(|(tid, _), _| known.contains_key(tid));
        self.tids = known.into_iter().map(|(host, ns)| (ns, host)).collect();
        self.listed_at = Some(Instant::now());
        self.not_threads.clear();
        Ok(())
    }

    /// Whether the process has ended (a zombie has no memory left to read).
    fn gone(&self) -> bool {
        read_proc(&format!("/proc/{}/maps", self.live.pid)).map_or(true, |maps| maps.is_empty())
    }
}

fn exited(pid: i32, e: Error) -> Error {
    match e {
        Error::Memory(MemoryError::PermissionDenied { .. }) => e,
        _ => Error::Memory(MemoryError::Exited { pid }),
    }
}

/// `/proc/PID/task/TID/stat` and `syscall`, kept open from one sample to the next: a procfs
/// file read again from offset 0 is made anew, and opening and closing it cost as much as
/// reading it.
struct ProcFiles {
    pid: i32,
    open: RefCell<HashMap<(i32, &'static str), File>>,
}

impl ProcFiles {
    /// The run state, and for a sleeping thread the futex it waits on (a second read, skipped
    /// for a running thread, which the kernel would not say anyway).
    fn view(&self, tid: i32) -> KernelView {
        let state = self.read(tid, "stat").as_deref().and_then(parse_run_state);
        let futex = match state {
            Some(RunState::Sleeping) => self.read(tid, "syscall").as_deref().and_then(parse_futex_wait),
            _ => None,
        };
        (state, futex)
    }

    fn read(&self, tid: i32, name: &'static str) -> Option<String> {
        let mut open = self.open.borrow_mut();
        let file = match open.entry((tid, name)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(format!("/proc/{}/task/{tid}/{name}", self.pid)).ok()?)
            }
        };
        // Both files are a line of well under 1 KiB.
        let mut buf = [0u8; 1024];
        let Ok(n) = file.read_at(&mut buf, 0) else {
            // The thread ended; its id may be another's by the next read.
            open.remove(&(tid, name));
            return None;
        };
        String::from_utf8(buf[..n].to_vec()).ok()
    }
}
