//! Every error a user can meet: one clear line (plus hints) on stderr, a documented exit
//! status, no panic, no hang.

mod common;

use common::{interpreter, pymri, pymri_with, run_with_deadline, text, Target};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Exit status and stderr, with the run-specific parts replaced, for snapshots.
fn outcome(out: &Output, replace: &[(&str, &str)]) -> String {
    let mut stderr = text(&out.stderr);
    for (from, to) in replace {
        stderr = stderr.replace(from, to);
    }
    format!("exit: {:?}\nstdout: {:?}\nstderr:\n{stderr}", out.status.code(), text(&out.stdout))
}

/// A process that is not Python, killed on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("1000").stdout(Stdio::null()).spawn().expect("sleep"))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_such_process() {
    let out = pymri(&["dump", "2147483647"]);
    insta::assert_snapshot!(outcome(&out, &[]));
}

#[test]
fn not_a_python_process() {
    let sleeper = Sleeper::start();
    let pid = sleeper.0.id().to_string();
    let out = pymri(&["dump", &pid]);
    insta::assert_snapshot!(outcome(&out, &[(&pid, "[PID]")]));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(pymri(&["dump"]).status.code(), Some(2));
    assert_eq!(pymri(&["dump", "notapid"]).status.code(), Some(2));
    assert_eq!(pymri(&["dump", "1", "--core", "x"]).status.code(), Some(2));
    assert_eq!(pymri(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn permission_denied_for_another_user_names_the_fix() {
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "named_threads.py", &["{ready}"]);
    let pid = target.pid().to_string();
    let out = pymri_with(&["dump", &pid], |cmd| {
        // setpriv runs pymri as nobody, with no capabilities.
        let exe = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        *cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"])
            .arg(exe)
            .args(args);
    });
    insta::assert_snapshot!(outcome(&out, &[(&pid, "[PID]")]));
}

#[test]
fn permission_denied_without_cap_sys_ptrace_names_the_container_fix() {
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "named_threads.py", &["{ready}"]);
    let pid = target.pid().to_string();
    let out = pymri_with(&["dump", &pid], |cmd| {
        let exe = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        *cmd = Command::new("setpriv");
        cmd.args(["--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace", "--"]).arg(exe).args(args);
    });
    insta::assert_snapshot!(outcome(&out, &[(&pid, "[PID]")]));
}

#[test]
fn a_process_that_has_exited_is_reported_not_read() {
    let interp = interpreter("3.11").expect("3.11");
    let mut child = Command::new(&interp.exe).args(["-c", "pass"]).spawn().expect("python");
    let pid = child.id() as i32;
    // Wait for the exit without reaping, so the pid stays a zombie: a process that is gone
    // but whose id still names it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-parameter; WNOWAIT leaves the child to `child.wait()`.
    let rc =
        unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
    assert_eq!(rc, 0);
    let out = pymri(&["dump", &pid.to_string()]);
    let _ = child.wait();
    // Said to be a zombie, with its parent (this test) by pid and command line.
    let stderr = text(&out.stderr);
    let test_binary = std::env::current_exe().expect("test binary");
    let expected = format!(
        "error: process {pid} is a zombie: it has exited, and its parent, process {} ({} ",
        std::process::id(),
        test_binary.display()
    );
    assert!(stderr.starts_with(&expected), "expected {expected:?} at the start of:\n{stderr}");
    assert!(
        stderr.contains("), has not collected its exit status\nhint: nothing of it is left to read; its parent reaps it with wait(), or init does once the parent ends\n"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

/// Runs pymri with `stdout` as its standard output: its exit status and stderr (deadline 60 s).
fn pymri_writing_to(args: &[&str], stdout: impl Into<Stdio>) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
    cmd.args(args).stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped()).env("NO_COLOR", "1");
    let mut child = cmd.spawn().expect("spawn pymri");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    // stderr ends when pymri does.
    let Ok(stderr) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!("pymri {args:?} did not finish within 60 s");
    };
    (child.wait().expect("wait").code(), stderr)
}

/// What writes to stdout, for each command: text, JSON, a secret, the debugger's REPL.
fn stdout_writers(dump_pid: &str, attach_pid: &str) -> Vec<Vec<String>> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        words(&["dump", "--locals", dump_pid]),
        words(&["dump", "--json", dump_pid]),
        words(&["ps"]),
        words(&["ps", "--json"]),
        words(&["secret"]),
        words(&["attach", attach_pid, "-c", "w"]),
    ]
}

/// A reader that has gone before pymri writes (`pymri dump PID | head` once head has exited):
/// a quiet exit 0, whatever the command.
#[test]
fn broken_pipe_exits_quietly() {
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "named_threads.py", &["{ready}"]);
    let spinning = Target::start(&interp, "inject_target.py", &["{ready}", "spin"]);
    for args in stdout_writers(&target.pid().to_string(), &spinning.pid().to_string()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let (status, stderr) = pymri_writing_to(&args, writer);
        assert_eq!(status, Some(0), "{args:?}: {stderr}");
        let stderr = stderr.replace(&format!("Attaching to process {}", spinning.pid()), "");
        assert!(!stderr.contains("error") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(!spinning.any_thread_stopped(), "the attached program goes on");
}

/// `pymri dump PID > /dev/full`: not a silent success but exit 1 and an `error:` line.
#[test]
fn a_failing_stdout_is_an_error() {
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "named_threads.py", &["{ready}"]);
    let spinning = Target::start(&interp, "inject_target.py", &["{ready}", "spin"]);
    for args in stdout_writers(&target.pid().to_string(), &spinning.pid().to_string()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let (status, stderr) = pymri_writing_to(&args, full);
        assert_eq!(status, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with("error: cannot write to standard output")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("No space left on device"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(!spinning.any_thread_stopped(), "the attached program goes on");
}

fn gcore_of(pid: u32, dir: &std::path::Path) -> std::path::PathBuf {
    let prefix = dir.join("core");
    let mut cmd = Command::new("gcore");
    cmd.arg("-o").arg(&prefix).arg(pid.to_string());
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "gcore: {}", text(&out.stderr));
    dir.join(format!("core.{pid}"))
}

#[test]
fn core_of_a_process_that_is_not_python() {
    let sleeper = Sleeper::start();
    let dir = common::Scratch::new(&common::Interpreter {
        name: "host".into(),
        root: "/".into(),
        exe: String::new(),
    });
    let core = gcore_of(sleeper.0.id(), &dir.host);
    let out = pymri(&["dump", "--core", core.to_str().expect("utf-8")]);
    insta::assert_snapshot!(outcome(&out, &[]));
}

#[test]
fn truncated_core_is_refused_clearly() {
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "named_threads.py", &["{ready}"]);
    let core = gcore_of(target.pid() as u32, &target.scratch.host);
    let len = std::fs::metadata(&core).expect("core").len();
    for keep in [len / 3, 200, 10] {
        let cut = target.scratch.host.join(format!("cut-{keep}"));
        let bytes = std::fs::read(&core).expect("read core");
        std::fs::write(&cut, &bytes[..keep as usize]).expect("write");
        let out = pymri(&["dump", "--core", cut.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1), "keep {keep}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_file_that_is_not_a_core() {
    let out = pymri(&["dump", "--core", env!("CARGO_BIN_EXE_pymri")]);
    insta::assert_snapshot!(outcome(&out, &[(env!("CARGO_BIN_EXE_pymri"), "[PYMRI]")]));
    let out = pymri(&["dump", "--core", "/no/such/core"]);
    insta::assert_snapshot!("missing_core_file", outcome(&out, &[]));
}

/// Crashes `named_threads.py` on `interp` with SIGABRT and moves the core the kernel wrote into
/// `keep`; returns the core's path and the target's pid.
fn kernel_core_of(interp: &common::Interpreter, keep: &common::Scratch) -> (std::path::PathBuf, i32) {
    let target = Target::start_with(interp, "named_threads.py", &["{ready}"], &[], |cmd| {
        // SAFETY: setrlimit is async-signal-safe, run in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
                if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let pid = target.pid();
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGABRT) };
    let mut target = target;
    let status = target.child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.core_dumped(),
        "no core was dumped: {status:?} (kernel.core_pattern must be a plain file name)"
    );
    // The kernel writes `core` into the crashing process's working directory, which is the
    // root's `/` for chroot(8).
    let core = keep.host.join("core");
    std::fs::rename(interp.host_path("/core"), &core).expect("core file in the root's /");
    (core, pid)
}

/// A core the kernel writes when the interpreter crashes inside a root: its file paths are
/// the target's own, so it takes `--sysroot`.
#[test]
fn kernel_core_of_a_crash_in_a_root_needs_sysroot() {
    let interp = interpreter("3.14").expect("3.14");
    let keep = common::Scratch::new(&interp);
    let (core, pid) = kernel_core_of(&interp, &keep);
    let core = core.to_str().expect("utf-8").to_string();

    let out = pymri(&["dump", "--core", &core]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("hint: pass --sysroot DIR"), "{stderr}");
    // A --sysroot that does not hold the interpreter: the message says where pymri looked.
    let wrong = keep.host.to_str().expect("utf-8");
    let out = pymri(&["dump", "--core", &core, "--sysroot", wrong]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("is neither under --sysroot {wrong} nor on this machine")), "{stderr}");

    let root = interp.root.to_str().expect("utf-8");
    let out = pymri(&["dump", "--locals", "--json", "--core", &core, "--sysroot", root]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(dump["pid"].as_i64(), Some(pid.into()));
    let names: Vec<&str> =
        dump["threads"].as_array().expect("threads").iter().filter_map(|t| t["name"].as_str()).collect();
    for name in ["MainThread", "worker-1", "worker-2", "mapper", "service"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

/// A kernel core cut short (a full disk, a core size limit) keeps its notes and loses the end
/// of its memory: the dump fails and says so, with how much is missing, instead of showing
/// partial stacks as if they were whole.
#[test]
fn truncated_kernel_core_is_exit_1_and_says_truncated() {
    let interp = interpreter("3.14").expect("3.14");
    let keep = common::Scratch::new(&interp);
    let (core, _) = kernel_core_of(&interp, &keep);
    let bytes = std::fs::read(&core).expect("read core");
    let root = interp.root.to_str().expect("utf-8");
    for percent in [20, 60, 90] {
        let keep_len = bytes.len() * percent / 100;
        let cut = keep.host.join(format!("cut-{percent}"));
        std::fs::write(&cut, &bytes[..keep_len]).expect("write");
        let cut = cut.to_str().expect("utf-8");
        for json in [false, true] {
            let mut args = vec!["dump", "--locals", "--core", cut, "--sysroot", root];
            if json {
                args.push("--json");
            }
            let out = pymri(&args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{percent}% json={json}: {stderr}");
            let missing = bytes.len() - keep_len;
            assert!(
                stderr.starts_with(&format!(
                    "error: core file {cut} is truncated: {keep_len} of {} bytes ({missing} missing)",
                    bytes.len()
                )),
                "{percent}%: {stderr}"
            );
            assert!(!stderr.contains("running while read"), "{stderr}");
            assert!(!text(&out.stdout).contains("running while read"), "{}", text(&out.stdout));
        }
    }
}

/// Every duration on the command line (`attach --timeout`, `web --timeout`) goes through one
/// bounded parser: a value that is not a number of seconds a wait can last is a usage error
/// (exit 2, clap's message), never a panic (`inf` and `1e300` overflowed a Duration).
#[test]
fn durations_out_of_bounds_are_usage_errors() {
    for command in [&["attach"][..], &["web"][..]] {
        for value in ["inf", "1e300", "-1", "nan", "0", "1e-12", "86401", "ten", ""] {
            let mut args = command.to_vec();
            args.extend(["--timeout", value, "1"]);
            let out = pymri(&args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            let first = stderr.lines().next().unwrap_or_default();
            assert!(
                first.starts_with(&format!("error: invalid value '{value}' for '--timeout <SECONDS>'")),
                "{args:?}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        }
    }
    insta::assert_snapshot!(outcome(&pymri(&["attach", "--timeout", "inf", "1"]), &[]));
    // In bounds, the value is taken: the command goes on to its next check (no such process).
    for value in ["0.5", "86400", "3"] {
        let out = pymri(&["attach", "--timeout", value, "999999999"]);
        assert_eq!(out.status.code(), Some(3), "{value}: {}", text(&out.stderr));
    }
}

/// A core of a 3.11 target and a sysroot whose interpreter path is `make`d by `plant`.
fn core_with_planted_interpreter(plant: impl FnOnce(&std::path::Path)) -> Output {
    let interp = interpreter("3.11").expect("3.11");
    assert!(!interp.in_root(), "the 3.11 interpreter is the host's");
    let target = Target::start(&interp, "named_threads.py", &["{ready}"]);
    let core = gcore_of(target.pid() as u32, &target.scratch.host);
    let sysroot = target.scratch.host.join("sysroot");
    let planted = sysroot.join(interp.exe.trim_start_matches('/'));
    std::fs::create_dir_all(planted.parent().expect("parent")).expect("sysroot dirs");
    plant(&planted);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
    cmd.args(["dump", "--core"]).arg(&core).arg("--sysroot").arg(&sysroot).stdin(Stdio::null());
    run_with_deadline(cmd, Duration::from_secs(20))
}

/// A mapped file named by a core that is a FIFO: opening it for reading would wait for a writer
/// forever.
#[test]
fn dump_core_with_a_fifo_as_mapped_file_ends_promptly() {
    let out = core_with_planted_interpreter(|path| {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
    });
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

/// An absolute symlink inside a sysroot means a path inside that root, as it did for the
/// process, never the same path on this machine.
#[test]
fn dump_core_sysroot_symlinks_stay_inside_the_sysroot() {
    let out = core_with_planted_interpreter(|path| {
        std::os::unix::fs::symlink(interpreter("3.11").expect("3.11").exe, path).expect("symlink");
    });
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: cannot open the core's interpreter"), "{stderr}");
}
