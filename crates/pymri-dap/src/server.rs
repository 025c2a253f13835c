//! Transports: one client over a pair of byte streams (stdin/stdout, or a TCP connection), and
//! a loopback TCP listener serving clients one after the other.
//!
//! Whoever can use the adapter can run code as its user (`launch` takes any interpreter
//! command) and attach to any process that user may trace. On stdio the client is the
//! adapter's parent; on TCP it is whoever connects, so [`Server`] serves only the users it was
//! given (its own effective user and root, plus [`Server::allow_user`]): each connection's
//! owner is looked up before a byte of it is read ([`crate::peer`]).

use crate::adapter::{Adapter, Input, Log, Sink};
use crate::codec::Decoder;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

/// How the adapter reports to the person running it.
#[derive(Clone)]
pub struct Options {
    /// Diagnostics (never the protocol): the binary writes them to stderr. They quote clients
    /// and programs, so they reach it escaped ([`crate::escape::terminal_text`]).
    pub log: Log,
}

impl Options {
    fn escaped(&self) -> Options {
        let log = Arc::clone(&self.log);
        Options { log: Arc::new(move |text: &str| log(&crate::escape::terminal_text(text))) }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options { log: Arc::new(|_| {}) }
    }
}

/// Serves one client reading `reader` and writing `writer` until it disconnects or goes away.
/// A program it launched is killed by then, one it attached to is detached.
pub fn serve<R, W>(reader: R, writer: W, options: &Options)
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    serve_escaped(reader, writer, &options.escaped());
}

fn serve_escaped<R, W>(reader: R, writer: W, options: &Options)
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let reader_tx = tx.clone();
    // Not joined: a reader blocked on stdin cannot be woken; it ends with the process (or, on
    // a socket, when the caller shuts the connection down).
    let spawned = std::thread::Builder::new()
        .name("pymri-dap-client".into())
        .spawn(move || read_client(reader, reader_tx));
    if let Err(e) = spawned {
        (options.log)(&format!("pymri dap: cannot start the client reader: {e}"));
        return;
    }
    let mut adapter = Adapter::new(Sink::new(Box::new(writer)), tx, Arc::clone(&options.log));
    while !adapter.done() {
        match rx.recv() {
            Ok(input) => adapter.handle(input),
            Err(_) => break,
        }
    }
    adapter.finish();
}

/// A TCP listener for `pymri dap --listen`: one client at a time, the next one once the
/// previous disconnected; a client whose socket belongs to another user is refused.
pub struct Server {
    listener: TcpListener,
    users: Vec<u32>,
}

impl Server {
    /// Listens on a loopback address, for clients of this process's effective user and root.
    pub fn bind(addr: SocketAddr) -> io::Result<Server> {
        if !addr.ip().to_canonical().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a loopback address", addr.ip()),
            ));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let mut users = vec![me];
        if me != 0 {
            users.push(0);
        }
        Ok(Server { listener: TcpListener::bind(addr)?, users })
    }

    /// Serves `uid` too: the user who started the adapter through `sudo`.
    pub fn allow_user(&mut self, uid: u32) {
        if !self.users.contains(&uid) {
            self.users.push(uid);
        }
    }

    /// The uids whose clients are served.
    pub fn users(&self) -> &[u32] {
        &self.users
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until accepting fails.
    pub fn run(&self, options: &Options) -> io::Result<()> {
        let options = &options.escaped();
        loop {
            let (stream, peer) = self.listener.accept()?;
            if let Err(why) = self.admit(&stream, peer) {
                (options.log)(&format!("pymri dap: refused the client at {peer}: {why}"));
                let _ = stream.shutdown(std::net::Shutdown::Both);
                continue;
            }
            (options.log)(&format!("pymri dap: client connected from {peer}"));
            if let Err(e) = serve_stream(&stream, options) {
                (options.log)(&format!("pymri dap: {peer}: {e}"));
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            (options.log)(&format!("pymri dap: client {peer} disconnected"));
        }
    }

    /// Whether the client's socket belongs to a user this server serves.
    fn admit(&self, stream: &TcpStream, peer: SocketAddr) -> Result<(), String> {
        let ours = stream.local_addr().map_err(|e| format!("its connection has no local address: {e}"))?;
        match crate::peer::tcp_peer_uid(ours, peer) {
            Ok(Some(uid)) if self.users.contains(&uid) => Ok(()),
            Ok(Some(uid)) => Err(format!(
                "it runs as uid {uid}, and this adapter serves only uid {}",
                self.users.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )),
            Ok(None) => Err("no established connection from it is listed in /proc/net/tcp".into()),
            Err(e) => Err(format!("cannot read /proc/net/tcp to learn its user: {e}")),
        }
    }
}

fn serve_stream(stream: &TcpStream, options: &Options) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    serve_escaped(stream.try_clone()?, stream.try_clone()?, options);
    Ok(())
}

fn read_client(mut reader: impl Read, tx: Sender<Input>) {
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    if tx.send(Input::Client(Ok(message))).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    if tx.send(Input::Client(Err(e))).is_err() || fatal {
                        return;
                    }
                }
            }
        }
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => decoder.push(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(Input::ClientClosed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use serde_json::{json, Value};
    use std::os::unix::net::UnixStream;

    /// A client over a socket pair: requests out, every message back until the adapter ends.
    fn exchange(requests: &[Value], garbage: &[u8]) -> Vec<Value> {
        let (client, adapter_side) = UnixStream::pair().expect("socket pair");
        let reader = adapter_side.try_clone().expect("clone");
        let ours = adapter_side.try_clone().expect("clone");
        let server = std::thread::spawn(move || serve(reader, adapter_side, &Options::default()));
        let mut writer = client.try_clone().expect("clone");
        writer.write_all(garbage).expect("write");
        for r in requests {
            writer.write_all(&encode(r)).expect("write");
        }
        server.join().expect("the adapter ended");
        // As `Server::run` does: the client reader still holds the connection open.
        ours.shutdown(std::net::Shutdown::Both).expect("shutdown");
        let mut bytes = Vec::new();
        let mut client = client;
        client.read_to_end(&mut bytes).expect("read");
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        let mut out = Vec::new();
        while let Ok(Some(v)) = decoder.next_message() {
            out.push(v);
        }
        out
    }

    fn request(seq: i64, command: &str, arguments: Value) -> Value {
        json!({"seq": seq, "type": "request", "command": command, "arguments": arguments})
    }

    #[test]
    fn requests_without_a_program_are_answered_and_disconnect_ends() {
        let out = exchange(
            &[
                request(1, "initialize", json!({"adapterID": "pymri", "linesStartAt1": true})),
                request(2, "stackTrace", json!({})),
                request(3, "frobnicate", Value::Null),
                request(4, "threads", Value::Null),
                request(5, "launch", json!({"args": ["x"]})),
                request(6, "next", json!({"threadId": 1})),
                json!({"seq": 7, "type": "response", "command": "runInTerminal", "success": true}),
                request(8, "disconnect", json!({})),
                request(9, "threads", Value::Null),
            ],
            b"Content-Length: 3\r\n\r\n{x}",
        );
        let by_seq = |seq: i64| {
            out.iter()
                .find(|m| m["request_seq"] == seq)
                .unwrap_or_else(|| panic!("no answer to {seq}: {out:?}"))
        };
        let bad_json = by_seq(0);
        assert_eq!(bad_json["success"], false);
        let init = by_seq(1);
        assert_eq!(init["success"], true);
        assert_eq!(init["body"]["supportsConfigurationDoneRequest"], true);
        assert_eq!(init["body"]["exceptionBreakpointFilters"][1]["filter"], "uncaught");
        let bad_args = by_seq(2);
        assert_eq!(bad_args["success"], false);
        assert!(bad_args["message"].as_str().is_some_and(|m| m.contains("threadId")), "{bad_args}");
        assert!(by_seq(3)["message"].as_str().is_some_and(|m| m.contains("does not support")));
        assert_eq!(by_seq(4)["body"], json!({"threads": []}));
        assert!(by_seq(5)["message"].as_str().is_some_and(|m| m.contains("\"program\"")));
        assert!(by_seq(6)["message"].as_str().is_some_and(|m| m.contains("launch")));
        assert_eq!(by_seq(8)["success"], true);
        // The response to the client's response is none, and nothing is answered after
        // `disconnect`.
        assert!(out.iter().all(|m| m["request_seq"] != 7 && m["request_seq"] != 9), "{out:?}");
        // Messages are numbered in order.
        let seqs: Vec<i64> = out.iter().filter_map(|m| m["seq"].as_i64()).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_is_served_before_initialize() {
        let out = exchange(
            &[
                request(1, "launch", json!({"module": "x"})),
                request(2, "attach", json!({"processId": 1})),
                request(3, "initialize", json!({})),
                request(4, "threads", Value::Null),
                request(5, "disconnect", json!({})),
            ],
            b"",
        );
        for seq in [1, 2] {
            let refused = out.iter().find(|m| m["request_seq"] == seq).expect("answer");
            assert_eq!(refused["success"], false, "{refused}");
            assert!(
                refused["message"].as_str().is_some_and(|m| m.contains("'initialize' first")),
                "{refused}"
            );
        }
        assert!(out.iter().all(|m| m["event"] != "initialized"), "{out:?}");
        assert_eq!(out.iter().find(|m| m["request_seq"] == 4).expect("threads")["success"], true);
    }

    #[test]
    fn the_log_quotes_clients_escaped() {
        let logged = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = Arc::clone(&logged);
        let options = Options { log: Arc::new(move |text: &str| sink.lock().expect("log").push_str(text)) };
        let (client, adapter_side) = UnixStream::pair().expect("socket pair");
        let reader = adapter_side.try_clone().expect("clone");
        let server = std::thread::spawn(move || serve(reader, adapter_side, &options));
        let mut writer = client.try_clone().expect("clone");
        for r in [
            request(1, "initialize", json!({})),
            request(2, "\u{1b}]0;pwned\u{7}\u{202e}", Value::Null),
            request(3, "disconnect", json!({})),
        ] {
            writer.write_all(&encode(&r)).expect("write");
        }
        server.join().expect("the adapter ended");
        let logged = logged.lock().expect("log").clone();
        assert!(logged.contains("\\x1b]0;pwned\\x07\\u202e"), "{logged:?}");
        assert!(!logged.contains('\u{1b}') && !logged.contains('\u{202e}'), "{logged:?}");
    }

    #[test]
    fn a_broken_header_ends_the_connection() {
        let out = exchange(&[request(1, "initialize", json!({}))], b"Content-Length: many\r\n\r\n");
        assert!(out.is_empty(), "{out:?}");
    }
}
