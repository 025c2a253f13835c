//! Copying the target's memory while it is stopped: which pages exist (`/proc/PID/pagemap`),
//! and `process_vm_readv` into a buffer made ready before the stop.

use crate::elf::PAGE;
use crate::Error;
use memmap2::{Advice, MmapMut};
use pymri_memory::{diagnose_permission, MemoryError};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes `vaddr..vaddr + len` of the target, for the core file at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub vaddr: u64,
    pub len: u64,
    pub offset: u64,
}

/// `pagemap` entries read at once: 512 KiB of entries for 256 MiB of address space.
const PAGEMAP_CHUNK: u64 = 64 * 1024;
/// Bit 63 of a `pagemap` entry: the page is in memory; bit 62: it is swapped out.
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;

/// Bits 0-54 of a present page's entry: its page frame number (zero unless we have
/// `CAP_SYS_ADMIN`).
const PFN: u64 = (1 << 55) - 1;

/// The page frame of the kernel's shared zero page, which private anonymous pages that were
/// only read map (as do pages a debugger read, such as gcore's reads); `None` when frame numbers
/// are hidden from us.
pub(crate) fn zero_page_frame() -> Option<u64> {
    let page = memmap2::MmapOptions::new().len(PAGE as usize).map_anon().ok()?.make_read_only().ok()?;
    // SAFETY: reading the first byte of our own readable mapping; volatile, so that the read,
    // which maps the zero page, happens.
    let _ = unsafe { std::ptr::read_volatile(page.as_ptr()) };
    let pagemap = File::open("/proc/self/pagemap").ok()?;
    let mut entry = [0u8; 8];
    pagemap.read_exact_at(&mut entry, page.as_ptr() as u64 / PAGE * 8).ok()?;
    let entry = u64::from_le_bytes(entry);
    Some(entry & PFN).filter(|&pfn| entry & PRESENT != 0 && pfn != 0)
}

/// The pages of `start..end` that hold data (in memory or in swap), as merged `(start, end)`
/// ranges. A private anonymous page that does not exist has never been written and one that
/// maps the zero page (`zero`) was only read: both read as zeros, so a core leaves them out (a
/// hole in the file), as the kernel's cores do.
pub(crate) fn present_ranges(
    pagemap: &File,
    start: u64,
    end: u64,
    zero: Option<u64>,
    out: &mut Vec<(u64, u64)>,
) -> io::Result<()> {
    let mut entries = vec![0u8; (PAGEMAP_CHUNK * 8) as usize];
    let mut page = start / PAGE;
    let last = end.div_ceil(PAGE);
    while page < last {
        let count = (last - page).min(PAGEMAP_CHUNK);
        let bytes = &mut entries[..(count * 8) as usize];
        pagemap.read_exact_at(bytes, page * 8)?;
        for (i, entry) in bytes.chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            if entry & (PRESENT | SWAPPED) == 0 || (entry & PRESENT != 0 && Some(entry & PFN) == zero) {
                continue;
            }
            let at = (page + i as u64) * PAGE;
            match out.last_mut() {
                Some(last) if last.1 == at => last.1 = at + PAGE,
                _ => out.push((at, at + PAGE)),
            }
        }
        page += count;
    }
    Ok(())
}

/// Zeroed memory, faulted in before the target is stopped, so that the copy made during the
/// stop costs memory bandwidth only, not page faults.
pub(crate) struct Staging {
    map: Option<MmapMut>,
}

impl Staging {
    pub fn new(len: u64) -> io::Result<Staging> {
        if len == 0 {
            return Ok(Staging { map: None });
        }
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // Not advised to huge pages: finding 2 MiB of contiguous memory can make the kernel
        // compact memory for seconds (measured: 4.7 s for 500 MiB), where 4 KiB pages take a
        // steady fraction of that.
        let mut map = MmapMut::map_anon(len)?;
        // Faulting in is the kernel's work per page: shared among threads like the copy. Not
        // required: a kernel before 5.14 refuses it, and each page is touched instead.
        if populate(&map).is_err() {
            for page in map.chunks_mut(PAGE as usize) {
                page[0] = 0;
            }
        }
        Ok(Staging { map: Some(map) })
    }

    pub fn len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or(&mut [])
    }
}

/// `MADV_POPULATE_WRITE` over `map`, by up to [`MAX_THREADS`] threads for large buffers.
fn populate(map: &MmapMut) -> io::Result<()> {
    let len = map.len() as u64;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cpus.min(MAX_THREADS).min((len / PARALLEL_FROM) as usize).max(1) as u64;
    let share = (len / threads).next_multiple_of(PAGE);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| i * share)
            .filter(|&start| start < len)
            .map(|start| {
                let part = share.min(len - start);
                scope.spawn(move || map.advise_range(Advice::PopulateWrite, start as usize, part as usize))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// The most iovecs one `process_vm_readv` takes (`IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// Copies `runs`, back to back, into `buf` (exactly their total length). Pages that cannot be
/// read (a file mapping beyond its file's end, a page made unreadable) are left zero; their
/// count is returned.
pub(crate) fn copy_runs(pid: i32, runs: &[Run], buf: &mut [u8]) -> Result<u64, Error> {
    let mut unreadable = 0u64;
    // Position: run `i`, `done` bytes into it, `pos` bytes into `buf`.
    let (mut i, mut done, mut pos) = (0usize, 0u64, 0usize);
    let mut local: Vec<libc::iovec> = Vec::with_capacity(MAX_IOVECS);
    let mut remote: Vec<libc::iovec> = Vec::with_capacity(MAX_IOVECS);
    while i < runs.len() {
        local.clear();
        remote.clear();
        let mut at = pos;
        for (k, run) in runs[i..].iter().enumerate().take(MAX_IOVECS) {
            let skip = if k == 0 { done } else { 0 };
            let len = (run.len - skip) as usize;
            let dst = &mut buf[at..at + len];
            local.push(libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: len });
            remote.push(libc::iovec { iov_base: (run.vaddr + skip) as *mut libc::c_void, iov_len: len });
            at += len;
        }
        // SAFETY: each local iovec is a distinct range of `buf`, valid for writes of its length
        // for the whole call; the remote ones are only interpreted by the kernel in the target.
        // Both arrays hold the same number of entries, at most IOV_MAX.
        let n = unsafe {
            libc::process_vm_readv(
                pid,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        let wanted = (at - pos) as u64;
        let copied = if n < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EFAULT) | Some(libc::EIO) => 0,
                Some(libc::ESRCH) => return Err(Error::Memory(MemoryError::Exited { pid })),
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    return Err(Error::Memory(MemoryError::PermissionDenied {
                        pid,
                        cause: diagnose_permission(pid),
                    }))
                }
                _ => {
                    return Err(Error::Memory(MemoryError::Os { what: "process_vm_readv", pid, source: err }))
                }
            }
        } else {
            n as u64
        };
        // Move past what was copied.
        let mut left = copied;
        while left > 0 && i < runs.len() {
            let step = left.min(runs[i].len - done);
            done += step;
            pos += step as usize;
            left -= step;
            if done == runs[i].len {
                i += 1;
                done = 0;
            }
        }
        if copied == wanted {
            continue;
        }
        // The page at the current position could not be read: it stays zero.
        let run = runs[i];
        let page_end = ((run.vaddr + done) / PAGE + 1) * PAGE;
        let step = (page_end - (run.vaddr + done)).min(run.len - done);
        buf[pos..pos + step as usize].fill(0);
        unreadable += 1;
        done += step;
        pos += step as usize;
        if done == run.len {
            i += 1;
            done = 0;
        }
    }
    Ok(unreadable)
}

/// Below this, one thread copies.
const PARALLEL_FROM: u64 = 64 * 1024 * 1024;
/// The most threads copying at once.
const MAX_THREADS: usize = 4;

/// [`copy_runs`], shared among threads for large copies: the kernel's copy is bounded by one
/// CPU's memory bandwidth and page walks, so a few threads, each with its share of the runs and
/// of `buf`, shorten the stop.
pub(crate) fn copy_runs_parallel(pid: i32, runs: &[Run], buf: &mut [u8]) -> Result<u64, Error> {
    let total = buf.len() as u64;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cpus.min(MAX_THREADS).min((total / PARALLEL_FROM) as usize).max(1);
    if threads == 1 {
        return copy_runs(pid, runs, buf);
    }
    let share = (total / threads as u64).next_multiple_of(PAGE);
    let mut parts = Vec::with_capacity(threads);
    let mut rest_runs = runs.to_vec();
    let mut rest_buf = buf;
    while !rest_runs.is_empty() {
        let (part, tail) = split_at(&rest_runs, share);
        let len: u64 = part.iter().map(|r| r.len).sum();
        let (mine, others) = rest_buf.split_at_mut(len as usize);
        parts.push((part, mine));
        rest_runs = tail;
        rest_buf = others;
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            parts.into_iter().map(|(part, mine)| scope.spawn(move || copy_runs(pid, &part, mine))).collect();
        let mut unreadable = 0;
        let mut first_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(n)) => unreadable += n,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        first_error.map_or(Ok(unreadable), Err)
    })
}

/// Splits `runs` at `limit` bytes: those that fit (the last one cut if need be), and the rest.
pub(crate) fn split_at(runs: &[Run], limit: u64) -> (Vec<Run>, Vec<Run>) {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut total = 0u64;
    for &run in runs {
        if total >= limit {
            tail.push(run);
        } else if total + run.len <= limit {
            head.push(run);
            total += run.len;
        } else {
            let fits = limit - total;
            head.push(Run { len: fits, ..run });
            tail.push(Run { vaddr: run.vaddr + fits, len: run.len - fits, offset: run.offset + fits });
            total = limit;
        }
    }
    (head, tail)
}

/// Writes `runs`, read back to back from `bytes`, at their offsets in `file`; runs that follow
/// each other in the file go in one write. `written` is told each write's size.
pub(crate) fn write_runs(
    file: &File,
    runs: &[Run],
    bytes: &[u8],
    written: &mut dyn FnMut(u64),
) -> io::Result<()> {
    /// One write at most: progress moves, and a failing disk is found out early.
    const MAX_WRITE: u64 = 64 * 1024 * 1024;
    let mut pos = 0u64;
    let mut k = 0;
    while k < runs.len() {
        let (start, offset) = (pos, runs[k].offset);
        let mut len = 0u64;
        while k < runs.len() && runs[k].offset == offset + len && len < MAX_WRITE {
            len += runs[k].len;
            k += 1;
        }
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(MAX_WRITE);
            let from = (start + at) as usize;
            file.write_all_at(&bytes[from..from + n as usize], offset + at)?;
            written(n);
            at += n;
        }
        pos += len;
    }
    Ok(())
}

/// `O_DIRECT` on a file while this lives: the copy goes to the disk without passing through the
/// page cache, so that a core of many gigabytes neither evicts the machine's cached files nor
/// costs a second allocation of its size (measured here: page-cache writes of 500 MiB at
/// 150-200 MB/s, direct ones at about 1 GB/s). The copy's buffer, offsets and lengths are
/// page-aligned, as direct I/O requires.
pub(crate) struct Direct<'a> {
    file: &'a File,
    flags: libc::c_int,
}

impl<'a> Direct<'a> {
    /// `None` where the file system does not take `O_DIRECT`.
    pub fn enable(file: &'a File) -> Option<Direct<'a>> {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        // SAFETY: as above.
        (flags >= 0 && unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_DIRECT) } == 0)
            .then_some(Direct { file, flags })
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: restoring the flags read from the same descriptor.
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETFL, self.flags) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_split_at_a_byte_count() {
        let runs = [
            Run { vaddr: 0x1000, len: 0x2000, offset: 0 },
            Run { vaddr: 0x8000, len: 0x3000, offset: 0x2000 },
        ];
        let (head, tail) = split_at(&runs, 0x3000);
        assert_eq!(head, [runs[0], Run { vaddr: 0x8000, len: 0x1000, offset: 0x2000 }]);
        assert_eq!(tail, [Run { vaddr: 0x9000, len: 0x2000, offset: 0x3000 }]);
        let (head, tail) = split_at(&runs, 0);
        assert!(head.is_empty());
        assert_eq!(tail, runs);
        let (head, tail) = split_at(&runs, u64::MAX);
        assert_eq!(head, runs);
        assert!(tail.is_empty());
    }

    /// Our own memory: a readable page, an unreadable one, a readable one, read in one batch;
    /// the unreadable page is zero and counted, the others are copied.
    #[test]
    fn an_unreadable_page_is_left_zero_and_the_rest_is_copied() {
        let mut area = MmapMut::map_anon(3 * PAGE as usize).expect("map");
        area[..PAGE as usize].fill(1);
        area[2 * PAGE as usize..].fill(3);
        let base = area.as_ptr() as u64;
        // SAFETY: the middle page of our own mapping, which nothing reads while protected.
        let rc =
            unsafe { libc::mprotect((base + PAGE) as *mut libc::c_void, PAGE as usize, libc::PROT_NONE) };
        assert_eq!(rc, 0);
        let runs = [Run { vaddr: base, len: 3 * PAGE, offset: 0 }, Run { vaddr: base, len: 16, offset: 0 }];
        let mut buf = vec![0xffu8; 3 * PAGE as usize + 16];
        let unreadable = copy_runs(std::process::id() as i32, &runs, &mut buf).expect("copy");
        assert_eq!(unreadable, 1);
        assert!(buf[..PAGE as usize].iter().all(|&b| b == 1));
        assert!(buf[PAGE as usize..2 * PAGE as usize].iter().all(|&b| b == 0));
        assert!(buf[2 * PAGE as usize..3 * PAGE as usize].iter().all(|&b| b == 3));
        assert!(buf[3 * PAGE as usize..].iter().all(|&b| b == 1));
        // SAFETY: restoring our own mapping before it is unmapped.
        unsafe { libc::mprotect((base + PAGE) as *mut libc::c_void, PAGE as usize, libc::PROT_READ) };
    }

    /// Written pages are found; pages never touched and pages only read (the zero page) are not.
    /// A large buffer is faulted in whole by its threads before any copy: every page is there.
    #[test]
    fn a_large_buffer_is_faulted_in_whole() {
        let len = 3 * PARALLEL_FROM + 5 * PAGE;
        let staging = Staging::new(len).expect("staging");
        assert_eq!(staging.len(), len);
        let base = staging.bytes().as_ptr() as u64;
        let pagemap = File::open("/proc/self/pagemap").expect("pagemap");
        let mut ranges = Vec::new();
        present_ranges(&pagemap, base, base + len, zero_page_frame(), &mut ranges).expect("read");
        assert_eq!(ranges, [(base, base + len)]);
        assert!(staging.bytes().iter().step_by(PAGE as usize).all(|&b| b == 0));
    }

    /// Large copies are shared among threads; every byte lands where one thread would put it.
    #[test]
    fn a_parallel_copy_is_the_same_copy() {
        let len = 3 * PARALLEL_FROM as usize;
        let mut area = MmapMut::map_anon(len).expect("map");
        for (i, page) in area.chunks_mut(PAGE as usize).enumerate() {
            page.fill((i % 251) as u8);
        }
        let base = area.as_ptr() as u64;
        // Runs out of order in memory, of odd page counts, as a core's runs may be.
        let third = len as u64 / 3;
        let runs = [
            Run { vaddr: base + 2 * third, len: third, offset: 0 },
            Run { vaddr: base + PAGE, len: third - 3 * PAGE, offset: 0 },
            Run { vaddr: base + third, len: third, offset: 0 },
        ];
        let total: u64 = runs.iter().map(|r| r.len).sum();
        let mut one = vec![0u8; total as usize];
        let mut many = vec![0u8; total as usize];
        let pid = std::process::id() as i32;
        assert_eq!(copy_runs(pid, &runs, &mut one).expect("copy"), 0);
        assert_eq!(copy_runs_parallel(pid, &runs, &mut many).expect("copy"), 0);
        assert!(one == many, "the parallel copy differs");
        assert_eq!(&one[..PAGE as usize], &area[2 * third as usize..2 * third as usize + PAGE as usize]);
    }

    #[test]
    fn pagemap_finds_the_pages_written() {
        let mut area = MmapMut::map_anon(8 * PAGE as usize).expect("map");
        area[0] = 1;
        area[PAGE as usize] = 1;
        area[5 * PAGE as usize] = 1;
        // SAFETY: reading our own mapping; volatile so that the read happens and maps the zero page.
        let _ = unsafe { std::ptr::read_volatile(area.as_ptr().add(7 * PAGE as usize)) };
        let base = area.as_ptr() as u64;
        let pagemap = File::open("/proc/self/pagemap").expect("pagemap");
        let zero = zero_page_frame();
        assert!(zero.is_some(), "tests run as root, which sees page frames");
        let mut ranges = Vec::new();
        present_ranges(&pagemap, base, base + 8 * PAGE, zero, &mut ranges).expect("read");
        assert_eq!(ranges, [(base, base + 2 * PAGE), (base + 5 * PAGE, base + 6 * PAGE)]);
        ranges.clear();
        present_ranges(&pagemap, base, base + 8 * PAGE, None, &mut ranges).expect("read");
        assert_eq!(
            ranges.last(),
            Some(&(base + 7 * PAGE, base + 8 * PAGE)),
            "without the frame, read pages count"
        );
    }
}
