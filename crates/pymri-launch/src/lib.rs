//! Starting a Python program with the pymri agent inside it: the launch of protocol §9, shared
//! by `pymri run` (the pdb-style REPL) and `pymri dap` (the Debug Adapter Protocol server).
//!
//! [`launch`] writes the agent package into a private directory (mode 0700, ours), starts
//! `python -m pymri_agent.launch [-m module | script] ARGS` with that directory on
//! `PYTHONPATH`, the session secret in a pipe the program inherits (`PYMRI_AGENT_SECRET_FD`)
//! and one end of a socket pair as its connection (`PYMRI_AGENT_ADDRESS=fd:N`): no listening
//! socket, no file anyone else could connect to. It then runs the handshake and returns the
//! [`Session`] together with the [`Process`]. The launcher removes all of that from the
//! program's view before the program's first line.
//!
//! The caller configures the session (breakpoints, exception filters) and then calls
//! [`Launched::start`], which lets the program run (stopping at its first line if asked).
//!
//! Options cover what both front ends need: the interpreter (and its own flags), a root to
//! `chroot` into (a container's or a distribution's root file system: the interpreter, the
//! script and the working directory are then paths inside it, and the private directory is made
//! in its `/tmp`), the program (a script or a module) and its arguments, the working directory,
//! environment changes, and what to do with the program's standard streams: share ours (the
//! REPL and the program take turns on one terminal) or hand them to the caller as pipes (a DAP
//! client shows them as `output` events).
//!
//! Between fork and exec only async-signal-safe calls run: two descriptors lose
//! `FD_CLOEXEC`, SIGINT is ignored and the parent-death signal set if asked, and with a root the
//! child `chroot`s and enters its working directory.
//!
//! Non-goals: what happens after the start (the front ends drive the session), waiting for the
//! program (the caller owns its [`Child`]).

use pymri_agent_files::{FILES, PACKAGE};
use pymri_inject::stage::{Root, Stage};
use pymri_session::protocol::handshake::random_hex;
use pymri_session::protocol::requests::{Start, ThreadOffsets};
use pymri_session::{Session, SessionError};
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A script path, relative to the working directory or absolute (inside the root).
    Script(String),
    /// A module run like `python -m MODULE`.
    Module(String),
}

/// Where the program's standard streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Streams {
    /// Ours: stdin, stdout and stderr are shared with the program.
    #[default]
    Inherit,
    /// stdin is `/dev/null`; stdout and stderr are pipes, taken from [`Process::child`].
    Pipe,
}

#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The interpreter (a path inside `root`); `python3` from `PATH` if `None`.
    pub python: Option<PathBuf>,
    /// Flags for the interpreter itself, before `-m pymri_agent.launch` (`-X dev`, say).
    pub python_args: Vec<String>,
    /// Run the program chrooted in this directory.
    pub root: Option<PathBuf>,
    pub program: Program,
    pub args: Vec<String>,
    /// The working directory as the program sees it (inside `root`); ours if `None` (or `/` if
    /// ours is outside the root). A relative path is taken from that default.
    pub cwd: Option<PathBuf>,
    /// Environment changes on top of ours: set a variable, or remove it (`None`).
    pub env: Vec<(String, Option<String>)>,
    pub streams: Streams,
    /// Start the program with SIGINT ignored (Ctrl-C belongs to the debugger).
    pub ignore_sigint: bool,
    /// SIGKILL the program when the thread that launched it ends (`PR_SET_PDEATHSIG`): a
    /// debugger that dies takes its program along. Launch from a thread that lives as long as
    /// the session (the kernel ties this to the thread, not the process).
    pub kill_with_parent: bool,
}

impl LaunchOptions {
    /// Options for `program` with everything else at its default.
    pub fn new(program: Program) -> LaunchOptions {
        LaunchOptions {
            python: None,
            python_args: Vec::new(),
            root: None,
            program,
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            streams: Streams::Inherit,
            ignore_sigint: false,
            kill_with_parent: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// A path the user named is missing or unusable (the interpreter, the script, the root, the
    /// working directory). The error's kind says which case (`NotFound`, ...) and its text is
    /// for the user.
    #[error("{0}")]
    Unusable(#[source] io::Error),
    /// Preparing or starting the program failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The program started but its agent did not complete the handshake.
    #[error("the debugger agent did not start in {python} ({status})\nhint: the interpreter must be CPython 3.9 to 3.15")]
    AgentDidNotStart {
        python: String,
        status: String,
        #[source]
        source: SessionError,
    },
}

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> LaunchError {
    let context = context.into();
    move |source| LaunchError::Io { context, source }
}

fn unusable(kind: io::ErrorKind, message: String) -> LaunchError {
    LaunchError::Unusable(io::Error::new(kind, message))
}

/// A program started under the agent, its session authenticated, not yet started.
pub struct Launched {
    pub session: Session,
    pub process: Process,
}

/// The launched program's process, and the private directory holding the agent (removed when
/// this is dropped; the program may import more of the agent while it runs).
pub struct Process {
    pub child: Child,
    /// The root the program runs in (`/` without one), canonical.
    pub root: PathBuf,
    /// The program's working directory, as it sees it.
    pub cwd: PathBuf,
    /// The interpreter, as the program's root sees it.
    pub python: PathBuf,
    /// The script or module, as given.
    pub program_name: String,
    _stage: Stage,
}

impl Launched {
    /// Lets the program run (protocol's `start`), stopping at its first line if
    /// `stop_on_entry`; before it, the caller sets breakpoints and exception filters. Passes the
    /// thread-state offsets the agent needs to pause threads on 3.9-3.11.
    pub fn start(&self, stop_on_entry: bool) -> Result<(), SessionError> {
        start(&self.session, stop_on_entry)
    }
}

/// [`Launched::start`] for a session already taken out of its [`Launched`].
pub fn start(session: &Session, stop_on_entry: bool) -> Result<(), SessionError> {
    let (major, minor) = session.ready().python.minor_version();
    session.request(&Start { stop_on_entry, thread_offsets: thread_offsets(major, minor) })?;
    Ok(())
}

/// Starts the program under the agent and authenticates its session.
pub fn launch(opts: &LaunchOptions) -> Result<Launched, LaunchError> {
    let root = match &opts.root {
        Some(r) => r.canonicalize().map_err(io_context(format!("root directory {}", r.display())))?,
        None => PathBuf::from("/"),
    };
    if !root.is_dir() {
        return Err(unusable(io::ErrorKind::NotADirectory, format!("{}: not a directory", root.display())));
    }
    let default_cwd = working_directory(&root)?;
    let inside_cwd = match &opts.cwd {
        Some(cwd) => default_cwd.join(cwd),
        None => default_cwd,
    };
    if opts.cwd.is_some() && !host_path(&root, Path::new("/"), &inside_cwd).is_dir() {
        return Err(unusable(
            io::ErrorKind::NotFound,
            format!("working directory {} does not exist{}", inside_cwd.display(), in_root(&root)),
        ));
    }
    let python = match &opts.python {
        Some(p) => p.clone(),
        None => find_on_path(&root, "python3").ok_or_else(|| {
            unusable(
                io::ErrorKind::NotFound,
                format!(
                    "python3 was not found on PATH{}\nhint: name the interpreter with --python PATH",
                    in_root(&root)
                ),
            )
        })?,
    };
    let host_python = host_path(&root, &inside_cwd, &python);
    if !present(&host_python, true) {
        return Err(unusable(
            io::ErrorKind::NotFound,
            format!(
                "interpreter {} does not exist{}\nhint: name a CPython 3.9+ interpreter with --python PATH",
                python.display(),
                in_root(&root)
            ),
        ));
    }
    let program_name = match &opts.program {
        Program::Script(script) => {
            let host_script = host_path(&root, &inside_cwd, Path::new(script));
            if !present(&host_script, false) {
                // pdb's own check, before anything starts.
                return Err(unusable(
                    io::ErrorKind::NotFound,
                    format!("{script} does not exist{}", in_root(&root)),
                ));
            }
            script.clone()
        }
        Program::Module(m) => m.clone(),
    };

    // The agent package, in a directory only we (and so the program, started by us) can read.
    let (uid, gid) = own_ids()?;
    let stage = Root::open(&root)
        .and_then(|r| Stage::create(&r, uid, gid))
        .map_err(io_context("creating the agent's private directory"))?;
    for (name, text) in FILES {
        stage
            .write(&format!("{PACKAGE}/{name}"), text.as_bytes())
            .map_err(io_context("writing the agent package"))?;
    }

    let secret = random_hex(32).map_err(io_context("making the session secret"))?;
    let (secret_read, secret_write) = pipe()?;
    {
        let mut w = File::from(secret_write);
        w.write_all(secret.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(io_context("passing the session secret"))?;
    }
    let (ours, theirs) = UnixStream::pair().map_err(io_context("creating the agent's socket pair"))?;

    let mut cmd = Command::new(&python);
    cmd.args(&opts.python_args).arg("-m").arg(format!("{PACKAGE}.launch"));
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
    for (name, value) in &opts.env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let mut pythonpath = OsString::from(stage.inside());
    let existing = match opts.env.iter().rev().find(|(name, _)| name == "PYTHONPATH") {
        Some((_, value)) => value.as_ref().map(OsString::from),
        None => std::env::var_os("PYTHONPATH"),
    };
    if let Some(existing) = existing.filter(|p| !p.is_empty()) {
        pythonpath.push(":");
        pythonpath.push(existing);
    }
    cmd.env("PYTHONPATH", pythonpath)
        .env("PYMRI_AGENT_ADDRESS", format!("fd:{}", theirs.as_raw_fd()))
        .env("PYMRI_AGENT_SECRET_FD", secret_read.as_raw_fd().to_string());
    if opts.streams == Streams::Pipe {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let chroot = if root != Path::new("/") {
        Some((c_path(&root)?, c_path(&inside_cwd)?))
    } else {
        if opts.cwd.is_some() {
            cmd.current_dir(&inside_cwd);
        }
        None
    };
    let inherit = [theirs.as_raw_fd(), secret_read.as_raw_fd()];
    let ignore_sigint = opts.ignore_sigint;
    let parent = opts.kill_with_parent.then(|| std::process::id() as libc::pid_t);
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (fcntl, prctl, getppid, sigaction via signal, chroot,
    // chdir) on values prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in inherit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(parent) = parent {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The launcher may have died before the request was made.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            if ignore_sigint {
                // Ctrl-C is the debugger's: it pauses the program rather than raising in it.
                libc::signal(libc::SIGINT, libc::SIG_IGN);
            }
            if let Some((root, cwd)) = &chroot {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(cwd.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child =
        cmd.spawn().map_err(io_context(format!("starting {}{}", python.display(), in_root(&root))))?;
    drop(theirs);
    drop(secret_read);

    let session = match Session::connect(ours, &secret, "") {
        Ok(s) => s,
        Err(source) => {
            let status = describe_exit(&mut child);
            return Err(LaunchError::AgentDidNotStart {
                python: python.display().to_string(),
                status,
                source,
            });
        }
    };
    Ok(Launched {
        session,
        process: Process { child, root, cwd: inside_cwd, python, program_name, _stage: stage },
    })
}

/// `PyThreadState` offsets the agent needs to pause threads on 3.9-3.11 (§8.2).
pub fn thread_offsets(major: u32, minor: u32) -> Option<ThreadOffsets> {
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

/// Waits for a program whose agent failed, and says how it ended.
fn describe_exit(child: &mut Child) -> String {
    match child.wait() {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("it exited with status {c}"),
            (None, Some(sig)) => format!("it was killed by signal {sig}"),
            _ => "it ended".into(),
        },
        Err(e) => format!("waiting for it failed: {e}"),
    }
}

/// Our effective user and group: the owner of `/proc/self`.
fn own_ids() -> Result<(u32, u32), LaunchError> {
    let meta = std::fs::metadata("/proc/self").map_err(io_context("reading /proc/self"))?;
    Ok((meta.uid(), meta.gid()))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(LaunchError::Io {
            context: "creating the secret's pipe".into(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn c_path(p: &Path) -> Result<CString, LaunchError> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
        unusable(io::ErrorKind::InvalidInput, format!("{}: a path with a NUL byte", p.display()))
    })
}

fn in_root(root: &Path) -> String {
    if root == Path::new("/") {
        String::new()
    } else {
        format!(" (inside {})", root.display())
    }
}

/// The program's default working directory as it sees it: ours, or `/` if ours is outside the
/// root.
fn working_directory(root: &Path) -> Result<PathBuf, LaunchError> {
    let cwd = std::env::current_dir().map_err(io_context("the current directory"))?;
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
pub fn host_path(root: &Path, inside_cwd: &Path, p: &Path) -> PathBuf {
    let inside = inside_cwd.join(p);
    root.join(inside.strip_prefix("/").unwrap_or(&inside))
}

/// The first executable `name` on our `PATH`, searched inside `root`; the path inside the root.
fn find_on_path(root: &Path, name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| present(&host_path(root, Path::new("/"), candidate), true))
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
    fn missing_script_and_interpreter_are_refused_before_anything_starts() {
        let mut opts = LaunchOptions::new(Program::Script("/nonexistent/script.py".into()));
        opts.python = Some(PathBuf::from("/nonexistent/python3"));
        let Err(LaunchError::Unusable(e)) = launch(&opts) else { panic!("the interpreter is missing") };
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("interpreter /nonexistent/python3 does not exist"), "{e}");

        opts.python = Some(PathBuf::from("/bin/sh"));
        let Err(LaunchError::Unusable(e)) = launch(&opts) else { panic!("the script is missing") };
        assert_eq!(e.to_string(), "/nonexistent/script.py does not exist");

        opts.cwd = Some(PathBuf::from("/nonexistent"));
        let Err(LaunchError::Unusable(e)) = launch(&opts) else { panic!("the directory is missing") };
        assert!(e.to_string().starts_with("working directory /nonexistent does not exist"), "{e}");
    }
}
