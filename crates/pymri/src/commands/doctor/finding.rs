//! What `pymri doctor` reports: findings named by pattern, with their evidence. The JSON names
//! (`pattern`, `severity`, the field names) are a documented schema: tests and users rely on
//! them. Every string here may come from the target; the renderers escape it.

use serde::Serialize;

/// The version of the JSON document; raised when a field changes meaning or goes away.
pub const SCHEMA: u32 = 1;

/// The book's names for what goes wrong, as the JSON spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Pattern {
    Deadlock,
    OrphanedLock,
    SpikingThread,
    BlockedThreads,
    ThreadLeak,
    FdLeak,
    MemoryGrowth,
    GilContention,
    SwallowedExceptions,
    ModuleVersions,
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Deadlock => "deadlock",
            Pattern::OrphanedLock => "orphaned_lock",
            Pattern::SpikingThread => "spiking_thread",
            Pattern::BlockedThreads => "blocked_threads",
            Pattern::ThreadLeak => "thread_leak",
            Pattern::FdLeak => "fd_leak",
            Pattern::MemoryGrowth => "memory_growth",
            Pattern::GilContention => "gil_contention",
            Pattern::SwallowedExceptions => "swallowed_exceptions",
            Pattern::ModuleVersions => "module_versions",
        }
    }
}

/// Most serious first when sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The program cannot go on as it is: threads stuck for good.
    Critical,
    /// Something grows or burns that should not.
    Warning,
    /// Facts for the reader, no alarm (a census, the loaded versions).
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub pattern: Pattern,
    pub severity: Severity,
    /// One line: what is wrong.
    pub summary: String,
    /// The threads involved, in the order the report shows them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadEvidence>,
    /// The locks involved (deadlocks, orphaned locks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<LockEvidence>,
    /// Facts that fit nowhere above, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Commands to run next, exactly as typed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<String>,
    /// Counters over the window (resident memory, a container's entries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Series>,
    /// Rows of evidence (a census by type, exceptions by site, packages and versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<Table>,
    /// What each thread of the finding waits for (`blocked_threads`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waits: Vec<Wait>,
    /// Counts by kind and the most repeated values (`fd_leak`, `thread_leak`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<Count>,
}

impl Finding {
    pub fn new(pattern: Pattern, severity: Severity, summary: impl Into<String>) -> Finding {
        Finding {
            pattern,
            severity,
            summary: summary.into(),
            threads: Vec::new(),
            locks: Vec::new(),
            notes: Vec::new(),
            next: Vec::new(),
            series: Vec::new(),
            table: None,
            waits: Vec::new(),
            counts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadEvidence {
    /// `threading.get_ident()`.
    pub ident: u64,
    /// Kernel thread id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the thread is in this finding: `holds`, `waits`, `spinning`, `blocked`, ...
    pub role: String,
    /// A line about the thread in this finding (its CPU share, what it waits for and since when).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Innermost first.
    pub frames: Vec<FrameEvidence>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameEvidence {
    pub function: String,
    pub file: String,
    pub line: i32,
    /// The source line, when the file could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Names and reprs, when the finding shows them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<(String, String)>,
}

/// A lock as a finding shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LockEvidence {
    /// How the code names it: `module.NAME`, `self._lock`, a local's name.
    pub name: String,
    /// `Lock`, `RLock`.
    pub kind: String,
    pub address: u64,
    /// The holder's ident.
    pub owner: Option<u64>,
    /// Whether the holder is inferred (a `Lock` does not record it) rather than read.
    pub owner_inferred: bool,
    /// Idents of the threads waiting for it.
    pub waiters: Vec<u64>,
}

/// A counter over the window.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub unit: String,
    /// `(seconds into the window, value)`.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The whole report, as `--json` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub pid: i32,
    pub python: String,
    /// `live`, or `core` for a core file (one instant: no counters, no durations).
    pub source: &'static str,
    pub window_seconds: f64,
    pub samples: u64,
    /// The kernel's counters at the window's start and end.
    pub counters: CounterSummary,
    /// Most serious first.
    pub findings: Vec<Finding>,
    /// What was not examined, and why (`--no-inject`, remote debugging disabled, ...).
    pub skipped: Vec<String>,
    /// Where threads were started during the window (callers of `threading.Thread.start`) and
    /// what they run; empty without the agent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thread_starts: Vec<pymri_session::protocol::requests::ThreadStartSite>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CounterSummary {
    /// At the window's start and end.
    pub threads: (u64, u64),
    pub fds: (u64, u64),
    pub rss_bytes: (u64, u64),
}

/// What a thread that did not progress waits for.
#[derive(Debug, Clone, Serialize)]
pub struct Wait {
    /// The thread's `threading.get_ident()`.
    pub ident: u64,
    /// `lock`, `queue`, `condition`, `event`, `io`, `sleep`, `join`, `subprocess`, `select`,
    /// `gil` or `unknown`.
    pub kind: String,
    /// Seconds into the window since when the thread has been at this spot.
    pub still_since: f64,
    /// How long it has been there within the window.
    pub seconds: f64,
    /// Whether this is a worker waiting for its next piece of work: idle the ordinary way.
    pub for_work: bool,
    /// The name the code uses for what it waits on (`self._idle`, `lock`), from the source line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// The system call the thread sleeps in, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// The descriptor of an I/O wait, and what it is (`socket`, `pipe`, a path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_target: Option<String>,
    /// A TCP socket's local and remote addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The thread a `join` waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joins: Option<u64>,
}

/// How many of something: a kind of descriptor, a path, a peer, a stack.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// What is counted: `type`, `path`, `peer`, `stack`, `function`.
    pub by: String,
    pub value: String,
    pub count: u64,
}
