//! Arbitrary bytes as a target's memory, walked as every thread's stack with locals: a torn
//! or hostile interpreter state gives errors or partial stacks, never a panic, an overflow, a
//! hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pymri_cpython::SnapshotOptions;
use pymri_memory::RunState;

fuzz_target!(|data: &[u8]| {
    let Some((located, mem)) = pymri_cpython_fuzz::target(data) else { return };
    let run_state = |tid: i32| (tid % 2 == 0).then_some(RunState::Sleeping);
    let futex_wait = |tid: i32| u64::try_from(tid).ok();
    let known_tids = [1, 2, 3];
    let options = SnapshotOptions {
        locals: true,
        max_frames: 64,
        run_state: Some(&run_state),
        known_tids: &known_tids,
        futex_wait: Some(&futex_wait),
        live: true,
        ..SnapshotOptions::default()
    };
    let _ = located.snapshot(&mem, &options);
    let _ = located.remote_debug_enabled(&mem);
});
