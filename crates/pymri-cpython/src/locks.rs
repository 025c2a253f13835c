//! Which `threading` locks each thread holds and waits for, read from memory: no code runs in
//! the target, so a core file is read the same way as a live process.
//!
//! A lock is a `_thread.lock` (`threading.Lock`) or a `_thread.RLock` (`threading.RLock`); a
//! type is taken for one by its name only when nothing written in Python could carry that
//! name with that layout (a `class` statement always makes a subclassable type, and
//! `_thread.lock` is not one).
//!
//! What a thread refers to: in each of its frames, the locals and arguments that are locks,
//! the attributes of the frame's first argument (`self`) that its code names (`co_names`) and
//! that are locks, and the globals of the function's module that its code names and that are
//! locks. A module's top-level code is left out: it names every global, held or not.
//!
//! What a thread waits for, by the strength of the evidence:
//! - 3.9-3.12: the thread sleeps on the futex of the lock's semaphore (`sem_t`, whose first
//!   word is the futex), read from `/proc/PID/task/TID/syscall`;
//! - 3.13+: the thread sleeps on the semaphore of its parking-lot entry, whose word before it
//!   is the address it parked on, the lock's mutex byte;
//! - without the kernel's word (a core file): inferred, when the innermost frame's current
//!   source line names exactly one of the locked locks it refers to that are not its own.
//!   Without the line nothing is inferred: a frame running inside the block that holds a lock
//!   refers to it as much as one waiting for it.
//!
//! Who holds a lock: an `RLock` records its owner; a `Lock` does not, and its holder is
//! inferred: the one thread that refers to it without waiting for it (reported as inferred).
//!
//! Non-goals: `Condition`, `Semaphore` and `Event` as such (their waits are on locks inside
//! `threading.py`, which the doctor's blocked-threads pattern classifies), locks reached
//! deeper than one attribute, subinterpreters' modules.

use crate::code::{name_tuple, CodeInfo, CO_FAST_CELL, CO_FAST_FREE};
use crate::objects::{Kind, Objects};
use crate::snapshot::{FrameAt, MODULE_DICT, STACKREF_INT_TAG, STACKREF_TAG_BITS};
use crate::{Located, Result, Snapshot};
use pymri_layouts::{flags, structural, LockLayout, RLockLayout, ThreadLocks as LockShapes};
use pymri_memory::{field, Budget, Memory, MemoryExt, PageCache};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// Locks one analysis keeps track of: past this, a target is refused as implausible rather
/// than read without end.
const MAX_LOCKS: usize = 4096;
/// Modules looked at in `sys.modules`.
const MAX_MODULES: usize = 1 << 14;
/// Pages cached during one analysis (16 MiB).
const CACHE_PAGES: usize = 4096;
/// Names of one code object looked up as `self`'s attributes: a function names a few dozen;
/// each lookup walks the instance's attributes.
const MAX_ATTRIBUTE_NAMES: usize = 1024;
/// Bytes of the target's memory one analysis may read, as a snapshot may.
const MAX_READ: u64 = 1 << 30;
/// Bytes of a type name compared.
const MAX_NAME: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LockKind {
    Lock,
    RLock,
}

impl LockKind {
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Lock => "Lock",
            LockKind::RLock => "RLock",
        }
    }
}

/// How a thread's wait for a lock is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitEvidence {
    /// The kernel says the thread sleeps on the lock's semaphore.
    Futex,
    /// The kernel says the thread sleeps in a parking-lot entry for the lock's mutex.
    Parked,
    /// The innermost frame's current line names the lock, which is locked and not the
    /// thread's own.
    SourceLine,
}

impl WaitEvidence {
    /// Whether the wait is inferred rather than read from the kernel.
    pub fn inferred(self) -> bool {
        matches!(self, WaitEvidence::SourceLine)
    }
}

/// A lock as one thread's frame refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRef {
    pub lock: u64,
    /// How the code names it: `module.NAME`, `self._lock`, a local's name.
    pub name: String,
    /// Index of the frame in the thread's frames (innermost first).
    pub frame: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LockWait {
    pub lock: u64,
    pub evidence: WaitEvidence,
}

/// One thread's locks.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadLocks {
    pub ident: u64,
    pub tid: Option<i32>,
    pub refs: Vec<LockRef>,
    pub waits: Option<LockWait>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockInfo {
    pub address: u64,
    pub kind: LockKind,
    pub locked: bool,
    /// The holder's ident: read from an `RLock`, inferred for a `Lock`.
    pub owner: Option<u64>,
    pub owner_inferred: bool,
    /// The names the code uses for it, the most telling first (a global, an attribute, a
    /// local).
    pub names: Vec<String>,
    /// Idents of the threads waiting for it.
    pub waiters: Vec<u64>,
    /// Idents of the threads whose frames refer to it.
    pub referrers: Vec<u64>,
    /// The address a waiter sleeps on (the semaphore, or the mutex byte).
    #[serde(skip)]
    wait_key: u64,
}

impl LockInfo {
    /// The name to show: how the code names it, or its address.
    pub fn label(&self) -> String {
        self.names
            .first()
            .cloned()
            .unwrap_or_else(|| format!("<{} at {:#x}>", self.kind.name(), self.address))
    }
}

/// Threads waiting for each other's locks, round a cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deadlock {
    /// Each thread of the cycle with the lock it waits for, held by the next one.
    pub edges: Vec<(u64, u64)>,
}

/// The locks of a process at one instant, and the snapshot they were read with.
#[derive(Debug, Clone, Serialize)]
pub struct Locks {
    pub locks: Vec<LockInfo>,
    pub threads: Vec<ThreadLocks>,
    #[serde(skip)]
    pub snapshot: Snapshot,
}

/// What the caller knows beyond memory.
#[derive(Default)]
pub struct LockOptions<'a> {
    /// The futex a thread (by kernel id, as the snapshot numbers it) sleeps on; `None` for a
    /// core file. When given, waits are read from the kernel only, never inferred: from what
    /// the snapshot read of a sleeping thread, else from this, and once more from this for
    /// every wait found.
    pub futex_wait: Option<&'a dyn Fn(i32) -> Option<u64>>,
    /// The text of line N of a file the target names, when it can be read.
    pub source_line: Option<&'a SourceLine<'a>>,
}

/// Reads line N of a file the target names.
pub type SourceLine<'a> = dyn Fn(&str, i32) -> Option<String> + 'a;

impl Located {
    /// The locks `snapshot`'s threads refer to, hold and wait for. `snapshot` must have been
    /// read from `mem` by this `Located` (its frames carry their addresses).
    pub fn locks<M: Memory>(&self, mem: &M, snapshot: Snapshot, options: &LockOptions<'_>) -> Result<Locks> {
        let cache = PageCache::new(mem, CACHE_PAGES);
        let budget = Budget::new(&cache, MAX_READ);
        let mut reader = LockReader {
            located: self,
            objects: Objects::new(&budget, &self.layout, &self.types),
            shapes: structural::thread_locks(self.layout.version),
            names_at: structural::code_names(self.layout.version),
            lock_types: HashMap::new(),
            codes: HashMap::new(),
            modules: None,
            locks: BTreeMap::new(),
        };
        let mut threads = Vec::with_capacity(snapshot.threads.len());
        for t in &snapshot.threads {
            let mut refs = Vec::new();
            for (i, frame) in t.frames.iter().enumerate() {
                // A frame that cannot be read (torn by a running thread) refers to nothing.
                let _ = reader.frame_refs(frame.at, i, &mut refs);
            }
            threads.push(ThreadLocks { ident: t.ident, tid: t.tid, refs, waits: None });
        }
        let mut locks: Vec<LockInfo> = std::mem::take(&mut reader.locks).into_values().collect();
        for (thread, dump) in threads.iter_mut().zip(&snapshot.threads) {
            thread.waits = match options.futex_wait {
                Some(futex) => dump
                    .futex
                    .or_else(|| dump.tid.and_then(futex))
                    .and_then(|f| reader.futex_match(f, &thread.refs, &locks)),
                None => infer_wait(thread, dump, &locks, options.source_line),
            };
        }
        // Threads read one after the other: under contention a thread seen asleep on a lock
        // may have taken it since, while another was read. A wait counts only if the kernel
        // still shows it once every thread has been read.
        if let Some(futex) = options.futex_wait {
            for (thread, dump) in threads.iter_mut().zip(&snapshot.threads) {
                if thread.waits.is_some() {
                    let again =
                        dump.tid.and_then(futex).and_then(|f| reader.futex_match(f, &thread.refs, &locks));
                    if again != thread.waits {
                        thread.waits = None;
                    }
                }
            }
        }
        // One pass over the threads: who waits for each lock, who refers to it, by which names.
        let index: HashMap<u64, usize> = locks.iter().enumerate().map(|(i, l)| (l.address, i)).collect();
        let mut names: Vec<Vec<&str>> = vec![Vec::new(); locks.len()];
        for t in &threads {
            if let Some(&i) = t.waits.and_then(|w| index.get(&w.lock)) {
                locks[i].waiters.push(t.ident);
            }
            for r in &t.refs {
                let Some(&i) = index.get(&r.lock) else { continue };
                names[i].push(&r.name);
                if locks[i].referrers.last() != Some(&t.ident) {
                    locks[i].referrers.push(t.ident);
                }
            }
        }
        for (lock, mut names) in locks.iter_mut().zip(names) {
            if lock.kind == LockKind::Lock && lock.locked {
                let mut holders = lock.referrers.iter().filter(|t| !lock.waiters.contains(t));
                if let (Some(&one), None) = (holders.next(), holders.next()) {
                    lock.owner = Some(one);
                    lock.owner_inferred = true;
                }
            }
            names.sort_by_key(|n| (name_rank(n), *n));
            names.dedup();
            lock.names = names.into_iter().map(str::to_owned).collect();
        }
        Ok(Locks { locks, threads, snapshot })
    }
}

/// Globals first (they name one lock for the whole program), then attributes, then locals.
fn name_rank(name: &str) -> u8 {
    match name.split_once('.') {
        Some(("self", _)) => 1,
        Some(_) => 0,
        None => 2,
    }
}

/// Without the kernel's word: the innermost frame's locked locks that are not the thread's own,
/// narrowed by the current line's words when the line can be read.
fn infer_wait(
    thread: &ThreadLocks,
    dump: &crate::ThreadDump,
    locks: &[LockInfo],
    source_line: Option<&SourceLine<'_>>,
) -> Option<LockWait> {
    let candidates: Vec<&LockRef> = thread
        .refs
        .iter()
        .filter(|r| r.frame == 0)
        .filter(|r| {
            locks
                .iter()
                .find(|l| l.address == r.lock)
                .is_some_and(|l| l.locked && !(l.kind == LockKind::RLock && l.owner == Some(thread.ident)))
        })
        .collect();
    // Without its line, a frame that refers to a locked lock may as well be running inside
    // the block that holds it: nothing is inferred.
    let frame = dump.frames.first()?;
    let line = source_line.and_then(|read| read(&frame.file, frame.line))?;
    let words = words(&line);
    let mut named: Vec<u64> =
        candidates.iter().filter(|r| names_in_line(&r.name, &words)).map(|r| r.lock).collect();
    named.sort_unstable();
    named.dedup();
    match named[..] {
        [one] => Some(LockWait { lock: one, evidence: WaitEvidence::SourceLine }),
        _ => None,
    }
}

/// The identifiers of a line of Python, in order.
fn words(line: &str) -> Vec<&str> {
    let code = line.split('#').next().unwrap_or(line);
    code.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect()
}

/// Whether a line's words name the lock the way `name` does: `self._lock` by `self` then
/// `_lock`, `module.NAME` by `NAME`, a local by its name.
fn names_in_line(name: &str, words: &[&str]) -> bool {
    match name.split_once('.') {
        Some(("self", attr)) => words.windows(2).any(|w| w[0] == "self" && w[1] == attr),
        Some((_, global)) => words.iter().any(|w| *w == global.rsplit('.').next().unwrap_or(global)),
        None => words.contains(&name),
    }
}

/// What one code object contributes: its locals' names, its argument count, its `co_names`.
struct CodeNames {
    info: CodeInfo,
    names: Vec<String>,
    module_level: bool,
}

struct Module {
    name: String,
    /// The module's globals that are locks, by name.
    locks: HashMap<String, u64>,
}

struct LockReader<'a, M: Memory> {
    located: &'a Located,
    objects: Objects<'a, Budget<&'a PageCache<&'a M>>>,
    shapes: LockShapes,
    names_at: u64,
    /// Type object to the lock kind its instances are, `None` for any other type.
    lock_types: HashMap<u64, Option<LockKind>>,
    codes: HashMap<u64, Option<Rc<CodeNames>>>,
    /// File name to the module loaded from it, read once.
    modules: Option<HashMap<String, Rc<Module>>>,
    locks: BTreeMap<u64, LockInfo>,
}

impl<'a, M: Memory> LockReader<'a, M> {
    fn code(&mut self, code: u64) -> Option<Rc<CodeNames>> {
        if let Some(c) = self.codes.get(&code) {
            return c.clone();
        }
        let read = || -> Result<CodeNames> {
            let info = CodeInfo::read(&self.objects, code)?;
            let names = name_tuple(&self.objects, self.objects.ptr(field(code, self.names_at)?)?)?;
            let module_level = info.name == "<module>";
            Ok(CodeNames { info, names, module_level })
        };
        let c = read().ok().map(Rc::new);
        self.codes.insert(code, c.clone());
        c
    }

    /// The lock kind of `obj`, and its state, recorded once; `None` for anything else.
    fn lock(&mut self, obj: u64) -> Option<u64> {
        if obj == 0 || obj % 8 != 0 {
            return None;
        }
        if self.locks.contains_key(&obj) {
            return Some(obj);
        }
        let tp = self.objects.ob_type(obj).ok()?;
        let kind = match self.lock_types.get(&tp) {
            Some(k) => *k,
            None => {
                let k = self.lock_type(tp);
                self.lock_types.insert(tp, k);
                k
            }
        }?;
        if self.locks.len() >= MAX_LOCKS {
            return None;
        }
        let info = self.lock_state(obj, kind).ok()?;
        self.locks.insert(obj, info);
        Some(obj)
    }

    fn lock_type(&self, tp: u64) -> Option<LockKind> {
        let o = &self.located.layout.object;
        let name_ptr = self.objects.ptr(field(tp, o.tp_name).ok()?).ok()?;
        let name = self.objects.mem.read_c_string(name_ptr, MAX_NAME).ok()?;
        let tp_flags = self.objects.mem.read_u64(field(tp, o.tp_flags).ok()?).ok()?;
        let basicsize = self.objects.mem.read_u64(field(tp, o.tp_basicsize).ok()?).ok()?;
        let (kind, size) = match &name[..] {
            b"_thread.lock" if tp_flags & flags::BASETYPE == 0 => {
                let size = match self.shapes.lock {
                    LockLayout::Semaphore { size, .. } | LockLayout::Mutex { size, .. } => size,
                };
                (LockKind::Lock, size)
            }
            b"_thread.RLock" => {
                let size = match self.shapes.rlock {
                    RLockLayout::Handle { size, .. } | RLockLayout::Mutex { size, .. } => size,
                };
                (LockKind::RLock, size)
            }
            _ => return None,
        };
        // A subclass of RLock lays its instances out with the RLock's fields first.
        (basicsize >= size).then_some(kind)
    }

    fn lock_state(&self, obj: u64, kind: LockKind) -> Result<LockInfo> {
        let mem = self.objects.mem;
        let (locked, owner, wait_key) = match kind {
            LockKind::Lock => match self.shapes.lock {
                LockLayout::Semaphore { handle, locked, .. } => {
                    (mem.read_u8(field(obj, locked)?)? != 0, None, self.objects.ptr(field(obj, handle)?)?)
                }
                LockLayout::Mutex { bits, .. } => {
                    (mem.read_u8(field(obj, bits)?)? & 1 != 0, None, field(obj, bits)?)
                }
            },
            LockKind::RLock => match self.shapes.rlock {
                RLockLayout::Handle { handle, owner, count, .. } => {
                    let locked = mem.read_u64(field(obj, count)?)? != 0;
                    let owner = mem.read_u64(field(obj, owner)?)?;
                    (locked, (locked && owner != 0).then_some(owner), self.objects.ptr(field(obj, handle)?)?)
                }
                RLockLayout::Mutex { bits, owner, .. } => {
                    let locked = mem.read_u8(field(obj, bits)?)? & 1 != 0;
                    let owner = mem.read_u64(field(obj, owner)?)?;
                    (locked, (locked && owner != 0).then_some(owner), field(obj, bits)?)
                }
            },
        };
        Ok(LockInfo {
            address: obj,
            kind,
            locked,
            owner,
            owner_inferred: false,
            names: Vec::new(),
            waiters: Vec::new(),
            referrers: Vec::new(),
            wait_key,
        })
    }

    /// The locks one frame refers to, added to `refs`.
    fn frame_refs(&mut self, at: FrameAt, index: usize, refs: &mut Vec<LockRef>) -> Result<()> {
        let Some(code) = self.code(at.code) else { return Ok(()) };
        let f = &self.located.layout.frame;
        let n = code.info.locals.len();
        let raw = self.objects.mem.read_vec(field(at.frame, f.localsplus)?, n * 8, n * 8)?;
        let push = |refs: &mut Vec<LockRef>, lock: u64, name: String| {
            if !refs.iter().any(|r| r.lock == lock && r.name == name && r.frame == index) {
                refs.push(LockRef { lock, name, frame: index });
            }
        };
        for (i, ((name, kind), slot)) in code.info.locals.iter().zip(raw.chunks_exact(8)).enumerate() {
            let Some(value) = self.slot_value(slot, *kind) else { continue };
            if let Some(lock) = self.lock(value) {
                push(refs, lock, name.clone());
            } else if i == 0 && code.info.nargs > 0 && !code.module_level {
                for attr in code.names.iter().take(MAX_ATTRIBUTE_NAMES) {
                    let found = self.objects.attribute(value, attr).ok().flatten();
                    if let Some(lock) = found.and_then(|v| self.lock(v)) {
                        push(refs, lock, format!("{name}.{attr}"));
                    }
                }
            }
        }
        if code.module_level {
            return Ok(());
        }
        if let Some(module) = self.module(&code.info.filename) {
            for global in &code.names {
                if let Some(&lock) = module.locks.get(global) {
                    if self.lock(lock).is_some() {
                        push(refs, lock, format!("{}.{global}", module.name));
                    }
                }
            }
        }
        Ok(())
    }

    /// The object in a local slot, through its cell for cell and free variables.
    fn slot_value(&self, slot: &[u8], kind: u8) -> Option<u64> {
        let mut value = u64::from_le_bytes(slot.try_into().ok()?);
        if self.located.layout.frame.code_is_tagged {
            if value & STACKREF_TAG_BITS == STACKREF_INT_TAG {
                return None;
            }
            value &= !STACKREF_TAG_BITS;
        }
        if value == 0 {
            return None;
        }
        if kind & (CO_FAST_CELL | CO_FAST_FREE) != 0 {
            if let Ok((Kind::Cell, _)) = self.objects.kind(value) {
                return self.objects.cell_contents(value).ok().filter(|&v| v != 0);
            }
        }
        Some(value)
    }

    /// The module loaded from `file`, with its globals that are locks.
    fn module(&mut self, file: &str) -> Option<Rc<Module>> {
        if self.modules.is_none() {
            let modules = self.read_modules().unwrap_or_default();
            self.modules = Some(modules);
        }
        self.modules.as_ref()?.get(file).cloned()
    }

    fn read_modules(&mut self) -> Result<HashMap<String, Rc<Module>>> {
        let layout = &self.located.layout;
        let interp = self.objects.ptr(field(self.located.runtime, layout.runtime.interpreters_head)?)?;
        let modules = self.objects.ptr(field(interp, layout.interpreter.modules)?)?;
        let (_, items) = self.objects.dict_items(modules, MAX_MODULES)?;
        let mut out = HashMap::new();
        for (_, module) in items {
            let Ok(dict) = self.objects.ptr(field(module, MODULE_DICT)?) else { continue };
            if !matches!(self.objects.kind(dict), Ok((Kind::Dict, _))) {
                continue;
            }
            let text = |key: &str| -> Option<String> {
                let v = self.objects.dict_get(dict, key).ok()??;
                matches!(self.objects.kind(v), Ok((Kind::Str, _))).then(|| self.objects.string(v).ok())?
            };
            let (Some(file), Some(name)) = (text("__file__"), text("__name__")) else { continue };
            let Ok((_, globals)) = self.objects.dict_items(dict, MAX_MODULES) else { continue };
            let mut locks = HashMap::new();
            for (key, value) in globals {
                if self.lock_kind_of(value).is_some() && matches!(self.objects.kind(key), Ok((Kind::Str, _)))
                {
                    if let Ok(key) = self.objects.string(key) {
                        locks.insert(key, value);
                    }
                }
            }
            out.insert(file, Rc::new(Module { name, locks }));
        }
        Ok(out)
    }

    /// Whether `obj` is a lock, without recording it.
    fn lock_kind_of(&mut self, obj: u64) -> Option<LockKind> {
        let tp = self.objects.ob_type(obj).ok()?;
        match self.lock_types.get(&tp) {
            Some(k) => *k,
            None => {
                let k = self.lock_type(tp);
                self.lock_types.insert(tp, k);
                k
            }
        }
    }

    /// The lock a thread sleeping on futex `futex` waits for, among the locks it refers to.
    fn futex_match(&self, futex: u64, refs: &[LockRef], locks: &[LockInfo]) -> Option<LockWait> {
        let parked = futex
            .checked_sub(structural::PARKED_ADDRESS_BEFORE_SEMAPHORE)
            .and_then(|at| self.objects.mem.read_u64(at).ok());
        refs.iter().find_map(|r| {
            let lock = locks.iter().find(|l| l.address == r.lock)?;
            if lock.wait_key == futex && lock.wait_key != 0 {
                Some(LockWait { lock: lock.address, evidence: WaitEvidence::Futex })
            } else if parked == Some(lock.wait_key) && lock.wait_key != 0 {
                Some(LockWait { lock: lock.address, evidence: WaitEvidence::Parked })
            } else {
                None
            }
        })
    }
}

impl Locks {
    pub fn lock(&self, address: u64) -> Option<&LockInfo> {
        self.locks.iter().find(|l| l.address == address)
    }

    pub fn thread(&self, ident: u64) -> Option<&ThreadLocks> {
        self.threads.iter().find(|t| t.ident == ident)
    }

    /// What `ident` waits for: the lock and who holds it (`None` when unknown).
    pub fn wait_of(&self, ident: u64) -> Option<(&LockWait, &LockInfo)> {
        let wait = self.thread(ident)?.waits.as_ref()?;
        Some((wait, self.lock(wait.lock)?))
    }

    /// Every cycle of threads each waiting for a lock the next one holds, each cycle once,
    /// starting from its smallest ident. Each thread waits for one lock at most, so the waits
    /// form a functional graph: one walk from each thread not yet seen finds every cycle.
    pub fn deadlocks(&self) -> Vec<Deadlock> {
        let locks: HashMap<u64, &LockInfo> = self.locks.iter().map(|l| (l.address, l)).collect();
        let next: HashMap<u64, (u64, u64)> = self
            .threads
            .iter()
            .filter_map(|t| {
                let wait = t.waits?;
                let owner = locks.get(&wait.lock)?.owner?;
                (owner != t.ident).then_some((t.ident, (wait.lock, owner)))
            })
            .collect();
        // The walk that first reached each thread.
        let mut reached: HashMap<u64, usize> = HashMap::new();
        let mut found = Vec::new();
        for (walk, t) in self.threads.iter().enumerate() {
            let mut at = t.ident;
            let mut path: Vec<u64> = Vec::new();
            while !reached.contains_key(&at) {
                reached.insert(at, walk);
                path.push(at);
                match next.get(&at) {
                    Some(&(_, owner)) => at = owner,
                    None => break,
                }
            }
            // A cycle: this walk came back to a thread it reached itself.
            if next.contains_key(&at) && reached.get(&at) == Some(&walk) {
                let from = path.iter().position(|&i| i == at).unwrap_or(0);
                let mut edges: Vec<(u64, u64)> = path[from..].iter().map(|&i| (i, next[&i].0)).collect();
                let start = edges.iter().enumerate().min_by_key(|(_, (i, _))| *i).map_or(0, |(n, _)| n);
                edges.rotate_left(start);
                found.push(Deadlock { edges });
            }
        }
        found
    }

    /// Locks that threads wait for and that no running code will release: an `RLock` whose
    /// owner ended, or whose owner's frames no longer refer to it (it left the `with` block or
    /// the `acquire` line by an exception); a `Lock` that no thread but its waiters refers to,
    /// named by a global or an attribute (shared, not one thread's own), whose waits were all
    /// read from the kernel (so never from a core). Locks in a deadlock are not orphans.
    pub fn orphans(&self) -> Vec<&LockInfo> {
        let in_cycle: HashSet<u64> =
            self.deadlocks().iter().flat_map(|d| d.edges.iter().map(|(_, lock)| *lock)).collect();
        let read_waits: HashSet<u64> = self
            .threads
            .iter()
            .filter(|t| t.waits.is_some_and(|w| !w.evidence.inferred()))
            .map(|t| t.ident)
            .collect();
        self.locks
            .iter()
            .filter(|l| l.locked && !l.waiters.is_empty() && !in_cycle.contains(&l.address))
            .filter(|l| match l.kind {
                LockKind::RLock => match l.owner {
                    None => false,
                    Some(owner) => !l.referrers.contains(&owner),
                },
                // A thread that has just taken a Lock is still on the line that took it, as
                // its waiters are: without the kernel's word for each wait, the holder could
                // be among them.
                LockKind::Lock => {
                    l.owner.is_none()
                        && l.names.iter().any(|n| n.contains('.'))
                        && l.referrers.iter().all(|t| l.waiters.contains(t))
                        && l.waiters.iter().all(|w| read_waits.contains(w))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_a_lock_the_way_its_code_does() {
        let line = words("        with self._lock, GLOBAL_LOCK:  # and not `lock`");
        assert!(names_in_line("self._lock", &line));
        assert!(!names_in_line("self.other", &line));
        assert!(names_in_line("__main__.GLOBAL_LOCK", &line));
        assert!(!names_in_line("lock", &line));
        assert!(names_in_line("lock", &words("lock.acquire()")));
        assert!(!names_in_line("self._lock", &words("other._lock.acquire()")));
    }

    fn lock(address: u64, owner: u64) -> LockInfo {
        LockInfo {
            address,
            kind: LockKind::RLock,
            locked: true,
            owner: Some(owner),
            owner_inferred: false,
            names: Vec::new(),
            waiters: Vec::new(),
            referrers: vec![owner],
            wait_key: 0,
        }
    }

    fn waiting(ident: u64, lock: u64) -> ThreadLocks {
        ThreadLocks {
            ident,
            tid: None,
            refs: Vec::new(),
            waits: Some(LockWait { lock, evidence: WaitEvidence::Futex }),
        }
    }

    /// Three threads round a cycle (3 waits for 0x30 held by 1, 1 for 0x10 held by 2, 2 for
    /// 0x20 held by 3), a fourth waiting on the cycle from outside, a fifth waiting for a lock
    /// whose holder runs: one cycle, found once, from its smallest ident.
    #[test]
    fn one_cycle_is_found_once_whatever_waits_on_it() {
        let locks = Locks {
            locks: vec![lock(0x10, 2), lock(0x20, 3), lock(0x30, 1), lock(0x40, 1), lock(0x50, 6)],
            threads: vec![
                waiting(3, 0x30),
                waiting(4, 0x40),
                waiting(1, 0x10),
                waiting(5, 0x50),
                waiting(2, 0x20),
                ThreadLocks { ident: 6, tid: None, refs: Vec::new(), waits: None },
            ],
            snapshot: Snapshot { threads: Vec::new() },
        };
        assert_eq!(locks.deadlocks(), vec![Deadlock { edges: vec![(1, 0x10), (2, 0x20), (3, 0x30)] }]);
    }

    /// Types named `_thread.lock` or `_thread.RLock` on a 3.12 heap: only a type no `class`
    /// statement could make (not subclassable) counts as a `Lock`, and only one whose
    /// instances are at least as large as the layout says is read as a lock at all.
    #[test]
    fn a_class_named_like_a_lock_is_no_lock() {
        use crate::{BuiltinTypes, Located, Version};
        use pymri_memory::SliceMemory;
        let layout = pymri_layouts::v3_12();
        let base = 0x10000u64;
        let mut heap = vec![0u8; 0x1000];
        let mut put = |addr: u64, value: u64| {
            let at = (addr - base) as usize;
            heap[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        let (lock_name, rlock_name) = (base + 0x800, base + 0x840);
        // (type object, name, flags, basicsize, expected kind)
        let types = [
            (base, lock_name, 0, 40, Some(LockKind::Lock)),
            (base + 0x200, lock_name, flags::BASETYPE | flags::HEAPTYPE, 40, None),
            (base + 0x400, rlock_name, flags::BASETYPE, 48, Some(LockKind::RLock)),
            (base + 0x600, rlock_name, flags::BASETYPE, 24, None),
        ];
        for (tp, name, tp_flags, size, _) in types {
            put(tp + layout.object.tp_name, name);
            put(tp + layout.object.tp_flags, tp_flags);
            put(tp + layout.object.tp_basicsize, size);
        }
        heap[0x800..0x80d].copy_from_slice(b"_thread.lock\0");
        heap[0x840..0x84e].copy_from_slice(b"_thread.RLock\0");
        let mem = SliceMemory { base, bytes: &heap };
        let located = Located {
            version: Version { major: 3, minor: 12, micro: None, level: "", serial: 0, debug_build: false },
            layout: layout.clone(),
            runtime: 0,
            binary: "test".into(),
            gil_flags: Default::default(),
            remote: None,
            runtime_size: None,
            bias: 0,
            types: BuiltinTypes::default(),
        };
        let cache = PageCache::new(&mem, 16);
        let budget = Budget::new(&cache, MAX_READ);
        let reader = LockReader {
            located: &located,
            objects: Objects::new(&budget, &located.layout, &located.types),
            shapes: structural::thread_locks(layout.version),
            names_at: structural::code_names(layout.version),
            lock_types: HashMap::new(),
            codes: HashMap::new(),
            modules: None,
            locks: BTreeMap::new(),
        };
        for (tp, _, _, _, kind) in types {
            assert_eq!(reader.lock_type(tp), kind, "type at {tp:#x}");
        }
    }

    #[test]
    fn globals_rank_before_attributes_before_locals() {
        let mut names = vec!["lock", "self._lock", "app.LOCK"];
        names.sort_by_key(|n| name_rank(n));
        assert_eq!(names, ["app.LOCK", "self._lock", "lock"]);
    }
}
