//! `pymri snapshot PID -o FILE` against real interpreters: the core holds every thread with the
//! stacks a live dump shows, gdb reads it, the target runs on untraced, and each failure has
//! its exit status and leaves no file behind.

mod common;

use common::{
    attacker, interpreter, pymri, pymri_with, reported_tids, run_with_deadline, text, Interpreter, Target,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FIXTURE: &str = "snapshot_target.py";

fn start(interp: &Interpreter) -> Target {
    Target::start(interp, FIXTURE, &["{ready}", "{control}"])
}

/// The threads of a dump as `tid -> (name, [(function, file, line)])`, without the ticker,
/// whose stack moves every millisecond.
type Stacks = BTreeMap<i64, (String, Vec<(String, String, i64)>)>;

fn stacks(dump: &Value) -> Stacks {
    dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .filter(|t| t["name"] != "ticker")
        .map(|t| {
            let frames = t["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| {
                    (
                        f["function"].as_str().unwrap_or_default().to_owned(),
                        f["file"].as_str().unwrap_or_default().to_owned(),
                        f["line"].as_i64().unwrap_or_default(),
                    )
                })
                .collect();
            (t["tid"].as_i64().expect("tid"), (t["name"].as_str().unwrap_or_default().to_owned(), frames))
        })
        .collect()
}

fn dump_json(args: &[&str]) -> Value {
    let out = pymri(args);
    assert!(out.status.success(), "pymri {args:?} failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// A live dump once the parked threads have settled: two dumps in a row show the same stacks.
fn settled_dump(pid: i32) -> Stacks {
    let deadline = Instant::now() + common::READY_TIMEOUT;
    let mut last = stacks(&dump_json(&["dump", "--json", &pid.to_string()]));
    loop {
        let now = stacks(&dump_json(&["dump", "--json", &pid.to_string()]));
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the fixture's threads never settled: {now:?}");
        last = now;
    }
}

fn snapshot(pid: i32, core: &Path) -> std::process::Output {
    pymri(&["snapshot", &pid.to_string(), "-o", core.to_str().expect("utf-8")])
}

/// The core of a multi-threaded target: `pymri dump --core` shows every thread with the stacks
/// of the live process, gdb reads its threads and frames, and the target keeps running.
fn snapshot_reads_like_the_live_process(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let mut target = start(&interp);
    let pid = target.pid();
    let tids = reported_tids(&target);
    let live = settled_dump(pid);
    let core = target.scratch.host.join("snapshot.core");
    let out = snapshot(pid, &core);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{name}: pymri snapshot failed: {stderr}");
    assert!(out.stdout.is_empty(), "{name}: the core goes to the file, not stdout");
    let estimate =
        stderr.find("of memory to copy").unwrap_or_else(|| panic!("{name}: no estimate: {stderr}"));
    let wrote =
        stderr.find("pymri snapshot: wrote").unwrap_or_else(|| panic!("{name}: no summary: {stderr}"));
    assert!(estimate < wrote, "{name}: the estimate comes first: {stderr}");
    assert!(stderr.contains("the process was stopped for"), "{stderr}");
    let meta = std::fs::symlink_metadata(&core).expect("the core exists");
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o777, 0o600, "{name}: private to its owner");
    assert_eq!(meta.uid(), 0, "{name}: owned by the user who ran pymri");

    // The target runs on, untraced, and answers.
    assert!(target.ask("ping").starts_with("pong "), "{name}: the target answers after the snapshot");
    assert!(!target.any_thread_stopped(), "{name}: threads left stopped");
    assert_eq!(target.tracer_pid(), 0, "{name}: pymri left attached");

    let dump = dump_json(&["dump", "--json", "--core", core.to_str().expect("utf-8")]);
    assert_eq!(dump["source"], "core");
    assert_eq!(dump["pid"].as_i64(), Some(pid.into()));
    assert_eq!(stacks(&dump), live, "{name}: the core's stacks are the live process's");
    let in_core: BTreeSet<i64> =
        dump["threads"].as_array().expect("threads").iter().filter_map(|t| t["tid"].as_i64()).collect();
    let expected: BTreeSet<i64> = tids.values().copied().collect();
    assert_eq!(in_core, expected, "{name}: every thread, the ticker included");
    let waiter = &live[&tids["waiter-2"]].1;
    assert_eq!(
        waiter.iter().filter(|(f, _, _)| f == "wait_here").count(),
        6,
        "{name}: waiter-2 recursed 5 times: {waiter:?}"
    );
    assert!(
        waiter.iter().any(|(f, _, l)| f == "wait_here" && *l == i64::from(common::mark(FIXTURE, "waiter"))),
        "{name}: {waiter:?}"
    );

    gdb_reads(&interp, &core, &tids);
}

/// `gdb -batch` on the core: one thread per thread of the process, each named by its kernel
/// id, and frames in libc (where the sleeper sleeps) and in the interpreter.
fn gdb_reads(interp: &Interpreter, core: &Path, tids: &std::collections::HashMap<String, i64>) {
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch", "-iex", "set debuginfod enabled off"]);
    if interp.in_root() {
        cmd.arg("-ex").arg(format!("set sysroot {}", interp.root.display()));
    }
    cmd.arg("-ex").arg(format!("file {}", interp.host_path(&interp.exe).display()));
    cmd.arg("-ex").arg(format!("core-file {}", core.display()));
    cmd.args(["-ex", "info threads", "-ex", "thread apply all bt"]);
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}: gdb failed: {}\n{shown}", interp.name, text(&out.stderr));
    let listed: BTreeSet<i64> = shown
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c == '*' || c.is_ascii_digit()))
        // `Thread 0x7f... (LWP 42)` with libthread_db, `LWP 42` without.
        .filter_map(|l| l.split("LWP ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    let expected: BTreeSet<i64> = tids.values().copied().collect();
    assert_eq!(listed, expected, "{}: gdb's threads\n{shown}", interp.name);
    // time.sleep is clock_nanosleep in libc, select on 3.9.
    let sleep = if interp.name.starts_with("3.9") { " in select () from " } else { "clock_nanosleep" };
    assert!(shown.contains(sleep), "{}: the sleeper's libc frame\n{shown}", interp.name);
    assert!(
        shown.contains("_PyEval_EvalFrameDefault") || shown.contains("Py_RunMain"),
        "{}: an interpreter frame\n{shown}",
        interp.name
    );
}

macro_rules! per_interpreter {
    ($($version:literal => $test:ident;)*) => {
        $(
            #[test]
            fn $test() { snapshot_reads_like_the_live_process($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => snapshot_3_9;
    "3.11" => snapshot_3_11;
    "3.13" => snapshot_3_13;
    "3.14" => snapshot_3_14;
    "3.14d" => snapshot_3_14d;
    "3.15" => snapshot_3_15;
}

fn host_target() -> Target {
    start(&interpreter("3.11").expect("3.11"))
}

fn status(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

/// An existing name is refused (status 9) and left as it was, a link there included; `--force`
/// replaces the name itself, never the file a link points at.
#[test]
fn an_existing_file_is_kept_unless_forced() {
    let target = host_target();
    let dir = &target.scratch.host;
    let core = dir.join("taken.core");
    std::fs::write(&core, "keep").expect("write");
    let out = snapshot(target.pid(), &core);
    assert_eq!(status(&out), Some(9), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("exists already"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("hint: pass --force"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&core).expect("kept"), "keep");

    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").expect("write");
    let link = dir.join("link.core");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let out = snapshot(target.pid(), &link);
    assert_eq!(status(&out), Some(9), "{}", text(&out.stderr));
    let out = pymri(&["snapshot", &target.pid().to_string(), "-o", link.to_str().expect("utf-8"), "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious", "the link was not followed");
    let meta = std::fs::symlink_metadata(&link).expect("core");
    assert!(meta.is_file(), "the link itself was replaced by the core");
    assert!(std::fs::read(&link).expect("core").starts_with(b"\x7fELF"));
    // Nothing else was left in the directory (no stand-in file).
    let mut names: Vec<String> =
        std::fs::read_dir(dir).expect("dir").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    assert_eq!(names, ["control", "link.core", "ready", FIXTURE, "stderr", "taken.core", "victim"]);
}

#[test]
fn a_missing_process_is_status_3() {
    let dir = std::env::temp_dir();
    let core = dir.join(format!("pymri-test-snapshot-missing-{}.core", std::process::id()));
    let out = pymri(&["snapshot", &i32::MAX.to_string(), "-o", core.to_str().expect("utf-8")]);
    assert_eq!(status(&out), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("error: "), "{}", text(&out.stderr));
    assert!(!core.exists());
}

/// Another user's process, by an unprivileged pymri: status 4, the cause named, no file.
#[test]
fn another_users_process_is_refused_with_its_cause() {
    let target = host_target();
    let attacker = attacker();
    let core = attacker.home.join(format!("snapshot-{}.core", std::process::id()));
    let mut cmd = attacker.command(env!("CARGO_BIN_EXE_pymri"));
    cmd.args(["snapshot", &target.pid().to_string(), "-o"]).arg(&core).stdin(Stdio::null());
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(status(&out), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("hint:"), "{}", text(&out.stderr));
    assert!(!core.exists());
}

/// Under sudo, the core belongs to the user who ran sudo (and stays private to them).
#[test]
fn under_sudo_the_core_belongs_to_the_sudo_user() {
    let target = host_target();
    let attacker = attacker();
    let core = target.scratch.host.join("theirs.core");
    let out =
        pymri_with(&["snapshot", &target.pid().to_string(), "-o", core.to_str().expect("utf-8")], |c| {
            c.env("SUDO_UID", attacker.uid.to_string()).env("SUDO_GID", attacker.gid.to_string());
        });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta = std::fs::metadata(&core).expect("core");
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (attacker.uid, attacker.gid, 0o600));
}

/// A snapshot only reads, like dump: a process that refuses debuggers is snapshotted all the
/// same (the refusal is for code run inside it: attach, exec).
#[test]
fn a_process_refusing_debuggers_is_still_snapshotted() {
    let interp = interpreter("3.14").expect("3.14");
    let target = Target::start_with(
        &interp,
        FIXTURE,
        &["{ready}", "{control}"],
        &["-X", "disable-remote-debug"],
        |c| {
            c.env("PYTHON_DISABLE_REMOTE_DEBUG", "1");
        },
    );
    let core = target.scratch.host.join("refusing.core");
    let out = snapshot(target.pid(), &core);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump = dump_json(&["dump", "--json", "--core", core.to_str().expect("utf-8")]);
    assert_eq!(dump["threads"].as_array().map(Vec::len), Some(5));
}

/// A tmpfs mounted for one test, unmounted and removed on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = std::env::temp_dir().join(format!("pymri-test-snapshot-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let disk = SmallDisk(dir);
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "pymri-test"])
            .arg(&disk.0)
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs");
        disk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A disk too small for the core: status 9, the cause said, and nothing left on it.
#[test]
fn a_full_disk_leaves_no_partial_file() {
    let mut target = host_target();
    let disk = SmallDisk::new("512k");
    let core = disk.0.join("big.core");
    let out = snapshot(target.pid(), &core);
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), Some(9), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("nothing was written to"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&disk.0).expect("dir").collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(target.ask("ping").starts_with("pong "));
    assert_eq!(target.tracer_pid(), 0);
}

/// The target exits after pymri planned its snapshot and before the copy: pymri is held in its
/// first write to stderr (a pipe left full) while the target is killed. Status 1, said so,
/// and no file.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_target_that_exits_mid_snapshot_leaves_no_file() {
    let mut target = host_target();
    let core = target.scratch.host.join("gone.core");
    let (read_end, write_end) = pipe();
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let filler = [b'.'; 4096];
    // SAFETY: writing a local buffer to a descriptor we own, until the pipe is full.
    while unsafe { libc::write(write_end.as_raw_fd(), filler.as_ptr().cast(), filler.len()) } > 0 {}
    // SAFETY: F_SETFL on a descriptor we own: pymri's writes must block, not fail.
    unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETFL, 0) };
    let mut child = Command::new(env!("CARGO_BIN_EXE_pymri"))
        .args(["snapshot", &target.pid().to_string(), "-o"])
        .arg(&core)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end))
        .spawn()
        .expect("pymri");
    // x86_64's write(2) is system call 1; pymri writes to fd 2 first with the estimate.
    let syscall = format!("/proc/{}/syscall", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(&syscall).unwrap_or_default();
        let mut fields = now.split_whitespace();
        if fields.next() == Some("1") && fields.next() == Some("0x2") {
            break;
        }
        assert!(child.try_wait().expect("wait").is_none(), "pymri ended before writing to stderr");
        assert!(Instant::now() < deadline, "pymri never wrote to stderr: {now}");
        std::thread::yield_now();
    }
    target.child.kill().expect("kill");
    target.child.wait().expect("reap");
    // Drain the pipe to its end (pymri's exit closes it): the filler, then what pymri says.
    let mut reader = std::fs::File::from(read_end);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut all = Vec::new();
        let _ = reader.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    let Ok(said) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("pymri did not end within 60 s");
    };
    let exit = child.wait().expect("wait").code();
    let said = String::from_utf8_lossy(&said).trim_start_matches('.').to_string();
    assert_eq!(exit, Some(1), "{said}");
    assert!(said.contains("exited while its snapshot was taken"), "{said}");
    assert!(said.contains("nothing was written to"), "{said}");
    assert!(!core.exists());
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, owned below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    // SAFETY: both descriptors were just created and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}
