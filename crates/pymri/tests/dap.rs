//! `pymri dap` driven by a real DAP client: Microsoft's `@vscode/debugadapter-testsupport`
//! (npm), from the Node test scripts in `editors/tests/` (`node --test`). This harness installs
//! the client (`npm ci`, cached while `package-lock.json` is unchanged), prepares the targets
//! on each interpreter (fixtures copied into its root, the HTTP server started and ready) and
//! runs one script per test with a deadline. A machine without `node` or `npm` fails loudly.

mod common;

use common::{interpreter, repo_root, run_with_deadline, text, Interpreter, Scratch, Target};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A whole Node test file, client installation excluded.
const NODE_DEADLINE: Duration = Duration::from_secs(240);
/// `npm ci` from the registry (a few hundred kilobytes).
const NPM_DEADLINE: Duration = Duration::from_secs(300);

fn tests_dir() -> PathBuf {
    repo_root().join("editors/tests")
}

fn require_tool(name: &str) {
    let found = Command::new(name).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: the DAP tests need Node.js 18+ and npm \
         (Debian: apt-get install nodejs npm)"
    );
}

/// Installs the DAP test client once per `package-lock.json`, under a file lock: nextest runs
/// tests in parallel processes.
fn install_client() -> PathBuf {
    require_tool("node");
    require_tool("npm");
    let dir = tests_dir();
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pymri-dap-npm.lock");
    let lock = std::fs::File::create(&lock_path).expect("npm lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "locking {}", lock_path.display());
    let wanted =
        std::fs::read_to_string(dir.join("package-lock.json")).expect("editors/tests/package-lock.json");
    let stamp = dir.join("node_modules/.pymri-installed-lock");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir);
        let out = run_with_deadline(cmd, NPM_DEADLINE);
        assert!(
            out.status.success(),
            "npm ci in {} failed:\n{}\n{}",
            dir.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
        std::fs::write(&stamp, &wanted).expect("stamp");
    }
    drop(lock);
    dir
}

/// Runs one Node test file with `env`; fails with its whole output.
fn node_test(file: &str, env: &[(&str, String)]) {
    let dir = install_client();
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=tap", file])
        .current_dir(&dir)
        .env("PYMRI_BIN", env!("CARGO_BIN_EXE_pymri"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH")
        .env_remove("NODE_OPTIONS");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = run_with_deadline(cmd, NODE_DEADLINE);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "node --test {file} failed ({:?}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("# fail 0") && !stdout.contains("# pass 0"), "no test ran:\n{stdout}\n{stderr}");
}

/// The interpreter's settings for the launch scripts, with the fixtures copied into a scratch
/// directory inside its root.
fn launch_env(interp: &Interpreter, scratch: &Scratch) -> Vec<(&'static str, String)> {
    for fixture in ["dap/basket.py", "pdb/divide.py"] {
        let src = repo_root().join("fixtures").join(fixture);
        let name = Path::new(fixture).file_name().expect("file name");
        std::fs::copy(&src, scratch.host.join(name)).unwrap_or_else(|e| panic!("copy {fixture}: {e}"));
    }
    vec![
        ("PYMRI_DAP_PYTHON", interp.exe.clone()),
        ("PYMRI_DAP_ROOT", if interp.in_root() { interp.root.display().to_string() } else { String::new() }),
        ("PYMRI_DAP_DIR", scratch.host.display().to_string()),
        ("PYMRI_DAP_DIR_INSIDE", scratch.inside.clone()),
    ]
}

fn launch(version: &str) {
    let interp = interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
    let scratch = Scratch::new(&interp);
    node_test("launch.test.js", &launch_env(&interp, &scratch));
}

fn attach(version: &str) {
    let interp = interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
    let target = Target::start(&interp, "http_server.py", &["{ready}"]);
    let port = target.ready_line.split_whitespace().nth(1).expect("port").to_string();
    let script = target.scratch.host.join("http_server.py");
    node_test(
        "attach.test.js",
        &[
            ("PYMRI_DAP_PID", target.pid().to_string()),
            ("PYMRI_DAP_PORT", port),
            ("PYMRI_DAP_SCRIPT", script.display().to_string()),
        ],
    );
    assert!(!target.any_thread_stopped(), "the server was left stopped");
    assert_eq!(target.tracer_pid(), 0, "the server was left traced");
}

macro_rules! per_interpreter {
    ($($version:literal => $launch:ident, $attach:ident;)*) => {
        $(
            #[test]
            fn $launch() { launch($version) }
            #[test]
            fn $attach() { attach($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => launch_3_9, attach_3_9;
    "3.11" => launch_3_11, attach_3_11;
    "3.13" => launch_3_13, attach_3_13;
    "3.14" => launch_3_14, attach_3_14;
    "3.15" => launch_3_15, attach_3_15;
}

/// `attach` with `connect` (TLS) to a program whose agent listens and waits for its debugger.
#[test]
fn attach_by_connecting_to_a_listening_agent() {
    let interp = interpreter("3.14").expect("3.14");
    let scratch = Scratch::new(&interp);
    let name = "discount.py";
    scratch.copy_fixture(&format!("pdb/{name}"));
    let secret = scratch.host.join("app.secret");
    let made = common::pymri(&["secret", &secret.display().to_string()]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut agent = common::AgentProgram::start(
        &interp,
        &scratch,
        &[
            "--listen",
            &format!("tls:127.0.0.1:{port}"),
            "--secret-file",
            &format!("{}/app.secret", scratch.inside),
            "--wait",
            &format!("{}/{name}", scratch.inside),
        ],
    );
    agent.expect_line("listening", Duration::from_secs(20));
    node_test(
        "connect.test.js",
        &[
            ("PYMRI_DAP_CONNECT_PORT", port.to_string()),
            ("PYMRI_DAP_SECRET", secret.display().to_string()),
            ("PYMRI_DAP_SCRIPT", scratch.host.join(name).display().to_string()),
            ("PYMRI_DAP_DIR", scratch.host.display().to_string()),
            ("PYMRI_DAP_DIR_INSIDE", scratch.inside.clone()),
        ],
    );
    agent.expect_line("expected 80, got 120", Duration::from_secs(20));
    assert_eq!(agent.wait(Duration::from_secs(20)), Some(0), "{}", agent.transcript);
}

#[test]
fn listen_serves_clients_in_turn_and_survives_garbage() {
    let interp = interpreter("3.14").expect("3.14");
    let scratch = Scratch::new(&interp);
    node_test("listen.test.js", &launch_env(&interp, &scratch));
}

#[test]
fn vscode_extension_runs_pymri_dap_and_picks_processes() {
    let interp = interpreter("3.11").expect("3.11");
    assert!(!interp.in_root(), "3.11 is the host's interpreter");
    node_test("vscode-extension.test.js", &[("PYMRI_DAP_PYTHON", interp.exe.clone())]);
}

// ---------------------------------------------------------------------------------------------
// Who may use `pymri dap --listen` (docs/security.md, "DAP adapter"): a root adapter, and clients
// that are another local user, or a browser page of the adapter's own user.

/// A root `pymri dap --listen 0`, killed on drop; its stderr lines are kept for the assertions.
struct ListeningAdapter {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    /// The line saying where it listens, and for whom.
    listening: String,
}

impl ListeningAdapter {
    fn start() -> ListeningAdapter {
        Self::start_with(&[])
    }

    fn start_with(env: &[(&str, String)]) -> ListeningAdapter {
        use std::io::BufRead;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
        cmd.args(["dap", "--listen", "0"])
            .env_remove("SUDO_UID")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("spawn pymri dap --listen 0");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut adapter = ListeningAdapter { child, port: 0, lines, listening: String::new() };
        let line = adapter.expect_line("listening on 127.0.0.1:");
        adapter.listening = line.clone();
        let after = line.split("127.0.0.1:").nth(1).expect("address");
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        adapter.port = digits.parse().unwrap_or_else(|_| panic!("no port in {line:?}"));
        adapter
    }

    /// Waits (bounded) for a line of its stderr containing `needle`.
    fn expect_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("pymri dap said no {needle:?}; its stderr:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for ListeningAdapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw DAP client (an attack's, or one checking exact bytes): connects to 127.0.0.1:PORT,
/// sends the bytes, then reads DAP messages until the adapter answers request `WANT` (a
/// number) or sends event `WANT` (a name), closes the connection, or 30 s pass.
/// Prints `{"end": "answered" | "closed" | "timeout", "messages": [...]}`.
const RAW_CLIENT: &str = r#"
import json, socket, sys, time
port, payload, want = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
messages, buf, end = [], b"", "timeout"
deadline = time.monotonic() + 30
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(payload)
    while time.monotonic() < deadline:
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            n = int(head.split(b":")[1])
            if len(rest) < n:
                break
            messages.append(json.loads(rest[:n]))
            buf = rest[n:]
        if any(str(m.get("request_seq")) == want or m.get("event") == want for m in messages):
            end = "answered"
            break
        chunk = s.recv(65536)
        if not chunk:
            end = "closed"
            break
        buf += chunk
except socket.timeout:
    pass
except OSError:
    end = "closed"
print(json.dumps({"end": end, "messages": messages}))
"#;

/// What an attack's client saw: how it ended and every message it received.
struct Exchange {
    end: String,
    messages: Vec<serde_json::Value>,
}

impl Exchange {
    fn answer(&self, seq: i64) -> Option<&serde_json::Value> {
        self.messages.iter().find(|m| m["type"] == "response" && m["request_seq"] == seq)
    }
}

/// Runs [`RAW_CLIENT`] through `python` (a command for `python3 -c`, as some user).
fn exchange(mut python: Command, port: u16, payload: &[u8], want: impl ToString) -> Exchange {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    python.args([port.to_string(), hex, want.to_string()]);
    let out = run_with_deadline(python, Duration::from_secs(60));
    assert!(out.status.success(), "the client failed: {}", text(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client output {:?}: {e}", text(&out.stdout)));
    Exchange {
        end: seen["end"].as_str().expect("end").to_string(),
        messages: seen["messages"].as_array().cloned().unwrap_or_default(),
    }
}

fn root_client() -> Command {
    let mut c = Command::new("/usr/bin/python3.11");
    c.args(["-c", RAW_CLIENT]);
    c
}

fn frame(message: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("json");
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend(body);
    out
}

fn request(seq: i64, command: &str, arguments: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"seq": seq, "type": "request", "command": command, "arguments": arguments})
}

/// A `launch` whose "interpreter" is `python3 -c CODE`: CODE runs as the adapter's user (root)
/// and creates `marker`.
fn launch_writing(seq: i64, marker: &Path) -> serde_json::Value {
    let code = format!("open({:?}, 'w').write('pwned')", marker.display().to_string());
    request(seq, "launch", serde_json::json!({"module": "x", "python": ["/usr/bin/python3.11", "-c", code]}))
}

/// A directory only root may write to (mode 0755), for the marker an attack would create as
/// root.
fn marker_dir() -> Scratch {
    let scratch = Scratch::new(&interpreter("3.11").expect("3.11"));
    std::fs::set_permissions(&scratch.host, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    scratch
}

#[test]
fn dap_listener_refuses_another_local_user() {
    let attacker = common::attacker();
    let mut adapter = ListeningAdapter::start();
    let dir = marker_dir();
    let marker = dir.host.join("ran-as-root");
    let mut payload = frame(&request(1, "initialize", serde_json::json!({"adapterID": "pymri"})));
    payload.extend(frame(&launch_writing(2, &marker)));
    let seen = exchange(attacker.python(RAW_CLIENT), adapter.port, &payload, 2);
    assert!(!marker.exists(), "the attacker's code ran as root");
    assert_eq!(seen.end, "closed", "the attacker was served: {:?}", seen.messages);
    assert!(seen.messages.is_empty(), "the attacker was answered: {:?}", seen.messages);
    let refusal = adapter.expect_line("refused");
    assert!(refusal.contains(&format!("uid {}", attacker.uid)), "{refusal}");
}

/// The attacker sends its requests and closes at once, again and again: by the time the adapter
/// looks its socket up, it is a time-wait entry, which the kernel lists as uid 0.
#[test]
fn dap_listener_refuses_a_client_that_closed_before_it_was_looked_up() {
    let attacker = common::attacker();
    let mut adapter = ListeningAdapter::start();
    let dir = marker_dir();
    let marker = dir.host.join("ran-as-root");
    let mut payload = frame(&request(1, "initialize", serde_json::json!({"adapterID": "pymri"})));
    payload.extend(frame(&launch_writing(2, &marker)));
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let code = format!(
        "import socket, sys\n\
         for _ in range(200):\n    \
             s = socket.create_connection(('127.0.0.1', {}))\n    \
             s.sendall(bytes.fromhex('{hex}'))\n    \
             s.close()\n",
        adapter.port
    );
    let out = run_with_deadline(attacker.python(&code), Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Clients are served in turn: once ours is answered, every earlier one was dealt with.
    let seen =
        exchange(root_client(), adapter.port, &frame(&request(1, "initialize", serde_json::json!({}))), 1);
    assert!(seen.answer(1).is_some(), "{:?}", seen.messages);
    assert!(!marker.exists(), "a closed attacker passed for root");
    adapter.expect_line("refused");
}

#[test]
fn dap_listener_refuses_another_users_attach() {
    let attacker = common::attacker();
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "inject_target.py", &["{ready}", "spin"]);
    let mut adapter = ListeningAdapter::start();
    let mut payload = frame(&request(1, "initialize", serde_json::json!({"adapterID": "pymri"})));
    payload.extend(frame(&request(2, "attach", serde_json::json!({"processId": target.pid()}))));
    let seen = exchange(attacker.python(RAW_CLIENT), adapter.port, &payload, 2);
    assert_eq!(seen.end, "closed", "the attacker was served: {:?}", seen.messages);
    assert!(seen.answer(2).is_none(), "the attacker's attach was answered: {:?}", seen.messages);
    adapter.expect_line("refused");
    assert_eq!(target.tracer_pid(), 0);
    assert!(!target.any_thread_stopped());
}

/// `sudo pymri dap --listen`: the user who ran sudo is the one who started the adapter.
#[test]
fn dap_listener_serves_the_user_who_ran_sudo() {
    let attacker = common::attacker();
    let adapter = ListeningAdapter::start_with(&[("SUDO_UID", attacker.uid.to_string())]);
    assert!(adapter.listening.ends_with(&format!("uid 0, {}", attacker.uid)), "{}", adapter.listening);
    let payload = frame(&request(1, "initialize", serde_json::json!({"adapterID": "pymri"})));
    let seen = exchange(attacker.python(RAW_CLIENT), adapter.port, &payload, 1);
    let answer = seen.answer(1).unwrap_or_else(|| panic!("not served ({}): {:?}", seen.end, seen.messages));
    assert_eq!(answer["success"], true, "{answer}");
}

/// What a web page can make a browser send: an HTTP request whose body is a DAP `launch`
/// (`POST /x:y` puts a colon in the request line, which once passed for a header).
#[test]
fn dap_listener_refuses_an_http_post_carrying_a_launch() {
    let mut adapter = ListeningAdapter::start();
    let dir = marker_dir();
    let marker = dir.host.join("ran-from-a-web-page");
    let body = serde_json::to_vec(&launch_writing(1, &marker)).expect("json");
    let mut payload = format!(
        "POST /x:y HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: http://attacker.example\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        adapter.port,
        body.len()
    )
    .into_bytes();
    payload.extend(body);
    let seen = exchange(root_client(), adapter.port, &payload, 1);
    assert!(!marker.exists(), "the page's code ran as root");
    assert_eq!(seen.end, "closed", "{:?}", seen.messages);
    assert!(seen.messages.is_empty(), "{:?}", seen.messages);
    adapter.expect_line("malformed header line");
}

#[test]
fn dap_listener_refuses_a_launch_before_initialize() {
    let adapter = ListeningAdapter::start();
    let dir = marker_dir();
    let marker = dir.host.join("ran-before-initialize");
    let seen = exchange(root_client(), adapter.port, &frame(&launch_writing(1, &marker)), 1);
    assert!(!marker.exists(), "launch ran before initialize");
    let answer =
        seen.answer(1).unwrap_or_else(|| panic!("no answer to launch ({}): {:?}", seen.end, seen.messages));
    assert_eq!(answer["success"], false, "{answer}");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("initialize")), "{answer}");
}

/// A program's output carries terminal escapes (a window title) and a right-to-left override:
/// the client gets them escaped in `output` events, never raw.
#[test]
fn dap_output_events_escape_terminal_controls() {
    let adapter = ListeningAdapter::start();
    let scratch = marker_dir();
    let script = scratch.host.join("title.py");
    std::fs::write(
        &script,
        "import sys\n\
         sys.stdout.write('title \\x1b]0;pwned\\x07 and \\u202eevil\\n')\n\
         sys.stderr.write('clear \\x1b[2J\\r\\n')\n\
         name = '\\x1b[8mhidden'\n\
         sys.exit(0)\n",
    )
    .expect("script");
    let mut payload = frame(&request(1, "initialize", serde_json::json!({"adapterID": "pymri"})));
    payload.extend(frame(&request(
        2,
        "launch",
        serde_json::json!({"program": script, "python": "/usr/bin/python3.11"}),
    )));
    // A log point on the last line: its message quotes a value of the program.
    payload.extend(frame(&request(
        3,
        "setBreakpoints",
        serde_json::json!({"source": {"path": script}, "breakpoints": [{"line": 5, "logMessage": "name={name}"}]}),
    )));
    payload.extend(frame(&request(4, "configurationDone", serde_json::json!({}))));
    let seen = exchange(root_client(), adapter.port, &payload, "terminated");
    assert_eq!(seen.end, "answered", "{:?}", seen.messages);
    let outputs: Vec<(&str, &str)> = seen
        .messages
        .iter()
        .filter(|m| m["event"] == "output")
        .map(|m| (m["body"]["category"].as_str().unwrap_or(""), m["body"]["output"].as_str().unwrap_or("")))
        .collect();
    let all: String = outputs.iter().map(|(_, text)| *text).collect();
    assert!(!all.contains('\x1b') && !all.contains('\x07') && !all.contains('\u{202e}'), "{outputs:?}");
    assert!(outputs.contains(&("stdout", "title \\x1b]0;pwned\\x07 and \\u202eevil\n")), "{outputs:?}");
    assert!(outputs.contains(&("stderr", "clear \\x1b[2J\r\n")), "{outputs:?}");
    assert!(outputs.contains(&("console", "name=\\x1b[8mhidden\n")), "{outputs:?}");
}
