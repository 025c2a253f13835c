//! A debugger session with the pymri agent: the engine shared by every pymri front end (the
//! pdb-style REPL, the web page and the DAP server).
//!
//! [`Session::connect`] takes a connected byte stream (a Unix or TCP socket, or anything that
//! implements [`Stream`]), runs the authenticated handshake of the protocol and starts one
//! reader thread. From then on:
//!
//! - **Requests** ([`Session::request`]) are typed by `pymri_protocol::requests`; each waits
//!   for its own response, matched by id (the agent may answer out of order), with a timeout.
//!   Several threads may send requests at once (a completion request from the line editor while
//!   the REPL waits for an event, say).
//! - **Events** queue up in arrival order (at most [`MAX_QUEUED_EVENTS`] events and
//!   [`MAX_QUEUED_BYTES`] of payload: an agent that sends more than the consumer takes is
//!   flooding it, and the session ends) and are taken out by one consumer with
//!   [`Session::next_event`], which also updates the [`StopState`] (stopped threads, the
//!   selected thread and frame, the program's exit), so that state always matches what the
//!   consumer has seen.
//! - **Wake-ups**: a [`Waker`] lets another thread (a signal handler's thread, typically)
//!   interrupt a consumer blocked in `next_event`, and abandon requests waiting for an answer.
//!
//! The stream is closed when the session is dropped; the agent then detaches and the program
//! goes on undebugged (protocol §7).
//!
//! Non-goals: presentation (no terminal code, no clap), launching or injecting the agent (the
//! `run` and `attach` commands produce the stream), and reconnecting a lost stream.

mod state;

pub use pymri_protocol as protocol;
pub use state::{Selection, StopState};

use pymri_protocol::handshake::{ControllerHandshake, HandshakeError, Secret, Step};
use pymri_protocol::messages::{Event, Incoming, MessageError, Ready, ResponseError};
use pymri_protocol::{FrameDecoder, FrameError, FrameSealer, Request, HANDSHAKE_MAX_FRAME, MAX_FRAME};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the agent may take for the whole handshake (the agent's own limit, §3).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for a response. Requests that run user code (evaluation) pass their own.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most events waiting for the consumer. A busy log point emits a few thousand per second; a
/// consumer that is not keeping up with this many is facing an agent that floods it.
pub const MAX_QUEUED_EVENTS: usize = 65_536;
/// Most payload bytes of the events waiting for the consumer: four of the largest frames.
pub const MAX_QUEUED_BYTES: usize = 4 * MAX_FRAME;

/// A byte stream to the agent that can be cloned (one clone reads, one writes) and shut down.
pub trait Stream: Read + Write + Send + 'static {
    fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>>;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Ends both directions, waking a reader blocked on another clone.
    fn shutdown(&self) -> io::Result<()>;
}

impl Stream for UnixStream {
    fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn shutdown(&self) -> io::Result<()> {
        UnixStream::shutdown(self, std::net::Shutdown::Both)
    }
}

impl Stream for TcpStream {
    fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn shutdown(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Both)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("talking to the agent: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("the agent did not complete the handshake within {0:?}\nhint: the program may be stuck before it could start the agent")]
    HandshakeTimeout(Duration),
    #[error("the agent closed the connection during the handshake\nhint: the program exited, or the secret did not match")]
    ClosedDuringHandshake,
    /// The handshake failed after the agent said it was delaying it.
    #[error("{source}\nnote: the agent said: {notice}")]
    Delayed {
        notice: String,
        #[source]
        source: Box<SessionError>,
    },
    #[error("the agent sent a malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("the agent sent a malformed message: {0}")]
    Message(#[from] MessageError),
    /// The agent answered with an error (its message is meant for the user).
    #[error("{source}")]
    Agent {
        cmd: &'static str,
        #[source]
        source: ResponseError,
    },
    #[error("the agent's answer to {cmd} is malformed: {detail}")]
    BadBody { cmd: &'static str, detail: String },
    #[error("no answer to {cmd} within {timeout:?}")]
    Timeout { cmd: &'static str, timeout: Duration },
    #[error("{cmd} was interrupted; the agent may still carry it out")]
    Interrupted { cmd: &'static str },
    #[error("the debugging session ended: {0}")]
    Closed(String),
}

impl SessionError {
    /// The agent's error answer, if that is what this is.
    pub fn agent_error(&self) -> Option<&ResponseError> {
        match self {
            SessionError::Agent { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the session is unusable after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            SessionError::Io(_)
                | SessionError::Closed(_)
                | SessionError::Frame(_)
                | SessionError::Message(_)
                | SessionError::ClosedDuringHandshake
                | SessionError::Delayed { .. }
                | SessionError::Handshake(_)
                | SessionError::HandshakeTimeout(_)
        )
    }
}

/// Options of [`Session::connect_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Handshake<'a> {
    /// The injection's nonce (`attach`), empty otherwise.
    pub attach_nonce: &'a str,
    /// Over TLS: the SHA-256 fingerprint (lowercase hex) of the certificate we presented, which
    /// both proofs then cover.
    pub channel_binding: Option<&'a str>,
    /// When the whole handshake must be over; [`HANDSHAKE_TIMEOUT`] from now if `None`.
    pub deadline: Option<Instant>,
}

/// What [`Session::next_event`] yields.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    Event(Event),
    /// A [`Waker`] was used.
    Woken,
    /// The stream ended (the reason, for the user). Nothing else will arrive.
    Closed(String),
}

/// What the reader queues: an event (or notice) and the payload bytes it was made of.
struct Queued {
    event: SessionEvent,
    bytes: usize,
}

/// How much the event queue holds (bounded: a hostile agent must not exhaust pymri's memory).
#[derive(Default)]
struct QueueUse {
    events: usize,
    bytes: usize,
}

enum Reply {
    Response(Result<Value, ResponseError>),
    Closed(String),
    Cancelled,
}

/// The writing end and the tags of what it writes: one lock, so that frames go out in the
/// order of their sequence numbers.
struct Writer {
    stream: Box<dyn Stream>,
    sealer: FrameSealer,
}

struct Shared {
    writer: Mutex<Writer>,
    closer: Mutex<Box<dyn Stream>>,
    pending: Mutex<Pending>,
    queued: Mutex<QueueUse>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, mpsc::SyncSender<Reply>>,
    closed: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the session down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn close_all(&self, reason: &str) {
        let mut pending = lock(&self.pending);
        if pending.closed.is_none() {
            pending.closed = Some(reason.to_string());
        }
        for (_, tx) in pending.waiting.drain() {
            let _ = tx.try_send(Reply::Closed(reason.to_string()));
        }
    }
}

/// Lets another thread wake the event consumer and abandon waiting requests.
#[derive(Clone)]
pub struct Waker {
    notices: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
}

impl Waker {
    /// Makes the consumer's `next_event` return [`SessionEvent::Woken`].
    pub fn wake(&self) {
        let _ = self.notices.send(Queued { event: SessionEvent::Woken, bytes: 0 });
    }

    /// Makes every request waiting for an answer return [`SessionError::Interrupted`].
    pub fn cancel_requests(&self) {
        for (_, tx) in lock(&self.shared.pending).waiting.drain() {
            let _ = tx.try_send(Reply::Cancelled);
        }
    }
}

pub struct Session {
    shared: Arc<Shared>,
    events: Mutex<mpsc::Receiver<Queued>>,
    notices: mpsc::Sender<Queued>,
    ready: Ready,
    state: Mutex<StopState>,
    reader: Mutex<Option<JoinHandle<()>>>,
    timeout: Duration,
}

impl Session {
    /// Authenticates on `stream` with the hex `secret` (and the injection's `attach_nonce`, empty
    /// for `run`) and starts the reader thread. Returns once the agent said `ready`.
    pub fn connect<S: Stream>(stream: S, secret: &str, attach_nonce: &str) -> Result<Session, SessionError> {
        Session::connect_with(stream, secret, &Handshake { attach_nonce, ..Handshake::default() })
    }

    /// [`connect`](Self::connect) with every handshake option: a TLS channel binding
    /// (`docs/transports.md` §4) and a deadline shared with earlier steps (a TLS handshake).
    pub fn connect_with<S: Stream>(
        stream: S,
        secret: &str,
        options: &Handshake<'_>,
    ) -> Result<Session, SessionError> {
        let secret = Secret::from_hex(secret)?;
        let mut stream: Box<dyn Stream> = Box::new(stream);
        let (handshake, challenge) = ControllerHandshake::start(secret, options.attach_nonce)?;
        let mut handshake = match options.channel_binding {
            Some(fingerprint) => handshake.bind_channel(fingerprint)?,
            None => handshake,
        };
        let mut decoder = FrameDecoder::new(HANDSHAKE_MAX_FRAME);
        let deadline = options.deadline.unwrap_or_else(|| Instant::now() + HANDSHAKE_TIMEOUT);
        stream.write_all(&challenge)?;
        stream.flush()?;
        let mut sealer = None;
        // What the agent said about a delay, for the error if the handshake then fails.
        let mut notice = None;
        let ready = loop {
            let payload = match read_frame(&mut *stream, &mut decoder, deadline) {
                Ok(payload) => payload,
                Err(e) => {
                    return Err(match notice {
                        Some(notice) => SessionError::Delayed { notice, source: Box::new(e) },
                        None => e,
                    })
                }
            };
            match handshake.receive(&payload)? {
                Step::Send(frame) => {
                    stream.write_all(&frame)?;
                    stream.flush()?;
                }
                Step::Notice(text) => notice = Some(text),
                Step::Accept { frame, keys } => {
                    stream.write_all(&frame)?;
                    stream.flush()?;
                    decoder.authenticate(&keys.agent_to_controller);
                    sealer = Some(FrameSealer::new(&keys.controller_to_agent));
                }
                Step::Ready(ready) => break *ready,
            }
            decoder.set_max_frame(handshake.max_frame());
        };
        // `Ready` comes only after `Accept`.
        let sealer = sealer.ok_or(HandshakeError::Unexpected("ready before accept".into()))?;
        stream.set_read_timeout(None)?;
        decoder.set_max_frame(MAX_FRAME);

        let reader_stream = stream.try_clone_stream()?;
        let closer = stream.try_clone_stream()?;
        let shared = Arc::new(Shared {
            writer: Mutex::new(Writer { stream, sealer }),
            closer: Mutex::new(closer),
            pending: Mutex::new(Pending::default()),
            queued: Mutex::new(QueueUse::default()),
            next_id: AtomicU64::new(1),
        });
        let (tx, rx) = mpsc::channel();
        let reader = {
            let shared = Arc::clone(&shared);
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("pymri-session".into())
                .spawn(move || reader_main(reader_stream, decoder, shared, tx))?
        };
        Ok(Session {
            shared,
            events: Mutex::new(rx),
            notices: tx,
            ready,
            state: Mutex::new(StopState::default()),
            reader: Mutex::new(Some(reader)),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The agent's `ready` body: interpreter, pid, mode, main thread.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// Sends a request and waits (at most the default timeout) for its answer.
    pub fn request<R: Request>(&self, request: &R) -> Result<R::Body, SessionError> {
        self.request_with_timeout(request, Some(self.timeout))
    }

    /// Sends a request and waits for its answer, at most `timeout` (`None`: until it comes, the
    /// session ends, or a [`Waker`] cancels it).
    pub fn request_with_timeout<R: Request>(
        &self,
        request: &R,
        timeout: Option<Duration>,
    ) -> Result<R::Body, SessionError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let message = request.to_message(id);
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut pending = lock(&self.shared.pending);
            if let Some(reason) = &pending.closed {
                return Err(SessionError::Closed(reason.clone()));
            }
            pending.waiting.insert(id, tx);
        }
        let written = {
            let mut writer = lock(&self.shared.writer);
            match writer.sealer.seal(&message, MAX_FRAME) {
                Ok(frame) => writer.stream.write_all(&frame).and_then(|()| writer.stream.flush()),
                Err(e) => {
                    drop(writer);
                    lock(&self.shared.pending).waiting.remove(&id);
                    return Err(e.into());
                }
            }
        };
        if let Err(e) = written {
            lock(&self.shared.pending).waiting.remove(&id);
            let reason = format!("writing to the agent failed: {e}");
            self.shared.close_all(&reason);
            return Err(SessionError::Closed(reason));
        }
        let reply = match timeout {
            Some(t) => rx.recv_timeout(t).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => None,
                mpsc::RecvTimeoutError::Disconnected => Some(()),
            }),
            None => rx.recv().map_err(|_| Some(())),
        };
        let cmd = R::COMMAND;
        match reply {
            Ok(Reply::Response(Ok(body))) => {
                serde_json::from_value(body).map_err(|e| SessionError::BadBody { cmd, detail: e.to_string() })
            }
            Ok(Reply::Response(Err(source))) => Err(SessionError::Agent { cmd, source }),
            Ok(Reply::Closed(reason)) => Err(SessionError::Closed(reason)),
            Ok(Reply::Cancelled) => Err(SessionError::Interrupted { cmd }),
            Err(None) => {
                lock(&self.shared.pending).waiting.remove(&id);
                Err(SessionError::Timeout { cmd, timeout: timeout.unwrap_or_default() })
            }
            Err(Some(())) => Err(SessionError::Interrupted { cmd }),
        }
    }

    /// The next event (or wake-up, or the end of the stream), waiting at most `timeout`
    /// (`None`: as long as it takes). `None` when the time ran out. The [`StopState`] is
    /// updated before the event is returned.
    pub fn next_event(&self, timeout: Option<Duration>) -> Option<SessionEvent> {
        let event = {
            let rx = lock(&self.events);
            match timeout {
                Some(t) => rx.recv_timeout(t).ok()?,
                None => rx.recv().ok()?,
            }
        };
        Some(self.deliver(event))
    }

    /// The next event if one is queued, without waiting.
    pub fn try_event(&self) -> Option<SessionEvent> {
        let event = lock(&self.events).try_recv().ok()?;
        Some(self.deliver(event))
    }

    /// Updates the stop state with what the consumer is about to see.
    fn deliver(&self, queued: Queued) -> SessionEvent {
        let Queued { event, bytes } = queued;
        if matches!(event, SessionEvent::Event(_)) {
            let mut used = lock(&self.shared.queued);
            used.events = used.events.saturating_sub(1);
            used.bytes = used.bytes.saturating_sub(bytes);
        }
        match &event {
            SessionEvent::Event(event) => lock(&self.state).apply(event),
            SessionEvent::Woken => {}
            SessionEvent::Closed(_) => lock(&self.state)
                .apply(&Event::Detached(pymri_protocol::messages::Detached { reason: "closed".into() })),
        }
        event
    }

    /// The stop state as the consumer has seen it.
    pub fn state(&self) -> MutexGuard<'_, StopState> {
        lock(&self.state)
    }

    pub fn waker(&self) -> Waker {
        Waker { notices: self.notices.clone(), shared: Arc::clone(&self.shared) }
    }

    /// Whether the stream has ended (the reader saw its end or an error).
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.pending).closed.is_some()
    }

    /// Closes the stream (the agent detaches, §7) and waits for the reader thread.
    pub fn close(&self) {
        let _ = lock(&self.shared.closer).shutdown();
        self.shared.close_all("closed by pymri");
        if let Some(reader) = lock(&self.reader).take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads until `decoder` yields a frame, failing at `deadline`.
fn read_frame(
    stream: &mut dyn Stream,
    decoder: &mut FrameDecoder,
    deadline: Instant,
) -> Result<Vec<u8>, SessionError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(payload) = decoder.next_frame()? {
            return Ok(payload);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SessionError::HandshakeTimeout(HANDSHAKE_TIMEOUT));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(SessionError::ClosedDuringHandshake),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(SessionError::HandshakeTimeout(HANDSHAKE_TIMEOUT))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(SessionError::ClosedDuringHandshake)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn reader_main(
    mut stream: Box<dyn Stream>,
    mut decoder: FrameDecoder,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Queued>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // Why the agent said it let go, if it did: the best account of the end of the stream.
    let mut detached: Option<String> = None;
    let reason = 'outer: loop {
        loop {
            let payload = match decoder.next_frame() {
                Ok(Some(payload)) => payload,
                Ok(None) => break,
                Err(e) => break 'outer format!("the agent sent a malformed frame: {e}"),
            };
            let obj = match pymri_protocol::frame::decode_object(&payload) {
                Ok(obj) => obj,
                Err(e) => break 'outer format!("the agent sent a malformed frame: {e}"),
            };
            match Incoming::from_object(obj) {
                Ok(Incoming::Response(r)) => {
                    if let Some(tx) = lock(&shared.pending).waiting.remove(&r.id) {
                        let _ = tx.try_send(Reply::Response(r.result));
                    }
                }
                Ok(Incoming::Event(event)) => {
                    if let Event::Detached(d) = &event {
                        detached = Some(d.reason.clone());
                    }
                    let bytes = payload.len();
                    {
                        let mut used = lock(&shared.queued);
                        if used.events >= MAX_QUEUED_EVENTS || used.bytes + bytes > MAX_QUEUED_BYTES {
                            break 'outer format!(
                                "the agent sent more events than pymri can hold ({} events, {} MiB \
                                 waiting): it is misbehaving, so the session was closed",
                                used.events,
                                used.bytes / (1024 * 1024)
                            );
                        }
                        used.events += 1;
                        used.bytes += bytes;
                    }
                    let _ = tx.send(Queued { event: SessionEvent::Event(event), bytes });
                }
                Err(e) => break 'outer format!("the agent sent a malformed message: {e}"),
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => match &detached {
                Some(why) => break format!("the agent detached: {why}"),
                None => break "the agent closed the connection".to_string(),
            },
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break format!("reading from the agent failed: {e}"),
        }
    };
    // A protocol error from the agent: close the stream, as §2 advises.
    let _ = stream.shutdown();
    shared.close_all(&reason);
    let _ = tx.send(Queued { event: SessionEvent::Closed(reason), bytes: 0 });
}

#[cfg(test)]
mod tests;
