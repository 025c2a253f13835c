//! `pymri snapshot PID -o FILE`: a core file of a live process (`pymri-coredump` takes it;
//! this module creates the file safely, shows the estimate and progress, and names failures).

use crate::printer::note;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pymri_coredump::{Options, Progress};
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct SnapshotOptions {
    pub pid: i32,
    pub output: PathBuf,
    pub force: bool,
    pub max_buffer: Option<u64>,
}

/// The core file could not be created, kept or written: exit status 9.
#[derive(Debug)]
pub struct OutputError {
    path: PathBuf,
    problem: OutputProblem,
}

#[derive(Debug)]
enum OutputProblem {
    Exists,
    Io(io::Error),
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            OutputProblem::Exists => write!(
                f,
                "{} exists already\nhint: pass --force to replace it, or choose another name",
                self.path.display()
            ),
            OutputProblem::Io(e) => write!(f, "cannot write {}: {e}", self.path.display()),
        }
    }
}

impl std::error::Error for OutputError {}

/// Progress bars only for writes long enough to watch.
const BAR_FROM: u64 = 64 * 1024 * 1024;

pub fn run(opts: SnapshotOptions) -> Result<()> {
    let started = Instant::now();
    let path = &opts.output;
    let pid = opts.pid;
    // A missing process or a refused permission is named before anything else.
    pymri_memory::ProcessMemory::open(pid)
        .with_context(|| format!("cannot take a snapshot of process {pid}"))?;
    let output_error = |problem| OutputError { path: path.clone(), problem };
    // Before the process is touched: a name that is taken or a directory that cannot be
    // written must not cost a stop.
    if !opts.force && path.symlink_metadata().is_ok() {
        return Err(output_error(OutputProblem::Exists).into());
    }
    let output = Output::create(path).map_err(|e| output_error(OutputProblem::Io(e)))?;
    let plan = match pymri_coredump::plan(pid, &Options { max_buffer: opts.max_buffer }) {
        Ok(plan) => plan,
        Err(e) => {
            let _ = output.discard();
            return Err(e).with_context(|| format!("cannot take a snapshot of process {pid}"));
        }
    };
    let estimate = *plan.estimate();
    let command = command_line(pid);
    note(&format!(
        "pymri snapshot: process {pid} ({command}): {}, {} mappings; about {} of memory to copy, \
         a core file of {}",
        threads(estimate.threads),
        estimate.mappings,
        size(estimate.memory),
        size(estimate.file)
    ));
    if estimate.buffered < estimate.memory {
        note(&format!(
            "pymri snapshot: the copy buffer holds {} (--max-buffer): the process stays stopped while the \
             other {} are written",
            size(estimate.buffered),
            size(estimate.memory - estimate.buffered)
        ));
    }
    let bar = (io::stderr().is_terminal() && estimate.memory >= BAR_FROM).then(|| {
        let bar = ProgressBar::with_draw_target(Some(estimate.file), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "pymri snapshot: {msg} {bar:30} {binary_bytes}/{binary_total_bytes}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message("process stopped, copying");
        bar
    });
    let mut on_progress = |p: Progress| {
        let Some(bar) = &bar else { return };
        match p {
            Progress::Stopped => bar.tick(),
            Progress::Resumed { total, .. } => {
                bar.set_length(total);
                bar.set_position(0);
                bar.set_message("process running, writing");
            }
            Progress::Written { bytes } => bar.inc(bytes),
        }
    };
    let report = match plan.write(output.file(), &mut on_progress) {
        Ok(report) => report,
        Err(e) => {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            // Nothing of it is left behind, whatever happened.
            let removed = output.discard();
            let what = if e.process_gone() {
                format!("process {pid} exited while its snapshot was taken")
            } else {
                format!("cannot take a snapshot of process {pid}")
            };
            let left = match removed {
                Ok(()) => format!("; nothing was written to {}", path.display()),
                Err(r) => format!("; the partial file could not be removed: {r}"),
            };
            let err = match e {
                pymri_coredump::Error::Write { source } => {
                    anyhow::Error::new(output_error(OutputProblem::Io(source)))
                        .context(format!("{what}{left}"))
                }
                other => anyhow::Error::new(other).context(format!("{what}{left}")),
            };
            return Err(err);
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    output.persist(path, opts.force).map_err(output_error)?;
    if report.unreadable_pages > 0 {
        note(&format!(
            "warning: {} pages of the process could not be read (a file mapping beyond its file's end?); \
             they are zeros in the core",
            report.unreadable_pages
        ));
    }
    note(&format!(
        "pymri snapshot: wrote {} ({}, {} of memory, {}) in {:.2} s; the process was stopped for {:.1} ms",
        path.display(),
        size(report.file),
        size(report.memory),
        threads(report.threads),
        started.elapsed().as_secs_f64(),
        report.stopped.as_secs_f64() * 1e3
    ));
    Ok(())
}

/// The command line, for the estimate line (`note` escapes it).
fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
    let text = String::from_utf8_lossy(raw).replace('\0', " ");
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None if text.is_empty() => "command unknown".into(),
        None => text,
    }
}

fn threads(n: usize) -> String {
    if n == 1 {
        "1 thread".into()
    } else {
        format!("{n} threads")
    }
}

fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (MIB * 1024.0))
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

/// The core file while it is written: a file with no name (`O_TMPFILE`) in FILE's directory,
/// given its name only once complete, so that a failure or a killed pymri leaves nothing
/// behind. Where the file system has no such files, a hidden file with a random name, created
/// exclusively, stands in for it and is renamed at the end.
struct Output {
    file: File,
    /// The stand-in's path, when `O_TMPFILE` was not available.
    named: Option<PathBuf>,
}

impl Output {
    fn create(path: &Path) -> io::Result<Output> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let c_dir = cstring(dir)?;
        // SAFETY: a valid NUL-terminated path; the descriptor returned is owned below.
        let fd = unsafe {
            libc::open(
                c_dir.as_ptr(),
                libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        let output = if fd >= 0 {
            // SAFETY: `fd` was just opened and is owned by nothing else.
            Output { file: unsafe { File::from_raw_fd(fd) }, named: None }
        } else {
            let err = io::Error::last_os_error();
            // File systems without unnamed files say so in several ways.
            if !matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL))
            {
                return Err(err);
            }
            let (file, named) = create_hidden(dir, path)?;
            Output { file, named: Some(named) }
        };
        give_to_sudo_user(&output.file)?;
        Ok(output)
    }

    fn file(&self) -> &File {
        &self.file
    }

    /// Gives the file its name: never over an existing one without `force` (a link there
    /// included), and with `force` by replacing the name itself, never what a link points at.
    fn persist(self, path: &Path, force: bool) -> Result<(), OutputProblem> {
        let io = OutputProblem::Io;
        let target = cstring(path).map_err(io)?;
        let temporary = match &self.named {
            Some(named) => named.clone(),
            None => {
                let proc_path =
                    cstring(Path::new(&format!("/proc/self/fd/{}", self.file.as_raw_fd()))).map_err(io)?;
                // linkat(2) refuses an existing name, a link included.
                match link(&proc_path, &target) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) && force => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(OutputProblem::Exists),
                    Err(e) => return Err(io(e)),
                }
                // Replacing: a name of our own first, then rename(2), which replaces the name.
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let mut tries = 0;
                loop {
                    let candidate = hidden_name(dir, path);
                    match link(&proc_path, &cstring(&candidate).map_err(io)?) {
                        Ok(()) => break candidate,
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < 16 => tries += 1,
                        Err(e) => return Err(io(e)),
                    }
                }
            }
        };
        let c_temporary = cstring(&temporary).map_err(io)?;
        let result = if force {
            std::fs::rename(&temporary, path)
        } else {
            // A hard link does not replace an existing name; then the hidden name goes.
            link(&c_temporary, &target).and_then(|()| std::fs::remove_file(&temporary))
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                if e.raw_os_error() == Some(libc::EEXIST) {
                    Err(OutputProblem::Exists)
                } else {
                    Err(io(e))
                }
            }
        }
    }

    /// Removes what was written: an unnamed file goes with its descriptor.
    fn discard(self) -> io::Result<()> {
        match &self.named {
            Some(named) => std::fs::remove_file(named),
            None => Ok(()),
        }
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn link(from: &CString, to: &CString) -> io::Result<()> {
    // SAFETY: two valid NUL-terminated paths. AT_SYMLINK_FOLLOW resolves /proc/self/fd/N to
    // the open file itself; the new name `to` is never followed.
    let rc = unsafe {
        libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `.NAME.pymri-RANDOM` beside `path`.
fn hidden_name(dir: &Path, path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "core".into());
    // pymri's one source of unguessable names (glibc's own getrandom is newer than the oldest
    // glibc the wheel runs on).
    let suffix = pymri_protocol::handshake::random_hex(6).unwrap_or_else(|_| {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{:012x}", nanos & 0xffff_ffff_ffff)
    });
    dir.join(format!(".{name}.pymri-{suffix}"))
}

fn create_hidden(dir: &Path, path: &Path) -> io::Result<(File, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..16 {
        let candidate = hidden_name(dir, path);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&candidate)
        {
            Ok(file) => return Ok((file, candidate)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from(io::ErrorKind::AlreadyExists))
}

/// Under sudo, the file belongs to the user who ran sudo: the snapshot is theirs to read,
/// without sudo. Otherwise to whoever runs pymri.
fn give_to_sudo_user(file: &File) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let id = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) else { return Ok(()) };
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
