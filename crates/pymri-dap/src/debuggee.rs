//! The program being debugged and the threads that feed the adapter's queue from it: agent
//! events, the launched program's stdout and stderr, and the program's end.
//!
//! Each debuggee has an epoch; anything queued carries it, so that leftovers of an earlier
//! debuggee of the same client connection are told apart and dropped.

use crate::adapter::Input;
use pymri_inject::attach::Pending;
use pymri_session::{Session, SessionEvent};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitStatus;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

/// How the session came to be.
pub enum Origin {
    /// We started the program (`launch`): we own its process and its output.
    Launch(Box<Launched>),
    /// We injected the agent into a running process (`attach` with `processId`).
    Attach {
        pid: i32,
        /// The staging directory (agent package, socket), kept while the session lasts.
        _pending: Box<Pending>,
    },
    /// We connected to an agent that listens (`attach` with `connect`).
    Connect,
}

pub struct Launched {
    pub process: pymri_launch::Process,
    /// Set once the program was reaped.
    pub status: Option<ExitStatus>,
    /// A handle on the process that stays valid after it is reaped (no pid reuse), when the
    /// kernel has pidfds.
    pidfd: Option<OwnedFd>,
}

pub struct Debuggee {
    pub session: Arc<Session>,
    pub origin: Origin,
    pub epoch: u64,
}

impl Debuggee {
    /// Starts the agent-event pump (and, for a launched program, the output and exit watchers).
    pub fn new(session: Session, origin: Origin, epoch: u64, tx: &Sender<Input>) -> Debuggee {
        let session = Arc::new(session);
        spawn_pump(Arc::clone(&session), epoch, tx.clone());
        Debuggee { session, origin, epoch }
    }

    pub fn launched(&mut self) -> Option<&mut Launched> {
        match &mut self.origin {
            Origin::Launch(l) => Some(l),
            _ => None,
        }
    }

    pub fn is_launch(&self) -> bool {
        matches!(self.origin, Origin::Launch(_))
    }

    /// A connected agent that has not started its program yet (`python -m pymri_agent --wait`).
    pub fn awaits_start(&self) -> bool {
        matches!(self.origin, Origin::Connect) && self.session.ready().mode == "launch"
    }

    /// Ends the session: the agent detaches (protocol §7) if it has not already.
    pub fn close(&self) {
        self.session.close();
    }
}

impl Drop for Debuggee {
    fn drop(&mut self) {
        self.close();
    }
}

impl Launched {
    /// Takes the program's pipes and watches it; `ProgramEnded` is queued once it exited and
    /// its output was read to the end (or a moment later, if something else holds the pipes).
    pub fn new(mut process: pymri_launch::Process, epoch: u64, tx: &Sender<Input>) -> Launched {
        let pid = process.child.id() as libc::pid_t;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; the pid is
        // our unreaped child, so it names the program.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = i32::try_from(raw).ok().filter(|fd| *fd >= 0).map(|fd| {
            // SAFETY: the kernel just returned this descriptor to us alone.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        let (done_tx, done_rx) = mpsc::channel();
        let mut readers = 0;
        if let Some(out) = process.child.stdout.take() {
            spawn_output(out, "stdout", epoch, tx.clone(), done_tx.clone());
            readers += 1;
        }
        if let Some(err) = process.child.stderr.take() {
            spawn_output(err, "stderr", epoch, tx.clone(), done_tx.clone());
            readers += 1;
        }
        drop(done_tx);
        let tx = tx.clone();
        let _ = std::thread::Builder::new().name("pymri-dap-wait".into()).spawn(move || {
            wait_exited(pid);
            for _ in 0..readers {
                // Output still in the pipes is read first; a grandchild holding them open must
                // not keep the session from ending.
                if done_rx.recv_timeout(Duration::from_secs(2)).is_err() {
                    break;
                }
            }
            let _ = tx.send(Input::ProgramEnded(epoch));
        });
        Launched { process, status: None, pidfd }
    }

    /// Sends `signal` unless the program was reaped already (then its pid may be another's).
    pub fn signal(&self, signal: libc::c_int) {
        if self.status.is_some() {
            return;
        }
        match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd, signal),
            // SAFETY: kill(2) on our child, which is not reaped (`status` is unset).
            None => unsafe {
                libc::kill(self.process.child.id() as libc::pid_t, signal);
            },
        }
    }

    /// Sends `signal` after `delay` if the program is still running then; only possible with a
    /// pidfd (a bare pid could be reused in between).
    pub fn signal_later(&self, signal: libc::c_int, delay: Duration) {
        let Some(fd) = self.pidfd.as_ref().and_then(|fd| fd.try_clone().ok()) else { return };
        let _ = std::thread::Builder::new().name("pymri-dap-term".into()).spawn(move || {
            std::thread::sleep(delay);
            // Signalling a process that exited in the meantime is harmless.
            pidfd_send_signal(&fd, signal);
        });
    }

    /// Reaps the program (it has exited, or is about to after SIGKILL).
    pub fn reap(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.process.child.wait().ok();
        }
        self.status
    }

    /// Whether the program has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.process.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status.is_some()
    }
}

fn pidfd_send_signal(fd: &OwnedFd, signal: libc::c_int) {
    // SAFETY: a pidfd we own, a signal number, no siginfo, no flags.
    unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), signal, std::ptr::null::<u8>(), 0);
    }
}

/// Blocks until process `pid` (our child) has exited, without reaping it.
fn wait_exited(pid: libc::pid_t) {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid siginfo_t; WNOWAIT leaves it unreaped.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

fn spawn_pump(session: Arc<Session>, epoch: u64, tx: Sender<Input>) {
    let _ = std::thread::Builder::new().name("pymri-dap-events".into()).spawn(move || loop {
        match session.next_event(None) {
            Some(SessionEvent::Woken) => {}
            Some(event) => {
                let last = matches!(event, SessionEvent::Closed(_));
                if tx.send(Input::Agent(epoch, event)).is_err() || last {
                    return;
                }
            }
            None => return,
        }
    });
}

/// How long a piece of output without a line end waits for the rest of its line: an
/// unbuffered `print("a", 1)` writes three pieces, which clients should see as one line.
const LINE_WAIT_MS: libc::c_int = 20;
/// The most output sent in one event.
const MAX_CHUNK: usize = 64 * 1024;

fn spawn_output(
    mut pipe: impl Read + AsRawFd + Send + 'static,
    category: &'static str,
    epoch: u64,
    tx: Sender<Input>,
    done: Sender<()>,
) {
    let _ = std::thread::Builder::new().name(format!("pymri-dap-{category}")).spawn(move || {
        let mut buf = vec![0u8; MAX_CHUNK];
        let mut text = Utf8Chunks::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut open = true;
        while open {
            match pipe.read(&mut buf) {
                Ok(0) => open = false,
                Ok(n) => pending.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => open = false,
            }
            let more_soon = open
                && pending.last().is_some_and(|b| *b != b'\n')
                && pending.len() < MAX_CHUNK
                && readable_within(pipe.as_raw_fd(), LINE_WAIT_MS);
            if more_soon {
                continue;
            }
            let chunk = text.push(&pending);
            pending.clear();
            if !chunk.is_empty() && tx.send(Input::Output(epoch, category, chunk)).is_err() {
                break;
            }
        }
        let rest = text.finish();
        if !rest.is_empty() {
            let _ = tx.send(Input::Output(epoch, category, rest));
        }
        let _ = done.send(());
    });
}

/// Whether `fd` has data (or its end) to read within `ms` milliseconds.
fn readable_within(fd: libc::c_int, ms: libc::c_int) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Turns a byte stream into text without splitting a UTF-8 sequence across two chunks;
/// invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Chunks {
    carry: Vec<u8>,
}

impl Utf8Chunks {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        // An incomplete sequence at the end is at most 3 bytes: keep it for the next chunk. So
        // is a final `\r`, which a `\n` in the next chunk may make a line end.
        let keep = match incomplete_tail(&self.carry) {
            0 if self.carry.last() == Some(&b'\r') => 1,
            n => n,
        };
        let split = self.carry.len().saturating_sub(keep);
        let rest = self.carry.split_off(split);
        let text = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry = rest;
        text
    }

    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry.clear();
        text
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 sequence that is not complete yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let Some(&b) = bytes.get(bytes.len() - back) else { break };
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks() {
        let text = "aé€😀z";
        let bytes = text.as_bytes();
        for size in 1..=bytes.len() {
            let mut chunks = Utf8Chunks::default();
            let mut out = String::new();
            for piece in bytes.chunks(size) {
                out.push_str(&chunks.push(piece));
            }
            out.push_str(&chunks.finish());
            assert_eq!(out, text, "chunks of {size}");
        }
        let mut chunks = Utf8Chunks::default();
        assert_eq!(chunks.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(chunks.push(b"\xe2\x82"), "");
        assert_eq!(chunks.finish(), "\u{fffd}");
        assert_eq!(chunks.push(b"line\r"), "line");
        assert_eq!(chunks.push(b"\nnext\r"), "\r\nnext");
        assert_eq!(chunks.finish(), "\r");
    }
}
