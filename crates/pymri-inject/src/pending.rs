//! CPython 3.9 to 3.13: push `PyRun_SimpleString(code)` onto the main thread's pending calls.
//!
//! The push reproduces `_PyEval_AddPendingCall` field by field while every thread is stopped
//! and the queue's lock is seen free. The code string cannot be allocated in the target, so it
//! is parked in array slots that no push can reach before the main thread runs the call: the
//! ones just behind `first`. Only an empty queue is written to, so every index can be put
//! back.

use crate::{with_target_stopped, InjectError, Result};
use pymri_cpython::Located;
use pymri_layouts::inject::{
    pending_calls_for, EvalBreaker, PendingCallsLayout, QueueIndex, QueueLock, QueueOwner,
};
use pymri_memory::{write_memory, Memory, MemoryExt, ProcessMemory};

/// What was pushed, to tell when it ran and to tidy or withdraw it.
#[derive(Debug, Clone)]
pub struct Request {
    layout: PendingCallsLayout,
    runtime: u64,
    queue: u64,
    entry: u32,
    /// First slot and number of slots holding the code string.
    string_slots: (u32, u32),
    code: Vec<u8>,
}

/// Code the withdrawn request runs instead, if it cannot be unqueued any more.
const NOTHING: &[u8] = b"pass\0";

/// Pushes the call. `code` must never raise (wrap it in `try: ... except BaseException:`):
/// an exception escaping `PyRun_SimpleString` would surface in whatever the main thread was
/// running, and abort a debug build.
pub fn arm(mem: &ProcessMemory, located: &Located, code: &str, run_simple_string: u64) -> Result<Request> {
    let (major, minor) = (located.version.major, located.version.minor);
    let unknown = || InjectError::UnknownBuild {
        version: located.version.to_string(),
        runtime_size: located.runtime_size.unwrap_or(0),
    };
    let runtime_size = located.runtime_size.ok_or_else(unknown)?;
    let layout =
        pending_calls_for(major, minor, runtime_size, located.version.debug_build).ok_or_else(unknown)?;
    let mut bytes = code.as_bytes().to_vec();
    bytes.push(0);
    let q = layout.queue;
    let slots = bytes.len().div_ceil(q.entry_size as usize) as u32;
    // At most a quarter of the ring, so that the reserved slots and pushes can never reach it.
    if slots > q.calls_len / 4 {
        return Err(InjectError::Unsupported(format!("injected code of {} bytes is too long", code.len())));
    }
    let pid = mem.pid();
    with_target_stopped(
        pid,
        || {
            if mem.read_u64(located.runtime + layout.runtime.finalizing)? != 0 {
                return Err(InjectError::Finalizing);
            }
            let queue = queue_address(mem, located.runtime, &layout)?;
            if !lock_is_free(mem, queue, q.lock)? {
                return Ok(None);
            }
            let first = index(mem, queue + q.first, q.calls_len)?;
            let entry = match q.index {
                QueueIndex::FirstLast { last, .. } => {
                    let last = index(mem, queue + last, q.calls_len)?;
                    if last != first {
                        return Ok(None);
                    }
                    last
                }
                QueueIndex::FirstNextCount { next, npending, .. } => {
                    let next = index(mem, queue + next, q.calls_len)?;
                    if mem.read_i32(queue + npending)? != 0 {
                        return Ok(None);
                    }
                    next
                }
            };
            let start = string_start(first, entry, slots, q.calls_len)
                .ok_or_else(|| InjectError::Busy("no free room in the pending-call queue".into()))?;
            let calls = queue + q.calls;
            let mut padded = bytes.clone();
            padded.resize((slots as u64 * q.entry_size) as usize, 0);
            let string = calls + u64::from(start) * q.entry_size;
            write_memory(pid, string, &padded)?;
            let slot = calls + u64::from(entry) * q.entry_size;
            write_memory(pid, slot + q.entry_func, &run_simple_string.to_le_bytes())?;
            write_memory(pid, slot + q.entry_arg, &string.to_le_bytes())?;
            if let Some(flags) = q.entry_flags {
                write_memory(pid, slot + flags.offset, &flags.value.to_le_bytes())?;
            }
            let following = ((entry + 1) % q.calls_len) as i32;
            match q.index {
                QueueIndex::FirstLast { last, calls_to_do } => {
                    write_memory(pid, queue + last, &following.to_le_bytes())?;
                    write_memory(pid, queue + calls_to_do, &1i32.to_le_bytes())?;
                }
                QueueIndex::FirstNextCount { next, npending, .. } => {
                    write_memory(pid, queue + npending, &1i32.to_le_bytes())?;
                    write_memory(pid, queue + next, &following.to_le_bytes())?;
                }
            }
            let request = Request {
                layout: layout.clone(),
                runtime: located.runtime,
                queue,
                entry,
                string_slots: (start, slots),
                code: bytes.clone(),
            };
            request.wake(mem)?;
            Ok(Some(request))
        },
        "the pending-call queue stayed locked or in use",
    )
}

fn queue_address<M: Memory>(mem: &M, runtime: u64, layout: &PendingCallsLayout) -> Result<u64> {
    Ok(match layout.queue.owner {
        QueueOwner::Runtime => runtime + layout.queue.offset,
        QueueOwner::Interpreter => main_interpreter(mem, runtime, layout)? + layout.queue.offset,
    })
}

fn main_interpreter<M: Memory>(mem: &M, runtime: u64, layout: &PendingCallsLayout) -> Result<u64> {
    match mem.read_u64(runtime + layout.runtime.interpreters_main)? {
        0 => Err(InjectError::Finalizing),
        interp => Ok(interp),
    }
}

/// Whether no thread is inside the queue's critical section. Values other than the two a
/// lock takes mean the bytes are not what the table says: refuse rather than guess.
fn lock_is_free<M: Memory>(mem: &M, queue: u64, lock: QueueLock) -> Result<bool> {
    match lock {
        QueueLock::ThreadLock(off) => {
            let sem = mem.read_u64(queue + off)?;
            if sem == 0 {
                return Err(InjectError::Unsupported("the pending-call queue is not initialised".into()));
            }
            match mem.read_u32(sem)? {
                1 => Ok(true),
                0 => Ok(false),
                other => Err(InjectError::Unsupported(format!("unexpected pending-call lock value {other}"))),
            }
        }
        QueueLock::PyMutex(off) => Ok(mem.read_u8(queue + off)? & 1 == 0),
    }
}

fn index<M: Memory>(mem: &M, addr: u64, len: u32) -> Result<u32> {
    let value = mem.read_i32(addr)?;
    u32::try_from(value)
        .ok()
        .filter(|v| *v < len)
        .ok_or_else(|| InjectError::Unsupported(format!("pending-call index {value} out of range")))
}

/// The first of `n` contiguous slots for the string: not the entry itself nor the slot the
/// next push writes, as far behind `first` as possible (pushes reach those last), and not
/// wrapping past the end of the array, since the string must be contiguous.
fn string_start(first: u32, entry: u32, n: u32, len: u32) -> Option<u32> {
    let reserved = [entry, (entry + 1) % len];
    (1..=len).find_map(|back| {
        let end = (first + len - back) % len;
        let start = (end + 1).checked_sub(n)?;
        (start..=end).all(|s| !reserved.contains(&s)).then_some(start)
    })
}

impl Request {
    fn wake(&self, mem: &ProcessMemory) -> Result<()> {
        let pid = mem.pid();
        match self.layout.breaker {
            EvalBreaker::Interpreter { offset, value } => {
                let interp = main_interpreter(mem, self.runtime, &self.layout)?;
                write_memory(pid, interp + offset, &value.to_le_bytes())?;
            }
            EvalBreaker::Thread { offset, bit } => {
                let main_tstate =
                    self.layout.runtime.main_tstate.ok_or_else(|| {
                        InjectError::Unsupported("no main thread state in the table".into())
                    })?;
                let tstate = mem.read_u64(self.runtime + main_tstate)?;
                if tstate == 0 {
                    return Err(InjectError::Finalizing);
                }
                // Other threads set bits of this word too: only called with them stopped.
                let word = mem.read_u64(tstate + offset)?;
                write_memory(pid, tstate + offset, &(word | bit).to_le_bytes())?;
            }
        }
        Ok(())
    }

    /// Whether the main thread has taken the entry: `first` moved past it.
    pub fn taken(&self, mem: &ProcessMemory) -> Result<bool> {
        Ok(index(mem, self.queue + self.layout.queue.first, self.layout.queue.calls_len)? != self.entry)
    }

    /// Sets the wake-up word again: on 3.9 to 3.12 another thread recomputing it at the moment
    /// of the freeze may have stored a value computed before the push.
    pub fn rearm(&self, mem: &ProcessMemory) -> Result<()> {
        with_target_stopped(
            mem.pid(),
            || {
                if !self.taken(mem)? {
                    self.wake(mem)?;
                }
                Ok(Some(()))
            },
            "",
        )
    }

    fn string_address(&self) -> u64 {
        self.queue + self.layout.queue.calls + u64::from(self.string_slots.0) * self.layout.queue.entry_size
    }

    /// Makes a request that has not run harmless: its code becomes `pass`. True if it had not
    /// run yet.
    pub fn withdraw(&self, mem: &ProcessMemory) -> Result<bool> {
        with_target_stopped(
            mem.pid(),
            || {
                if self.taken(mem)? {
                    return Ok(Some(false));
                }
                write_memory(mem.pid(), self.string_address(), NOTHING)?;
                Ok(Some(true))
            },
            "",
        )
    }

    /// Zeroes the string's slots once the call has run, if they still hold it: debug builds of
    /// 3.12 and 3.13 assert that unused slots are zero.
    pub fn tidy(&self, mem: &ProcessMemory) -> Result<()> {
        let len = (u64::from(self.string_slots.1) * self.layout.queue.entry_size) as usize;
        with_target_stopped(
            mem.pid(),
            || {
                let held = mem.read_vec(self.string_address(), self.code.len(), len)?;
                if held == self.code || held.starts_with(NOTHING) {
                    write_memory(mem.pid(), self.string_address(), &vec![0u8; len])?;
                }
                Ok(Some(()))
            },
            "",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::string_start;

    #[test]
    fn string_goes_just_behind_first() {
        // Empty 32-slot ring at 10: entry 10, next push 11; 3 slots end at 9.
        assert_eq!(string_start(10, 10, 3, 32), Some(7));
    }

    #[test]
    fn string_never_wraps_or_touches_reserved_slots() {
        // At the start of the ring the slots just behind are at its end.
        assert_eq!(string_start(0, 0, 4, 32), Some(28));
        let start = string_start(1, 1, 4, 32).expect("room");
        assert!((start..start + 4).all(|s| s != 1 && s != 2) && start + 4 <= 32);
        assert_eq!(string_start(5, 5, 40, 32), None);
    }
}
