//! A core of a live child process, read back with `pymri-object`'s reader.

use pymri_memory::{Memory, MemoryError, ProcessMemory};
use pymri_object::CoreFile;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A child killed and reaped on drop, and a scratch file removed on drop.
struct Fixture {
    child: Child,
    path: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        // `sleep` parks in one system call: its memory does not change while it is compared.
        let child = Command::new("sleep").arg("600").stdin(Stdio::null()).spawn().expect("sleep");
        let path = std::env::temp_dir().join(format!("pymri-coredump-{}-{name}.core", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Fixture { child, path }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn file(&self) -> File {
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&self.path).expect("core file")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn stack_of(pid: i32) -> (u64, u64) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let stack = pymri_memory::parse_maps(&maps).into_iter().find(|m| m.path == "[stack]").expect("[stack]");
    (stack.start, stack.end)
}

#[test]
fn a_core_of_a_live_process_holds_its_threads_files_and_memory() {
    let fx = Fixture::new("sleep");
    let pid = fx.pid();
    // Until the exec is done, the child is still this test's image.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != "sleep" {
        assert!(std::time::Instant::now() < deadline, "sleep never started");
        std::thread::yield_now();
    }
    let plan = pymri_coredump::plan(pid, &pymri_coredump::Options::default()).expect("plan");
    let estimate = *plan.estimate();
    assert_eq!(estimate.threads, 1);
    assert!(estimate.memory > 0 && estimate.file > estimate.memory, "{estimate:?}");
    let mut steps = Vec::new();
    let report = plan.write(&fx.file(), &mut |p| steps.push(p)).expect("write");
    assert!(matches!(steps[0], pymri_coredump::Progress::Stopped), "{steps:?}");
    assert!(matches!(steps[1], pymri_coredump::Progress::Resumed { .. }), "{steps:?}");
    assert_eq!(report.file, std::fs::metadata(&fx.path).expect("written").len());
    assert_eq!(report.unreadable_pages, 0);
    assert_eq!(report.written_stopped, 0, "the buffer held everything");

    let core = CoreFile::open(&fx.path, None, None).expect("a core pymri-object reads");
    assert_eq!(core.pid(), pid);
    assert_eq!(core.threads().iter().map(|t| t.tid).collect::<Vec<_>>(), [pid]);
    assert_eq!(core.command(), "sleep 600");
    assert!(core.exe().is_some_and(|e| e.ends_with("/sleep")), "{:?}", core.exe());
    // The stack as the core holds it is the stack of the process, which has not moved.
    let (start, end) = stack_of(pid);
    let top = end - 4096;
    let mut from_core = vec![0u8; 4096];
    core.read(top, &mut from_core).expect("the stack's last page is in the core");
    let mut live = vec![0u8; 4096];
    ProcessMemory::open(pid).expect("open").read(top, &mut live).expect("live stack");
    assert_eq!(from_core, live);
    assert!(start < top);
    // The process runs on, and nothing traces it.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("TracerPid:\t0\n"), "{status}");
    assert!(!status.contains("State:\tt"), "{status}");
}

/// With a buffer of one page, the copy goes to the file during the stop: the same core.
#[test]
fn memory_beyond_the_buffer_is_written_during_the_stop() {
    let fx = Fixture::new("small-buffer");
    let pid = fx.pid();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != "sleep" {
        assert!(std::time::Instant::now() < deadline, "sleep never started");
        std::thread::yield_now();
    }
    let options = pymri_coredump::Options { max_buffer: Some(4096) };
    let plan = pymri_coredump::plan(pid, &options).expect("plan");
    assert_eq!(plan.estimate().buffered, 4096);
    let report = plan.write(&fx.file(), &mut |_| {}).expect("write");
    assert_eq!(report.written_stopped, report.memory - 4096);
    let core = CoreFile::open(&fx.path, None, None).expect("core");
    let (_, end) = stack_of(pid);
    let mut from_core = vec![0u8; 4096];
    core.read(end - 4096, &mut from_core).expect("stack page");
    let mut live = vec![0u8; 4096];
    ProcessMemory::open(pid).expect("open").read(end - 4096, &mut live).expect("live");
    assert_eq!(from_core, live);
}

#[test]
fn a_missing_process_is_named() {
    let err =
        pymri_coredump::plan(i32::MAX, &pymri_coredump::Options::default()).err().expect("no such process");
    assert!(matches!(err, pymri_coredump::Error::Memory(MemoryError::NoSuchProcess { .. })), "{err}");
    assert!(err.process_gone());
}
