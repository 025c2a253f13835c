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
fn owner(pid: i32) -> io::Result<(u32, u32)> {
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
