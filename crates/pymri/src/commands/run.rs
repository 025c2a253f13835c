//! `pymri run`: start a program under the debugger, like `python -m pdb`.
//!
//! The launch follows the protocol's §9: the agent package is written into a private directory
//! (mode 0700, ours), the program is started as
//! `python -m pymri_agent.launch [-m module | script] ARGS` with that directory on
//! `PYTHONPATH`, the session secret in a pipe it inherits (`PYMRI_AGENT_SECRET_FD`), and one end
//! of a socket pair as its connection (`PYMRI_AGENT_ADDRESS=fd:N`): no listening socket, no
//! file in the file system that anyone else could connect to. The launcher removes all of that
//! from the program's view before the program's first line.
//!
//! The program keeps our stdin, stdout and stderr: it and the REPL share the terminal, as with
//! pdb (the program only runs while the REPL waits). It starts with SIGINT ignored: Ctrl-C
//! while it runs stops it in the debugger instead of raising `KeyboardInterrupt`.
//!
//! With `--root DIR` the program runs chrooted in DIR (a container's or a Debian root's file
//! system): `--python` and the script are paths inside DIR, and the private directory is made
//! in DIR's `/tmp`.
//!
//! The exit status is the program's own (128 + N if signal N killed it).

use crate::repl::{self, ExitOutcome, Mode, ReplOptions};
use anyhow::{anyhow, bail, Context, Result};
use pymri_agent_files::{FILES, PACKAGE};
use pymri_inject::stage::Stage;
use pymri_session::protocol::handshake::random_hex;
use pymri_session::protocol::requests::{Start, ThreadOffsets};
use pymri_session::Session;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub enum Program {
    Script(String),
    Module(String),
}

pub struct RunOptions {
    /// The interpreter (a path inside `root`); `python3` from `PATH` if `None`.
    pub python: Option<PathBuf>,
    /// Run the program chrooted in this directory.
    pub root: Option<PathBuf>,
    /// pdb's `-c`: commands run at the first stop.
    pub commands: Vec<String>,
    pub program: Program,
    pub args: Vec<String>,
}

/// Runs the program under the REPL; returns the program's exit status.
pub fn run(opts: RunOptions) -> Result<u8> {
    let root = match &opts.root {
        Some(r) => r.canonicalize().with_context(|| format!("--root {}", r.display()))?,
        None => PathBuf::from("/"),
    };
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let inside_cwd = working_directory(&root)?;
    let python = match &opts.python {
        Some(p) => p.clone(),
        None => find_on_path(&root, "python3").ok_or_else(|| {
            anyhow!(
                "python3 was not found on PATH{}\nhint: name the interpreter with --python PATH",
                in_root(&root)
            )
        })?,
    };
    let host_python = host_path(&root, &inside_cwd, &python);
    if !present(&host_python, true) {
        return Err(not_found(format!(
            "interpreter {} does not exist{}\nhint: name a CPython 3.9+ interpreter with --python PATH",
            python.display(),
            in_root(&root)
        ))
        .into());
    }
    let program_name = match &opts.program {
        Program::Script(script) => {
            let host_script = host_path(&root, &inside_cwd, Path::new(script));
            if !present(&host_script, false) {
                // pdb's own check, before anything starts.
                return Err(not_found(format!("{script} does not exist{}", in_root(&root))).into());
            }
            script.clone()
        }
        Program::Module(m) => m.clone(),
    };

    // The agent package, in a directory only we (and so the program, started by us) can read.
    let (uid, gid) = own_ids()?;
    let stage = Stage::create(&root, uid, gid).context("creating the agent's private directory")?;
    for (name, text) in FILES {
        stage.write(&format!("{PACKAGE}/{name}"), text.as_bytes()).context("writing the agent package")?;
    }

    let secret = random_hex(32)?;
    let (secret_read, secret_write) = pipe()?;
    {
        let mut w = File::from(secret_write);
        w.write_all(secret.as_bytes())?;
        w.write_all(b"\n")?;
    }
    let (ours, theirs) = UnixStream::pair().context("creating the agent's socket pair")?;

    let mut cmd = Command::new(&python);
    cmd.arg("-m").arg(format!("{PACKAGE}.launch"));
    match &opts.program {
        Program::Module(m) => {
            cmd.arg("-m").arg(m);
        }
        Program::Script(s) => {
            if s.starts_with('-') {
                cmd.arg("--");
            }
            cmd.arg(s);
        }
    }
    cmd.args(&opts.args);
    let mut pythonpath = OsString::from(stage.inside());
    if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        pythonpath.push(":");
        pythonpath.push(existing);
    }
    cmd.env("PYTHONPATH", pythonpath)
        .env("PYMRI_AGENT_ADDRESS", format!("fd:{}", theirs.as_raw_fd()))
        .env("PYMRI_AGENT_SECRET_FD", secret_read.as_raw_fd().to_string());
    let chroot = if root != Path::new("/") { Some((c_path(&root)?, c_path(&inside_cwd)?)) } else { None };
    let inherit = [theirs.as_raw_fd(), secret_read.as_raw_fd()];
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (fcntl, sigaction via signal, chroot, chdir) on values
    // prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in inherit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Ctrl-C is the debugger's: it pauses the program rather than raising in it.
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            if let Some((root, cwd)) = &chroot {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(cwd.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child =
        cmd.spawn().with_context(|| format!("starting {}{}", python.display(), in_root(&root)))?;
    drop(theirs);
    drop(secret_read);

    let session = match Session::connect(ours, &secret, "") {
        Ok(s) => s,
        Err(e) => {
            let status = wait_quietly(&mut child);
            return Err(anyhow::Error::new(e).context(format!(
                "the debugger agent did not start in {} ({status})\n\
                 hint: --python must name a CPython 3.9 to 3.15 interpreter",
                python.display()
            )));
        }
    };
    let (major, minor) = session.ready().python.minor_version();
    if let Err(e) =
        session.request(&Start { stop_on_entry: true, thread_offsets: thread_offsets(major, minor) })
    {
        let _ = child.kill();
        wait_quietly(&mut child);
        return Err(anyhow::Error::new(e).context("starting the program"));
    }

    let options = ReplOptions { mode: Mode::Run, commands: opts.commands, program: program_name };
    let outcome = repl::run_session(session, options);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = child.kill();
            wait_quietly(&mut child);
            return Err(e);
        }
    };
    let status = match outcome {
        // The program goes on undebugged: wait for it, letting Ctrl-C end it.
        ExitOutcome::Detached => wait_detached(&mut child)?,
        ExitOutcome::Quit | ExitOutcome::Lost(_) => child.wait()?,
    };
    if let ExitOutcome::Lost(reason) = &outcome {
        crate::printer::note(&format!("pymri: {reason}"));
    }
    drop(stage);
    Ok(exit_code(status))
}

/// `PyThreadState` offsets the agent needs to pause threads on 3.9-3.11 (§8.2).
fn thread_offsets(major: u32, minor: u32) -> Option<ThreadOffsets> {
    let (major, minor) = (u8::try_from(major).ok()?, u8::try_from(minor).ok()?);
    let (c_tracefunc, c_traceobj) = pymri_layouts::tracing::trace_offsets(major, minor)?;
    let layout = match minor {
        9 => pymri_layouts::v3_9(),
        10 => pymri_layouts::v3_10(),
        11 => pymri_layouts::v3_11(),
        _ => return None,
    };
    Some(ThreadOffsets { c_tracefunc, c_traceobj, thread_id: layout.thread.thread_id })
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => 1,
    }
}

fn wait_quietly(child: &mut Child) -> String {
    match child.wait() {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("it exited with status {c}"),
            (None, Some(sig)) => format!("it was killed by signal {sig}"),
            _ => "it ended".into(),
        },
        Err(e) => format!("waiting for it failed: {e}"),
    }
}

/// Waits for a detached program; Ctrl-C (which it ignores) ends it with SIGTERM.
fn wait_detached(child: &mut Child) -> Result<std::process::ExitStatus> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
    let handle = signals.handle();
    let pid = child.id() as libc::pid_t;
    let forwarder = std::thread::spawn(move || {
        for _ in signals.forever() {
            // SAFETY: kill(2) with a pid we started and have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    });
    let status = child.wait();
    handle.close();
    let _ = forwarder.join();
    Ok(status?)
}

/// Our effective user and group: the owner of `/proc/self`.
fn own_ids() -> Result<(u32, u32)> {
    let meta = std::fs::metadata("/proc/self").context("reading /proc/self")?;
    Ok((meta.uid(), meta.gid()))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the secret's pipe");
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("{}: a path with a NUL byte", p.display()))
}

fn not_found(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, message)
}

fn in_root(root: &Path) -> String {
    if root == Path::new("/") {
        String::new()
    } else {
        format!(" (inside {})", root.display())
    }
}

/// The program's working directory as it sees it: ours, or `/` if ours is outside the root.
fn working_directory(root: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("the current directory")?;
    if root == Path::new("/") {
        return Ok(cwd);
    }
    let cwd = cwd.canonicalize().unwrap_or(cwd);
    Ok(match cwd.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => PathBuf::from("/"),
    })
}

/// A path the program names (inside the root, relative to its working directory) as we reach it.
fn host_path(root: &Path, inside_cwd: &Path, p: &Path) -> PathBuf {
    let inside = inside_cwd.join(p);
    root.join(inside.strip_prefix("/").unwrap_or(&inside))
}

/// The first executable `name` on our `PATH`, searched inside `root`; the path inside the root.
fn find_on_path(root: &Path, name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| present(&root.join(candidate.strip_prefix("/").unwrap_or(candidate)), true))
}

/// Whether a file the program names exists. A symbolic link is taken on trust: inside a root,
/// an absolute target means a path in the root, which the host cannot resolve for us.
fn present(host: &Path, executable: bool) -> bool {
    match std::fs::symlink_metadata(host) {
        Ok(m) if m.file_type().is_symlink() => true,
        Ok(m) => m.is_file() && (!executable || m.permissions().mode() & 0o111 != 0),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_a_root() {
        let root = Path::new("/srv/root");
        assert_eq!(
            host_path(root, Path::new("/tmp/x"), Path::new("a.py")),
            Path::new("/srv/root/tmp/x/a.py")
        );
        assert_eq!(
            host_path(root, Path::new("/tmp/x"), Path::new("/usr/bin/python3")),
            Path::new("/srv/root/usr/bin/python3")
        );
        assert_eq!(
            host_path(Path::new("/"), Path::new("/home/u"), Path::new("b.py")),
            Path::new("/home/u/b.py")
        );
    }

    #[test]
    fn offsets_only_where_the_agent_needs_them() {
        assert_eq!(
            thread_offsets(3, 9),
            Some(ThreadOffsets { c_tracefunc: 64, c_traceobj: 80, thread_id: 176 })
        );
        assert_eq!(
            thread_offsets(3, 11),
            Some(ThreadOffsets { c_tracefunc: 72, c_traceobj: 88, thread_id: 152 })
        );
        assert_eq!(thread_offsets(3, 13), None);
    }

    #[test]
    fn exit_codes_are_the_programs() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
