//! Stacks folded across threads, processes and hosts: `dump --group` and `pymri compare`.
//!
//! A hung job of many processes is read the way the debugging book reads a stack trace set:
//! identical stacks (same functions, files and lines; thread names aside) are one group, with
//! the processes and threads in it, and the groups are shown fewest processes first, so the
//! one rank that is not where the others are is the first thing seen.
//!
//! Not a goal: diffing stacks that differ by a line. Two stacks are the same group or not.

use crate::escape::Name;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// The JSON document's version; raised when a field changes meaning or goes away.
const SCHEMA: u32 = 1;
/// Threads listed under a group in the text before the rest is counted.
const LISTED_THREADS: usize = 16;
/// Bytes of `/proc/PID/environ` read to find a rank.
const ENVIRON_BOUND: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub tid: Option<i64>,
    pub name: Option<String>,
    /// Innermost first.
    pub frames: Vec<Frame>,
}

/// One process's stacks, read live or from a dump's JSON.
#[derive(Debug, Clone)]
pub struct Process {
    /// The machine, for dumps compared across hosts.
    pub host: Option<String>,
    pub pid: i64,
    /// The process's rank in a distributed job, when its environment or command line says.
    pub rank: Option<String>,
    pub threads: Vec<Thread>,
}

#[derive(Debug, Serialize)]
pub struct Member {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub pid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<String>,
    pub tid: Option<i64>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Group {
    /// Distinct processes with a thread in this group.
    pub processes: usize,
    pub threads: usize,
    /// Innermost first.
    pub frames: Vec<Frame>,
    pub members: Vec<Member>,
}

#[derive(Debug, Serialize)]
pub struct Grouped {
    pub schema: u32,
    pub processes: usize,
    pub threads: usize,
    /// Fewest processes first.
    pub groups: Vec<Group>,
}

/// Folds identical stacks. Threads with no Python frame are left out (they say nothing about
/// where the program is).
pub fn group(processes: &[Process]) -> Grouped {
    let mut by_stack: HashMap<&[Frame], Vec<Member>> = HashMap::new();
    let mut order: Vec<&[Frame]> = Vec::new();
    let mut threads = 0;
    for p in processes {
        for t in &p.threads {
            if t.frames.is_empty() {
                continue;
            }
            threads += 1;
            let members = by_stack.entry(&t.frames).or_insert_with(|| {
                order.push(&t.frames);
                Vec::new()
            });
            members.push(Member {
                host: p.host.clone(),
                pid: p.pid,
                rank: p.rank.clone(),
                tid: t.tid,
                name: t.name.clone(),
            });
        }
    }
    let mut groups: Vec<Group> = order
        .into_iter()
        .map(|frames| {
            let members = by_stack.remove(frames).unwrap_or_default();
            let distinct: BTreeSet<(Option<&str>, i64)> =
                members.iter().map(|m| (m.host.as_deref(), m.pid)).collect();
            Group { processes: distinct.len(), threads: members.len(), frames: frames.to_vec(), members }
        })
        .collect();
    // Fewest processes first; among equals, the deeper stack first, then by where it is, so the
    // order does not depend on the order the processes were read in.
    groups.sort_by(|a, b| {
        a.processes
            .cmp(&b.processes)
            .then(a.threads.cmp(&b.threads))
            .then_with(|| b.frames.len().cmp(&a.frames.len()))
            .then_with(|| a.frames.cmp(&b.frames))
    });
    Grouped { schema: SCHEMA, processes: processes.len(), threads, groups }
}

/// The grouped view as text: a summary line per group naming where its threads are, the
/// stack, then who is in it.
pub fn text(g: &Grouped) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} in {} into {} (fewest processes first)",
        count(g.threads, "thread", "threads"),
        count(g.processes, "process", "processes"),
        count(g.groups.len(), "stack", "different stacks"),
    );
    for group in &g.groups {
        let top = &group.frames[0];
        let who = if group.processes == 1 {
            let m = &group.members[0];
            let mut who = match &m.host {
                Some(host) => format!("1 process (pid {} on {}", m.pid, Name(host)),
                None => format!("1 process (pid {}", m.pid),
            };
            if let Some(rank) = &m.rank {
                let _ = write!(who, ", rank {}", Name(rank));
            }
            who.push(')');
            who
        } else {
            format!("{} of {} processes", group.processes, g.processes)
        };
        let _ = writeln!(
            out,
            "\n{who}, {}: in {} ({}:{})",
            count(group.threads, "thread", "threads"),
            Name(&top.function),
            Name(&top.file),
            top.line
        );
        for f in &group.frames {
            let _ = writeln!(out, "    {} ({}:{})", Name(&f.function), Name(&f.file), f.line);
        }
        let listed: Vec<String> = group.members.iter().take(LISTED_THREADS).map(member).collect();
        let _ = write!(out, "  threads: {}", listed.join(", "));
        if group.members.len() > LISTED_THREADS {
            let _ = write!(out, " and {} more", group.members.len() - LISTED_THREADS);
        }
        out.push('\n');
    }
    out
}

fn member(m: &Member) -> String {
    let mut s = String::new();
    if let Some(host) = &m.host {
        let _ = write!(s, "{}:", Name(host));
    }
    let _ = write!(s, "{}", m.pid);
    if let Some(rank) = &m.rank {
        let _ = write!(s, " (rank {})", Name(rank));
    }
    let name = m.name.as_deref().unwrap_or("?");
    match m.tid {
        Some(tid) => {
            let _ = write!(s, " {} ({tid})", Name(name));
        }
        None => {
            let _ = write!(s, " {}", Name(name));
        }
    }
    s
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A distributed job's rank of `pid`: `RANK` (torch.distributed, Horovod's `HOROVOD_RANK`,
/// MPI's `OMPI_COMM_WORLD_RANK` / `PMI_RANK`) from its environment, else a `--rank N` /
/// `--local_rank N` argument. The environment is read bounded, as the process left it at
/// its start.
pub fn rank(pid: i32, command_line: &str) -> Option<String> {
    const NAMES: [&str; 5] = ["RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "HOROVOD_RANK", "LOCAL_RANK"];
    let environ = read_bounded(&format!("/proc/{pid}/environ"));
    let vars: HashMap<&[u8], &[u8]> = environ
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            Some((&kv[..eq], &kv[eq + 1..]))
        })
        .collect();
    for name in NAMES {
        if let Some(value) = vars.get(name.as_bytes()) {
            if let Some(rank) = plain_number(value) {
                return Some(rank);
            }
        }
    }
    let mut words = command_line.split_whitespace();
    while let Some(word) = words.next() {
        for flag in ["--rank", "--local_rank", "--local-rank"] {
            if word == flag {
                if let Some(rank) = words.clone().next().and_then(|w| plain_number(w.as_bytes())) {
                    return Some(rank);
                }
            } else if let Some(value) = word.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                if let Some(rank) = plain_number(value.as_bytes()) {
                    return Some(rank);
                }
            }
        }
    }
    None
}

/// A rank is a small decimal number; anything else a process put there is not shown.
fn plain_number(value: &[u8]) -> Option<String> {
    (!value.is_empty() && value.len() <= 9 && value.iter().all(u8::is_ascii_digit))
        .then(|| String::from_utf8_lossy(value).into_owned())
}

fn read_bounded(path: &str) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(ENVIRON_BOUND).read_to_end(&mut bytes);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: i64) -> Frame {
        Frame { function: function.into(), file: "train.py".into(), line }
    }

    fn process(pid: i64, top: &str, line: i64) -> Process {
        Process {
            host: None,
            pid,
            rank: Some((pid - 100).to_string()),
            threads: vec![
                Thread {
                    tid: Some(pid),
                    name: Some("MainThread".into()),
                    frames: vec![frame(top, line), frame("main", 120)],
                },
                Thread { tid: Some(pid + 1000), name: Some("native".into()), frames: Vec::new() },
            ],
        }
    }

    #[test]
    fn the_odd_process_comes_first() {
        let mut procs: Vec<Process> = (100..107).map(|p| process(p, "all_reduce", 88)).collect();
        procs.insert(3, process(107, "backward", 85));
        let g = group(&procs);
        assert_eq!(g.processes, 8);
        assert_eq!(g.threads, 8, "threads without Python frames are left out");
        assert_eq!(g.groups.len(), 2);
        assert_eq!(g.groups[0].frames[0].function, "backward");
        assert_eq!(g.groups[0].members[0].pid, 107);
        assert_eq!(g.groups[1].processes, 7);
        let text = text(&g);
        assert!(
            text.contains("\n1 process (pid 107, rank 7), 1 thread: in backward (train.py:85)\n"),
            "{text}"
        );
        assert!(text.contains("\n7 of 8 processes, 7 threads: in all_reduce (train.py:88)\n"), "{text}");
        assert!(text.find("backward").unwrap() < text.find("all_reduce").unwrap());
    }

    #[test]
    fn hosts_keep_equal_pids_apart() {
        let mut a = process(100, "all_reduce", 88);
        a.host = Some("node-1".into());
        let mut b = process(100, "all_reduce", 88);
        b.host = Some("node-2".into());
        let g = group(&[a, b]);
        assert_eq!(g.groups[0].processes, 2);
        assert!(text(&g).contains("node-1:100 (rank 0) MainThread (100)"));
    }

    #[test]
    fn ranks_are_small_numbers_only() {
        assert_eq!(plain_number(b"3"), Some("3".into()));
        assert_eq!(plain_number(b"\x1b[2J"), None);
        assert_eq!(plain_number(b""), None);
        assert_eq!(plain_number(b"12345678901"), None);
        assert_eq!(rank(i32::MAX, "python train.py --rank 5"), Some("5".into()));
        assert_eq!(rank(i32::MAX, "python train.py --local_rank=2"), Some("2".into()));
        assert_eq!(rank(i32::MAX, "python train.py --rank"), None);
    }
}
