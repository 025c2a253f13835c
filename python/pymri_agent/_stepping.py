"""Stepping: where a step, `next`, `until` or return ends (a mixin of `engine.Agent`, whose
state it uses). The backends' callbacks ask it at line and return events; `Agent._serve` turns
a resuming action into a `StepState` for the backend to follow."""

import threading

from . import inspection
from .inspection import AGENT_DIR

_get_ident = threading.get_ident
# CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR, as bdb names them
_GENERATOR_FLAGS = 0x20 | 0x80 | 0x200


def set_frame_line(frame, line):
    """`frame.f_lineno = line`, pdb's jump. From 3.13, a jump that leaves locals unbound warns
    (`RuntimeWarning: assigning None to 1 unbound local`) where the setter is called, i.e. in
    the agent: the warning is caught and issued again at the frame's new line, in the program's
    file, under the program's own filters. A filter that turns every such warning into an error
    fails the jump (the setter raises it), as it would in the program. Raises ValueError (the
    jump refused) or that warning."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        frame.f_lineno = line
    for w in caught:
        try:
            if w.filename.startswith(AGENT_DIR):
                globs = frame.f_globals
                warnings.warn_explicit(w.message, w.category, frame.f_code.co_filename,
                                       frame.f_lineno, module=globs.get("__name__"),
                                       registry=globs.setdefault("__warningregistry__", {}),
                                       module_globals=globs)
            else:
                # another thread's, caught meanwhile: as it was
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        except Warning:
            pass  # an error only for the program's module: the jump is done, nothing raised it


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

    def step_stops_at_call(self, st, frame):
        """Whether a pdb-style `step` stops where `frame` starts (or a generator resumes),
        before its first line: pdb's `--Call--`."""
        return st.mode == "step" and st.stop_at_return and not self.is_hidden_code(frame.f_code)

    def step_stops_at_exception(self, st, frame, exc, tb):
        """Whether a pdb-style step stops where an exception is raised in, or unwinds into,
        `frame`: where it would stop at a line (bdb's `stop_here`), so that the exception is
        seen before the frame unwinds. A `return` step stops at the return instead; a DAP step
        (`stop_at_return` false) does not stop at all."""
        if not st.stop_at_return:
            return False
        if isinstance(exc, StopIteration) and tb is None \
                and frame.f_code.co_flags & _GENERATOR_FLAGS:
            return False  # the internal StopIteration of a `yield from` (bdb skips it too)
        mode = st.mode
        if mode == "step":
            return not self.is_hidden_code(frame.f_code)
        if frame is not st.frame:
            return False
        if mode == "next":
            return True
        if mode == "until":
            return frame.f_lineno >= st.line
        return False

    def step_exception_stop(self, frame, exc, tb):
        """Stop where a step met an exception (pdb's `user_exception`)."""
        extra = None
        if tb is None and isinstance(exc, StopIteration):
            # The end of a loop's iterator, which 3.9's trace reports without a traceback:
            # pdb calls it internal.
            info = inspection.format_exception(exc)
            info["text"] = "Internal " + info["text"]
            extra = {"exception": info}
        self.stop(frame, "exception", "exception", exc=exc, extra=extra)

    def step_frame_returning(self, st, frame, retval, yielded=False):
        if yielded and st.stop_at_return and st.mode != "step":
            # bdb ignores the yields of the generator (or coroutine) it steps over: `next` and
            # `until` go on in it when it resumes, `return` at the caller's next line.
            if st.mode == "return":
                self._retarget_to_caller(st, frame)
            return
        if st.mode == "return" or (st.stop_at_return and st.mode in ("step", "next", "until")):
            self.stop(frame, "return", "return", retval=retval)
            return
        self._retarget_to_caller(st, frame)

    def step_frame_unwinding(self, st, frame):
        """The step's frame ends with an exception: pdb stops at its return all the same, with
        None as the value."""
        self.step_frame_returning(st, frame, None)

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
            if mode in ("until", "return"):
                # bdb: the caller is the stop frame, so its next line (or an exception that
                # unwinds into it) is where the step ends.
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
