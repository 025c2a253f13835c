//! A test double of the agent's side of `docs/protocol.md` §3 and `docs/transports.md` §4:
//! it answers the challenge (over TLS, with the fingerprint of the certificate it received),
//! checks the controller's proof, says `ready`, then answers `info` and `evaluate` requests.
#![allow(dead_code)]

use pymri_protocol::handshake::{agent_proof_for, controller_proof_for, ProofInput, Secret};
use pymri_protocol::{encode_frame, FrameDecoder, FrameSealer, SessionKeys, MAX_FRAME};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use serde_json::{json, Map, Value};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

pub const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const OTHER_SECRET: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// What the agent puts into its proof as the channel binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The SHA-256 of the certificate received (what a real agent does over TLS).
    Received,
    /// No binding line (a plain agent, or one that ignores §4).
    Omitted,
    /// Another certificate's fingerprint (what an agent behind a machine in the middle computes).
    Forged,
}

pub struct Agent {
    stream: Box<dyn ReadWrite>,
    decoder: FrameDecoder,
    /// Once authenticated: the tags of what it sends (protocol §3.1).
    sealer: Option<FrameSealer>,
    /// The fingerprint of the certificate the controller presented, over TLS.
    pub fingerprint: Option<String>,
}

pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Accepts any certificate: the agent trusts the channel binding instead (§4).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Runs the TLS client side over `tcp` (the agent is always the TLS client); the stream and
/// the fingerprint of the certificate received.
pub fn tls_client(tcp: TcpStream) -> io::Result<(StreamOwned<ClientConnection, TcpStream>, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("pymri").map_err(io::Error::other)?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    let der = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| io::Error::other("no certificate"))?;
    let fingerprint = pymri_transport::tls::fingerprint(der.as_ref());
    Ok((stream, fingerprint))
}

impl Agent {
    pub fn plain(stream: impl ReadWrite + 'static) -> Agent {
        Agent {
            stream: Box::new(stream),
            decoder: FrameDecoder::new(MAX_FRAME),
            sealer: None,
            fingerprint: None,
        }
    }

    /// TLS over `tcp`, whoever opened it.
    pub fn tls(tcp: TcpStream) -> io::Result<Agent> {
        let (stream, fingerprint) = tls_client(tcp)?;
        Ok(Agent {
            stream: Box::new(stream),
            decoder: FrameDecoder::new(MAX_FRAME),
            sealer: None,
            fingerprint: Some(fingerprint),
        })
    }

    pub fn recv(&mut self) -> io::Result<Map<String, Value>> {
        let mut buf = [0u8; 16384];
        loop {
            if let Some(obj) = self.decoder.next_object().map_err(io::Error::other)? {
                return Ok(obj);
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.decoder.push(&buf[..n]);
        }
    }

    pub fn send(&mut self, v: &Value) -> io::Result<()> {
        let frame = match &mut self.sealer {
            Some(sealer) => sealer.seal(v, MAX_FRAME),
            None => encode_frame(v, MAX_FRAME),
        };
        self.stream.write_all(&frame.map_err(io::Error::other)?)?;
        self.stream.flush()
    }

    /// The agent's side of the handshake. `Err` when the controller refused us (closed the
    /// connection instead of accepting).
    pub fn handshake(&mut self, secret: &str, binding: Binding) -> io::Result<()> {
        let challenge = self.recv()?;
        assert_eq!(challenge["kind"], "challenge");
        let cn = challenge["nonce"].as_str().expect("nonce").to_string();
        let an = "5a".repeat(32);
        let key = Secret::from_hex(secret).expect("secret");
        let forged = "0f".repeat(32);
        let received = self.fingerprint.clone();
        let channel_binding = match binding {
            Binding::Received => received.as_deref(),
            Binding::Omitted => None,
            Binding::Forged => Some(forged.as_str()),
        };
        let input = ProofInput { controller_nonce: &cn, agent_nonce: &an, attach_nonce: "", channel_binding };
        let proof = agent_proof_for(&key, &input).expect("proof");
        self.send(&json!({"kind": "proof", "protocol": 2, "nonce": an, "proof": proof}))?;
        let accept = self.recv()?;
        assert_eq!(accept["kind"], "accept");
        if accept["proof"] != controller_proof_for(&key, &input).expect("proof") {
            return Err(io::Error::other("the controller's proof is wrong"));
        }
        let keys = SessionKeys::derive(key.bytes(), &cn, &an).map_err(io::Error::other)?;
        self.decoder.authenticate(&keys.controller_to_agent);
        self.sealer = Some(FrameSealer::new(&keys.agent_to_controller));
        self.send(&json!({"kind": "event", "event": "ready", "body": ready_body()}))
    }

    /// Answers requests until the controller closes the connection: `info` with the ready
    /// body, `evaluate` with its expression as the result, `detach` with `{}` then `detached`.
    pub fn serve(&mut self) -> io::Result<()> {
        loop {
            let request = match self.recv() {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            let id = request["id"].clone();
            let body = match request["cmd"].as_str() {
                Some("info") => ready_body(),
                Some("evaluate") => {
                    json!({"output": "", "result": request["args"]["expression"], "type": "str"})
                }
                Some("detach") => {
                    self.send(&json!({"kind": "response", "id": id, "ok": true, "body": {}}))?;
                    return self
                        .send(&json!({"kind": "event", "event": "detached", "body": {"reason": "request"}}));
                }
                other => {
                    let error = json!({"code": "unknown_command", "message": format!("{other:?}")});
                    self.send(&json!({"kind": "response", "id": id, "ok": false, "error": error}))?;
                    continue;
                }
            };
            self.send(&json!({"kind": "response", "id": id, "ok": true, "body": body}))?;
        }
    }
}

pub fn ready_body() -> Value {
    json!({
        "protocol": 2, "agent_version": "0.1.0", "pid": 4242, "mode": "attach",
        "python": {"version": "3.13.1", "version_info": [3, 13, 1], "implementation": "cpython",
                   "executable": "/usr/bin/python3.13", "debug_build": false},
        "main_thread": 100, "cwd": "/", "argv": ["app.py"], "backend": "monitoring", "tool_id": 0,
        "all_threads": true
    })
}

/// A TCP connection to `to` from the loopback address `from` (127.x.y.z), so that tests can
/// play several peers (the lockout counts per source address).
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    // SAFETY: plain socket calls on a descriptor we own; the sockaddr structures are valid for
    // the sizes given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
            sin_zero: [0; 8],
        };
        let local = sockaddr(from, 0);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let SocketAddr::V4(to) = to else { return Err(io::Error::other("IPv4 only")) };
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from(owned);
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(stream)
    }
}
