//! A live process opened for reading: its memory, maps, executable, root and threads.

use crate::{locate, Error, Located, Result, TargetFiles};
use pymri_memory::{
    open_in_root, open_regular, parse_maps, process_root, read_proc, thread_ids, Mapping, MemoryError,
    ProcessMemory, MAX_MAPPED_FILE,
};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A running process.
pub struct LiveProcess {
    pub pid: i32,
    pub mem: ProcessMemory,
    pub maps: Vec<Mapping>,
    /// The executable's path as it appears in the maps.
    pub exe: Option<String>,
    /// The root the process runs in, when it is not ours.
    pub root: Option<PathBuf>,
    pub command: String,
    /// Thread ids as the target's PID namespace sees them, mapped to ours.
    pub ns_tids: HashMap<i32, i32>,
}

impl LiveProcess {
    pub fn open(pid: i32) -> Result<LiveProcess> {
        let mem = ProcessMemory::open(pid)?;
        let maps_text = read_proc(&format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => MemoryError::NoSuchProcess { pid },
            io::ErrorKind::PermissionDenied => {
                MemoryError::PermissionDenied { pid, cause: pymri_memory::diagnose_permission(pid) }
            }
            _ => MemoryError::Os { what: "reading /proc/PID/maps", pid, source: e },
        })?;
        let maps = parse_maps(&maps_text);
        if maps.is_empty() {
            // A zombie or a kernel thread has no user-space memory.
            return Err(Error::Memory(pymri_memory::exited_or_zombie(pid)));
        }
        let exe = std::fs::metadata(format!("/proc/{pid}/exe")).ok().and_then(|meta| {
            maps.iter().find(|m| m.inode == meta.ino() && m.is_file()).map(|m| m.path.clone())
        });
        Ok(LiveProcess {
            pid,
            mem,
            maps,
            exe,
            root: process_root(pid),
            command: command_line(pid),
            ns_tids: namespace_tids(pid),
        })
    }

    /// Opens a file the process mapped, whatever root or mount namespace it runs in, and
    /// checks that it is the very file that is mapped (same inode). The target's user controls
    /// the path and what is behind it: only a regular file of bounded size is opened (never a
    /// FIFO, which would block, nor a device), and a path is resolved inside the target's root.
    pub fn open_mapped(&self, path: &str) -> io::Result<File> {
        let mapping = self.maps.iter().find(|m| m.path == path);
        let root = PathBuf::from(format!("/proc/{}/root", self.pid));
        let mut candidates: Vec<Box<dyn Fn() -> io::Result<File>>> = Vec::new();
        if let Some(m) = mapping {
            // Exact, and immune to namespaces, but only open to CAP_SYS_ADMIN.
            let link = PathBuf::from(format!("/proc/{}/map_files/{:x}-{:x}", self.pid, m.start, m.end));
            candidates.push(Box::new(move || open_regular(&link, MAX_MAPPED_FILE)));
        }
        candidates.push(Box::new(|| open_in_root(&root, Path::new(path), MAX_MAPPED_FILE)));
        candidates.push(Box::new(|| open_in_root(Path::new("/"), Path::new(path), MAX_MAPPED_FILE)));
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"));
        for candidate in candidates {
            match candidate() {
                Ok(file) => {
                    let Some(m) = mapping else { return Ok(file) };
                    let meta = file.metadata()?;
                    if m.inode == 0 || meta.ino() == m.inode {
                        return Ok(file);
                    }
                    last = io::Error::new(io::ErrorKind::NotFound, format!("{path}: not the mapped file"));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn locate(&self) -> Result<Located> {
        self.with_files(|files| locate(&self.mem, files))
    }

    /// Runs `f` with the process's files, as `locate` and `Located::symbol` take them.
    pub fn with_files<T>(&self, f: impl FnOnce(&TargetFiles<'_>) -> T) -> T {
        let open = |p: &str| self.open_mapped(p);
        f(&TargetFiles { mappings: &self.maps, exe: self.exe.as_deref(), open: &open })
    }

    /// Thread ids in the target's namespace, as a snapshot validates them.
    pub fn known_tids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.ns_tids.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn host_tid(&self, ns_tid: i32) -> i32 {
        self.ns_tids.get(&ns_tid).copied().unwrap_or(ns_tid)
    }
}

/// `/proc/PID/cmdline` with its NUL separators as spaces.
pub fn command_line(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
            String::from_utf8_lossy(raw).replace('\0', " ")
        })
        .unwrap_or_default()
}

/// For each thread, its id inside the innermost PID namespace (the last `NSpid` field) mapped
/// to the id seen here. The two differ for a process in a container with its own PID space.
fn namespace_tids(pid: i32) -> HashMap<i32, i32> {
    let Ok(tids) = thread_ids(pid) else { return HashMap::new() };
    let shared = shares_our_pid_namespace(pid);
    tids.into_iter().map(|tid| (if shared { tid } else { namespace_tid(pid, tid) }, tid)).collect()
}

/// Whether the process sees the same thread ids as we do.
pub(crate) fn shares_our_pid_namespace(pid: i32) -> bool {
    let namespace = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let theirs = namespace(&format!("/proc/{pid}/ns/pid"));
    theirs.is_some() && theirs == namespace("/proc/self/ns/pid")
}

/// A thread's id inside the process's innermost PID namespace (itself if that cannot be read).
pub(crate) fn namespace_tid(pid: i32, tid: i32) -> i32 {
    read_proc(&format!("/proc/{pid}/task/{tid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("NSpid:"))?.to_string();
            line.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or(tid)
}
