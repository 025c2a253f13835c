//! Reading another process's memory, from the outside.
//!
//! The [`Memory`] trait is the one abstraction every reader in pymri is written against: a
//! live process ([`ProcessMemory`]) and a core file (in `pymri-object`) both implement it, so
//! the CPython model never knows which one it reads.
//!
//! Design:
//! - Reads never trust the target. A read either fills the whole buffer or fails with
//!   [`MemoryError`]; helpers that read variable-sized data take an explicit upper bound.
//! - Live reads use `process_vm_readv`, one syscall per request, falling back to
//!   `/proc/PID/mem` only where the syscall is unavailable. [`PageCache`] turns the many small
//!   reads of one snapshot into one syscall per touched page.
//! - [`Freeze`] stops every thread with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, never with
//!   `SIGSTOP`: the kernel detaches seized threads when the tracer exits for any reason,
//!   SIGKILL included, and they resume, so a killed pymri cannot leave its target stopped.
//!
//! Non-goals: writing memory outside the narrow [`write_memory`] used by injection, and any
//! platform other than Linux.

mod files;
mod freeze;
mod maps;
mod process;

pub use files::{open_in_root, open_regular, openat2, openat2_missing, MAX_MAPPED_FILE};
pub use freeze::{Freeze, Registers};
pub use maps::{parse_maps, Mapping};
pub use process::{
    child_pids, diagnose_permission, exited_or_zombie, parent_pid, parse_futex_wait, parse_parent,
    parse_run_state, parse_zombie_parent, process_exists, process_root, read_proc, thread_futex_wait,
    thread_ids, thread_run_state, write_memory, zombie_parent, PermissionCause, ProcessMemory, RunState,
};

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Errors from reading or controlling a target process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    #[error("cannot read {len} bytes at {addr:#x}")]
    Unreadable { addr: u64, len: usize },
    #[error("a read of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    /// A [`Budget`] is spent.
    #[error("stopped after reading {limit} bytes of the target's memory, the most one read may take")]
    BudgetSpent { limit: u64 },
    /// An address computed from a target's pointer and offset lies beyond the address space.
    #[error("address {base:#x} with offset {offset} is outside the address space")]
    OutOfRange { base: u64, offset: i128 },
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: i32 },
    #[error("process {pid} exited while being read")]
    Exited { pid: i32 },
    /// The process has exited but its parent has not collected its status: no memory is left.
    #[error(
        "process {pid} is a zombie: it has exited, and its parent, process {parent} ({parent_command}), \
         has not collected its exit status\nhint: nothing of it is left to read; its parent reaps it \
         with wait(), or init does once the parent ends"
    )]
    Zombie { pid: i32, parent: i32, parent_command: String },
    #[error("permission denied reading process {pid}: {cause}")]
    PermissionDenied { pid: i32, cause: PermissionCause },
    #[error("{what} on process {pid}: {source}")]
    Os {
        what: &'static str,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
}

/// The address `offset` bytes after `base`, a pointer read from a target: checked, because a
/// hostile or torn pointer plus a field offset must be an error, never a wrapped address.
pub fn field(base: u64, offset: u64) -> Result<u64, MemoryError> {
    base.checked_add(offset).ok_or(MemoryError::OutOfRange { base, offset: i128::from(offset) })
}

/// [`field`] for offsets that may be negative (fields kept before an object's header).
pub fn field_signed(base: u64, offset: i64) -> Result<u64, MemoryError> {
    base.checked_add_signed(offset).ok_or(MemoryError::OutOfRange { base, offset: i128::from(offset) })
}

/// Memory of a target that can be read at arbitrary addresses.
pub trait Memory {
    /// Fills `buf` with the bytes at `addr`, or fails without a partial result.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Several reads at once, each whole or not at all: `ok[i]` tells whether `reads[i]` was
    /// filled. A failed read has no error of its own: reading it again alone gives that.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])], ok: &mut [bool]) {
        for ((addr, buf), ok) in reads.iter_mut().zip(ok.iter_mut()) {
            *ok = self.read(*addr, buf).is_ok();
        }
    }
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(addr, buf)
    }

    fn read_many(&self, reads: &mut [(u64, &mut [u8])], ok: &mut [bool]) {
        (**self).read_many(reads, ok)
    }
}

/// Typed reads on top of [`Memory`]. Targets are little-endian 64-bit.
pub trait MemoryExt: Memory {
    fn read_array<const N: usize>(&self, addr: u64) -> Result<[u8; N], MemoryError> {
        let mut buf = [0u8; N];
        self.read(addr, &mut buf)?;
        Ok(buf)
    }
    fn read_u8(&self, addr: u64) -> Result<u8, MemoryError> {
        Ok(self.read_array::<1>(addr)?[0])
    }
    fn read_u16(&self, addr: u64) -> Result<u16, MemoryError> {
        Ok(u16::from_le_bytes(self.read_array(addr)?))
    }
    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        Ok(u32::from_le_bytes(self.read_array(addr)?))
    }
    fn read_i32(&self, addr: u64) -> Result<i32, MemoryError> {
        Ok(i32::from_le_bytes(self.read_array(addr)?))
    }
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        Ok(u64::from_le_bytes(self.read_array(addr)?))
    }
    fn read_i64(&self, addr: u64) -> Result<i64, MemoryError> {
        Ok(i64::from_le_bytes(self.read_array(addr)?))
    }
    /// Reads `len` bytes, refusing more than `limit`: lengths read from a target are untrusted.
    fn read_vec(&self, addr: u64, len: usize, limit: usize) -> Result<Vec<u8>, MemoryError> {
        if len > limit {
            return Err(MemoryError::TooLarge { len, limit });
        }
        let mut buf = vec![0u8; len];
        self.read(addr, &mut buf)?;
        Ok(buf)
    }
    /// Reads a NUL-terminated string of at most `limit` bytes (without the NUL).
    fn read_c_string(&self, addr: u64, limit: usize) -> Result<Vec<u8>, MemoryError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        let mut at = addr;
        while out.len() < limit {
            // A string may end just before an unmapped page: shrink the chunk to the page end.
            let to_page_end = (PAGE_SIZE - (at % PAGE_SIZE)) as usize;
            let mut n = chunk.len().min(to_page_end).min(limit - out.len());
            if self.read(at, &mut chunk[..n]).is_err() {
                // The readable region may end inside the chunk; a single byte tells.
                n = 1;
                self.read(at, &mut chunk[..1])?;
            }
            if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..end]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            at = field(at, n as u64)?;
        }
        out.truncate(limit);
        Ok(out)
    }
}

impl<M: Memory + ?Sized> MemoryExt for M {}

/// Page size of every Linux x86_64 and of the common aarch64 configurations; only used to
/// group reads, never to interpret the target's layout.
pub const PAGE_SIZE: u64 = 4096;

/// A cached page: its bytes (`None` when it could not be read), and whether a read used it.
struct Page {
    bytes: Option<Box<[u8]>>,
    /// The bytes of `bytes` read from the source (all of them, but for a prefetched range).
    valid: Range,
    /// The bytes reads have used (empty: none).
    used: std::cell::Cell<Range>,
}

impl Page {
    fn new(bytes: Option<Box<[u8]>>, valid: Range) -> Page {
        Page { bytes, valid, used: std::cell::Cell::new(Range::EMPTY) }
    }
}

/// Bytes `start..end` of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u16,
    pub end: u16,
}

impl Range {
    const EMPTY: Range = Range { start: u16::MAX, end: 0 };
    pub const WHOLE: Range = Range { start: 0, end: PAGE_SIZE as u16 };

    fn covers(self, start: usize, end: usize) -> bool {
        usize::from(self.start) <= start && end <= usize::from(self.end)
    }

    fn with(self, start: usize, end: usize) -> Range {
        Range { start: self.start.min(start as u16), end: self.end.max(end as u16) }
    }
}

/// Prefetched ranges are widened to this alignment: a stack a frame deeper than last time
/// stays inside the range read.
const RANGE_ALIGN: u16 = 512;

/// Cached pages by address.
type PageMap = HashMap<u64, Page, BuildHasherDefault<PageHasher>>;

/// A read-through cache of whole pages for the duration of one snapshot.
///
/// A dump touches the same frames, code objects and strings many times; reading each page once
/// cuts the syscalls by an order of magnitude. The cache never outlives a snapshot, since a
/// running target changes under it. A sampler, which reads mostly the same pages again and
/// again, hands the pages the previous snapshot used to [`prefetch`](Self::prefetch), which
/// reads them with one system call.
pub struct PageCache<M> {
    inner: M,
    pages: RefCell<PageMap>,
    max_pages: usize,
    /// Page buffers to fill before allocating new ones.
    spare: RefCell<Vec<Box<[u8]>>>,
}

/// Page buffers [`PageCache::into_spare`] keeps at most: 64 MiB, what a sampler of a few
/// thousand threads uses a sample.
const MAX_SPARE_PAGES: usize = 16384;

impl<M: Memory> PageCache<M> {
    /// Caches at most `max_pages` pages; reads beyond that go straight to `inner`.
    pub fn new(inner: M, max_pages: usize) -> Self {
        Self::with_spare(inner, max_pages, Vec::new())
    }

    /// [`new`](Self::new), filling the page buffers of an earlier cache
    /// ([`into_spare`](Self::into_spare)) before allocating any.
    pub fn with_spare(inner: M, max_pages: usize, spare: Vec<Box<[u8]>>) -> Self {
        let spare = spare.into_iter().filter(|b| b.len() == PAGE_SIZE as usize).collect();
        PageCache { inner, pages: RefCell::new(HashMap::default()), max_pages, spare: RefCell::new(spare) }
    }

    /// The cache's page buffers, for the next cache to fill.
    pub fn into_spare(self) -> Vec<Box<[u8]>> {
        let mut spare = self.spare.into_inner();
        spare.extend(self.pages.into_inner().into_values().filter_map(|p| p.bytes));
        spare.truncate(MAX_SPARE_PAGES);
        spare
    }

    fn buffer(&self) -> Box<[u8]> {
        self.spare.borrow_mut().pop().unwrap_or_else(|| vec![0u8; PAGE_SIZE as usize].into_boxed_slice())
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Forgets every page, so that the next reads see the target as it is now.
    pub fn clear(&self) {
        self.pages.borrow_mut().clear();
    }

    /// Reads the ranges of `pages` (page address and the bytes wanted) at once, those of pages
    /// not cached yet and within the cache's size. A range that cannot be read is left out, to
    /// be read (and fail) alone when used; a read outside a page's range reads the whole page.
    pub fn prefetch(&self, pages: &[(u64, Range)]) {
        let mut map = self.pages.borrow_mut();
        let room = self.max_pages.saturating_sub(map.len());
        let wanted: Vec<(u64, Range)> = pages
            .iter()
            .copied()
            .filter(|(p, r)| {
                p % PAGE_SIZE == 0 && r.start < r.end && r.end <= Range::WHOLE.end && !map.contains_key(p)
            })
            .take(room)
            .collect();
        map.reserve(wanted.len());
        let mut bufs: Vec<Box<[u8]>> = wanted.iter().map(|_| self.buffer()).collect();
        let mut ok = vec![false; wanted.len()];
        let mut reads: Vec<(u64, &mut [u8])> = wanted
            .iter()
            .zip(bufs.iter_mut())
            .map(|((page, r), b)| {
                (page + u64::from(r.start), &mut b[usize::from(r.start)..usize::from(r.end)])
            })
            .collect();
        self.inner.read_many(&mut reads, &mut ok);
        drop(reads);
        for (((page, range), bytes), ok) in wanted.into_iter().zip(bufs).zip(ok) {
            if ok {
                map.insert(page, Page::new(Some(bytes), range));
            } else {
                self.spare.borrow_mut().push(bytes);
            }
        }
    }

    /// The readable pages that reads have used since the cache was made, in no order, each
    /// with the bytes used (widened to 512-byte boundaries).
    pub fn used_pages(&self) -> Vec<(u64, Range)> {
        let map = self.pages.borrow();
        map.iter()
            .filter(|(_, p)| p.bytes.is_some())
            .filter_map(|(&a, p)| {
                let used = p.used.get();
                (used.start < used.end).then(|| {
                    let start = used.start / RANGE_ALIGN * RANGE_ALIGN;
                    let end = used.end.div_ceil(RANGE_ALIGN) * RANGE_ALIGN;
                    (a, Range { start, end: end.min(Range::WHOLE.end) })
                })
            })
            .collect()
    }

    /// Bytes `start..end` of `page`, from the cache, read into it first if need be.
    fn page(&self, page: u64, start: usize, end: usize) -> Option<std::cell::Ref<'_, [u8]>> {
        // One lookup for bytes that are cached, the case of nearly every read.
        fn cached(pages: &PageMap, page: u64, start: usize, end: usize) -> Option<&[u8]> {
            let p = pages.get(&page)?;
            if !p.valid.covers(start, end) {
                return None;
            }
            p.used.set(p.used.get().with(start, end));
            p.bytes.as_deref()
        }
        if let Ok(bytes) = std::cell::Ref::filter_map(self.pages.borrow(), |p| cached(p, page, start, end)) {
            return Some(bytes);
        }
        {
            let pages = self.pages.borrow();
            match pages.get(&page) {
                // Unreadable as a whole page.
                Some(p) if p.bytes.is_none() => return None,
                // Only part of it was prefetched: read it whole.
                Some(_) => {}
                None if pages.len() >= self.max_pages => return None,
                None => {}
            }
        }
        self.fill(page);
        std::cell::Ref::filter_map(self.pages.borrow(), |p| cached(p, page, start, end)).ok()
    }

    /// Loads one page. Reading aligned blocks of 2 or 4 pages per miss was measured slower
    /// (bench target: 2.93 and 3.26 ms against 2.77 ms a dump): the page faults of caching
    /// bytes a dump never looks at cost more than the syscalls they save.
    fn fill(&self, page: u64) {
        let mut one = self.buffer();
        let bytes = match self.inner.read(page, &mut one) {
            Ok(()) => Some(one),
            Err(_) => {
                self.spare.borrow_mut().push(one);
                None
            }
        };
        // A page read again whole keeps what reads used of its prefetched range.
        let mut pages = self.pages.borrow_mut();
        let used = pages.get(&page).map_or(Range::EMPTY, |p| p.used.get());
        let entry = Page::new(bytes, Range::WHOLE);
        entry.used.set(used);
        if let Some(old) = pages.insert(page, entry).and_then(|p| p.bytes) {
            self.spare.borrow_mut().push(old);
        }
    }
}

/// Page addresses are distinct multiples of the page size: a multiplicative hash spreads them
/// well, at a fraction of SipHash's cost, and a target cannot choose them to collide.
#[derive(Default)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, page: u64) {
        self.0 = (page >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A hasher for addresses read from a target (frames, code objects), for the sets and maps a
/// sampler fills on every read: a folded multiply (the high half of the product folded into
/// the low half) spreads aligned addresses over every bit, at a fraction of SipHash's cost.
/// It starts from a key drawn once per process, so that a target cannot choose addresses
/// that collide.
#[derive(Clone, Copy)]
pub struct AddressHasher(u64);

impl Default for AddressHasher {
    fn default() -> Self {
        static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        AddressHasher(*KEY.get_or_init(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
        }))
    }
}

/// [`AddressHasher`] for `HashMap::with_hasher` and `HashSet::with_hasher`.
pub type Addresses = BuildHasherDefault<AddressHasher>;

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, addr: u64) {
        let product = u128::from(self.0 ^ addr) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl<M: Memory> Memory for PageCache<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let end =
            addr.checked_add(buf.len() as u64).ok_or(MemoryError::Unreadable { addr, len: buf.len() })?;
        let mut at = addr;
        let mut filled = 0usize;
        while at < end {
            let page = at & !(PAGE_SIZE - 1);
            let off = (at - page) as usize;
            let n = ((PAGE_SIZE as usize) - off).min((end - at) as usize);
            match self.page(page, off, off + n) {
                Some(bytes) => buf[filled..filled + n].copy_from_slice(&bytes[off..off + n]),
                // Not cacheable or not readable as a whole page: ask the source for exactly
                // these bytes, which yields its own precise error.
                None => self.inner.read(at, &mut buf[filled..filled + n])?,
            }
            filled += n;
            at += n as u64;
        }
        Ok(())
    }
}

/// A bound on the bytes read through it, whatever the reads hit underneath (a [`PageCache`]
/// serves repeated reads for free, so the bound goes above it). A hostile target can make
/// structures that overlap and point at each other so that a bounded walk of each still reads
/// without end in total; the budget ends the whole read instead. Each read costs at least
/// [`Budget::MIN_COST`] bytes, so that many tiny reads count too.
pub struct Budget<M> {
    inner: M,
    limit: u64,
    left: std::cell::Cell<u64>,
}

impl<M: Memory> Budget<M> {
    pub const MIN_COST: u64 = 64;

    pub fn new(inner: M, limit: u64) -> Self {
        Budget { inner, limit, left: std::cell::Cell::new(limit) }
    }

    /// The memory read through this budget.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

impl<M: Memory> Memory for Budget<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let cost = (buf.len() as u64).max(Self::MIN_COST);
        let left = self.left.get().checked_sub(cost).ok_or(MemoryError::BudgetSpent { limit: self.limit })?;
        self.left.set(left);
        self.inner.read(addr, buf)
    }
}

/// Memory backed by a byte slice at a base address; for tests and small in-memory images.
pub struct SliceMemory<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

impl Memory for SliceMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let err = MemoryError::Unreadable { addr, len: buf.len() };
        let start = addr.checked_sub(self.base).ok_or(MemoryError::Unreadable { addr, len: buf.len() })?;
        let start = usize::try_from(start).map_err(|_| MemoryError::Unreadable { addr, len: buf.len() })?;
        let src = start.checked_add(buf.len()).and_then(|end| self.bytes.get(start..end)).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_cache_reads_across_page_boundaries() {
        let bytes: Vec<u8> = (0..3 * PAGE_SIZE as usize).map(|i| (i % 251) as u8).collect();
        let mem = SliceMemory { base: 0x10000, bytes: &bytes };
        let cache = PageCache::new(&mem, 16);
        let mut buf = [0u8; 100];
        cache.read(0x10000 + PAGE_SIZE - 50, &mut buf).unwrap();
        assert_eq!(&buf[..], &bytes[PAGE_SIZE as usize - 50..PAGE_SIZE as usize + 50]);
    }

    #[test]
    fn page_cache_reports_unreadable_bytes_precisely() {
        let bytes = vec![7u8; 100];
        let mem = SliceMemory { base: 0x10000, bytes: &bytes };
        let cache = PageCache::new(&mem, 16);
        assert_eq!(cache.read_u32(0x10000 + 10).unwrap(), 0x07070707);
        assert!(matches!(cache.read_u32(0x10000 + 98), Err(MemoryError::Unreadable { .. })));
    }

    /// Prefetched ranges serve later reads inside them without asking the source again; a read
    /// outside a page's range reads the whole page; a range that cannot be read is left out and
    /// fails precisely when used; the ranges reads used are reported, widened.
    #[test]
    fn prefetched_ranges_serve_reads_and_used_ranges_are_reported() {
        struct Counting<'a>(SliceMemory<'a>, std::cell::Cell<usize>);
        impl Memory for Counting<'_> {
            fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
                self.1.set(self.1.get() + 1);
                self.0.read(addr, buf)
            }
        }
        let bytes: Vec<u8> = (0..3 * PAGE_SIZE as usize).map(|i| (i % 253) as u8).collect();
        let mem = Counting(SliceMemory { base: 0x10000, bytes: &bytes }, std::cell::Cell::new(0));
        let cache = PageCache::new(&mem, 16);
        let part = Range { start: 1024, end: 2048 };
        cache.prefetch(&[(0x10000, Range::WHOLE), (0x11000, part), (0x13000, Range::WHOLE)]);
        assert_eq!(mem.1.get(), 3, "one read per range by the default read_many");
        assert!(cache.used_pages().is_empty(), "prefetched, not used yet");
        assert_eq!(cache.read_u8(0x11000 + 1100).unwrap(), bytes[PAGE_SIZE as usize + 1100]);
        assert_eq!(mem.1.get(), 3, "served from the prefetched range");
        assert_eq!(cache.used_pages(), vec![(0x11000, Range { start: 1024, end: 1536 })]);
        assert_eq!(cache.read_u8(0x11000 + 3000).unwrap(), bytes[PAGE_SIZE as usize + 3000]);
        assert_eq!(mem.1.get(), 4, "outside the range: the whole page read");
        assert_eq!(cache.read_u8(0x11000 + 10).unwrap(), bytes[PAGE_SIZE as usize + 10]);
        assert_eq!(mem.1.get(), 4, "the whole page is cached now");
        assert_eq!(cache.used_pages(), vec![(0x11000, Range { start: 0, end: 3072 })]);
        assert!(matches!(cache.read_u8(0x13000), Err(MemoryError::Unreadable { .. })));
    }

    #[test]
    fn c_string_stops_at_nul_and_limit() {
        let bytes = b"hello\0world-without-end".to_vec();
        let mem = SliceMemory { base: 0x1000, bytes: &bytes };
        assert_eq!(mem.read_c_string(0x1000, 100).unwrap(), b"hello");
        assert_eq!(mem.read_c_string(0x1006, 5).unwrap(), b"world");
    }

    #[test]
    fn a_budget_ends_reads_for_good() {
        let bytes = vec![1u8; 1000];
        let mem = Budget::new(SliceMemory { base: 0, bytes: &bytes }, 200);
        let mut buf = [0u8; 100];
        mem.read(0, &mut buf).expect("100 of 200");
        // Tiny reads cost the minimum.
        mem.read_u8(0).expect("64 of the 100 left");
        assert!(matches!(mem.read(0, &mut buf), Err(MemoryError::BudgetSpent { limit: 200 })));
        assert!(matches!(mem.read_u8(0), Err(MemoryError::BudgetSpent { .. })), "once spent, spent");
    }

    #[test]
    fn read_vec_refuses_untrusted_lengths() {
        let mem = SliceMemory { base: 0, bytes: &[] };
        assert!(matches!(mem.read_vec(0, 1 << 40, 1 << 20), Err(MemoryError::TooLarge { .. })));
    }
}
