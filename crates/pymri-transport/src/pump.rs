//! A thread that moves bytes between a transport the session cannot use directly (a TLS
//! connection, a pair of FIFOs) and one end of a Unix socket pair, whose other end is handed to
//! `pymri_session::Session`.
//!
//! Why a thread and a socket pair: the session reads in one thread while others write, sets
//! read timeouts during its handshake, and shuts the stream down to wake its reader. A socket
//! gives all of that from the kernel. A TLS connection is one state machine that both
//! directions must drive (behind a lock, a blocked reader would stall every writer), and a FIFO
//! can be neither timed out nor shut down from another thread. Here a single thread owns the
//! transport and drives it with `poll(2)`, non-blocking on both sides, so neither direction
//! ever waits for the other. The cost is one thread and one copy per byte, nothing at a
//! debugger's rates.
//!
//! Flow control: at most [`MAX_BUFFERED`] bytes wait for the session; bytes from the session
//! are taken only once the transport has sent everything before them.
//!
//! End: when the session closes its end, the transport is closed cleanly (a TLS
//! `close_notify`, then the write side shut down) within [`CLOSE_TIMEOUT`]; when the transport
//! ends or fails, whatever it delivered is passed on and then the session's end is shut down,
//! so the session sees the end of its stream.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Bytes from the transport that may wait for the session.
pub(crate) const MAX_BUFFERED: usize = 256 * 1024;
/// How long the transport's clean close may take once the session is gone.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const CHUNK: usize = 16 * 1024;

/// One side of the pump: a transport with its own framing or descriptors.
pub(crate) trait Transport: Send + 'static {
    /// The descriptor to poll for input, and the one for output (they may be the same).
    fn read_fd(&self) -> RawFd;
    fn write_fd(&self) -> RawFd;
    /// Whether it can take more input from the peer now.
    fn wants_read(&self) -> bool;
    /// Whether it has bytes for the peer.
    fn wants_write(&self) -> bool;
    /// Reads what the peer sent (the descriptor is readable). An error ends the pump.
    fn read_peer(&mut self) -> io::Result<()>;
    /// Writes pending bytes to the peer, as far as it takes them without blocking.
    fn write_peer(&mut self) -> io::Result<()>;
    /// Moves received payload bytes to `out`, at most `room`.
    fn take_payload(&mut self, out: &mut Vec<u8>, room: usize) -> io::Result<()>;
    /// The peer's stream ended and every payload byte was taken.
    fn finished(&self) -> bool;
    /// Queues payload bytes for the peer.
    fn send_payload(&mut self, data: &[u8]) -> io::Result<()>;
    /// The session ended: queue a clean close for the peer.
    fn close(&mut self);
    /// After the close was flushed (or timed out): end the write direction.
    fn shutdown(&mut self);
}

/// Starts the pump; returns the session's end of the socket pair.
pub(crate) fn spawn<T: Transport>(transport: T, name: &str) -> io::Result<UnixStream> {
    let (session_end, pump_end) = UnixStream::pair()?;
    pump_end.set_nonblocking(true)?;
    std::thread::Builder::new().name(name.to_string()).spawn(move || run(transport, pump_end))?;
    Ok(session_end)
}

fn run<T: Transport>(mut transport: T, mut local: UnixStream) {
    let _ = pump(&mut transport, &mut local);
    let _ = local.shutdown(std::net::Shutdown::Both);
    transport.shutdown();
}

/// A non-blocking call that found nothing to do now (or was interrupted): try again later.
pub(crate) fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

fn pump<T: Transport>(transport: &mut T, local: &mut UnixStream) -> io::Result<()> {
    let mut to_session: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut chunk = vec![0u8; CHUNK];
    // Set once the session closed its end: the time by which the clean close must be out.
    let mut closing: Option<Instant> = None;
    loop {
        // Until the session stops taking bytes or the transport, given room, has none left: a
        // transport with payload still pending does not ask to read its peer (TLS holds
        // decrypted bytes back while any are unread), so if the session emptied `to_session`
        // and nothing more were taken here, no descriptor would wake this thread again.
        loop {
            let room = MAX_BUFFERED.saturating_sub(to_session.len());
            let before = to_session.len();
            if room > 0 {
                transport.take_payload(&mut to_session, room)?;
            }
            let drained = room > 0 && to_session.len() == before;
            while !to_session.is_empty() {
                match local.write(&to_session) {
                    Ok(n) => {
                        to_session.drain(..n);
                    }
                    Err(e) if would_block(&e) => break,
                    // The session is gone for good.
                    Err(e) => return Err(e),
                }
            }
            if drained || !to_session.is_empty() {
                break;
            }
        }
        if transport.wants_write() {
            match transport.write_peer() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if transport.finished() && to_session.is_empty() {
            return Ok(());
        }
        let poll_timeout = match closing {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if !transport.wants_write() || left.is_zero() {
                    return Ok(());
                }
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            }
            None => -1,
        };

        let mut local_events = 0;
        if closing.is_none() && !transport.wants_write() {
            local_events |= libc::POLLIN;
        }
        if !to_session.is_empty() {
            local_events |= libc::POLLOUT;
        }
        let read_events =
            if transport.wants_read() && to_session.len() < MAX_BUFFERED { libc::POLLIN } else { 0 };
        let write_events = if transport.wants_write() { libc::POLLOUT } else { 0 };
        let (read_fd, write_fd) = (transport.read_fd(), transport.write_fd());
        // A descriptor we wait for nothing on is left out (a negative fd), since poll reports
        // hang-ups whatever was asked and the loop would spin on one it cannot act on yet.
        let entry = |fd: RawFd, events: libc::c_short| libc::pollfd {
            fd: if events == 0 { -1 } else { fd },
            events,
            revents: 0,
        };
        let mut fds = Vec::with_capacity(3);
        fds.push(entry(local.as_raw_fd(), local_events));
        let (read_slot, write_slot) = if read_fd == write_fd {
            fds.push(entry(read_fd, read_events | write_events));
            (1, 1)
        } else {
            fds.push(entry(read_fd, read_events));
            fds.push(entry(write_fd, write_events));
            (1, 2)
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, poll_timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let hangup = libc::POLLHUP | libc::POLLERR;
        // Input from the peer (or its end: POLLHUP on a FIFO or socket whose writer left).
        if read_events != 0 && fds[read_slot].revents & (libc::POLLIN | hangup) != 0 {
            transport.read_peer()?;
        }
        if write_events != 0
            && fds[write_slot].revents & hangup != 0
            && fds[write_slot].revents & libc::POLLOUT == 0
        {
            // The peer stopped reading; a write would only fail.
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        // Input from the session.
        if local_events & libc::POLLIN != 0 && fds[0].revents & (libc::POLLIN | hangup) != 0 {
            match local.read(&mut chunk) {
                Ok(0) => {
                    transport.close();
                    closing = Some(Instant::now() + CLOSE_TIMEOUT);
                }
                Ok(n) => transport.send_payload(&chunk[..n])?,
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    transport.close();
                    closing = Some(Instant::now() + CLOSE_TIMEOUT);
                }
            }
        } else if fds[0].revents & libc::POLLERR != 0 {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
    }
}

/// Two descriptors carrying bytes as they are: a FIFO pair.
pub(crate) struct Plain<R: Read + AsRawFd + Send + 'static, W: Write + AsRawFd + Send + 'static> {
    input: R,
    output: Option<W>,
    received: Vec<u8>,
    pending: Vec<u8>,
    ended: bool,
}

impl<R: Read + AsRawFd + Send + 'static, W: Write + AsRawFd + Send + 'static> Plain<R, W> {
    /// Both descriptors must be non-blocking.
    pub(crate) fn new(input: R, output: W) -> Self {
        Plain { input, output: Some(output), received: Vec::new(), pending: Vec::new(), ended: false }
    }
}

impl<R: Read + AsRawFd + Send + 'static, W: Write + AsRawFd + Send + 'static> Transport for Plain<R, W> {
    fn read_fd(&self) -> RawFd {
        self.input.as_raw_fd()
    }
    fn write_fd(&self) -> RawFd {
        self.output.as_ref().map_or(-1, |o| o.as_raw_fd())
    }
    fn wants_read(&self) -> bool {
        !self.ended && self.received.len() < MAX_BUFFERED
    }
    fn wants_write(&self) -> bool {
        !self.pending.is_empty() && self.output.is_some()
    }
    fn read_peer(&mut self) -> io::Result<()> {
        let mut buf = [0u8; CHUNK];
        match self.input.read(&mut buf) {
            Ok(0) => self.ended = true,
            Ok(n) => self.received.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
    fn write_peer(&mut self) -> io::Result<()> {
        let Some(output) = self.output.as_mut() else { return Ok(()) };
        while !self.pending.is_empty() {
            let n = output.write(&self.pending)?;
            self.pending.drain(..n);
        }
        Ok(())
    }
    fn take_payload(&mut self, out: &mut Vec<u8>, room: usize) -> io::Result<()> {
        let n = room.min(self.received.len());
        out.extend(self.received.drain(..n));
        Ok(())
    }
    fn finished(&self) -> bool {
        self.ended && self.received.is_empty()
    }
    fn send_payload(&mut self, data: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        Ok(())
    }
    fn close(&mut self) {}
    fn shutdown(&mut self) {
        // Closing our write end is the FIFO's end of stream for the agent.
        self.output = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn plain_pair() -> (UnixStream, UnixStream) {
        // The "peer" is a socket pair standing in for the FIFOs: we read and write its ends.
        let (peer, ours) = UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        let ours2 = ours.try_clone().expect("clone");
        let session = spawn(Plain::new(ours, ours2), "pump-test").expect("spawn");
        (session, peer)
    }

    #[test]
    fn bytes_flow_both_ways_and_the_end_reaches_the_session() {
        let (mut session, mut peer) = plain_pair();
        session.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        peer.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        // More than every buffer on the way holds, both directions at once.
        let writer = {
            let mut peer = peer.try_clone().expect("clone");
            let big = big.clone();
            std::thread::spawn(move || peer.write_all(&big))
        };
        let echo = {
            let mut session = session.try_clone().expect("clone");
            let big = big.clone();
            std::thread::spawn(move || session.write_all(&big))
        };
        let mut got = vec![0u8; big.len()];
        session.read_exact(&mut got).expect("session reads");
        assert!(got == big);
        let mut back = vec![0u8; big.len()];
        peer.read_exact(&mut back).expect("peer reads");
        assert!(back == big);
        writer.join().expect("join").expect("write");
        echo.join().expect("join").expect("write");
        // The peer ends: the session sees the end of its stream.
        peer.shutdown(std::net::Shutdown::Both).expect("shutdown");
        let mut rest = Vec::new();
        assert_eq!(session.read_to_end(&mut rest).expect("eof"), 0);
    }

    /// A transport holding much payload that it hands out a little at a time, and that does not
    /// ask to read its peer while any is pending (as rustls does with decrypted bytes).
    struct Trickle {
        payload: Vec<u8>,
        idle: UnixStream,
    }

    impl Transport for Trickle {
        fn read_fd(&self) -> RawFd {
            self.idle.as_raw_fd()
        }
        fn write_fd(&self) -> RawFd {
            self.idle.as_raw_fd()
        }
        fn wants_read(&self) -> bool {
            self.payload.is_empty()
        }
        fn wants_write(&self) -> bool {
            false
        }
        fn read_peer(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn write_peer(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn take_payload(&mut self, out: &mut Vec<u8>, room: usize) -> io::Result<()> {
            let n = room.min(1000).min(self.payload.len());
            out.extend(self.payload.drain(..n));
            Ok(())
        }
        fn finished(&self) -> bool {
            false
        }
        fn send_payload(&mut self, _data: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn close(&mut self) {}
        fn shutdown(&mut self) {}
    }

    /// Regression: the pump slept with decrypted bytes still held by TLS after the session had
    /// read everything passed on so far (a 1 MiB answer over TLS stalled now and then).
    #[test]
    fn payload_held_back_by_the_transport_still_reaches_the_session() {
        let (idle, _peer) = UnixStream::pair().expect("pair");
        let payload: Vec<u8> = (0..3 * MAX_BUFFERED as u32).map(|i| (i % 253) as u8).collect();
        let mut session = spawn(Trickle { payload: payload.clone(), idle }, "pump-test").expect("spawn");
        session.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut got = vec![0u8; payload.len()];
        session.read_exact(&mut got).expect("every byte reaches the session");
        assert!(got == payload);
    }

    #[test]
    fn the_session_closing_ends_the_peer_stream() {
        let (session, mut peer) = plain_pair();
        peer.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        (&session).write_all(b"last words").expect("write");
        session.shutdown(std::net::Shutdown::Both).expect("shutdown");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("peer sees the end");
        assert_eq!(got, b"last words");
    }
}
