"""Backend for CPython 3.9-3.11: sys.settrace.

Line breakpoints are normally served by instrumented code (`_codeswap`), which needs no tracer
at all. This backend covers what instrumentation does not: breakpoints it refused (fallback),
function breakpoints, the "raised" filter, stepping, pausing, and frames still running code from
before a swap.

The global tracer runs on every Python call of a traced thread and returns None (no local
tracing) unless the code object belongs to a breakpoint file and spans a breakpoint line that
its code has no hook for (or a step/pause/exception filter needs it); the decision is one set
lookup on co_filename, plus a cached per-code decision for breakpoint files. The global tracer
is installed in every thread only while something above needs it: existing threads through
`_alltrace` (needs the thread-state offsets from the controller), future threads through
`threading.settrace`. Frames running old code get a local tracer, and their thread the cheapest
global one (`getattr`, a C function returning None), until they return.
"""

import sys
import threading

from ._alltrace import AllThreadsTracer

_get_ident = threading.get_ident
_INTO_MODES = ("step", "entry")
# CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_GENERATOR_FLAGS = 0x20 | 0x80 | 0x200
_yield_ops = []  # (YIELD_VALUE, YIELD_FROM or None), at the first use


def _yielded(frame):
    """Whether a 'return' event of `frame` is a generator's (or coroutine's) yield, not its
    end: the instruction it is at yields (3.9-3.10's `yield from` that yields has stepped back
    to the instruction before its YIELD_FROM)."""
    if not frame.f_code.co_flags & _GENERATOR_FLAGS:
        return False
    if not _yield_ops:
        import opcode
        _yield_ops.append((opcode.opmap["YIELD_VALUE"], opcode.opmap.get("YIELD_FROM")))
    yield_value, yield_from = _yield_ops[0]
    code = frame.f_code.co_code
    i = frame.f_lasti
    if 0 <= i < len(code) and code[i] in (yield_value, yield_from):
        return True
    return yield_from is not None and 0 <= i + 2 < len(code) and code[i + 2] == yield_from


class TraceBackend(object):
    name = "settrace"

    def __init__(self, agent, offsets=None):
        self.agent = agent
        self.alltrace = AllThreadsTracer(offsets) if offsets else None
        self.decisions = {}   # id(code) -> (code, wants local tracing)
        self.fast = {}        # id(code) -> (code, tracer to return), codes without function bps
        self.code_lines = {}  # id(code) -> {line: [Breakpoint]}
        self.hot_files = set()
        self.installed = False
        self.thread_traced = set()
        self.old_frames = {}  # ident -> {frames running old code, traced locally}
        self._prev_hook = None
        self._make_tracers()

    @property
    def all_threads(self):
        return bool(self.alltrace and self.alltrace.ok)

    def set_offsets(self, offsets):
        if offsets and not self.all_threads:
            was = self.installed
            if was:
                self._uninstall_all()
            self.alltrace = AllThreadsTracer(offsets)
            if was:
                self._install_all()

    def info(self):
        d = {"backend": self.name, "tool_id": None, "all_threads": self.all_threads}
        if self.alltrace is not None and not self.alltrace.ok:
            d["all_threads_error"] = self.alltrace.error
        return d

    # -- tracers ------------------------------------------------------------------------------

    def _make_tracers(self):
        agent = self.agent
        slow = agent.slow
        hot = self.hot_files
        code_lines = self.code_lines
        hit = agent.line_hit
        call_hot = self._call_hot
        call_slow = self._call_slow
        line_slow = self._line_slow
        other_slow = self._other_slow

        fast = self.fast
        stop_at = agent.stop_at_breakpoints
        old_frames = self.old_frames
        old_return = self._old_return

        def gtrace(frame, event, arg):
            if slow:
                return call_slow(frame)
            code = frame.f_code
            if code.co_filename in hot:
                d = fast.get(id(code))
                if d is not None and d[0] is code:
                    return d[1]
                return call_hot(frame)
            return None

        def ltrace(frame, event, arg):
            if event == "line":
                if slow:
                    line_slow(frame)
                    return None
                lb = code_lines.get(id(frame.f_code))
                if lb is not None:
                    line = frame.f_lineno
                    bps = lb.get(line)
                    if bps is not None:
                        if len(bps) == 1:
                            bp = bps[0]
                            cond = bp.cond_code
                            if cond is not None and bp.enabled and not bp.ignore_count \
                                    and bp.hit_op is None and bp.log_parts is None:
                                # Fast path: one breakpoint with only a condition.
                                bp.hits += 1
                                try:
                                    if not eval(cond, frame.f_globals, frame.f_locals):
                                        return None
                                except Exception as exc:
                                    stop_at(frame, bps, "%s: %s" % (type(exc).__name__, exc))
                                    return None
                                stop_at(frame, bps, None)
                                return None
                        hit(frame, bps, line, False)
                return None
            if old_frames and event == "return":
                old_return(frame)
            if slow:
                other_slow(frame, event, arg)
            return None

        self.gtrace = gtrace
        self.ltrace = ltrace

    def _decide(self, code):
        cid = id(code)
        d = self.decisions.get(cid)
        if d is not None and d[0] is code:
            return d[1]
        table = self.agent.swapper.unhooked_bp_lines(code)
        if table:
            self.code_lines[cid] = table
        else:
            self.code_lines.pop(cid, None)
        want = bool(table) or cid in self.agent.func_bps
        self.decisions[cid] = (code, want)
        if cid not in self.agent.func_bps:
            self.fast[cid] = (code, self.ltrace if want else None)
        else:
            self.fast.pop(cid, None)
        return want

    def _call_hot(self, frame):
        code = frame.f_code
        if self.agent.swapper.is_pending(code.co_filename):
            self.agent.file_seen(code.co_filename)
        want = self._decide(code)
        if want:
            if id(code) in self.agent.func_bps:
                self.agent.arm(_get_ident(), frame)
            return self.ltrace
        return None

    def _call_slow(self, frame):
        agent = self.agent
        ident = _get_ident()
        if ident in agent.busy or ident in agent.agent_threads:
            return None
        try:
            code = frame.f_code
            st = agent.steps.get(ident)
            if st is not None and agent.step_stops_at_call(st, frame):
                agent.stop(frame, "call", "call")
            if code.co_filename in self.hot_files and self._call_hot(frame) is not None:
                return self.ltrace
            if agent.is_hidden_code(code):
                return None
            st = agent.steps.get(ident)
            if st is not None and st.mode in _INTO_MODES:
                return self.ltrace
            if ident in agent.pauses:
                return self.ltrace
            if "raised" in agent.exc_filters:
                frame.f_trace_lines = False
                return self.ltrace
        except agent.control_exceptions:
            raise
        except Exception:
            agent.internal_error()
        return None

    def _line_slow(self, frame):
        agent = self.agent
        ident = _get_ident()
        if ident in agent.busy or ident in agent.agent_threads:
            return
        try:
            if agent.transfers and agent.complete_transfer(frame):
                return
            code = frame.f_code
            line = frame.f_lineno
            if agent.line_at_hook(ident, frame, line):
                return
            entry = False
            if agent.armed and agent.armed.get(ident) is frame:
                entry = True
                agent.disarm(ident)
            lb = self.code_lines.get(id(code))
            bps = lb.get(line) if lb is not None else None
            if entry:
                bps = list(bps or ()) + list(agent.func_bps.get(id(code), ()))
            if bps and agent.line_hit(frame, bps, line, entry):
                return
            reason = agent.line_stop_reason(ident, frame, line)
            if reason is not None:
                agent.stop(frame, reason, "line")
        except agent.control_exceptions:
            raise
        except Exception:
            agent.internal_error()

    def _other_slow(self, frame, event, arg):
        agent = self.agent
        ident = _get_ident()
        if ident in agent.busy or ident in agent.agent_threads:
            return
        try:
            if event == "return":
                st = agent.steps.get(ident)
                if st is not None and frame is st.frame:
                    agent.step_frame_returning(st, frame, arg, _yielded(frame))
            elif event == "exception":
                etype, exc, tb = arg
                st = agent.steps.get(ident)
                if st is not None and agent.step_stops_at_exception(st, frame, exc, tb):
                    agent.step_exception_stop(frame, exc, tb)
                elif "raised" in agent.exc_filters and tb is not None and tb.tb_next is None \
                        and tb.tb_frame is frame:
                    if not agent.is_hidden_code(frame.f_code) and not isinstance(exc, agent.ignored_exceptions):
                        agent.stop(frame, "exception", "exception", exc=exc)
        except agent.control_exceptions:
            raise
        except Exception:
            agent.internal_error()

    # -- installation -------------------------------------------------------------------------

    def install(self):
        pass

    def uninstall(self):
        if self.installed:
            self._uninstall_all()
        elif self.alltrace is not None and self.alltrace.ok:
            self.alltrace.restore(self.gtrace, also=(getattr,))
        if sys.gettrace() is self.gtrace:
            sys.settrace(None)
        self.decisions.clear()
        self.fast.clear()
        self.code_lines.clear()

    def _needed(self):
        agent = self.agent
        if agent.func_bps or "raised" in agent.exc_filters:
            return True
        sw = agent.swapper
        if not sw.active:
            return bool(agent.file_bps)
        return sw.needs_tracing()

    def _update_install(self):
        need = self._needed()
        if need and not self.installed:
            self._install_all()
        elif not need and self.installed:
            self._uninstall_all()

    def _install_all(self):
        self.installed = True
        self._prev_hook = getattr(threading, "_trace_hook", None)
        threading.settrace(self.gtrace)
        if self.all_threads:
            self.alltrace.install(self.gtrace, exclude=set(self.agent.agent_threads))
        elif _get_ident() not in self.agent.agent_threads:
            sys.settrace(self.gtrace)

    def _uninstall_all(self):
        self.installed = False
        if getattr(threading, "_trace_hook", None) is self.gtrace:
            threading.settrace(self._prev_hook)
        self._prev_hook = None
        keep = set(self.agent.steps) | set(self.agent.pauses) | set(self.agent.agent_threads)
        if self.agent.detached:
            keep = set(self.agent.agent_threads)
        if self.all_threads:
            self.alltrace.restore(self.gtrace, exclude=keep, also=(getattr,))
        if _get_ident() not in keep and sys.gettrace() is self.gtrace:
            sys.settrace(None)

    def breakpoints_changed(self):
        hot = self.hot_files
        hot.clear()
        hot.update(self.agent.file_bps.keys())
        for bps in self.agent.func_bps.values():
            hot.add(bps[0].code.co_filename)
        old = [code for code, _ in self.decisions.values()]
        self.decisions.clear()
        self.fast.clear()
        self.code_lines.clear()
        for code in old:
            if code.co_filename in hot:
                self._decide(code)
        self._update_install()
        self._trace_old_frames()

    def _trace_old_frames(self):
        """Frames that run code without hooks for some breakpoint line of theirs (they started
        before a swap, or their breakpoints are not instrumented) get the local tracer; when the
        global tracer is not installed, their thread gets the cheapest one."""
        agent = self.agent
        hot = self.hot_files
        me = _get_ident()
        found = {}
        for ident, frame in list(sys._current_frames().items()):
            if ident in agent.agent_threads:
                continue
            f = frame
            while f is not None:
                if f.f_code.co_filename in hot and self._decide(f.f_code):
                    if f.f_trace is None:
                        f.f_trace = self.ltrace
                    found.setdefault(ident, set()).add(f)
                f = f.f_back
        previous = set(self.old_frames)
        self.old_frames.clear()
        if self.installed or agent.detached:
            return
        self.old_frames.update(found)
        for ident in found:
            if ident in agent.stops:
                continue  # thread_resuming installs it
            if ident == me:
                if sys.gettrace() is None:
                    sys.settrace(getattr)
            elif self.all_threads and self.alltrace.gettrace_of(ident) is None:
                self.alltrace.install_one(ident, getattr)
        for ident in previous - set(found):
            self._drop_thread_tracer(ident)

    def _drop_thread_tracer(self, ident):
        """`ident` no longer needs the `getattr` tracer installed for old frames."""
        agent = self.agent
        if self.installed or ident in agent.steps or ident in agent.pauses or ident in agent.stops:
            return
        if ident == _get_ident():
            if sys.gettrace() is getattr:
                sys.settrace(None)
        elif self.all_threads:
            self.alltrace.remove_one(ident, getattr)

    def _old_return(self, frame):
        frames = self.old_frames.get(_get_ident())
        if frames is None or frame not in frames:
            return
        frames.discard(frame)
        if not frames:
            ident = _get_ident()
            self.old_frames.pop(ident, None)
            self._drop_thread_tracer(ident)

    def exception_filters_changed(self):
        self._update_install()

    # -- stepping / pausing -------------------------------------------------------------------

    def begin_step(self, ident, st):
        """Runs in the thread about to resume."""
        agent = self.agent
        if st.mode not in _INTO_MODES and not self.installed and not agent.pauses \
                and "raised" not in agent.exc_filters:
            # `next`/`until`/`return` with nothing else to watch: callees need no call event
            # handling, so the thread's global tracer is a C no-op (getattr(frame, "call", None)
            # is None); line/return events still reach the frames' f_trace.
            if sys.gettrace() is not getattr:
                sys.settrace(getattr)
                self.thread_traced.add(ident)
        elif sys.gettrace() is not self.gtrace:
            sys.settrace(self.gtrace)
            self.thread_traced.add(ident)
        f = st.frame
        while f is not None:
            if not self.agent.is_hidden_code(f.f_code):
                f.f_trace = self.ltrace
                f.f_trace_lines = True
            f = f.f_back

    def retarget(self, ident, st):
        f = st.frame
        if f is not None and f.f_trace is None:
            f.f_trace = self.ltrace
            f.f_trace_lines = True

    def end_step(self, ident):
        pass

    def pause(self, ident):
        if ident == _get_ident():
            sys.settrace(self.gtrace)
        elif not (self.all_threads and self.alltrace.install_one(ident, self.gtrace)):
            return False
        frame = sys._current_frames().get(ident)
        while frame is not None:
            if not self.agent.is_hidden_code(frame.f_code):
                frame.f_trace = self.ltrace
                frame.f_trace_lines = True
            frame = frame.f_back
        return True

    def pause_done(self, ident):
        pass

    def begin_transfer(self, ident, frame):
        """A hook stop continues at the next line event of `frame` (see Agent._begin_transfer)."""
        frame.f_trace = self.ltrace
        frame.f_trace_lines = True
        if sys.gettrace() is None:
            sys.settrace(getattr)
            self.thread_traced.add(ident)
        return True

    def end_transfer(self, ident):
        pass

    def thread_resuming(self, ident, frames=()):
        """The current thread leaves a stop without a step: drop tracing it no longer needs."""
        agent = self.agent
        agent.deferred.pop(ident, None)
        if ident in agent.steps or ident in agent.pauses:
            return
        old = set()
        if not agent.detached:
            for f in frames:
                if f.f_code.co_filename in self.hot_files and self._decide(f.f_code):
                    old.add(f)
        if agent.detached or not self.installed:
            if old:
                if sys.gettrace() is not getattr:
                    sys.settrace(getattr)
                self.old_frames[ident] = old
            else:
                self.old_frames.pop(ident, None)
                if sys.gettrace() in (self.gtrace, getattr):
                    sys.settrace(None)
                self.thread_traced.discard(ident)
        elif sys.gettrace() is getattr:
            sys.settrace(self.gtrace)
        for f in frames:
            if f in old:
                if f.f_trace is None:
                    f.f_trace = self.ltrace
            elif f.f_trace is self.ltrace:
                f.f_trace = None

    def program_starting(self):
        if self.installed and sys.gettrace() is not self.gtrace:
            sys.settrace(self.gtrace)
