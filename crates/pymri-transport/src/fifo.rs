//! `fifo:DIR`: a session over two FIFOs made by the listening agent, `DIR/to-agent` (we write)
//! and `DIR/from-agent` (we read), for a machine with no network at all.
//!
//! Opening order cannot dead-lock whichever order the agent opens them in: `from-agent` is
//! opened first, for reading and non-blocking (which always succeeds, and releases an agent
//! blocked opening it for writing), then `to-agent` for writing, non-blocking, which succeeds
//! once the agent has it open for reading (until then the kernel says `ENXIO`: we retry until
//! the deadline). The two descriptors then go to a [`pump`](crate::pump) thread, since a FIFO
//! can be neither timed out nor shut down from the session's threads.

use crate::pump::{self, Plain};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The FIFO the controller writes to.
pub const TO_AGENT: &str = "to-agent";
/// The FIFO the controller reads from.
pub const FROM_AGENT: &str = "from-agent";
/// How often to look again for an agent that has not opened `to-agent` yet.
const RETRY: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FifoError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a FIFO")]
    NotAFifo { path: PathBuf },
    #[error("no agent has {path} open for reading")]
    NoReader { path: PathBuf },
}

impl FifoError {
    /// Whether the FIFOs are missing (nothing was ever set up at that directory).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FifoError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Opens the FIFO pair in `dir` (waiting for the agent's reader until `deadline`) and returns
/// the session's end of the stream.
pub fn connect(dir: &Path, deadline: Instant) -> Result<UnixStream, FifoError> {
    let to_agent = dir.join(TO_AGENT);
    let from_agent = dir.join(FROM_AGENT);
    for path in [&to_agent, &from_agent] {
        let meta =
            std::fs::metadata(path).map_err(|source| FifoError::Open { path: path.clone(), source })?;
        if !meta.file_type().is_fifo() {
            return Err(FifoError::NotAFifo { path: path.clone() });
        }
    }
    let input = open(&from_agent, false)?;
    let output = loop {
        match open(&to_agent, true) {
            Ok(f) => break f,
            Err(FifoError::Open { source, .. }) if source.raw_os_error() == Some(libc::ENXIO) => {
                if Instant::now() >= deadline {
                    return Err(FifoError::NoReader { path: to_agent });
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(e),
        }
    };
    pump::spawn(Plain::new(input, output), "pymri-fifo")
        .map_err(|source| FifoError::Open { path: dir.to_path_buf(), source })
}

fn open(path: &Path, write: bool) -> Result<File, FifoError> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| FifoError::Open { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::io::{Read, Write};

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
    }

    fn temp_dir() -> PathBuf {
        let name = pymri_protocol::handshake::random_hex(8).expect("random");
        let dir = std::env::temp_dir().join(format!("pymri-fifo-test-{name}"));
        std::fs::create_dir(&dir).expect("dir");
        dir
    }

    #[test]
    fn a_session_over_a_fifo_pair_in_both_opening_orders() {
        for agent_opens_from_agent_first in [false, true] {
            let dir = temp_dir();
            mkfifo(&dir.join(TO_AGENT));
            mkfifo(&dir.join(FROM_AGENT));
            // The agent: blocking opens, in either order, then an echo of one line.
            let agent = {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let (mut input, mut output) = if agent_opens_from_agent_first {
                        let o = OpenOptions::new().write(true).open(dir.join(FROM_AGENT)).expect("w");
                        let i = File::open(dir.join(TO_AGENT)).expect("r");
                        (i, o)
                    } else {
                        let i = File::open(dir.join(TO_AGENT)).expect("r");
                        let o = OpenOptions::new().write(true).open(dir.join(FROM_AGENT)).expect("w");
                        (i, o)
                    };
                    let mut buf = [0u8; 5];
                    input.read_exact(&mut buf).expect("read");
                    output.write_all(&buf).expect("write");
                    // Reads to the end: the controller's close.
                    let mut rest = Vec::new();
                    input.read_to_end(&mut rest).expect("eof");
                })
            };
            let mut stream = connect(&dir, Instant::now() + Duration::from_secs(5)).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            stream.write_all(b"hello").expect("write");
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).expect("echo");
            assert_eq!(&buf, b"hello");
            drop(stream);
            agent.join().expect("the agent saw the end of its input");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn missing_fifos_and_absent_agents_are_told_apart() {
        let dir = temp_dir();
        let err = connect(&dir, Instant::now()).expect_err("no fifos");
        assert!(err.is_not_found(), "{err}");
        std::fs::write(dir.join(TO_AGENT), b"").expect("file");
        mkfifo(&dir.join(FROM_AGENT));
        assert!(matches!(connect(&dir, Instant::now()), Err(FifoError::NotAFifo { .. })));
        std::fs::remove_file(dir.join(TO_AGENT)).expect("rm");
        mkfifo(&dir.join(TO_AGENT));
        let started = Instant::now();
        let err = connect(&dir, started + Duration::from_millis(100)).expect_err("no agent");
        assert!(matches!(err, FifoError::NoReader { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
