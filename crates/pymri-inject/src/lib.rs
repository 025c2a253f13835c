//! Running a script inside a live CPython process, at a safe point, from the outside.
//!
//! `pymri attach` uses this to start the debugger agent in a process that was not started for
//! debugging. The interpreter itself runs the script, at a point where running Python code is
//! allowed (an eval-breaker check), in a thread of its choosing; pymri only writes a request
//! into the interpreter's memory while every thread is briefly stopped:
//!
//! - **3.14+** ([`pep768`]): the PEP 768 protocol. The script's path goes into the chosen
//!   thread state's `debugger_script_path`, `debugger_pending_call` is set, and bit 5 of its
//!   `eval_breaker`. Every offset comes from `_Py_DebugOffsets`.
//! - **3.9 to 3.13** ([`pending`]): the pending-call queue the main thread drains, the
//!   mechanism behind `Py_AddPendingCall`. One entry `{PyRun_SimpleString, code}` is pushed
//!   exactly as the interpreter would push it, with the short code string parked in unused
//!   slots of the same array, and the wake-up flag is set. The layouts come from
//!   `pymri_layouts::inject`, picked by `sizeof(_PyRuntimeState)` so that a build the tables
//!   were not checked against is refused rather than guessed.
//!
//! Safety rests on three rules (`docs/injection-facts.md` has the evidence): write only while
//! every thread is stopped with ptrace's seize/interrupt (no function is ever called in the
//! target, nothing is allocated in it); write a queue only when its lock is seen free, so no
//! thread is inside its critical section; and never write at all when the target has remote
//! debugging disabled ([`check_allowed`]).
//!
//! Non-goals: choosing when the script runs (a thread blocked in C runs it when it returns to
//! Python), and running code in a free-threaded build.

pub mod attach;
pub mod pending;
pub mod pep768;
pub mod stage;

use pymri_cpython::Located;
use pymri_memory::{Memory, MemoryError, MemoryExt};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Python(#[from] pymri_cpython::Error),
    #[error("process {pid} has remote debugging disabled ({how}); pymri wrote nothing to it\nhint: restart it without {how} to allow debuggers to attach")]
    RemoteDebugDisabled { pid: i32, how: String },
    #[error("Python {version} with a runtime of {runtime_size} bytes is a build pymri has no checked layout for; nothing was written\nhint: report the build (python -VV) so its layout can be added")]
    UnknownBuild { version: String, runtime_size: u64 },
    #[error("the interpreter is shutting down; nothing was written")]
    Finalizing,
    #[error("{0}; nothing was written")]
    Busy(String),
    #[error("no Python thread with id {0}")]
    NoSuchThread(u64),
    #[error("{0}")]
    Unsupported(String),
    #[error("preparing files for the target: {0}")]
    Stage(#[from] std::io::Error),
}

pub type Result<T, E = InjectError> = std::result::Result<T, E>;

/// How the target will run the script.
pub enum Method {
    Pep768,
    PendingCall,
}

pub fn method(located: &Located) -> Result<Method> {
    match (located.version.major, located.version.minor) {
        (3, 14..) => Ok(Method::Pep768),
        (3, 9..=13) => Ok(Method::PendingCall),
        _ => {
            Err(InjectError::Unsupported(format!("attaching to Python {} is not supported", located.version)))
        }
    }
}

/// Refuses a target that asked not to be debugged, before anything is written to it.
///
/// 3.14+ record the decision in memory (`config.remote_debug`), which is authoritative: it
/// accounts for `-E` ignoring the environment and for the underscore spelling of `-X` being
/// ignored. Older versions have no such switch; pymri honours the same two spellings of the
/// user's intent from the process's start-up environment and command line.
pub fn check_allowed<M: Memory>(pid: i32, located: &Located, mem: &M) -> Result<()> {
    if let Some(enabled) = located.remote_debug_enabled(mem)? {
        if !enabled {
            return Err(InjectError::RemoteDebugDisabled {
                pid,
                how: "-X disable-remote-debug or PYTHON_DISABLE_REMOTE_DEBUG".into(),
            });
        }
        return Ok(());
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    if environ.split(|&b| b == 0).any(|kv| kv.starts_with(b"PYTHON_DISABLE_REMOTE_DEBUG=")) {
        return Err(InjectError::RemoteDebugDisabled { pid, how: "PYTHON_DISABLE_REMOTE_DEBUG".into() });
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let flagged = args.iter().enumerate().any(|(i, a)| {
        *a == b"-Xdisable-remote-debug"
            || (*a == b"-X" && args.get(i + 1).is_some_and(|n| *n == b"disable-remote-debug"))
    });
    if flagged {
        return Err(InjectError::RemoteDebugDisabled { pid, how: "-X disable-remote-debug".into() });
    }
    Ok(())
}

/// Walks the main interpreter's thread list for the state of thread `ident`.
pub(crate) fn thread_state<M: Memory>(mem: &M, located: &Located, ident: u64) -> Result<u64> {
    let layout = &located.layout;
    let mut interp = mem.read_u64(located.runtime + layout.runtime.interpreters_head)?;
    // The main interpreter is the last of the list.
    for _ in 0..256 {
        let next = mem.read_u64(interp + layout.interpreter.next)?;
        if next == 0 {
            break;
        }
        interp = next;
    }
    let mut tstate = mem.read_u64(interp + layout.interpreter.threads_head)?;
    for _ in 0..16384 {
        if tstate == 0 {
            break;
        }
        if mem.read_u64(tstate + layout.thread.thread_id)? == ident {
            return Ok(tstate);
        }
        tstate = mem.read_u64(tstate + layout.thread.next)?;
    }
    Err(InjectError::NoSuchThread(ident))
}

/// Stops every thread for as long as it lives; retries while `attempt` reports the target
/// busy (a queue lock held), resuming the target between tries.
pub(crate) fn with_target_stopped<T>(
    pid: i32,
    mut attempt: impl FnMut() -> Result<Option<T>>,
    busy: &str,
) -> Result<T> {
    const TRIES: usize = 50;
    for _ in 0..TRIES {
        let freeze = pymri_memory::Freeze::new(pid)?;
        let outcome = attempt();
        drop(freeze);
        if let Some(value) = outcome? {
            return Ok(value);
        }
        // The lock holder needs to run to release it: a millisecond is many times the few
        // stores it does under the lock.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(InjectError::Busy(busy.to_string()))
}
