//! Reading every thread's stack: the snapshot behind `pymri dump`.

use crate::cache::{Caches, GilTurn};
use crate::code::{CodeInfo, Position, CO_FAST_CELL, CO_FAST_FREE, CO_FAST_HIDDEN};
use crate::objects::{Kind, Objects, ReprLimits};
use crate::{Error, Located, Result, TargetFiles};
use pymri_layouts::{structural, FrameRef, GilAccess, GilLayout, InstructionRef};
use pymri_memory::{field, Addresses, Budget, Memory, MemoryExt, PageCache, RunState};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// What to read besides stacks.
pub struct SnapshotOptions<'a> {
    pub locals: bool,
    pub limits: ReprLimits,
    /// Frames read per thread before the stack is reported as cut.
    pub max_frames: usize,
    /// Bytes of the target's memory one snapshot may read (each read counting at least
    /// [`Budget::MIN_COST`]): what is left unread when it is spent is reported as such.
    pub max_read: u64,
    /// The kernel's view of a thread (`None` for core files, which do not record it, and whose
    /// threads were stopped while written).
    pub run_state: Option<&'a dyn Fn(i32) -> Option<RunState>>,
    /// The kernel thread ids that exist, to validate ids read from memory (empty: any).
    pub known_tids: &'a [i32],
    /// Whether the process runs while it is read (its stacks can change under the reader),
    /// where a core file's threads were stopped.
    pub live: bool,
    /// The futex address a thread sleeps on, if it does (live processes only). A thread asleep
    /// on a futex inside the GIL's state is waiting for the GIL.
    pub futex_wait: Option<&'a dyn Fn(i32) -> Option<u64>>,
}

impl Default for SnapshotOptions<'_> {
    fn default() -> Self {
        SnapshotOptions {
            locals: false,
            limits: ReprLimits::default(),
            max_frames: 4096,
            max_read: 1 << 30,
            run_state: None,
            known_tids: &[],
            live: false,
            futex_wait: None,
        }
    }
}

/// Every Python thread of a process, innermost frame first.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub threads: Vec<ThreadDump>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadDump {
    /// Kernel thread id, when it could be learned.
    pub tid: Option<i32>,
    /// `threading.get_ident()` of the thread (its `pthread_t`).
    pub ident: u64,
    /// The `threading` name, for threads the `threading` module knows.
    pub name: Option<String>,
    pub state: ThreadState,
    pub holds_gil: bool,
    /// Whether the thread is handling an exception (inside an `except` block, or a `finally`
    /// or `with` exit reached by one), whatever else it does.
    pub active_exception: bool,
    pub frames: Vec<Frame>,
    /// Why the stack is incomplete, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the kernel had the thread on a CPU (or ready for one) when it was read; `None`
    /// where that is unknown (core files).
    #[serde(skip)]
    pub on_cpu: Option<bool>,
    /// The futex the kernel had the thread asleep on when it was read (asked only of a
    /// sleeping thread without the GIL, and only when the snapshot asks the kernel).
    #[serde(skip)]
    pub futex: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadState {
    /// On a CPU, or ready to run, without the GIL.
    Running,
    /// Asleep in the kernel: blocked in I/O, a lock, a sleep.
    Idle,
    /// Asleep until the thread holding the GIL lets go of it.
    WaitingForGil,
    /// Holds the GIL (running Python code, or blocked without releasing it).
    HoldingGil,
    /// A core file does not record what a thread was doing.
    Unknown,
}

impl ThreadState {
    pub fn describe(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::Idle => "idle",
            ThreadState::WaitingForGil => "waiting for the GIL",
            ThreadState::HoldingGil => "holding the GIL",
            ThreadState::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i32,
    /// Arguments and locals in slot order (present when locals were asked for).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_locals")]
    pub locals: Option<Vec<Local>>,
    /// Names of the locals that are the function's arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Whether this is the outermost frame one C-level call of the interpreter's eval loop
    /// (`_PyEval_EvalFrameDefault`) runs: every frame before 3.11; on 3.11 a frame marked
    /// `is_entry`; on 3.12+ the frame the eval call's entry frame (owned by the C stack or by
    /// the interpreter) leads to. Native stacks are merged with Python's by it.
    #[serde(skip)]
    pub entry: bool,
    /// 3.12+: the address of that eval call's entry frame, which lives on the C stack, inside
    /// the eval call's native frame (0 when not known). Stripped interpreters are merged by it.
    #[serde(skip)]
    pub entry_frame: u64,
    /// Where the frame and its code object were in the target's memory when it was read.
    #[serde(skip)]
    pub(crate) at: FrameAt,
}

impl Frame {
    /// A frame read from no process: made from another record of one (tests, reports).
    pub fn new(function: impl Into<String>, file: impl Into<String>, line: i32) -> Frame {
        Frame {
            function: function.into(),
            file: file.into(),
            line,
            locals: None,
            arguments: None,
            entry: false,
            entry_frame: 0,
            at: FrameAt::default(),
        }
    }
}

/// The addresses behind a [`Frame`], for readers that look further into it (lock analysis).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FrameAt {
    pub frame: u64,
    pub code: u64,
}

#[derive(Debug, Clone)]
pub struct Local {
    pub name: String,
    pub repr: String,
    pub is_argument: bool,
}

fn serialize_locals<S: Serializer>(locals: &Option<Vec<Local>>, s: S) -> Result<S::Ok, S::Error> {
    let locals = locals.as_deref().unwrap_or_default();
    let mut map = s.serialize_map(Some(locals.len()))?;
    for l in locals {
        map.serialize_entry(&l.name, &l.repr)?;
    }
    map.end()
}

/// Bounds on the interpreter and thread lists (threads of all interpreters together): more
/// means a corrupt or torn list.
pub(crate) const MAX_INTERPRETERS: usize = 256;
pub(crate) const MAX_THREADS: usize = 16384;
/// Frames visited in one snapshot, shown or not: 64 threads at the full `max_frames` depth, or
/// 250 threads at Python's default recursion limit. The bound is for a target that lays out
/// endless chains of distinct frames.
const MAX_SNAPSHOT_FRAMES: usize = 1 << 18;
/// glibc's `struct pthread` keeps the kernel thread id right after its 0x2c0-byte `tcbhead_t`
/// and a two-pointer list node on x86_64. Only used for 3.9/3.10, whose thread states do not
/// record the kernel id, and only when the value matches a real thread.
#[cfg(target_arch = "x86_64")]
pub(crate) const GLIBC_PTHREAD_TID: Option<u64> = Some(0x2d0);
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const GLIBC_PTHREAD_TID: Option<u64> = None;
/// Pages cached during one snapshot: 64 MiB. A thread takes three or four pages (its state,
/// its frames, the C stack holding its entry frame); past the bound every read is a system
/// call of its own, which made a sample of 1,000 threads cost 5 times as much per thread as
/// one of 100.
const CACHE_PAGES: usize = 16384;

impl Located {
    /// Reads every thread of every interpreter.
    pub fn snapshot<M: Memory>(&self, mem: &M, options: &SnapshotOptions<'_>) -> Result<Snapshot> {
        self.snapshot_cached(mem, options, &mut Caches::one_shot())
    }

    /// [`snapshot`](Self::snapshot) keeping what stays valid between reads in `caches`.
    pub(crate) fn snapshot_cached<M: Memory>(
        &self,
        mem: &M,
        options: &SnapshotOptions<'_>,
        caches: &mut Caches,
    ) -> Result<Snapshot> {
        let cache = PageCache::with_spare(mem, CACHE_PAGES, std::mem::take(&mut caches.spare));
        caches.codes.new_pass();
        if caches.persist() {
            cache.prefetch(&caches.pages);
        }
        let snapshot = {
            let budget = Budget::new(&cache, options.max_read);
            let reader = Reader {
                located: self,
                objects: Objects::new(&budget, &self.layout, &self.types),
                caches,
                options,
                threads_read: 0,
                frames_left: MAX_SNAPSHOT_FRAMES,
            };
            reader.run()
        };
        if caches.persist() {
            caches.pages = cache.used_pages();
            caches.spare = cache.into_spare();
        }
        snapshot
    }

    /// Every asyncio task of the process (see [`crate::TaskDump`]), read without running
    /// anything in it. `files` opens the `_asyncio` extension, whose debug offsets locate the
    /// tasks on 3.14+.
    pub fn tasks<M: Memory>(
        &self,
        mem: &M,
        files: &TargetFiles<'_>,
        options: &SnapshotOptions<'_>,
    ) -> Result<Vec<crate::TaskDump>> {
        let cache = PageCache::new(mem, CACHE_PAGES);
        let budget = Budget::new(&cache, options.max_read);
        let mut caches = Caches::one_shot();
        let mut reader = Reader {
            located: self,
            objects: Objects::new(&budget, &self.layout, &self.types),
            caches: &mut caches,
            options,
            threads_read: 0,
            frames_left: MAX_SNAPSHOT_FRAMES,
        };
        reader.tasks(files)
    }

    /// A bounded repr of the object at `obj`, as `--locals` shows it.
    pub fn repr<M: Memory>(&self, mem: &M, obj: u64, limits: &ReprLimits) -> String {
        Objects::new(mem, &self.layout, &self.types).repr(obj, limits)
    }

    /// Whether the target allows PEP 768 remote debugging (3.14+), read from its memory.
    pub fn remote_debug_enabled<M: Memory>(&self, mem: &M) -> Result<Option<bool>> {
        let Some(remote) = &self.remote else { return Ok(None) };
        let mut interp = mem.read_u64(field(self.runtime, self.layout.runtime.interpreters_head)?)?;
        // The main interpreter is the last of the list; it carries the process's config.
        for _ in 0..MAX_INTERPRETERS {
            let next = mem.read_u64(field(interp, self.layout.interpreter.next)?)?;
            if next == 0 {
                return Ok(Some(mem.read_i32(field(interp, remote.remote_debugging_enabled)?)? != 0));
            }
            interp = next;
        }
        Err(Error::Inconsistent("interpreter list does not end".into()))
    }
}

pub(crate) struct Reader<'a, M: Memory> {
    pub(crate) located: &'a Located,
    pub(crate) objects: Objects<'a, Budget<&'a PageCache<&'a M>>>,
    caches: &'a mut Caches,
    pub(crate) options: &'a SnapshotOptions<'a>,
    /// Threads read so far, in every interpreter.
    threads_read: usize,
    /// Frames the snapshot may still visit.
    frames_left: usize,
}

struct Gil {
    /// Address of `struct _gil_runtime_state`.
    base: u64,
    locked: bool,
    holder: u64,
    /// `switch_number`: how many times the GIL went from one thread to another.
    switches: u64,
}

/// Bytes of `struct _gil_runtime_state` that hold its mutexes and condition variables (the
/// whole struct is about 200 bytes on x86_64 in every version).
const GIL_STATE_SPAN: u64 = 256;

impl<'a, M: Memory> Reader<'a, M> {
    fn run(mut self) -> Result<Snapshot> {
        let layout = &self.located.layout;
        let runtime = self.located.runtime;
        let mut interp = self.objects.ptr(field(runtime, layout.runtime.interpreters_head)?)?;
        if interp == 0 {
            return Err(Error::Inconsistent(
                "the interpreter is not initialised (no interpreter state)".into(),
            ));
        }
        let runtime_gil = match &layout.runtime.gil {
            Some(g) => Some(self.read_gil(runtime, g)?),
            None => None,
        };
        let mut threads = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_INTERPRETERS {
            if interp == 0 {
                break;
            }
            if !seen.insert(interp) {
                return Err(Error::Inconsistent("interpreter list loops".into()));
            }
            let gil = match (&runtime_gil, &layout.interpreter.gil) {
                (Some(g), _) => {
                    Some(Gil { base: g.base, locked: g.locked, holder: g.holder, switches: g.switches })
                }
                (None, Some(g)) => self.read_gil(interp, g).ok(),
                (None, None) => None,
            };
            let mut interp_threads = self.read_threads(interp, gil.as_ref())?;
            let idents: Vec<u64> = interp_threads.iter().map(|t| t.ident).collect();
            if self.caches.names.stale(interp, &idents) {
                let names = self.thread_names(interp).unwrap_or_default();
                self.caches.names.store(interp, names, &idents);
            }
            for t in &mut interp_threads {
                t.name = self.caches.names.get(interp, t.ident);
            }
            // CPython prepends new threads; show them oldest (the main thread) first.
            interp_threads.reverse();
            threads.extend(interp_threads);
            interp = self.objects.ptr(field(interp, layout.interpreter.next)?)?;
        }
        self.caches.gil_waits.end_snapshot();
        Ok(Snapshot { threads })
    }

    fn read_gil(&self, owner: u64, gil: &GilLayout) -> Result<Gil> {
        let base = match gil.access {
            GilAccess::Embedded(off) => field(owner, off)?,
            GilAccess::Pointer(off) => self.objects.ptr(field(owner, off)?)?,
        };
        let locked = field(base, gil.locked)?;
        Ok(Gil {
            base,
            locked: self.objects.mem.read_i32(locked)? != 0,
            holder: self.objects.ptr(field(base, gil.last_holder)?)?,
            switches: self
                .objects
                .mem
                .read_u64(field(locked, structural::GIL_SWITCH_NUMBER_AFTER_LOCKED)?)?,
        })
    }

    fn read_threads(&mut self, interp: u64, gil: Option<&Gil>) -> Result<Vec<ThreadDump>> {
        let layout = &self.located.layout;
        let mut tstate = self.objects.ptr(field(interp, layout.interpreter.threads_head)?)?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        while tstate != 0 && self.threads_read < MAX_THREADS {
            if !seen.insert(tstate) {
                return Err(Error::Inconsistent("thread list loops".into()));
            }
            self.threads_read += 1;
            out.push(self.read_thread(tstate, gil)?);
            tstate = self.objects.ptr(field(tstate, layout.thread.next)?)?;
        }
        Ok(out)
    }

    fn read_thread(&mut self, tstate: u64, gil: Option<&Gil>) -> Result<ThreadDump> {
        let layout = &self.located.layout;
        let mem = self.objects.mem;
        let ident = self.objects.ptr(field(tstate, layout.thread.thread_id)?)?;
        let tid = match layout.thread.native_thread_id {
            Some(off) => Some(mem.read_u64(field(tstate, off)?)? as i32),
            None => {
                GLIBC_PTHREAD_TID.and_then(|off| mem.read_u32(ident.checked_add(off)?).ok()).map(|t| t as i32)
            }
        }
        .filter(|t| *t > 0 && (self.options.known_tids.is_empty() || self.options.known_tids.contains(t)));

        let flags = &self.located.gil_flags;
        let holds_gil = match flags.holds_gil {
            Some(off) => mem.read_i32(field(tstate, off)?)? != 0,
            None => gil.is_some_and(|g| g.locked && g.holder == tstate),
        };
        let gil_requested = match flags.gil_requested {
            Some(off) => mem.read_i32(field(tstate, off)?)? != 0,
            None => false,
        };
        let run_state = self.options.run_state.and_then(|f| tid.and_then(f));
        // A thread asleep on a futex inside the GIL's state waits for the GIL: in `take_gil`
        // (its condition variable or mutex), or in `drop_gil` until another thread has taken
        // it, after which it takes it again. Only a sleeping thread can be asked; asking costs
        // a /proc read.
        let futex = match (holds_gil, run_state, self.options.futex_wait.zip(tid)) {
            (false, Some(RunState::Sleeping), Some((wait, tid))) => wait(tid),
            _ => None,
        };
        let asleep_in_gil =
            gil.zip(futex).is_some_and(|(g, addr)| addr >= g.base && addr - g.base < GIL_STATE_SPAN);
        // Between two timed waits, or woken and not yet given a CPU, a waiting thread is on the
        // run queue, where the kernel does not say what it waits for; a thread seen waiting in
        // this same turn of the GIL has not taken it since, so it is still waiting.
        let turn = gil.map(|g| GilTurn { switches: g.switches, holder: g.holder });
        let still_waiting = !holds_gil
            && turn
                .zip(tid)
                .is_some_and(|(turn, tid)| self.caches.gil_waits.still_waiting((tstate, tid), turn));

        let gil_requested = gil_requested || asleep_in_gil || still_waiting;
        if let (true, Some(turn), Some(tid)) = (gil_requested, turn, tid) {
            self.caches.gil_waits.waiting((tstate, tid), turn);
        }
        let state = if holds_gil {
            ThreadState::HoldingGil
        } else if gil_requested {
            ThreadState::WaitingForGil
        } else {
            match run_state {
                Some(RunState::Running) => ThreadState::Running,
                Some(RunState::Sleeping) => ThreadState::Idle,
                None if self.options.run_state.is_some() => ThreadState::Idle,
                None => ThreadState::Unknown,
            }
        };

        let (mut frames, mut error) = self.read_frames(tstate);
        // A running thread's stack can change under the reader: one fresh read from the target
        // (no cached page) usually finds it whole.
        if error.is_some() && frames.len() < self.options.max_frames && self.options.live {
            self.objects.mem.inner().clear();
            self.caches.codes.new_pass();
            (frames, error) = self.read_frames(tstate);
        }
        let on_cpu = run_state.map(|s| s == RunState::Running);
        let active_exception = self.active_exception(tstate);
        Ok(ThreadDump {
            tid,
            ident,
            name: None,
            state,
            holds_gil,
            active_exception,
            frames,
            error,
            on_cpu,
            futex,
        })
    }

    /// `tstate->exc_info`'s first word (the exception, or its type before 3.11) is set and not
    /// None. A read that fails (the thread ending) counts as no exception.
    fn active_exception(&self, tstate: u64) -> bool {
        let Some(off) = self.located.layout.thread.exc_info else { return false };
        let first = || -> Result<u64> {
            match self.objects.ptr(field(tstate, off)?)? {
                0 => Ok(0),
                item => self.objects.ptr(item),
            }
        };
        match first() {
            Ok(0) | Err(_) => false,
            Ok(exception) => !matches!(self.objects.kind(exception), Ok((Kind::None, _)) | Err(_)),
        }
    }

    fn current_frame(&self, tstate: u64) -> Result<u64> {
        match self.located.layout.thread.current_frame {
            FrameRef::Direct(off) => self.objects.ptr(field(tstate, off)?),
            FrameRef::ViaCFrame { cframe, current_frame } => {
                match self.objects.ptr(field(tstate, cframe)?)? {
                    0 => Ok(0),
                    cf => self.objects.ptr(field(cf, current_frame)?),
                }
            }
        }
    }

    /// Reads a thread's frames, innermost first. A failure part-way keeps what was read.
    fn read_frames(&mut self, tstate: u64) -> (Vec<Frame>, Option<String>) {
        // A sampler's frames from earlier reads are written over, their names' buffers kept.
        let mut frames = self.caches.frame_pool.pop().unwrap_or_default();
        let mut seen = std::mem::take(&mut self.caches.seen);
        seen.clear();
        let (len, error) = self.walk_frames(tstate, &mut frames, &mut seen);
        frames.truncate(len);
        self.caches.seen = seen;
        (frames, error)
    }

    /// Fills `frames` from its start; returns how many it filled, and why it stopped early.
    fn walk_frames(
        &mut self,
        tstate: u64,
        frames: &mut Vec<Frame>,
        seen: &mut HashSet<u64, Addresses>,
    ) -> (usize, Option<String>) {
        let mut len = 0;
        let mut frame = match self.current_frame(tstate) {
            Ok(f) => f,
            Err(e) => return (len, Some(format!("cannot read the current frame: {e}"))),
        };
        while frame != 0 {
            // Frames not shown (shims, other executables) count too: a chain of them is as
            // long as the target makes it.
            if seen.len() >= self.options.max_frames {
                return (len, Some(format!("stack cut at {} frames", self.options.max_frames)));
            }
            if self.frames_left == 0 {
                return (len, Some(format!("stack cut: the dump read {MAX_SNAPSHOT_FRAMES} frames in all")));
            }
            self.frames_left -= 1;
            // Only a live thread can change under the reader; a core's threads were stopped.
            let why = if self.options.live { " (the thread was running while read)" } else { "" };
            if !seen.insert(frame) {
                return (len, Some(format!("frame chain loops{why}")));
            }
            match self.read_frame(frame, frames, len) {
                Ok((shown, previous)) => {
                    len += usize::from(shown);
                    frame = previous;
                }
                Err(e) => return (len, Some(format!("stack incomplete: {e}{why}"))),
            }
        }
        (len, None)
    }

    fn code_info(&mut self, code: u64) -> Result<Rc<CodeInfo>> {
        self.caches.codes.get_or_read(&self.objects, code)
    }

    /// One frame, written to `out[at]` unless it is not shown (an interpreter shim): whether it
    /// is shown, and the next frame out.
    pub(crate) fn read_frame(&mut self, frame: u64, out: &mut Vec<Frame>, at: usize) -> Result<(bool, u64)> {
        let f = &self.located.layout.frame;
        // The fields a frame is shown from, read at once.
        let span = frame_head_span(f);
        let mut small = [0u8; FRAME_HEAD_SMALL];
        let mut large = Vec::new();
        let head: &mut [u8] = match small.get_mut(..span) {
            Some(head) => head,
            None if span <= FRAME_HEAD_MAX => {
                large.resize(span, 0);
                &mut large
            }
            None => {
                return Err(Error::Inconsistent(format!("interpreter frames are laid out over {span} bytes")))
            }
        };
        self.objects.mem.read(frame, head)?;
        let word =
            |off: u64| u64::from_le_bytes(head[off as usize..off as usize + 8].try_into().expect("8 bytes"));
        let previous = word(f.previous);
        let mut entry = f.owner.is_none();
        if let Some((owner_off, first_shim)) = f.owner {
            if head[owner_off as usize] >= first_shim {
                // 3.12+: an eval call's entry frame; the frame shown last is its outermost.
                if let Some(last) = at.checked_sub(1).and_then(|i| out.get_mut(i)) {
                    // The first shim out is the eval call's; 3.14's thread base frame, on
                    // the heap, may follow it.
                    if !last.entry {
                        last.entry = true;
                        last.entry_frame = frame;
                    }
                }
                return Ok((false, previous));
            }
            // 3.11 keeps `bool is_entry` just before `owner`.
            if self.located.version.minor == 11 {
                entry = owner_off.checked_sub(1).and_then(|o| head.get(o as usize)).is_some_and(|&b| b != 0);
            }
        }
        let mut code = word(f.code);
        if f.code_is_tagged {
            code &= !STACKREF_TAG_BITS;
        }
        if code == 0 {
            return Ok((false, previous));
        }
        let info = match self.caches.codes.checked(code) {
            Some(info) => info,
            // 3.12+ entry frames may hold something other than a code object; skip them.
            None if self.objects.kind(code)?.0 != Kind::Code => return Ok((false, previous)),
            None => self.code_info(code)?,
        };
        let lasti = |off: u64| {
            i64::from(i32::from_le_bytes(head[off as usize..off as usize + 4].try_into().expect("4 bytes")))
        };
        let position = match f.instruction {
            InstructionRef::LastiBytes(off) => Position::Bytes(lasti(off)),
            InstructionRef::LastiUnits(off) => Position::Units(lasti(off)),
            InstructionRef::Pointer(off) => {
                // 3.11 starts a frame one code unit before its first instruction, so the
                // difference may be negative; user-space addresses fit in an i64.
                let ptr = word(off);
                let units = i64::try_from(ptr)
                    .ok()
                    .zip(i64::try_from(info.code_start).ok())
                    .and_then(|(ptr, start)| ptr.checked_sub(start))
                    .ok_or_else(|| {
                        Error::Inconsistent(format!("instruction pointer {ptr:#x} is not in its code"))
                    })?;
                Position::Units(units / 2)
            }
        };
        let line = info.line(position);
        let (locals, arguments) = if self.options.locals {
            let locals = self.read_locals(frame, &info);
            let args = locals.iter().filter(|l| l.is_argument).map(|l| l.name.clone()).collect();
            (Some(locals), Some(args))
        } else {
            (None, None)
        };
        match out.get_mut(at) {
            Some(f) => {
                f.function.clear();
                f.function.push_str(info.function());
                f.file.clear();
                f.file.push_str(&info.filename);
                f.line = line;
                f.locals = locals;
                f.arguments = arguments;
                f.entry = entry;
                f.entry_frame = 0;
                f.at = FrameAt { frame, code };
            }
            None => out.push(Frame {
                function: info.function().to_string(),
                file: info.filename.clone(),
                line,
                locals,
                arguments,
                entry,
                entry_frame: 0,
                at: FrameAt { frame, code },
            }),
        }
        Ok((true, previous))
    }

    fn read_locals(&self, frame: u64, info: &CodeInfo) -> Vec<Local> {
        let f = &self.located.layout.frame;
        let limits = &self.options.limits;
        let n = info.locals.len();
        let Ok(raw) = field(frame, f.localsplus).and_then(|at| self.objects.mem.read_vec(at, n * 8, n * 8))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, ((name, kind), slot)) in info.locals.iter().zip(raw.chunks_exact(8)).enumerate() {
            if kind & CO_FAST_HIDDEN != 0 {
                continue;
            }
            let mut value = u64::from_le_bytes(slot.try_into().expect("8 bytes"));
            if f.code_is_tagged {
                if value & STACKREF_TAG_BITS == STACKREF_INT_TAG {
                    out.push(Local {
                        name: name.clone(),
                        repr: ((value as i64) >> 2).to_string(),
                        is_argument: i < info.nargs,
                    });
                    continue;
                }
                value &= !STACKREF_TAG_BITS;
            }
            if value == 0 {
                continue;
            }
            // Cell and free variables hold a cell once the frame has started.
            if kind & (CO_FAST_CELL | CO_FAST_FREE) != 0 {
                if let Ok((Kind::Cell, _)) = self.objects.kind(value) {
                    match self.objects.cell_contents(value) {
                        Ok(0) | Err(_) => continue,
                        Ok(inner) => value = inner,
                    }
                }
            }
            out.push(Local {
                name: name.clone(),
                repr: self.objects.repr(value, limits),
                is_argument: i < info.nargs,
            });
        }
        out
    }

    /// `threading._active`: thread ident to `Thread.name`, for one interpreter.
    fn thread_names(&self, interp: u64) -> Result<HashMap<u64, String>> {
        let o = &self.objects;
        let modules = o.ptr(field(interp, self.located.layout.interpreter.modules)?)?;
        let mut names = HashMap::new();
        let Some(threading) = o.dict_get(modules, "threading")? else { return Ok(names) };
        let module_dict = o.ptr(field(threading, MODULE_DICT)?)?;
        let Some(active) = o.dict_get(module_dict, "_active")? else { return Ok(names) };
        let (_, items) = o.dict_items(active, MAX_THREADS)?;
        for (key, thread) in items {
            if !matches!(o.kind(key), Ok((Kind::Int, _))) {
                continue;
            }
            let Ok(ident) = o.read_int(key).map(|s| s.parse::<u64>()) else { continue };
            let Ok(ident) = ident else { continue };
            if let Ok(Some(name)) = o.attribute(thread, "_name") {
                if !matches!(o.kind(name), Ok((Kind::Str, _))) {
                    continue;
                }
                if let Ok((name, _)) = o.read_str(name, 200) {
                    names.insert(ident, name);
                }
            }
        }
        Ok(names)
    }
}

/// The bytes of a frame [`Reader::read_frame`] reads into a buffer on the stack: the fields it
/// shows a frame from lie in its first 130 bytes in every version, debug builds included.
const FRAME_HEAD_SMALL: usize = 192;
/// The most bytes of a frame it reads (layouts of 3.13+ come from the target).
const FRAME_HEAD_MAX: usize = 4096;

/// The bytes of a frame, from its start, that hold the fields a frame is shown from.
fn frame_head_span(f: &pymri_layouts::FrameLayout) -> usize {
    let instruction = match f.instruction {
        InstructionRef::LastiBytes(off) | InstructionRef::LastiUnits(off) => off.saturating_add(4),
        InstructionRef::Pointer(off) => off.saturating_add(8),
    };
    let owner = f.owner.map_or(0, |(off, _)| off.saturating_add(1));
    let end = [f.previous.saturating_add(8), f.code.saturating_add(8), instruction, owner].into_iter().max();
    usize::try_from(end.unwrap_or(0)).unwrap_or(usize::MAX)
}

/// `PyModuleObject.md_dict`, right after the object header in every version.
pub(crate) const MODULE_DICT: u64 = 16;
/// `_PyStackRef` tags (3.14+): the low two bits; both set marks a tagged small int.
pub(crate) const STACKREF_TAG_BITS: u64 = 3;
pub(crate) const STACKREF_INT_TAG: u64 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuiltinTypes, Version};
    use pymri_memory::SliceMemory;

    fn located(layout: pymri_layouts::Layout, runtime: u64) -> Located {
        Located {
            version: Version { major: 3, minor: 12, micro: None, level: "", serial: 0, debug_build: false },
            layout,
            runtime,
            binary: "test".into(),
            gil_flags: Default::default(),
            remote: None,
            runtime_size: None,
            bias: 0,
            types: BuiltinTypes::default(),
        }
    }

    /// Memory in which every word points 64 bytes further on: endless lists of distinct
    /// interpreters, threads and frames, as a hostile target can lay out in a few megabytes
    /// of overlapping structures.
    struct EndlessChains;

    impl Memory for EndlessChains {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), pymri_memory::MemoryError> {
            for (i, b) in buf.iter_mut().enumerate() {
                let at = addr + i as u64;
                *b = ((at & !7) + 64).to_le_bytes()[(at % 8) as usize];
            }
            Ok(())
        }
    }

    /// Frames that are not shown (shims, non-code executables) counted for nothing, so a chain
    /// of them was walked until the address space ran out: the dump never ended.
    #[test]
    fn regression_endless_frame_and_thread_chains_end_within_the_budget() {
        let options = SnapshotOptions { locals: true, ..SnapshotOptions::default() };
        let snapshot =
            located(pymri_layouts::v3_12(), 0x1000).snapshot(&EndlessChains, &options).expect("read");
        assert_eq!(snapshot.threads.len(), MAX_THREADS, "threads of every interpreter together");
        // Shown oldest first: the first thread read is the last shown.
        let first_read = snapshot.threads.last().expect("threads");
        assert_eq!(first_read.error.as_deref(), Some("stack cut at 4096 frames"));
        let last_read = &snapshot.threads[0];
        assert!(
            last_read.error.as_deref().is_some_and(|e| e.contains("frames in all")),
            "{:?}",
            last_read.error
        );
    }

    /// However the target's structures point at each other, one snapshot reads a bounded
    /// number of bytes; past it, what is left is reported unread.
    #[test]
    fn a_snapshot_stops_when_its_read_budget_is_spent() {
        let options = SnapshotOptions { locals: true, max_read: 1 << 20, ..SnapshotOptions::default() };
        let err =
            located(pymri_layouts::v3_12(), 0x1000).snapshot(&EndlessChains, &options).expect_err("spent");
        assert!(
            matches!(err, Error::Memory(pymri_memory::MemoryError::BudgetSpent { limit: 1048576 })),
            "{err}"
        );
    }

    /// Found by the `snapshot` fuzz target: an interpreter pointer near the top of the address
    /// space plus the GIL's offset wrapped (and panicked with overflow checks).
    #[test]
    fn regression_pointers_at_the_top_of_the_address_space_are_errors() {
        let bytes = vec![0xffu8; 4096];
        let mem = SliceMemory { base: 0x1000, bytes: &bytes };
        let err = located(pymri_layouts::v3_12(), 0x1000).snapshot(&mem, &SnapshotOptions::default());
        assert!(matches!(err, Err(Error::Memory(pymri_memory::MemoryError::OutOfRange { .. }))), "{err:?}");
    }
}
