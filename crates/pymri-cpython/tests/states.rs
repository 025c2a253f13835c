//! Thread states over many samples, against a fixture in which every thread's state is known
//! and never changes (`fixtures/thread_states.py`): the main thread holds the GIL for good in C
//! code, two threads wait for it (waking every 50 microseconds to ask for it, so that they are
//! often on a CPU or ready for one), one runs C code with the GIL released, three are idle, one
//! of them inside an `except` block.

use pymri_cpython::{LiveProcess, SampleOptions, Sampler, ThreadDump, ThreadState};
use pymri_testkit::{interpreter, mark, Target};
use std::collections::HashMap;
use std::time::Duration;

const FIXTURE: &str = "thread_states.py";
const SAMPLES: u32 = 1000;

/// How many of the samples showed the thread in each state.
#[derive(Debug, Default)]
struct Tally {
    states: HashMap<ThreadState, u32>,
    holding: u32,
    /// Samples showing it handling an exception.
    exception: u32,
    /// The first sample that showed it waiting for the GIL, and how many later ones did not.
    first_waiting: Option<u32>,
    not_waiting_after: u32,
}

impl Tally {
    fn share(&self, state: ThreadState) -> f64 {
        f64::from(self.states.get(&state).copied().unwrap_or(0)) / f64::from(SAMPLES)
    }
}

fn innermost_line(thread: &ThreadDump) -> i32 {
    thread.frames.first().map_or(0, |f| f.line)
}

fn shares(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let mut target = Target::start(&interp, FIXTURE, &["{ready}", "0.00005"]);
    let tids: HashMap<String, i32> =
        serde_json::from_str(&target.ready.line(Duration::from_secs(10)).expect("the thread ids"))
            .expect("JSON thread ids");
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    let mut sampler = Sampler::new(&live, &located);
    let options = SampleOptions::default();
    let lines: HashMap<&str, i32> =
        ["holder", "waiter", "native", "sleeper", "parked", "handler"].map(|m| (m, mark(FIXTURE, m))).into();

    let mut tallies: HashMap<String, Tally> = HashMap::new();
    for n in 0..SAMPLES {
        let sample = sampler.sample(&options).expect("sample");
        assert_eq!(sample.threads.len(), tids.len(), "{sample:?}");
        for thread in &sample.threads {
            let name = thread.name.clone().expect("every thread is named");
            assert_eq!(thread.tid, tids.get(&name).copied(), "{name}: kernel thread id");
            // The fixture's truth holds: each thread is where it was put.
            let at = match name.as_str() {
                "MainThread" => "holder",
                n if n.starts_with("waiter-") => "waiter",
                n => n,
            };
            assert_eq!(innermost_line(thread), lines[at], "{name}: {thread:?}");
            let tally = tallies.entry(name).or_default();
            *tally.states.entry(thread.state).or_default() += 1;
            tally.holding += u32::from(thread.holds_gil);
            tally.exception += u32::from(thread.active_exception);
            match (thread.state, tally.first_waiting) {
                (ThreadState::WaitingForGil, None) => tally.first_waiting = Some(n),
                (ThreadState::WaitingForGil, Some(_)) | (_, None) => {}
                (_, Some(_)) => tally.not_waiting_after += 1,
            }
        }
    }

    let report = format!("{name}: {tallies:#?}");
    let holder = &tallies["MainThread"];
    assert_eq!(holder.share(ThreadState::HoldingGil), 1.0, "{report}");
    assert_eq!(holder.holding, SAMPLES, "{report}");
    for waiter in ["waiter-1", "waiter-2"] {
        let t = &tallies[waiter];
        // Until a waiter has been seen asleep in the GIL once, a sample that finds it on the run
        // queue cannot tell it from a thread running C code (on a loaded machine, it can wait
        // there for milliseconds); from then on, as the GIL never changes hands, it is seen
        // waiting in every sample.
        assert_eq!(t.not_waiting_after, 0, "{waiter} waits for the GIL: {report}");
        assert!(t.first_waiting.is_some_and(|n| n < SAMPLES / 20), "{waiter} seen waiting early: {report}");
        assert!(t.share(ThreadState::WaitingForGil) >= 0.95, "{waiter} waits for the GIL: {report}");
        assert_eq!(t.holding, 0, "{waiter} never holds the GIL: {report}");
        assert_eq!(t.share(ThreadState::HoldingGil), 0.0, "{report}");
    }
    let native = &tallies["native"];
    assert_eq!(native.share(ThreadState::Running), 1.0, "native code without the GIL: {report}");
    assert_eq!(native.holding, 0, "{report}");
    for idle in ["sleeper", "parked", "handler"] {
        assert_eq!(tallies[idle].share(ThreadState::Idle), 1.0, "{idle}: {report}");
        assert_eq!(tallies[idle].holding, 0, "{report}");
    }
    // Only `handler` is inside an `except` block.
    for (name, tally) in &tallies {
        let expected = if name == "handler" { SAMPLES } else { 0 };
        assert_eq!(tally.exception, expected, "{name}: active exception: {report}");
    }
    assert!(target.is_alive(), "the target lives on");
}

macro_rules! per_interpreter {
    ($($version:literal => $test:ident;)*) => {
        $(
            #[test]
            fn $test() { shares($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => gil_waiters_holder_native_and_idle_threads_over_many_samples_3_9;
    "3.9d" => gil_waiters_holder_native_and_idle_threads_over_many_samples_3_9d;
    "3.11" => gil_waiters_holder_native_and_idle_threads_over_many_samples_3_11;
    "3.13" => gil_waiters_holder_native_and_idle_threads_over_many_samples_3_13;
    "3.14" => gil_waiters_holder_native_and_idle_threads_over_many_samples_3_14;
    "3.14d" => gil_waiters_holder_native_and_idle_threads_over_many_samples_3_14d;
    "3.15" => gil_waiters_holder_native_and_idle_threads_over_many_samples_3_15;
}
