//! A private directory inside the target's root for the files it must read: the bootstrap
//! script, the agent package, the socket it connects back to.
//!
//! The target's root belongs to the target's user, who may have built it (`unshare -r -m` and
//! `chroot`), who may plant links or mount other directories in it, and who may rename things
//! in it while pymri works. So pymri, often root, reaches it only through directory
//! descriptors: the root is opened once ([`Root`], `/proc/PID/root` for a process), and every
//! path beneath it is resolved without following a symbolic link (an absolute one would
//! resolve against pymri's own root), `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`.
//! A place for the directory (`/tmp`, `/dev/shm`, `/var/tmp`) must be one the target's user
//! could write to itself, so that pymri never does there what that user could not; the new
//! directory must be on the same mount as its place (`RESOLVE_NO_XDEV`), so that nothing
//! mounted over it is written to. The directory stays root's, mode 0700, while pymri fills it
//! (files by `openat` with `O_CREAT | O_EXCL | O_NOFOLLOW`, the socket bound through the
//! descriptor); [`Stage::hand_over`] then gives it to the target's user, last, and after that
//! pymri only removes entries by name from its descriptor (`unlinkat`, which never follows a
//! link). It is removed when the [`Stage`] is dropped.

use pymri_protocol::handshake::random_hex;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The root directory of a target, open: every path inside it is resolved from here.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// The root of process `pid`, as the process sees it (its chroot, its mount namespace).
    pub fn of_process(pid: i32) -> io::Result<Root> {
        Root::open(Path::new(&format!("/proc/{pid}/root")))
    }

    /// A directory named by pymri's user (`/`, or `--root DIR`).
    pub fn open(path: &Path) -> io::Result<Root> {
        let c = c_path(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid NUL-terminated path; the descriptor returned is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        Ok(Root { fd: owned(fd)? })
    }
}

pub struct Stage {
    /// The place the directory was made in (`/tmp`, ...), and its name there.
    place: OwnedFd,
    name: String,
    dir: OwnedFd,
    inside: String,
    uid: u32,
    gid: u32,
    handed_over: AtomicBool,
}

/// Where a private directory may be made, in order: a read-only container may only have the
/// last ones writable.
const PLACES: [&str; 3] = ["/tmp", "/dev/shm", "/var/tmp"];

/// At most this many entries are removed with a directory: after [`Stage::hand_over`] the
/// target's user may fill it.
const REMOVE_AT_MOST: usize = 4096;

impl Stage {
    /// A new directory in the root of process `pid`, for the process's own user.
    pub fn for_process(pid: i32) -> io::Result<Stage> {
        let (uid, gid) = owner(pid)?;
        Stage::create(&Root::of_process(pid)?, uid, gid)
    }

    /// A new directory in `root` for user `uid`, root's (pymri's) until [`Stage::hand_over`].
    pub fn create(root: &Root, uid: u32, gid: u32) -> io::Result<Stage> {
        let name = format!("pymri-{}", random_hex(8)?);
        let mut refused = Vec::new();
        for place in PLACES {
            let place_fd = match open_place(root, place, uid, gid) {
                Ok(fd) => fd,
                Err(why) => {
                    refused.push(why);
                    continue;
                }
            };
            match make_private_dir(place_fd.as_fd(), &name) {
                Ok(dir) => {
                    return Ok(Stage {
                        place: place_fd,
                        inside: format!("{place}/{name}"),
                        name,
                        dir,
                        uid,
                        gid,
                        handed_over: AtomicBool::new(false),
                    })
                }
                Err(e) => refused.push(format!("{place}: {e}")),
            }
        }
        Err(io::Error::other(format!(
            "no temporary directory in the target's root can hold pymri's files: {}\nhint: pymri stages \
             its files only in a /tmp, /dev/shm or /var/tmp that is a real directory the target's user \
             can write to, never through a symbolic link or into another mount",
            refused.join(", ")
        )))
    }

    /// The directory as the target sees it.
    pub fn inside(&self) -> &str {
        &self.inside
    }

    /// Writes a read-only file for the target's user, `name` being `FILE` or `DIR/FILE`
    /// (the sub-directory is made if needed); its path as the target sees it.
    pub fn write(&self, name: &str, contents: &[u8]) -> io::Result<String> {
        self.still_ours()?;
        let (sub, file) = match name.split_once('/') {
            Some((sub, file)) => (Some(sub), file),
            None => (None, name),
        };
        match sub {
            Some(sub) => {
                let dir = match make_private_dir(self.dir.as_fd(), sub) {
                    Ok(dir) => {
                        // Writable by its owner: CPython may cache bytecode in it.
                        fchown(dir.as_fd(), self.uid, self.gid)?;
                        dir
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        open_beneath(self.dir.as_fd(), sub, libc::O_RDONLY | libc::O_DIRECTORY, true)?
                    }
                    Err(e) => return Err(e),
                };
                write_new(dir.as_fd(), file, contents, self.uid, self.gid)?;
            }
            None => write_new(self.dir.as_fd(), file, contents, self.uid, self.gid)?,
        }
        Ok(format!("{}/{name}", self.inside))
    }

    /// A Unix socket listening at `name` in the directory, for the target's user only; its
    /// path as the target sees it.
    pub fn listen(&self, name: &str) -> io::Result<(String, UnixListener)> {
        self.still_ours()?;
        check_name(name)?;
        // Bound through our descriptor's own entry in /proc, not through a path in the
        // target's root. The directory is still root's and 0700, so whatever mode the umask
        // leaves the socket, nobody else can reach it before its mode and owner are set.
        let listener = UnixListener::bind(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))?;
        let c = c_path(name.as_bytes())?;
        // SAFETY: a valid NUL-terminated name in a directory descriptor we own; nobody else
        // can have replaced the socket in the private directory.
        if unsafe { libc::fchmodat(self.dir.as_raw_fd(), c.as_ptr(), 0o600, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above; AT_SYMLINK_NOFOLLOW all the same.
        let rc = unsafe {
            libc::fchownat(self.dir.as_raw_fd(), c.as_ptr(), self.uid, self.gid, libc::AT_SYMLINK_NOFOLLOW)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((format!("{}/{name}", self.inside), listener))
    }

    /// Gives the complete directory to the target's user. Nothing more is written to it.
    pub fn hand_over(&self) -> io::Result<()> {
        self.handed_over.store(true, Ordering::SeqCst);
        fchown(self.dir.as_fd(), self.uid, self.gid)
    }

    /// Removes one file as soon as it has served (the bootstrap, which holds the secret).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        unlink(self.dir.as_fd(), name, 0)
    }

    fn still_ours(&self) -> io::Result<()> {
        if self.handed_over.load(Ordering::SeqCst) {
            return Err(io::Error::other("the staging directory was handed over to the target's user"));
        }
        Ok(())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let mut budget = REMOVE_AT_MOST;
        remove_contents(self.dir.as_fd(), 0, &mut budget);
        // By name in its place: if the target's user renamed it away, this removes at most an
        // empty directory of that user's in its own place.
        let _ = unlink(self.place.as_fd(), &self.name, libc::AT_REMOVEDIR);
    }
}

/// The effective user and group of a process.
pub fn owner(pid: i32) -> io::Result<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |key: &str| -> io::Result<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("no {key} in /proc/{pid}/status"))
            })
    };
    Ok((field("Uid:")?, field("Gid:")?))
}

/// The agent package, staged once per target root, user and agent version in a directory that
/// persists (`/var/tmp/pymri-agent-DIGEST-UID`), so that CPython's own bytecode cache makes
/// every attach after the first skip compiling the agent. Returns the directory to put on the
/// target's `sys.path`, as the target sees it.
///
/// The directory belongs to the target's user, with no permission for anyone else: only that
/// user (the trust domain of the target already) can write the sources or the bytecode CPython
/// caches next to them. It is made root's and handed over once complete, under the rules of
/// [`Stage`]. An existing directory is used only if it is a real directory with that owner,
/// those permissions and exactly these sources, each a regular file of that owner and of the
/// expected size, of which no more than that size is read; otherwise `None`, and the caller
/// stages the package privately for this session.
pub fn persistent_agent(
    root: &Root,
    uid: u32,
    gid: u32,
    files: &[(&str, &str)],
    package: &str,
) -> Option<String> {
    let name = format!("pymri-agent-{}-{uid}", digest(files));
    for place in ["/var/tmp", "/tmp"] {
        let Ok(place_fd) = open_place(root, place, uid, gid) else { continue };
        match make_private_dir(place_fd.as_fd(), &name) {
            Ok(dir) => {
                if fill_package(dir.as_fd(), uid, gid, files, package).is_ok() {
                    return Some(format!("{place}/{name}"));
                }
                let mut budget = REMOVE_AT_MOST;
                remove_contents(dir.as_fd(), 0, &mut budget);
                let _ = unlink(place_fd.as_fd(), &name, libc::AT_REMOVEDIR);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Someone else's, or incomplete (another attach is writing it, still root's):
                // not ours to use.
                return trusted_package(place_fd.as_fd(), &name, uid, files, package)
                    .then(|| format!("{place}/{name}"));
            }
            // Not writable here (a read-only file system): try the next place.
            Err(_) => {}
        }
    }
    None
}

fn fill_package(
    dir: BorrowedFd,
    uid: u32,
    gid: u32,
    files: &[(&str, &str)],
    package: &str,
) -> io::Result<()> {
    let pkg = make_private_dir(dir, package)?;
    for (name, text) in files {
        write_new(pkg.as_fd(), name, text.as_bytes(), uid, gid)?;
    }
    fchown(pkg.as_fd(), uid, gid)?;
    fchown(dir, uid, gid)
}

fn trusted_package(place: BorrowedFd, name: &str, uid: u32, files: &[(&str, &str)], package: &str) -> bool {
    let private_dir = |parent: BorrowedFd, name: &str| -> Option<OwnedFd> {
        let fd = open_beneath(parent, name, libc::O_RDONLY | libc::O_DIRECTORY, true).ok()?;
        let meta = File::from(fd.try_clone().ok()?).metadata().ok()?;
        (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(fd)
    };
    let Some(dir) = private_dir(place, name) else { return false };
    let Some(pkg) = private_dir(dir.as_fd(), package) else { return false };
    files.iter().all(|(name, text)| file_is(pkg.as_fd(), name, uid, text.as_bytes()))
}

/// Whether `name` in `dir` is a regular file of `uid` holding exactly `expected`: never opens
/// anything but a regular file, never reads more than `expected.len()` bytes.
fn file_is(dir: BorrowedFd, name: &str, uid: u32, expected: &[u8]) -> bool {
    let regular_of_size = |meta: &libc::stat| {
        meta.st_mode & libc::S_IFMT == libc::S_IFREG
            && meta.st_uid == uid
            && meta.st_size as u64 == expected.len() as u64
    };
    let Ok(before) = stat_at(dir, name) else { return false };
    if !regular_of_size(&before) {
        return false;
    }
    // O_NONBLOCK: should a FIFO take the file's place after the check, opening it does not wait.
    let Ok(fd) = open_beneath(dir, name, libc::O_RDONLY | libc::O_NONBLOCK, true) else { return false };
    let Ok(after) = stat_fd(fd.as_fd()) else { return false };
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) || !regular_of_size(&after) {
        return false;
    }
    let mut file = File::from(fd);
    let mut bytes = vec![0u8; expected.len()];
    file.read_exact(&mut bytes).is_ok() && bytes == expected
}

/// A place for pymri's directories in `root`: a real directory, reached without following a
/// link, that the target's user could write to itself. The error says why not, for the user.
fn open_place(root: &Root, place: &str, uid: u32, gid: u32) -> Result<OwnedFd, String> {
    let relative = place.trim_start_matches('/');
    let fd =
        open_beneath(root.fd.as_fd(), relative, libc::O_RDONLY | libc::O_DIRECTORY, false).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ELOOP) => format!("{place} is a symbolic link (or under one)"),
                Some(libc::ENOENT) => format!("{place} does not exist"),
                Some(libc::ENOTDIR) => format!("{place} is not a directory"),
                _ => format!("{place}: {e}"),
            }
        })?;
    let meta = File::from(fd.try_clone().map_err(|e| format!("{place}: {e}"))?)
        .metadata()
        .map_err(|e| format!("{place}: {e}"))?;
    let mode = meta.mode();
    let writable = uid == 0
        || (meta.uid() == uid && mode & 0o200 != 0)
        || (meta.gid() == gid && mode & 0o020 != 0)
        || mode & 0o002 != 0;
    if !writable {
        return Err(format!("{place} is not writable by the target's user (uid {uid})"));
    }
    Ok(fd)
}

/// Makes directory `name` in `parent`, pymri's own and mode 0700, and opens it: refused if
/// what is found there by that name is not that directory on the same mount.
fn make_private_dir(parent: BorrowedFd, name: &str) -> io::Result<OwnedFd> {
    check_name(name)?;
    let c = c_path(name.as_bytes())?;
    // SAFETY: a valid NUL-terminated name in a directory descriptor we own.
    if unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let dir = open_beneath(parent, name, libc::O_RDONLY | libc::O_DIRECTORY, true)?;
    let meta = File::from(dir.try_clone()?).metadata()?;
    // SAFETY: geteuid cannot fail.
    if !meta.is_dir() || meta.uid() != unsafe { libc::geteuid() } {
        return Err(io::Error::other(format!("{name} was replaced as it was made")));
    }
    // SAFETY: fchmod on a descriptor we own (the umask may have narrowed the mode).
    if unsafe { libc::fchmod(dir.as_raw_fd(), 0o700) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dir)
}

/// Creates read-only file `name` in `dir` (never over an existing entry or through a link),
/// writes it, and gives it to `uid`.
fn write_new(dir: BorrowedFd, name: &str, contents: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    check_name(name)?;
    let c = c_path(name.as_bytes())?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid NUL-terminated name in a directory descriptor we own.
    let fd = owned(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o400 as libc::c_uint) })?;
    fchown(fd.as_fd(), uid, gid)?;
    File::from(fd).write_all(contents)
}

/// Removes what `dir` holds, never following a link nor entering another mount, `depth`
/// levels down at most, and at most `budget` entries.
fn remove_contents(dir: BorrowedFd, depth: usize, budget: &mut usize) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else { return };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let is_dir = stat_at(dir, &name).is_ok_and(|m| m.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if is_dir {
            if depth < 4 {
                if let Ok(sub) = open_beneath(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY, true) {
                    remove_contents(sub.as_fd(), depth + 1, budget);
                }
            }
            let _ = unlink(dir, &name, libc::AT_REMOVEDIR);
        } else {
            let _ = unlink(dir, &name, 0);
        }
    }
}

/// Opens `path` (relative, no `..`) beneath `dir`, following no symbolic link at all and, if
/// `same_mount`, crossing no mount point: `openat2` where the kernel (Linux 5.6) and the
/// container's seccomp profile allow it, else one component at a time with `O_NOFOLLOW`,
/// comparing mount ids.
fn open_beneath(dir: BorrowedFd, path: &str, flags: libc::c_int, same_mount: bool) -> io::Result<OwnedFd> {
    for component in path.split('/') {
        check_name(component)?;
    }
    let c = c_path(path.as_bytes())?;
    let resolve = libc::RESOLVE_BENEATH
        | libc::RESOLVE_NO_SYMLINKS
        | libc::RESOLVE_NO_MAGICLINKS
        | if same_mount { libc::RESOLVE_NO_XDEV } else { 0 };
    let err = match pymri_memory::openat2(dir, &c, flags | libc::O_NOFOLLOW, resolve) {
        Ok(fd) => return Ok(fd),
        Err(err) => err,
    };
    match err.raw_os_error() {
        _ if pymri_memory::openat2_missing(&err) => walk_beneath(dir, path, flags, same_mount),
        Some(libc::ENOTDIR) => {
            let parent = match path.rsplit_once('/') {
                Some((parent, _)) => {
                    open_beneath(dir, parent, libc::O_RDONLY | libc::O_DIRECTORY, same_mount)?
                }
                None => dir.try_clone_to_owned()?,
            };
            Err(link_as_eloop(parent.as_fd(), path.rsplit('/').next().unwrap_or(path), err))
        }
        _ => Err(err),
    }
}

/// With O_DIRECTORY, a final link is reported as ENOTDIR (O_DIRECTORY is checked before
/// O_NOFOLLOW): `err` becomes ELOOP, as for a link met on the way, if `name` is a link.
fn link_as_eloop(dir: BorrowedFd, name: &str, err: io::Error) -> io::Error {
    match stat_at(dir, name) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => io::Error::from_raw_os_error(libc::ELOOP),
        _ => err,
    }
}

/// [`open_beneath`] without `openat2`.
fn walk_beneath(dir: BorrowedFd, path: &str, flags: libc::c_int, same_mount: bool) -> io::Result<OwnedFd> {
    for component in path.split('/') {
        check_name(component)?;
    }
    let mount = if same_mount { Some(mount_id(dir)?) } else { None };
    let mut components = path.split('/').peekable();
    let mut current: Option<OwnedFd> = None;
    while let Some(component) = components.next() {
        let last = components.peek().is_none();
        let step = if last { flags } else { libc::O_RDONLY | libc::O_DIRECTORY };
        let c = c_path(component.as_bytes())?;
        let from = current.as_ref().map_or(dir, |fd| fd.as_fd());
        // SAFETY: a valid NUL-terminated name in a directory descriptor we own; O_NOFOLLOW
        // refuses a link, as this is the last component of this call.
        let fd = owned(unsafe {
            libc::openat(from.as_raw_fd(), c.as_ptr(), step | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        })
        .map_err(|e| link_as_eloop(from, component, e))?;
        if mount.is_some_and(|m| mount_id(fd.as_fd()).ok() != Some(m)) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        current = Some(fd);
    }
    current.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty path"))
}

/// The id of the mount a descriptor is on (`/proc/self/fdinfo`, Linux 3.15).
fn mount_id(fd: BorrowedFd) -> io::Result<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "no mnt_id in /proc/self/fdinfo"))
}

fn stat_at(dir: BorrowedFd, name: &str) -> io::Result<libc::stat> {
    check_name(name)?;
    let c = c_path(name.as_bytes())?;
    // SAFETY: stat is plain data, filled by fstatat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated name in a directory descriptor we own, and a stat buffer.
    if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn stat_fd(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data, filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own and a stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn unlink(dir: BorrowedFd, name: &str, flags: libc::c_int) -> io::Result<()> {
    let c = c_path(name.as_bytes())?;
    // SAFETY: a valid NUL-terminated name in a directory descriptor we own; unlinkat removes
    // the entry itself, a link included, never what it points to.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One path component: no separator, not `.` or `..`.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a file name: {name}")));
    }
    Ok(())
}

fn c_path(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A stable name for a set of files: FNV-1a over names and contents.
fn digest(files: &[(&str, &str)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, text) in files {
        for b in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn ids() -> (u32, u32) {
        // SAFETY: getuid/getgid cannot fail.
        unsafe { (libc::getuid(), libc::getgid()) }
    }

    #[test]
    fn persistent_agent_is_reused_only_when_it_can_be_trusted() {
        let (uid, gid) = ids();
        let dir = std::env::temp_dir().join(format!("pymri-stage-test-{}", std::process::id()));
        fs::create_dir_all(dir.join("var/tmp")).expect("root");
        fs::create_dir_all(dir.join("tmp")).expect("root");
        let root = Root::open(&dir).expect("open root");
        let files = [("a.py", "x = 1\n"), ("b.py", "y = 2\n")];
        let first = persistent_agent(&root, uid, gid, &files, "pkg").expect("created");
        assert!(first.starts_with("/var/tmp/pymri-agent-"));
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), Some(first.clone()), "reused");
        let host = dir.join(first.trim_start_matches('/'));
        // Sources changed behind pymri's back: not trusted.
        fs::set_permissions(host.join("pkg/a.py"), fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(host.join("pkg/a.py"), "x = 6\n").expect("tamper");
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), None);
        // Of another size, however large: not trusted, and not read.
        fs::File::options()
            .write(true)
            .open(host.join("pkg/a.py"))
            .and_then(|f| f.set_len(3 << 30))
            .expect("grow");
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), None);
        // A link, even to the right contents: not trusted.
        fs::remove_file(host.join("pkg/a.py")).expect("rm");
        fs::write(dir.join("a.py"), "x = 1\n").expect("elsewhere");
        std::os::unix::fs::symlink(dir.join("a.py"), host.join("pkg/a.py")).expect("link");
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), None);
        // Open to others: not trusted either.
        fs::remove_file(host.join("pkg/a.py")).expect("rm");
        fs::write(host.join("pkg/a.py"), "x = 1\n").expect("restore");
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), Some(first.clone()), "restored");
        fs::set_permissions(&host, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), None);
        // A different agent version gets a directory of its own.
        let other = persistent_agent(&root, uid, gid, &[("a.py", "x = 3\n")], "pkg").expect("created");
        assert_ne!(other, first);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn files_are_private_read_only_and_removed() {
        let (uid, gid) = ids();
        let host_dir;
        {
            let stage = Stage::create(&Root::open(Path::new("/")).expect("root"), uid, gid).expect("stage");
            host_dir = Path::new(stage.inside()).to_path_buf();
            let inside = stage.write("pkg/mod.py", b"x = 1\n").expect("write");
            assert_eq!(inside, format!("{}/pkg/mod.py", stage.inside()));
            let meta = fs::metadata(host_dir.join("pkg/mod.py")).expect("meta");
            assert_eq!(meta.mode() & 0o777, 0o400);
            assert_eq!(fs::metadata(&host_dir).expect("dir").mode() & 0o777, 0o700);
            assert!(stage.write("pkg/mod.py", b"again").is_err(), "never overwrites");
            let (socket, _listener) = stage.listen("sock").expect("listen");
            assert_eq!(fs::symlink_metadata(&socket).expect("socket").mode() & 0o777, 0o600);
            stage.hand_over().expect("hand over");
            assert!(stage.write("late.py", b"").is_err(), "nothing is written once handed over");
            stage.remove("pkg/mod.py").expect_err("one name at a time");
        }
        assert!(!host_dir.exists());
    }

    #[test]
    fn resolution_follows_no_link_and_crosses_no_mount() {
        let root = Root::open(Path::new("/")).expect("root");
        for walk in [open_beneath, walk_beneath] {
            let flags = libc::O_RDONLY | libc::O_DIRECTORY;
            assert!(walk(root.fd.as_fd(), "proc", flags, false).is_ok());
            let err = walk(root.fd.as_fd(), "proc/self", flags, false).expect_err("a link");
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
            let err = walk(root.fd.as_fd(), "proc", flags, true).expect_err("another mount");
            assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");
            assert!(walk(root.fd.as_fd(), "proc/../etc", flags, false).is_err());
        }
    }
}
