//! Arbitrary bytes as a target's memory, with an object at each of the first few addresses the
//! input names: its repr is bounded in length and time, whatever the object claims to be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pymri_cpython::ReprLimits;

fuzz_target!(|data: &[u8]| {
    let Some((located, mem)) = pymri_cpython_fuzz::target(data) else { return };
    let limits = ReprLimits::default();
    // The first words of memory name the objects to show, as a frame's local slots would.
    for word in mem.bytes.chunks_exact(8).take(4) {
        let obj = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let repr = located.repr(&mem, obj, &limits);
        assert!(repr.chars().count() <= limits.max_len, "{} characters: {repr}", repr.len());
    }
});
