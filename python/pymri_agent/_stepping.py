"""Stepping: where a step, `next`, `until` or return ends (a mixin of `engine.Agent`, whose
state it uses). The backends' callbacks ask it at line and return events; `Agent._serve` turns
a resuming action into a `StepState` for the backend to follow."""

import threading

from .inspection import AGENT_DIR

_get_ident = threading.get_ident


class StepState(object):
    __slots__ = ("mode", "frame", "line", "stop_at_return", "entry_code")

    def __init__(self, mode, frame, line=None, stop_at_return=True, entry_code=None):
        self.mode = mode  # step, next, return, until, entry
        self.frame = frame
        self.line = line  # until: stop at a line >= this in `frame`
        self.stop_at_return = stop_at_return
        self.entry_code = entry_code


class Stepping(object):
    def line_stop_reason(self, ident, frame, line):
        """The reason a step or pause of thread `ident` stops at this line, or None."""
        st = self.steps.get(ident)
        if st is not None and self.step_stops_at_line(st, frame, line):
            return "entry" if st.mode == "entry" else "step"
        if ident in self.pauses and not self.is_hidden_code(frame.f_code):
            return self.pauses.get(ident) or "pause"
        return None

    def line_at_hook(self, ident, frame, line):
        """A backend's slow-path line event (after complete_transfer): drops stale hook state;
        True if `line` is instrumented. Its hook then runs next and evaluates the breakpoints
        there; a step or pause stop here is left to it (`deferred`), so that it happens once,
        after the breakpoints."""
        if self.deferred:
            self.deferred.pop(ident, None)
        if self.skip_hook:
            self.skip_hook.pop(ident, None)
        hooked = self.swapper.hooked_lines(frame.f_code)
        if not hooked or line not in hooked:
            return False
        if self.line_stop_reason(ident, frame, line) is not None:
            self.deferred[ident] = (frame, line)
        return True

    def step_stops_at_line(self, st, frame, line):
        mode = st.mode
        if mode in ("step", "entry"):
            return not self.is_hidden_code(frame.f_code)
        if frame is not st.frame:
            return False
        if mode == "next":
            return True
        if mode == "until":
            return line >= st.line
        return False

    def step_frame_returning(self, st, frame, retval):
        if st.mode == "return" or (st.stop_at_return and st.mode in ("step", "next", "until")):
            self.stop(frame, "return", "return", retval=retval)
            return
        self._retarget_to_caller(st, frame)

    def step_frame_unwinding(self, st, frame):
        self._retarget_to_caller(st, frame)

    def _retarget_to_caller(self, st, frame):
        caller = frame.f_back
        while caller is not None and self.is_hidden_code(caller.f_code):
            if caller.f_code.co_filename.startswith(AGENT_DIR):
                caller = None
                break
            caller = caller.f_back
        ident = _get_ident()
        if caller is None:
            with self.lock:
                self.steps.pop(ident, None)
                self.backend.end_step(ident)
                self.update_slow()
            return
        st.frame = caller
        if st.mode in ("return", "until"):
            st.mode = "next"
        with self.lock:
            self.backend.retarget(ident, st)

    def _step_for(self, stop, action):
        kind = action[0]
        if kind == "continue" or stop.post_mortem or not stop.frames:
            return None
        frame = stop.frames[0][0]
        mode = {"step": "step", "next": "next", "step_out": "return", "until": "until"}[kind]
        line = None
        if mode == "until":
            target = action[1]
            line = stop.line_of(0) + 1 if target is None else target
        st = StepState(mode, frame, line, stop_at_return=action[2] if kind in ("step", "next") else True)
        if stop.event == "return":
            # The frame is already returning: the step continues in its caller.
            caller = frame.f_back
            while caller is not None and self.is_hidden_code(caller.f_code):
                caller = caller.f_back if not caller.f_code.co_filename.startswith(AGENT_DIR) else None
            if caller is None:
                return None
            st.frame = caller
            if mode in ("until",):
                st.mode = "next"
        return st

    def request_entry_stop(self, code):
        ident = _get_ident()
        st = StepState("entry", None, entry_code=code)
        with self.lock:
            self.steps[ident] = st
            self.backend.begin_step(ident, st)
            self.update_slow()

    def cancel_entry_stop(self):
        ident = _get_ident()
        with self.lock:
            if self.steps.pop(ident, None) is not None:
                self.backend.end_step(ident)
            self.update_slow()
