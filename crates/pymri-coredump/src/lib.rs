//! A core file of a live process, written without killing it: what `gcore` does, with the
//! process stopped only while its registers and a consistent copy of its memory are taken.
//!
//! The file is the ELF core the kernel writes at a crash, so that gdb, pystack and
//! `pymri dump --core` read it like any other: `NT_PRPSINFO` (state, ids, command line),
//! per thread `NT_PRSTATUS` (registers, ids, signal masks, times), the floating-point
//! registers and an empty `NT_SIGINFO` (no signal stopped it), `NT_AUXV`, `NT_FILE` (every
//! file mapping), and one `PT_LOAD` per mapping holding the bytes the kernel's own rule and
//! `/proc/PID/coredump_filter` select (see `rule.rs`).
//!
//! How the stop is kept short, in two phases:
//! 1. [`plan`], with the process running: its mappings and their flags (`smaps`), the filter,
//!    its status, and an estimate of the bytes to copy; then a buffer of that size is mapped
//!    and faulted in.
//! 2. [`Plan::write`]: every thread is stopped (`pymri_memory::Freeze`: ptrace seize and
//!    interrupt, undone by the kernel if pymri dies); registers are read; the mappings are
//!    read again (if they changed since the plan, `smaps` too, and the rules follow); the pages of
//!    anonymous memory that hold data are found in `pagemap` (not those never written, nor
//!    those mapping the shared zero page); the memory is copied into the
//!    buffer with `process_vm_readv` (by a few threads for large copies); the threads are
//!    let go. Only then is the file written (the memory with `O_DIRECT` where the file system
//!    takes it, past the page cache).
//!    If the buffer is smaller than the memory (the `max_buffer` bound, by default half of
//!    the memory available), the rest is written to the file during the stop.
//!
//! Nothing runs in the target and nothing is written to it: no fork, no injected code.
//!
//! Non-goals: memory the process cannot read itself (`PROT_NONE` pages the kernel would dump
//! through `FOLL_FORCE`), DAX mappings, architectures other than x86_64 and aarch64.

mod copy;
mod elf;
mod proc;
mod regs;
mod rule;

use copy::{Run, Staging};
use elf::{Segment, PAGE};
use proc::{filter, Region};
use pymri_memory::{Freeze, Mapping, MemoryError, ProcessMemory};
use rule::Dump;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such process, permission, the process exited or could not be stopped.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("cannot read {path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the registers of thread {tid}: {source}")]
    Registers {
        tid: i32,
        #[source]
        source: io::Error,
    },
    #[error("cannot set aside {bytes} bytes for the copy of the process's memory: {source}")]
    Buffer {
        bytes: u64,
        #[source]
        source: io::Error,
    },
    /// The core file could not be written (a full disk, a quota, an I/O error).
    #[error("cannot write the core file: {source}")]
    Write {
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether the process ended (or was never there) while the core was being taken.
    pub fn process_gone(&self) -> bool {
        matches!(self, Error::Memory(MemoryError::Exited { .. } | MemoryError::NoSuchProcess { .. }))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The most memory the copy taken during the stop may use; what does not fit is written
    /// to the file while the process is still stopped. `None`: half of `MemAvailable`.
    pub max_buffer: Option<u64>,
}

/// What [`plan`] expects to write, measured with the process running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Bytes of memory to copy (present pages of anonymous memory, whole mappings otherwise).
    pub memory: u64,
    /// The file's size: headers, notes and segments, holes included.
    pub file: u64,
    pub threads: usize,
    pub mappings: usize,
    /// Bytes of `memory` that the buffer holds; the rest is written during the stop.
    pub buffered: u64,
}

/// What happened, for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub threads: usize,
    pub mappings: usize,
    /// Bytes of memory in the file.
    pub memory: u64,
    /// The file's size (holes included).
    pub file: u64,
    /// How long the threads were stopped: from the first seize to the last detach.
    pub stopped: Duration,
    /// Pages that could not be read, left zero.
    pub unreadable_pages: u64,
    /// Bytes written to the file while the process was stopped (the buffer was too small).
    pub written_stopped: u64,
}

/// Where [`Plan::write`] is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The threads are stopped.
    Stopped,
    /// The threads run again; `total` bytes of the file are left to write.
    Resumed { stopped: Duration, total: u64 },
    /// `bytes` more were written.
    Written { bytes: u64 },
}

/// A process about to be snapshotted, with its buffer ready.
pub struct Plan {
    pid: i32,
    mem: ProcessMemory,
    filter: u32,
    regions: Vec<(Region, Dump)>,
    process: elf::Process,
    estimate: Estimate,
    staging: Staging,
    zero_page: Option<u64>,
}

/// Reads what can be read with the process running, and prepares the buffer the stop will
/// copy into.
pub fn plan(pid: i32, options: &Options) -> Result<Plan, Error> {
    // Named here: a missing process, a permission refused (with its cause), a zombie.
    let mem = ProcessMemory::open(pid)?;
    let filter = proc::read_text(pid, "coredump_filter")
        .ok()
        .and_then(|t| proc::parse_filter(&t))
        .unwrap_or(filter::DEFAULT);
    let regions = rules(&mem, filter, proc::parse_smaps(&proc::read_text(pid, "smaps")?));
    let process = process_info(pid)?;
    let threads = pymri_memory::thread_ids(pid)?.len();
    let memory: u64 = regions.iter().map(|(r, d)| expected_bytes(r, *d)).sum();
    let segments: u64 = regions.iter().map(|(r, d)| expected_segment(r, *d)).sum();
    let files = regions.iter().filter(|(r, _)| r.map.is_file()).count();
    // Notes: a few kB per thread (registers, XSAVE area), the file names, the command line.
    let notes = threads as u64 * 4096 + files as u64 * 128 + process.auxv.len() as u64 + 4096;
    let file = (elf::headers_len(regions.len()) + notes).next_multiple_of(PAGE) + segments;
    let limit = options.max_buffer.unwrap_or_else(|| proc::mem_available().map_or(0, |m| m / 2));
    // Room for what the process adds between now and the stop.
    let wanted = memory + memory / 16 + 4 * 1024 * 1024;
    let staging_len = wanted.min(limit).next_multiple_of(PAGE);
    let staging = Staging::new(staging_len).map_err(|source| Error::Buffer { bytes: staging_len, source })?;
    let estimate =
        Estimate { memory, file, threads, mappings: regions.len(), buffered: memory.min(staging.len()) };
    Ok(Plan { pid, mem, filter, regions, process, estimate, staging, zero_page: copy::zero_page_frame() })
}

fn expected_bytes(r: &Region, dump: Dump) -> u64 {
    let size = r.map.end - r.map.start;
    match dump {
        Dump::Nothing => 0,
        Dump::FirstPage => PAGE.min(size),
        Dump::Whole => size,
        Dump::Present => r.rss.min(size),
    }
}

fn expected_segment(r: &Region, dump: Dump) -> u64 {
    match dump {
        Dump::Present if r.rss == 0 => 0,
        Dump::Present => r.map.end - r.map.start,
        other => expected_bytes(r, other),
    }
}

/// The rule of each region.
fn rules(mem: &ProcessMemory, filter: u32, regions: Vec<Region>) -> Vec<(Region, Dump)> {
    regions
        .into_iter()
        .map(|r| {
            let dump = rule::dump_rule(&r, filter, || executable_or_elf(mem, &r.map));
            (r, dump)
        })
        .collect()
}

/// What the kernel checks before dumping the first page of a file mapping: the file is
/// executable, or begins with an ELF header.
fn executable_or_elf(mem: &ProcessMemory, map: &Mapping) -> bool {
    use pymri_memory::Memory;
    use std::os::unix::fs::PermissionsExt;
    // The mapped file itself, whatever its path says now (it may have been replaced).
    let link = format!("/proc/{}/map_files/{:x}-{:x}", mem.pid(), map.start, map.end);
    if std::fs::metadata(link).is_ok_and(|m| m.permissions().mode() & 0o111 != 0) {
        return true;
    }
    let mut magic = [0u8; 4];
    mem.read(map.start, &mut magic).is_ok() && &magic == b"\x7fELF"
}

fn process_info(pid: i32) -> Result<elf::Process, Error> {
    let stat_text = proc::read_text(pid, "stat")?;
    let stat = proc::parse_stat(&stat_text).ok_or_else(|| Error::Proc {
        path: format!("/proc/{pid}/stat"),
        source: io::ErrorKind::InvalidData.into(),
    })?;
    let status = proc::parse_status(&proc::read_text(pid, "status")?);
    Ok(elf::Process {
        pid,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        session: stat.session,
        state: stat.state,
        flags: stat.flags,
        nice: stat.nice,
        uid: status.uid,
        gid: status.gid,
        comm: stat.comm,
        // The note keeps 80 bytes of it; the vector is a few hundred bytes.
        cmdline: proc::read_bytes(pid, "cmdline", 4096)?,
        auxv: proc::read_bytes(pid, "auxv", 64 * 1024)?,
        hz: clock_ticks(),
    })
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

impl Plan {
    pub fn estimate(&self) -> &Estimate {
        &self.estimate
    }

    /// Stops the process, copies what the core holds, lets it go, and writes the core into
    /// `file` (empty, opened for writing). `progress` hears of each step.
    pub fn write(mut self, file: &File, progress: &mut dyn FnMut(Progress)) -> Result<Report, Error> {
        let pid = self.pid;
        let started = Instant::now();
        let freeze = Freeze::new(pid).map_err(gone_means_exited)?;
        progress(Progress::Stopped);
        let taken = self.take(&freeze, file);
        drop(freeze);
        let stopped = started.elapsed();
        let taken = taken?;
        let total = taken.header.len() as u64 + taken.staged_bytes;
        progress(Progress::Resumed { stopped, total });
        let write_err = |source| Error::Write { source };
        file.write_all_at(&taken.header, 0).map_err(write_err)?;
        progress(Progress::Written { bytes: taken.header.len() as u64 });
        let mut written = |bytes| progress(Progress::Written { bytes });
        let direct = copy::Direct::enable(file);
        match copy::write_runs(file, &taken.staged, self.staging.bytes(), &mut written) {
            // A file system or device whose blocks are larger than a page refuses the writes:
            // the page cache takes them.
            Err(e) if direct.is_some() && e.raw_os_error() == Some(libc::EINVAL) => {
                drop(direct);
                copy::write_runs(file, &taken.staged, self.staging.bytes(), &mut |_| {}).map_err(write_err)?
            }
            other => other.map_err(write_err)?,
        }
        // Holes at the end of the last segments are part of the file too.
        file.set_len(taken.file_size).map_err(write_err)?;
        Ok(Report {
            threads: taken.threads,
            mappings: taken.mappings,
            memory: taken.memory,
            file: taken.file_size,
            stopped,
            unreadable_pages: taken.unreadable_pages,
            written_stopped: taken.streamed_bytes,
        })
    }

    /// Everything done while the threads are stopped.
    fn take(&mut self, freeze: &Freeze, file: &File) -> Result<Taken, Error> {
        let pid = self.pid;
        let mut threads = Vec::new();
        // The main thread first: it is the one debuggers select.
        let mut tids: Vec<i32> = freeze.threads().collect();
        tids.sort_by_key(|&t| (t != pid, t));
        for tid in tids {
            match regs::read(tid) {
                Ok(registers) => threads.push(self.thread(tid, registers)?),
                // Only SIGKILL ends a stopped thread; the whole process goes with it.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    return Err(Error::Memory(MemoryError::Exited { pid }))
                }
                Err(source) => return Err(Error::Registers { tid, source }),
            }
        }
        // Mappings may have come and gone since the plan: only those get a rule again (the
        // smaps of a large process takes milliseconds to read, maps far less).
        let maps = pymri_memory::parse_maps(&proc::read_text(pid, "maps")?);
        if maps.len() != self.regions.len() || maps.iter().zip(&self.regions).any(|(m, (r, _))| *m != r.map) {
            self.regions = rules(&self.mem, self.filter, proc::parse_smaps(&proc::read_text(pid, "smaps")?));
        }
        let pagemap_path = format!("/proc/{pid}/pagemap");
        let pagemap =
            File::open(&pagemap_path).map_err(|e| proc::proc_error(pid, pagemap_path.clone(), e))?;
        let zero = self.zero_page;

        // Segments and their runs, with offsets relative to the first segment for now.
        let mut segments = Vec::with_capacity(self.regions.len());
        let mut runs = Vec::new();
        let mut present = Vec::new();
        let mut offset = 0u64;
        for (region, dump) in &self.regions {
            let m = &region.map;
            let size = m.end - m.start;
            let first = runs.len();
            match dump {
                Dump::Nothing => {}
                Dump::FirstPage => runs.push(Run { vaddr: m.start, len: PAGE.min(size), offset }),
                Dump::Whole => runs.push(Run { vaddr: m.start, len: size, offset }),
                Dump::Present => {
                    present.clear();
                    copy::present_ranges(&pagemap, m.start, m.end, zero, &mut present)
                        .map_err(|e| proc::proc_error(pid, pagemap_path.clone(), e))?;
                    runs.extend(present.iter().map(|&(s, e)| Run {
                        vaddr: s,
                        len: e - s,
                        offset: offset + (s - m.start),
                    }));
                }
            }
            // A segment holds its mapping whole from its first byte (holes included) up to
            // the end of its last run.
            let filesz = runs[first..].last().map_or(0, |r| r.offset + r.len - offset);
            segments.push(Segment {
                vaddr: m.start,
                memsz: size,
                filesz,
                offset,
                flags: elf::segment_flags(&m.perms),
            });
            offset += filesz;
        }
        let files: Vec<&Mapping> = self.regions.iter().map(|(r, _)| &r.map).filter(|m| m.is_file()).collect();
        let notes = elf::notes(&self.process, &threads, &files);
        let notes_offset = elf::headers_len(segments.len());
        let data = (notes_offset + notes.len() as u64).next_multiple_of(PAGE);
        for s in &mut segments {
            s.offset += data;
        }
        for r in &mut runs {
            r.offset += data;
        }
        let mut header = elf::headers(&segments, notes_offset, notes.len() as u64);
        header.extend_from_slice(&notes);

        let memory: u64 = runs.iter().map(|r| r.len).sum();
        let (staged, streamed) = copy::split_at(&runs, self.staging.len());
        let staged_bytes: u64 = staged.iter().map(|r| r.len).sum();
        let mut unreadable_pages =
            copy::copy_runs_parallel(pid, &staged, &mut self.staging.bytes_mut()[..staged_bytes as usize])?;
        let streamed_bytes = memory - staged_bytes;
        if streamed_bytes > 0 {
            unreadable_pages += stream(pid, &streamed, file)?;
        }
        Ok(Taken {
            header,
            staged,
            staged_bytes,
            streamed_bytes,
            memory,
            file_size: data + offset,
            threads: threads.len(),
            mappings: segments.len(),
            unreadable_pages,
        })
    }

    /// What the core says of thread `tid`, read while it is stopped.
    fn thread(&self, tid: i32, registers: regs::Registers) -> Result<elf::Thread, Error> {
        let pid = self.pid;
        let stat = proc::parse_stat(&proc::read_text(pid, &format!("task/{tid}/stat"))?).unwrap_or_default();
        let status = proc::parse_status(&proc::read_text(pid, &format!("task/{tid}/status"))?);
        Ok(elf::Thread {
            tid,
            ppid: self.process.ppid,
            pgrp: self.process.pgrp,
            session: self.process.session,
            pending: status.pending,
            blocked: status.blocked,
            utime: stat.utime,
            stime: stat.stime,
            cutime: stat.cutime,
            cstime: stat.cstime,
            registers,
        })
    }
}

/// What the stop produced.
struct Taken {
    /// ELF header, program headers and notes.
    header: Vec<u8>,
    /// Runs copied into the buffer, back to back.
    staged: Vec<Run>,
    staged_bytes: u64,
    streamed_bytes: u64,
    memory: u64,
    file_size: u64,
    threads: usize,
    mappings: usize,
    unreadable_pages: u64,
}

/// Copies `runs` through a small buffer straight into `file`, while the process is stopped:
/// what the staging buffer could not hold.
fn stream(pid: i32, runs: &[Run], file: &File) -> Result<u64, Error> {
    const CHUNK: u64 = 16 * 1024 * 1024;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut unreadable = 0;
    let mut rest = runs.to_vec();
    while !rest.is_empty() {
        let (chunk, tail) = copy::split_at(&rest, CHUNK);
        let len: u64 = chunk.iter().map(|r| r.len).sum();
        unreadable += copy::copy_runs(pid, &chunk, &mut buf[..len as usize])?;
        copy::write_runs(file, &chunk, &buf, &mut |_| {}).map_err(|source| Error::Write { source })?;
        rest = tail;
    }
    Ok(unreadable)
}

/// A process that could be opened and then vanished has exited while being read.
fn gone_means_exited(e: MemoryError) -> Error {
    match e {
        MemoryError::NoSuchProcess { pid } => Error::Memory(MemoryError::Exited { pid }),
        other => Error::Memory(other),
    }
}
