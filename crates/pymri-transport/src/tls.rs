//! TLS for `tls:` addresses and `--tls` (`docs/transports.md` §4).
//!
//! pymri is always the TLS **server**, whoever opened the TCP connection: it presents an
//! ephemeral self-signed certificate ([`TlsIdentity`], made with `rcgen`, kept in memory only)
//! and the agent (Python's `ssl`, TLS 1.2+) verifies it against no authority. Instead, the
//! session's handshake is bound to the channel: both HMAC proofs cover the SHA-256 of the
//! certificate ([`TlsIdentity::fingerprint`]), which the agent computes from the certificate
//! it received. A machine in the middle that terminates TLS shows the agent its own
//! certificate, so neither proof verifies.
//!
//! [`accept`] runs the TLS handshake within a deadline, then hands the connection to a
//! [`pump`](crate::pump) thread: the session gets a plain Unix socket carrying the decrypted
//! stream.

use crate::pump::{self, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a TLS agent may take to send its ClientHello. A TLS client speaks first, at once,
/// while a plain agent waits in silence for the controller's challenge: without this limit,
/// `tls:` meeting a plain agent (or `listen --tls` a plain one connecting out) waits out the
/// whole handshake deadline with neither side sending anything.
pub const FIRST_RECORD_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("making the session's TLS certificate: {0}")]
    Certificate(String),
    #[error("the TLS handshake did not complete in time")]
    Timeout,
    #[error("the peer closed the connection during the TLS handshake")]
    Closed,
    /// Nothing arrived within [`FIRST_RECORD_TIMEOUT`]: the peer waits for a plain challenge.
    #[error(
        "the peer sent nothing in {} s, where an agent that speaks TLS starts the handshake at once: \
         it speaks plain TCP",
        FIRST_RECORD_TIMEOUT.as_secs()
    )]
    Silent,
    #[error("TLS handshake: {0}")]
    Protocol(#[from] rustls::Error),
    #[error("TLS handshake: {0}")]
    Io(#[from] io::Error),
}

/// The certificate and key pymri presents for one run, and its fingerprint.
pub struct TlsIdentity {
    config: Arc<ServerConfig>,
    certificate: Vec<u8>,
    fingerprint: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A fresh key pair (ECDSA P-256) and a self-signed certificate for it.
    pub fn generate() -> Result<TlsIdentity, TlsError> {
        let certified = rcgen::generate_simple_self_signed(vec!["pymri".to_string()])
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let certificate = certified.cert.der().to_vec();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Certificate(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(certificate.clone())], key)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        // Every certificate lives for one run: resumption would only add state.
        config.send_tls13_tickets = 0;
        let fingerprint = fingerprint(&certificate);
        Ok(TlsIdentity { config: Arc::new(config), certificate, fingerprint })
    }

    /// Lowercase hex SHA-256 of the DER certificate: the handshake's channel binding.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The DER certificate presented to agents.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }
}

/// Lowercase hex SHA-256 of `der` (what the agent computes from
/// `getpeercert(binary_form=True)`).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the server side of a TLS handshake on `tcp`, finishing by `deadline`; returns the
/// session's end of the decrypted stream.
pub fn accept(mut tcp: TcpStream, identity: &TlsIdentity, deadline: Instant) -> Result<UnixStream, TlsError> {
    let mut conn = ServerConnection::new(Arc::clone(&identity.config))?;
    wait_first_record(&tcp, deadline)?;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TlsError::Timeout);
        }
        if conn.wants_write() {
            tcp.set_write_timeout(Some(left))?;
            conn.write_tls(&mut tcp).map_err(timeout)?;
            continue;
        }
        tcp.set_read_timeout(Some(left))?;
        match conn.read_tls(&mut tcp) {
            Ok(0) => return Err(TlsError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(timeout(e)),
        }
        if let Err(e) = conn.process_new_packets() {
            // Tell the peer why (a TLS alert), as far as it listens.
            let _ = conn.write_tls(&mut tcp);
            return Err(e.into());
        }
    }
    tcp.set_read_timeout(None)?;
    tcp.set_write_timeout(None)?;
    tcp.set_nonblocking(true)?;
    // The pump only takes more from the session once everything before was sent, so what
    // rustls buffers is bounded by one read.
    conn.set_buffer_limit(None);
    Ok(pump::spawn(Tls { conn, tcp, eof: false, finished: false }, "pymri-tls")?)
}

/// Waits until the peer has sent something (left unread, for rustls), within
/// [`FIRST_RECORD_TIMEOUT`] and `deadline`.
fn wait_first_record(tcp: &TcpStream, deadline: Instant) -> Result<(), TlsError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TlsError::Timeout);
        }
        let silent = left > FIRST_RECORD_TIMEOUT;
        tcp.set_read_timeout(Some(left.min(FIRST_RECORD_TIMEOUT)))?;
        return match tcp.peek(&mut [0u8; 1]) {
            Ok(0) => Err(TlsError::Closed),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => match timeout(e) {
                TlsError::Timeout if silent => Err(TlsError::Silent),
                other => Err(other),
            },
        };
    }
}

fn timeout(e: io::Error) -> TlsError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TlsError::Timeout,
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => TlsError::Closed,
        _ => TlsError::Io(e),
    }
}

/// The pump's view of an established TLS connection.
struct Tls {
    conn: ServerConnection,
    tcp: TcpStream,
    /// The TCP stream ended.
    eof: bool,
    /// No more plaintext will come (close_notify, end of stream or error).
    finished: bool,
}

impl Transport for Tls {
    fn read_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
    fn write_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
    fn wants_read(&self) -> bool {
        !self.eof && !self.finished && self.conn.wants_read()
    }
    fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }
    fn read_peer(&mut self) -> io::Result<()> {
        match self.conn.read_tls(&mut self.tcp) {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if pump::would_block(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.conn.write_tls(&mut self.tcp);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }
    fn write_peer(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
    fn take_payload(&mut self, out: &mut Vec<u8>, room: usize) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        let mut left = room;
        while left > 0 && !self.finished {
            let want = left.min(buf.len());
            match self.conn.reader().read(&mut buf[..want]) {
                // A clean close_notify.
                Ok(0) => self.finished = true,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    left -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The TCP stream ended without close_notify: the end all the same (the agent's
                // process may simply have died).
                Err(_) => self.finished = true,
            }
        }
        Ok(())
    }
    fn finished(&self) -> bool {
        self.finished
    }
    fn send_payload(&mut self, data: &[u8]) -> io::Result<()> {
        self.conn.writer().write_all(data)
    }
    fn close(&mut self) {
        self.conn.send_close_notify();
    }
    fn shutdown(&mut self) {
        let _ = self.tcp.set_nonblocking(false);
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }
}
