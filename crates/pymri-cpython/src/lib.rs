//! CPython's interpreter state, read from outside the process.
//!
//! Given a [`pymri_memory::Memory`] (a live process or a core file) and the files the process
//! had mapped, this crate finds the interpreter ([`locate`]), works out its version and memory
//! layout, and reads a [`Snapshot`]: every thread with its name, state and Python frames, and
//! optionally each frame's arguments and locals as bounded reprs.
//!
//! How it finds things:
//! - `_PyRuntime` is the root of everything. On 3.13+ it sits in the `.PyRuntime` ELF section
//!   and starts with `_Py_DebugOffsets` (cookie `xdebugpy`), which [`debug_offsets`] decodes
//!   into a [`pymri_layouts::Layout`] at run time. Before 3.13 it is the exported `_PyRuntime`
//!   symbol, found through `.gnu.hash`, and the layout comes from the static tables of
//!   `pymri-layouts`.
//! - From there: interpreters → thread states → frames → code objects → line tables. Thread
//!   names come from `threading._active`, read like any other dict.
//!
//! Reading a running process races with it. Every pointer is checked, every loop is bounded,
//! every length read from the target is capped, and a thread whose stack cannot be read whole
//! is reported with the frames that could be read and a note, never a panic or a hang.
//!
//! Non-goals: free-threaded builds (refused with [`Error::FreeThreaded`]), subinterpreters
//! beyond listing their threads, native (C) frames, and any write to the target.

mod cache;
mod code;
pub mod debug_offsets;
mod live;
mod locate;
mod locks;
mod numpy;
mod objects;
mod sampler;
mod snapshot;
mod tasks;

pub use live::{command_line, LiveProcess};
pub use locate::{locate, Located, TargetFiles};
pub use locks::{
    Deadlock, LockInfo, LockKind, LockOptions, LockRef, LockWait, Locks, ThreadLocks, WaitEvidence,
};
pub use objects::{BuiltinTypes, ReprLimits};
pub use sampler::{SampleOptions, Sampler};
pub use snapshot::{Frame, Local, Snapshot, SnapshotOptions, ThreadDump, ThreadState};
pub use tasks::{RunningOn, TaskDump, TaskState};

use pymri_memory::MemoryError;
use pymri_object::ObjectError;
use std::fmt;

/// Errors from finding or reading an interpreter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("{0}")]
    Object(#[from] ObjectError),
    /// No mapped file contains a CPython runtime.
    #[error("not a Python process: {reason}")]
    NotPython { reason: String },
    #[error("Python {version} is not supported (pymri reads CPython 3.9 to 3.15)")]
    UnsupportedVersion { version: Version },
    #[error("Python {version} is a free-threaded build, which pymri does not read yet")]
    FreeThreaded { version: Version },
    /// asyncio's structures of this version are not known (3.10, 3.12).
    #[error(
        "asyncio tasks are not read on Python {version} yet (pymri reads them on 3.9, 3.11, 3.13 and later)"
    )]
    TasksUnsupported { version: Version },
    /// The interpreter's memory does not look like what its layout says: a torn read of a
    /// running process, a corrupt core, or a build pymri does not know.
    #[error("inconsistent interpreter state: {0}")]
    Inconsistent(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A CPython version, as `PY_VERSION_HEX` encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    /// `None` when only the minor version could be learned (3.9/3.10 without a version string).
    pub micro: Option<u8>,
    /// `a`, `b`, `rc`, or empty for a final release.
    pub level: &'static str,
    pub serial: u8,
    /// A `--with-pydebug` build (`python3.14d`).
    pub debug_build: bool,
}

impl Version {
    pub fn from_hex(hex: u64) -> Version {
        let level = match (hex >> 4) & 0xf {
            0xa => "a",
            0xb => "b",
            0xc => "rc",
            _ => "",
        };
        Version {
            major: ((hex >> 24) & 0xff) as u8,
            minor: ((hex >> 16) & 0xff) as u8,
            micro: Some(((hex >> 8) & 0xff) as u8),
            level,
            serial: (hex & 0xf) as u8,
            debug_build: false,
        }
    }

    pub fn at_least(&self, major: u8, minor: u8) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(micro) = self.micro {
            write!(f, ".{micro}")?;
        }
        if !self.level.is_empty() {
            write!(f, "{}{}", self.level, self.serial)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_hex_decodes_final_and_prerelease() {
        assert_eq!(Version::from_hex(0x030e0af0).to_string(), "3.14.10");
        assert_eq!(Version::from_hex(0x030f00a3).to_string(), "3.15.0a3");
        assert_eq!(Version::from_hex(0x030d00c1).to_string(), "3.13.0rc1");
    }
}
