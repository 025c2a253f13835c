//! Where asyncio's C tasks, and the coroutines and generators they drive, keep what
//! `pymri dump --tasks` shows.
//!
//! 3.14 and later publish the task fields in `_Py_AsyncioModuleDebugOffsets` and the
//! generator fields in `_Py_DebugOffsets`; `pymri-cpython` decodes those at run time. Before
//! 3.14 nothing is published, so the facts below come from each version's
//! `Modules/_asynciomodule.c` (`FutureObj_HEAD`, `TaskObj`), `Include/cpython/genobject.h`
//! (or `pycore_genobject.h`) and the frame headers. The 3.9 values were checked against the
//! DWARF of Debian's `_asyncio` debug build; every value is checked against running 3.9, 3.11
//! and 3.13 interpreters by the `tasks` tests. 3.10 and 3.12, which the test suite has no
//! interpreter for, are left out rather than guessed.

/// `TaskObj` fields read before 3.14 (byte offsets from the object's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLayout {
    /// `task_loop`: right after the object header in every version.
    pub event_loop: u64,
    /// `task_callback0`: the first done callback, kept outside the list.
    pub callback0: u64,
    /// `task_callbacks`: a list of `(callback, context)` tuples, or NULL.
    pub callbacks: u64,
    /// `task_state`: a C enum, 0 pending, 1 cancelled, 2 finished.
    pub state: u64,
    /// `task_fut_waiter`: the future the task waits for, or NULL.
    pub fut_waiter: u64,
    pub coro: u64,
    /// `task_name`: a str, or (3.13+) the int of a default `Task-N` name, formatted lazily.
    pub name: u64,
}

/// How a generator, coroutine or async generator reaches its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenFrame {
    /// 3.9/3.10: `gi_frame`, a `PyFrameObject *` that is NULL once the generator finished.
    Pointer(u64),
    /// 3.11+: the `_PyInterpreterFrame` is embedded at `iframe`; the `int8_t` at `state` says
    /// whether it is live: it is while the state is below `finished`.
    Embedded { iframe: u64, state: u64, finished: i8 },
}

/// How to find the object a suspended generator waits on (`cr_await`, `gi_yieldfrom`): the
/// top of its frame's value stack, when it is suspended in `await` or `yield from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YieldFrom {
    /// 3.9: the next instruction (`co_code[f_lasti + 2]`) is `YIELD_FROM`; the stack top is
    /// `f_stacktop[-1]`. `code` is `PyCodeObject.co_code`.
    NextOpcode { code: u64, stacktop: u64, opcode: u8 },
    /// 3.11: the frame is suspended and the code unit after `prev_instr` is `RESUME` (or its
    /// quickened form) with an oparg of 2 or more (after `yield from` or `await`); the stack
    /// top is `localsplus[stacktop - 1]`.
    Resume { suspended: i8, resume: [u8; 2], stacktop: u64 },
    /// 3.13: the state says suspended in `yield from`/`await`; the stack top is
    /// `localsplus[stacktop - 1]`.
    StateStackTop { yield_from: (i8, i8), stacktop: u64 },
    /// 3.14+: the same state test; the awaited object is the tagged `_PyStackRef` at
    /// `stackpointer[-depth]`.
    StateStackPointer { yield_from: (i8, i8), stackpointer: u64, depth: u64 },
}

/// What the task reader needs besides the [`crate::Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncioLayout {
    /// `None` from 3.14 on, where the module publishes its own offsets.
    pub task: Option<TaskLayout>,
    pub gen_frame: GenFrame,
    pub yield_from: YieldFrom,
}

/// The facts for versions before 3.14 whose values have been checked (3.9, 3.11, 3.13).
pub fn before_3_14(version: (u8, u8)) -> Option<AsyncioLayout> {
    let common = |state, fut_waiter| TaskLayout {
        event_loop: 16,
        callback0: 24,
        callbacks: 40,
        state,
        fut_waiter,
        coro: fut_waiter + 8,
        name: fut_waiter + 16,
    };
    match version {
        // FutureObj_HEAD ends with `dict`, the weak reference list and a 32-byte
        // `_PyErr_StackItem`; `PyGenObject.gi_frame` follows the header; `PyFrameObject`
        // keeps `f_stacktop` at 72 and `PyCodeObject.co_code` is at 48.
        (3, 9) => Some(AsyncioLayout {
            task: Some(common(80, 144)),
            gen_frame: GenFrame::Pointer(16),
            yield_from: YieldFrom::NextOpcode { code: 48, stacktop: 72, opcode: 72 },
        }),
        // 3.11 adds `task_exception_tb` and makes the cancelled exception one pointer;
        // `PyGenObject` keeps `gi_code` before the embedded frame (state byte 75, frame at
        // 80); `_PyInterpreterFrame.stacktop` is the int at 64; RESUME is 151, RESUME_QUICK 150.
        (3, 11) => Some(AsyncioLayout {
            task: Some(common(88, 128)),
            gen_frame: GenFrame::Embedded { iframe: 80, state: 75, finished: 1 },
            yield_from: YieldFrom::Resume { suspended: -1, resume: [151, 150], stacktop: 64 },
        }),
        // 3.13 drops `gi_code` (state byte 67, frame at 72) and adds
        // FRAME_SUSPENDED_YIELD_FROM (-1); `stacktop` is still the int at 64.
        (3, 13) => Some(AsyncioLayout {
            task: Some(common(96, 112)),
            gen_frame: GenFrame::Embedded { iframe: 72, state: 67, finished: 1 },
            yield_from: YieldFrom::StateStackTop { yield_from: (-1, -1), stacktop: 64 },
        }),
        _ => None,
    }
}

/// Facts of 3.14 and later that `_Py_DebugOffsets` does not publish: the range of frame
/// states suspended in `yield from`/`await`, the first state of a finished frame, and how deep
/// in the value stack a suspended frame keeps what it awaits. 3.15 renumbered the states from
/// 0 (created) upwards, and leaves the value `SEND` will push as a NULL reference above the
/// awaited object.
pub fn frame_states(version: (u8, u8)) -> ((i8, i8), i8, u64) {
    if version >= (3, 15) {
        ((2, 3), 5, 2)
    } else {
        ((-1, -1), 1, 1)
    }
}

/// `PyWeakReference.wr_object`, after the object header in every version.
pub const WEAKREF_OBJECT: u64 = 16;
/// `PyMethodObject.im_func` and `im_self`, after the object header in every version.
pub const METHOD_FUNC: u64 = 16;
pub const METHOD_SELF: u64 = 24;
/// `PyTypeObject.tp_base`: in the type object's prefix, unmoved since 3.0.
pub const TP_BASE: u64 = 256;
/// `PyAsyncGenASend.ags_gen` and the coroutine wrapper's `cw_coroutine`: after the header.
pub const WRAPPED_GEN: u64 = 16;
