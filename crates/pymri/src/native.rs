//! `dump --native`: each thread's native stack, unwound by `pymri-native`, with every run of
//! interpreter frames replaced by the Python frames that eval call was running.

use pymri_cpython::{Frame, ThreadDump, ThreadState};
use pymri_memory::{Freeze, Memory, MemoryError, PageCache, Registers};
use pymri_native::{Modules, NativeFrame, NativeStack};
use serde::Serialize;

/// Pages of stack kept while one thread is unwound: 1 MiB.
const STACK_PAGES: usize = 256;

/// A thread of a `--native` dump: Python's view of it (absent for a thread running no
/// Python) and the merged frames.
#[derive(Serialize)]
pub struct MixedThread {
    pub tid: Option<i32>,
    /// `threading.get_ident()`, `null` for a thread with no Python thread state.
    pub ident: Option<u64>,
    pub name: Option<String>,
    pub state: ThreadState,
    pub holds_gil: bool,
    pub active_exception: bool,
    /// Whether the thread has a Python thread state.
    pub python: bool,
    pub frames: Vec<MixedFrame>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One frame, innermost first: `kind` says which.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MixedFrame {
    Python(Frame),
    Native {
        address: u64,
        /// The function's symbol, when a symbol table covers the address.
        symbol: Option<String>,
        /// From the symbol's start, or from the module's start when there is no symbol.
        offset: u64,
        /// The mapped file, as the target names it.
        module: Option<String>,
    },
}

impl MixedFrame {
    fn native(frame: &NativeFrame) -> MixedFrame {
        MixedFrame::Native {
            address: frame.address,
            symbol: frame.symbol.as_deref().map(str::to_string),
            offset: frame.offset,
            module: frame.module.as_deref().map(str::to_string),
        }
    }
}

/// Unwinds the live thread `tid` of `pid`, stopping it only for that unless `frozen` (the
/// whole process, `--blocking`) already holds it.
pub fn unwind_live<M: Memory>(
    modules: &mut Modules,
    mem: &M,
    pid: i32,
    tid: i32,
    frozen: Option<&Freeze>,
) -> Result<NativeStack, MemoryError> {
    let own;
    let freeze = match frozen {
        Some(f) => f,
        None => {
            own = Freeze::only(pid, &[tid])?;
            &own
        }
    };
    let registers = freeze.registers(tid)?;
    Ok(unwind(modules, mem, registers))
}

/// Unwinds one stopped thread (or a core's) from its registers.
pub fn unwind<M: Memory>(modules: &mut Modules, mem: &M, registers: Registers) -> NativeStack {
    // A stack is read a word at a time: each page is fetched once.
    let pages = PageCache::new(mem, STACK_PAGES);
    modules.unwind(&pages, registers)
}

/// The merged view of a Python thread.
pub fn mixed(thread: ThreadDump, native: Option<NativeStack>) -> MixedThread {
    let (frames, native_error) = match native {
        // Nothing to merge: the stack could not be read at all, as its error says.
        Some(stack) if stack.frames.is_empty() => {
            (thread.frames.into_iter().map(MixedFrame::Python).collect(), stack.error)
        }
        Some(stack) => {
            let (frames, mismatch) = merge(&stack.frames, thread.frames);
            (frames, [stack.error, mismatch].into_iter().flatten().reduce(|a, b| format!("{a}; {b}")))
        }
        None => (thread.frames.into_iter().map(MixedFrame::Python).collect(), None),
    };
    let error = [thread.error, native_error].into_iter().flatten().reduce(|a, b| format!("{a}; {b}"));
    MixedThread {
        tid: thread.tid,
        ident: Some(thread.ident),
        name: thread.name,
        state: thread.state,
        holds_gil: thread.holds_gil,
        active_exception: thread.active_exception,
        python: true,
        frames,
        error,
    }
}

/// A thread that runs no Python: its native frames only.
pub fn native_only(tid: i32, name: Option<String>, state: ThreadState, stack: NativeStack) -> MixedThread {
    MixedThread {
        tid: Some(tid),
        ident: None,
        name,
        state,
        holds_gil: false,
        active_exception: false,
        python: false,
        frames: stack.frames.iter().map(MixedFrame::native).collect(),
        error: stack.error,
    }
}

/// Replaces each eval call in `native` (innermost first) by the Python frames it ran, which
/// `python` (innermost first) groups by their entry frames.
///
/// On 3.12+ each group's entry frame lives on the C stack, inside its eval call's native frame:
/// that finds the call whatever the interpreter's symbols (Debian strips the local ones).
/// Otherwise the eval calls are the runs of interpreter frames by name, matched with the groups
/// from their outermost ends, which a running thread changes last; when the counts differ (the
/// thread moved between the two reads, or the interpreter's symbols are missing) the merge says
/// so.
pub fn merge(native: &[NativeFrame], python: Vec<Frame>) -> (Vec<MixedFrame>, Option<String>) {
    let mut groups: Vec<Vec<Frame>> = Vec::new();
    let mut open = Vec::new();
    for frame in python {
        let entry = frame.entry;
        open.push(frame);
        if entry {
            groups.push(std::mem::take(&mut open));
        }
    }
    if !open.is_empty() {
        groups.push(open);
    }
    let runs = located_runs(native, &groups).unwrap_or_else(|| named_runs(native));
    let mismatch = (runs.len() != groups.len()).then(|| {
        format!(
            "the native stack has {} interpreter calls where Python has {} (the thread ran between the two reads, or the interpreter's symbols are missing)",
            runs.len(),
            groups.len()
        )
    });
    // Pairs from the outermost: groups[g] runs in runs[r].
    let paired = runs.len().min(groups.len());
    let first_run = runs.len() - paired;
    let first_group = groups.len() - paired;
    let mut groups = groups.into_iter();
    // Python frames with no interpreter call left to hold them go where the innermost one is,
    // or after every native frame when none was found.
    let mut unplaced: Vec<Frame> = groups.by_ref().take(first_group).flatten().collect();
    let mut out = Vec::with_capacity(native.len());
    let mut run_index = 0;
    let mut i = 0;
    while i < native.len() {
        match runs.get(run_index) {
            Some(&(start, end)) if start == i => {
                if run_index >= first_run {
                    out.extend(unplaced.drain(..).map(MixedFrame::Python));
                    out.extend(groups.next().into_iter().flatten().map(MixedFrame::Python));
                } else {
                    out.extend(native[start..end].iter().map(MixedFrame::native));
                }
                run_index += 1;
                i = end;
            }
            _ => {
                out.push(MixedFrame::native(&native[i]));
                i += 1;
            }
        }
    }
    out.extend(unplaced.into_iter().map(MixedFrame::Python));
    (out, mismatch)
}

/// Runs of interpreter frames by name: a tail-calling interpreter (3.14+) shows its
/// instruction functions above `_PyEval_EvalFrameDefault`, all one eval call.
fn named_runs(native: &[NativeFrame]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, frame) in native.iter().enumerate() {
        if !frame.is_interpreter() {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if *end == i => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs
}

/// 3.12+: for each group, the native frame whose stack holds its entry frame, with the
/// interpreter frames just above it; `None` unless every group is found, in order.
fn located_runs(native: &[NativeFrame], groups: &[Vec<Frame>]) -> Option<Vec<(usize, usize)>> {
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(groups.len());
    for group in groups {
        let entry = group.last()?.entry_frame;
        if entry == 0 {
            return None;
        }
        let holder = native
            .windows(2)
            .position(|pair| pair[0].stack_pointer <= entry && entry < pair[1].stack_pointer)?;
        let floor = runs.last().map_or(0, |&(_, end)| end);
        if holder < floor {
            return None;
        }
        let mut start = holder;
        while start > floor && native[start - 1].is_interpreter() {
            start -= 1;
        }
        runs.push((start, holder + 1));
    }
    Some(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn c(symbol: &str) -> NativeFrame {
        NativeFrame {
            address: 0x1000,
            module: Some(Arc::from("/lib/x.so")),
            symbol: Some(Arc::from(symbol)),
            offset: 4,
            stack_pointer: 0,
        }
    }

    fn py(function: &str, entry: bool) -> Frame {
        let mut frame = Frame::new(function, "app.py", 1);
        frame.entry = entry;
        frame
    }

    fn names(frames: &[MixedFrame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                MixedFrame::Python(p) => format!("py:{}", p.function),
                MixedFrame::Native { symbol, .. } => symbol.clone().unwrap_or_default(),
            })
            .collect()
    }

    #[test]
    fn each_eval_call_is_replaced_by_its_python_frames_in_order() {
        let native = [
            c("strlen"),
            c("ffi_call"),
            c("_PyEval_EvalFrameDefault"),
            c("_PyObject_Call"),
            c("_TAIL_CALL_CALL"),
            c("_PyEval_EvalFrameDefault"),
            c("main"),
        ];
        let python = vec![py("inner", false), py("middle", true), py("outer", false), py("<module>", true)];
        let (frames, mismatch) = merge(&native, python);
        assert_eq!(mismatch, None);
        assert_eq!(
            names(&frames),
            [
                "strlen",
                "ffi_call",
                "py:inner",
                "py:middle",
                "_PyObject_Call",
                "py:outer",
                "py:<module>",
                "main"
            ]
        );
    }

    #[test]
    fn counts_that_differ_are_matched_from_the_outermost_and_said() {
        let native = [c("read"), c("_PyEval_EvalFrameDefault"), c("main")];
        let python = vec![py("new", true), py("old", true)];
        let (frames, mismatch) = merge(&native, python);
        assert_eq!(names(&frames), ["read", "py:new", "py:old", "main"]);
        assert!(mismatch.is_some_and(|m| m.contains("1 interpreter calls where Python has 2")));

        let native = [c("_PyEval_EvalFrameDefault"), c("call"), c("_PyEval_EvalFrameDefault")];
        let (frames, _) = merge(&native, vec![py("only", true)]);
        assert_eq!(names(&frames), ["_PyEval_EvalFrameDefault", "call", "py:only"]);

        let (frames, mismatch) = merge(&[c("pause"), c("start_thread")], vec![py("f", true)]);
        assert_eq!(names(&frames), ["pause", "start_thread", "py:f"]);
        assert!(mismatch.is_some());
    }

    /// A stripped interpreter: eval calls are found by where their entry frames lie.
    #[test]
    fn entry_frames_on_the_c_stack_find_unnamed_eval_calls() {
        let at = |symbol: &str, stack_pointer: u64| NativeFrame { stack_pointer, ..c(symbol) };
        let native = [at("read", 0x100), at("", 0x200), at("call", 0x300), at("", 0x400), at("start", 0x500)];
        let entered = |function: &str, entry_frame: u64| {
            let mut frame = py(function, true);
            frame.entry_frame = entry_frame;
            frame
        };
        let python = vec![py("inner", false), entered("middle", 0x2f0), entered("outer", 0x410)];
        let (frames, mismatch) = merge(&native, python.clone());
        assert_eq!(mismatch, None);
        assert_eq!(names(&frames), ["read", "py:inner", "py:middle", "call", "py:outer", "start"]);
        // An entry frame no native frame holds: merged by name, which finds none here.
        let mut lost = python;
        lost[2].entry_frame = 0x10;
        let (_, mismatch) = merge(&native, lost);
        assert!(mismatch.is_some());
    }
}
