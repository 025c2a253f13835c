//! The bytes of an ELF core: its header, program headers and notes, laid out as the kernel and
//! gdb lay them out (`elf(5)`, `core(5)`, `include/uapi/linux/elfcore.h`).

use crate::regs::{arch, Registers, NT_PRFPREG, NT_PRSTATUS, NT_X86_XSTATE};
use pymri_memory::Mapping;

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
const ET_CORE: u16 = 4;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// `e_phnum` saying "more than fit here: the count is in section header 0's `sh_info`".
const PN_XNUM: u64 = 0xffff;

const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_FILE: u32 = 0x4649_4c45;

/// `siginfo_t` is 128 bytes on every Linux architecture.
const SIGINFO_SIZE: usize = 128;
/// `elf_prpsinfo.pr_psargs`: the command line, cut to 79 bytes and a NUL.
const PRARGSZ: usize = 80;
/// Page size of the segments' file offsets and of `NT_FILE`'s offsets.
pub(crate) const PAGE: u64 = 4096;

/// One `PT_LOAD`: a mapping, with `filesz` of its bytes at `offset` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub filesz: u64,
    pub offset: u64,
    /// `PF_R` (4), `PF_W` (2), `PF_X` (1).
    pub flags: u32,
}

pub(crate) fn segment_flags(perms: &[u8; 4]) -> u32 {
    u32::from(perms[0] == b'r') * 4 + u32::from(perms[1] == b'w') * 2 + u32::from(perms[2] == b'x')
}

/// Bytes taken by the ELF header and `segments` program headers (plus the note's, and the
/// section header that carries the count past 65,534).
pub(crate) fn headers_len(segments: usize) -> u64 {
    let phnum = segments as u64 + 1;
    EHDR_SIZE + phnum * PHDR_SIZE + if phnum >= PN_XNUM { SHDR_SIZE } else { 0 }
}

/// The ELF header and program headers: the note segment first, then `segments`.
pub(crate) fn headers(segments: &[Segment], notes_offset: u64, notes_len: u64) -> Vec<u8> {
    let phnum = segments.len() as u64 + 1;
    let extended = phnum >= PN_XNUM;
    let mut out = Vec::with_capacity(headers_len(segments.len()) as usize);
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V ABI
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&ET_CORE.to_le_bytes());
    out.extend_from_slice(&arch::MACHINE.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    let shoff = if extended { EHDR_SIZE + phnum * PHDR_SIZE } else { 0 };
    out.extend_from_slice(&shoff.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    out.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    out.extend_from_slice(&(phnum.min(PN_XNUM) as u16).to_le_bytes());
    out.extend_from_slice(&(if extended { SHDR_SIZE as u16 } else { 0 }).to_le_bytes());
    out.extend_from_slice(&u16::from(extended).to_le_bytes()); // e_shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let note = Segment { vaddr: 0, memsz: 0, filesz: notes_len, offset: notes_offset, flags: 0 };
    program_header(&mut out, PT_NOTE, &note, 0);
    for s in segments {
        program_header(&mut out, PT_LOAD, s, PAGE);
    }
    if extended {
        // Section header 0, whose sh_info holds the real count (elf(5), "PN_XNUM").
        let mut shdr = [0u8; SHDR_SIZE as usize];
        shdr[32..40].copy_from_slice(&1u64.to_le_bytes()); // sh_size: e_shnum
        shdr[44..48].copy_from_slice(&(phnum as u32).to_le_bytes()); // sh_info
        out.extend_from_slice(&shdr);
    }
    out
}

fn program_header(out: &mut Vec<u8>, kind: u32, s: &Segment, align: u64) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&s.flags.to_le_bytes());
    out.extend_from_slice(&s.offset.to_le_bytes());
    out.extend_from_slice(&s.vaddr.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
    out.extend_from_slice(&s.filesz.to_le_bytes());
    out.extend_from_slice(&s.memsz.to_le_bytes());
    out.extend_from_slice(&align.to_le_bytes());
}

/// Appends one note: sizes and type, the name and the description, each padded to 4 bytes.
pub(crate) fn note(out: &mut Vec<u8>, name: &[u8], kind: u32, desc: &[u8]) {
    let namesz = name.len() + 1;
    out.extend_from_slice(&(namesz as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    pad4(out);
    out.extend_from_slice(desc);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// A time in clock ticks as `struct timeval` (seconds, microseconds).
fn timeval(out: &mut Vec<u8>, ticks: u64, hz: u64) {
    let hz = hz.max(1);
    out.extend_from_slice(&(ticks / hz).to_le_bytes());
    out.extend_from_slice(&((ticks % hz) * 1_000_000 / hz).to_le_bytes());
}

/// What a core says of one thread.
#[derive(Debug, Clone)]
pub(crate) struct Thread {
    pub tid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub pending: u64,
    pub blocked: u64,
    /// Clock ticks: the thread's own user and system time, its process's children's.
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    pub registers: Registers,
}

/// What a core says of the process.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub state: u8,
    pub flags: u64,
    pub nice: i64,
    pub uid: u32,
    pub gid: u32,
    pub comm: Vec<u8>,
    /// `/proc/PID/cmdline`: arguments separated by NUL bytes.
    pub cmdline: Vec<u8>,
    pub auxv: Vec<u8>,
    /// Clock ticks per second.
    pub hz: u64,
}

/// `struct elf_prstatus`. No signal is recorded: the process was not stopped by one.
pub(crate) fn prstatus(t: &Thread, hz: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(112 + arch::GREGS + 8);
    out.extend_from_slice(&[0; 12]); // pr_info: si_signo, si_code, si_errno
    out.extend_from_slice(&[0; 4]); // pr_cursig and padding
    out.extend_from_slice(&t.pending.to_le_bytes());
    out.extend_from_slice(&t.blocked.to_le_bytes());
    for id in [t.tid, t.ppid, t.pgrp, t.session] {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for ticks in [t.utime, t.stime, t.cutime, t.cstime] {
        timeval(&mut out, ticks, hz);
    }
    out.extend_from_slice(&t.registers.general);
    out.extend_from_slice(&i32::from(t.registers.fp.is_some()).to_le_bytes()); // pr_fpvalid
    pad8(&mut out);
    out
}

fn pad8(out: &mut Vec<u8>) {
    while out.len() % 8 != 0 {
        out.push(0);
    }
}

/// `struct elf_prpsinfo`.
pub(crate) fn prpsinfo(p: &Process) -> Vec<u8> {
    let mut out = Vec::with_capacity(136);
    // pr_state is the index of the state letter in "RSDTZW", as the kernel numbers them.
    let index = b"RSDTZW".iter().position(|&c| c == p.state);
    out.push(index.map_or(0, |i| i as u8));
    out.push(if index.is_some() { p.state } else { b'.' });
    out.push(u8::from(p.state == b'Z'));
    out.push(p.nice.clamp(-128, 127) as i8 as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&p.flags.to_le_bytes());
    out.extend_from_slice(&p.uid.to_le_bytes());
    out.extend_from_slice(&p.gid.to_le_bytes());
    for id in [p.pid, p.ppid, p.pgrp, p.session] {
        out.extend_from_slice(&id.to_le_bytes());
    }
    let mut fname = [0u8; 16];
    let n = p.comm.len().min(15);
    fname[..n].copy_from_slice(&p.comm[..n]);
    out.extend_from_slice(&fname);
    // As the kernel fills it: the command line cut to 79 bytes, NULs between arguments
    // turned into spaces.
    let mut args = [0u8; PRARGSZ];
    let n = p.cmdline.len().min(PRARGSZ - 1);
    for (dst, &src) in args.iter_mut().zip(&p.cmdline[..n]) {
        *dst = if src == 0 { b' ' } else { src };
    }
    out.extend_from_slice(&args);
    out
}

/// `NT_FILE`: every file mapping, with its offset in pages, then the paths.
pub(crate) fn nt_file(files: &[&Mapping]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(files.len() as u64).to_le_bytes());
    out.extend_from_slice(&PAGE.to_le_bytes());
    for m in files {
        out.extend_from_slice(&m.start.to_le_bytes());
        out.extend_from_slice(&m.end.to_le_bytes());
        out.extend_from_slice(&(m.offset / PAGE).to_le_bytes());
    }
    for m in files {
        out.extend_from_slice(m.path.as_bytes());
        out.push(0);
    }
    out
}

/// Every note, in the order gdb writes them: the process, then each thread's registers and
/// signal information, then the auxiliary vector and the mapped files. The first thread is
/// the one debuggers select.
pub(crate) fn notes(process: &Process, threads: &[Thread], files: &[&Mapping]) -> Vec<u8> {
    let mut out = Vec::new();
    note(&mut out, b"CORE", NT_PRPSINFO, &prpsinfo(process));
    for t in threads {
        note(&mut out, b"CORE", NT_PRSTATUS, &prstatus(t, process.hz));
        if let Some(fp) = &t.registers.fp {
            note(&mut out, b"CORE", NT_PRFPREG, fp);
        }
        if let Some(xstate) = &t.registers.xstate {
            note(&mut out, b"LINUX", NT_X86_XSTATE, xstate);
        }
        // No signal stopped the thread: an empty siginfo (si_signo 0) says so.
        note(&mut out, b"CORE", NT_SIGINFO, &[0; SIGINFO_SIZE]);
    }
    note(&mut out, b"CORE", NT_AUXV, &process.auxv);
    note(&mut out, b"CORE", NT_FILE, &nt_file(files));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(tid: i32) -> Thread {
        Thread {
            tid,
            ppid: 1,
            pgrp: 7,
            session: 7,
            pending: 0,
            blocked: 0,
            utime: 250,
            stime: 3,
            cutime: 0,
            cstime: 0,
            registers: Registers {
                general: vec![0xab; arch::GREGS],
                fp: Some(vec![0; arch::FPREGS]),
                xstate: None,
            },
        }
    }

    #[test]
    fn prstatus_has_the_kernels_layout() {
        let bytes = prstatus(&thread(4242), 100);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(bytes.len(), 336, "sizeof(struct elf_prstatus) on x86_64");
        assert_eq!(&bytes[32..36], &4242i32.to_le_bytes(), "pr_pid");
        assert_eq!(&bytes[48..56], &2u64.to_le_bytes(), "pr_utime.tv_sec");
        assert_eq!(&bytes[56..64], &500_000u64.to_le_bytes(), "pr_utime.tv_usec");
        assert_eq!(bytes[112], 0xab, "pr_reg");
        assert_eq!(&bytes[112 + arch::GREGS..116 + arch::GREGS], &1i32.to_le_bytes(), "pr_fpvalid");
    }

    #[test]
    fn prpsinfo_cuts_the_command_line_as_the_kernel_does() {
        let mut cmdline = b"python3\0app.py\0".to_vec();
        cmdline.extend_from_slice(&[b'x'; 100]);
        let p = Process {
            pid: 4242,
            ppid: 1,
            pgrp: 4242,
            session: 4242,
            state: b'S',
            flags: 0x40_0100,
            nice: -5,
            uid: 1000,
            gid: 100,
            comm: b"a-very-long-command-name".to_vec(),
            cmdline,
            auxv: Vec::new(),
            hz: 100,
        };
        let bytes = prpsinfo(&p);
        assert_eq!(bytes.len(), 136, "sizeof(struct elf_prpsinfo)");
        assert_eq!(&bytes[..4], &[1, b'S', 0, (-5i8) as u8]);
        assert_eq!(&bytes[16..24], &[0xe8, 3, 0, 0, 100, 0, 0, 0], "uid, gid");
        assert_eq!(&bytes[24..28], &4242i32.to_le_bytes());
        assert_eq!(&bytes[40..56], b"a-very-long-com\0");
        assert_eq!(&bytes[56..71], b"python3 app.py ");
        assert_eq!(bytes[56 + 79], 0, "the last byte stays NUL");
        assert!(bytes[71..56 + 79].iter().all(|&b| b == b'x'));
    }

    #[test]
    fn extended_numbering_past_65534_segments() {
        let segments = vec![Segment { vaddr: 0, memsz: 4096, filesz: 0, offset: 0, flags: 4 }; 70_000];
        let bytes = headers(&segments, 100, 20);
        assert_eq!(bytes.len() as u64, headers_len(segments.len()));
        assert_eq!(&bytes[56..58], &0xffffu16.to_le_bytes(), "e_phnum is PN_XNUM");
        let shoff = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
        assert_eq!(&bytes[shoff + 44..shoff + 48], &70_001u32.to_le_bytes(), "sh_info holds the count");
    }
}
