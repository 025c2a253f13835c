//! Test support shared by pymri's integration tests: the provisioned interpreters, targets that
//! signal readiness through a FIFO and are killed (and reaped) on drop, and commands run with a
//! deadline so that a hang fails a test instead of stalling the suite.
//!
//! Interpreters come from `PYMRI_INTERPRETERS` (the output of
//! `scripts/provision-interpreters.sh`) or `$PYMRI_ROOTS/interpreters.env`. A missing one fails
//! the test loudly: a test that cannot run its interpreter is never counted as passed. To run a
//! subset locally, filter the tests (`cargo nextest run -E 'test(3_11)'`), not the interpreters.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Every interpreter the suite needs; a run missing any of them fails.
pub const REQUIRED: [&str; 6] = ["3.9", "3.11", "3.13", "3.14", "3.14d", "3.15"];

/// How long a target may take to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Interpreter {
    /// "3.9", "3.14d", ...
    pub name: String,
    /// Root filesystem it runs in ("/" for the host).
    pub root: PathBuf,
    /// Path of the executable inside the root.
    pub exe: String,
}

impl Interpreter {
    pub fn in_root(&self) -> bool {
        self.root != Path::new("/")
    }
    /// A path inside the root, as seen from the host.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// A command running this interpreter (through `chroot` when it lives in a root), as user
    /// and group `uid` if given.
    pub fn command(&self, uid: Option<u32>) -> Command {
        if self.in_root() {
            let mut c = Command::new("chroot");
            if let Some(uid) = uid {
                c.arg(format!("--userspec={uid}:{uid}"));
            }
            c.arg(&self.root).arg(&self.exe);
            c
        } else {
            let mut c = Command::new(&self.exe);
            if let Some(uid) = uid {
                c.uid(uid).gid(uid);
            }
            c
        }
    }
}

/// The interpreters named by `PYMRI_INTERPRETERS` (the provisioning script's output) or
/// `$PYMRI_ROOTS/interpreters.env`. Missing ones fail the test.
pub fn interpreters() -> Vec<Interpreter> {
    let text = std::env::var("PYMRI_INTERPRETERS").ok().unwrap_or_else(|| {
        let roots = std::env::var("PYMRI_ROOTS").unwrap_or_else(|_| "/var/cache/pymri/roots".into());
        fs::read_to_string(Path::new(&roots).join("interpreters.env")).unwrap_or_default()
    });
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        let Some((root, exe)) = value.split_once(':') else { continue };
        let Some(digits) = key.strip_prefix("PYTHON3") else { continue };
        let (minor, debug) = match digits.strip_suffix('D') {
            Some(m) => (m, "d"),
            None => (digits, ""),
        };
        let name = format!("3.{minor}{debug}");
        if Path::new(root).join(exe.trim_start_matches('/')).exists() {
            found.insert(name.clone(), Interpreter { name, root: root.into(), exe: exe.into() });
        }
    }
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|n| !found.contains_key(*n)).collect();
    if !missing.is_empty() {
        panic!("interpreters missing: {missing:?}; run scripts/provision-interpreters.sh");
    }
    found.into_values().collect()
}

pub fn interpreter(name: &str) -> Option<Interpreter> {
    interpreters().into_iter().find(|i| i.name == name)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("repository root").to_path_buf()
}

static UNIQUE: AtomicU32 = AtomicU32::new(0);

/// A scratch directory inside an interpreter's root, removed on drop.
pub struct Scratch {
    pub host: PathBuf,
    pub inside: String,
}

impl Scratch {
    pub fn new(interp: &Interpreter) -> Scratch {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let inside = format!("/tmp/pymri-test-{}-{n}", std::process::id());
        let host = interp.host_path(&inside);
        fs::create_dir_all(&host).expect("scratch dir");
        Scratch { host, inside }
    }

    pub fn fifo(&self, name: &str) -> (PathBuf, String) {
        let host = self.host.join(name);
        let c = CString::new(host.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: `c` is a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo {}", host.display());
        (host, format!("{}/{name}", self.inside))
    }

    /// Copies `fixtures/PATH` (`inject_target.py`, `pdb/counter.py`) into the scratch directory
    /// by its file name; its path inside the root.
    pub fn copy_fixture(&self, path: &str) -> String {
        let src = repo_root().join("fixtures").join(path);
        let name = path.rsplit('/').next().unwrap_or(path);
        fs::copy(&src, self.host.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        format!("{}/{name}", self.inside)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.host);
    }
}

/// Reads lines from a FIFO with a deadline per line.
pub struct FifoReader {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl FifoReader {
    /// Opens without waiting for a writer.
    pub fn open(path: &Path) -> FifoReader {
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        FifoReader { fd: file.into(), buf: Vec::new() }
    }

    /// The next line, or an error if the deadline passes or every writer is gone.
    pub fn line(&mut self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no line within {timeout:?}"));
            }
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n <= 0 {
                continue;
            }
            let mut chunk = [0u8; 4096];
            // SAFETY: reading into a local buffer from a descriptor we own.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if r > 0 {
                self.buf.extend_from_slice(&chunk[..r as usize]);
            } else if r == 0 && (pfd.revents & libc::POLLHUP) != 0 {
                return Err("the writer closed the FIFO (target exited?)".into());
            }
        }
    }
}

/// A running target program, killed and reaped on drop.
pub struct Target {
    pub child: Child,
    pub interp: Interpreter,
    pub ready: FifoReader,
    /// The first line the target wrote once ready.
    pub ready_line: String,
    pub scratch: Scratch,
    pub stderr_path: PathBuf,
}

impl Target {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Starts `fixture` with `args`, where `{ready}` and `{control}` are replaced by the FIFOs'
    /// paths inside the root, and waits for its first line.
    pub fn start(interp: &Interpreter, fixture: &str, args: &[&str]) -> Target {
        Self::start_with(interp, fixture, args, &[], |_| {})
    }

    pub fn start_with(
        interp: &Interpreter,
        fixture: &str,
        args: &[&str],
        python_flags: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Target {
        Self::spawn(interp, fixture, args, python_flags, None, configure)
    }

    /// Like [`start_with`](Self::start_with), with the target running as user and group `uid`
    /// (its scratch directory and FIFOs handed to that user).
    pub fn start_as(
        interp: &Interpreter,
        fixture: &str,
        args: &[&str],
        python_flags: &[&str],
        uid: u32,
        configure: impl FnOnce(&mut Command),
    ) -> Target {
        Self::spawn(interp, fixture, args, python_flags, Some(uid), configure)
    }

    fn spawn(
        interp: &Interpreter,
        fixture: &str,
        args: &[&str],
        python_flags: &[&str],
        user: Option<u32>,
        configure: impl FnOnce(&mut Command),
    ) -> Target {
        let scratch = Scratch::new(interp);
        let script = scratch.copy_fixture(fixture);
        let (ready_host, ready_inside) = scratch.fifo("ready");
        let (_, control_inside) = scratch.fifo("control");
        let ready = FifoReader::open(&ready_host);
        let stderr_path = scratch.host.join("stderr");
        let stderr = fs::File::create(&stderr_path).expect("stderr file");
        if let Some(uid) = user {
            for path in
                [&scratch.host, &ready_host, &scratch.host.join("control"), &scratch.host.join(fixture)]
            {
                chown(path, uid);
            }
        }
        let mut cmd = interp.command(user);
        cmd.args(python_flags).arg(&script);
        for a in args {
            cmd.arg(a.replace("{ready}", &ready_inside).replace("{control}", &control_inside));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).env("PYTHONDONTWRITEBYTECODE", "1");
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn target");
        let mut target =
            Target { child, interp: interp.clone(), ready_line: String::new(), ready, scratch, stderr_path };
        match target.ready.line(READY_TIMEOUT) {
            Ok(line) => target.ready_line = line,
            Err(e) => panic!(
                "{} {fixture} did not become ready: {e}\nstderr:\n{}",
                interp.name,
                fs::read_to_string(&target.stderr_path).unwrap_or_default()
            ),
        }
        target
    }

    /// Sends a line on the control FIFO and returns the reply line.
    pub fn ask(&mut self, line: &str) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut control = fs::OpenOptions::new()
                .write(true)
                .open(self.scratch.host.join("control"))
                .expect("control fifo");
            // A fixture that reads its control FIFO line by line reopens it at each end of file:
            // an open that met the reader just before it closed finds no reader when it writes.
            // A line this short is written whole or not at all, so it is written again.
            match writeln!(control, "{line}") {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && Instant::now() < deadline => {
                    assert!(self.is_alive(), "{}: the target exited", self.interp.name);
                }
                Err(e) => panic!("{}: write control: {e}", self.interp.name),
            }
        }
        self.ready.line(READY_TIMEOUT).expect("reply from target")
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Whether any thread of the target is stopped (`T`) or traced (`t`).
    pub fn any_thread_stopped(&self) -> bool {
        let Ok(dir) = fs::read_dir(format!("/proc/{}/task", self.pid())) else { return false };
        dir.filter_map(|e| e.ok()).any(|e| {
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next());
            matches!(state, Some('T') | Some('t'))
        })
    }

    pub fn tracer_pid(&self) -> i32 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The line number of the `# @mark NAME` comment in the fixture.
    pub fn mark(&self, fixture: &str, name: &str) -> i32 {
        mark(fixture, name)
    }

    pub fn script_path(&self, fixture: &str) -> String {
        format!("{}/{fixture}", self.scratch.inside)
    }
}

fn chown(path: &Path, uid: u32) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::chown(c.as_ptr(), uid, uid) };
    assert_eq!(rc, 0, "chown {}", path.display());
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mark(fixture: &str, name: &str) -> i32 {
    let text = fs::read_to_string(repo_root().join("fixtures").join(fixture)).expect("fixture");
    let needle = format!("# @mark {name}");
    text.lines().position(|l| l.trim_end().ends_with(&needle)).map(|i| i as i32 + 1).expect("mark in fixture")
}

pub fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("command {cmd:?} did not finish within {deadline:?}");
        }
        // Waiting on a child process, not synchronising with a target: a short poll.
        std::thread::sleep(Duration::from_millis(2));
    };
    Output { status, stdout: out_thread.join().expect("stdout"), stderr: err_thread.join().expect("stderr") }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A program started under the agent's own command line (`python -m pymri_agent --listen ADDR
/// ...` or `--connect ADDR`), as a user starts it in a container or a function: the agent
/// package (the files the pymri binary embeds) staged in the scratch directory inside the
/// interpreter's root and put on `PYTHONPATH`. Its output is collected line by line; it is
/// killed and reaped on drop.
pub struct AgentProgram {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<(&'static str, String)>,
    /// Every line read so far, `stdout: ` or `stderr: ` first (shown when a test fails).
    pub transcript: String,
}

impl AgentProgram {
    /// Runs `python -m pymri_agent AGENT_ARGS` in `scratch` (paths in `agent_args` are inside
    /// the root).
    pub fn start(interp: &Interpreter, scratch: &Scratch, agent_args: &[&str]) -> AgentProgram {
        let package = scratch.host.join("agent").join(pymri_agent_files::PACKAGE);
        fs::create_dir_all(&package).expect("agent directory");
        for (name, text) in pymri_agent_files::FILES {
            fs::write(package.join(name), text).expect("agent file");
        }
        let mut cmd = interp.command(None);
        cmd.args(["-m", pymri_agent_files::PACKAGE]).args(agent_args);
        cmd.current_dir(&scratch.host)
            .env("PYTHONPATH", format!("{}/agent", scratch.inside))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("PYMRI_SECRET_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn python -m pymri_agent");
        let (tx, lines) = std::sync::mpsc::channel();
        for (name, stream) in [
            ("stdout", Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>),
            ("stderr", Box::new(child.stderr.take().expect("stderr"))),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((name, line)).is_err() {
                        break;
                    }
                }
            });
        }
        AgentProgram { child, lines, transcript: String::new() }
    }

    /// Waits for a line of its output (stdout or stderr) containing `needle`; returns it.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => {
                    self.transcript.push_str(&format!("{stream}: {line}\n"));
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    panic!("the program printed no {needle:?} within {timeout:?}:\n{}", self.transcript)
                }
            }
        }
    }

    /// Waits for it to exit (its output read to the end); its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => self.transcript.push_str(&format!("{stream}: {line}\n")),
                // Both streams closed: the program is gone (or about to be reaped).
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the program did not exit within {timeout:?}:\n{}", self.transcript)
                }
            }
        }
        self.child.wait().expect("wait").code()
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for AgentProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An unprivileged local user, created once with `useradd` for the security regression tests:
/// the attacker who shares the machine with a root pymri. Commands run as it through `runuser`.
#[derive(Debug, Clone)]
pub struct Attacker {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    /// Its home directory (created, owned by it).
    pub home: PathBuf,
}

/// The attacker account (`pymri-attacker`), made if it does not exist yet. Concurrent tests
/// serialise on a lock file so that `useradd` runs once.
pub fn attacker() -> Attacker {
    const NAME: &str = "pymri-attacker";
    let lock = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open("/tmp/.pymri-attacker.lock")
        .expect("attacker lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0, "flock");
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, NAME]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let status = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", "--user-group", NAME])
            .status()
            .expect("useradd (package passwd) must be installed");
        assert!(status.success(), "useradd {NAME} failed: {status}");
    }
    let uid = id("-u").expect("attacker uid");
    let gid = id("-g").expect("attacker gid");
    let home = PathBuf::from(format!("/home/{NAME}"));
    drop(lock);
    Attacker { name: NAME, uid, gid, home }
}

impl Attacker {
    /// `program args...` run as the attacker (`runuser -u pymri-attacker --`), with no
    /// capabilities and the attacker's own groups.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", self.name, "--"]).arg(program);
        c.env("HOME", &self.home);
        c
    }

    /// A Python snippet run as the attacker with the machine's own 3.11 (the attacker's tool,
    /// not a target).
    pub fn python(&self, code: &str) -> Command {
        let mut c = self.command("/usr/bin/python3.11");
        c.args(["-c", code]);
        c
    }
}
