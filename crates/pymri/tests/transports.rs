//! Remote sessions (`docs/transports.md`): `pymri connect`, `pymri listen` and `pymri secret`,
//! their errors (one line, hints, documented statuses), and whole sessions with the real agent
//! (`python -m pymri_agent --listen/--connect`, staged into the interpreter's root) over TCP,
//! TLS, a Unix socket and a FIFO pair, driven through a pseudo-terminal.

mod common;

use common::pty::Repl;
use common::{interpreter, mark, pymri, pymri_with, text, AgentProgram, Interpreter, Scratch};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// Exit status, stdout and stderr, with the run-specific parts replaced, for snapshots.
fn outcome(out: &Output, replace: &[(&str, &str)]) -> String {
    let mut stderr = text(&out.stderr);
    let mut stdout = text(&out.stdout);
    for (from, to) in replace {
        stderr = stderr.replace(from, to);
        stdout = stdout.replace(from, to);
    }
    format!("exit: {:?}\nstdout: {stdout:?}\nstderr:\n{stderr}", out.status.code())
}

fn scratch() -> Scratch {
    Scratch::new(&Interpreter { name: "host".into(), root: "/".into(), exe: String::new() })
}

/// A secret file made by `pymri secret FILE`.
fn secret_file(scratch: &Scratch, name: &str) -> String {
    let path = scratch.host.join(name).display().to_string();
    let out = pymri(&["secret", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    path
}

// ---------------------------------------------------------------------------------------------
// Without an agent

#[test]
fn help_of_the_remote_commands() {
    for command in ["connect", "listen", "secret"] {
        let out = pymri(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        insta::assert_snapshot!(format!("help_{command}"), text(&out.stdout));
    }
}

#[test]
fn secret_makes_a_private_file_and_never_overwrites_one() {
    let scratch = scratch();
    let printed = pymri(&["secret"]);
    assert_eq!(printed.status.code(), Some(0));
    let hex = text(&printed.stdout);
    assert_eq!(hex.trim_end().len(), 64, "{hex:?}");
    assert!(hex.trim_end().bytes().all(|b| b.is_ascii_hexdigit()), "{hex:?}");
    assert!(printed.stderr.is_empty(), "only the secret, on stdout");

    let path = secret_file(&scratch, "app.secret");
    let meta = std::fs::metadata(&path).expect("secret file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let first = std::fs::read_to_string(&path).expect("read");
    assert_eq!(first.trim_end().len(), 64);
    assert_ne!(first, hex, "a fresh secret each time");

    let again = pymri(&["secret", &path]);
    insta::assert_snapshot!(outcome(&again, &[(&path, "[FILE]")]));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), first, "the file is unchanged");
}

#[test]
fn connect_to_nothing_names_the_agent_command() {
    let scratch = scratch();
    let secret = secret_file(&scratch, "s");
    // Port 1 on loopback: nothing listens there.
    let out = pymri(&["connect", "tcp:127.0.0.1:1", "--secret-file", &secret]);
    insta::assert_snapshot!(outcome(&out, &[]));
    let socket = scratch.host.join("app.sock").display().to_string();
    let out = pymri(&["connect", &format!("unix:{socket}"), "--secret-file", &secret]);
    insta::assert_snapshot!("connect_to_a_missing_socket", outcome(&out, &[(&socket, "[SOCKET]")]));
    let dir = scratch.host.display().to_string();
    let out = pymri(&["connect", &format!("fifo:{dir}"), "--secret-file", &secret]);
    insta::assert_snapshot!("connect_to_missing_fifos", outcome(&out, &[(&dir, "[DIR]")]));
}

#[test]
fn connect_usage_errors() {
    let scratch = scratch();
    let secret = secret_file(&scratch, "s");
    let out = pymri(&["connect", "localhost:5678", "--secret-file", &secret]);
    insta::assert_snapshot!("connect_address_without_a_scheme", outcome(&out, &[]));
    let out = pymri_with(&["connect", "tcp:127.0.0.1:1"], |c| {
        c.env_remove("PYMRI_SECRET_FILE");
    });
    insta::assert_snapshot!("connect_without_a_secret", outcome(&out, &[]));
    let out = pymri(&["connect", "tcp:127.0.0.1:1", "--secret-file", &secret, "--secret-stdin"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_secret_file_others_can_read_is_refused() {
    let scratch = scratch();
    let secret = secret_file(&scratch, "s");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = pymri(&["connect", "tcp:127.0.0.1:1", "--secret-file", &secret]);
    insta::assert_snapshot!(outcome(&out, &[(&secret, "[FILE]")]));
    // The same through the variable that names the file.
    let out = pymri_with(&["connect", "tcp:127.0.0.1:1"], |c| {
        c.env("PYMRI_SECRET_FILE", &secret);
    });
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("chmod 600"), "{}", text(&out.stderr));
}

/// Another local user plants a private secret file of its own (so it knows the secret) where
/// root's pymri is told to read one: root must not take it.
#[test]
fn a_secret_file_owned_by_another_user_is_refused() {
    let attacker = common::attacker();
    let path = attacker.home.join(format!("planted-{}.secret", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let plant = format!(
        "import os\nfd = os.open({:?}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\nos.write(fd, b'ab' * 32)\n",
        path.display().to_string()
    );
    let planted = common::run_with_deadline(attacker.python(&plant), Duration::from_secs(30));
    assert!(planted.status.success(), "{}", text(&planted.stderr));
    let secret = path.display().to_string();
    let out = pymri(&["connect", "tcp:127.0.0.1:1", "--secret-file", &secret]);
    let _ = std::fs::remove_file(&path);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("the secret file {secret} belongs to user {}", attacker.uid)),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

/// A FIFO given as the secret file: nothing ever writes to it, and pymri must not wait.
#[test]
fn a_fifo_as_secret_file_fails_promptly() {
    let scratch = scratch();
    let (fifo, _) = scratch.fifo("secret");
    let secret = fifo.display().to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pymri"));
    cmd.args(["connect", "tcp:127.0.0.1:1", "--secret-file", &secret]).stdin(std::process::Stdio::null());
    let out = common::run_with_deadline(cmd, Duration::from_secs(10));
    insta::assert_snapshot!(outcome(&out, &[(&secret, "[FILE]")]));
}

/// A symbolic link as the secret file is refused: the file is named, not reached through a
/// link someone else may point elsewhere.
#[test]
fn a_symlink_as_secret_file_is_refused() {
    let scratch = scratch();
    let real = secret_file(&scratch, "real");
    let link = scratch.host.join("link").display().to_string();
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let out = pymri(&["connect", "tcp:127.0.0.1:1", "--secret-file", &link]);
    insta::assert_snapshot!(outcome(&out, &[(&link, "[LINK]"), (&real, "[REAL]")]));
}

#[test]
fn listening_beyond_loopback_needs_a_secret() {
    let out = pymri_with(&["listen", "0.0.0.0:0"], |c| {
        c.env_remove("PYMRI_SECRET_FILE");
    });
    let stderr = text(&out.stderr);
    let port = stderr
        .split("tcp:0.0.0.0:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address in the message")
        .to_string();
    insta::assert_snapshot!(outcome(&out, &[(&format!("0.0.0.0:{port}"), "0.0.0.0:[PORT]")]));
}

// ---------------------------------------------------------------------------------------------
// Sessions with the real agent

/// How long the agent may take to start listening, or a program to end.
const AGENT_TIMEOUT: Duration = Duration::from_secs(20);
const FIXTURE: &str = "discount.py";

/// A scratch directory in `interp`'s root with the walkthrough's program and a secret file.
struct Setup {
    interp: Interpreter,
    scratch: Scratch,
    /// The program, as the agent sees it.
    script: String,
    /// The secret file: on the host (for pymri) and inside the root (for the agent).
    secret_host: String,
    secret_inside: String,
}

impl Setup {
    fn new(version: &str) -> Setup {
        let interp =
            interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
        let scratch = Scratch::new(&interp);
        let script = scratch.copy_fixture(&format!("pdb/{FIXTURE}"));
        let secret_host = secret_file(&scratch, "app.secret");
        let secret_inside = format!("{}/app.secret", scratch.inside);
        Setup { interp, scratch, script, secret_host, secret_inside }
    }

    /// A path inside the scratch directory: (host, inside the root).
    fn path(&self, name: &str) -> (String, String) {
        (self.scratch.host.join(name).display().to_string(), format!("{}/{name}", self.scratch.inside))
    }

    /// The program under an agent that listens at `address` (inside the root), holding it
    /// before its first line until a controller starts it; returns once the agent listens,
    /// with the address it announced (the real port for port 0).
    fn listening_agent(&self, address: &str) -> (AgentProgram, String) {
        let mut agent = AgentProgram::start(
            &self.interp,
            &self.scratch,
            &["--listen", address, "--secret-file", &self.secret_inside, "--wait", &self.script],
        );
        let line = agent.expect_line("pymri_agent: listening on ", AGENT_TIMEOUT);
        let announced = word_after(&line, "listening on ");
        (agent, announced)
    }
}

/// The walkthrough of scenarios.md's wrong arithmetic, over whatever transport `repl` uses:
/// the program waits at its first line, a breakpoint in the function, its arguments and a local
/// read, and the program runs to its end with its own output and status.
fn debug_the_discount(repl: &mut Repl, agent: &mut AgentProgram, script: &str) {
    let first = repl.prompt();
    assert!(first.contains("Connected to process"), "{first}");
    assert!(first.contains(&format!("> {script}(")), "stopped before the program's first line: {first}");
    let line = mark("pdb/discount.py", "discount");
    let out = repl.cmd("b calculate_discount");
    // pdb up to 3.12 names a function not defined yet by its `def` line, the line before.
    let minor: u32 = repl
        .interp
        .name
        .trim_end_matches('d')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("version");
    let named = if minor < 13 { line - 1 } else { line };
    assert!(out.contains(&format!("Breakpoint 1 at {script}:{named}")), "{out}");
    let out = repl.cmd("c");
    assert!(out.contains(&format!("> {script}({line})calculate_discount()")), "{out}");
    assert_eq!(repl.cmd("p price, percent").trim(), "(100, 20)");
    repl.cmd("n");
    assert_eq!(repl.cmd("p discount").trim(), "20.0");
    repl.type_line("c");
    let (rest, status) = repl.finish();
    assert!(rest.contains("The program finished (exit status 0)."), "{rest}");
    assert_eq!(status, 0, "{}", repl.transcript);
    agent.expect_line("expected 80, got 120", AGENT_TIMEOUT);
    assert_eq!(agent.wait(AGENT_TIMEOUT), Some(0), "{}", agent.transcript);
}

/// Forward: the program's agent listens on TCP; `pymri connect`.
fn forward_tcp(version: &str) {
    let setup = Setup::new(version);
    let (mut agent, address) = setup.listening_agent("tcp:127.0.0.1:0");
    let mut repl =
        Repl::pymri(&setup.interp, &["connect", &address, "--secret-file", &setup.secret_host], &[]);
    debug_the_discount(&mut repl, &mut agent, &setup.script);
}

/// Reverse, over TLS: `pymri listen --tls` on loopback makes the secret itself and says where;
/// the program's agent connects out with it.
fn reverse_tls(version: &str) {
    let setup = Setup::new(version);
    // pymri's runtime directory inside the root, so that the agent can read the secret it makes.
    let (run_host, _) = setup.path("run");
    std::fs::create_dir(&run_host).expect("runtime dir");
    std::fs::set_permissions(&run_host, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut repl = Repl::pymri(&setup.interp, &["listen", "0", "--tls"], &[("XDG_RUNTIME_DIR", &run_host)]);
    let announced = repl.expect("the program connects with");
    let address = word_after(&announced, "waiting for an agent at ");
    assert!(address.starts_with("tls:127.0.0.1:"), "{announced}");
    let secret_host = word_after(&announced, "the session's secret is in ");
    let secret_inside = format!(
        "/{}",
        Path::new(&secret_host)
            .strip_prefix(&setup.interp.root)
            .expect("the secret is in the root")
            .display()
    );
    let mut agent = AgentProgram::start(
        &setup.interp,
        &setup.scratch,
        &["--connect", &address, "--secret-file", &secret_inside, &setup.script],
    );
    debug_the_discount(&mut repl, &mut agent, &setup.script);
    assert!(!Path::new(&secret_host).exists(), "the secret pymri made is removed at its end");
}

/// No network: a Unix socket, the secret typed (`--secret-stdin`).
fn unix_socket(version: &str) {
    let setup = Setup::new(version);
    let (host, inside) = setup.path("app.sock");
    let (mut agent, _) = setup.listening_agent(&format!("unix:{inside}"));
    let mode = std::fs::metadata(&host).expect("the agent's socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is private");
    // The secret typed at the terminal, which does not show it.
    let mut repl = Repl::pymri(&setup.interp, &["connect", &format!("unix:{host}"), "--secret-stdin"], &[]);
    repl.expect("Secret: ");
    let secret = std::fs::read_to_string(&setup.secret_host).expect("secret");
    repl.send(&format!("{}\r", secret.trim()));
    debug_the_discount(&mut repl, &mut agent, &setup.script);
    assert!(!repl.transcript.contains(secret.trim()), "the secret was echoed:\n{}", repl.transcript);
}

/// No network: a pair of FIFOs.
fn fifo_pair(version: &str) {
    let setup = Setup::new(version);
    let (host, inside) = setup.path("app.dbg");
    let (mut agent, _) = setup.listening_agent(&format!("fifo:{inside}"));
    let mut repl = Repl::pymri(
        &setup.interp,
        &["connect", &format!("fifo:{host}"), "--secret-file", &setup.secret_host],
        &[],
    );
    debug_the_discount(&mut repl, &mut agent, &setup.script);
}

/// The word after `prefix` in `text`.
fn word_after(text: &str, prefix: &str) -> String {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in {text}"));
    text[at + prefix.len()..].split_whitespace().next().expect("a word").to_string()
}

macro_rules! per_interpreter {
    ($($version:literal => $forward:ident, $reverse:ident, $unix:ident, $fifo:ident;)*) => {
        $(
            #[test]
            fn $forward() { forward_tcp($version) }
            #[test]
            fn $reverse() { reverse_tls($version) }
            #[test]
            fn $unix() { unix_socket($version) }
            #[test]
            fn $fifo() { fifo_pair($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => forward_tcp_3_9, reverse_tls_3_9, unix_socket_3_9, fifo_pair_3_9;
    "3.14" => forward_tcp_3_14, reverse_tls_3_14, unix_socket_3_14, fifo_pair_3_14;
}

/// A wrong secret is refused before any request: the program has not started, and the next
/// controller, with the right secret, finds it exactly as it was.
#[test]
fn a_wrong_secret_is_refused_before_anything_runs() {
    let setup = Setup::new("3.14");
    let (mut agent, address) = setup.listening_agent("tcp:127.0.0.1:0");
    let other = secret_file(&setup.scratch, "other.secret");
    let out = pymri(&["connect", &address, "--secret-file", &other]);
    insta::assert_snapshot!(outcome(&out, &[(&address, "tcp:127.0.0.1:[PORT]")]));
    assert!(agent.is_alive(), "{}", agent.transcript);
    let mut repl =
        Repl::pymri(&setup.interp, &["connect", &address, "--secret-file", &setup.secret_host], &[]);
    debug_the_discount(&mut repl, &mut agent, &setup.script);
}

/// TLS on one side only: a plain `tcp:` controller meets an agent that speaks TLS.
#[test]
fn tls_on_one_side_only_says_so() {
    let setup = Setup::new("3.14");
    let (mut agent, address) = setup.listening_agent("tls:127.0.0.1:0");
    let plain = address.replacen("tls:", "tcp:", 1);
    let out = pymri(&["connect", &plain, "--secret-file", &setup.secret_host]);
    insta::assert_snapshot!(outcome(&out, &[(&plain, "tcp:127.0.0.1:[PORT]")]));
    let mut repl =
        Repl::pymri(&setup.interp, &["connect", &address, "--secret-file", &setup.secret_host], &[]);
    debug_the_discount(&mut repl, &mut agent, &setup.script);
}

/// TLS on the other side only: `tls:` meets an agent that listens on plain TCP. Neither speaks
/// first (a plain agent waits for the challenge, a TLS server for the ClientHello), so this
/// used to wait out the whole 10 s handshake; the silence is recognised in 2 s.
#[test]
fn tls_to_a_plain_agent_fails_fast() {
    let setup = Setup::new("3.14");
    let (mut agent, address) = setup.listening_agent("tcp:127.0.0.1:0");
    let tls = address.replacen("tcp:", "tls:", 1);
    let started = Instant::now();
    let out = pymri(&["connect", &tls, "--secret-file", &setup.secret_host]);
    let took = started.elapsed();
    insta::assert_snapshot!(outcome(&out, &[(&tls, "tls:127.0.0.1:[PORT]")]));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let mut repl =
        Repl::pymri(&setup.interp, &["connect", &address, "--secret-file", &setup.secret_host], &[]);
    debug_the_discount(&mut repl, &mut agent, &setup.script);
}

/// A GET of the fixture server with a deadline; the body, or why not.
fn get(port: u16, path: &str, deadline: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(deadline)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("no answer to {path}: {e}"))?;
    let (_, body) = response.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    Ok(body.to_string())
}

/// scenarios.md's web app in a container: the server runs with an agent that listens (no
/// `--wait`); a controller connects, stops it with Ctrl-C, sets a conditional breakpoint that
/// only the failing request reaches, reads the handler's values, detaches, and the server goes
/// on serving with no hook left; the agent listens for the next controller.
fn server_in_a_container(version: &str) {
    let interp = interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
    let scratch = Scratch::new(&interp);
    let fixture = "http_server.py";
    let script = scratch.copy_fixture(fixture);
    let (ready_host, ready_inside) = scratch.fifo("ready");
    let mut ready = common::FifoReader::open(&ready_host);
    let secret = secret_file(&scratch, "app.secret");
    let secret_inside = format!("{}/app.secret", scratch.inside);
    let mut agent = AgentProgram::start(
        &interp,
        &scratch,
        &["--listen", "tcp:127.0.0.1:0", "--secret-file", &secret_inside, &script, &ready_inside],
    );
    let address = word_after(&agent.expect_line("listening on ", AGENT_TIMEOUT), "listening on ");
    let port: u16 =
        word_after(&ready.line(AGENT_TIMEOUT).expect("the server is ready"), "ready").parse().expect("port");

    let mut repl = Repl::pymri(&interp, &["connect", &address, "--secret-file", &secret], &[]);
    let connected = repl.expect("Ctrl-C stops its main thread");
    assert!(connected.contains("Connected to process"), "{connected}");
    repl.control('c');
    let stop = repl.prompt();
    assert!(stop.contains("Program interrupted"), "{stop}");
    let route = mark(fixture, "route");
    let out = repl.cmd(&format!("b {script}:{route}, self.path.startswith('/crash')"));
    assert!(out.contains(&format!("Breakpoint 1 at {script}:{route}")), "{out}");
    repl.type_line("c");
    assert!(get(port, "/add?a=2&b=3", AGENT_TIMEOUT).expect("add").contains("\"result\": 5"));
    let crash = std::thread::spawn(move || get(port, "/crash?a=3&b=5", Duration::from_secs(60)));
    let stop = repl.prompt();
    assert!(stop.contains(&format!("{script}({route})do_GET()")), "{stop}");
    assert_eq!(repl.cmd("p query").trim(), "{'a': 3, 'b': 5}");
    repl.type_line("c");
    assert!(crash.join().expect("client").expect("answered").contains("\"result\": 50.0"));
    repl.control('c');
    repl.prompt();
    repl.type_line("detach");
    let (rest, status) = repl.finish();
    assert!(rest.contains("Detached."), "{rest}");
    assert_eq!(status, 0, "{}", repl.transcript);
    let hooks = get(port, "/hooks", AGENT_TIMEOUT).expect("served after the detach");
    assert!(
        hooks.contains("\"trace\": \"None\"") && hooks.contains("\"threading_trace\": \"None\""),
        "{hooks}"
    );
    if hooks.contains("tools") {
        assert!(hooks.contains("\"tools\": [null, null, null, null, null, null]"), "{hooks}");
    }

    // The agent listens again: a second session, ended with `q`, which detaches too.
    let mut repl = Repl::pymri(&interp, &["connect", &address, "--secret-file", &secret], &[]);
    repl.expect("Ctrl-C stops its main thread");
    repl.control('c');
    repl.prompt();
    repl.type_line("q");
    assert_eq!(repl.exit_status(), 0, "{}", repl.transcript);
    assert!(get(port, "/health", AGENT_TIMEOUT).expect("still served").contains("\"ok\": true"));
    assert!(agent.is_alive(), "{}", agent.transcript);
}

#[test]
fn server_in_a_container_3_9() {
    server_in_a_container("3.9");
}

#[test]
fn server_in_a_container_3_14() {
    server_in_a_container("3.14");
}

/// Reverse over plain TCP, with a secret file given to both sides: an agent with another
/// secret is refused (and told so), pymri goes on waiting, and the right agent gets the session.
#[test]
fn listen_refuses_a_wrong_secret_and_waits_on() {
    let setup = Setup::new("3.14");
    let mut repl =
        Repl::pymri(&setup.interp, &["listen", "127.0.0.1:0", "--secret-file", &setup.secret_host], &[]);
    let announced = repl.expect("the program connects with");
    let address = word_after(&announced, "waiting for an agent at ");
    assert!(!announced.contains("secret is in"), "no secret is made when one is given: {announced}");
    secret_file(&setup.scratch, "other.secret");
    let other_inside = format!("{}/other.secret", setup.scratch.inside);
    let mut intruder = AgentProgram::start(
        &setup.interp,
        &setup.scratch,
        &["--connect", &address, "--secret-file", &other_inside, &setup.script],
    );
    assert_eq!(intruder.wait(AGENT_TIMEOUT), Some(2), "{}", intruder.transcript);
    assert!(!intruder.transcript.contains("expected 80"), "nothing of the program ran");
    repl.expect("pymri listen: refused a connection from 127.0.0.1:");
    let why = repl.expect("\n");
    assert!(why.contains("wrong secret"), "{why}");
    let mut agent = AgentProgram::start(
        &setup.interp,
        &setup.scratch,
        &["--connect", &address, "--secret-file", &setup.secret_inside, &setup.script],
    );
    debug_the_discount(&mut repl, &mut agent, &setup.script);
}

/// A relay between pymri and the agent, run by another local user: it passes the handshake
/// through untouched, then writes a frame of its own to the agent (protocol §2 framing, the
/// payload in `argv[2]`), then copies both ways. It prints its port, then `injected`.
const RELAY: &str = r#"
import signal, socket, struct, sys, threading
signal.alarm(120)
agent_port, forged = int(sys.argv[1]), sys.argv[2].encode()
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
client, _ = listener.accept()
agent = socket.create_connection(("127.0.0.1", agent_port))
def copy(src, dst):
    while True:
        data = src.recv(65536)
        if not data:
            break
        dst.sendall(data)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=copy, args=(agent, client), daemon=True).start()
def exact(n):
    data = b""
    while len(data) < n:
        more = client.recv(n - len(data))
        if not more:
            sys.exit(0)
        data += more
    return data
for _ in range(2):  # the challenge, then the accept
    head = exact(4)
    agent.sendall(head + exact(struct.unpack(">I", head)[0]))
agent.sendall(struct.pack(">I", len(forged)) + forged)
print("injected", flush=True)
copy(client, agent)
"#;

/// Issue 8, item 6: a relay on the path of a plain `tcp:` session waits for the handshake to
/// pass, then injects a request. The agent must not carry it out (the breakpoint's condition
/// would create a marker file), the session must end with a clear error, and the program must
/// go on, untouched.
#[test]
fn a_relay_cannot_inject_frames_into_a_tcp_session() {
    use std::io::BufRead;
    let setup = Setup::new("3.14");
    let (mut agent, address) = setup.listening_agent("tcp:127.0.0.1:0");
    let agent_port = address.rsplit(':').next().expect("port").to_string();
    let (marker_host, marker_inside) = setup.path("hijacked");
    let forged = serde_json::json!({"kind": "request", "id": 900, "cmd": "set_breakpoint", "args": {
        "file": setup.script, "line": mark("pdb/discount.py", "discount"),
        "condition": format!("open({marker_inside:?}, 'w').close()"),
    }})
    .to_string();
    let mut relay = pymri_testkit::attacker()
        .python(RELAY)
        .args([&agent_port, &forged])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the relay");
    let mut relay_out = std::io::BufReader::new(relay.stdout.take().expect("relay stdout"));
    let mut relay_port = String::new();
    relay_out.read_line(&mut relay_port).expect("the relay's port");

    let mut repl = Repl::pymri(
        &setup.interp,
        &["connect", &format!("tcp:127.0.0.1:{}", relay_port.trim()), "--secret-file", &setup.secret_host],
        &[],
    );
    if repl.prompt_or_exit().is_ok() {
        // The session survived the injection: run the program, through the forged breakpoint.
        repl.type_line("c");
    }
    let (_, status) = repl.finish();
    let mut injected = String::new();
    relay_out.read_line(&mut injected).expect("the relay's report");
    assert_eq!(injected.trim(), "injected", "the relay did its part");
    assert!(
        !Path::new(&marker_host).exists(),
        "the injected request ran in the target:\n{}",
        repl.transcript
    );
    assert_eq!(status, 1, "{}", repl.transcript);
    assert!(
        repl.transcript.contains("the agent detached: received frame 0 failed its integrity check"),
        "a clear error: {}",
        repl.transcript
    );
    let _ = relay.wait();

    // The agent let the tampered session go with its hooks removed: the program, held before
    // its first line, runs to its end undebugged, as when a controller goes away.
    agent.expect_line("expected 80, got 120", AGENT_TIMEOUT);
    assert_eq!(agent.wait(AGENT_TIMEOUT), Some(0), "{}", agent.transcript);
    assert!(!Path::new(&marker_host).exists(), "the forged breakpoint was left behind");
}

/// A hostile agent: it listens on loopback, does the real handshake with the secret in
/// `argv[2]` (protocol §3, with frame tags), says `ready` in launch mode, and then, instead of
/// answering `start`, sends `output` events of 64 KiB until it has sent `argv[3]` MiB, then
/// holds the connection open until pymri closes it. It prints its port first.
const FLOODING_AGENT: &str = r#"
import signal, socket, sys
signal.alarm(120)
from pymri_agent import protocol
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
channel = protocol.Channel(conn)
protocol.agent_handshake(channel, protocol.parse_secret(sys.argv[1]))
channel.send_message({"kind": "event", "event": "ready", "body": {
    "protocol": protocol.PROTOCOL_VERSION, "agent_version": protocol.AGENT_VERSION, "pid": 1, "mode": "launch",
    "python": {"version": "3.11.7", "version_info": [3, 11, 7], "implementation": "cpython",
               "executable": "/usr/bin/python3.11", "debug_build": False},
    "main_thread": 1, "cwd": "/", "argv": ["flood.py"], "backend": "settrace", "tool_id": None,
    "all_threads": True}})
event = {"kind": "event", "event": "output", "body": {"category": "stdout", "text": "x" * 65536}}
try:
    for _ in range(int(sys.argv[2]) * 16):
        channel.send_message(event)
    print("flooded", flush=True)
    while conn.recv(65536):
        pass
except (OSError, protocol.ConnectionClosed):
    print("cut off", flush=True)
"#;

/// Issue 8, item 7: a hostile agent floods pymri with events while pymri waits for the answer
/// to `start`. pymri's memory must stay bounded (its peak RSS, from `wait4`), and the session
/// must end with an error saying why.
#[test]
fn a_flood_of_events_ends_the_session_with_bounded_memory() {
    use std::io::{BufRead, Read};
    use std::os::unix::process::ExitStatusExt;
    const FLOOD_MIB: u64 = 512;
    const MAX_RSS_KIB: i64 = 192 * 1024;
    let scratch = scratch();
    let secret_path = secret_file(&scratch, "flood.secret");
    let secret = std::fs::read_to_string(&secret_path).expect("secret");
    let mut agent = std::process::Command::new("/usr/bin/python3.11")
        .args(["-c", FLOODING_AGENT, secret.trim(), &FLOOD_MIB.to_string()])
        .env("PYTHONPATH", pymri_testkit::repo_root().join("python"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the flooding agent");
    let mut agent_out = std::io::BufReader::new(agent.stdout.take().expect("stdout"));
    let mut port = String::new();
    agent_out.read_line(&mut port).expect("the agent's port");

    // Reaped by wait4 below, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let mut pymri = std::process::Command::new(env!("CARGO_BIN_EXE_pymri"))
        .args(["connect", &format!("tcp:127.0.0.1:{}", port.trim()), "--secret-file", &secret_path])
        .env_remove("PYMRI_SECRET_FILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pymri");
    let mut stderr = String::new();
    pymri.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("pymri's stderr");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for this child, which we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = i32::try_from(pymri.id()).expect("pid");
    // SAFETY: waits for our own child, with valid pointers to a status and a rusage.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid, "wait4");
    let status = std::process::ExitStatus::from_raw(status);
    let mut agent_said = String::new();
    agent_out.read_to_string(&mut agent_said).expect("the agent's report");
    let _ = agent.wait();
    assert!(usage.ru_maxrss < MAX_RSS_KIB, "pymri's peak RSS was {} MiB; {stderr}", usage.ru_maxrss / 1024);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("more events than pymri can hold"), "{stderr}");
    assert_eq!(agent_said.trim(), "cut off", "pymri ended the session before the flood did");
}

/// Another local user's garbage: `argv[2]` connections to the agent on loopback port `argv[1]`,
/// one after the other, each sending bytes that are no challenge and reading what the agent
/// says until it closes. One line per connection: what was read, and how it ended.
const GARBAGE: &str = r#"
import signal, socket, sys
signal.alarm(60)
for i in range(int(sys.argv[2])):
    data, end = b"", "closed"
    try:
        sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        while True:
            more = sock.recv(4096)
            if not more:
                break
            data += more
    except OSError as exc:
        end = str(exc)
    print(i, repr(data), end, flush=True)
"#;

/// Issue 8, item 8: five garbage connections from any local user locked everyone out of a
/// loopback agent for 60 s, and `pymri connect` then said "is the agent listening?". Loopback
/// peers are one address for every local user, so they get a growing delay instead: the right
/// controller still gets in, and the delayed connections are told why they wait.
#[test]
fn garbage_from_another_local_user_does_not_lock_others_out_of_a_loopback_agent() {
    let setup = Setup::new("3.14");
    let (mut agent, address) = setup.listening_agent("tcp:127.0.0.1:0");
    let port = address.rsplit(':').next().expect("port").to_string();
    let garbage =
        pymri_testkit::attacker().python(GARBAGE).args([&port, "7"]).output().expect("the attacker");
    let said = text(&garbage.stdout);
    assert_eq!(said.lines().count(), 7, "{said}{}", text(&garbage.stderr));
    let mut repl =
        Repl::pymri(&setup.interp, &["connect", &address, "--secret-file", &setup.secret_host], &[]);
    debug_the_discount(&mut repl, &mut agent, &setup.script);
    let delayed: Vec<&str> = said.lines().skip(5).collect();
    assert!(
        delayed.iter().all(|line| line.contains("handshake is delayed")),
        "connections after the fifth failure are told why they wait:\n{said}"
    );
}

/// End of input at the prompt while the agent refuses `detach`: pymri closes the connection and
/// exits at once (it used to ask again for as long as it ran, 10,000 requests a second).
#[test]
fn end_of_input_with_an_agent_that_refuses_to_detach() {
    let interp = interpreter("3.11").expect("3.11");
    let scratch = Scratch::new(&interp);
    let script = scratch.copy_fixture("refusing_agent.py");
    let secret = secret_file(&scratch, "app.secret");
    let socket = scratch.host.join("app.sock").display().to_string();
    let mut agent = AgentProgram::start(
        &interp,
        &scratch,
        &[
            "--listen",
            &format!("unix:{}/app.sock", scratch.inside),
            "--secret-file",
            &format!("{}/app.secret", scratch.inside),
            &script,
        ],
    );
    agent.expect_line("patched", AGENT_TIMEOUT);
    let started = std::time::Instant::now();
    // Standard input is empty: the first prompt reads its end.
    let out = pymri(&["connect", &format!("unix:{socket}"), "--secret-file", &secret]);
    let took = started.elapsed();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(took < Duration::from_secs(5), "pymri took {took:?} to give up:\n{stdout}\n{stderr}");
    assert!(stdout.contains("*** this agent never lets go"), "{stdout}\n{stderr}");
    assert!(stderr.contains("the agent did not let go"), "{stderr}");
    assert_eq!(
        agent.wait(AGENT_TIMEOUT),
        Some(0),
        "the program ends once pymri closed: {}",
        agent.transcript
    );
    let refusals = agent.transcript.lines().filter(|l| l.contains("refused")).count();
    assert_eq!(refusals, 1, "one detach, not a loop of them:\n{}", agent.transcript);
}

/// The program dies while `pymri connect` holds it stopped: the session is lost, not ended by
/// the user, so pymri says so and exits with status 1, as `pymri attach` does.
#[test]
fn a_lost_remote_session_is_reported_and_fails() {
    let setup = Setup::new("3.11");
    let (mut agent, address) = setup.listening_agent(&format!("unix:{}/app.sock", setup.scratch.inside));
    let mut repl =
        Repl::pymri(&setup.interp, &["connect", &address, "--secret-file", &setup.secret_host], &[]);
    repl.prompt();
    agent.child.kill().expect("SIGKILL the program");
    agent.child.wait().expect("reap the program");
    repl.type_line("p 1");
    let (_, status) = repl.finish();
    assert_eq!(status, 1, "{}", repl.transcript);
    assert!(repl.transcript.contains("error: the session with the agent was lost"), "{}", repl.transcript);
}
