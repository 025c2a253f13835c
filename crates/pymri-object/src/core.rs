//! Core files as process memory.

use crate::elf::{Elf, ET_CORE, PT_LOAD};
use crate::{u16_at, u32_at, u64_at, ObjectError};
use memmap2::Mmap;
use pymri_memory::{open_in_root, open_regular, Mapping, Memory, MemoryError, Registers, MAX_MAPPED_FILE};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_FILE: u32 = 0x4649_4c45;
/// `AT_PHDR` in the auxiliary vector: the address of the executable's program headers.
const AT_PHDR: u64 = 3;
/// `elf_prstatus.pr_cursig`, the signal being delivered (a short after the 12-byte `pr_info`).
const PRSTATUS_CURSIG: u64 = 12;
/// `elf_prstatus.pr_pid`, the thread's kernel id, after the signal info and masks.
const PRSTATUS_PID: u64 = 32;
/// `elf_prstatus.pr_reg`, the registers (`user_regs_struct`), after the ids and four times.
const PRSTATUS_REGS: u64 = 112;
const USER_REGS_BYTES: u64 = 27 * 8;
/// `siginfo_t`: number, code, and the union after them (the fault address, or the sender).
const SIGINFO_SIGNO: u64 = 0;
const SIGINFO_CODE: u64 = 8;
const SIGINFO_UNION: u64 = 16;
/// `elf_prpsinfo.pr_pid` and `pr_psargs` (80 bytes, the command line truncated by the kernel).
const PRPSINFO_PID: u64 = 24;
const PRPSINFO_PSARGS: usize = 56;
/// More mapped files than this in an `NT_FILE` note is corrupt input.
const MAX_FILES: u64 = 1 << 20;

/// How much of a core file is there: a core cut short (a full disk, a core size limit) keeps
/// its notes and loses the end of its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Bytes in the file.
    pub present: u64,
    /// Bytes its program headers describe.
    pub expected: u64,
}

impl Truncation {
    pub fn missing(&self) -> u64 {
        self.expected - self.present
    }
}

/// A thread recorded in a core file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreThread {
    pub tid: i32,
    /// Its registers when the core was written (`pr_reg`), where the note holds them whole.
    pub registers: Option<Registers>,
}

/// The signal a core records: the one that made the kernel write it (a crash, `kill -ABRT`),
/// or the one a thread had stopped with when `gcore` wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreSignal {
    pub number: i32,
    /// `si_code`: why the kernel sent it (`SEGV_MAPERR`), or who did (`SI_USER`, `SI_TKILL`).
    /// `None` when only `pr_cursig` recorded the signal (no `NT_SIGINFO` note).
    pub code: Option<i32>,
    /// The faulting address, for SIGSEGV, SIGBUS, SIGILL and SIGFPE.
    pub address: Option<u64>,
    /// The sending process and its user, for a signal sent by `kill` or `tgkill`.
    pub sender: Option<(i32, u32)>,
    /// The thread that received it: the first thread of the core, which the kernel and gdb
    /// both write first.
    pub tid: i32,
}

impl CoreSignal {
    /// `SIGSEGV`, or `signal N` for a number with no name.
    pub fn name(&self) -> String {
        signal_name(self.number).map_or_else(|| format!("signal {}", self.number), str::to_string)
    }

    /// The name of `si_code` for this signal (`SEGV_MAPERR`, `SI_USER`), if it has one.
    pub fn code_name(&self) -> Option<&'static str> {
        si_code_name(self.number, self.code?)
    }
}

/// Signal names on Linux (x86_64 numbering).
pub fn signal_name(number: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(number).ok()?.checked_sub(1).and_then(|i| NAMES.get(i)).copied()
}

fn si_code_name(signal: i32, code: i32) -> Option<&'static str> {
    let specific: &[&str] = match signal {
        libc::SIGSEGV => &["SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR"],
        libc::SIGBUS => &["BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"],
        libc::SIGILL => &[
            "ILL_ILLOPC",
            "ILL_ILLOPN",
            "ILL_ILLADR",
            "ILL_ILLTRP",
            "ILL_PRVOPC",
            "ILL_PRVREG",
            "ILL_COPROC",
            "ILL_BADSTK",
        ],
        libc::SIGFPE => &[
            "FPE_INTDIV",
            "FPE_INTOVF",
            "FPE_FLTDIV",
            "FPE_FLTOVF",
            "FPE_FLTUND",
            "FPE_FLTRES",
            "FPE_FLTINV",
            "FPE_FLTSUB",
        ],
        _ => &[],
    };
    match code {
        0 => Some("SI_USER"),
        0x80 => Some("SI_KERNEL"),
        -1 => Some("SI_QUEUE"),
        -2 => Some("SI_TIMER"),
        -6 => Some("SI_TKILL"),
        c if c > 0 => usize::try_from(c - 1).ok().and_then(|i| specific.get(i)).copied(),
        _ => None,
    }
}

/// Whether the kernel fills `si_addr` for this signal.
fn has_fault_address(signal: i32) -> bool {
    matches!(signal, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE)
}

/// The core's bytes: mapped from a file, or owned (tests, fuzzing).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A core file, readable as the memory of the process it was taken from.
pub struct CoreFile {
    map: Bytes,
    loads: Vec<Load>,
    mappings: Vec<Mapping>,
    threads: Vec<CoreThread>,
    signal: Option<CoreSignal>,
    pid: i32,
    command: String,
    exe: Option<String>,
    sysroot: Option<PathBuf>,
    exe_override: Option<PathBuf>,
    files: RefCell<HashMap<String, Option<Mmap>>>,
    truncation: Option<Truncation>,
}

#[derive(Debug, Clone, Copy)]
struct Load {
    vaddr: u64,
    offset: u64,
    filesz: u64,
}

impl CoreFile {
    /// Opens `path`. Binaries named in the core are looked up under `sysroot` when given
    /// (a core of a process that ran in a container), and the executable at `exe` when given.
    pub fn open(path: &Path, exe: Option<&Path>, sysroot: Option<&Path>) -> Result<CoreFile, ObjectError> {
        // The core is the user's choice, but may still be a FIFO or a device by mistake.
        let file =
            open_regular(path, u64::MAX).map_err(|source| ObjectError::Io { path: path.into(), source })?;
        // SAFETY: the map is read-only and private; a core file being rewritten under us would
        // at worst yield wrong bytes, which every reader already treats as untrusted.
        let map =
            unsafe { Mmap::map(&file) }.map_err(|source| ObjectError::Io { path: path.into(), source })?;
        CoreFile::from_bytes_inner(Bytes::Mapped(map), exe, sysroot)
    }

    /// Parses a core held in memory; file mappings it names are still looked up on disk.
    pub fn from_bytes(
        bytes: Vec<u8>,
        exe: Option<&Path>,
        sysroot: Option<&Path>,
    ) -> Result<CoreFile, ObjectError> {
        CoreFile::from_bytes_inner(Bytes::Owned(bytes), exe, sysroot)
    }

    fn from_bytes_inner(
        map: Bytes,
        exe: Option<&Path>,
        sysroot: Option<&Path>,
    ) -> Result<CoreFile, ObjectError> {
        let mut core = CoreFile {
            map,
            loads: Vec::new(),
            mappings: Vec::new(),
            threads: Vec::new(),
            signal: None,
            pid: 0,
            command: String::new(),
            exe: None,
            sysroot: sysroot.map(Path::to_path_buf),
            exe_override: exe.map(Path::to_path_buf),
            files: RefCell::new(HashMap::new()),
            truncation: None,
        };
        core.index()?;
        Ok(core)
    }

    fn index(&mut self) -> Result<(), ObjectError> {
        let elf = Elf::parse(&self.map)?;
        if elf.e_type != ET_CORE {
            return Err(ObjectError::NotCore(elf.e_type));
        }
        let file_len = self.map.len() as u64;
        let mut expected = file_len;
        for p in elf.program_headers() {
            let end =
                p.offset.checked_add(p.filesz).ok_or(ObjectError::Malformed("segment beyond 2^64 bytes"))?;
            expected = expected.max(end);
        }
        self.truncation = (expected > file_len).then_some(Truncation { present: file_len, expected });
        let mut loads: Vec<Load> = elf
            .program_headers()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| Load {
                vaddr: p.vaddr,
                offset: p.offset,
                // A core cut short (disk full, size limit) keeps only what was written. Clamped,
                // `vaddr + filesz` and `offset + filesz` cannot overflow in `read`.
                filesz: p.filesz.min(file_len.saturating_sub(p.offset)).min(u64::MAX - p.vaddr),
            })
            .collect();
        if loads.is_empty() {
            return Err(ObjectError::Malformed("core file has no memory segments"));
        }
        loads.sort_by_key(|l| l.vaddr);
        let mut phdr = None;
        let mut cursig = None;
        let mut siginfo = None;
        for (name, ntype, desc) in elf.notes() {
            if name != b"CORE" {
                continue;
            }
            match ntype {
                NT_PRSTATUS => {
                    if let Some(tid) = u32_at(desc, PRSTATUS_PID) {
                        if self.threads.is_empty() {
                            cursig = u16_at(desc, PRSTATUS_CURSIG);
                        }
                        self.threads
                            .push(CoreThread { tid: tid as i32, registers: prstatus_registers(desc) });
                    }
                }
                // The kernel writes one, after the first thread's status; gdb one per thread,
                // each after its thread's: the first one is the signalled thread's either way.
                NT_SIGINFO if siginfo.is_none() => siginfo = Some(desc),
                NT_PRPSINFO => {
                    self.pid = u32_at(desc, PRPSINFO_PID).unwrap_or(0) as i32;
                    if let Some(args) = desc.get(PRPSINFO_PSARGS..(PRPSINFO_PSARGS + 80).min(desc.len())) {
                        // The kernel separates the arguments with spaces; gdb leaves
                        // /proc/PID/cmdline's NULs in place.
                        let end = args.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                        let joined: Vec<u8> =
                            args[..end].iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
                        self.command = String::from_utf8_lossy(&joined).trim_end().to_string();
                    }
                }
                NT_AUXV => {
                    phdr = desc
                        .chunks_exact(16)
                        .map(|kv| (u64_at(kv, 0).unwrap_or(0), u64_at(kv, 8).unwrap_or(0)))
                        .find(|(k, _)| *k == AT_PHDR)
                        .map(|(_, v)| v);
                }
                NT_FILE => self.mappings = parse_nt_file(desc)?,
                _ => {}
            }
        }
        if self.threads.is_empty() {
            return Err(ObjectError::Malformed("core file records no threads"));
        }
        self.signal = core_signal(self.threads[0].tid, siginfo, cursig);
        self.exe = phdr.and_then(|a| self.mappings.iter().find(|m| m.contains(a))).map(|m| m.path.clone());
        self.loads = loads;
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// The command line as the kernel recorded it (at most 80 bytes).
    pub fn command(&self) -> &str {
        &self.command
    }
    pub fn threads(&self) -> &[CoreThread] {
        &self.threads
    }
    /// The signal the core records, if any (a `gcore` of a running process may have none).
    pub fn signal(&self) -> Option<CoreSignal> {
        self.signal
    }
    /// File mappings recorded in the core (`NT_FILE`), with paths as the process saw them.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }
    /// The executable's path as the process saw it.
    pub fn exe(&self) -> Option<&str> {
        self.exe.as_deref()
    }
    /// Whether the file is shorter than its headers say: what is missing reads as unreadable.
    pub fn truncation(&self) -> Option<Truncation> {
        self.truncation
    }

    /// Opens a file the process had mapped: the `--exe` override for the executable, else the
    /// path inside the sysroot (or this machine's root). The path comes from the core, which
    /// anyone may have written: it is resolved inside the root, and only a regular file of
    /// bounded size is opened (never a FIFO, which would block, nor a device).
    pub fn open_mapped_file(&self, path: &str) -> io::Result<File> {
        if let (Some(over), Some(exe)) = (&self.exe_override, &self.exe) {
            if exe == path {
                return open_regular(over, MAX_MAPPED_FILE);
            }
        }
        let Some(sysroot) = self.sysroot.as_deref() else {
            return open_in_root(Path::new("/"), Path::new(path), MAX_MAPPED_FILE);
        };
        match open_in_root(sysroot, Path::new(path), MAX_MAPPED_FILE) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && sysroot.canonicalize().is_ok_and(|root| Path::new(path).starts_with(root)) =>
            {
                open_in_root(Path::new("/"), Path::new(path), MAX_MAPPED_FILE)
            }
            // A core written from outside the root (gcore of a chrooted process) names its
            // files with the root already in front: the path is used as it is when it exists.
            // Nothing is opened that the same core without --sysroot would not open.
            opened => opened,
        }
    }

    fn read_from_file(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(m) = self.mappings.iter().find(|m| m.contains(addr)) else { return false };
        if addr.checked_add(buf.len() as u64).is_none_or(|end| end > m.end) {
            return false;
        }
        let mut files = self.files.borrow_mut();
        let map = files.entry(m.path.clone()).or_insert_with(|| {
            let file = self.open_mapped_file(&m.path).ok()?;
            // SAFETY: read-only private map of a binary; see `CoreFile::open`.
            let map = unsafe { Mmap::map(&file) }.ok()?;
            // What a core leaves out are the pages of mapped binaries. Any other file (a path
            // the core's author pointed at a secret) is never shown as the process's memory.
            map.starts_with(b"\x7fELF").then_some(map)
        });
        let Some(map) = map else { return false };
        let Some(off) = (addr - m.start).checked_add(m.offset) else { return false };
        match usize::try_from(off).ok().and_then(|o| map.get(o..o.checked_add(buf.len())?)) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

impl Memory for CoreFile {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        let unreadable = || MemoryError::Unreadable { addr, len };
        addr.checked_add(buf.len() as u64).ok_or_else(unreadable)?;
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr + done as u64;
            let idx = self.loads.partition_point(|l| l.vaddr <= at);
            let dumped = idx.checked_sub(1).map(|i| self.loads[i]).filter(|l| at < l.vaddr + l.filesz);
            match dumped {
                Some(l) => {
                    let n = ((l.vaddr + l.filesz - at) as usize).min(buf.len() - done);
                    let start = (l.offset + (at - l.vaddr)) as usize;
                    buf[done..done + n].copy_from_slice(&self.map[start..start + n]);
                    done += n;
                }
                // Segments a core leaves out (unmodified file mappings) come from the file.
                None if self.read_from_file(at, &mut buf[done..]) => return Ok(()),
                None => return Err(unreadable()),
            }
        }
        Ok(())
    }
}

fn prstatus_registers(desc: &[u8]) -> Option<Registers> {
    let bytes = desc.get(PRSTATUS_REGS as usize..(PRSTATUS_REGS + USER_REGS_BYTES) as usize)?;
    let words: Vec<u64> = bytes.chunks_exact(8).filter_map(|w| u64_at(w, 0)).collect();
    Registers::from_user_regs(&words)
}

/// The signal from the first `NT_SIGINFO`, else from the first thread's `pr_cursig`.
fn core_signal(tid: i32, siginfo: Option<&[u8]>, cursig: Option<u16>) -> Option<CoreSignal> {
    if let Some(info) = siginfo {
        let number = u32_at(info, SIGINFO_SIGNO)? as i32;
        if number > 0 {
            let code = u32_at(info, SIGINFO_CODE).map(|c| c as i32);
            let address = if has_fault_address(number) && code.is_some_and(|c| c > 0) {
                u64_at(info, SIGINFO_UNION)
            } else {
                None
            };
            let sender = match code {
                Some(0 | -6) => u32_at(info, SIGINFO_UNION)
                    .zip(u32_at(info, SIGINFO_UNION + 4))
                    .map(|(p, u)| (p as i32, u)),
                _ => None,
            };
            return Some(CoreSignal { number, code, address, sender, tid });
        }
    }
    let number = i32::from(cursig.filter(|&s| s > 0)?);
    Some(CoreSignal { number, code: None, address: None, sender: None, tid })
}

fn parse_nt_file(desc: &[u8]) -> Result<Vec<Mapping>, ObjectError> {
    let bad = || ObjectError::Malformed("NT_FILE note");
    let count = u64_at(desc, 0).ok_or_else(bad)?;
    let page = u64_at(desc, 8).ok_or_else(bad)?;
    if count > MAX_FILES {
        return Err(bad());
    }
    let names_at = usize::try_from(16 + count * 24).map_err(|_| bad())?;
    let mut names = desc.get(names_at..).ok_or_else(bad)?.split(|&b| b == 0);
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let base = 16 + i * 24;
        let start = u64_at(desc, base).ok_or_else(bad)?;
        let end = u64_at(desc, base + 8).ok_or_else(bad)?;
        let pgoff = u64_at(desc, base + 16).ok_or_else(bad)?;
        let path = String::from_utf8_lossy(names.next().ok_or_else(bad)?).into_owned();
        if start < end {
            out.push(Mapping {
                start,
                end,
                perms: *b"r--p",
                offset: pgoff.saturating_mul(page),
                dev: (0, 0),
                inode: 0,
                path,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_file_note_is_parsed_and_bounded() {
        let mut desc = Vec::new();
        for v in [2u64, 4096, 0x1000, 0x3000, 0, 0x5000, 0x6000, 2] {
            desc.extend_from_slice(&v.to_le_bytes());
        }
        desc.extend_from_slice(b"/usr/bin/python3.11\0/usr/lib/libc.so.6\0");
        let maps = parse_nt_file(&desc).unwrap();
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[1].offset, 0x2000);
        assert_eq!(maps[1].path, "/usr/lib/libc.so.6");
        assert!(parse_nt_file(&desc[..30]).is_err());
        let mut huge = desc.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_nt_file(&huge).is_err());
    }

    fn siginfo(signo: i32, code: i32, union: [u32; 2]) -> Vec<u8> {
        let mut info = vec![0u8; 128];
        info[0..4].copy_from_slice(&signo.to_le_bytes());
        info[8..12].copy_from_slice(&code.to_le_bytes());
        info[16..20].copy_from_slice(&union[0].to_le_bytes());
        info[20..24].copy_from_slice(&union[1].to_le_bytes());
        info
    }

    #[test]
    fn the_signal_comes_from_siginfo_else_from_cursig() {
        let segv = core_signal(7, Some(&siginfo(11, 2, [0x1000, 0])), Some(11)).unwrap();
        assert_eq!(
            (segv.number, segv.code, segv.address, segv.sender, segv.tid),
            (11, Some(2), Some(0x1000), None, 7)
        );
        assert_eq!((segv.name().as_str(), segv.code_name()), ("SIGSEGV", Some("SEGV_ACCERR")));
        let killed = core_signal(7, Some(&siginfo(6, -6, [42, 1000])), None).unwrap();
        assert_eq!(
            (killed.address, killed.sender, killed.code_name()),
            (None, Some((42, 1000)), Some("SI_TKILL"))
        );
        let bare = core_signal(7, None, Some(9)).unwrap();
        assert_eq!((bare.name().as_str(), bare.code, bare.code_name()), ("SIGKILL", None, None));
        assert_eq!(core_signal(7, Some(&siginfo(0, 0, [0, 0])), Some(0)), None);
        assert_eq!(core_signal(7, Some(&[1, 0]), None), None, "a short note is no signal");
        assert_eq!(CoreSignal { number: 77, ..bare }.name(), "signal 77");
        assert_eq!(si_code_name(11, 99), None);
    }

    #[test]
    fn registers_are_read_from_prstatus() {
        let mut desc = vec![0u8; (PRSTATUS_REGS + USER_REGS_BYTES) as usize];
        for (index, value) in [(4usize, 0xb0u64), (16, 0x401000), (19, 0x7ffc0000)] {
            let at = PRSTATUS_REGS as usize + index * 8;
            desc[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        assert_eq!(prstatus_registers(&desc), Some(Registers { ip: 0x401000, sp: 0x7ffc0000, bp: 0xb0 }));
        assert_eq!(prstatus_registers(&desc[..200]), None);
    }

    #[test]
    fn a_binary_is_not_a_core() {
        let err = CoreFile::open(Path::new("/proc/self/exe"), None, None).err().unwrap();
        assert!(matches!(err, ObjectError::NotCore(_)), "{err}");
    }
}
