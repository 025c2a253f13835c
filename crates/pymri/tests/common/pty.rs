//! Driving pymri's REPL in a pseudo-terminal, typing as a person would, and reading the screen.
//!
//! Every wait is for text on the screen (with a deadline), never a sleep.

use super::{Interpreter, Scratch};
use rexpect::process::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};
use rexpect::ReadUntil;
use std::process::Command;

/// pdb's prompt, which pymri keeps.
pub const PROMPT: &str = "(Pdb) ";
/// Deadline for each piece of expected output.
pub const TIMEOUT_MS: u64 = 10_000;

pub struct Repl {
    session: PtySession,
    pub scratch: Scratch,
    pub interp: Interpreter,
    /// Everything read so far, escape sequences removed (shown when a test fails).
    pub transcript: String,
}

/// How to start `pymri run`.
pub struct Launch<'a> {
    /// Fixtures from `fixtures/pdb/` copied next to each other into the scratch directory.
    pub fixtures: &'a [&'a str],
    /// Arguments after `pymri run --python ...` (the script and its arguments, `-c`, `-m`...).
    pub args: &'a [&'a str],
    /// Colours on (no `NO_COLOR`).
    pub colour: bool,
}

impl Repl {
    /// `pymri run` of `fixture` under `interp`, in the fixture's directory.
    pub fn run(interp: &Interpreter, fixture: &str) -> Repl {
        Repl::launch(interp, Launch { fixtures: &[fixture], args: &[fixture], colour: false })
    }

    pub fn launch(interp: &Interpreter, launch: Launch<'_>) -> Repl {
        let scratch = Scratch::new(interp);
        for name in launch.fixtures {
            scratch.copy_fixture(&format!("pdb/{name}"));
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
        cmd.arg("run");
        if interp.in_root() {
            cmd.arg("--root").arg(&interp.root);
        }
        cmd.arg("--python").arg(&interp.exe).args(launch.args);
        cmd.current_dir(&scratch.host).env("PYTHONDONTWRITEBYTECODE", "1").env_remove("PYTHONPATH");
        Repl::spawn(cmd, scratch, interp, launch.colour)
    }

    /// `pymri attach PID` (plus `extra` arguments) in a pseudo-terminal.
    pub fn attach(interp: &Interpreter, pid: i32, extra: &[&str]) -> Repl {
        let scratch = Scratch::new(interp);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
        cmd.arg("attach").args(extra).arg(pid.to_string());
        Repl::spawn(cmd, scratch, interp, false)
    }

    /// `pymri ARGS` in a pseudo-terminal (`connect`, `listen`), with `env` added.
    pub fn pymri(interp: &Interpreter, args: &[&str], env: &[(&str, &str)]) -> Repl {
        let scratch = Scratch::new(interp);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
        cmd.args(args).env_remove("PYMRI_SECRET_FILE");
        for (key, value) in env {
            cmd.env(key, value);
        }
        Repl::spawn(cmd, scratch, interp, false)
    }

    /// Runs `cmd` (pymri) in a pseudo-terminal, its history kept in `scratch`.
    fn spawn(mut cmd: Command, scratch: Scratch, interp: &Interpreter, colour: bool) -> Repl {
        cmd.env("TERM", "xterm").env("XDG_STATE_HOME", &scratch.host);
        if colour {
            cmd.env_remove("NO_COLOR");
        } else {
            cmd.env("NO_COLOR", "1");
        }
        let options = Options::new().timeout_ms(Some(TIMEOUT_MS));
        let session = spawn_with_options(cmd, options).expect("spawn pymri in a pty");
        Repl { session, scratch, interp: interp.clone(), transcript: String::new() }
    }

    /// Gives the terminal a size (a fresh pseudo-terminal has none, and a full-screen view
    /// draws nothing in it); the program is told by SIGWINCH.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let master = self.session.process().get_file_handle().expect("the pty's master");
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let done = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(done, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Waits (within the deadline) for more output; returns all that has arrived, raw.
    pub fn read_raw(&mut self) -> String {
        match self.session.exp_any(vec![ReadUntil::NBytes(1)]) {
            Ok((_, mut raw)) => {
                while let Some(c) = self.session.try_read() {
                    raw.push(c);
                }
                self.transcript.push_str(&strip(&raw));
                raw
            }
            Err(e) => panic!(
                "[{}] waiting for output: {e}\n---- transcript ----\n{}\n--------------------",
                self.interp.name, self.transcript
            ),
        }
    }

    /// Sends `signal` to pymri.
    pub fn signal(&mut self, signal: rexpect::process::Signal) {
        self.session.process_mut().signal(signal).expect("signal pymri");
    }

    /// Kills pymri itself with SIGKILL, as a crash or an OOM killer would.
    pub fn kill_hard(&mut self) {
        self.session.process_mut().signal(rexpect::process::Signal::SIGKILL).expect("SIGKILL pymri");
    }

    /// The path of a fixture as the program sees it.
    pub fn path(&self, fixture: &str) -> String {
        format!("{}/{fixture}", self.scratch.inside)
    }

    /// Waits for `needle`; returns the screen text before it (escapes removed, `\r` dropped).
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_raw(needle).0
    }

    /// Like [`expect`](Self::expect), also returning the raw bytes before the needle.
    pub fn expect_raw(&mut self, needle: &str) -> (String, String) {
        match self.session.exp_string(needle) {
            Ok(raw) => {
                let text = strip(&raw);
                self.transcript.push_str(&text);
                self.transcript.push_str(&strip(needle));
                (text, raw)
            }
            Err(e) => panic!(
                "[{}] waiting for {needle:?}: {e}\n---- transcript ----\n{}\n--------------------",
                self.interp.name, self.transcript
            ),
        }
    }

    /// Waits for the next prompt; returns what was printed before it.
    pub fn prompt(&mut self) -> String {
        self.expect(PROMPT)
    }

    /// Waits for the next prompt or for pymri's exit: `Ok` with the text before the prompt,
    /// `Err` with the text before the end (then [`finish`](Self::finish) gives the status).
    pub fn prompt_or_exit(&mut self) -> Result<String, String> {
        let until = vec![ReadUntil::String(PROMPT.into()), ReadUntil::EOF];
        match self.session.exp_any(until) {
            Ok((before, matched)) => {
                let text = strip(&before);
                self.transcript.push_str(&text);
                self.transcript.push_str(&strip(&matched));
                if matched == PROMPT {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
            Err(e) => panic!(
                "[{}] waiting for a prompt or the end: {e}\n---- transcript ----\n{}",
                self.interp.name, self.transcript
            ),
        }
    }

    /// Types `line` and Enter, waits for the next prompt, returns the output in between
    /// (without the echo of the typed line).
    pub fn cmd(&mut self, line: &str) -> String {
        self.type_line(line);
        self.prompt()
    }

    /// Types `line` and Enter, and waits for the line to be taken (its echo's end).
    pub fn type_line(&mut self, line: &str) {
        self.send(&format!("{line}\r"));
        self.expect("\n");
    }

    /// Sends keys as they are (`\t` for Tab, `\r` for Enter).
    pub fn send(&mut self, keys: &str) {
        self.session.send(keys).expect("write to the pty");
        self.session.flush().expect("flush the pty");
    }

    /// Ctrl-C, Ctrl-D...
    pub fn control(&mut self, c: char) {
        self.session.send_control(c).expect("control key");
    }

    /// Waits for pymri to exit; its exit status.
    pub fn exit_status(&mut self) -> i32 {
        self.finish().1
    }

    /// Waits for pymri to exit: what it printed until then, and its exit status.
    pub fn finish(&mut self) -> (String, i32) {
        let rest = match self.session.exp_eof() {
            Ok(raw) => strip(&raw),
            Err(e) => panic!(
                "[{}] pymri did not exit: {e}\n---- transcript ----\n{}",
                self.interp.name, self.transcript
            ),
        };
        self.transcript.push_str(&rest);
        let status = match self.session.process().wait() {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            other => panic!("unexpected wait status {other:?}"),
        };
        (rest, status)
    }
}

/// Screen text without terminal escape sequences and carriage returns.
pub fn strip(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    // CSI: parameters and intermediates, then one final byte in @..~
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}
