//! Many dumps of a busy many-threaded target: pymri never panics or hangs, the target never
//! dies and is never left stopped.

mod common;

use common::{interpreter, pymri, text, Target};

const DUMPS: usize = 1000;
const THREADS: &str = "16";

fn hammer(version: &str) {
    let interp = interpreter(version).expect("interpreter");
    let mut target = Target::start(&interp, "busy.py", &["{ready}", "{control}", THREADS]);
    let pid = target.pid().to_string();
    let before: u64 = target.ask("progress").parse().expect("work count");
    let mut ok = [0usize; 2];
    let mut failures = Vec::new();
    for i in 0..DUMPS {
        let blocking = i % 2 == 1;
        let mut args = vec!["dump", "--json", &pid];
        if blocking {
            args.insert(1, "--blocking");
        }
        // `pymri` itself enforces a deadline: a hang fails the test there.
        let out = pymri(&args);
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "dump {i} panicked: {stderr}");
        match out.status.code() {
            Some(0) => {
                let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
                assert!(dump["threads"].as_array().is_some_and(|t| t.len() >= 17), "dump {i}: {dump}");
                ok[usize::from(blocking)] += 1;
            }
            // A non-blocking read races with the target and may see a torn structure; that is
            // reported as an error, never as a crash.
            Some(1) if !blocking && stderr.starts_with("error: ") => failures.push(stderr),
            other => panic!("dump {i} (blocking: {blocking}) exited {other:?}: {stderr}"),
        }
        if i % 100 == 99 {
            assert!(target.is_alive(), "target died after {} dumps", i + 1);
            assert!(!target.any_thread_stopped(), "target left stopped after {} dumps", i + 1);
        }
    }
    assert_eq!(ok[1], DUMPS / 2, "every blocking dump succeeds");
    assert!(
        ok[0] >= DUMPS / 2 * 9 / 10,
        "non-blocking dumps mostly succeed: {} ok, failures: {failures:?}",
        ok[0]
    );
    assert!(target.is_alive());
    assert!(!target.any_thread_stopped());
    assert_eq!(target.tracer_pid(), 0, "no tracer left attached");
    let after: u64 = target.ask("progress").parse().expect("work count");
    assert!(after > before, "the target keeps working ({before} -> {after})");
}

#[test]
fn thousand_dumps_of_a_busy_3_14_target() {
    hammer("3.14");
}

#[test]
fn thousand_dumps_of_a_busy_3_11_target() {
    hammer("3.11");
}
