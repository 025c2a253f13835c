//! Where a thread state keeps its trace function, for the agent's all-threads tracing on
//! CPython 3.9 to 3.11 (3.12+ use `sys.monitoring`, which needs no layout).
//!
//! The agent sets a tracer in threads that already exist through `_PyEval_SetTrace`, which
//! needs the interpreter's own trampoline: it reads it from `c_tracefunc` of its own thread
//! state after `sys.settrace`, and checks `c_traceobj` holds its tracer before trusting the
//! offsets. Values from `offsetof` on each version's headers (3.9.18, 3.10.13, 3.11.7), equal
//! to the DWARF of Debian's 3.9 and 3.11 builds, release and debug.

/// `(c_tracefunc, c_traceobj)` inside `PyThreadState`.
pub fn trace_offsets(major: u8, minor: u8) -> Option<(u64, u64)> {
    match (major, minor) {
        (3, 9) | (3, 10) => Some((64, 80)),
        (3, 11) => Some((72, 88)),
        _ => None,
    }
}
