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
