//! `pymri web`: the debugger in a browser page (`pymri-web`), over a session made the way
//! `pymri attach`, `pymri run` or `pymri connect` makes it.
//!
//! The page's console runs the REPL's own commands ([`crate::repl::WebConsole`]). The address
//! is bound before anything is done to the target, so a refused or busy address fails first.
//! Ctrl-C ends the session like `q`: a detach from a running process, the end of a launched
//! one. A launched program's output goes both to our terminal and to the page.

use super::remote::{self, SecretSource};
use super::run;
use crate::printer::note;
use crate::repl::{self, WebConsole};
use anyhow::{bail, Context, Result};
use pymri_launch::Streams;
use pymri_session::Session;
use pymri_web::{Debugger, Mode, Outcome, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use pymri_launch::Program;

pub enum WebTarget {
    /// A running process.
    Attach { pid: i32, thread: Option<i32>, timeout: Duration },
    /// A program to start, as `pymri run` does.
    Launch { python: Option<PathBuf>, root: Option<PathBuf>, program: Program, args: Vec<String> },
    /// An agent listening at an address.
    Connect { address: String, secret: SecretSource },
}

pub struct WebOptions {
    pub target: WebTarget,
    /// `--listen`: `[ADDR:]PORT`.
    pub listen: String,
    /// Open the page in a browser.
    pub open: bool,
}

/// Serves the page until the session ends; returns the exit status (a launched program's own).
pub fn run(opts: WebOptions) -> Result<u8> {
    let addr = pymri_web::parse_listen(&opts.listen)?;
    let server = Server::bind(addr)?;
    match opts.target {
        WebTarget::Attach { pid, thread, timeout } => {
            let super::attach::Attached { live, pending, session } =
                super::attach::connect(pid, thread, timeout, true)?;
            let page = Page { server, open: opts.open, mode: Mode::Attach, program: live.command.clone() };
            let (outcome, _) = page.serve(session, None)?;
            // The staging directory goes after the session: the agent may import more of itself.
            drop(pending);
            lost_is_an_error(outcome)
        }
        WebTarget::Launch { python, root, program, args } => {
            let (mut process, session) =
                run::launch_to_first_line(python, root, program, args, Streams::Pipe)?;
            let page =
                Page { server, open: opts.open, mode: Mode::Launch, program: process.program_name.clone() };
            let (outcome, status) = match page.serve(session, Some(&mut process.child)) {
                Ok(done) => done,
                Err(e) => {
                    run::kill(&mut process.child);
                    return Err(e);
                }
            };
            if let Outcome::Lost(reason) = &outcome {
                note(&format!("pymri: {reason}"));
            }
            drop(process);
            Ok(status.map_or(0, run::exit_code))
        }
        WebTarget::Connect { address, secret } => {
            let session = remote::connect(&address, &secret)?;
            let program = remote::program_name(&session);
            // Ending the page's session detaches: the program goes on, the agent listens again.
            let page = Page { server, open: opts.open, mode: Mode::Attach, program };
            let (outcome, _) = page.serve_with(session, None, repl::Mode::Remote)?;
            lost_is_an_error(outcome)
        }
    }
}

/// A page over a process pymri did not start: a lost session is a failure (exit 1), as for
/// `pymri attach`; a launched program's end is its own status instead.
fn lost_is_an_error(outcome: Outcome) -> Result<u8> {
    match outcome {
        Outcome::Lost(reason) => bail!("the session with the agent was lost: {reason}"),
        Outcome::Quit | Outcome::Detached => Ok(0),
    }
}

struct Page {
    server: Server,
    open: bool,
    mode: Mode,
    program: String,
}

impl Page {
    /// Serves until the session ends; with a launched `child`, then waits for it and returns
    /// its exit.
    fn serve(self, session: Session, child: Option<&mut Child>) -> Result<(Outcome, Option<ExitStatus>)> {
        let repl_mode = match self.mode {
            Mode::Attach => repl::Mode::Attach,
            Mode::Launch => repl::Mode::Run,
        };
        self.serve_with(session, child, repl_mode)
    }

    /// [`serve`](Self::serve) with the console's commands behaving as in `repl_mode`.
    fn serve_with(
        self,
        session: Session,
        child: Option<&mut Child>,
        repl_mode: repl::Mode,
    ) -> Result<(Outcome, Option<ExitStatus>)> {
        let session = Arc::new(session);
        let console = WebConsole::new(Arc::clone(&session), repl_mode, self.program.clone());
        let url = self.server.url();
        note(&format!("pymri web: the debugger of {} is at", crate::escape::Name(&self.program)));
        note(&format!("    {url}"));
        note("Open it in a browser on this machine; Ctrl-C ends the session.");
        let _opened = if self.open { open_browser(&url) } else { None };
        let options =
            pymri_web::WebOptions { mode: self.mode, program: self.program.clone(), notify: Box::new(note) };
        let debugger = Debugger::new(session, Box::new(console), options, self.server.hub());

        // Ctrl-C (and SIGTERM): end the session; once it ended, end a detached program.
        let child_pid = Arc::new(AtomicI32::new(0));
        let mut signals = Signals::new([SIGINT, SIGTERM]).context("catching Ctrl-C")?;
        let handle = signals.handle();
        let forwarder = {
            let debugger = Arc::clone(&debugger);
            let child_pid = Arc::clone(&child_pid);
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    match child_pid.load(Ordering::SeqCst) {
                        0 => debugger.end(),
                        // SAFETY: kill(2) with the pid of our child, not reaped yet.
                        pid => unsafe {
                            libc::kill(pid, libc::SIGTERM);
                        },
                    }
                }
            })
        };
        let mut echoes = Vec::new();
        let mut child = child;
        if let Some(child) = child.as_deref_mut() {
            if let Some(out) = child.stdout.take() {
                echoes.push(echo(out, "stdout", Arc::clone(&debugger)));
            }
            if let Some(err) = child.stderr.take() {
                echoes.push(echo(err, "stderr", Arc::clone(&debugger)));
            }
        }
        let served = debugger.run(self.server).context("serving the page");
        let result = served.and_then(|outcome| {
            let status = match child {
                Some(child) => {
                    child_pid.store(child.id() as i32, Ordering::SeqCst);
                    Some(child.wait().context("waiting for the program")?)
                }
                None => None,
            };
            Ok((outcome, status))
        });
        handle.close();
        let _ = forwarder.join();
        for e in echoes {
            let _ = e.join();
        }
        result
    }
}

/// Copies one of a launched program's streams to ours and to the page, until it ends.
fn echo(mut from: impl Read + Send + 'static, name: &'static str, debugger: Arc<Debugger>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        // Bytes of a character cut by a read, kept for the next one.
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let _ = if name == "stdout" {
                std::io::stdout().lock().write_all(chunk).and_then(|()| std::io::stdout().flush())
            } else {
                std::io::stderr().lock().write_all(chunk)
            };
            partial.extend_from_slice(chunk);
            let cut = match std::str::from_utf8(&partial) {
                Ok(_) => partial.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => partial.len(),
            };
            let text = String::from_utf8_lossy(&partial[..cut]).into_owned();
            partial.drain(..cut);
            if !text.is_empty() {
                debugger.program_output(name, &text);
            }
        }
    })
}

/// Opens the page with `$BROWSER` or `xdg-open`. The URL is passed through a private file that
/// redirects to it, so that the token never appears on a command line other users can read.
fn open_browser(url: &str) -> Option<tempdir::Redirect> {
    let redirect = match tempdir::Redirect::create(url) {
        Ok(r) => r,
        Err(e) => {
            note(&format!("pymri web: could not prepare the browser's page: {e}"));
            return None;
        }
    };
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let program = browser.unwrap_or_else(|| "xdg-open".to_string());
    let started = std::process::Command::new(&program)
        .arg(redirect.file_url())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = started {
        note(&format!("pymri web: could not start {program}: {e}; open the address above yourself"));
    }
    Some(redirect)
}

mod tempdir {
    //! A private directory (mode 0700) holding one HTML file that sends the browser to the page.

    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::path::PathBuf;

    pub struct Redirect {
        dir: PathBuf,
        file: PathBuf,
    }

    impl Redirect {
        pub fn create(url: &str) -> std::io::Result<Redirect> {
            let base = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .filter(|d| d.is_dir())
                .unwrap_or_else(std::env::temp_dir);
            let name = pymri_session::protocol::handshake::random_hex(8)?;
            let dir = base.join(format!("pymri-web-{name}"));
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            let file = dir.join("open.html");
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file)?;
            let escaped = url.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
            writeln!(
                f,
                "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={escaped}\">\
                 <title>pymri</title><a href=\"{escaped}\">Open the pymri debugger</a>"
            )?;
            Ok(Redirect { dir, file })
        }

        pub fn file_url(&self) -> String {
            format!("file://{}", self.file.display())
        }
    }

    impl Drop for Redirect {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_file_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let url = "http://127.0.0.1:5/?token=ab&x=\"1\"";
        let redirect = tempdir::Redirect::create(url).expect("redirect");
        let path = redirect.file_url().trim_start_matches("file://").to_string();
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(text.contains("url=http://127.0.0.1:5/?token=ab&amp;x=&quot;1&quot;"), "{text}");
        let dir = std::path::Path::new(&path).parent().expect("dir").to_path_buf();
        assert_eq!(std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777, 0o700);
        drop(redirect);
        assert!(!dir.exists());
    }
}
