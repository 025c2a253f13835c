//! Arbitrary bytes as a core file, then reads of its memory: a truncated or hostile core gives
//! errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pymri_memory::Memory;
use pymri_object::CoreFile;

fuzz_target!(|data: &[u8]| {
    // No file named by the core exists under this sysroot, so reads stay within the input.
    let sysroot = std::path::Path::new("/nonexistent-pymri-fuzz-root");
    let Ok(core) = CoreFile::from_bytes(data.to_vec(), None, Some(sysroot)) else { return };
    let _ = core.threads().len();
    let _ = core.command();
    let mut buf = [0u8; 64];
    for m in core.mappings().iter().take(8) {
        let _ = core.read(m.start, &mut buf);
        let _ = core.read(m.end.wrapping_sub(8), &mut buf);
    }
    for addr in [0u64, 0x400000, u64::MAX - 8, u64::MAX] {
        let _ = core.read(addr, &mut buf);
    }
});
