//! Core files as process memory.

use crate::elf::{Elf, ET_CORE, PT_LOAD};
use crate::{u32_at, u64_at, ObjectError};
use memmap2::Mmap;
use pymri_memory::{open_in_root, open_regular, Mapping, Memory, MemoryError, MAX_MAPPED_FILE};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
/// `AT_PHDR` in the auxiliary vector: the address of the executable's program headers.
const AT_PHDR: u64 = 3;
/// `elf_prstatus.pr_pid`, the thread's kernel id, after the signal info and masks.
const PRSTATUS_PID: u64 = 32;
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
        for (name, ntype, desc) in elf.notes() {
            if name != b"CORE" {
                continue;
            }
            match ntype {
                NT_PRSTATUS => {
                    if let Some(tid) = u32_at(desc, PRSTATUS_PID) {
                        self.threads.push(CoreThread { tid: tid as i32 });
                    }
                }
                NT_PRPSINFO => {
                    self.pid = u32_at(desc, PRPSINFO_PID).unwrap_or(0) as i32;
                    if let Some(args) = desc.get(PRPSINFO_PSARGS..(PRPSINFO_PSARGS + 80).min(desc.len())) {
                        let end = args.iter().position(|&b| b == 0).unwrap_or(args.len());
                        self.command = String::from_utf8_lossy(&args[..end]).trim_end().to_string();
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

    #[test]
    fn a_binary_is_not_a_core() {
        let err = CoreFile::open(Path::new("/proc/self/exe"), None, None).err().unwrap();
        assert!(matches!(err, ObjectError::NotCore(_)), "{err}");
    }
}
