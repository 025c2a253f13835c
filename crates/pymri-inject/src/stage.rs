//! A private directory inside the target's root for the files it must read: the bootstrap
//! script, the agent package, the socket it connects back to.
//!
//! The directory is made through `/proc/PID/root`, so a target in a chroot, a container or
//! another mount namespace finds it at the same path pymri gives it. It belongs to the target's
//! user, with no permission for anyone else; its files are read-only, so that only the target
//! can read the secret in the bootstrap, and nobody can change what the target will run. It is
//! removed when the [`Stage`] is dropped.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Stage {
    host: PathBuf,
    inside: String,
    uid: u32,
    gid: u32,
}

/// Where a private directory may be made, in order: a read-only container may only have the
/// last ones writable.
const PLACES: [&str; 3] = ["/tmp", "/dev/shm", "/var/tmp"];

impl Stage {
    /// A new directory in the root of process `pid`, for the process's own user.
    pub fn for_process(pid: i32) -> io::Result<Stage> {
        let (uid, gid) = owner(pid)?;
        Stage::create(Path::new(&format!("/proc/{pid}/root")), uid, gid)
    }

    /// A new directory under `root` (`/` for a program pymri starts itself).
    pub fn create(root: &Path, uid: u32, gid: u32) -> io::Result<Stage> {
        let name = format!("pymri-{}", random_hex(8)?);
        let mut last =
            io::Error::new(io::ErrorKind::NotFound, "no writable temporary directory in the target's root");
        for place in PLACES {
            let inside = format!("{place}/{name}");
            let host = root.join(inside.trim_start_matches('/'));
            match fs::DirBuilder::new().mode(0o700).create(&host) {
                Ok(()) => {
                    chown(&host, uid, gid)?;
                    return Ok(Stage { host, inside, uid, gid });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The directory as the target sees it.
    pub fn inside(&self) -> &str {
        &self.inside
    }

    /// A path in the directory, as the target sees it and as pymri reaches it.
    pub fn path(&self, name: &str) -> (String, PathBuf) {
        (format!("{}/{name}", self.inside), self.host.join(name))
    }

    /// Writes a read-only file (creating sub-directories of `name`).
    pub fn write(&self, name: &str, contents: &[u8]) -> io::Result<String> {
        let (inside, host) = self.path(name);
        if let Some(parent) = host.parent().filter(|p| *p != self.host) {
            if !parent.exists() {
                // Writable by its owner: the files are written into it next, and a user who is
                // not root cannot create files in a 0500 directory. It is private all the same,
                // inside the 0700 stage.
                fs::DirBuilder::new().mode(0o700).create(parent)?;
                chown(parent, self.uid, self.gid)?;
            }
        }
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&host)?;
        file.write_all(contents)?;
        chown(&host, self.uid, self.gid)?;
        Ok(inside)
    }

    /// Makes `host` (a socket pymri bound in the directory) usable by the target's user only.
    pub fn hand_over(&self, host: &Path) -> io::Result<()> {
        chown(host, self.uid, self.gid)?;
        fs::set_permissions(host, fs::Permissions::from_mode(0o600))
    }

    /// Removes one file as soon as it has served (the bootstrap, which holds the secret).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.host.join(name))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.host);
    }
}

/// The effective user and group of a process.
pub fn owner(pid: i32) -> io::Result<(u32, u32)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
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

fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path; lchown does not follow a planted symlink.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The agent package, staged once per target root, user and agent version in a directory that
/// persists (`/var/tmp/pymri-agent-DIGEST-UID`), so that CPython's own bytecode cache makes
/// every attach after the first skip compiling the agent. Returns the directory to put on the
/// target's `sys.path`, as the target sees it.
///
/// The directory belongs to the target's user, with no permission for anyone else: only that
/// user (the trust domain of the target already) can write the sources or the bytecode CPython
/// caches next to them. An existing directory is used only if it is a real directory with that
/// owner, those permissions and exactly these sources; otherwise `None`, and the caller stages
/// the package privately for this session.
pub fn persistent_agent(
    root: &Path,
    uid: u32,
    gid: u32,
    files: &[(&str, &str)],
    package: &str,
) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let digest = digest(files);
    for place in ["/var/tmp", "/tmp"] {
        let inside = format!("{place}/pymri-agent-{digest}-{uid}");
        let host = root.join(inside.trim_start_matches('/'));
        let trusted = |path: &Path| {
            fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
        };
        let pkg = host.join(package);
        let complete = || {
            trusted(&pkg)
                && files.iter().all(|(name, text)| {
                    let path = pkg.join(name);
                    fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.uid() == uid)
                        && fs::read(&path).is_ok_and(|b| b == text.as_bytes())
                })
        };
        match fs::DirBuilder::new().mode(0o700).create(&host) {
            Ok(()) => {
                let made = (|| -> io::Result<()> {
                    chown(&host, uid, gid)?;
                    fs::DirBuilder::new().mode(0o700).create(&pkg)?;
                    chown(&pkg, uid, gid)?;
                    for (name, text) in files {
                        let path = pkg.join(name);
                        let mut file =
                            fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&path)?;
                        file.write_all(text.as_bytes())?;
                        chown(&path, uid, gid)?;
                    }
                    Ok(())
                })();
                if made.is_ok() {
                    return Some(inside);
                }
                let _ = fs::remove_dir_all(&host);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if trusted(&host) && complete() {
                    return Some(inside);
                }
                // Someone else's, or incomplete (another attach is writing it): not ours to use.
                return None;
            }
            // Not writable here (a read-only file system): try the next place.
            Err(_) => {}
        }
    }
    None
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

/// `n` random bytes from the kernel, as hex.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn persistent_agent_is_reused_only_when_it_can_be_trusted() {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let root = std::env::temp_dir().join(format!("pymri-stage-test-{}", std::process::id()));
        fs::create_dir_all(root.join("var/tmp")).expect("root");
        fs::create_dir_all(root.join("tmp")).expect("root");
        let files = [("a.py", "x = 1\n"), ("b.py", "y = 2\n")];
        let first = persistent_agent(&root, uid, gid, &files, "pkg").expect("created");
        assert!(first.starts_with("/var/tmp/pymri-agent-"));
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), Some(first.clone()), "reused");
        let host = root.join(first.trim_start_matches('/'));
        // Sources changed behind pymri's back: not trusted.
        fs::set_permissions(host.join("pkg/a.py"), fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(host.join("pkg/a.py"), "x = 666\n").expect("tamper");
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), None);
        // Open to others: not trusted either.
        fs::write(host.join("pkg/a.py"), "x = 1\n").expect("restore");
        fs::set_permissions(&host, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert_eq!(persistent_agent(&root, uid, gid, &files, "pkg"), None);
        // A different agent version gets a directory of its own.
        let other = persistent_agent(&root, uid, gid, &[("a.py", "x = 3\n")], "pkg").expect("created");
        assert_ne!(other, first);
        fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn files_are_private_read_only_and_removed() {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let host_dir;
        {
            let stage = Stage::create(Path::new("/"), uid, gid).expect("stage");
            host_dir = stage.host.clone();
            let inside = stage.write("pkg/mod.py", b"x = 1\n").expect("write");
            assert_eq!(inside, format!("{}/pkg/mod.py", stage.inside()));
            let meta = fs::metadata(stage.path("pkg/mod.py").1).expect("meta");
            assert_eq!(meta.mode() & 0o777, 0o400);
            assert_eq!(fs::metadata(&host_dir).expect("dir").mode() & 0o777, 0o700);
            assert!(stage.write("pkg/mod.py", b"again").is_err(), "never overwrites");
        }
        assert!(!host_dir.exists());
    }
}
