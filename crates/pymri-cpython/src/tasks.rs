//! asyncio tasks read from memory, for `pymri dump --tasks`: every task of every event loop,
//! its coroutine stack, the tasks that await it, and the thread running it now. Nothing runs in
//! the target.
//!
//! Where the tasks are:
//! - 3.14+: the `_asyncio` module (a shared object, or built into the interpreter) publishes
//!   `_Py_AsyncioModuleDebugOffsets` in its `.AsyncioDebug` section: each thread state heads a
//!   list of its tasks (`task_node`), the interpreter one of the tasks of threads that ended,
//!   each thread state names its running task, and each task keeps the set of what awaits it
//!   (`task_awaited_by`, kept up to date by `await`, `gather` and `TaskGroup`).
//! - before 3.14: `sys.modules["asyncio.tasks"]` holds the registries: `_all_tasks` (a
//!   `WeakSet`, up to 3.11) or `_scheduled_tasks` and `_eager_tasks` (3.12+), and
//!   `_current_tasks` (event loop to running task; the loop's `_thread_id` names the thread).
//!   A task awaits what its `_fut_waiter` is: a task, or a `gather`'s future whose `_children`
//!   are the tasks; a `TaskGroup`'s tasks carry its `_on_task_done` as a done callback, and the
//!   group names its `_parent_task`.
//!
//! A task's stack starts at its coroutine and follows what each suspended coroutine or
//! generator waits on (the top of its frame's value stack while it is suspended in `await` or
//! `yield from`), through async generators' `asend` objects, to the innermost frame.
//!
//! Every list walked is bounded and checked for loops; a task that cannot be read whole is
//! reported with what could be read and a note.

use crate::debug_offsets;
use crate::locate::map_binary;
use crate::objects::Kind;
use crate::snapshot::{Frame, Reader, GLIBC_PTHREAD_TID, MODULE_DICT};
use crate::{Error, Result, TargetFiles};
use pymri_layouts::asyncio::{
    self, AsyncioLayout, GenFrame, TaskLayout, YieldFrom, METHOD_FUNC, METHOD_SELF, TP_BASE, WEAKREF_OBJECT,
    WRAPPED_GEN,
};
use pymri_layouts::{flags, structural, InstructionRef};
use pymri_memory::{field, Memory, MemoryExt};
use pymri_object::Elf;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Tasks read in one dump: more means a corrupt or hostile list.
const MAX_TASKS: usize = 1 << 16;
/// Coroutines awaiting one another in one task's stack.
const MAX_AWAIT_DEPTH: usize = 1024;
/// Gathers nested inside one another that a task's waiter is followed through.
const MAX_GATHER_DEPTH: usize = 32;
/// Classes walked up from a task's type to find asyncio's own `Task`.
const MAX_BASES: usize = 64;
/// Characters of a task name kept.
const MAX_NAME: usize = 200;

/// A task's future state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Cancelled,
    Done,
}

impl TaskState {
    pub fn describe(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Cancelled => "cancelled",
            TaskState::Done => "done",
        }
    }
}

/// The thread running a task right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RunningOn {
    /// Kernel thread id, when it could be learned.
    pub tid: Option<i32>,
    /// `threading.get_ident()` of the thread.
    pub ident: u64,
}

/// One asyncio task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskDump {
    /// The task object's address: how the other tasks' `awaited_by` name it.
    pub id: u64,
    pub name: String,
    pub state: TaskState,
    /// The coroutine stack, innermost first.
    pub frames: Vec<Frame>,
    /// The tasks waiting for this one (directly, through `gather`, or as a `TaskGroup`'s
    /// parent), by id.
    pub awaited_by: Vec<u64>,
    /// The thread whose event loop runs this task at this moment.
    pub running_on: Option<RunningOn>,
    /// Why the task is incomplete, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A thread state, as the task reader needs it.
struct Thread {
    tstate: u64,
    interp: u64,
    ident: u64,
    tid: Option<i32>,
}

/// `_Py_AsyncioModuleDebugOffsets` (3.14+).
#[derive(Debug, Clone, Copy)]
struct ModuleOffsets {
    task_name: u64,
    task_awaited_by: u64,
    task_is_task: u64,
    task_awaited_by_is_set: u64,
    task_coro: u64,
    task_node: u64,
    interp_tasks_head: u64,
    thread_running_task: u64,
    thread_tasks_head: u64,
}

/// Where a task's fields come from.
enum Fields {
    /// A C `TaskObj` (or a subclass) before 3.14.
    C(TaskLayout),
    /// A task of the pure-Python `asyncio.tasks.Task`: instance attributes.
    Python,
}

/// A task's raw fields, before its stack is read.
struct Raw {
    name: String,
    state: TaskState,
    coro: u64,
    /// Before 3.14: what the task waits for, and its done callbacks.
    fut_waiter: u64,
    callbacks: Vec<u64>,
    /// 3.14+: the objects registered as awaiting the task.
    awaited_by: Vec<u64>,
}

impl<'a, M: Memory> Reader<'a, M> {
    /// Every task of every event loop of the first interpreter that has any.
    pub(crate) fn tasks(&mut self, files: &TargetFiles<'_>) -> Result<Vec<TaskDump>> {
        let version = self.located.layout.version;
        if version >= (3, 14) {
            let threads = self.task_threads()?;
            return self.tasks_published(files, &threads);
        }
        let layout =
            asyncio::before_3_14(version).ok_or(Error::TasksUnsupported { version: self.located.version })?;
        let threads = self.task_threads()?;
        self.tasks_from_modules(&layout, &threads)
    }

    /// Thread states of every interpreter, oldest first.
    fn task_threads(&self) -> Result<Vec<Thread>> {
        let layout = &self.located.layout;
        let o = &self.objects;
        let mut out = Vec::new();
        let mut interp = o.ptr(field(self.located.runtime, layout.runtime.interpreters_head)?)?;
        let mut seen = HashSet::new();
        while interp != 0 {
            if !seen.insert(interp) || seen.len() > crate::snapshot::MAX_INTERPRETERS {
                return Err(Error::Inconsistent("the interpreter list loops or does not end".into()));
            }
            let mut tstate = o.ptr(field(interp, layout.interpreter.threads_head)?)?;
            let mut interp_threads = Vec::new();
            while tstate != 0 {
                if !seen.insert(tstate) || interp_threads.len() >= crate::snapshot::MAX_THREADS {
                    return Err(Error::Inconsistent("a thread list loops or does not end".into()));
                }
                let ident = o.ptr(field(tstate, layout.thread.thread_id)?)?;
                let tid = match layout.thread.native_thread_id {
                    Some(off) => Some(o.mem.read_u64(field(tstate, off)?)? as i32),
                    None => GLIBC_PTHREAD_TID
                        .and_then(|off| o.mem.read_u32(ident.checked_add(off)?).ok())
                        .map(|t| t as i32),
                }
                .filter(|t| {
                    *t > 0 && (self.options.known_tids.is_empty() || self.options.known_tids.contains(t))
                });
                interp_threads.push(Thread { tstate, interp, ident, tid });
                tstate = o.ptr(field(tstate, layout.thread.next)?)?;
            }
            // CPython prepends new threads: oldest first, as `dump` shows them.
            interp_threads.reverse();
            out.extend(interp_threads);
            interp = o.ptr(field(interp, layout.interpreter.next)?)?;
        }
        Ok(out)
    }

    // ---- 3.14 and later ----

    fn tasks_published(&mut self, files: &TargetFiles<'_>, threads: &[Thread]) -> Result<Vec<TaskDump>> {
        let Some(module) = module_offsets(files, &self.located.binary)? else {
            // `_asyncio` was never imported: no task can exist.
            return Ok(Vec::new());
        };
        let mut head = vec![0u8; debug_offsets::MAX_SIZE];
        self.objects.mem.read(self.located.runtime, &mut head)?;
        let (gen_frame, yield_from) = debug_offsets::generators(&head)?
            .ok_or_else(|| Error::Inconsistent("the interpreter publishes no generator offsets".into()))?;
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut running = HashMap::new();
        let mut interps = Vec::new();
        for t in threads {
            let task = self.objects.ptr(field(t.tstate, module.thread_running_task)?)?;
            if task != 0 {
                running.insert(task, RunningOn { tid: t.tid, ident: t.ident });
            }
            self.task_list(
                field(t.tstate, module.thread_tasks_head)?,
                module.task_node,
                &mut order,
                &mut seen,
            )?;
            if !interps.contains(&t.interp) {
                interps.push(t.interp);
            }
        }
        for interp in interps {
            self.task_list(
                field(interp, module.interp_tasks_head)?,
                module.task_node,
                &mut order,
                &mut seen,
            )?;
        }
        let layout = AsyncioLayout { task: None, gen_frame, yield_from };
        let mut out = Vec::with_capacity(order.len());
        for task in order {
            let raw = self.published_fields(task, &module);
            out.push(self.finish_task(task, raw, &layout, &running));
        }
        let ids: HashSet<u64> = out.iter().map(|t| t.id).collect();
        for t in &mut out {
            t.awaited_by.retain(|a| ids.contains(a));
        }
        Ok(out)
    }

    /// Appends the tasks of the `llist_node` list headed at `head` to `order`.
    fn task_list(
        &self,
        head: u64,
        task_node: u64,
        order: &mut Vec<u64>,
        seen: &mut HashSet<u64>,
    ) -> Result<()> {
        let mut node = self.objects.ptr(head)?;
        let mut visited = HashSet::new();
        while node != head && node != 0 {
            if !visited.insert(node) || order.len() >= MAX_TASKS {
                return Err(Error::Inconsistent("a task list loops or does not end".into()));
            }
            let task = node
                .checked_sub(task_node)
                .ok_or_else(|| Error::Inconsistent(format!("task list node {node:#x} is not in a task")))?;
            if seen.insert(task) {
                order.push(task);
            }
            node = self.objects.ptr(node)?;
        }
        Ok(())
    }

    fn published_fields(&self, task: u64, m: &ModuleOffsets) -> Result<Raw> {
        let o = &self.objects;
        // `fut_state` is the enum right before `fut_is_task` in `FutureObj_HEAD` (3.14, 3.15).
        let state_at = m
            .task_is_task
            .checked_sub(4)
            .ok_or_else(|| Error::Inconsistent("task_is_task offset is too small".into()))?;
        let state = future_state(o.mem.read_i32(field(task, state_at)?)?)?;
        let name = self.task_name(o.ptr(field(task, m.task_name)?)?);
        let coro = o.ptr(field(task, m.task_coro)?)?;
        let by = o.ptr(field(task, m.task_awaited_by)?)?;
        let awaited_by = match by {
            0 => Vec::new(),
            by if o.mem.read_u8(field(task, m.task_awaited_by_is_set)?)? != 0 => {
                o.set_items(by, MAX_TASKS)?.1
            }
            by => vec![by],
        };
        Ok(Raw { name, state, coro, fut_waiter: 0, callbacks: Vec::new(), awaited_by })
    }

    // ---- before 3.14 ----

    fn tasks_from_modules(&mut self, layout: &AsyncioLayout, threads: &[Thread]) -> Result<Vec<TaskDump>> {
        let task_layout = layout.task.ok_or_else(|| Error::Inconsistent("no task layout".into()))?;
        let mut interps: Vec<u64> = Vec::new();
        for t in threads {
            if !interps.contains(&t.interp) {
                interps.push(t.interp);
            }
        }
        let mut out = Vec::new();
        for interp in interps {
            let o = &self.objects;
            let modules = o.ptr(field(interp, self.located.layout.interpreter.modules)?)?;
            if modules == 0 {
                continue;
            }
            let Some(tasks_module) = o.dict_get(modules, "asyncio.tasks")? else { continue };
            let globals = o.ptr(field(tasks_module, MODULE_DICT)?)?;
            let c_task_type = match o.dict_get(modules, "_asyncio")? {
                Some(m) => o.dict_get(o.ptr(field(m, MODULE_DICT)?)?, "Task")?,
                None => None,
            };
            let mut order = Vec::new();
            let mut seen = HashSet::new();
            for registry in ["_all_tasks", "_scheduled_tasks", "_eager_tasks"] {
                let Some(set) = o.dict_get(globals, registry)? else { continue };
                for task in self.registry_members(set)? {
                    if order.len() >= MAX_TASKS {
                        return Err(Error::Inconsistent(format!("more than {MAX_TASKS} tasks")));
                    }
                    if seen.insert(task) {
                        order.push(task);
                    }
                }
            }
            let mut running = HashMap::new();
            if let Some(current) = o.dict_get(globals, "_current_tasks")? {
                for (event_loop, task) in o.dict_items(current, MAX_TASKS)?.1 {
                    if seen.insert(task) {
                        order.push(task);
                    }
                    let ident = o
                        .attribute(event_loop, "_thread_id")?
                        .filter(|&i| matches!(o.kind(i), Ok((Kind::Int, _))))
                        .and_then(|i| o.read_int(i).ok()?.parse::<u64>().ok());
                    if let Some(t) = ident.and_then(|i| threads.iter().find(|t| t.ident == i)) {
                        running.insert(task, RunningOn { tid: t.tid, ident: t.ident });
                    }
                }
            }
            let mut raws = Vec::with_capacity(order.len());
            for &task in &order {
                let fields = match c_task_type {
                    Some(tp) if self.is_subclass(task, tp) => Fields::C(task_layout),
                    _ => Fields::Python,
                };
                raws.push((task, self.module_fields(task, &fields)));
            }
            let awaiters = self.awaiters(&raws);
            for (task, raw) in raws {
                let raw = raw.map(|mut r| {
                    r.awaited_by = awaiters.get(&task).cloned().unwrap_or_default();
                    r
                });
                out.push(self.finish_task(task, raw, layout, &running));
            }
            if !out.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// The live members of a `WeakSet` (through its `data` set of weak references) or a `set`.
    fn registry_members(&self, registry: u64) -> Result<Vec<u64>> {
        let o = &self.objects;
        match o.kind(registry)?.0 {
            Kind::Set => Ok(o.set_items(registry, MAX_TASKS)?.1),
            _ => {
                let Some(data) = o.attribute(registry, "data")? else { return Ok(Vec::new()) };
                if o.kind(data)?.0 != Kind::Set {
                    return Ok(Vec::new());
                }
                let mut out = Vec::new();
                for weakref in o.set_items(data, MAX_TASKS)?.1 {
                    let referent = o.ptr(field(weakref, WEAKREF_OBJECT)?)?;
                    // A cleared reference points at None.
                    if referent != 0 && !matches!(o.kind(referent), Ok((Kind::None, _)) | Err(_)) {
                        out.push(referent);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Whether `obj`'s class is `tp` or derives from it.
    fn is_subclass(&self, obj: u64, tp: u64) -> bool {
        let Ok(mut class) = self.objects.ob_type(obj) else { return false };
        for _ in 0..MAX_BASES {
            if class == tp {
                return true;
            }
            match field(class, TP_BASE).and_then(|at| self.objects.mem.read_u64(at)) {
                Ok(base) if base != 0 => class = base,
                _ => return false,
            }
        }
        false
    }

    fn module_fields(&self, task: u64, fields: &Fields) -> Result<Raw> {
        let o = &self.objects;
        match fields {
            Fields::C(l) => {
                let state = future_state(o.mem.read_i32(field(task, l.state)?)?)?;
                let name = self.task_name(o.ptr(field(task, l.name)?)?);
                let mut callbacks = Vec::new();
                let first = o.ptr(field(task, l.callback0)?)?;
                if first != 0 {
                    callbacks.push(first);
                }
                let list = o.ptr(field(task, l.callbacks)?)?;
                if list != 0 {
                    callbacks.extend(self.callback_list(list)?);
                }
                Ok(Raw {
                    name,
                    state,
                    coro: o.ptr(field(task, l.coro)?)?,
                    fut_waiter: o.ptr(field(task, l.fut_waiter)?)?,
                    callbacks,
                    awaited_by: Vec::new(),
                })
            }
            Fields::Python => {
                let attr = |name: &str| -> Result<u64> { Ok(o.attribute(task, name)?.unwrap_or(0)) };
                let state = match attr("_state")? {
                    0 => return Err(Error::Inconsistent("the task has no _state".into())),
                    s => match o.read_str(s, 16)?.0.as_str() {
                        "PENDING" => TaskState::Pending,
                        "CANCELLED" => TaskState::Cancelled,
                        "FINISHED" => TaskState::Done,
                        other => return Err(Error::Inconsistent(format!("task state {other:?}"))),
                    },
                };
                let waiter = attr("_fut_waiter")?;
                let fut_waiter = match o.kind(waiter) {
                    Ok((Kind::None, _)) | Err(_) => 0,
                    _ => waiter,
                };
                let callbacks = match attr("_callbacks")? {
                    0 => Vec::new(),
                    list => self.callback_list(list)?,
                };
                Ok(Raw {
                    name: self.task_name(attr("_name")?),
                    state,
                    coro: attr("_coro")?,
                    fut_waiter,
                    callbacks,
                    awaited_by: Vec::new(),
                })
            }
        }
    }

    /// The callbacks of a futures' list of `(callback, context)` tuples.
    fn callback_list(&self, list: u64) -> Result<Vec<u64>> {
        let o = &self.objects;
        if o.kind(list)?.0 != Kind::List {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in o.sequence(list, Kind::List, MAX_TASKS)?.1 {
            if o.kind(item)?.0 == Kind::Tuple {
                if let Some(&callback) = o.sequence(item, Kind::Tuple, 1)?.1.first() {
                    out.push(callback);
                }
            }
        }
        Ok(out)
    }

    /// Who awaits each task, from the tasks' waiters and done callbacks.
    fn awaiters(&self, raws: &[(u64, Result<Raw>)]) -> HashMap<u64, Vec<u64>> {
        let ids: HashSet<u64> = raws.iter().map(|(t, _)| *t).collect();
        let mut out: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut add = |awaited: u64, by: u64| {
            let list = out.entry(awaited).or_default();
            if !list.contains(&by) && awaited != by {
                list.push(by);
            }
        };
        for (task, raw) in raws {
            let Ok(raw) = raw else { continue };
            if raw.fut_waiter != 0 {
                for awaited in self.waited_tasks(raw.fut_waiter, &ids, 0) {
                    add(awaited, *task);
                }
            }
            for &callback in &raw.callbacks {
                if let Some(parent) = self.task_group_parent(callback).filter(|p| ids.contains(p)) {
                    add(*task, parent);
                }
            }
        }
        out
    }

    /// The tasks a task waiting on `waiter` waits for: the waiter itself when it is a task, or
    /// the children of a `gather` (followed through nested gathers).
    fn waited_tasks(&self, waiter: u64, ids: &HashSet<u64>, depth: usize) -> Vec<u64> {
        if ids.contains(&waiter) {
            return vec![waiter];
        }
        if depth >= MAX_GATHER_DEPTH {
            return Vec::new();
        }
        let o = &self.objects;
        let Ok(Some(children)) = o.attribute(waiter, "_children") else { return Vec::new() };
        if !matches!(o.kind(children), Ok((Kind::List, _))) {
            return Vec::new();
        }
        let Ok((_, children)) = o.sequence(children, Kind::List, MAX_TASKS) else { return Vec::new() };
        children.into_iter().flat_map(|child| self.waited_tasks(child, ids, depth + 1)).collect()
    }

    /// The task that created a `TaskGroup` task: its done callback is the bound method
    /// `TaskGroup._on_task_done`, whose group names the parent task.
    fn task_group_parent(&self, callback: u64) -> Option<u64> {
        let o = &self.objects;
        if &*self.static_type_name(callback)? != "method" {
            return None;
        }
        let function = o.ptr(field(callback, METHOD_FUNC).ok()?).ok()?;
        if o.kind(function).ok()?.0 != Kind::Function {
            return None;
        }
        let qualname =
            o.ptr(field(function, structural::func_qualname(self.located.layout.version)).ok()?).ok()?;
        if o.string(qualname).ok()? != "TaskGroup._on_task_done" {
            return None;
        }
        let group = o.ptr(field(callback, METHOD_SELF).ok()?).ok()?;
        o.attribute(group, "_parent_task").ok()?
    }

    // ---- both ----

    /// A task's name: a str, or the int of a default `Task-N` name (3.13+ formats it lazily).
    fn task_name(&self, obj: u64) -> String {
        let o = &self.objects;
        if obj == 0 {
            return String::new();
        }
        match o.kind(obj) {
            Ok((Kind::Str, _)) => o.read_str(obj, MAX_NAME).map(|(s, _)| s).unwrap_or_default(),
            Ok((Kind::Int, _)) => o.read_int(obj).map(|n| format!("Task-{n}")).unwrap_or_default(),
            _ => o.repr(obj, &self.options.limits),
        }
    }

    fn finish_task(
        &mut self,
        task: u64,
        raw: Result<Raw>,
        layout: &AsyncioLayout,
        running: &HashMap<u64, RunningOn>,
    ) -> TaskDump {
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                return TaskDump {
                    id: task,
                    name: String::new(),
                    state: TaskState::Pending,
                    frames: Vec::new(),
                    awaited_by: Vec::new(),
                    running_on: running.get(&task).copied(),
                    error: Some(format!("task unreadable: {e}")),
                }
            }
        };
        let (frames, error) = self.coroutine_stack(raw.coro, layout);
        TaskDump {
            id: task,
            name: raw.name,
            state: raw.state,
            frames,
            awaited_by: raw.awaited_by,
            running_on: running.get(&task).copied(),
            error,
        }
    }

    /// `tp_name` of `obj`'s type when it is a static type (CPython's own: a class written in
    /// Python is a heap type, whatever it is called).
    fn static_type_name(&self, obj: u64) -> Option<std::rc::Rc<str>> {
        let o = &self.objects;
        let tp = o.ob_type(obj).ok()?;
        let tp_flags = o.mem.read_u64(field(tp, self.located.layout.object.tp_flags).ok()?).ok()?;
        if tp_flags & flags::HEAPTYPE != 0 {
            return None;
        }
        o.type_name(tp).ok()
    }

    /// The coroutine stack from `coro` inwards, innermost first.
    fn coroutine_stack(&mut self, coro: u64, layout: &AsyncioLayout) -> (Vec<Frame>, Option<String>) {
        let mut frames = Vec::new();
        let mut seen = HashSet::new();
        let mut obj = coro;
        let error = loop {
            if obj == 0 {
                break None;
            }
            if !seen.insert(obj) {
                break Some("the coroutine chain loops".to_string());
            }
            if seen.len() > MAX_AWAIT_DEPTH {
                break Some(format!("coroutine chain cut at {MAX_AWAIT_DEPTH}"));
            }
            let Some(kind) = self.static_type_name(obj) else { break None };
            match &*kind {
                "coroutine" | "generator" | "async_generator" => {}
                // `agen.__anext__()`/`asend()`/`athrow()` and a coroutine's `__await__()`
                // wrap the generator they drive.
                "async_generator_asend" | "async_generator_athrow" | "coroutine_wrapper" => {
                    match field(obj, WRAPPED_GEN).and_then(|at| self.objects.mem.read_u64(at)) {
                        Ok(inner) => {
                            obj = inner;
                            continue;
                        }
                        Err(e) => break Some(format!("coroutine chain incomplete: {e}")),
                    }
                }
                _ => break None,
            }
            match self.generator_frame(obj, layout) {
                Ok(None) => break None,
                Ok(Some(frame)) => {
                    let at = frames.len();
                    match self.read_frame(frame, &mut frames, at) {
                        Ok(_) => {}
                        Err(e) => break Some(format!("coroutine frame unreadable: {e}")),
                    }
                    match self.awaited(obj, frame, layout) {
                        Ok(next) => obj = next,
                        Err(e) => break Some(format!("coroutine chain incomplete: {e}")),
                    }
                }
                Err(e) => break Some(format!("coroutine chain incomplete: {e}")),
            }
        };
        frames.reverse();
        (frames, error)
    }

    /// The frame of a generator that has not finished.
    fn generator_frame(&self, gen: u64, layout: &AsyncioLayout) -> Result<Option<u64>> {
        match layout.gen_frame {
            GenFrame::Pointer(off) => Ok(Some(self.objects.ptr(field(gen, off)?)?).filter(|&f| f != 0)),
            GenFrame::Embedded { iframe, state, finished } => {
                let state = self.objects.mem.read_u8(field(gen, state)?)? as i8;
                Ok((state < finished).then(|| field(gen, iframe)).transpose()?)
            }
        }
    }

    /// What a suspended generator waits on (0 when it is not in `await` or `yield from`).
    fn awaited(&self, gen: u64, frame: u64, layout: &AsyncioLayout) -> Result<u64> {
        let o = &self.objects;
        let f = &self.located.layout.frame;
        let state = || -> Result<i8> {
            match layout.gen_frame {
                GenFrame::Embedded { state, .. } => Ok(o.mem.read_u8(field(gen, state)?)? as i8),
                GenFrame::Pointer(_) => Err(Error::Inconsistent("no frame state".into())),
            }
        };
        let stack_top = |stacktop: u64| -> Result<u64> {
            let top = o.mem.read_i32(field(frame, stacktop)?)?;
            if top < 1 {
                return Ok(0);
            }
            let slot =
                (top as u64 - 1).checked_mul(8).ok_or_else(|| Error::Inconsistent("stack top".into()))?;
            o.ptr(field(field(frame, f.localsplus)?, slot)?)
        };
        match layout.yield_from {
            YieldFrom::NextOpcode { code, stacktop, opcode } => {
                let InstructionRef::LastiBytes(lasti_at) = f.instruction else {
                    return Err(Error::Inconsistent("frame has no byte offset".into()));
                };
                let lasti = o.mem.read_i32(field(frame, lasti_at)?)?;
                if lasti < 0 {
                    return Ok(0);
                }
                let code_obj = o.ptr(field(frame, f.code)?)?;
                let bytes = o.ptr(field(code_obj, code)?)?;
                let next = field(field(bytes, self.located.layout.bytes.data)?, lasti as u64 + 2)?;
                if o.mem.read_u8(next)? != opcode {
                    return Ok(0);
                }
                match o.ptr(field(frame, stacktop)?)? {
                    0 => Ok(0),
                    top => o.ptr(top.checked_sub(8).ok_or_else(|| Error::Inconsistent("stack top".into()))?),
                }
            }
            YieldFrom::Resume { suspended, resume, stacktop } => {
                if state()? != suspended {
                    return Ok(0);
                }
                let InstructionRef::Pointer(at) = f.instruction else {
                    return Err(Error::Inconsistent("frame has no instruction pointer".into()));
                };
                let next = o.mem.read_array::<2>(field(o.ptr(field(frame, at)?)?, 2)?)?;
                if !resume.contains(&next[0]) || next[1] < 2 {
                    return Ok(0);
                }
                stack_top(stacktop)
            }
            YieldFrom::StateStackTop { yield_from, stacktop } => {
                let s = state()?;
                if s < yield_from.0 || s > yield_from.1 {
                    return Ok(0);
                }
                stack_top(stacktop)
            }
            YieldFrom::StateStackPointer { yield_from, stackpointer, depth } => {
                let s = state()?;
                if s < yield_from.0 || s > yield_from.1 {
                    return Ok(0);
                }
                let sp = o.ptr(field(frame, stackpointer)?)?;
                let top =
                    sp.checked_sub(depth * 8).ok_or_else(|| Error::Inconsistent("stack pointer".into()))?;
                Ok(o.ptr(top)? & !crate::snapshot::STACKREF_TAG_BITS)
            }
        }
    }
}

fn future_state(raw: i32) -> Result<TaskState> {
    match raw {
        0 => Ok(TaskState::Pending),
        1 => Ok(TaskState::Cancelled),
        2 => Ok(TaskState::Done),
        other => Err(Error::Inconsistent(format!("task state {other}"))),
    }
}

/// `_Py_AsyncioModuleDebugOffsets` from the `.AsyncioDebug` section of the mapped `_asyncio`
/// extension, or of the interpreter binary that has it built in; `None` when neither is mapped.
fn module_offsets(files: &TargetFiles<'_>, binary: &str) -> Result<Option<ModuleOffsets>> {
    let mut candidates: Vec<&str> = files
        .mappings
        .iter()
        .filter(|m| m.is_file() && m.path.rsplit('/').next().is_some_and(|n| n.starts_with("_asyncio.")))
        .map(|m| m.path.as_str())
        .collect();
    candidates.dedup();
    candidates.push(binary);
    for path in candidates {
        let Some(map) = map_binary(files, path) else { continue };
        let Ok(elf) = Elf::parse(&map) else { continue };
        let Some(data) = elf.section_by_name(".AsyncioDebug").and_then(|s| elf.section_data(&s)) else {
            continue;
        };
        return decode_module_offsets(data).map(Some);
    }
    Ok(None)
}

/// Decodes `_Py_AsyncioModuleDebugOffsets`: `{size, task_name, task_awaited_by, task_is_task,
/// task_awaited_by_is_set, task_coro, task_node}`, `{size, asyncio_tasks_head}` of the
/// interpreter, `{size, asyncio_running_loop, asyncio_running_task, asyncio_tasks_head}` of the
/// thread state; each offset must lie inside its structure.
fn decode_module_offsets(data: &[u8]) -> Result<ModuleOffsets> {
    let word = |i: usize| -> Result<u64> {
        data.get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| Error::Inconsistent("the asyncio debug offsets are truncated".into()))
    };
    let inside = |size: u64, fields: &[usize]| -> Result<()> {
        for &i in fields {
            if word(i)?.checked_add(8).is_none_or(|end| end > size) {
                return Err(Error::Inconsistent("an asyncio debug offset lies outside its structure".into()));
            }
        }
        Ok(())
    };
    inside(word(0)?, &[1, 2, 5, 6])?;
    inside(word(0)?, &[3, 4])?;
    inside(word(7)?, &[8])?;
    inside(word(9)?, &[10, 11, 12])?;
    Ok(ModuleOffsets {
        task_name: word(1)?,
        task_awaited_by: word(2)?,
        task_is_task: word(3)?,
        task_awaited_by_is_set: word(4)?,
        task_coro: word(5)?,
        task_node: word(6)?,
        interp_tasks_head: word(8)?,
        thread_running_task: word(11)?,
        thread_tasks_head: word(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuiltinTypes, Located, SnapshotOptions, Version};

    /// Memory in which every word points 64 bytes further on: endless lists of distinct
    /// interpreters, threads, tasks and coroutines.
    struct EndlessChains;

    impl Memory for EndlessChains {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), pymri_memory::MemoryError> {
            for (i, b) in buf.iter_mut().enumerate() {
                let at = addr + i as u64;
                *b = ((at & !7) + 64).to_le_bytes()[(at % 8) as usize];
            }
            Ok(())
        }
    }

    fn located(layout: pymri_layouts::Layout) -> Located {
        let (major, minor) = layout.version;
        Located {
            version: Version { major, minor, micro: None, level: "", serial: 0, debug_build: false },
            layout,
            runtime: 0x1000,
            binary: "test".into(),
            gil_flags: Default::default(),
            remote: None,
            runtime_size: None,
            bias: 0,
            types: BuiltinTypes::default(),
        }
    }

    fn read(located: &Located) -> Result<Vec<TaskDump>> {
        let open = |_: &str| -> std::io::Result<std::fs::File> { Err(std::io::ErrorKind::NotFound.into()) };
        let files = TargetFiles { mappings: &[], exe: None, open: &open };
        located.tasks(&EndlessChains, &files, &SnapshotOptions::default())
    }

    /// Versions whose asyncio structures pymri does not know are refused before any read.
    #[test]
    fn tasks_of_3_10_and_3_12_are_refused() {
        for layout in [pymri_layouts::v3_10(), pymri_layouts::v3_12()] {
            let err = read(&located(layout)).expect_err("refused");
            assert!(matches!(err, Error::TasksUnsupported { .. }), "{err}");
        }
    }

    /// However the target's structures point at each other, reading its tasks ends, with an
    /// error saying which list never did.
    #[test]
    fn endless_chains_end_the_task_read() {
        for layout in [pymri_layouts::v3_9(), pymri_layouts::v3_11()] {
            let err = read(&located(layout)).expect_err("endless");
            assert!(err.to_string().contains("list loops or does not end"), "{err}");
        }
    }

    #[test]
    fn module_offsets_outside_their_structures_are_refused() {
        // The values of Debian's 3.14 `_asyncio` extension.
        let good: [u64; 13] = [168, 136, 96, 108, 109, 128, 152, 225864, 10880, 936, 864, 872, 880];
        let bytes: Vec<u8> = good.iter().flat_map(|w| w.to_le_bytes()).collect();
        let m = decode_module_offsets(&bytes).expect("valid");
        assert_eq!((m.task_node, m.thread_tasks_head, m.interp_tasks_head), (152, 880, 10880));
        let mut bad = good;
        bad[6] = 168;
        let bytes: Vec<u8> = bad.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert!(decode_module_offsets(&bytes).is_err());
        assert!(decode_module_offsets(&bytes[..40]).is_err());
    }
}
