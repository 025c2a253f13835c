//! Injection into real interpreters: the script runs, in the thread it was meant for, and a
//! request the target cannot take is withdrawn.

use pymri_cpython::LiveProcess;
use pymri_inject::stage::Stage;
use pymri_inject::{check_allowed, method, pending, pep768, InjectError, Method};
use pymri_testkit::{interpreter, Target, READY_TIMEOUT};

const FIXTURE: &str = "inject_target.py";

/// A script that reports the thread running it on the target's FIFO.
fn report_script(target: &Target) -> String {
    let fifo = format!("{}/ready", target.scratch.inside);
    format!(
        "import threading\nwith open({fifo:?}, 'w') as out:\n    out.write('ran ' + threading.current_thread().name + '\\n')\n"
    )
}

fn idents(target: &Target) -> (u64, u64) {
    let mut words = target.ready_line.split_whitespace().skip(1).map(|w| w.parse().expect("ident"));
    (words.next().expect("main"), words.next().expect("worker"))
}

/// The one-line bootstrap `PyRun_SimpleString` runs: never raises, whatever the script does.
fn bootstrap(path: &str) -> String {
    format!("try:exec(open({path:?}).read(),{{'__name__':'__pymri__'}})\nexcept BaseException:pass")
}

fn runs_in_the_chosen_thread(version: &str) {
    let interp = interpreter(version).expect("interpreter");
    let mut target = Target::start(&interp, FIXTURE, &["{ready}", "spin"]);
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    check_allowed(target.pid(), &located, &live.mem).expect("remote debugging allowed");
    let stage = Stage::for_process(target.pid()).expect("stage");
    let script = stage.write("report.py", report_script(&target).as_bytes()).expect("script");
    stage.hand_over().expect("hand over");
    let (_, worker) = idents(&target);
    match method(&located).expect("method") {
        Method::Pep768 => {
            let request = pep768::arm(&live.mem, &located, &script, None).expect("arm");
            assert_eq!(target.ready.line(READY_TIMEOUT).expect("script ran"), "ran MainThread");
            assert!(request.taken(&live.mem).expect("read"));
            pep768::arm(&live.mem, &located, &script, Some(worker)).expect("arm worker");
            assert_eq!(target.ready.line(READY_TIMEOUT).expect("script ran"), "ran worker");
        }
        Method::PendingCall => {
            let func = live
                .with_files(|files| located.symbol(files, "PyRun_SimpleString"))
                .expect("binary")
                .expect("PyRun_SimpleString is exported");
            for _ in 0..2 {
                let request = pending::arm(&live.mem, &located, &bootstrap(&script), func).expect("arm");
                assert_eq!(target.ready.line(READY_TIMEOUT).expect("script ran"), "ran MainThread");
                assert!(request.taken(&live.mem).expect("read"));
                request.tidy(&live.mem).expect("tidy");
            }
        }
    }
    assert!(target.is_alive());
    assert!(!target.any_thread_stopped());
}

/// A main thread blocked in C never reaches a safe point: the request is taken back, and the
/// target is left as it was.
fn withdrawn_when_the_main_thread_is_blocked(version: &str) {
    let interp = interpreter(version).expect("interpreter");
    let target = Target::start(&interp, FIXTURE, &["{ready}", "sleep"]);
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    let stage = Stage::for_process(target.pid()).expect("stage");
    let script = stage.write("report.py", report_script(&target).as_bytes()).expect("script");
    stage.hand_over().expect("hand over");
    let withdrawn = match method(&located).expect("method") {
        Method::Pep768 => {
            let request = pep768::arm(&live.mem, &located, &script, None).expect("arm");
            assert!(!request.taken(&live.mem).expect("read"));
            request.withdraw(&live.mem).expect("withdraw")
        }
        Method::PendingCall => {
            let func = live
                .with_files(|f| located.symbol(f, "PyRun_SimpleString"))
                .expect("binary")
                .expect("symbol");
            let request = pending::arm(&live.mem, &located, &bootstrap(&script), func).expect("arm");
            assert!(!request.taken(&live.mem).expect("read"));
            request.withdraw(&live.mem).expect("withdraw")
        }
    };
    assert!(withdrawn);
    assert!(!target.any_thread_stopped());
}

macro_rules! per_interpreter {
    ($($version:literal => $runs:ident, $blocked:ident;)*) => {
        $(
            #[test]
            fn $runs() { runs_in_the_chosen_thread($version) }
            #[test]
            fn $blocked() { withdrawn_when_the_main_thread_is_blocked($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => runs_3_9, withdrawn_3_9;
    "3.11" => runs_3_11, withdrawn_3_11;
    "3.13" => runs_3_13, withdrawn_3_13;
    "3.14" => runs_3_14, withdrawn_3_14;
    "3.14d" => runs_3_14d, withdrawn_3_14d;
    "3.15" => runs_3_15, withdrawn_3_15;
}

#[test]
fn refused_when_remote_debugging_is_disabled() {
    let new = interpreter("3.14").expect("3.14");
    let target =
        Target::start_with(&new, FIXTURE, &["{ready}", "spin"], &["-X", "disable-remote-debug"], |_| {});
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    let err = check_allowed(target.pid(), &located, &live.mem).expect_err("refused");
    assert!(matches!(err, InjectError::RemoteDebugDisabled { .. }), "{err}");

    let old = interpreter("3.11").expect("3.11");
    let target = Target::start_with(&old, FIXTURE, &["{ready}", "spin"], &[], |c| {
        c.env("PYTHON_DISABLE_REMOTE_DEBUG", "1");
    });
    let live = LiveProcess::open(target.pid()).expect("open");
    let located = live.locate().expect("locate");
    let err = check_allowed(target.pid(), &located, &live.mem).expect_err("refused");
    assert!(matches!(err, InjectError::RemoteDebugDisabled { .. }), "{err}");
}
