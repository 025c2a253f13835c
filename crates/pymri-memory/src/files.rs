//! Opening files whose names come from a target or a core file.
//!
//! pymri runs as root and opens the binaries a target mapped, by the paths the target (or a
//! core file, which anyone can write) names. Such a path may lead to a FIFO (an open for
//! reading waits for a writer forever), a device (opening one can have effects), a huge sparse
//! file, or, through symlinks the target's user planted, out of the root the process ran in.
//! So each file is first opened with `O_PATH`, which neither blocks nor opens the object
//! behind the name, checked with `fstat` (a regular file, of bounded size), and only then
//! reopened for reading through `/proc/self/fd`, which reaches the very inode checked.
//! Paths inside another root are resolved with `openat2(RESOLVE_IN_ROOT)`: `..` and absolute
//! symlinks stay inside that root, as they did for the process.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The largest file pymri maps from a target's or a core's file list: far above any
/// interpreter binary, far below what a sparse file could claim.
pub const MAX_MAPPED_FILE: u64 = 1 << 32;

/// Opens `path` for reading if it is a regular file of at most `max_len` bytes. Symlinks are
/// followed (the magic links of `/proc/PID/map_files` are how one reaches a mapped file).
pub fn open_regular(path: &Path, max_len: u64) -> io::Result<File> {
    let c = cstring(path)?;
    // SAFETY: a valid NUL-terminated path; the descriptor returned is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    reopen_regular(path, unsafe { OwnedFd::from_raw_fd(fd) }, max_len)
}

/// Opens `path`, as seen by a process whose root is `root`, for reading if it is a regular file
/// of at most `max_len` bytes. `..`, absolute symlinks and magic links cannot leave `root`.
pub fn open_in_root(root: &Path, path: &Path, max_len: u64) -> io::Result<File> {
    let c_root = cstring(root)?;
    // SAFETY: a valid NUL-terminated path; the descriptor returned is owned below.
    let dir = unsafe { libc::open(c_root.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dir` was just opened and is owned by nobody else.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    let relative = path.strip_prefix("/").unwrap_or(path);
    let c_path = cstring(if relative.as_os_str().is_empty() { Path::new(".") } else { relative })?;
    let opened =
        openat2(dir.as_fd(), &c_path, libc::O_PATH, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS);
    let shown = root.join(relative);
    let fd = match opened {
        Ok(fd) => fd,
        // Without openat2, at least the file itself must not be a symlink.
        Err(err) if openat2_missing(&err) => {
            // SAFETY: a valid directory descriptor and NUL-terminated path.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    c_path.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened and is owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        }
        Err(err) => return Err(err),
    };
    reopen_regular(&shown, fd, max_len)
}

/// `openat2(2)`: `path` opened from `dir` with `flags` (and `O_CLOEXEC`), resolved under the
/// `resolve` restrictions (`RESOLVE_IN_ROOT`, `RESOLVE_BENEATH`, `RESOLVE_NO_SYMLINKS`, ...).
/// Where the kernel has no openat2, [`openat2_missing`] says so and the caller falls back.
pub fn openat2(dir: BorrowedFd, path: &CStr, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: `open_how` is plain integers, for which zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags =
        u64::try_from(flags | libc::O_CLOEXEC).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    how.resolve = resolve;
    // SAFETY: openat2 with a valid directory descriptor, path and `open_how` of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("openat2 returned an invalid descriptor"))?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether an [`openat2`] error means the call itself is unavailable: kernels before 5.6
/// (`ENOSYS`), and older container seccomp profiles, which refuse it with `EPERM` (resolution
/// itself never fails so).
pub fn openat2_missing(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM))
}

/// Checks what an `O_PATH` descriptor names, then opens that same inode for reading. Errors of
/// the system are returned as they are (callers name the path); refusals name the file.
fn reopen_regular(path: &Path, fd: OwnedFd, max_len: u64) -> io::Result<File> {
    let meta = File::from(fd.try_clone()?).metadata()?;
    let file_type = meta.mode() & libc::S_IFMT;
    if file_type != libc::S_IFREG {
        let kind = match file_type {
            libc::S_IFIFO => "a FIFO",
            libc::S_IFCHR | libc::S_IFBLK => "a device",
            libc::S_IFSOCK => "a socket",
            libc::S_IFDIR => "a directory",
            libc::S_IFLNK => "a symlink",
            _ => "of an unknown type",
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file ({kind})", path.display()),
        ));
    }
    if meta.len() > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {} bytes, more than the {max_len} expected at most", path.display(), meta.len()),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let reopened = file.metadata()?;
    if (reopened.dev(), reopened.ino()) != (meta.dev(), meta.ino()) {
        return Err(io::Error::other(format!("{}: changed while being opened", path.display())));
    }
    Ok(file)
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: NUL in path", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pymri-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = scratch("fifo");
        let fifo = dir.join("fifo");
        let c = cstring(&fifo).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_regular(&fifo, 1 << 20).expect_err("a FIFO");
        assert!(err.to_string().contains("not a regular file (a FIFO)"), "{err}");
        let err = open_in_root(&dir, Path::new("/fifo"), 1 << 20).expect_err("a FIFO");
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn devices_and_large_files_are_refused() {
        let err = open_regular(Path::new("/dev/null"), 1 << 20).expect_err("a device");
        assert!(err.to_string().contains("a device"), "{err}");
        let dir = scratch("large");
        let big = dir.join("big");
        File::create(&big).expect("create").set_len(1 << 20).expect("sparse");
        assert!(open_regular(&big, 1 << 20).is_ok());
        let err = open_regular(&big, 1 << 19).expect_err("too large");
        assert!(err.to_string().contains("more than"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside_the_root() {
        let dir = scratch("root");
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("usr/bin")).expect("dirs");
        std::fs::write(root.join("usr/bin/inside"), b"inside").expect("file");
        std::fs::write(dir.join("outside"), b"outside").expect("file");
        // Absolute: the root's own /usr/bin/inside, not this machine's.
        std::os::unix::fs::symlink("/usr/bin/inside", root.join("usr/bin/absolute")).expect("link");
        std::os::unix::fs::symlink("../../../outside", root.join("usr/bin/climbing")).expect("link");
        let read = |p: &str| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut open_in_root(&root, Path::new(p), 100)?, &mut s)?;
            Ok::<_, io::Error>(s)
        };
        assert_eq!(read("/usr/bin/absolute").expect("inside"), "inside");
        assert!(read("/usr/bin/climbing").is_err(), "a relative link cannot climb out");
        assert!(read("/../outside").is_err(), "`..` stops at the root");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
