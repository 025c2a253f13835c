//! A live process: memory, threads, root, and why access was refused.

use crate::{Memory, MemoryError};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The memory of a live process, read with `process_vm_readv`.
pub struct ProcessMemory {
    pid: i32,
    /// `/proc/PID/mem`, opened only when the kernel lacks `process_vm_readv`.
    fallback: OnceLock<Option<File>>,
}

impl ProcessMemory {
    /// Checks that the process exists and that this process may read its memory.
    pub fn open(pid: i32) -> Result<Self, MemoryError> {
        if !process_exists(pid) {
            return Err(MemoryError::NoSuchProcess { pid });
        }
        let mem = ProcessMemory { pid, fallback: OnceLock::new() };
        match mem.probe() {
            // Named at the start only: a process that ends while being read stays `Exited`.
            Err(MemoryError::Exited { pid }) => Err(exited_or_zombie(pid)),
            other => other.map(|()| mem),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn probe(&self) -> Result<(), MemoryError> {
        // A read at address 0 fails with EFAULT when access is allowed and with EPERM when it
        // is not, so it tells the two apart without touching any real memory.
        let mut byte = [0u8; 1];
        match self.vm_read(0, &mut byte) {
            Ok(()) | Err(MemoryError::Unreadable { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn vm_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: `local` points at `buf`, which is valid for writes of `buf.len()` bytes for the
        // duration of the call; `remote` is only interpreted by the kernel in the target.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n == buf.len() as isize {
            return Ok(());
        }
        if n >= 0 {
            return Err(MemoryError::Unreadable { addr, len: buf.len() });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EFAULT) | Some(libc::EIO) => Err(MemoryError::Unreadable { addr, len: buf.len() }),
            Some(libc::ESRCH) => Err(MemoryError::Exited { pid: self.pid }),
            Some(libc::EPERM) | Some(libc::EACCES) => {
                Err(MemoryError::PermissionDenied { pid: self.pid, cause: diagnose_permission(self.pid) })
            }
            Some(libc::ENOSYS) => self.file_read(addr, buf),
            _ => Err(MemoryError::Os { what: "process_vm_readv", pid: self.pid, source: err }),
        }
    }

    fn file_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let file =
            self.fallback.get_or_init(|| File::open(format!("/proc/{}/mem", self.pid)).ok()).as_ref().ok_or(
                MemoryError::PermissionDenied { pid: self.pid, cause: diagnose_permission(self.pid) },
            )?;
        file.read_exact_at(buf, addr).map_err(|_| {
            if process_exists(self.pid) {
                MemoryError::Unreadable { addr, len: buf.len() }
            } else {
                MemoryError::Exited { pid: self.pid }
            }
        })
    }
}

/// The most iovecs one `process_vm_readv` takes (`IOV_MAX`).
const MAX_IOVECS: usize = 1024;

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.vm_read(addr, buf)
    }

    /// One `process_vm_readv` for up to [`MAX_IOVECS`] reads: the system call's own cost
    /// (finding the process, checking ptrace access) is paid once instead of per read. The
    /// kernel stops at the first remote range it cannot read and reports the bytes copied
    /// until then, so the reads after it are asked for again.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])], ok: &mut [bool]) {
        let mut at = 0;
        while at < reads.len() {
            let end = reads.len().min(at + MAX_IOVECS);
            let mut local = Vec::with_capacity(end - at);
            let mut remote = Vec::with_capacity(end - at);
            for (addr, buf) in reads[at..end].iter_mut() {
                local.push(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() });
                remote.push(libc::iovec { iov_base: *addr as *mut libc::c_void, iov_len: buf.len() });
            }
            // SAFETY: each local iovec points at a distinct buffer of `reads`, valid for writes
            // of its length for the whole call; the remote ones are only interpreted by the
            // kernel in the target. Both arrays hold `end - at` (at most IOV_MAX) entries.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            if n < 0 {
                let errno = io::Error::last_os_error().raw_os_error();
                if !matches!(errno, Some(libc::EFAULT) | Some(libc::EIO)) {
                    // Not about this range (the process is gone, access refused, no such
                    // system call): each read on its own tells what.
                    for ((addr, buf), ok) in reads[at..].iter_mut().zip(&mut ok[at..]) {
                        *ok = self.read(*addr, buf).is_ok();
                    }
                    return;
                }
                // The first range is unreadable.
                ok[at] = false;
                at += 1;
                continue;
            }
            let mut copied = n as usize;
            while at < end && copied >= reads[at].1.len() {
                copied -= reads[at].1.len();
                ok[at] = true;
                at += 1;
            }
            if at < end {
                // Copied in part, or not reached because the range before it failed.
                ok[at] = false;
                at += 1;
            }
        }
    }
}

/// Reads a `/proc` file whole. `/proc` files report a size of zero, which makes
/// `read_to_string` grow its buffer from a few bytes; one large buffer takes one or two reads.
pub fn read_proc(path: &str) -> io::Result<String> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let spare = buf.capacity() - buf.len();
        let start = buf.len();
        buf.resize(start + spare, 0);
        let n = file.read(&mut buf[start..])?;
        buf.truncate(start + n);
        if n == 0 {
            break;
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether `/proc/PID` exists (and is not a zombie we could never read).
pub fn process_exists(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}/maps")).exists()
}

/// The root directory the process runs in, when it is not this machine's `/`: a chroot or a
/// container's root, as a path seen from here.
pub fn process_root(pid: i32) -> Option<PathBuf> {
    let root = std::fs::read_link(format!("/proc/{pid}/root")).ok()?;
    (root != std::path::Path::new("/")).then_some(root)
}

/// Kernel thread ids of the process.
pub fn thread_ids(pid: i32) -> Result<Vec<i32>, MemoryError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => MemoryError::NoSuchProcess { pid },
        _ => MemoryError::Os { what: "listing threads", pid, source: e },
    })?;
    let mut tids: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    tids.sort_unstable();
    Ok(tids)
}

/// The processes `pid`'s threads started that still run (`/proc/PID/task/TID/children`, one
/// file per thread), in no particular order; none if `pid` is gone.
pub fn child_pids(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for tid in thread_ids(pid).unwrap_or_default() {
        if let Ok(text) = read_proc(&format!("/proc/{pid}/task/{tid}/children")) {
            children.extend(text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    children
}

/// What the kernel says a thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// On a CPU or waiting for one (`R`).
    Running,
    /// Sleeping, blocked in the kernel, stopped or traced.
    Sleeping,
}

/// Reads the state letter of `/proc/PID/task/TID/stat`.
pub fn thread_run_state(pid: i32, tid: i32) -> Option<RunState> {
    parse_run_state(&read_proc(&format!("/proc/{pid}/task/{tid}/stat")).ok()?)
}

/// The run state in the text of a `stat` file.
pub fn parse_run_state(stat: &str) -> Option<RunState> {
    // The command name may contain spaces and parentheses; the state follows the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    match after.trim_start().chars().next()? {
        'R' => Some(RunState::Running),
        _ => Some(RunState::Sleeping),
    }
}

/// The address of the futex a thread sleeps on, from `/proc/PID/task/TID/syscall`: the first
/// argument of the `futex` system call the thread is blocked in, if it is blocked in one.
pub fn thread_futex_wait(pid: i32, tid: i32) -> Option<u64> {
    parse_futex_wait(&read_proc(&format!("/proc/{pid}/task/{tid}/syscall")).ok()?)
}

/// The error for a process that has no memory left: [`MemoryError::Zombie`], naming its parent,
/// when it is an unreaped zombie, else [`MemoryError::Exited`].
pub fn exited_or_zombie(pid: i32) -> MemoryError {
    match zombie_parent(pid) {
        Some(parent) => MemoryError::Zombie { pid, parent, parent_command: short_command(parent) },
        None => MemoryError::Exited { pid },
    }
}

/// The command line of `pid` for a message, cut to a readable length (the process chose it).
fn short_command(pid: i32) -> String {
    const LONGEST: usize = 200;
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
            String::from_utf8_lossy(raw).replace('\0', " ")
        })
        .unwrap_or_default();
    if command.is_empty() {
        return "command unknown".to_owned();
    }
    match command.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{}...", &command[..cut]),
        None => command,
    }
}

/// The parent of `pid` if `pid` is a zombie (exited, not yet reaped), from `/proc/PID/stat`.
pub fn zombie_parent(pid: i32) -> Option<i32> {
    parse_zombie_parent(&read_proc(&format!("/proc/{pid}/stat")).ok()?)
}

/// The parent pid in the text of a zombie's `stat` file; `None` for any other state.
pub fn parse_zombie_parent(stat: &str) -> Option<i32> {
    // The command name may contain spaces and parentheses; state and parent follow the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if fields.next()? != "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// The parent of `pid`, from `/proc/PID/stat`; `None` once `pid` is gone.
pub fn parent_pid(pid: i32) -> Option<i32> {
    parse_parent(&read_proc(&format!("/proc/{pid}/stat")).ok()?)
}

/// The parent pid in the text of a `stat` file, whatever the state.
pub fn parse_parent(stat: &str) -> Option<i32> {
    // The command name may contain spaces and parentheses; state and parent follow the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    fields.next()?;
    fields.next()?.parse().ok()
}

/// The futex address in the text of a `syscall` file.
pub fn parse_futex_wait(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace();
    let number: i64 = fields.next()?.parse().ok()?;
    if number != libc::SYS_futex {
        return None;
    }
    u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()
}

/// Writes `bytes` at `addr` in the target with `process_vm_writev`; all or nothing is reported.
pub fn write_memory(pid: i32, addr: u64, bytes: &[u8]) -> Result<(), MemoryError> {
    let local = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: `local` describes `bytes`, valid for reads of its length for the whole call; the
    // kernel only writes into the target's address space.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if n == bytes.len() as isize {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match (n, err.raw_os_error()) {
        (-1, Some(libc::ESRCH)) => Err(MemoryError::Exited { pid }),
        (-1, Some(libc::EPERM)) => {
            Err(MemoryError::PermissionDenied { pid, cause: diagnose_permission(pid) })
        }
        (-1, Some(libc::EFAULT)) | (0.., _) => Err(MemoryError::Unreadable { addr, len: bytes.len() }),
        _ => Err(MemoryError::Os { what: "process_vm_writev", pid, source: err }),
    }
}

/// Why the kernel refused access to a process, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermissionCause {
    /// `kernel.yama.ptrace_scope` is 1: only ancestors may trace.
    YamaRestricted,
    /// `kernel.yama.ptrace_scope` is 2: only `CAP_SYS_PTRACE` may trace.
    YamaAdminOnly,
    /// `kernel.yama.ptrace_scope` is 3: nobody may trace until reboot.
    YamaDisabled,
    /// Running as root without `CAP_SYS_PTRACE`: typically a container started without it.
    MissingCapability,
    /// The target belongs to another user.
    OtherUser { uid: u32 },
    /// None of the above: a security module (AppArmor, SELinux) or a non-dumpable target.
    Unknown,
}

impl fmt::Display for PermissionCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermissionCause::YamaRestricted => f.write_str(
                "kernel.yama.ptrace_scope is 1 (only parent processes may trace)\n\
                 hint: run pymri with sudo, or allow it with `sudo sysctl kernel.yama.ptrace_scope=0`",
            ),
            PermissionCause::YamaAdminOnly => f.write_str(
                "kernel.yama.ptrace_scope is 2 (only CAP_SYS_PTRACE may trace)\n\
                 hint: run pymri with sudo",
            ),
            PermissionCause::YamaDisabled => f.write_str(
                "kernel.yama.ptrace_scope is 3 (tracing is disabled until reboot)\n\
                 hint: no process can be read on this machine until it restarts with a lower ptrace_scope",
            ),
            PermissionCause::MissingCapability => f.write_str(
                "pymri runs as root but without CAP_SYS_PTRACE\n\
                 hint: in a container, start it with `--cap-add=SYS_PTRACE` (Kubernetes: add SYS_PTRACE to securityContext.capabilities)",
            ),
            PermissionCause::OtherUser { uid } => write!(
                f,
                "the process belongs to uid {uid}\nhint: run pymri as that user or with sudo"
            ),
            PermissionCause::Unknown => f.write_str(
                "ptrace access was refused\n\
                 hint: a security module (AppArmor, SELinux) may forbid it; try sudo",
            ),
        }
    }
}

/// Works out why reading `pid` was refused, from the machine's settings and our credentials.
pub fn diagnose_permission(pid: i32) -> PermissionCause {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let has_cap = effective_caps().is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0);
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if scope >= 3 {
        return PermissionCause::YamaDisabled;
    }
    if euid == 0 && !has_cap {
        return PermissionCause::MissingCapability;
    }
    if !has_cap {
        if let Some(uid) = process_uid(pid) {
            if uid != euid {
                return PermissionCause::OtherUser { uid };
            }
        }
        match scope {
            1 => return PermissionCause::YamaRestricted,
            2 => return PermissionCause::YamaAdminOnly,
            _ => {}
        }
    }
    PermissionCause::Unknown
}

/// Bit number of `CAP_SYS_PTRACE` in the capability sets (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

fn process_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryExt;

    #[test]
    fn reads_own_memory_through_the_kernel() {
        let value: u64 = 0x1122_3344_5566_7788;
        let mem = ProcessMemory::open(std::process::id() as i32).unwrap();
        assert_eq!(mem.read_u64(&value as *const u64 as u64).unwrap(), value);
    }

    /// An unreadable range in a batch fails alone: the reads after it are made, whether it
    /// comes first (the system call fails), after readable ones (it copies part) or right after
    /// another unreadable one; batches longer than IOV_MAX are split.
    #[test]
    fn read_many_reads_past_an_unreadable_range() {
        let values: Vec<u64> = (1..=2000).collect();
        let unreadable = |i: usize| i == 0 || i % 700 == 3 || i == 1500 || i == 1501;
        let mem = ProcessMemory::open(std::process::id() as i32).unwrap();
        let mut bufs = vec![[0u8; 8]; 2000];
        let mut reads: Vec<(u64, &mut [u8])> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| (if unreadable(i) { 8 } else { &values[i] as *const u64 as u64 }, &mut b[..]))
            .collect();
        let mut ok = vec![false; 2000];
        mem.read_many(&mut reads, &mut ok);
        for (i, (ok, buf)) in ok.iter().zip(&bufs).enumerate() {
            assert_eq!(*ok, !unreadable(i), "read {i}");
            if *ok {
                assert_eq!(u64::from_le_bytes(*buf), values[i], "read {i}");
            }
        }
    }

    #[test]
    fn unmapped_address_is_unreadable_not_fatal() {
        let mem = ProcessMemory::open(std::process::id() as i32).unwrap();
        assert!(matches!(mem.read_u64(8), Err(MemoryError::Unreadable { .. })));
    }

    #[test]
    fn missing_process_is_named() {
        assert!(matches!(ProcessMemory::open(i32::MAX), Err(MemoryError::NoSuchProcess { .. })));
    }

    #[test]
    fn a_zombies_parent_is_read_after_its_state() {
        assert_eq!(parse_zombie_parent("4242 (python3) Z 4200 4242 4200 0 -1"), Some(4200));
        // A command name with spaces and parentheses, as a process may choose.
        assert_eq!(parse_zombie_parent("4242 (a) Z 1 (b)) Z 77 4242 0"), Some(77));
        assert_eq!(parse_zombie_parent("4242 (python3) S 4200 4242 4200 0 -1"), None);
        assert_eq!(parse_zombie_parent("4242 (python3) Z"), None);
        assert_eq!(parse_zombie_parent("garbage"), None);
    }

    #[test]
    fn a_parent_is_read_after_the_last_parenthesis() {
        assert_eq!(parse_parent("4242 (python3) S 4200 4242 4200 0 -1"), Some(4200));
        assert_eq!(parse_parent("4242 (a) S 1 (b)) R 77 4242 0"), Some(77));
        assert_eq!(parse_parent("4242 (python3) S"), None);
        assert_eq!(parse_parent("garbage"), None);
        assert_eq!(parent_pid(std::process::id() as i32), Some(std::os::unix::process::parent_id() as i32));
    }

    #[test]
    fn lists_own_threads() {
        let tids = thread_ids(std::process::id() as i32).unwrap();
        assert!(tids.contains(&(std::process::id() as i32)));
    }
}
