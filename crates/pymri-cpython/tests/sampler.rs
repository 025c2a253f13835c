//! The sampler against real interpreters: a thread started after the sampler was made is
//! found with its kernel id, name and stack.

use pymri_cpython::{LiveProcess, SampleOptions, Sampler, ThreadState};
use pymri_testkit::{interpreter, Target};

fn a_thread_started_after_opening_is_sampled(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let mut target = Target::start(&interp, "record_target.py", &["{ready}", "{control}"]);
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    let mut sampler = Sampler::new(&live, &located);
    let options = SampleOptions::default();
    let before = sampler.sample(&options).expect("first sample");
    assert!(before.threads.iter().all(|t| t.name.as_deref() != Some("late")), "{before:?}");

    let tid: i32 = target.ask("spawn").parse().expect("the late thread's id");
    let after = sampler.sample(&options).expect("second sample");
    let late = after
        .threads
        .iter()
        .find(|t| t.name.as_deref() == Some("late"))
        .unwrap_or_else(|| panic!("no thread named late: {after:?}"));
    assert_eq!(late.tid, Some(tid), "{late:?}");
    assert_eq!(late.state, ThreadState::Idle, "{late:?}");
    assert_eq!(late.on_cpu, Some(false), "{late:?}");
    assert!(late.frames.iter().any(|f| f.function == "late_park"), "{late:?}");
    // The threads seen before keep their ids and names.
    for thread in &before.threads {
        let same = after.threads.iter().find(|t| t.ident == thread.ident).expect("still there");
        assert_eq!((same.tid, &same.name), (thread.tid, &thread.name));
    }
}

#[test]
fn sampler_finds_a_thread_started_after_opening_3_9() {
    a_thread_started_after_opening_is_sampled("3.9")
}

#[test]
fn sampler_finds_a_thread_started_after_opening_3_11() {
    a_thread_started_after_opening_is_sampled("3.11")
}

#[test]
fn sampler_finds_a_thread_started_after_opening_3_15() {
    a_thread_started_after_opening_is_sampled("3.15")
}

/// The worker's stack in one sample, innermost first, and whether the kernel's view of it was
/// read; the sample is given back to the sampler, as `pymri record` does.
fn worker_stack(sampler: &mut Sampler<'_>, options: &SampleOptions) -> (Vec<String>, Option<bool>) {
    let snapshot = sampler.sample(options).expect("sample");
    let worker = snapshot
        .threads
        .iter()
        .find(|t| t.name.as_deref() == Some("worker"))
        .unwrap_or_else(|| panic!("no worker: {snapshot:?}"));
    assert_eq!(worker.error, None, "{worker:?}");
    let stack = (worker.frames.iter().map(|f| f.function.clone()).collect(), worker.on_cpu);
    sampler.recycle(snapshot);
    stack
}

/// What a sampler keeps between samples (the pages the last sample read, the code objects, the
/// stacks it writes over) never shows a stack that is no longer there: the worker returns
/// below its outer frames and calls a shallower or deeper chain of other functions, whose
/// frames take the places of the old ones, many times over, sampled without pause.
fn stacks_stay_right_when_the_frames_above_a_suffix_change(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let mut target = Target::start(&interp, "suffix_target.py", &["{ready}", "{control}"]);
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    let mut sampler = Sampler::new(&live, &located);
    let chain_a = ["spin_a", "a8", "a7", "a6", "a5", "a4", "a3", "a2", "a1", "outer"];
    let chain_b = ["spin_b", "b2", "b1", "outer"];
    let with_kernel = SampleOptions::default();
    let without_kernel = SampleOptions { kernel_state: false, ..SampleOptions::default() };

    let (first, _) = worker_stack(&mut sampler, &with_kernel);
    assert_eq!(first[..chain_a.len()], chain_a, "{first:?}");
    let suffix = first[chain_a.len()..].to_vec();
    assert!(suffix.iter().any(|f| f.ends_with("_bootstrap")), "the thread's own frames: {first:?}");

    for round in 0..4 {
        for (command, chain) in [("b", &chain_b[..]), ("a", &chain_a[..])] {
            assert_eq!(target.ask(command), command);
            let options = if round % 2 == 0 { &with_kernel } else { &without_kernel };
            for _ in 0..50 {
                let (stack, on_cpu) = worker_stack(&mut sampler, options);
                assert_eq!(stack[..chain.len().min(stack.len())], *chain, "round {round}: {stack:?}");
                assert_eq!(stack[chain.len()..], suffix, "round {round}: {stack:?}");
                assert_eq!(on_cpu.is_some(), options.kernel_state, "round {round}");
            }
        }
    }
}

#[test]
fn sampler_stacks_stay_right_when_a_suffix_changes_3_11() {
    stacks_stay_right_when_the_frames_above_a_suffix_change("3.11")
}

#[test]
fn sampler_stacks_stay_right_when_a_suffix_changes_3_14() {
    stacks_stay_right_when_the_frames_above_a_suffix_change("3.14")
}

#[test]
fn sampler_stacks_stay_right_when_a_suffix_changes_3_15() {
    stacks_stay_right_when_the_frames_above_a_suffix_change("3.15")
}
