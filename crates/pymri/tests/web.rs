//! `pymri web` against real targets: the security checks over raw sockets (foreign Host and
//! Origin, missing and wrong tokens, on HTTP and on the WebSocket), and the page itself in
//! headless Chromium (Debian's `chromium`, driven by `playwright-core` from npm: see
//! `tests/web/browser.mjs`) on 3.11 and 3.14; a launched program through the page's API.
//!
//! node, npm and chromium are required: a missing one fails the test with what to install.
//! `npm ci` runs once per lock file (its packages come from npm's cache when they are there);
//! screenshots go to `target/test-artifacts/`.

mod common;

use common::browser::{artifacts, browser_kit};
use common::{interpreter, mark, run_with_deadline, text, Interpreter, Target};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FIXTURE: &str = "web_target.py";

/// A running `pymri web`, killed on drop.
struct Web {
    child: Child,
    url: String,
    addr: SocketAddr,
    token: String,
    stderr: mpsc::Receiver<String>,
    transcript: String,
}

impl Web {
    fn start(args: &[&str], cwd: Option<&Path>) -> Web {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
        cmd.arg("web").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.env("NO_COLOR", "1").env("PYTHONDONTWRITEBYTECODE", "1").env_remove("PYTHONPATH");
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("spawn pymri web");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = BufReader::new(stdout).read_to_end(&mut sink);
        });
        let mut web = Web {
            child,
            url: String::new(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            token: String::new(),
            stderr: rx,
            transcript: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while web.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match web.stderr.recv_timeout(left) {
                Ok(line) => {
                    web.transcript.push_str(&line);
                    web.transcript.push('\n');
                    if let Some(at) = line.find("http://") {
                        web.url = line[at..].trim().to_string();
                    }
                }
                Err(_) => panic!("pymri web printed no URL within 30 s:\n{}", web.transcript),
            }
        }
        let rest = web.url.strip_prefix("http://").expect("http URL");
        let (host, query) = rest.split_once("/?token=").expect("token in the URL");
        web.addr = host.parse().expect("a numeric address");
        assert!(web.addr.ip().is_loopback(), "{}", web.url);
        web.token = query.to_string();
        assert_eq!(web.token.len(), 64, "a 32-byte token: {}", web.url);
        web
    }

    /// Waits for pymri to exit; its status.
    fn wait(&mut self, deadline: Duration) -> i32 {
        let start = Instant::now();
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                self.transcript.push_str(&line);
                self.transcript.push('\n');
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                // What it wrote last may still be in the pipe: read on to the end of its stderr.
                while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
                    self.transcript.push_str(&line);
                    self.transcript.push('\n');
                }
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < deadline,
                "pymri web did not exit within {deadline:?}:\n{}",
                self.transcript
            );
            // Waiting on a child process, not synchronising with a target: a short poll.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn api(&self, body: &str) -> serde_json::Value {
        let request = format!(
            "POST /api?token={} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.token,
            self.addr,
            body.len()
        );
        let answer = exchange(self.addr, request.as_bytes(), false);
        assert_eq!(status(&answer), 200, "{body}: {answer}");
        let (_, json) = answer.split_once("\r\n\r\n").expect("body");
        serde_json::from_str(json).expect("JSON answer")
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a request; the answer (only its head when `head_only`: a WebSocket stays open).
fn exchange(addr: SocketAddr, request: &[u8], head_only: bool) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if head_only && answer.ends_with(b"\r\n\r\n") {
            break;
        }
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

/// Every refusal the page's server must make, on a live session: wrong Host, foreign Origin,
/// missing or wrong token, for the page, the API and the WebSocket upgrade.
fn security_checks(web: &Web) {
    let host = web.addr.to_string();
    let localhost = format!("localhost:{}", web.addr.port());
    let origin = format!("http://{host}");
    let token = format!("token={}", web.token);
    let wrong = format!("token={}", "0".repeat(64));
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let get = |path: &str, query: &str, headers: &str| {
        let request = format!("GET {path}?{query} HTTP/1.1\r\n{headers}\r\n");
        status(&exchange(web.addr, request.as_bytes(), path == "/events"))
    };
    let post = |query: &str, headers: &str| {
        let body = r#"{"op":"state"}"#;
        let request = format!(
            "POST /api?{query} HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        status(&exchange(web.addr, request.as_bytes(), false))
    };
    let h = |host: &str| format!("Host: {host}\r\n");
    let ho = |host: &str, origin: &str| format!("Host: {host}\r\nOrigin: {origin}\r\n");
    // Allowed: the page, the API and the event socket, with the address or `localhost`.
    assert_eq!(get("/", &token, &h(&host)), 200);
    assert_eq!(get("/", &token, &ho(&localhost, &format!("http://{localhost}"))), 200);
    assert_eq!(post(&token, &ho(&host, &origin)), 200);
    assert_eq!(get("/events", &token, &(ho(&host, &origin) + upgrade)), 101);
    // Foreign Host (DNS rebinding), foreign Origin (another site's page).
    let rebound = format!("attacker.example:{}", web.addr.port());
    for headers in [h(&rebound), ho(&host, "http://attacker.example"), ho(&host, "null"), String::new()] {
        assert_eq!(get("/", &token, &headers), 403, "{headers:?}");
        assert_eq!(post(&token, &headers), 403, "{headers:?}");
        assert_eq!(get("/events", &token, &(headers.clone() + upgrade)), 403, "WebSocket {headers:?}");
    }
    // No token, a wrong one.
    for query in ["", wrong.as_str(), "token="] {
        assert_eq!(get("/", query, &h(&host)), 403, "{query:?}");
        assert_eq!(post(query, &h(&host)), 403, "{query:?}");
        assert_eq!(get("/events", query, &(ho(&host, &origin) + upgrade)), 403, "WebSocket {query:?}");
    }
    // Malformed requests are refused and change nothing.
    assert_eq!(status(&exchange(web.addr, b"\x16\x03\x01\x00\xff garbage\r\n\r\n", false)), 400);
    assert_eq!(
        status(&exchange(web.addr, b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false)),
        501
    );
}

/// Runs the browser scenario of `browser.mjs` against `web`.
fn run_browser(web: &Web, file: &str, line: i32, screenshot: &Path) {
    let (dir, chromium) = browser_kit();
    let mut node = Command::new("node");
    node.arg("browser.mjs")
        .current_dir(&dir)
        .env("PYMRI_WEB_URL", &web.url)
        .env("PYMRI_WEB_FILE", file)
        .env("PYMRI_WEB_LINE", line.to_string())
        .env("PYMRI_WEB_SCREENSHOT", screenshot)
        .env("PYMRI_CHROMIUM", &chromium);
    let out = run_with_deadline(node, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "the browser scenario failed:\n{}\n{}\npymri:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        web.transcript
    );
    assert!(screenshot.exists(), "no screenshot at {}", screenshot.display());
}

/// Attach to a running loop, break in it from the page, look around, evaluate, detach; the
/// program goes on untouched.
fn attach_in_the_browser(interp: &Interpreter) {
    let mut target = Target::start(interp, FIXTURE, &["{ready}"]);
    let file = target.script_path(FIXTURE);
    let line = mark(FIXTURE, "total");
    let mut web = Web::start(&[&target.pid().to_string()], None);
    security_checks(&web);
    let screenshot = artifacts().join(format!("web-attach-{}.png", interp.name));
    run_browser(&web, &file, line, &screenshot);
    assert_eq!(web.wait(Duration::from_secs(30)), 0, "{}", web.transcript);
    assert!(target.is_alive(), "the program goes on after the detach");
    assert!(!target.any_thread_stopped());
    assert_eq!(target.tracer_pid(), 0);
}

#[test]
fn attach_in_the_browser_3_11() {
    attach_in_the_browser(&interpreter("3.11").expect("3.11"));
}

#[test]
fn attach_in_the_browser_3_14() {
    attach_in_the_browser(&interpreter("3.14").expect("3.14"));
}

/// A launched program through the page's API: it stops at its first line, the console runs
/// pdb's commands, the program's exit shows on the page, and quitting ends pymri with the
/// program's status.
#[test]
fn launch_through_the_api() {
    let interp = interpreter("3.13").expect("3.13");
    let scratch = common::Scratch::new(&interp);
    let name = "exit_three.py";
    scratch.copy_fixture(&format!("pdb/{name}"));
    let root = interp.root.display().to_string();
    let mut args = Vec::new();
    if interp.in_root() {
        args.extend(["--root", root.as_str()]);
    }
    args.extend(["--python", interp.exe.as_str(), "--", name]);
    let mut web = Web::start(&args, Some(&scratch.host));
    let state = wait_for(&web, |s| s["stopped"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(state["mode"], "launch");
    assert_eq!(state["stopped"][0]["reason"], "entry", "{state}");
    let file = state["stopped"][0]["frame"]["file"].as_str().expect("file");
    assert!(file.ends_with(name), "{file}");
    let where_ = web.api(r#"{"op":"console","line":"w"}"#);
    assert!(where_["body"]["output"].as_str().is_some_and(|o| o.contains("<module>()")), "{where_}");
    let listing = web.api(r#"{"op":"console","line":"l"}"#);
    assert!(listing["body"]["output"].as_str().is_some_and(|o| o.contains("sys.exit(3)")), "{listing}");
    let cont = web.api(r#"{"op":"console","line":"c"}"#);
    assert_eq!(cont["ok"], true, "{cont}");
    let state = wait_for(&web, |s| !s["exited"].is_null());
    assert_eq!(state["exited"]["code"], 3, "{state}");
    assert_eq!(web.api(r#"{"op":"quit"}"#)["ok"], true);
    assert_eq!(web.wait(Duration::from_secs(30)), 3, "the program's own status:\n{}", web.transcript);
}

/// `pymri web --connect`: a program whose agent listens, holding it before its first line,
/// is started from the page, stops at a breakpoint set in the console, and runs to its end;
/// pymri then lets its process exit with the program's status.
/// `pdb/discount.py` under an agent that listens at `address(scratch)` and waits, and
/// `pymri web --connect` to it (a secret made for both).
fn web_on_a_listening_agent(
    version: &str,
    address: impl FnOnce(&common::Scratch) -> String,
) -> (common::Scratch, common::AgentProgram, Web) {
    let interp = interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
    let scratch = common::Scratch::new(&interp);
    let name = "discount.py";
    scratch.copy_fixture(&format!("pdb/{name}"));
    let secret = scratch.host.join("app.secret").display().to_string();
    let made = common::pymri(&["secret", &secret]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let address = address(&scratch);
    let script = format!("{}/{name}", scratch.inside);
    let secret_inside = format!("{}/app.secret", scratch.inside);
    let mut agent = common::AgentProgram::start(
        &interp,
        &scratch,
        &["--listen", &address, "--secret-file", &secret_inside, "--wait", &script],
    );
    agent.expect_line("listening", Duration::from_secs(20));
    let web = Web::start(&["--connect", &address, "--secret-file", &secret], None);
    (scratch, agent, web)
}

#[test]
fn connect_through_the_api() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (_scratch, mut agent, mut web) =
        web_on_a_listening_agent("3.14", |_| format!("tcp:127.0.0.1:{port}"));
    let state = wait_for(&web, |s| s["stopped"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(state["mode"], "attach", "ending the page's session detaches: {state}");
    let b = web.api(r#"{"op":"console","line":"b calculate_discount"}"#);
    assert!(b["body"]["output"].as_str().is_some_and(|o| o.contains("Breakpoint 1")), "{b}");
    web.api(r#"{"op":"console","line":"c"}"#);
    let at = |s: &serde_json::Value| {
        s["stopped"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["frame"]["function"] == "calculate_discount"))
    };
    wait_for(&web, at);
    let p = web.api(r#"{"op":"console","line":"p price, percent"}"#);
    assert_eq!(p["body"]["output"].as_str().map(str::trim), Some("(100, 20)"), "{p}");
    web.api(r#"{"op":"console","line":"c"}"#);
    assert_eq!(web.wait(Duration::from_secs(30)), 0, "{}", web.transcript);
    assert!(web.transcript.contains("The program exited (status 0)."), "{}", web.transcript);
    agent.expect_line("expected 80, got 120", Duration::from_secs(20));
    assert_eq!(agent.wait(Duration::from_secs(20)), Some(0), "{}", agent.transcript);
}

/// The program dies while the page holds it stopped: the session is lost, not ended from the
/// page, so `pymri web --connect` says so and exits with status 1, as `pymri attach` does.
#[test]
fn a_lost_session_fails_the_page() {
    let (_scratch, mut agent, mut web) =
        web_on_a_listening_agent("3.11", |scratch| format!("unix:{}/app.sock", scratch.inside));
    wait_for(&web, |s| s["stopped"].as_array().is_some_and(|a| !a.is_empty()));
    agent.child.kill().expect("SIGKILL the program");
    agent.child.wait().expect("reap the program");
    assert_eq!(web.wait(Duration::from_secs(30)), 1, "{}", web.transcript);
    assert!(web.transcript.contains("error: the session with the agent was lost"), "{}", web.transcript);
}

/// A target whose function, file and thread names carry terminal escapes and a bidi override:
/// the page shows them as text with the invisible characters escaped (`tests/web/hostile.mjs`).
#[test]
fn hostile_names_render_as_text() {
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "hostile_names.py", &["{ready}"]);
    let web = Web::start(&[&target.pid().to_string()], None);
    let (dir, chromium) = browser_kit();
    let mut node = Command::new("node");
    node.arg("hostile.mjs")
        .current_dir(&dir)
        .env("PYMRI_WEB_URL", &web.url)
        .env("PYMRI_WEB_SHOWN", "\\x1b]0;pwned\\x07\\x1b[2J\\u202e")
        .env("PYMRI_CHROMIUM", &chromium);
    let out = run_with_deadline(node, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "the page showed the names wrongly:\n{}\n{}\npymri:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        web.transcript
    );
}

/// Another address than a loopback one is refused before anything is done to the target.
#[test]
fn non_loopback_addresses_are_refused() {
    for listen in ["0.0.0.0:0", "[::]:8080", "192.0.2.1:80"] {
        let out = common::pymri(&["web", "--listen", listen, "1"]);
        assert_eq!(out.status.code(), Some(2), "{listen}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("not a loopback address"), "{stderr}");
        assert!(stderr.contains("secured transport (TLS and a secret)"), "{stderr}");
    }
    let out = common::pymri(&["web", "--listen", "example.org:80", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// Polls the page's state until `done` (a launched program reaching its first stop).
fn wait_for(web: &Web, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = web.api(r#"{"op":"state"}"#)["body"].clone();
        if done(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "state never reached: {state}");
        // Polling the server's state over HTTP; each answer reflects the events it has seen.
        std::thread::sleep(Duration::from_millis(50));
    }
}
