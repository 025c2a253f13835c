//! What the fuzz targets share: a target's memory made of the fuzzer's bytes, read as a CPython
//! interpreter with a real version's layout.
//!
//! The first input byte picks the layout (3.9 to 3.12 from `pymri-layouts`' tables, 3.13 to
//! 3.15 decoded from real `_Py_DebugOffsets` bytes), so that the fuzzer explores the walker and
//! the decoder rather than layout parsing; one choice in eight decodes the input's own debug
//! offsets instead, as pymri does with a target's. Its high bit picks how the rest, the memory
//! at [`BASE`], is addressed: strictly (a read outside it fails), or wrapped around (most small
//! pointers land somewhere, so the walker goes as deep as the bytes say). `_PyRuntime` is the
//! first byte of memory, and the builtin type objects have fixed addresses inside it
//! ([`type_address`]), so that an object is a `str` or a cell when its type word says so.

use pymri_cpython::debug_offsets;
use pymri_cpython::{BuiltinTypes, Located, Version};
use pymri_memory::{Memory, MemoryError};

/// Where the input's memory starts: low enough that a pointer into it is two non-zero bytes.
pub const BASE: u64 = 0x1000;

const RUNTIME_3_13: &[u8] = include_bytes!("../debug_offsets/3.13.bin");
const RUNTIME_3_14: &[u8] = include_bytes!("../debug_offsets/3.14.bin");
const RUNTIME_3_15: &[u8] = include_bytes!("../debug_offsets/3.15.bin");

/// The address of the `i`th builtin type object (in `BuiltinTypes::symbol_names` order).
pub fn type_address(i: usize) -> u64 {
    BASE + 0x10 * (i as u64 + 1)
}

/// A byte buffer as a target's memory, mapped at [`BASE`].
pub struct FuzzMemory<'a> {
    pub bytes: &'a [u8],
    /// Addresses up to twice the buffer's size past [`BASE`] wrap around into it.
    pub wrap: bool,
}

impl Memory for FuzzMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let unreadable = MemoryError::Unreadable { addr, len: buf.len() };
        let len = self.bytes.len() as u64;
        if self.wrap {
            // Only a window twice the buffer's size wraps: it keeps the number of distinct
            // addresses, and so the walker's work per input, near the buffer's size.
            let offset = addr.checked_sub(BASE).filter(|o| len > 0 && *o < 2 * len).ok_or(unreadable)?;
            let mut at = (offset % len) as usize;
            let mut filled = 0;
            while filled < buf.len() {
                let n = (buf.len() - filled).min(self.bytes.len() - at);
                buf[filled..filled + n].copy_from_slice(&self.bytes[at..at + n]);
                filled += n;
                at = 0;
            }
            return Ok(());
        }
        let start = addr.checked_sub(BASE).ok_or(MemoryError::Unreadable { addr, len: buf.len() })?;
        let src = usize::try_from(start)
            .ok()
            .and_then(|s| self.bytes.get(s..s.checked_add(buf.len())?))
            .ok_or(unreadable)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// The interpreter the input describes, and its memory.
pub fn target(data: &[u8]) -> Option<(Located, FuzzMemory<'_>)> {
    let (&pick, memory) = data.split_first()?;
    let static_layout = |minor: u8, layout| {
        let version = Version { major: 3, minor, micro: None, level: "", serial: 0, debug_build: false };
        (version, layout, Default::default(), None)
    };
    let decoded = |bytes: &[u8]| {
        let d = debug_offsets::decode(bytes).expect("a real version's debug offsets decode");
        (d.version, d.layout, d.gil_flags, d.remote)
    };
    let (version, layout, gil_flags, remote) = match pick % 8 {
        0 => static_layout(9, pymri_layouts::v3_9()),
        1 => static_layout(10, pymri_layouts::v3_10()),
        2 => static_layout(11, pymri_layouts::v3_11()),
        3 => static_layout(12, pymri_layouts::v3_12()),
        4 => decoded(RUNTIME_3_13),
        5 => decoded(RUNTIME_3_14),
        6 => decoded(RUNTIME_3_15),
        // The target's own `_Py_DebugOffsets`, as pymri decodes it: offsets a hostile target
        // chose, within what `decode` accepts.
        _ => {
            let d = debug_offsets::decode(memory).ok()?;
            (d.version, d.layout, d.gil_flags, d.remote)
        }
    };
    let mut names = BuiltinTypes::symbol_names().enumerate();
    let types =
        BuiltinTypes::from_symbols(|name| names.find(|(_, n)| *n == name).map(|(i, _)| type_address(i)));
    let located = Located {
        version,
        layout,
        runtime: BASE,
        binary: "fuzz".into(),
        gil_flags,
        remote,
        runtime_size: None,
        bias: 0,
        types,
    };
    Some((located, FuzzMemory { bytes: memory, wrap: pick & 0x80 != 0 }))
}
