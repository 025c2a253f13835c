//! `pymri listen`: wait for an agent to connect (the reverse connection of
//! `docs/transports.md` §2), on TCP, optionally with TLS.
//!
//! [`Listener::bind`] only binds, so the caller can check the address before any secret is
//! made (§3: a non-loopback address needs one given explicitly). [`Listener::start`] starts
//! the accept thread; [`Serving::accept`] returns the first authenticated session.
//!
//! One session at a time (§2), and the lockout of §5:
//!
//! - Each connection is authenticated in its own thread, at most [`MAX_HANDSHAKES`] at once,
//!   each within [`HANDSHAKE_TIMEOUT`] (the TLS handshake included).
//! - A failed handshake (a wrong proof, a malformed or oversized frame, a timeout, a TLS error,
//!   a peer that closes early) counts against the peer's IP address ([`Lockout`]). A locked-out
//!   peer's connections are closed at once, unread. Loopback addresses are one peer, every
//!   local user: never locked out, their handshakes are delayed instead (a lockout would let
//!   any local user shut the others out).
//! - Once a session is handed out, every new connection is closed at once, unread: the live
//!   session never shares anything with them but the accept thread.
//!
//! "Closed at once" is a reset (`SO_LINGER` 0): nothing is read, nothing is left in
//! `TIME_WAIT` on our side for a flood to fill.

use crate::address::{Address, Host};
use crate::client::Connector;
use crate::error::{classify, TransportError};
use crate::lockout::{Lockout, Verdict, HANDSHAKE_TIMEOUT, LOCKOUT, MAX_FAILURES, MAX_HANDSHAKES};
use crate::secret::SharedSecret;
use crate::tls::{self, TlsIdentity};
use pymri_session::{Session, SessionError};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A bound TCP port, not accepting yet.
pub struct Listener {
    socket: TcpListener,
    address: Address,
    tls: bool,
    handshake_timeout: Duration,
}

/// A session an agent opened.
pub struct Accepted {
    pub session: Session,
    pub peer: SocketAddr,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted").field("peer", &self.peer).finish_non_exhaustive()
    }
}

/// What happened to connections so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted by the kernel and looked at.
    pub connections: u64,
    /// Handshakes that failed.
    pub failed: u64,
    /// Closed at once: a session was live.
    pub refused_live: u64,
    /// Closed at once: the peer was locked out.
    pub refused_locked: u64,
    /// Closed at once: [`MAX_HANDSHAKES`] were in progress.
    pub refused_busy: u64,
}

impl Listener {
    /// Binds `address` (`tcp:` or `tls:`; `tls` forces TLS on a `tcp:` one).
    pub fn bind(address: &Address, tls: bool) -> Result<Listener, TransportError> {
        let shown = address.to_string();
        let (host, port, tls) = match address {
            Address::Tcp { host, port } => (host, *port, tls),
            Address::Tls { host, port } => (host, *port, true),
            _ => {
                return Err(TransportError::Unsupported {
                    address: shown,
                    why: "pymri listens on TCP only ([ADDR:]PORT); agents listen on Unix sockets and FIFOs",
                })
            }
        };
        let listen_err = |source| TransportError::Listen { address: shown.clone(), source };
        let addrs = host.socket_addrs(port).map_err(listen_err)?;
        let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "the name has no address");
        for addr in addrs {
            match TcpListener::bind(addr) {
                Ok(socket) => {
                    socket.set_nonblocking(true).map_err(listen_err)?;
                    let host = Host::Ip(addr.ip());
                    let port = socket.local_addr().map_err(listen_err)?.port();
                    let address = if tls { Address::Tls { host, port } } else { Address::Tcp { host, port } };
                    return Ok(Listener { socket, address, tls, handshake_timeout: HANDSHAKE_TIMEOUT });
                }
                Err(e) => last = e,
            }
        }
        Err(listen_err(last))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The address bound, with its real port (`tcp:` or `tls:`).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Changes the time a handshake may take ([`HANDSHAKE_TIMEOUT`] by default): for tests.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Listener {
        self.handshake_timeout = timeout;
        self
    }

    /// Whether only this machine can connect (a loopback address).
    pub fn is_loopback(&self) -> bool {
        self.local_addr().is_ok_and(|a| a.ip().to_canonical().is_loopback())
    }

    /// Starts accepting, authenticating agents with `secret`. `log` is told about refused
    /// connections until a session starts (never after: the live session owns the terminal).
    pub fn start(
        self,
        secret: SharedSecret,
        log: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Serving, TransportError> {
        let shown = self.address.to_string();
        let identity = match self.tls {
            true => Some(
                TlsIdentity::generate()
                    .map_err(|source| TransportError::Tls { address: shown.clone(), source })?,
            ),
            false => None,
        };
        let (wake_tx, wake_rx) =
            UnixStream::pair().map_err(|source| TransportError::Listen { address: shown.clone(), source })?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lockout: Lockout::new(),
                in_progress: 0,
                live: false,
                closed: false,
                stats: Stats::default(),
            }),
            secret,
            handshake_timeout: self.handshake_timeout,
            identity,
            log,
            sessions: Mutex::new(tx),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let socket = self.socket;
            std::thread::Builder::new()
                .name("pymri-listen".into())
                .spawn(move || accept_loop(socket, wake_rx, shared))
                .map_err(|source| TransportError::Listen { address: shown, source })?
        };
        Ok(Serving {
            shared,
            sessions: Mutex::new(rx),
            wake: wake_tx,
            thread: Some(thread),
            address: self.address,
        })
    }
}

struct State {
    lockout: Lockout<IpAddr>,
    in_progress: usize,
    live: bool,
    closed: bool,
    stats: Stats,
}

struct Shared {
    state: Mutex<State>,
    secret: SharedSecret,
    handshake_timeout: Duration,
    identity: Option<TlsIdentity>,
    log: Box<dyn Fn(&str) + Send + Sync>,
    sessions: Mutex<mpsc::Sender<Accepted>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listener accepting agents; stops (and joins its thread) when dropped.
pub struct Serving {
    shared: Arc<Shared>,
    sessions: Mutex<mpsc::Receiver<Accepted>>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
    address: Address,
}

impl Serving {
    /// Waits for an agent to authenticate, at most `timeout` (`None`: as long as it takes).
    /// `None` when the time ran out. After a session was handed out, every later connection is
    /// closed at once.
    pub fn accept(&self, timeout: Option<Duration>) -> Option<Accepted> {
        let rx = lock(&self.sessions);
        match timeout {
            Some(t) => rx.recv_timeout(t).ok(),
            None => rx.recv().ok(),
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The TLS certificate's fingerprint (the channel binding), with TLS.
    pub fn fingerprint(&self) -> Option<&str> {
        self.shared.identity.as_ref().map(|i| i.fingerprint())
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.state).stats
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        let _ = (&self.wake).write_all(b"x");
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(socket: TcpListener, mut wake: UnixStream, shared: Arc<Shared>) {
    loop {
        let mut fds = [
            libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: `fds` is a valid array of two pollfd structures for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            let _ = wake.read(&mut [0u8; 1]);
            return;
        }
        match socket.accept() {
            Ok((tcp, peer)) => admit(&shared, tcp, peer),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            // Out of descriptors or memory: give the system a moment instead of spinning; the
            // connection stays in the backlog.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Closes a connection at once, unread: a reset, nothing left in TIME_WAIT.
fn close_now(tcp: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt with a valid descriptor and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(tcp);
}

/// The lockout's key for `peer`: its address, or one key for every loopback address (any
/// local user can connect from any of them).
fn peer_key(peer: &SocketAddr) -> IpAddr {
    let ip = peer.ip().to_canonical();
    if ip.is_loopback() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}

fn admit(shared: &Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let ip = peer_key(&peer);
    let hold;
    {
        let mut state = lock(&shared.state);
        state.stats.connections += 1;
        let refused = if state.closed || state.live {
            Some(&mut state.stats.refused_live)
        } else if state.lockout.is_locked(&ip, Instant::now()) {
            Some(&mut state.stats.refused_locked)
        } else if state.in_progress >= MAX_HANDSHAKES {
            Some(&mut state.stats.refused_busy)
        } else {
            None
        };
        if let Some(counter) = refused {
            *counter += 1;
            drop(state);
            close_now(tcp);
            return;
        }
        state.in_progress += 1;
        hold = state.lockout.delayed_until(&ip, Instant::now());
    }
    let worker = {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("pymri-handshake".into())
            .spawn(move || handshake(shared, tcp, peer, hold))
    };
    if worker.is_err() {
        lock(&shared.state).in_progress -= 1;
    }
}

fn handshake(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, hold: Option<Instant>) {
    if let Some(until) = hold {
        // The delay of a shared peer after failures, in this connection's own thread.
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
    let deadline = Instant::now() + shared.handshake_timeout;
    let result = establish(&shared, tcp, peer, deadline);
    let ip = peer_key(&peer);
    let mut state = lock(&shared.state);
    state.in_progress -= 1;
    match result {
        Ok(session) => {
            if state.live || state.closed {
                drop(state);
                // Another agent was first: one session at a time.
                drop(session);
                return;
            }
            state.live = true;
            drop(state);
            let _ = lock(&shared.sessions).send(Accepted { session, peer });
        }
        Err(e) => {
            state.stats.failed += 1;
            let now = Instant::now();
            let mut delay = None;
            let verdict = if ip.is_loopback() {
                state.lockout.record_shared_failure(&ip, now);
                delay = state.lockout.delayed_until(&ip, now).map(|until| until - now);
                Verdict::Counted
            } else {
                state.lockout.record_failure(&ip, now)
            };
            let quiet = state.live || state.closed;
            drop(state);
            if !quiet {
                (shared.log)(&format!("pymri listen: refused a connection from {peer}: {}", first_line(&e)));
                if let Some(delay) = delay {
                    (shared.log)(&format!(
                        "pymri listen: handshakes from local users keep failing; the next ones are delayed by \
                         {} ms",
                        delay.as_millis()
                    ));
                }
                if let Verdict::LockedOut(_) = verdict {
                    (shared.log)(&format!(
                        "pymri listen: {ip} failed {MAX_FAILURES} handshakes within a minute; its connections are \
                         closed unread for {} s",
                        LOCKOUT.as_secs()
                    ));
                }
            }
        }
    }
}

fn first_line(e: &TransportError) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().to_string()
}

fn establish(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<Session, TransportError> {
    let shown = peer.to_string();
    tcp.set_nodelay(true).map_err(|e| classify(&shown, SessionError::Io(e)))?;
    tcp.set_nonblocking(false).map_err(|e| classify(&shown, SessionError::Io(e)))?;
    let connector = Connector::new(&shared.secret);
    match &shared.identity {
        Some(identity) => {
            let stream = tls::accept(tcp, identity, deadline)
                .map_err(|source| TransportError::Tls { address: shown.clone(), source })?;
            connector.handshake(&shown, stream, Some(identity.fingerprint()), deadline)
        }
        None => connector.handshake(&shown, tcp, None, deadline),
    }
}
