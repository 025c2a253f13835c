//! The attach staging directory against the target's own user (issue 8, item 2 and the
//! persistent agent cache of item 3): root's pymri writes into the target's root, which that
//! user controls, so nothing it does there may follow a link, cross into a directory mounted
//! there, or read more than the files it expects.
//!
//! Each test replays the attack as the unprivileged `pymri_testkit::attacker()` user against a
//! real target, and checks a root-owned victim directory (holding a root-owned 0644
//! `bootstrap.py`) outside the target's root is left exactly as it was.

mod common;

use common::{
    attacker, interpreter, pymri, run_with_deadline, text, Attacker, FifoReader, Target, READY_TIMEOUT,
};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static UNIQUE: AtomicU32 = AtomicU32::new(0);

fn unique() -> String {
    format!("{}-{}", std::process::id(), UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// A root-owned directory outside any target's root, holding a root-owned 0644 `bootstrap.py`:
/// what the attacker tries to get root's pymri to write, chmod or delete. Removed on drop.
struct Victim {
    dir: PathBuf,
    /// Its change and modification times: an entry made and removed again changes them.
    times: [(i64, i64); 2],
}

fn times(meta: &fs::Metadata) -> [(i64, i64); 2] {
    [(meta.mtime(), meta.mtime_nsec()), (meta.ctime(), meta.ctime_nsec())]
}

const VICTIM_TEXT: &str = "# root's own file\n";

impl Victim {
    fn new() -> Victim {
        let dir = PathBuf::from(format!("/etc/pymri-victim-{}.d", unique()));
        fs::create_dir(&dir).expect("victim directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod victim");
        let file = dir.join("bootstrap.py");
        fs::write(&file, VICTIM_TEXT).expect("victim file");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod victim file");
        let times = times(&fs::metadata(&dir).expect("victim directory"));
        Victim { dir, times }
    }

    /// Panics unless the directory holds exactly its `bootstrap.py`, both as made.
    fn assert_untouched(&self) {
        let dir = fs::symlink_metadata(&self.dir).expect("victim directory still there");
        assert!(dir.is_dir() && dir.uid() == 0 && dir.mode() & 0o7777 == 0o755, "victim directory changed");
        let names: Vec<String> = fs::read_dir(&self.dir)
            .expect("list victim")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["bootstrap.py"],
            "root's pymri created or deleted files in {}",
            self.dir.display()
        );
        let file = self.dir.join("bootstrap.py");
        let meta = fs::symlink_metadata(&file).expect("victim file");
        assert!(meta.is_file(), "victim file replaced");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "victim file given away");
        assert_eq!(meta.mode() & 0o7777, 0o644, "victim file chmodded");
        assert_eq!(fs::read_to_string(&file).expect("read victim"), VICTIM_TEXT);
        assert_eq!(
            times(&dir),
            self.times,
            "something was made or removed in {} meanwhile",
            self.dir.display()
        );
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What the attacker puts at one of the places pymri stages in, inside its own root.
#[derive(Clone, Copy)]
enum Plant {
    /// An absolute symbolic link to the victim directory.
    Link,
    /// The victim directory, bind-mounted there (in the attacker's own mount namespace).
    Mount,
    /// A directory of its own, as any root has.
    Own,
}

/// A target that runs as the attacker, chrooted in a root the attacker built in its home
/// (`unshare -r -m`, the host's `/usr` bound in, `/tmp`, `/dev/shm` and `/var/tmp` planted as
/// asked): the attack needs no privilege and no race.
struct AttackerRoot {
    root: PathBuf,
    runuser: Child,
    pid: i32,
    ready: FifoReader,
}

/// What the attacker's target runs: a loop, unless a fixture is named (run with the FIFO and
/// the victim directory as arguments).
const SPIN: &str = "import os, sys, time\n\
                    open(sys.argv[1], 'w').write('ready %d\\n' % os.getpid())\n\
                    while True: time.sleep(0.005)\n";

impl AttackerRoot {
    fn start(
        attacker: &Attacker,
        victim: &Victim,
        plants: [(&str, Plant); 3],
        fixture: Option<&str>,
    ) -> AttackerRoot {
        let root = attacker.home.join(format!("root-{}", unique()));
        fs::create_dir_all(root.join("work")).expect("attacker root");
        let program = root.join("work/target.py");
        match fixture {
            Some(name) => fs::copy(common::repo_root().join("fixtures").join(name), &program).map(|_| ()),
            None => fs::write(&program, SPIN),
        }
        .expect("target program");
        let fifo = root.join("work/ready");
        let c = CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        for path in [&root, &root.join("work"), &program, &fifo] {
            chown(path, attacker.uid, attacker.gid);
        }
        let mut ready = FifoReader::open(&fifo);

        let victim = victim.dir.display();
        let mut script = String::from(
            "set -e\nmkdir -p usr dev var\nln -s usr/bin bin\nln -s usr/lib lib\nln -s usr/lib64 lib64\n\
             mount --rbind /usr usr\n",
        );
        for (place, plant) in plants {
            script.push_str(&match plant {
                Plant::Link => format!("ln -s {victim} {place}\n"),
                Plant::Mount => format!("mkdir -p {place}\nmount --bind {victim} {place}\n"),
                Plant::Own => format!("mkdir -p {place}\nchmod 1777 {place}\n"),
            });
        }
        script.push_str(&format!("exec chroot . /usr/bin/python3.11 /work/target.py /work/ready {victim}\n"));
        let mut cmd = attacker.command("unshare");
        cmd.args(["-r", "-m", "sh", "-c", &script])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let runuser = cmd.spawn().expect("runuser unshare");
        let line = ready.line(READY_TIMEOUT).expect("the attacker's target started");
        let pid = line.strip_prefix("ready ").and_then(|p| p.parse().ok()).expect("ready PID");
        AttackerRoot { root, runuser, pid, ready }
    }
}

impl Drop for AttackerRoot {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the target this test started (its own pid, read from it).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.runuser.kill();
        let _ = self.runuser.wait();
        // The bind mounts lived in the attacker's mount namespace only: here `usr` is empty.
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::lchown(c.as_ptr(), uid, gid) }, 0, "chown {}", path.display());
}

fn not_stopped(pid: i32) -> bool {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    dir.filter_map(|e| e.ok()).all(|e| {
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next());
        !matches!(state, Some('T') | Some('t'))
    })
}

/// Every place is a link out of the root or a root-owned directory mounted into it: root's
/// pymri refuses to stage, says why, and writes nothing anywhere.
#[test]
fn attach_refuses_a_staging_place_linked_or_mounted_out_of_the_targets_root() {
    let attacker = attacker();
    let victim = Victim::new();
    let target = AttackerRoot::start(
        &attacker,
        &victim,
        [("tmp", Plant::Link), ("dev/shm", Plant::Link), ("var/tmp", Plant::Mount)],
        None,
    );
    let out = pymri(&["attach", &target.pid.to_string(), "-c", "detach"]);
    let stderr = text(&out.stderr);
    victim.assert_untouched();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(stderr.contains("/tmp is a symbolic link"), "{stderr}");
    assert!(stderr.contains("/var/tmp is not writable by the target's user"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(not_stopped(target.pid));
}

/// Only `/var/tmp` (the persistent agent cache's first place) is the victim, mounted in: the
/// attach succeeds, with everything staged in the attacker's own `/tmp`.
#[test]
fn attach_stages_only_where_the_targets_user_could_write() {
    let attacker = attacker();
    let victim = Victim::new();
    let target = AttackerRoot::start(
        &attacker,
        &victim,
        [("tmp", Plant::Own), ("dev/shm", Plant::Own), ("var/tmp", Plant::Mount)],
        None,
    );
    let out = pymri(&["attach", &target.pid.to_string(), "-c", "detach"]);
    victim.assert_untouched();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Detached"), "{}", text(&out.stdout));
    let cached: Vec<_> = fs::read_dir(target.root.join("tmp"))
        .expect("attacker's tmp")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pymri-agent-"))
        .collect();
    assert_eq!(cached.len(), 1, "the agent package is cached in the root's /tmp: {cached:?}");
}

/// The target's user renames the staging directory and puts a link to the victim in its place
/// while the agent connects (from inside the target, so at the right moment every time), and a
/// thread of it plants links to the victim under every name pymri is about to create in any
/// staging directory it sees: root's pymri deletes, chmods and creates nothing outside.
#[test]
fn attach_through_a_staging_directory_swapped_for_a_link_touches_nothing_outside() {
    let attacker = attacker();
    let victim = Victim::new();
    let mut target = AttackerRoot::start(
        &attacker,
        &victim,
        [("tmp", Plant::Own), ("dev/shm", Plant::Own), ("var/tmp", Plant::Own)],
        Some("stage_swap.py"),
    );
    let out = pymri(&["attach", &target.pid.to_string(), "-c", "detach"]);
    let swapped = target.ready.line(READY_TIMEOUT);
    victim.assert_untouched();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(swapped.is_ok_and(|l| l.starts_with("swapped /tmp/pymri-")), "the attack ran");
    assert!(not_stopped(target.pid));
}

/// `pymri run --root DIR` by root, DIR built by the attacker with `/tmp`, `/dev/shm` and
/// `/var/tmp` linking to the victim: nothing is made there, not even for a moment.
#[test]
fn run_in_a_root_whose_tmp_links_out_writes_nothing_there() {
    let attacker = attacker();
    let victim = Victim::new();
    let root = attacker.home.join(format!("run-root-{}", unique()));
    let victim_dir = victim.dir.display();
    let build = format!(
        "set -e\nmkdir {root}\ncd {root}\nmkdir -p usr dev var work\nln -s usr/bin bin\nln -s usr/lib lib\n\
         ln -s usr/lib64 lib64\nln -s {victim_dir} tmp\nln -s {victim_dir} dev/shm\nln -s {victim_dir} var/tmp\n\
         echo 'print(42)' > work/script.py\n",
        root = root.display()
    );
    let mut cmd = attacker.command("sh");
    cmd.args(["-c", &build]);
    assert!(cmd.status().expect("build the root").success());
    // Root's own mount namespace for the run, so that the root can have the host's /usr.
    let mut run = Command::new("unshare");
    run.args(["-m", "--propagation", "private", "sh", "-c"]).arg(format!(
        "mount --rbind /usr {root}/usr && exec {pymri} run --root {root} --python /usr/bin/python3.11 /work/script.py",
        root = root.display(),
        pymri = env!("CARGO_BIN_EXE_pymri"),
    ));
    run.stdin(Stdio::null());
    let out = run_with_deadline(run, Duration::from_secs(60));
    let _ = fs::remove_dir_all(&root);
    victim.assert_untouched();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/tmp is a symbolic link"), "{stderr}");
}

/// Peak resident memory of the largest child this test process has reaped, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss as u64 * 1024
}

/// A 3 GiB sparse file planted by the target's user in its persistent agent cache: root's pymri
/// sees the wrong size and stages privately, at once and in bounded memory.
#[test]
fn a_huge_file_in_the_persistent_agent_cache_costs_no_time_or_memory() {
    let attacker = attacker();
    let interp = interpreter("3.11").expect("3.11");
    let target =
        Target::start_as(&interp, "inject_target.py", &["{ready}", "spin"], &[], attacker.uid, |_| {});
    let pid = target.pid().to_string();
    let out =
        pymri(&["attach", &pid, "-c", "p __import__('sys').modules['pymri_agent'].__file__", "-c", "detach"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let file = stdout
        .split('\'')
        .find(|s| s.starts_with("/var/tmp/pymri-agent-") && s.ends_with("/__init__.py"))
        .unwrap_or_else(|| panic!("the agent ran from the persistent cache: {stdout}"))
        .to_string();
    let cache = Path::new(&file).parent().and_then(Path::parent).expect("cache directory").to_path_buf();

    let mut plant = attacker.command("sh");
    plant.args(["-c", &format!("rm -f {file} && truncate -s 3G {file}")]);
    assert!(plant.status().expect("truncate").success());
    assert_eq!(fs::metadata(&file).expect("planted").len(), 3 << 30);

    // A new process of the same user meets the planted cache. (A second attach to the first
    // process, whose two threads spin, can wait seconds for 3.11 to take its pending call: a
    // separate problem, left out of this measurement.)
    drop(target);
    let target =
        Target::start_as(&interp, "inject_target.py", &["{ready}", "spin"], &[], attacker.uid, |_| {});
    let pid = target.pid().to_string();
    let start = Instant::now();
    let out = pymri(&["attach", &pid, "-c", "detach"]);
    let took = start.elapsed();
    let peak = children_peak_rss();
    let _ = fs::remove_dir_all(&cache);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(3), "the attach took {took:?}");
    assert!(peak < 256 << 20, "pymri's peak RSS was {} MiB", peak >> 20);
}
