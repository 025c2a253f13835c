//! The HTTP and WebSocket server: one thread accepts, one thread per connection (at most
//! [`MAX_CONNECTIONS`]), every request checked by the [`Guard`] before it is routed.
//!
//! Routes (all need the token):
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /` | the page (and the token's cookie) |
//! | `GET /app.js`, `GET /style.css` | its script and style |
//! | `POST /api` | a JSON request to the [`Handler`], its JSON answer |
//! | `GET /events` (WebSocket upgrade) | the live updates: every [`Hub::broadcast`] message |
//!
//! The WebSocket is served by `tungstenite` once the upgrade request passed the same checks as
//! any other request. Clients send nothing but control frames; the server sends text frames.

use crate::http::{Reader, Request, Response};
use crate::security::{check_listen, Denied, Guard, ListenError};
use serde_json::Value;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Connections served at once; more are answered 503 at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head and body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an event socket looks for messages to send between reads of the client.
const EVENT_POLL: Duration = Duration::from_millis(20);
/// Messages queued for one event socket before it is dropped as too slow.
const EVENT_QUEUE: usize = 1024;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// What the server asks of the debugger behind it.
pub trait Handler: Send + Sync + 'static {
    /// Answers one API request (a JSON object); the answer is sent as is.
    fn api(&self, request: Value) -> Value;
    /// Messages a new event socket receives first (the current state).
    fn greeting(&self) -> Vec<Value> {
        Vec::new()
    }
    /// The session's state, embedded in the page itself so that it shows before its event
    /// socket is up.
    fn page_state(&self) -> Value {
        Value::Null
    }
}

/// `value` as JSON that can sit inside an HTML `<script type="application/json">` element:
/// `<`, `>` and `&` (only ever inside strings) become `\u` escapes, so no text from a target
/// can close the element or start markup.
fn json_for_html(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("creating the session token: {0}")]
    Token(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The event sockets; a message broadcast reaches every one.
#[derive(Clone, Default)]
pub struct Hub {
    clients: Arc<Mutex<Vec<mpsc::SyncSender<Arc<str>>>>>,
    /// Event sockets still open (closing ones included).
    sockets: Arc<AtomicUsize>,
}

/// Counts an open event socket until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hub {
    pub fn broadcast(&self, message: &Value) {
        let text: Arc<str> = message.to_string().into();
        // A client whose queue is full or gone is dropped.
        lock(&self.clients).retain(|c| c.try_send(Arc::clone(&text)).is_ok());
    }

    fn join(&self) -> (mpsc::Receiver<Arc<str>>, Open) {
        let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
        self.sockets.fetch_add(1, Ordering::SeqCst);
        lock(&self.clients).push(tx);
        (rx, Open(Arc::clone(&self.sockets)))
    }

    /// Event sockets open now.
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::SeqCst)
    }

    /// Closes every event socket (after what was queued).
    pub fn close_all(&self) {
        lock(&self.clients).clear();
    }
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    guard: Arc<Guard>,
    addr: SocketAddr,
    hub: Hub,
}

impl Server {
    /// Binds a loopback address (others are refused, see [`check_listen`]) with a fresh token.
    pub fn bind(addr: SocketAddr) -> Result<Server, ServeError> {
        let token = pymri_session::protocol::handshake::random_hex(32)
            .map_err(|e| ServeError::Token(e.to_string()))?;
        Server::bind_with_token(addr, token)
    }

    pub fn bind_with_token(addr: SocketAddr, token: String) -> Result<Server, ServeError> {
        check_listen(addr)?;
        let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        Ok(Server { listener, guard: Arc::new(Guard::new(addr, token)), addr, hub: Hub::default() })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        self.guard.token()
    }

    /// The page's address, token included.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.guard.host(), self.guard.token())
    }

    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Serves on a thread of its own until [`Running::stop`].
    pub fn spawn(self, handler: Arc<dyn Handler>) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("pymri-web".into())
                .spawn(move || self.accept_loop(handler, stop))?
        };
        Ok(Running { stop, addr, thread: Some(thread) })
    }

    fn accept_loop(self, handler: Arc<dyn Handler>, stop: Arc<AtomicBool>) {
        let active = Arc::new(AtomicUsize::new(0));
        for stream in self.listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::SeqCst);
                let _ = Response::text(503, "too many connections").write_to(&mut stream);
                continue;
            }
            let guard = Arc::clone(&self.guard);
            let hub = self.hub.clone();
            let handler = Arc::clone(&handler);
            let done = Arc::clone(&active);
            let spawned = std::thread::Builder::new().name("pymri-web-conn".into()).spawn(move || {
                serve_connection(stream, &guard, &hub, &*handler);
                done.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.hub.close_all();
    }
}

/// A serving server.
pub struct Running {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting connections; requests under way finish on their own threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_connection(stream: TcpStream, guard: &Guard, hub: &Hub, handler: &dyn Handler) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut reader = Reader::new(stream);
    let request = match reader.request() {
        Ok(r) => r,
        Err(e) => {
            if let Some(status) = e.status() {
                let (mut stream, _) = reader.into_parts();
                let _ = Response::text(status, &e.to_string()).write_to(&mut stream);
            }
            return;
        }
    };
    if let Err(denied) = guard.check(&request) {
        let (mut stream, _) = reader.into_parts();
        let _ = forbidden(denied).write_to(&mut stream);
        return;
    }
    if request.path == "/events" {
        let (stream, rest) = reader.into_parts();
        serve_events(stream, rest, &request, hub, handler);
        return;
    }
    let response = route(&request, guard, handler);
    let (mut stream, _) = reader.into_parts();
    let _ = response.write_to(&mut stream);
}

pub(crate) fn forbidden(denied: Denied) -> Response {
    Response::text(403, &format!("forbidden: {denied}"))
}

fn route(request: &Request, guard: &Guard, handler: &dyn Handler) -> Response {
    let method = request.method.as_str();
    match (method, request.path.as_str()) {
        ("GET", "/") => {
            let page = INDEX
                .replace("__TOKEN__", guard.token())
                .replace("__STATE__", &json_for_html(&handler.page_state()));
            Response::new(200, "text/html; charset=utf-8", page).with("Set-Cookie", guard.set_cookie()).with(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            )
        }
        ("GET", "/app.js") => Response::new(200, "text/javascript; charset=utf-8", SCRIPT),
        ("GET", "/style.css") => Response::new(200, "text/css; charset=utf-8", STYLE),
        ("POST", "/api") => {
            if !request.header("content-type").is_some_and(|t| t.starts_with("application/json")) {
                // Forms can post cross-site without a preflight; JSON cannot. (The Origin check
                // already refuses other sites; this keeps the API to what the page sends.)
                return Response::text(400, "the API takes application/json");
            }
            match serde_json::from_slice::<Value>(&request.body) {
                Ok(value @ Value::Object(_)) => Response::json(&handler.api(value)),
                _ => Response::text(400, "the API takes one JSON object"),
            }
        }
        (_, "/" | "/app.js" | "/style.css" | "/api") => Response::text(405, "method not allowed"),
        _ => Response::text(404, "not found"),
    }
}

/// The WebSocket of live updates.
fn serve_events(mut stream: TcpStream, rest: Vec<u8>, request: &Request, hub: &Hub, handler: &dyn Handler) {
    let key = request.header("sec-websocket-key").map(str::to_string);
    let upgrade = request.method == "GET"
        && request.header_has_token("upgrade", "websocket")
        && request.header_has_token("connection", "upgrade")
        && request.header("sec-websocket-version") == Some("13");
    let Some(key) = key.filter(|k| upgrade && !k.is_empty() && k.len() <= 64) else {
        let _ = Response::text(426, "a WebSocket upgrade is expected here")
            .with("Sec-WebSocket-Version", "13")
            .write_to(&mut stream);
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).and_then(|()| stream.flush()).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(EVENT_POLL));
    let config = WebSocketConfig::default().max_message_size(Some(64 * 1024)).max_frame_size(Some(64 * 1024));
    let mut ws = WebSocket::from_partially_read(stream, rest, Role::Server, Some(config));
    let (queue, _open) = hub.join();
    for message in handler.greeting() {
        if ws.send(Message::text(message.to_string())).is_err() {
            return;
        }
    }
    loop {
        let mut sent = false;
        loop {
            match queue.try_recv() {
                Ok(text) => {
                    if ws.write(Message::text(&*text)).is_err() {
                        return;
                    }
                    sent = true;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    return;
                }
            }
        }
        if sent && ws.flush().is_err() {
            return;
        }
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_for_html;
    use serde_json::{json, Value};

    #[test]
    fn embedded_state_cannot_close_its_element() {
        let state = json!({"program": "</script><script>alert(1)</script>&amp;", "pid": 7});
        let text = json_for_html(&state);
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).expect("still JSON"), state);
    }
}
