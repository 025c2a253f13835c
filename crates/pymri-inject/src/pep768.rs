//! PEP 768 (CPython 3.14+): ask a thread to run a script file at its next safe point.

use crate::{thread_state, with_target_stopped, InjectError, Result};
use pymri_cpython::Located;
use pymri_memory::{write_memory, Memory, MemoryExt, ProcessMemory};

/// `_PY_EVAL_PLEASE_STOP_BIT`: the eval-breaker bit after which the interpreter looks at
/// `debugger_pending_call`.
const PLEASE_STOP: u64 = 1 << 5;

/// A request written into one thread state.
#[derive(Debug, Clone)]
pub struct Request {
    pub tstate: u64,
    pending_call: u64,
    script_path: u64,
    eval_breaker: u64,
}

/// Writes the request for `script` (a path inside the target's root) into the thread with
/// `ident`, or the main thread.
pub fn arm(mem: &ProcessMemory, located: &Located, script: &str, ident: Option<u64>) -> Result<Request> {
    let remote = located.remote.as_ref().ok_or_else(|| {
        InjectError::Unsupported(format!("Python {} has no PEP 768 support", located.version))
    })?;
    let pid = mem.pid();
    let mut path = script.as_bytes().to_vec();
    path.push(0);
    if path.len() as u64 > remote.debugger_script_path_size {
        return Err(InjectError::Unsupported(format!(
            "script path {script} is longer than the interpreter's {} bytes",
            remote.debugger_script_path_size - 1
        )));
    }
    with_target_stopped(
        pid,
        || {
            let tstate = match ident {
                Some(ident) => thread_state(mem, located, ident)?,
                None => main_thread_state(mem, located, remote.threads_main)?,
            };
            let support = tstate + remote.remote_debugger_support;
            let request = Request {
                tstate,
                pending_call: support + remote.debugger_pending_call,
                script_path: support + remote.debugger_script_path,
                eval_breaker: tstate + remote.eval_breaker,
            };
            if mem.read_i32(request.pending_call)? != 0 {
                return Err(InjectError::Busy(
                    "another debugger's script is already waiting to run in that thread".into(),
                ));
            }
            write_memory(pid, request.script_path, &path)?;
            write_memory(pid, request.pending_call, &1i32.to_le_bytes())?;
            request.set_breaker(mem)?;
            Ok(Some(request))
        },
        "",
    )
}

fn main_thread_state<M: Memory>(mem: &M, located: &Located, threads_main: u64) -> Result<u64> {
    let mut interp = mem.read_u64(located.runtime + located.layout.runtime.interpreters_head)?;
    for _ in 0..256 {
        let next = mem.read_u64(interp + located.layout.interpreter.next)?;
        if next == 0 {
            break;
        }
        interp = next;
    }
    match mem.read_u64(interp + threads_main)? {
        0 => Err(InjectError::Unsupported("the interpreter has no main thread state".into())),
        tstate => Ok(tstate),
    }
}

impl Request {
    /// The breaker word is also updated by the target's own threads: only ever called with
    /// every thread stopped, so the read-modify-write cannot lose their bits.
    fn set_breaker(&self, mem: &ProcessMemory) -> Result<()> {
        let word = mem.read_u64(self.eval_breaker)?;
        Ok(write_memory(mem.pid(), self.eval_breaker, &(word | PLEASE_STOP).to_le_bytes())?)
    }

    /// Whether the interpreter has taken the request (it clears the flag before running).
    pub fn taken(&self, mem: &ProcessMemory) -> Result<bool> {
        Ok(mem.read_i32(self.pending_call)? == 0)
    }

    /// Sets the breaker bit again, in case a signal handler that raised consumed the last
    /// check before the request was looked at.
    pub fn rearm(&self, mem: &ProcessMemory) -> Result<()> {
        with_target_stopped(
            mem.pid(),
            || {
                if mem.read_i32(self.pending_call)? != 0 {
                    self.set_breaker(mem)?;
                }
                Ok(Some(()))
            },
            "",
        )
    }

    /// Takes the request back if it has not run; true if it was withdrawn in time.
    pub fn withdraw(&self, mem: &ProcessMemory) -> Result<bool> {
        with_target_stopped(
            mem.pid(),
            || {
                if mem.read_i32(self.pending_call)? == 0 {
                    return Ok(Some(false));
                }
                write_memory(mem.pid(), self.pending_call, &0i32.to_le_bytes())?;
                write_memory(mem.pid(), self.script_path, &[0])?;
                Ok(Some(true))
            },
            "",
        )
    }
}
