//! Stopping every thread of a process for a consistent snapshot, and always letting it go.

use crate::process::{diagnose_permission, thread_ids};
use crate::MemoryError;
use std::io;
use std::time::{Duration, Instant};

/// Every thread of a process, stopped with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`.
///
/// Dropping it detaches every thread, which resumes it. If pymri dies instead (SIGKILL, a
/// crash), the kernel detaches the seized threads itself and they resume: a seize injects no
/// `SIGSTOP` that could be left pending, which is why this never uses `PTRACE_ATTACH`.
pub struct Freeze {
    pid: i32,
    /// Stopped threads, and a signal that arrived while stopping them, to deliver on release.
    threads: Vec<(i32, i32)>,
}

/// How long one thread may take to reach its stop. A thread in uninterruptible sleep (`D`)
/// stops only when the kernel call returns; past this, the freeze gives up and releases all.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// Threads can be created while others are being stopped; the thread list is re-read until it
/// is stable, at most this many times.
const MAX_ROUNDS: usize = 16;

impl Freeze {
    pub fn new(pid: i32) -> Result<Freeze, MemoryError> {
        let mut freeze = Freeze { pid, threads: Vec::new() };
        for _ in 0..MAX_ROUNDS {
            let tids = thread_ids(pid)?;
            let new: Vec<i32> =
                tids.into_iter().filter(|t| !freeze.threads.iter().any(|(s, _)| s == t)).collect();
            if new.is_empty() {
                return Ok(freeze);
            }
            freeze.stop(&new)?;
        }
        Ok(freeze)
    }

    /// Stops only those of the threads `tids` that are threads of `pid` now (an id that
    /// ended may be another process's by now); every other thread keeps running.
    pub fn only(pid: i32, tids: &[i32]) -> Result<Freeze, MemoryError> {
        let now = thread_ids(pid)?;
        let ours: Vec<i32> = tids.iter().copied().filter(|t| now.binary_search(t).is_ok()).collect();
        let mut freeze = Freeze { pid, threads: Vec::with_capacity(ours.len()) };
        freeze.stop(&ours)?;
        Ok(freeze)
    }

    fn stop(&mut self, tids: &[i32]) -> Result<(), MemoryError> {
        let pid = self.pid;
        let mut seized = Vec::new();
        for &tid in tids {
            match seize(tid) {
                Ok(()) => seized.push(tid),
                // The thread exited between listing and seizing.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(MemoryError::PermissionDenied { pid, cause: diagnose_permission(pid) })
                }
                Err(source) => return Err(MemoryError::Os { what: "PTRACE_SEIZE", pid, source }),
            }
        }
        for tid in seized {
            // Recorded before waiting, so that Drop releases it even if the wait fails.
            self.threads.push((tid, 0));
            match wait_for_stop(tid) {
                Ok(Some(pending_signal)) => {
                    if let Some(entry) = self.threads.iter_mut().find(|(t, _)| *t == tid) {
                        entry.1 = pending_signal;
                    }
                }
                Ok(None) => self.threads.retain(|(t, _)| *t != tid),
                Err(source) => return Err(MemoryError::Os { what: "stopping a thread", pid, source }),
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Kernel ids of the stopped threads.
    pub fn threads(&self) -> impl Iterator<Item = i32> + '_ {
        self.threads.iter().map(|(t, _)| *t)
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        for &(tid, signal) in &self.threads {
            // SAFETY: PTRACE_DETACH on a thread we seized; `signal` is 0 or a signal number that
            // was intercepted while stopping it and must reach the target.
            unsafe {
                ptrace(libc::PTRACE_DETACH, tid, signal as usize);
            }
        }
    }
}

/// The type of a `ptrace(2)` request: glibc declares it an enum (unsigned), musl an `int`.
#[cfg(target_env = "musl")]
type Request = libc::c_int;
#[cfg(not(target_env = "musl"))]
type Request = libc::c_uint;

/// `ptrace(2)` with no address argument.
///
/// # Safety
/// `request` must be one that takes no pointer: `data` is passed as a plain integer.
unsafe fn ptrace(request: Request, tid: i32, data: usize) -> libc::c_long {
    // SAFETY: upheld by the caller; the address argument is null.
    unsafe { libc::ptrace(request, tid, std::ptr::null_mut::<libc::c_void>(), data as *mut libc::c_void) }
}

fn seize(tid: i32) -> io::Result<()> {
    // SAFETY: plain ptrace requests on a thread id; no pointers are passed.
    unsafe {
        if ptrace(libc::PTRACE_SEIZE, tid, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        if ptrace(libc::PTRACE_INTERRUPT, tid, 0) == -1 {
            let err = io::Error::last_os_error();
            ptrace(libc::PTRACE_DETACH, tid, 0);
            return Err(err);
        }
    }
    Ok(())
}

/// Waits until `tid` is in a ptrace stop. Returns the signal to re-deliver on detach (0 if
/// none), or `None` if the thread exited meanwhile.
fn wait_for_stop(tid: i32) -> io::Result<Option<i32>> {
    let start = Instant::now();
    let mut pending = 0;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; __WALL is needed for non-leader threads.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ECHILD) {
                return Ok(None);
            }
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        if r == tid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Ok(None);
            }
            if libc::WIFSTOPPED(status) {
                let event = (status >> 16) & 0xff;
                if event == libc::PTRACE_EVENT_STOP {
                    return Ok(Some(pending));
                }
                // A signal-delivery stop came first: keep the signal for the release and let
                // the thread reach the interrupt stop that is still queued.
                pending = libc::WSTOPSIG(status);
                // SAFETY: restarting a tracee we own, suppressing the signal for now.
                unsafe {
                    ptrace(libc::PTRACE_CONT, tid, 0);
                    ptrace(libc::PTRACE_INTERRUPT, tid, 0);
                }
                continue;
            }
        }
        if start.elapsed() > STOP_DEADLINE {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("thread {tid} did not stop within {STOP_DEADLINE:?} (uninterruptible sleep?)"),
            ));
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The registers an unwinder starts from (x86_64): the instruction, stack and frame pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Indices in the kernel's `user_regs_struct` (x86_64), which is also a core's `pr_reg`.
const USER_REGS_WORDS: usize = 27;
const REG_RBP: usize = 4;
const REG_RIP: usize = 16;
const REG_RSP: usize = 19;

impl Registers {
    /// From the words of a `user_regs_struct` as a core's `NT_PRSTATUS` holds it (x86_64).
    pub fn from_user_regs(words: &[u64]) -> Option<Registers> {
        Some(Registers { ip: *words.get(REG_RIP)?, sp: *words.get(REG_RSP)?, bp: *words.get(REG_RBP)? })
    }
}

impl Freeze {
    /// The registers of `tid`, one of the threads this freeze holds stopped.
    #[cfg(target_arch = "x86_64")]
    pub fn registers(&self, tid: i32) -> Result<Registers, MemoryError> {
        if !self.threads.iter().any(|(t, _)| *t == tid) {
            return Err(MemoryError::Os {
                what: "PTRACE_GETREGSET",
                pid: self.pid,
                source: io::Error::new(io::ErrorKind::InvalidInput, format!("thread {tid} is not stopped")),
            });
        }
        let mut words = [0u64; USER_REGS_WORDS];
        let mut iov =
            libc::iovec { iov_base: words.as_mut_ptr().cast(), iov_len: std::mem::size_of_val(&words) };
        // SAFETY: `iov` describes `words`, which outlives the call; the kernel writes at most
        // `iov_len` bytes and shortens `iov_len` to what it wrote. The address argument is the
        // register set's note type, NT_PRSTATUS (1), not a pointer.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGSET,
                tid,
                std::ptr::without_provenance_mut::<libc::c_void>(1),
                (&mut iov as *mut libc::iovec).cast::<libc::c_void>(),
            )
        };
        if r == -1 {
            return Err(MemoryError::Os {
                what: "PTRACE_GETREGSET",
                pid: self.pid,
                source: io::Error::last_os_error(),
            });
        }
        let written = iov.iov_len / 8;
        Registers::from_user_regs(&words[..written.min(USER_REGS_WORDS)]).ok_or(MemoryError::Os {
            what: "PTRACE_GETREGSET",
            pid: self.pid,
            source: io::Error::new(io::ErrorKind::InvalidData, "short register set"),
        })
    }
}
