//! Connecting to an agent that listens (`pymri connect`, `pymri web --connect`, the DAP
//! `attach` with `connect`): the address's transport, then the authenticated handshake.

use crate::address::{Address, Host};
use crate::error::{classify, TransportError};
use crate::fifo::{self, FifoError};
use crate::lockout::HANDSHAKE_TIMEOUT;
use crate::secret::SharedSecret;
use crate::tls::{self, TlsIdentity};
use pymri_session::{Handshake, Session, Stream};
use std::io;
use std::net::{IpAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long reaching the address may take (TCP connect, a FIFO's reader), before the
/// handshake's own [`HANDSHAKE_TIMEOUT`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the agent listening at `address` and authenticates with `secret`.
pub fn connect(address: &Address, secret: &SharedSecret) -> Result<Session, TransportError> {
    Connector::new(secret).connect(address)
}

/// [`connect`] with its options.
#[derive(Debug, Clone)]
pub struct Connector<'a> {
    pub secret: &'a SharedSecret,
    /// The agent's attach nonce, if it was given one (protocol §3); usually empty.
    pub attach_nonce: &'a str,
    pub connect_timeout: Duration,
}

impl<'a> Connector<'a> {
    pub fn new(secret: &'a SharedSecret) -> Connector<'a> {
        Connector { secret, attach_nonce: "", connect_timeout: CONNECT_TIMEOUT }
    }

    pub fn connect(&self, address: &Address) -> Result<Session, TransportError> {
        let shown = address.to_string();
        match address {
            Address::Tcp { host, port } => {
                let tcp = tcp_connect(&shown, host, *port, self.connect_timeout)?;
                self.handshake(&shown, tcp, None, Instant::now() + HANDSHAKE_TIMEOUT)
            }
            Address::Tls { host, port } => {
                let tcp = tcp_connect(&shown, host, *port, self.connect_timeout)?;
                let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
                let identity = TlsIdentity::generate()
                    .map_err(|source| TransportError::Tls { address: shown.clone(), source })?;
                let stream = tls::accept(tcp, &identity, deadline)
                    .map_err(|source| TransportError::Tls { address: shown.clone(), source })?;
                self.handshake(&shown, stream, Some(identity.fingerprint()), deadline)
            }
            Address::Unix(path) => {
                let stream = UnixStream::connect(path).map_err(|e| unix_error(&shown, e))?;
                self.handshake(&shown, stream, None, Instant::now() + HANDSHAKE_TIMEOUT)
            }
            Address::Fifo(dir) => {
                let stream = fifo::connect(dir, Instant::now() + self.connect_timeout)
                    .map_err(|e| fifo_error(&shown, e))?;
                self.handshake(&shown, stream, None, Instant::now() + HANDSHAKE_TIMEOUT)
            }
            Address::Fd(_) => Err(TransportError::Unsupported {
                address: shown,
                why: "fd: addresses are for launchers that hand a connected socket to the agent",
            }),
        }
    }

    /// The session's handshake over a connected `stream` (also the listener's, for agents that
    /// connect to it).
    pub(crate) fn handshake<S: Stream>(
        &self,
        shown: &str,
        stream: S,
        channel_binding: Option<&str>,
        deadline: Instant,
    ) -> Result<Session, TransportError> {
        let options =
            Handshake { attach_nonce: self.attach_nonce, channel_binding, deadline: Some(deadline) };
        Session::connect_with(stream, self.secret.hex(), &options).map_err(|e| classify(shown, e))
    }
}

fn tcp_connect(shown: &str, host: &Host, port: u16, timeout: Duration) -> Result<TcpStream, TransportError> {
    let unreachable = |reason: String, hint: &str| TransportError::Unreachable {
        address: shown.to_string(),
        reason,
        hint: hint.to_string(),
    };
    if port == 0 {
        return Err(unreachable("port 0 is not a port one connects to".into(), "give the agent's port"));
    }
    let addrs = host
        .socket_addrs(port)
        .map_err(|e| unreachable(format!("cannot resolve {host}: {e}"), "check the host name"))?;
    let deadline = Instant::now() + timeout;
    let mut last: Option<io::Error> = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    let listen_hint = |host: &Host| {
        let agent_side = match host {
            Host::Ip(ip) if ip.is_loopback() => format!("tcp:{host}:{port}"),
            Host::Ip(IpAddr::V6(_)) => format!("tcp:[::]:{port}"),
            _ => format!("tcp:0.0.0.0:{port}"),
        };
        format!(
            "is the agent listening? Start the program with `python -m pymri_agent --listen {agent_side} app.py`, \
             or call pymri_agent.listen() in it"
        )
    };
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            unreachable("connection refused".into(), &listen_hint(host))
        }
        Some(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => unreachable(
            format!("no answer within {}s", timeout.as_secs()),
            "a firewall may drop the connection, or the host is down",
        ),
        Some(e) => unreachable(e.to_string(), &listen_hint(host)),
        None => unreachable(format!("{host} has no address"), "check the host name"),
    })
}

fn unix_error(shown: &str, e: io::Error) -> TransportError {
    let (reason, hint) = match e.kind() {
        io::ErrorKind::NotFound => (
            "no such socket".to_string(),
            "the agent creates the socket when it listens: `python -m pymri_agent --listen unix:PATH app.py`",
        ),
        io::ErrorKind::ConnectionRefused => (
            "nothing listens on this socket".to_string(),
            "the socket file is left over from an agent that is gone; start the program again",
        ),
        io::ErrorKind::PermissionDenied => (
            "permission denied".to_string(),
            "the agent's socket is private to the user that runs the program (mode 0600): connect as that user",
        ),
        _ => (e.to_string(), "check the path"),
    };
    TransportError::Unreachable { address: shown.to_string(), reason, hint: hint.to_string() }
}

fn fifo_error(shown: &str, e: FifoError) -> TransportError {
    let hint = if e.is_not_found() || matches!(e, FifoError::NotAFifo { .. }) {
        "the agent creates DIR/to-agent and DIR/from-agent when it listens: `python -m pymri_agent --listen fifo:DIR app.py`"
    } else if matches!(e, FifoError::NoReader { .. }) {
        "the FIFOs exist but no agent reads them: the program is not running, or is serving another session"
    } else {
        "check the directory"
    };
    TransportError::Unreachable { address: shown.to_string(), reason: e.to_string(), hint: hint.to_string() }
}
