//! ELF binaries and core files, as pymri needs them.
//!
//! Two jobs:
//! - [`Elf`] answers the questions the CPython locator asks of an interpreter binary: where is
//!   the `.PyRuntime` section, where is the `_PyRuntime` symbol, what is the first load
//!   address. Symbols are found through the `.gnu.hash` table, so a lookup touches a handful
//!   of cache lines instead of walking tens of thousands of symbols; this matters because a
//!   whole `pymri dump` must take a few milliseconds.
//! - [`CoreFile`] presents a core dump (written by the kernel or by `gcore`) as
//!   [`pymri_memory::Memory`], filling the segments a core leaves out (read-only file mappings)
//!   from the files themselves, found through the core's `NT_FILE` note and an optional
//!   sysroot.
//!
//! Every input is untrusted: all offsets and counts are checked against the data they index,
//! and malformed input yields an [`ObjectError`], never a panic. Only 64-bit little-endian ELF
//! is accepted.
//!
//! Non-goals: DWARF, relocation, symbol demangling, 32-bit or big-endian files.

mod core;
mod elf;

pub use crate::core::{signal_name, CoreFile, CoreSignal, CoreThread, Truncation};
pub use crate::elf::{Elf, ProgramHeader, Section, Symbol};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF file")]
    NotElf,
    #[error("unsupported ELF file: {0}")]
    Unsupported(&'static str),
    #[error("truncated or corrupt ELF file: {0}")]
    Malformed(&'static str),
    #[error("not a core file (ELF type {0})")]
    NotCore(u16),
}

/// Reads a little-endian integer at `off`, if the bytes are there.
pub(crate) fn le<const N: usize>(data: &[u8], off: u64) -> Option<[u8; N]> {
    let off = usize::try_from(off).ok()?;
    data.get(off..off.checked_add(N)?)?.try_into().ok()
}
pub(crate) fn u16_at(data: &[u8], off: u64) -> Option<u16> {
    le::<2>(data, off).map(u16::from_le_bytes)
}
pub(crate) fn u32_at(data: &[u8], off: u64) -> Option<u32> {
    le::<4>(data, off).map(u32::from_le_bytes)
}
pub(crate) fn u64_at(data: &[u8], off: u64) -> Option<u64> {
    le::<8>(data, off).map(u64::from_le_bytes)
}
