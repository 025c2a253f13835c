//! What `/proc` says about the process: its mappings with the kernel's flags, its dump filter,
//! its and its threads' status, its command line and auxiliary vector.

use crate::Error;
use pymri_memory::{parse_maps, read_proc, Mapping, MemoryError};
use std::io::{self, Read};

/// A mapping with what `/proc/PID/smaps` adds to `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Region {
    pub map: Mapping,
    /// Resident bytes.
    pub rss: u64,
    /// Bytes of anonymous pages: for a private file mapping, pages written since it was mapped
    /// (copied on write), which is what makes the kernel dump such a mapping whole.
    pub anonymous: u64,
    pub flags: VmFlags,
}

/// The `VmFlags` of smaps that decide whether the kernel dumps a mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VmFlags {
    /// `dd`: `madvise(MADV_DONTDUMP)`.
    pub dont_dump: bool,
    /// `io`: memory-mapped I/O, never read.
    pub io: bool,
    /// `ht`: hugetlbfs pages, dumped by their own filter bits.
    pub hugetlb: bool,
}

/// Parses `/proc/PID/smaps`. A field line that does not parse is ignored; a mapping line that
/// does not parse ends nothing (its fields are then given to no mapping).
pub(crate) fn parse_smaps(text: &str) -> Vec<Region> {
    let mut regions: Vec<Region> = Vec::new();
    // Whether the fields being read belong to the last region (a mapping line that did not
    // parse must not lend its fields to the one before it).
    let mut open = false;
    for line in text.lines() {
        if let Some(map) = header(line) {
            regions.push(Region { map, rss: 0, anonymous: 0, flags: VmFlags::default() });
            open = true;
            continue;
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        if key.contains(' ') || key.is_empty() {
            // `Key: value` lines have one-word keys; anything else is an unparsed mapping line.
            open = false;
            continue;
        }
        let Some(region) = regions.last_mut().filter(|_| open) else { continue };
        match key {
            "Rss" => region.rss = kib(value),
            "Anonymous" => region.anonymous = kib(value),
            "VmFlags" => {
                for flag in value.split_whitespace() {
                    match flag {
                        "dd" => region.flags.dont_dump = true,
                        "io" => region.flags.io = true,
                        "ht" => region.flags.hugetlb = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    regions
}

fn header(line: &str) -> Option<Mapping> {
    // Mapping lines start with the address range; field lines with a word and a colon.
    let first = line.as_bytes().first()?;
    if !first.is_ascii_hexdigit() || !line.split(' ').next()?.contains('-') {
        return None;
    }
    parse_maps(line).pop()
}

/// `  1234 kB` in bytes (0 when malformed).
fn kib(value: &str) -> u64 {
    let number = value.trim().trim_end_matches("kB").trim();
    number.parse::<u64>().ok().and_then(|k| k.checked_mul(1024)).unwrap_or(0)
}

/// The bits of `/proc/PID/coredump_filter` (`core(5)`).
pub(crate) mod filter {
    pub const ANON_PRIVATE: u32 = 1 << 0;
    pub const ANON_SHARED: u32 = 1 << 1;
    pub const MAPPED_PRIVATE: u32 = 1 << 2;
    pub const MAPPED_SHARED: u32 = 1 << 3;
    pub const ELF_HEADERS: u32 = 1 << 4;
    pub const HUGETLB_PRIVATE: u32 = 1 << 5;
    pub const HUGETLB_SHARED: u32 = 1 << 6;
    /// The kernel's default (`0x33`), used when the file cannot be read.
    pub const DEFAULT: u32 = ANON_PRIVATE | ANON_SHARED | ELF_HEADERS | HUGETLB_PRIVATE;
}

pub(crate) fn parse_filter(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim(), 16).ok()
}

/// Fields of `/proc/PID/stat` (or a thread's) that a core records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stat {
    pub comm: Vec<u8>,
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub flags: u64,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    pub nice: i64,
}

pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: it ends at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.as_bytes().to_vec();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| fields.get(i)?.parse::<i64>().ok();
    let unum = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        comm,
        state: *fields.first()?.as_bytes().first()?,
        ppid: i32::try_from(num(1)?).ok()?,
        pgrp: i32::try_from(num(2)?).ok()?,
        session: i32::try_from(num(3)?).ok()?,
        flags: unum(6)?,
        utime: unum(11)?,
        stime: unum(12)?,
        cutime: num(13)?.max(0) as u64,
        cstime: num(14)?.max(0) as u64,
        nice: num(16)?,
    })
}

/// Fields of `/proc/PID/task/TID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// Real user and group ids.
    pub uid: u32,
    pub gid: u32,
    /// Signals pending for the thread and blocked by it.
    pub pending: u64,
    pub blocked: u64,
}

pub(crate) fn parse_status(text: &str) -> Status {
    let mut status = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let first = value.split_whitespace().next().unwrap_or("");
        match key {
            "Uid" => status.uid = first.parse().unwrap_or(0),
            "Gid" => status.gid = first.parse().unwrap_or(0),
            "SigPnd" => status.pending = u64::from_str_radix(first, 16).unwrap_or(0),
            "SigBlk" => status.blocked = u64::from_str_radix(first, 16).unwrap_or(0),
            _ => {}
        }
    }
    status
}

/// `/proc/meminfo`'s `MemAvailable`, in bytes.
pub(crate) fn mem_available() -> Option<u64> {
    let text = read_proc("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(kib(&line["MemAvailable:".len()..]))
}

/// Reads `/proc/PID/NAME`; a file gone with its process is [`MemoryError::Exited`].
pub(crate) fn read_text(pid: i32, name: &str) -> Result<String, Error> {
    let path = format!("/proc/{pid}/{name}");
    read_proc(&path).map_err(|e| proc_error(pid, path, e))
}

/// Reads at most `limit` bytes of `/proc/PID/NAME` (a command line or an auxiliary vector:
/// sizes the process chose).
pub(crate) fn read_bytes(pid: i32, name: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let path = format!("/proc/{pid}/{name}");
    let mut out = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(limit).read_to_end(&mut out))
        .map_err(|e| proc_error(pid, path, e))?;
    Ok(out)
}

pub(crate) fn proc_error(pid: i32, path: String, source: io::Error) -> Error {
    // A process that ended takes its /proc directory with it (ENOENT), or leaves files that
    // fail to read (ESRCH).
    match source.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::Memory(MemoryError::Exited { pid }),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::Memory(MemoryError::PermissionDenied {
            pid,
            cause: pymri_memory::diagnose_permission(pid),
        }),
        _ => Error::Proc { path, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_gives_each_mapping_its_fields() {
        let text = "\
00400000-00420000 r--p 00000000 fe:01 1234                               /usr/bin/python3.11
Size:                128 kB
Rss:                  64 kB
Anonymous:             8 kB
VmFlags: rd mr mw me dw sd
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
Rss:                   4 kB
Anonymous:             4 kB
VmFlags: rd wr mr mw me ac sd dd
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
Rss:                   0 kB
VmFlags: ex
7f0000002000-7f0000003000 rw-s 00000000 00:05 77  /dev/hugepages/x
Rss:                   0 kB
VmFlags: rd wr sh mr mw me ms ht io
";
        let regions = parse_smaps(text);
        assert_eq!(regions.len(), 4);
        assert_eq!(regions[0].map.path, "/usr/bin/python3.11");
        assert_eq!((regions[0].rss, regions[0].anonymous), (64 * 1024, 8 * 1024));
        assert_eq!(regions[0].flags, VmFlags::default());
        assert!(regions[1].flags.dont_dump);
        assert_eq!(regions[2].map.path, "[vsyscall]");
        assert!(regions[3].flags.hugetlb && regions[3].flags.io);
    }

    #[test]
    fn a_mapping_line_that_does_not_parse_lends_its_fields_to_no_one() {
        let text = "\
00400000-00420000 r--p 00000000 fe:01 1234   /usr/bin/python3.11
Anonymous:             0 kB
00500000-zzzz r--p 00000000 fe:01 1234   /broken
Anonymous:          1000 kB
VmFlags: dd
";
        let regions = parse_smaps(text);
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].anonymous, 0);
        assert!(!regions[0].flags.dont_dump);
    }

    #[test]
    fn stat_fields_follow_the_last_parenthesis() {
        let text = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 2 3 20 -5 3 0 1000";
        let stat = parse_stat(text).expect("stat");
        assert_eq!(stat.comm, b"a (b) c");
        assert_eq!((stat.state, stat.ppid, stat.pgrp, stat.session), (b'S', 1, 4242, 4242));
        assert_eq!(stat.flags, 4194560);
        assert_eq!((stat.utime, stat.stime, stat.cutime, stat.cstime), (17, 5, 2, 3));
        assert_eq!(stat.nice, -5);
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn status_gives_ids_and_signal_masks() {
        let text = "Name:\tpython3\nUid:\t1000\t0\t0\t0\nGid:\t100\t0\t0\t0\nSigPnd:\t0000000000000100\nSigBlk:\tfffffffe7ffbfeff\n";
        let status = parse_status(text);
        assert_eq!((status.uid, status.gid), (1000, 100));
        assert_eq!(status.pending, 0x100);
        assert_eq!(status.blocked, 0xffff_fffe_7ffb_feff);
    }

    #[test]
    fn the_filter_is_hexadecimal() {
        assert_eq!(parse_filter("00000033\n"), Some(0x33));
        assert_eq!(parse_filter("zz"), None);
    }
}
