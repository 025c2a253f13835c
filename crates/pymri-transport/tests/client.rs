//! `connect` over every transport, against the test double of the agent: a session that
//! starts, answers requests with large bodies both ways, and refuses wrong secrets and forged
//! channel bindings before any request.

mod common;

use common::{Agent, Binding, OTHER_SECRET, SECRET};
use pymri_protocol::requests::{EvalMode, Evaluate, Info};
use pymri_session::Session;
use pymri_transport::{connect, Address, SharedSecret, TransportError};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

/// The error of a connection that must fail.
fn refused(result: Result<Session, TransportError>, what: &str) -> TransportError {
    match result {
        Ok(_) => panic!("{what}: the session started"),
        Err(e) => e,
    }
}

fn secret() -> SharedSecret {
    SharedSecret::from_hex(SECRET, "test").expect("secret")
}

/// A request and a response of about 1 MiB each: more than every buffer on the way.
fn exercise(session: &Session) {
    assert_eq!(session.ready().pid, 4242);
    assert_eq!(session.request(&Info {}).expect("info").pid, 4242);
    let big = "x".repeat(1 << 20);
    let request = Evaluate { expression: big.clone(), mode: EvalMode::Eval, ..Evaluate::default() };
    let answer = session.request(&request).expect("evaluate");
    assert_eq!(answer.result.as_deref(), Some(big.as_str()));
}

/// An agent listening on TCP (plain or TLS) that serves one connection.
fn tcp_agent(
    tls: bool,
    agent_secret: &'static str,
    binding: Binding,
) -> (Address, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let agent = std::thread::spawn(move || {
        let (tcp, _) = listener.accept()?;
        let mut agent = if tls { Agent::tls(tcp)? } else { Agent::plain(tcp) };
        agent.handshake(agent_secret, binding)?;
        agent.serve()
    });
    let scheme = if tls { "tls" } else { "tcp" };
    (Address::parse(&format!("{scheme}:127.0.0.1:{port}")).expect("address"), agent)
}

#[test]
fn forward_tcp_and_tls() {
    for tls in [false, true] {
        let (address, agent) = tcp_agent(tls, SECRET, Binding::Received);
        let session = connect(&address, &secret()).expect("connect");
        exercise(&session);
        drop(session);
        agent.join().expect("agent").expect("the agent saw a clean end");
    }
}

#[test]
fn a_wrong_secret_is_refused_before_any_request() {
    for tls in [false, true] {
        let (address, agent) = tcp_agent(tls, OTHER_SECRET, Binding::Received);
        let err = refused(connect(&address, &secret()), "wrong secret");
        assert!(matches!(err, TransportError::WrongSecret { .. }), "{err}");
        assert!(err.to_string().contains("hint: use the secret file the agent reads"), "{err}");
        // The agent never got our proof: the connection was closed instead.
        assert!(agent.join().expect("agent").is_err());
    }
}

#[test]
fn a_forged_or_missing_channel_binding_is_refused() {
    // A machine in the middle terminates TLS: the agent saw another certificate.
    for binding in [Binding::Forged, Binding::Omitted] {
        let (address, agent) = tcp_agent(true, SECRET, binding);
        let err = refused(connect(&address, &secret()), "bad binding");
        assert!(matches!(err, TransportError::WrongSecret { .. }), "{binding:?}: {err}");
        assert!(agent.join().expect("agent").is_err());
    }
}

#[test]
fn plain_tcp_to_a_tls_agent_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // A TLS agent speaks first: its ClientHello is no frame of ours.
    let agent = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        let _ = common::tls_client(tcp);
    });
    let address = Address::parse(&format!("tcp:127.0.0.1:{port}")).expect("address");
    let err = refused(connect(&address, &secret()), "mismatch");
    assert!(matches!(err, TransportError::PeerSpeaksTls { .. }), "{err}");
    assert!(err.to_string().contains("speaks TLS") && err.to_string().contains("tls:HOST:PORT"), "{err}");
    assert!(err.is_authentication());
    agent.join().expect("agent");
}

fn temp_dir(tag: &str) -> PathBuf {
    let name = pymri_protocol::handshake::random_hex(8).expect("random");
    let dir = std::env::temp_dir().join(format!("pymri-{tag}-{name}"));
    std::fs::create_dir(&dir).expect("dir");
    dir
}

#[test]
fn forward_unix_socket() {
    let dir = temp_dir("unix");
    let path = dir.join("app.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let agent = std::thread::spawn(move || {
        let (sock, _) = listener.accept()?;
        let mut agent = Agent::plain(sock);
        agent.handshake(SECRET, Binding::Omitted)?;
        agent.serve()
    });
    let session = connect(&Address::Unix(path.clone()), &secret()).expect("connect");
    exercise(&session);
    drop(session);
    agent.join().expect("agent").expect("clean end");

    std::fs::remove_file(&path).expect("rm");
    let err = refused(connect(&Address::Unix(path), &secret()), "no socket");
    assert!(err.to_string().contains("no such socket"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Reads one FIFO and writes the other as one stream.
struct FifoPair(std::fs::File, std::fs::File);

impl std::io::Read for FifoPair {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for FifoPair {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

#[test]
fn forward_fifo_pair() {
    let dir = temp_dir("fifo");
    mkfifo(&dir.join("to-agent"));
    mkfifo(&dir.join("from-agent"));
    let agent = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            let input = std::fs::File::open(dir.join("to-agent"))?;
            let output = std::fs::OpenOptions::new().write(true).open(dir.join("from-agent"))?;
            let mut agent = Agent::plain(FifoPair(input, output));
            agent.handshake(SECRET, Binding::Omitted)?;
            agent.serve()
        })
    };
    let session = connect(&Address::Fifo(dir.clone()), &secret()).expect("connect");
    exercise(&session);
    drop(session);
    agent.join().expect("agent").expect("clean end");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_listening_is_told_with_a_hint() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = refused(
        connect(&Address::parse(&format!("tcp:127.0.0.1:{port}")).expect("addr"), &secret()),
        "refused",
    );
    let text = err.to_string();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains(&format!("--listen tcp:127.0.0.1:{port}")), "{text}");
    let err = refused(connect(&Address::Fd(3), &secret()), "fd");
    assert!(err.to_string().contains("launchers"), "{err}");
}
