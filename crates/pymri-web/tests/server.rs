//! The server over real sockets, with a stand-in debugger: who gets in (Host, Origin, token, on
//! HTTP and on the WebSocket upgrade), what malformed requests get, and that nothing a client
//! sends stops it from serving the next one.

use pymri_web::{Handler, Running, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

struct Echo;

impl Handler for Echo {
    fn api(&self, request: Value) -> Value {
        json!({"ok": true, "body": {"echo": request}})
    }
    fn greeting(&self) -> Vec<Value> {
        vec![json!({"type": "hello"})]
    }
}

struct Serving {
    addr: SocketAddr,
    token: String,
    hub: pymri_web::Hub,
    _running: Running,
}

fn serve() -> Serving {
    let server = Server::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = server.addr();
    let token = server.token().to_string();
    let hub = server.hub();
    assert_eq!(server.url(), format!("http://127.0.0.1:{}/?token={token}", addr.port()));
    let running = server.spawn(Arc::new(Echo)).expect("spawn");
    Serving { addr, token, hub, _running: running }
}

/// Sends raw bytes, returns the whole answer (the server closes every connection).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends a request and returns the head of the answer only (a WebSocket stays open).
fn exchange_head(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => answer.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A request's bytes: the request line, the headers, an empty line, the body.
fn request(line: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut request = format!("{line}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request.into_bytes()
}

fn get(s: &Serving, path: &str, headers: &[(&str, &str)]) -> String {
    exchange(s.addr, &request(&format!("GET {path} HTTP/1.1"), headers, ""))
}

fn post(s: &Serving, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let length = body.len().to_string();
    let headers: Vec<(&str, &str)> =
        [("Content-Length", length.as_str())].into_iter().chain(headers.iter().copied()).collect();
    exchange(s.addr, &request(&format!("POST {path} HTTP/1.1"), &headers, body))
}

fn upgrade(s: &Serving, path: &str, headers: &[(&str, &str)]) -> String {
    exchange_head(s.addr, &request(&format!("GET {path} HTTP/1.1"), headers, ""))
}

fn upgrade_headers<'a>(host: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    h.extend_from_slice(extra);
    h
}

#[test]
fn the_page_needs_the_token_and_sets_its_cookie() {
    let s = serve();
    let host = format!("127.0.0.1:{}", s.addr.port());
    let page = get(&s, &format!("/?token={}", s.token), &[("Host", &host)]);
    assert_eq!(status(&page), 200, "{page}");
    assert!(page.contains(&format!(
        "Set-Cookie: pymri_token_{}={}; Path=/; HttpOnly; SameSite=Strict",
        s.addr.port(),
        s.token
    )));
    assert!(page.contains("Content-Security-Policy: default-src 'none'"), "{page}");
    assert!(
        page.contains(&format!("content=\"{}\"", s.token)),
        "the page carries its token for its requests"
    );
    let cookie = format!("pymri_token_{}={}", s.addr.port(), s.token);
    for path in ["/", "/app.js", "/style.css"] {
        assert_eq!(status(&get(&s, path, &[("Host", &host), ("Cookie", &cookie)])), 200, "{path}");
        assert_eq!(status(&get(&s, path, &[("Host", &host)])), 403, "{path} without a token");
    }
    let wrong = format!("/?token={}", s.token.replace(&s.token[..4], "ffff"));
    assert_eq!(status(&get(&s, &wrong, &[("Host", &host)])), 403);
    assert_eq!(status(&get(&s, "/?token=", &[("Host", &host)])), 403);
    assert_eq!(status(&get(&s, &format!("/nothing?token={}", s.token), &[("Host", &host)])), 404);
}

#[test]
fn foreign_host_or_origin_is_forbidden_everywhere() {
    let s = serve();
    let port = s.addr.port();
    let good_host = format!("localhost:{port}");
    let evil_host = format!("evil.example:{port}");
    let good_origin = format!("http://127.0.0.1:{port}");
    let q = format!("?token={}", s.token);
    let json = ("Content-Type", "application/json");
    for (host, origin, expected) in [
        (good_host.as_str(), None, 200),
        (good_host.as_str(), Some(good_origin.as_str()), 200),
        (evil_host.as_str(), None, 403),
        (good_host.as_str(), Some("http://evil.example"), 403),
        (good_host.as_str(), Some("null"), 403),
    ] {
        let mut headers = vec![("Host", host), json];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        let page = get(&s, &format!("/{q}"), &headers);
        assert_eq!(status(&page), expected, "GET / Host {host} Origin {origin:?}: {page}");
        let api = post(&s, &format!("/api{q}"), &headers, "{\"op\":\"x\"}");
        assert_eq!(status(&api), expected, "POST /api Host {host} Origin {origin:?}: {api}");
        let mut extra = Vec::new();
        if let Some(o) = origin {
            extra.push(("Origin", o));
        }
        let ws = upgrade(&s, &format!("/events{q}"), &upgrade_headers(host, &extra));
        let want = if expected == 200 { 101 } else { 403 };
        assert_eq!(status(&ws), want, "WebSocket Host {host} Origin {origin:?}: {ws}");
    }
    // The WebSocket needs the token like anything else.
    let ws = upgrade(&s, "/events", &upgrade_headers(&good_host, &[]));
    assert_eq!(status(&ws), 403, "{ws}");
    let ws = upgrade(&s, "/events?token=0123", &upgrade_headers(&good_host, &[("Origin", &good_origin)]));
    assert_eq!(status(&ws), 403, "{ws}");
}

#[test]
fn the_api_takes_json_objects() {
    let s = serve();
    let host = format!("127.0.0.1:{}", s.addr.port());
    let path = format!("/api?token={}", s.token);
    let answer = post(&s, &path, &[("Host", &host), ("Content-Type", "application/json")], r#"{"op":"hi"}"#);
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.ends_with(r#"{"body":{"echo":{"op":"hi"}},"ok":true}"#), "{answer}");
    for (content_type, body) in [
        ("application/json", "[1, 2]"),
        ("application/json", "{not json"),
        ("application/json", ""),
        ("text/plain", r#"{"op":"hi"}"#),
        ("application/x-www-form-urlencoded", "op=hi"),
    ] {
        let answer = post(&s, &path, &[("Host", &host), ("Content-Type", content_type)], body);
        assert_eq!(status(&answer), 400, "{content_type} {body}: {answer}");
    }
    assert_eq!(status(&get(&s, &path, &[("Host", &host)])), 405);
}

#[test]
fn events_reach_every_socket() {
    let s = serve();
    let url = format!("ws://127.0.0.1:{}/events?token={}", s.addr.port(), s.token);
    let stream = TcpStream::connect(s.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let (mut ws, response) = tungstenite::client(url.as_str(), stream).expect("upgrade");
    assert_eq!(response.status().as_u16(), 101);
    let hello = ws.read().expect("greeting");
    assert_eq!(hello.into_text().expect("text").as_str(), r#"{"type":"hello"}"#);
    // The socket is registered by the time the greeting is sent.
    s.hub.broadcast(&json!({"type": "stopped", "body": {"thread": 7}}));
    let event = ws.read().expect("event");
    assert_eq!(event.into_text().expect("text").as_str(), r#"{"body":{"thread":7},"type":"stopped"}"#);
    assert_eq!(s.hub.sockets(), 1);
    s.hub.close_all();
    let end = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break e,
        }
    };
    // Closed by the server, not given up on by the read timeout.
    let timed_out = matches!(&end, tungstenite::Error::Io(e)
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(!timed_out, "close_all did not close the socket: {end}");
}

#[test]
fn malformed_requests_get_errors_and_the_server_keeps_serving() {
    let s = serve();
    let host = format!("127.0.0.1:{}", s.addr.port());
    let mut oversized = b"GET / HTTP/1.1\r\nX: ".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 20_000));
    oversized.extend(b"\r\n\r\n");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), 400), // a TLS hello
        (b"GET / HTTP/1.1\r\nHost: x\r\nBroken\r\n\r\n".to_vec(), 400),
        (b"GET http://127.0.0.1/ HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 501),
        (b"POST /api HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_vec(), 400),
        (b"POST /api HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".to_vec(), 413),
        (oversized, 413),
    ];
    for (bytes, expected) in cases {
        let answer = exchange(s.addr, &bytes);
        assert_eq!(
            status(&answer),
            expected,
            "{:?}: {answer}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        );
    }
    // A client that connects and leaves, or sends half a request and leaves.
    drop(TcpStream::connect(s.addr).expect("connect"));
    {
        let mut half = TcpStream::connect(s.addr).expect("connect");
        half.write_all(b"GET / HTTP/1.1\r\nHo").expect("write");
    }
    // A WebSocket upgrade that is not one, and one that sends garbage after the upgrade.
    let not_ws = get(&s, &format!("/events?token={}", s.token), &[("Host", &host)]);
    assert_eq!(status(&not_ws), 426, "{not_ws}");
    {
        let mut stream = TcpStream::connect(s.addr).expect("connect");
        let request = format!(
            "GET /events?token={} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            s.token
        );
        stream.write_all(request.as_bytes()).expect("write");
        stream.write_all(&[0xff; 64]).expect("garbage frames");
    }
    let page = get(&s, &format!("/?token={}", s.token), &[("Host", &host)]);
    assert_eq!(status(&page), 200, "still serving: {page}");
}

#[test]
fn only_loopback_addresses_are_served() {
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let Err(e) = Server::bind(addr.parse().expect("addr")) else { panic!("{addr} was bound") };
        let text = e.to_string();
        assert!(text.contains("not a loopback address"), "{text}");
        assert!(text.contains("secured transport (TLS and a secret)"), "{text}");
    }
}
