//! What a sampler keeps from one read of a process to the next: decoded code objects and
//! thread names, each checked against the target before it is trusted again, which threads
//! were seen waiting for the GIL (true until the GIL changes hands), and the pages the last read
//! used, read again at once at the start of the next.

use crate::code::CodeInfo;
use crate::objects::Objects;
use crate::Frame;
use crate::Result;
use pymri_layouts::LocalNames;
use pymri_memory::{field, Addresses, Memory, MemoryExt};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Code objects decoded at most this many at once; a target that makes code objects without
/// end (`exec` in a loop) empties the cache rather than growing it.
const MAX_CODES: usize = 16384;
/// Thread names are re-read at least this often: a thread may be renamed at any time.
const NAMES_MAX_AGE: Duration = Duration::from_secs(1);

/// The caches of one reader: fresh for a one-shot snapshot, kept by a sampler.
pub(crate) struct Caches {
    pub codes: CodeCache,
    pub names: NameCache,
    pub gil_waits: GilWaits,
    /// The pages the last read used (a sampler's only; a one-shot read has no last read).
    pub pages: Vec<(u64, pymri_memory::Range)>,
    /// The page buffers of the last read, filled again by the next.
    pub spare: Vec<Box<[u8]>>,
    /// Stacks of earlier reads given back ([`Sampler::recycle`](crate::Sampler::recycle)),
    /// written over by the next reads.
    pub frame_pool: Vec<Vec<Frame>>,
    /// The frames met on one walk, kept for its capacity.
    pub seen: HashSet<u64, Addresses>,
}

impl Caches {
    pub fn one_shot() -> Caches {
        Caches::new(CodeCache::new(false))
    }

    pub fn persistent() -> Caches {
        Caches::new(CodeCache::new(true))
    }

    fn new(codes: CodeCache) -> Caches {
        Caches {
            codes,
            names: NameCache::default(),
            pages: Vec::new(),
            spare: Vec::new(),
            frame_pool: Vec::new(),
            seen: HashSet::default(),
            gil_waits: GilWaits::default(),
        }
    }

    /// Whether what one read learns is kept for the next.
    pub fn persist(&self) -> bool {
        self.codes.check
    }
}

/// The GIL as a sample found it: how often it has changed hands, and who holds or last held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GilTurn {
    pub switches: u64,
    pub holder: u64,
}

/// Threads seen asleep inside the GIL's state (waiting for it), with the GIL's turn when they
/// were. `take_gil` returns only with the GIL, and a thread taking it from another increments
/// the switch count: so while the turn is the same, a thread seen waiting is still waiting,
/// even when the kernel shows it on a CPU (woken to look again, or ready and not yet run) or
/// it woke between the reads of its run state and its system call.
#[derive(Default)]
pub(crate) struct GilWaits {
    /// Thread state address and kernel id to the turn it was seen waiting in.
    seen: HashMap<(u64, i32), GilTurn>,
    /// The same for the snapshot being read; it replaces `seen` at the end, so threads that
    /// ended are forgotten.
    next: HashMap<(u64, i32), GilTurn>,
}

impl GilWaits {
    /// Whether the thread was seen waiting in this same turn of the GIL.
    pub fn still_waiting(&self, thread: (u64, i32), now: GilTurn) -> bool {
        self.seen.get(&thread) == Some(&now)
    }

    /// The thread is waiting now (seen asleep in the GIL's state, or still waiting).
    pub fn waiting(&mut self, thread: (u64, i32), now: GilTurn) {
        self.next.insert(thread, now);
    }

    /// The snapshot is read: what it saw is what the next one compares with.
    pub fn end_snapshot(&mut self) {
        self.seen = std::mem::take(&mut self.next);
    }
}

/// The fields of a code object that a [`CodeInfo`] is made from: a code object freed and
/// another allocated at its address has other name, file, line-table or local-name objects
/// (the old ones were owned by the freed one), or another first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity([u64; 7]);

pub(crate) struct CodeCache {
    entries: HashMap<u64, Entry, Addresses>,
    /// Whether entries may outlive one snapshot, and so must be checked before each use.
    check: bool,
    /// The current pass over the target's memory: an entry checked during it is not checked
    /// again (a recursive function's code object is met once per frame).
    pass: u64,
}

struct Entry {
    identity: Identity,
    info: Rc<CodeInfo>,
    /// The pass during which the entry was last found true.
    checked: u64,
}

impl CodeCache {
    fn new(check: bool) -> CodeCache {
        CodeCache { entries: HashMap::default(), check, pass: 0 }
    }

    /// Starts a pass over memory read anew: entries are checked again before use.
    pub fn new_pass(&mut self) {
        self.pass += 1;
    }

    /// The code object at `code`, if it was read or checked during this pass.
    pub fn checked(&self, code: u64) -> Option<Rc<CodeInfo>> {
        self.entries.get(&code).filter(|e| e.checked == self.pass).map(|e| e.info.clone())
    }

    pub fn get_or_read<M: Memory>(&mut self, objects: &Objects<'_, M>, code: u64) -> Result<Rc<CodeInfo>> {
        if let Some(info) = self.checked(code) {
            return Ok(info);
        }
        let identity = if self.check { Some(identity(objects, code)?) } else { None };
        if let Some(entry) = self.entries.get_mut(&code) {
            if identity.is_none_or(|id| id == entry.identity) {
                entry.checked = self.pass;
                return Ok(entry.info.clone());
            }
        }
        let info = Rc::new(CodeInfo::read(objects, code)?);
        if self.entries.len() >= MAX_CODES {
            self.entries.clear();
        }
        let identity = identity.unwrap_or(Identity([0; 7]));
        self.entries.insert(code, Entry { identity, info: info.clone(), checked: self.pass });
        Ok(info)
    }
}

fn identity<M: Memory>(objects: &Objects<'_, M>, code: u64) -> Result<Identity> {
    let c = &objects.layout.code;
    let (names, kinds) = match c.names {
        LocalNames::Combined { names, kinds } => (names, kinds),
        LocalNames::Split { varnames, cellvars, .. } => (varnames, cellvars),
    };
    let word = |off: u64| -> Result<u64> { Ok(objects.mem.read_u64(field(code, off)?)?) };
    let qualname = c.qualname.map(word).transpose()?.unwrap_or(0);
    let firstline = u64::from(objects.mem.read_u32(field(code, c.firstlineno)?)?);
    Ok(Identity([
        word(c.name)?,
        qualname,
        word(c.filename)?,
        word(c.linetable)?,
        word(names)?,
        word(kinds)?,
        firstline,
    ]))
}

/// `threading` names per interpreter, re-read when a thread appears that was never seen or
/// when they are older than [`NAMES_MAX_AGE`].
#[derive(Default)]
pub(crate) struct NameCache {
    by_interp: HashMap<u64, Names>,
}

struct Names {
    read_at: Instant,
    names: HashMap<u64, String>,
    /// Idents seen when the names were read (also those `threading` does not know).
    seen: HashSet<u64>,
}

impl NameCache {
    pub fn stale(&self, interp: u64, idents: &[u64]) -> bool {
        match self.by_interp.get(&interp) {
            None => true,
            Some(n) => n.read_at.elapsed() >= NAMES_MAX_AGE || idents.iter().any(|i| !n.seen.contains(i)),
        }
    }

    pub fn store(&mut self, interp: u64, names: HashMap<u64, String>, idents: &[u64]) {
        let seen = idents.iter().copied().collect();
        self.by_interp.insert(interp, Names { read_at: Instant::now(), names, seen });
    }

    pub fn get(&self, interp: u64, ident: u64) -> Option<String> {
        self.by_interp.get(&interp)?.names.get(&ident).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gil_waiter_is_still_waiting_until_the_gil_changes_hands_and_forgotten_once_gone() {
        let turn = GilTurn { switches: 7, holder: 0x100 };
        let mut waits = GilWaits::default();
        waits.waiting((0x200, 11), turn);
        assert!(!waits.still_waiting((0x200, 11), turn), "not before the snapshot ends");
        waits.end_snapshot();
        assert!(waits.still_waiting((0x200, 11), turn));
        assert!(!waits.still_waiting((0x200, 11), GilTurn { switches: 8, holder: 0x100 }), "switched");
        assert!(!waits.still_waiting((0x200, 11), GilTurn { switches: 7, holder: 0x300 }), "other holder");
        assert!(!waits.still_waiting((0x200, 12), turn), "another kernel thread at that state");
        // Not seen waiting in the last snapshot: forgotten.
        waits.end_snapshot();
        assert!(!waits.still_waiting((0x200, 11), turn));
    }

    #[test]
    fn names_are_reread_for_a_new_thread_and_when_old() {
        let mut cache = NameCache::default();
        assert!(cache.stale(1, &[10]));
        cache.store(1, HashMap::from([(10, "main".to_string())]), &[10, 11]);
        assert!(!cache.stale(1, &[10, 11]), "11 is not in threading but was seen");
        assert!(cache.stale(1, &[10, 12]), "a thread never seen");
        assert!(cache.stale(2, &[10]), "another interpreter");
        assert_eq!(cache.get(1, 10).as_deref(), Some("main"));
        cache.by_interp.get_mut(&1).expect("entry").read_at -= NAMES_MAX_AGE;
        assert!(cache.stale(1, &[10]));
    }

    /// A code object at 0x10000 named by the str at `name`, with empty line table and locals.
    fn code_memory(layout: &pymri_layouts::Layout, bytes: &mut [u8], name: u64) {
        const BASE: u64 = 0x10000;
        fn write(bytes: &mut [u8], addr: u64, value: u64) {
            let at = (addr - BASE) as usize;
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let mut put = |addr: u64, value: u64| write(bytes, addr, value);
        let c = &layout.code;
        put(BASE + layout.object.ob_type, CODE_TYPE);
        for (off, value) in [(c.name, name), (c.filename, 0x11200), (c.linetable, 0x11300), (c.argcount, 0)] {
            put(BASE + off, value);
        }
        if let Some(q) = c.qualname {
            put(BASE + q, name);
        }
        put(BASE + c.firstlineno, 7);
        if let LocalNames::Combined { names, kinds } = c.names {
            put(BASE + names, 0x11500);
            put(BASE + kinds, 0x11300);
        }
        for (at, text) in [(0x11000, "f"), (0x11100, "g"), (0x11200, "a.py")] {
            write(bytes, at + layout.unicode.length, text.len() as u64);
            write(bytes, at + layout.unicode.state, (1 << 2) | (1 << 5) | (1 << 6));
            let data = (at + layout.unicode.ascii_data - BASE) as usize;
            bytes[data..data + text.len()].copy_from_slice(text.as_bytes());
        }
        write(bytes, 0x11300 + layout.bytes.size, 0);
        write(bytes, 0x11500 + layout.tuple.size, 0);
    }

    const CODE_TYPE: u64 = 0x12000;

    /// A code object freed and another made at its address is read again, not taken from the
    /// cache; an unchanged one is served from it.
    #[test]
    fn a_code_object_at_a_reused_address_is_read_again() {
        let layout = pymri_layouts::v3_12();
        let types = crate::BuiltinTypes::from_symbols(|s| (s == "PyCode_Type").then_some(CODE_TYPE));
        let mut bytes = vec![0u8; 0x3000];
        code_memory(&layout, &mut bytes, 0x11000);
        let mut cache = CodeCache::new(true);
        let first = {
            let mem = pymri_memory::SliceMemory { base: 0x10000, bytes: &bytes };
            let objects = Objects::new(&mem, &layout, &types);
            let first = cache.get_or_read(&objects, 0x10000).expect("read");
            let again = cache.get_or_read(&objects, 0x10000).expect("cached");
            assert!(Rc::ptr_eq(&first, &again), "an unchanged code object comes from the cache");
            first
        };
        assert_eq!(first.function(), "f");
        code_memory(&layout, &mut bytes, 0x11100);
        cache.new_pass();
        let mem = pymri_memory::SliceMemory { base: 0x10000, bytes: &bytes };
        let objects = Objects::new(&mem, &layout, &types);
        let second = cache.get_or_read(&objects, 0x10000).expect("read");
        assert_eq!(second.function(), "g", "another code object at the same address");
        assert_eq!(second.firstlineno, 7);
    }
}
