//! Running the `pymri` binary under test; everything else comes from `pymri-testkit`.
#![allow(dead_code)]

pub mod browser;
pub mod pty;

pub use pymri_testkit::*;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs the pymri binary with a deadline; a hang is a test failure, not a stuck suite.
pub fn pymri(args: &[&str]) -> Output {
    pymri_with(args, |_| {})
}

pub fn pymri_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
    cmd.args(args).stdin(Stdio::null());
    configure(&mut cmd);
    run_with_deadline(cmd, Duration::from_secs(60))
}

/// Kernel thread ids by thread name, as a fixture reported them in its JSON ready line
/// (`{"threads": {"name": tid, ...}}`).
pub fn reported_tids(target: &Target) -> std::collections::HashMap<String, i64> {
    let v: serde_json::Value = serde_json::from_str(&target.ready_line).expect("ready line is JSON");
    v["threads"]
        .as_object()
        .expect("threads")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().expect("tid")))
        .collect()
}

/// Staging directories pymri made for targets running as `uid`. Each test runs its targets as
/// a user of its own, so tests running in parallel cannot see each other's.
pub fn staging_dirs(interp: &Interpreter, uid: u32) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let tmp = interp.host_path("/tmp");
    std::fs::read_dir(tmp)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("pymri-") && !n.starts_with("pymri-test-"))
                .collect()
        })
        .unwrap_or_default()
}
