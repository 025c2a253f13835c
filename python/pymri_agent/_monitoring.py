"""Backend for CPython 3.12+: sys.monitoring with events enabled locally where needed.

Cost model:
- LINE is enabled locally, only on code objects holding breakpoints (or the code a step can land
  in). A line of such a code object without a breakpoint returns DISABLE on its first hit.
- PY_START/PY_RESUME are enabled globally while breakpoints exist, to discover code objects of
  breakpoint files that did not exist when the breakpoint was set (module imported later, nested
  function created later). Every code location returns DISABLE at its first event, so each code
  object costs one callback (again after a `restart_events`, i.e. after a breakpoint change or the
  start of a step).
- PY_UNWIND and RAISE are global only while a step is under way (RAISE also with the "raised"
  filter); LINE is global only while a `pause` is pending.
- A line instrumented by `_codeswap` (an inline condition) gets no LINE event in the instrumented
  code: its hook does the work. The original code keeps its events (frames that were already
  running it, functions created from a parent code that was already running).
"""

import sys
import threading


M = getattr(sys, "monitoring", None)
if M is not None:
    E = M.events
    DISABLE = M.DISABLE
    _INTO_MODES = ("step", "entry")

_get_ident = threading.get_ident
_getframe = sys._getframe


def claim_tool(preferred, name):
    """The first of `preferred` sys.monitoring tool ids that is free, claimed under `name`."""
    for tool in preferred:
        try:
            M.use_tool_id(tool, name)
        except ValueError:
            continue
        return tool
    raise RuntimeError("no free sys.monitoring tool id")


class MonitoringBackend(object):
    name = "monitoring"
    all_threads = True

    def __init__(self, agent):
        self.agent = agent
        self.tool = claim_tool((M.DEBUGGER_ID, 1, 2, 3, 4, 5), "pymri")
        self.code_lines = {}   # id(code) -> {line: [Breakpoint]}
        self.codes = {}        # id(code) -> code (strong refs keep ids valid)
        self.file_codes = {}   # filename -> {id(code): code}
        self.masks = {}        # id(code) -> local event mask currently set
        self.step_codes = {}   # thread ident -> {id(code): code}
        self.transfer_codes = {}  # thread ident -> code completing a jump from a hook stop
        self.fbp_codes = {}    # id(code) -> code with function breakpoints
        self.registered = {}   # id(code) -> code of breakpoint files already examined
        self._global = 0
        self._installed = False
        self._last_hit = [(None, -1, None)]

    # -- installation -------------------------------------------------------------------------

    def install(self):
        agent = self.agent
        slow = agent.slow
        code_lines = self.code_lines
        hit = agent.line_hit
        line_slow = self._line_slow
        start_slow = self._start_slow
        start_fast = self._start_fast
        getframe = _getframe

        stop_at = agent.stop_at_breakpoints
        # (code, line, entry) of the last breakpoint location hit: a hot conditional breakpoint
        # then costs two identity/int comparisons instead of id() and two dict lookups.
        last = self._last_hit = [(None, -1, None)]

        def on_line(code, line):
            if slow:
                return line_slow(code, line)
            cached = last[0]
            if cached[0] is code and cached[1] == line:
                entry = cached[2]
            else:
                lb = code_lines.get(id(code))
                entry = lb.get(line) if lb is not None else None
                if entry is None:
                    return DISABLE
                last[0] = (code, line, entry)
            frame = getframe(1)
            cond, bps, bp = entry
            if cond is None:
                hit(frame, bps, line, False)
                return None
            # Fast path: one enabled breakpoint with only a condition.
            bp.hits += 1
            try:
                if not eval(cond, frame.f_globals, frame.f_locals):
                    return None
            except Exception as exc:
                stop_at(frame, [bp], "%s: %s" % (type(exc).__name__, exc))
                return None
            stop_at(frame, [bp], None)
            return None

        def on_start(code, offset):
            if slow:
                return start_slow(code)
            return start_fast(code)

        t = self.tool
        M.register_callback(t, E.LINE, on_line)
        M.register_callback(t, E.PY_START, on_start)
        M.register_callback(t, E.PY_RESUME, on_start)
        M.register_callback(t, E.PY_RETURN, self._on_return)
        M.register_callback(t, E.PY_YIELD, self._on_yield)
        M.register_callback(t, E.PY_UNWIND, self._on_unwind)
        M.register_callback(t, E.RAISE, self._on_raise)
        self._installed = True

    def uninstall(self):
        if not self._installed:
            return
        self._installed = False
        t = self.tool
        try:
            M.set_events(t, 0)
        except Exception:
            pass
        for cid, code in list(self.codes.items()):
            try:
                M.set_local_events(t, code, 0)
            except Exception:
                pass
        for ev in (E.LINE, E.PY_START, E.PY_RESUME, E.PY_RETURN, E.PY_YIELD, E.PY_UNWIND, E.RAISE):
            try:
                M.register_callback(t, ev, None)
            except Exception:
                pass
        try:
            M.free_tool_id(t)
        except Exception:
            pass
        self.codes.clear()
        self.code_lines.clear()
        self.file_codes.clear()
        self.masks.clear()
        self.step_codes.clear()
        self.transfer_codes.clear()
        self.fbp_codes.clear()
        self.registered.clear()
        self._last_hit[0] = (None, -1, None)

    def info(self):
        return {"backend": self.name, "tool_id": self.tool, "all_threads": True}

    # -- code registry ------------------------------------------------------------------------

    def _register(self, code, depth=0):
        """Remember a code object of a breakpoint file (and its nested code objects)."""
        cid = id(code)
        self.codes[cid] = code
        if cid not in self.registered:
            self.registered[cid] = code
            self.file_codes.setdefault(code.co_filename, {})[cid] = code
        self._refresh_lines(code)
        if depth < 50:
            for const in code.co_consts:
                if isinstance(const, type(code)):
                    self._register(const, depth + 1)

    def _refresh_lines(self, code):
        self._last_hit[0] = (None, -1, None)
        cid = id(code)
        table = self.agent.swapper.unhooked_bp_lines(code)
        fb = self.agent.func_bps.get(cid)
        if fb:
            for bp in fb:
                if bp.first_line is not None:
                    table.setdefault(bp.first_line, [])
                    if bp not in table[bp.first_line]:
                        table[bp.first_line] = table[bp.first_line] + [bp]
        entries = {}
        for line, bps in table.items():
            enabled = [bp for bp in bps if bp.enabled]
            if not enabled:
                continue  # disabled breakpoints cost nothing (changes restart events)
            if len(enabled) == 1 and enabled[0].kind == "line" and enabled[0].cond_code is not None \
                    and not enabled[0].ignore_count and enabled[0].hit_op is None \
                    and enabled[0].log_parts is None:
                entries[line] = (enabled[0].cond_code, enabled, enabled[0])
            else:
                entries[line] = (None, enabled, None)
        if entries:
            self.code_lines[cid] = entries
        else:
            self.code_lines.pop(cid, None)
        self._apply_mask(code)

    def _apply_mask(self, code):
        cid = id(code)
        mask = 0
        if cid in self.code_lines:
            mask |= E.LINE
        if cid in self.fbp_codes:
            mask |= E.LINE | E.PY_START
        for codes in self.step_codes.values():
            if cid in codes:
                mask |= E.LINE | E.PY_RETURN | E.PY_YIELD
                break
        for code_ in self.transfer_codes.values():
            if code_ is code:
                mask |= E.LINE
        if self.masks.get(cid, 0) != mask:
            try:
                M.set_local_events(self.tool, code, mask)
            except ValueError:
                return
            if mask:
                self.masks[cid] = mask
                self.codes[cid] = code
            else:
                self.masks.pop(cid, None)

    def _update_global(self):
        agent = self.agent
        ev = 0
        if agent.file_bps or agent.func_bps:
            ev |= E.PY_START | E.PY_RESUME
        if agent.steps:
            # RAISE: a step stops where an exception is raised in (or unwinds into) its frame.
            ev |= E.PY_UNWIND | E.RAISE
            for st in list(agent.steps.values()):
                if st.mode in _INTO_MODES:
                    ev |= E.PY_START | E.PY_RESUME
        if agent.pauses:
            ev |= E.LINE
        if "raised" in agent.exc_filters:
            ev |= E.RAISE
        if ev != self._global:
            M.set_events(self.tool, ev)
            self._global = ev

    def breakpoints_changed(self):
        """Re-derive local events after any breakpoint change (called with agent.lock held)."""
        agent = self.agent
        # function breakpoints
        for cid in list(self.fbp_codes):
            if cid not in agent.func_bps:
                del self.fbp_codes[cid]
        for cid, bps in agent.func_bps.items():
            code = bps[0].code
            self.fbp_codes[cid] = code
            self.codes.setdefault(cid, code)
        # codes already running somewhere: they will never see PY_START again
        for frame in list(sys._current_frames().values()):
            f = frame
            while f is not None:
                if f.f_code.co_filename in agent.file_bps and id(f.f_code) not in self.registered:
                    self._register(f.f_code)
                f = f.f_back
        for code in list(self.codes.values()):
            self._refresh_lines(code)
        self._update_global()
        M.restart_events()

    def exception_filters_changed(self):
        self._update_global()

    # -- callbacks ----------------------------------------------------------------------------

    def _start_fast(self, code, depth=2):
        cid = id(code)
        if cid in self.fbp_codes:
            self.agent.arm(_get_ident(), _getframe(depth))
            return None
        if code.co_filename in self.agent.file_bps and cid not in self.registered:
            try:
                if self.agent.swapper.is_pending(code.co_filename):
                    self.agent.file_seen(code.co_filename)
                self._register(code)
            except Exception:
                pass
        return DISABLE

    def _start_slow(self, code):
        agent = self.agent
        ident = _get_ident()
        if ident in agent.busy or ident in agent.agent_threads:
            return None
        st = agent.steps.get(ident)
        if st is not None and st.mode in _INTO_MODES and not agent.is_hidden_code(code):
            codes = self.step_codes.setdefault(ident, {})
            if id(code) not in codes:
                self._add_step_code(codes, code)
            frame = _getframe(2)
            if agent.step_stops_at_call(st, frame):
                try:
                    agent.stop(frame, "call", "call")
                except agent.control_exceptions:
                    raise
                except Exception:
                    agent.internal_error()
        res = self._start_fast(code, 3)
        # A step into, in any thread, may need this location later; `next` and the others do
        # not (every step start restarts events), and keeping PY_START live for them would call
        # back on every call the stepped-over code makes.
        for other in list(agent.steps.values()):
            if other.mode in _INTO_MODES:
                return None
        return res

    def _line_slow(self, code, line):
        agent = self.agent
        ident = _get_ident()
        if ident in agent.busy or ident in agent.agent_threads:
            return None
        try:
            frame = _getframe(2)
            if agent.transfers and agent.complete_transfer(frame):
                return None
            if agent.line_at_hook(ident, frame, line):
                return None
            entry = False
            if agent.armed:
                armed = agent.armed.get(ident)
                if armed is frame:
                    entry = True
                    agent.disarm(ident)
                    self._learn_first_line(code, line)
            lb = self.code_lines.get(id(code))
            bps = lb.get(line) if lb is not None else None
            if bps is not None and agent.line_hit(frame, bps[1], line, entry):
                return None
            reason = agent.line_stop_reason(ident, frame, line)
            if reason is not None:
                agent.stop(frame, reason, "line")
        except agent.control_exceptions:
            raise
        except Exception:
            agent.internal_error()
        return None

    def _learn_first_line(self, code, line):
        changed = False
        for bp in self.agent.func_bps.get(id(code), ()):
            if bp.first_line is None:
                bp.first_line = line
                changed = True
        if changed:
            self._refresh_lines(code)

    def _on_return(self, code, offset, retval):
        return self._step_frame_leaving(retval, False)

    def _on_yield(self, code, offset, retval):
        return self._step_frame_leaving(retval, True)

    def _step_frame_leaving(self, retval, yielded):
        agent = self.agent
        if not agent.steps:
            return None
        ident = _get_ident()
        st = agent.steps.get(ident)
        if st is None or ident in agent.busy:
            return None
        try:
            frame = _getframe(2)
            if frame is st.frame:
                agent.step_frame_returning(st, frame, retval, yielded)
        except agent.control_exceptions:
            raise
        except Exception:
            agent.internal_error()
        return None

    def _on_unwind(self, code, offset, exc):
        agent = self.agent
        ident = _get_ident()
        st = agent.steps.get(ident)
        if st is None or ident in agent.busy:
            return None
        try:
            frame = _getframe(1)
            if frame is st.frame:
                agent.step_frame_unwinding(st, frame)
        except agent.control_exceptions:
            raise
        except Exception:
            agent.internal_error()
        return None

    def _on_raise(self, code, offset, exc):
        agent = self.agent
        ident = _get_ident()
        st = agent.steps.get(ident)
        if st is None and "raised" not in agent.exc_filters:
            return None
        if ident in agent.busy or ident in agent.agent_threads or agent.is_hidden_code(code):
            return None
        try:
            frame = _getframe(1)
            tb = exc.__traceback__
            if st is not None and agent.step_stops_at_exception(st, frame, exc, tb):
                agent.step_exception_stop(frame, exc, tb)
                return None
            if "raised" not in agent.exc_filters or isinstance(exc, agent.ignored_exceptions):
                return None
            # RAISE fires again in every frame the exception unwinds into; like the settrace
            # backend, stop only where it starts (the traceback then holds just this frame).
            if tb is not None and tb.tb_next is not None:
                return None
            agent.stop(frame, "exception", "exception", exc=exc)
        except agent.control_exceptions:
            raise
        except Exception:
            agent.internal_error()
        return None

    # -- stepping / pausing -------------------------------------------------------------------

    def begin_step(self, ident, st):
        """Called in the thread about to resume with step state `st` (agent.lock held)."""
        codes = self.step_codes.setdefault(ident, {})
        if st.frame is not None:
            self._add_step_code(codes, st.frame.f_code)
        if st.entry_code is not None:
            self._add_step_code(codes, st.entry_code)
        self._update_global()
        M.restart_events()

    def retarget(self, ident, st):
        """The step frame changed (it returned): events on the new frame's code."""
        if st.frame is None:
            return
        codes = self.step_codes.setdefault(ident, {})
        code = st.frame.f_code
        if id(code) not in codes:
            self._add_step_code(codes, code)
            M.restart_events()

    def _add_step_code(self, codes, code):
        """Events for a step on `code`; `codes` is the stepping thread's step_codes entry."""
        codes[id(code)] = code
        self.codes.setdefault(id(code), code)
        self._apply_mask(code)

    def end_step(self, ident):
        codes = self.step_codes.pop(ident, None)
        if codes:
            for code in codes.values():
                self._apply_mask(code)
        self._update_global()

    def pause(self, ident):
        self._update_global()
        M.restart_events()
        return True

    def pause_done(self, ident):
        self._update_global()

    def begin_transfer(self, ident, frame):
        """A hook stop continues at the next LINE event of `frame` (see Agent._begin_transfer)."""
        code = frame.f_code
        self.transfer_codes[ident] = code
        self.codes.setdefault(id(code), code)
        self._apply_mask(code)
        M.restart_events()
        return True

    def end_transfer(self, ident):
        code = self.transfer_codes.pop(ident, None)
        if code is not None:
            self._apply_mask(code)

    def thread_resuming(self, ident, frames=()):
        pass

    def program_starting(self):
        pass
