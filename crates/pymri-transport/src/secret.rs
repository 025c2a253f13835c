//! Session secrets (`docs/transports.md` §3): 32 random bytes written as 64 hex characters,
//! never on a command line nor in another process's environment.
//!
//! - [`read_file`]: a file (given, or named by `PYMRI_SECRET_FILE`: [`file_from_env`]) that
//!   must be private: a regular file (not a link, a FIFO or a device), owned by this user or
//!   root, that group and others may neither read nor write; anything else is refused, as the
//!   agent refuses it. A file another user owns would be a secret that user knows. The checks
//!   are made on the opened file (`fstat`), so a file swapped between the check and the read
//!   cannot slip through, and the open never waits (`O_NONBLOCK`: a FIFO with no writer).
//! - [`read_line_from_stdin`]: `--secret-stdin`, one line read byte by byte from descriptor 0
//!   (so that nothing after it is taken from the REPL), without echo on a terminal.
//! - [`write_new`]: `pymri secret FILE`, created with mode 0600, never over an existing file.
//! - [`GeneratedSecret`]: what a listener on a local address makes for itself when it was given
//!   none, in the runtime directory ([`runtime_dir`]), removed when dropped.

use pymri_protocol::handshake::{random_hex, Secret};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes of a secret pymri generates.
pub const SECRET_BYTES: usize = 32;
/// A secret file is a line of hex; anything longer is not one.
const MAX_SECRET_FILE: u64 = 4096;

/// A validated hex secret. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(String);

impl SharedSecret {
    /// Validates hex text (white space around it allowed; at least 16 bytes, as the protocol
    /// requires).
    pub fn from_hex(text: &str, origin: &str) -> Result<SharedSecret, SecretError> {
        let text = text.trim();
        Secret::from_hex(text)
            .map_err(|e| SecretError::Malformed { origin: origin.to_string(), why: e.to_string() })?;
        Ok(SharedSecret(text.to_ascii_lowercase()))
    }

    /// 32 fresh random bytes from the operating system.
    pub fn generate() -> Result<SharedSecret, SecretError> {
        random_hex(SECRET_BYTES).map(SharedSecret).map_err(|e| SecretError::Random(e.to_string()))
    }

    /// The hex text, as the handshake takes it.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("reading the secret file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the secret file {path} is readable or writable by others (mode {mode:04o}); it must be private\nhint: chmod 600 {path}")]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("the secret file {path} is not a regular file but {kind}\nhint: a secret file is a file, as `pymri secret FILE` writes it")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("the secret file {path} is a symbolic link; a secret file is named by its own path\nhint: name the file itself: {target}")]
    Symlink { path: PathBuf, target: String },
    #[error("the secret file {path} belongs to user {owner}, not to this user ({euid}) or root: whoever owns it knows the secret\nhint: use a secret file of your own (`pymri secret FILE` makes one)")]
    NotOwned { path: PathBuf, owner: u32, euid: u32 },
    #[error("the secret from {origin} is not valid: {why}\nhint: a secret is 64 hex characters, as `pymri secret` writes it")]
    Malformed { origin: String, why: String },
    #[error("{path} already exists; a secret is never written over a file\nhint: choose a new file name, or remove the old file first")]
    Exists { path: PathBuf },
    #[error("writing the secret file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the secret from standard input: {0}")]
    Stdin(#[source] io::Error),
    #[error("no randomness available for a secret: {0}")]
    Random(String),
    #[error("no directory for pymri's secret files: neither XDG_RUNTIME_DIR nor HOME is set\nhint: pass a secret file with --secret-file")]
    NoRuntimeDir,
    #[error("{path} must be a private directory of this user (it is {why})\nhint: remove it, or set XDG_RUNTIME_DIR to a private directory")]
    UnsafeDir { path: PathBuf, why: String },
}

/// The environment variable naming a secret file (§3: its value is a path, never the secret).
pub const SECRET_FILE_VAR: &str = "PYMRI_SECRET_FILE";

/// The file [`SECRET_FILE_VAR`] names, if it is set.
pub fn file_from_env() -> Option<PathBuf> {
    std::env::var_os(SECRET_FILE_VAR).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Reads a secret file, refusing anything but a regular file of this user or root that group
/// and others can neither read nor write.
pub fn read_file(path: &Path) -> Result<SharedSecret, SecretError> {
    let read_err = |source| SecretError::Read { path: path.to_path_buf(), source };
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && is_symlink(path) => {
            let target = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
            return Err(SecretError::Symlink { path: path.to_path_buf(), target });
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile { path: path.to_path_buf(), kind: kind_of(&meta.file_type()) });
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(SecretError::NotOwned { path: path.to_path_buf(), owner: meta.uid(), euid });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::NotPrivate { path: path.to_path_buf(), mode });
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes).map_err(read_err)?;
    let origin = path.display().to_string();
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretError::Malformed { origin, why: "the file is far longer than a secret".into() });
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| SecretError::Malformed { origin: origin.clone(), why: "not text".into() })?;
    SharedSecret::from_hex(&text, &origin)
}

fn kind_of(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "another kind of file"
    }
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Reads one line from `reader` (at most 4 KiB), the secret on it.
pub fn read_line(reader: &mut dyn Read, origin: &str) -> Result<SharedSecret, SecretError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_SECRET_FILE as usize {
        match reader.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SecretError::Stdin(e)),
        }
    }
    let text = String::from_utf8(line)
        .map_err(|_| SecretError::Malformed { origin: origin.to_string(), why: "not text".into() })?;
    SharedSecret::from_hex(&text, origin)
}

/// `--secret-stdin`: one line from descriptor 0, read a byte at a time so that what follows
/// stays for the REPL. On a terminal, `prompt` is shown on stderr and the typing not echoed.
pub fn read_line_from_stdin(prompt: &str) -> Result<SharedSecret, SecretError> {
    // SAFETY: descriptor 0 stays open for the whole process; it is only borrowed here.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let mut reader = RawReader(stdin);
    let _echo = if is_terminal(stdin) {
        let _ = io::stderr().write_all(prompt.as_bytes());
        EchoOff::new(stdin)
    } else {
        None
    };
    let result = read_line(&mut reader, "standard input");
    if _echo.is_some() {
        let _ = io::stderr().write_all(b"\n");
    }
    result
}

/// Reads from a descriptor without any buffering.
struct RawReader<'a>(BorrowedFd<'a>);

impl Read for RawReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes and the descriptor is open.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Terminal echo turned off until dropped.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: BorrowedFd<'_>) -> Option<EchoOff> {
        let fd = fd.as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it for an open terminal descriptor.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a termios derived from the terminal's own.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return None;
        }
        Some(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Writes `secret` to a new file `path`, mode 0600; an existing file is never replaced.
pub fn write_new(path: &Path, secret: &SharedSecret) -> Result<(), SecretError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            SecretError::Exists { path: path.to_path_buf() }
        } else {
            SecretError::Write { path: path.to_path_buf(), source: e }
        }
    })?;
    let written = file.write_all(format!("{}\n", secret.hex()).as_bytes()).and_then(|()| file.sync_all());
    if let Err(source) = written {
        let _ = fs::remove_file(path);
        return Err(SecretError::Write { path: path.to_path_buf(), source });
    }
    Ok(())
}

/// Where secrets made for a session go: `$XDG_RUNTIME_DIR/pymri/`, else
/// `~/.local/state/pymri/` (§3). Not created here.
pub fn runtime_dir() -> Option<PathBuf> {
    let from_env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = from_env("XDG_RUNTIME_DIR").filter(|d| d.is_absolute() && d.is_dir()) {
        return Some(dir.join("pymri"));
    }
    from_env("HOME").filter(|h| h.is_absolute()).map(|home| home.join(".local/state/pymri"))
}

/// Creates `dir` (mode 0700) if needed, and checks that it is ours and private.
fn private_dir(dir: &Path) -> Result<(), SecretError> {
    let unsafe_dir = |why: String| SecretError::UnsafeDir { path: dir.to_path_buf(), why };
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(source) => return Err(SecretError::Write { path: dir.to_path_buf(), source }),
    }
    let meta =
        fs::symlink_metadata(dir).map_err(|source| SecretError::Write { path: dir.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(unsafe_dir(format!("owned by user {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!("writable by others, mode {:04o}", meta.mode() & 0o7777)));
    }
    Ok(())
}

/// A secret a listener made for itself (§3), in a 0600 file of the runtime directory that is
/// removed when this is dropped.
pub struct GeneratedSecret {
    pub secret: SharedSecret,
    pub path: PathBuf,
}

impl GeneratedSecret {
    /// Writes a fresh secret to `DIR/NAME.secret` in [`runtime_dir`].
    pub fn create(name: &str) -> Result<GeneratedSecret, SecretError> {
        let dir = runtime_dir().ok_or(SecretError::NoRuntimeDir)?;
        Self::create_in(&dir, name)
    }

    /// Writes a fresh secret to `dir/NAME.secret` (`dir` created private if needed).
    pub fn create_in(dir: &Path, name: &str) -> Result<GeneratedSecret, SecretError> {
        private_dir(dir)?;
        let secret = SharedSecret::generate()?;
        let path = dir.join(format!("{name}.secret"));
        write_new(&path, &secret)?;
        Ok(GeneratedSecret { secret, path })
    }
}

impl Drop for GeneratedSecret {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let name = random_hex(8).expect("random");
            let dir = std::env::temp_dir().join(format!("pymri-secret-test-{name}"));
            fs::DirBuilder::new().mode(0o700).create(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn a_private_file_is_read_and_a_shared_one_refused() {
        let dir = TempDir::new();
        let path = dir.0.join("s");
        fs::write(&path, format!("  {}\n", HEX.to_uppercase())).expect("write");
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = read_file(&path).expect_err("shared file");
            assert!(matches!(err, SecretError::NotPrivate { .. }), "{mode:o}: {err}");
            assert!(err.to_string().contains("hint: chmod 600"), "{err}");
        }
        for mode in [0o600, 0o400] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(read_file(&path).expect("private file").hex(), HEX);
        }
    }

    #[test]
    fn bad_secret_files_say_why() {
        let dir = TempDir::new();
        let missing = read_file(&dir.0.join("none")).expect_err("missing");
        assert!(
            matches!(&missing, SecretError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(matches!(read_file(&dir.0), Err(SecretError::NotAFile { .. })));
        let path = dir.0.join("short");
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).expect("create");
        for text in ["abc", "zz".repeat(32).as_str(), "", &"ab".repeat(15)] {
            fs::write(&path, text).expect("write");
            assert!(matches!(read_file(&path), Err(SecretError::Malformed { .. })), "{text:?}");
        }
        fs::write(&path, "ab".repeat(5000)).expect("write");
        assert!(matches!(read_file(&path), Err(SecretError::Malformed { .. })), "a huge file is refused");
    }

    #[test]
    fn fifos_links_and_other_owners_are_refused_without_waiting() {
        let dir = TempDir::new();
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        // Nothing writes to it: a blocking open would never return.
        assert!(matches!(read_file(&fifo), Err(SecretError::NotAFile { .. })));

        let real = dir.0.join("real");
        write_new(&real, &SharedSecret::from_hex(HEX, "test").expect("hex")).expect("write");
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = read_file(&link).expect_err("a link");
        assert!(matches!(&err, SecretError::Symlink { target, .. } if target == &real.display().to_string()));
        assert!(err.to_string().contains("hint: name the file itself"), "{err}");

        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let c = std::ffi::CString::new(real.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0, "chown");
            let err = read_file(&real).expect_err("another user's file");
            assert!(matches!(err, SecretError::NotOwned { owner: 65534, euid: 0, .. }), "{err}");
        }
    }

    #[test]
    fn generated_files_are_private_and_never_overwrite() {
        let dir = TempDir::new();
        let path = dir.0.join("new.secret");
        let secret = SharedSecret::generate().expect("secret");
        assert_eq!(secret.hex().len(), 64);
        write_new(&path, &secret).expect("write");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(read_file(&path).expect("read back"), secret);
        let other = SharedSecret::generate().expect("secret");
        assert!(matches!(write_new(&path, &other), Err(SecretError::Exists { .. })));
        assert_eq!(read_file(&path).expect("unchanged"), secret);
        assert_ne!(other, secret);
        assert_eq!(format!("{secret:?}"), "SharedSecret(..)");
    }

    #[test]
    fn a_listener_secret_lives_in_a_private_directory_and_goes_with_it() {
        let dir = TempDir::new();
        let runtime = dir.0.join("run/pymri");
        let generated = GeneratedSecret::create_in(&runtime, "listen-1").expect("generated");
        assert_eq!(generated.path, runtime.join("listen-1.secret"));
        assert_eq!(fs::metadata(&runtime).expect("dir").permissions().mode() & 0o777, 0o700);
        assert_eq!(read_file(&generated.path).expect("read"), generated.secret);
        let path = generated.path.clone();
        drop(generated);
        assert!(!path.exists());
        // A directory others may write to is not used.
        let open = dir.0.join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(GeneratedSecret::create_in(&open, "x"), Err(SecretError::UnsafeDir { .. })));
    }

    #[test]
    fn a_line_is_read_up_to_its_newline_only() {
        let mut input: &[u8] = b"00112233445566778899aabbccddeeff\nc\nq\n";
        let secret = read_line(&mut input, "standard input").expect("line");
        assert_eq!(secret.hex(), "00112233445566778899aabbccddeeff");
        assert_eq!(input, b"c\nq\n", "the rest stays for the REPL");
        let mut empty: &[u8] = b"";
        assert!(matches!(read_line(&mut empty, "standard input"), Err(SecretError::Malformed { .. })));
    }
}
