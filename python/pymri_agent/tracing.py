"""`pymri trace`: raised exceptions, calls and logpoints, reported while the program runs on.

A `Tracer` holds one trace session's hooks, counts and rate limits. It never stops a thread:
the hooks count, decide whether the event may be reported (at most `max_rate` per second and
per site, the rest only counted), and send `trace` events over the agent's session.

Hooks, by interpreter:
- 3.12+: a `sys.monitoring` tool of its own (not the debugger's). Exceptions use RAISE,
  RERAISE, EXCEPTION_HANDLED and PY_UNWIND, which fire only when something raises: code that
  raises nothing pays nothing. Calls use PY_START, enabled globally; every code object that is
  not traced returns DISABLE on its first start, so it costs one callback in all.
- 3.9-3.11: `sys.settrace` in every thread (existing ones through `_alltrace`, new ones through
  `threading.settrace`). For exceptions, each frame gets a local tracer with line events off
  (`f_trace_lines = False`): it sees `exception` and `return` only. Without exceptions traced,
  the global tracer returns None (calls are counted at the `call` event).

Where an exception was handled: monitoring reports EXCEPTION_HANDLED in the frame of the
handler; the trace function sees the next `line` event of the frame that saw the exception
(line events are switched on in that frame only, until then). Both are only tentative: a
`finally` or a `with` block handles the exception and raises it again (RERAISE on 3.12+; on
3.9-3.11 the caller then sees the same exception object). So an exception is reported when it
is settled: the thread's next exception, the frame it escapes from having no Python caller, a
short quiet time (`SETTLE`, checked by the flusher thread), or the end of the trace. An
exception that leaves a Python frame and never reaches its Python caller was swallowed by
native code (`hasattr`, a C callback): it is reported as handled by native code, called from
that caller's line.

Logpoints are the agent's log breakpoints (`_hits` routes their output here), so they cost
what a never-hit breakpoint costs: on 3.12+ a LINE event enabled on the code objects holding
them, on 3.9-3.11 an instrumented copy of the function (`_codeswap`).

Lost connection: the engine detaches (reader thread) and its detach callbacks call `stop`,
which removes every hook; pymri being killed is one way to lose the connection.
"""

import sys
import threading
import time

from ._monitoring import claim_tool
from .inspection import AGENT_DIR, safe_repr

_get_ident = threading.get_ident
_getframe = sys._getframe
_monotonic = time.monotonic

# Seconds an exception must stay settled (handled, or gone into native code) before it is
# reported: a `with` block's __exit__ or a `finally` runs between "handled" and "raised again".
SETTLE = 0.02
FLUSH_EVERY = 0.05
# Frames of the traceback reported with an exception (innermost ones kept).
MAX_FRAMES = 40
# Exceptions that are control flow, reported only when `--type` names them.
CONTROL = ("StopIteration", "StopAsyncIteration", "GeneratorExit")

M = getattr(sys, "monitoring", None)


def code_qualname(code):
    return getattr(code, "co_qualname", code.co_name)


def _site(code, line):
    return {"function": code_qualname(code), "file": code.co_filename, "line": line}


def _safe_str(exc):
    try:
        text = str(exc)
    except Exception:
        return "<str failed>"
    return text if len(text) <= 1000 else text[:1000] + "..."


def _type_label(cls):
    mod = getattr(cls, "__module__", "")
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if mod in ("builtins", None, "") else "%s.%s" % (mod, name)


def _thread_name(ident):
    t = threading._active.get(ident)
    return t.name if t is not None else "thread-%d" % ident


class _Raised(object):
    """An exception in flight in one thread, from its raise until it is settled."""

    __slots__ = ("exc", "type", "raised", "stack", "report", "frame", "state", "handler", "since",
                 "time", "ident")

    def __init__(self, exc, label, frame, code, line, report, ident):
        self.exc = exc
        self.type = label
        self.raised = (code_qualname(code), code.co_filename, line)
        self.stack = _stack(frame) if report else None
        self.report = report
        self.frame = frame   # the frame the exception is in now
        self.state = "flight"  # flight, handled, native
        self.handler = None
        self.since = 0.0
        self.time = time.time()
        self.ident = ident


def _stack(frame):
    out = []
    f = frame
    while f is not None and len(out) < MAX_FRAMES:
        code = f.f_code
        if code.co_filename.startswith(AGENT_DIR):
            break
        out.append({"function": code_qualname(code), "file": code.co_filename, "line": f.f_lineno})
        f = f.f_back
    out.reverse()
    return out


class CallSpec(object):
    """`module:qualname` or `qualname`; on 3.9/3.10 code objects have no qualified name, so the
    last part of the qualname is compared with the function's name."""

    def __init__(self, text):
        self.text = text
        module, sep, qualname = text.rpartition(":")
        self.module = module if sep else None
        self.qualname = qualname
        self.name = qualname.rpartition(".")[2]

    def matches(self, code, frame):
        if self.module is not None and frame.f_globals.get("__name__") != self.module:
            return False
        if hasattr(code, "co_qualname"):
            return code.co_qualname == self.qualname
        if code.co_name != self.name:
            return False
        if self.name == self.qualname:
            return True
        return _method_qualname(code, frame) == self.qualname


def _method_qualname(code, frame):
    """3.9/3.10: `Class.method` for a method's code, found through its first argument's class
    (the class whose attribute holds this very code); None for other functions."""
    if not code.co_argcount:
        return None
    first = frame.f_locals.get(code.co_varnames[0])
    cls = first if isinstance(first, type) else type(first)
    for klass in getattr(cls, "__mro__", ()):
        attr = klass.__dict__.get(code.co_name)
        func = getattr(attr, "__func__", attr)
        if getattr(func, "__code__", None) is code:
            return getattr(func, "__qualname__", None)
    return None


class Tracer(object):
    def __init__(self, agent, exceptions=False, types=(), calls=(), args=False, max_rate=10):
        self.agent = agent
        self.exceptions = bool(exceptions)
        self.types = frozenset(types)
        self.calls = [CallSpec(c) for c in calls]
        self.with_args = bool(args)
        self.max_rate = int(max_rate)
        self.lock = threading.Lock()
        self.active = False
        self.started = time.time()
        self.inflight = {}      # thread ident -> _Raised
        self.exc_groups = {}    # (type, raised, handler or None, native) -> count
        self.call_counts = {}   # (spec, caller function, file, line) -> count
        self.log_bps = {}       # breakpoint id -> [file, line, format, hits]
        self.windows = {}       # site -> [window start, reported in window]
        self.suppressed = {}    # site -> events counted, not reported
        self.type_cache = {}    # exception class -> traced?
        self.call_cache = {}    # id(code) -> (code, spec or None)
        self.hook = None
        self._flusher = None
        self._wake = threading.Event()

    # -- life ---------------------------------------------------------------------------------

    def start(self):
        if not (self.exceptions or self.calls):
            self.active = True
            return
        if M is not None:
            self.hook = _MonitoringHooks(self)
        else:
            self.hook = _TraceHooks(self)
        self.active = True
        if self.exceptions:
            # Started before the hooks: creating a thread raises and handles exceptions.
            self._flusher = threading.Thread(target=self._flush_main, name="pymri-trace", daemon=True)
            self._flusher.start()
            self.agent.agent_threads.add(self._flusher.ident)  # before the hooks exclude them
        try:
            self.hook.install()
        except Exception:
            self.active = False
            self._wake.set()
            raise

    def program_starting(self):
        """Launch: the program's main thread is about to run its first line."""
        if self.hook is not None and self.active:
            self.hook.thread_starting()

    def stop(self):
        """Removes every hook, settles what is in flight; returns the summary. Idempotent."""
        if self.active:
            self.active = False
            if self.hook is not None:
                try:
                    self.hook.uninstall()
                except Exception:
                    self.agent.internal_error()
            self._wake.set()
            if self._flusher is not None and self._flusher is not threading.current_thread():
                self._flusher.join(1.0)
            with self.lock:
                for rec in list(self.inflight.values()):
                    self._settle(rec)
                self.inflight.clear()
            # The caches hold the program's code objects and classes alive: not past the trace.
            self.call_cache.clear()
            self.type_cache.clear()
            if self.hook is not None:
                self.hook.forget()
        return self.summary()

    def info(self):
        return {"backend": self.hook.name if self.hook is not None else None,
                "tool_id": getattr(self.hook, "tool", None),
                "all_threads": getattr(self.hook, "all_threads", True)}

    def _flush_main(self):
        self.agent.agent_threads.add(_get_ident())
        while self.active:
            self._wake.wait(FLUSH_EVERY)
            if not self.active:
                break
            now = _monotonic()
            try:
                with self.lock:
                    for ident, rec in list(self.inflight.items()):
                        if rec.state != "flight" and now - rec.since >= SETTLE:
                            if self.inflight.get(ident) is rec:
                                del self.inflight[ident]
                            self._settle(rec)
            except Exception:
                self.agent.internal_error()

    # -- rate limiting ------------------------------------------------------------------------

    def allow(self, site):
        """Whether an event of `site` may be reported now; the others are counted."""
        now = _monotonic()
        w = self.windows.get(site)
        if w is None or now - w[0] >= 1.0:
            if self.max_rate > 0:
                self.windows[site] = [now, 1]
                return True
            w = self.windows[site] = [now, 0]
        elif w[1] < self.max_rate:
            w[1] += 1
            return True
        self.suppressed[site] = self.suppressed.get(site, 0) + 1
        return False

    def send(self, body):
        body["time"] = body.get("time") or time.time()
        self.agent.send_event("trace", body)

    # -- exceptions ---------------------------------------------------------------------------

    def traced_type(self, cls):
        ok = self.type_cache.get(cls)
        if ok is None:
            names = set()
            for c in getattr(cls, "__mro__", (cls,)):
                names.add(getattr(c, "__qualname__", c.__name__))
                names.add(_type_label(c))
            if self.types:
                ok = bool(names & self.types)
            else:
                ok = getattr(cls, "__name__", "") not in CONTROL
            self.type_cache[cls] = ok
        return ok

    def raised(self, exc, frame, line):
        """`exc` is raised in `frame` (a new raise, or one arriving from a callee)."""
        ident = _get_ident()
        with self.lock:
            rec = self.inflight.get(ident)
            if rec is not None:
                if rec.exc is exc:
                    rec.frame = frame
                    rec.state = "flight"
                    rec.handler = None
                    return
                del self.inflight[ident]
                self._settle(rec)
            if not self.traced_type(type(exc)):
                return
            code = frame.f_code
            report = self.allow(("exception", code.co_filename, line))
            self.inflight[ident] = _Raised(exc, _type_label(type(exc)), frame, code, line, report, ident)

    def handled(self, exc, frame, line):
        """`exc` was caught in `frame` at `line` (it may be raised again from there)."""
        rec = self.inflight.get(_get_ident())
        if rec is None or rec.exc is not exc:
            return
        rec.frame = frame
        rec.state = "handled"
        rec.handler = (code_qualname(frame.f_code), frame.f_code.co_filename, line)
        rec.since = _monotonic()

    def unwound(self, exc, frame):
        """`exc` leaves `frame`: escaped if no Python frame of the program called it."""
        ident = _get_ident()
        rec = self.inflight.get(ident)
        if rec is None or rec.exc is not exc or rec.state != "flight":
            return
        caller = frame.f_back
        if caller is None or caller.f_code.co_filename.startswith(AGENT_DIR) \
                or self.agent.is_hidden_code(caller.f_code):
            with self.lock:
                if self.inflight.get(ident) is rec:
                    del self.inflight[ident]
                rec.handler = None
                rec.state = "escaped"
                self._settle(rec)
            return
        rec.frame = caller
        rec.state = "native"
        rec.handler = (code_qualname(caller.f_code), caller.f_code.co_filename, caller.f_lineno)
        rec.since = _monotonic()

    def _settle(self, rec):
        """Counts and reports a settled exception (self.lock held)."""
        if rec.state == "flight":
            rec.state = "unknown"  # still in flight when the trace ended
        handler = rec.handler if rec.state in ("handled", "native") else None
        key = (rec.type, rec.raised, handler, rec.state)
        self.exc_groups[key] = self.exc_groups.get(key, 0) + 1
        if not rec.report:
            return
        body = {"kind": "exception", "time": rec.time, "thread": rec.ident,
                "thread_name": _thread_name(rec.ident), "type": rec.type,
                "message": _safe_str(rec.exc), "raised": _site_of(rec.raised),
                "traceback": rec.stack or [], "outcome": rec.state,
                "handled": _site_of(handler) if handler else None}
        self.send(body)

    # -- calls --------------------------------------------------------------------------------

    def call_spec(self, code, frame):
        """The spec that `code` (running in `frame`) matches, or None; cached per code object."""
        entry = self.call_cache.get(id(code))
        if entry is not None and entry[0] is code:
            return entry[1]
        found = None
        if not code.co_filename.startswith(AGENT_DIR):
            for spec in self.calls:
                if spec.matches(code, frame):
                    found = spec
                    break
        self.call_cache[id(code)] = (code, found)
        return found

    def called(self, spec, frame):
        caller = frame.f_back
        if caller is not None:
            ccode = caller.f_code
            key = (spec.text, code_qualname(ccode), ccode.co_filename, caller.f_lineno)
        else:
            key = (spec.text, "<native>", "", 0)
        self.call_counts[key] = self.call_counts.get(key, 0) + 1
        if not self.allow(("call",) + key):
            return
        body = {"kind": "call", "thread": _get_ident(), "thread_name": _thread_name(_get_ident()),
                "function": spec.text,
                "caller": {"function": key[1], "file": key[2], "line": key[3]}}
        if self.with_args:
            body["args"] = _arguments(frame)
        self.send(body)

    # -- logpoints ----------------------------------------------------------------------------

    def count_log(self, bp):
        """Counts a logpoint hit; whether it may be reported."""
        entry = self.log_bps.get(bp.id)
        if entry is None:
            return False
        entry[3] += 1
        return self.allow(("log", bp.id))

    def logged(self, bp, frame, line, text):
        self.send({"kind": "log", "thread": _get_ident(), "thread_name": _thread_name(_get_ident()),
                   "file": frame.f_code.co_filename, "line": line,
                   "function": code_qualname(frame.f_code), "text": text})

    # -- summary ------------------------------------------------------------------------------

    def summary(self):
        exceptions = []
        for (label, raised, handler, state), count in sorted(
                self.exc_groups.items(), key=lambda kv: -kv[1]):
            exceptions.append({"type": label, "raised": _site_of(raised),
                               "handled": _site_of(handler) if handler else None,
                               "outcome": state, "count": count,
                               "suppressed": self.suppressed.get(("exception", raised[1], raised[2]), 0)})
        calls = []
        for (spec, func, filename, line), count in sorted(
                self.call_counts.items(), key=lambda kv: (kv[0][0], -kv[1])):
            calls.append({"function": spec, "caller": {"function": func, "file": filename, "line": line},
                          "count": count,
                          "suppressed": self.suppressed.get(("call", spec, func, filename, line), 0)})
        logs = []
        for bid, (filename, line, fmt, hits) in sorted(self.log_bps.items()):
            logs.append({"file": filename, "line": line, "format": fmt, "hits": hits,
                         "suppressed": self.suppressed.get(("log", bid), 0)})
        return {"kind": "summary", "duration": round(time.time() - self.started, 3),
                "exceptions": exceptions, "calls": calls, "logpoints": logs}


def _site_of(t):
    return {"function": t[0], "file": t[1], "line": t[2]}


def _arguments(frame):
    code = frame.f_code
    n = code.co_argcount + code.co_kwonlyargcount
    if code.co_flags & 0x04:
        n += 1
    if code.co_flags & 0x08:
        n += 1
    out = []
    local = frame.f_locals
    for name in code.co_varnames[:n]:
        if name in local:
            out.append([name, safe_repr(local[name])])
    return out


class _MonitoringHooks(object):
    """3.12+: a sys.monitoring tool of the trace's own."""

    name = "monitoring"
    all_threads = True

    def __init__(self, tracer):
        self.tracer = tracer
        self.tool = claim_tool((M.PROFILER_ID, 3, 4, 1, 5, 0), "pymri-trace")
        self.events = []
        self.lines = {}  # (code, handler offset) -> line

    def install(self):
        tracer = self.tracer
        agent = tracer.agent
        E = M.events
        DISABLE = M.DISABLE
        agent_threads = agent.agent_threads
        t = self.tool
        mask = 0

        def skip(code):
            return code.co_filename.startswith(AGENT_DIR) or _get_ident() in agent_threads

        if tracer.exceptions:
            handler_line = self.handler_line
            raised = tracer.raised
            handled = tracer.handled
            unwound = tracer.unwound

            def on_raise(code, offset, exc):
                if skip(code):
                    return None
                try:
                    frame = _getframe(1)
                    raised(exc, frame, frame.f_lineno)
                except Exception:
                    agent.internal_error()
                return None

            def on_handled(code, offset, exc):
                if skip(code):
                    return None
                try:
                    handled(exc, _getframe(1), handler_line(code, offset))
                except Exception:
                    agent.internal_error()
                return None

            def on_unwind(code, offset, exc):
                if skip(code):
                    return None
                try:
                    unwound(exc, _getframe(1))
                except Exception:
                    agent.internal_error()
                return None

            for ev, fn in ((E.RAISE, on_raise), (E.RERAISE, on_raise),
                           (E.EXCEPTION_HANDLED, on_handled), (E.PY_UNWIND, on_unwind)):
                M.register_callback(t, ev, fn)
                self.events.append(ev)
                mask |= ev

        if tracer.calls:
            call_spec = tracer.call_spec
            called = tracer.called

            def on_start(code, offset):
                try:
                    frame = _getframe(1)
                    spec = call_spec(code, frame)
                    if spec is None:
                        return DISABLE
                    if _get_ident() not in agent_threads:
                        called(spec, frame)
                except Exception:
                    agent.internal_error()
                return None

            M.register_callback(t, E.PY_START, on_start)
            self.events.append(E.PY_START)
            mask |= E.PY_START
        M.set_events(t, mask)

    def thread_starting(self):
        pass

    def forget(self):
        self.lines.clear()

    def handler_line(self, code, offset):
        """The line of the `except` (or `with`) whose handler starts at `offset`: the handler's
        first instructions have no line of their own, the first one after them with a line is
        the clause's."""
        key = (code, offset)
        line = self.lines.get(key)
        if line is None:
            for start, end, n in code.co_lines():
                if end > offset and n is not None:
                    line = n
                    break
            else:
                line = code.co_firstlineno
            if len(self.lines) > 100000:
                self.lines.clear()
            self.lines[key] = line
        return line

    def uninstall(self):
        t = self.tool
        try:
            M.set_events(t, 0)
        finally:
            for ev in self.events:
                try:
                    M.register_callback(t, ev, None)
                except Exception:
                    pass
            M.free_tool_id(t)


class _TraceHooks(object):
    """3.9-3.11: sys.settrace in every thread."""

    name = "settrace"

    def __init__(self, tracer):
        self.tracer = tracer
        self.alltrace = None
        self.all_threads = False
        self.prev_hook = None
        at = getattr(tracer.agent.backend, "alltrace", None)
        if at is not None and at.ok:
            from ._alltrace import AllThreadsTracer
            self.alltrace = AllThreadsTracer(
                {"c_tracefunc": at.off_func, "c_traceobj": at.off_obj, "thread_id": at.off_tid})
            self.all_threads = self.alltrace.ok
        self._make()

    def _make(self):
        tracer = self.tracer
        agent = tracer.agent
        exceptions = tracer.exceptions
        calls = bool(tracer.calls)
        call_spec = tracer.call_spec
        called = tracer.called
        raised = tracer.raised
        handled = tracer.handled
        unwound = tracer.unwound
        inflight = tracer.inflight

        def ltrace(frame, event, arg):
            if event == "return" and not inflight:
                return None  # the common case, kept short: nothing is in flight anywhere
            try:
                if event == "exception":
                    if frame.f_code.co_filename.startswith(AGENT_DIR):
                        return None
                    raised(arg[1], frame, frame.f_lineno)
                    rec = inflight.get(_get_ident())
                    if rec is not None and rec.frame is frame:
                        frame.f_trace_lines = True
                elif event == "line":
                    rec = inflight.get(_get_ident())
                    if rec is not None and rec.frame is frame and rec.state == "flight":
                        handled(rec.exc, frame, frame.f_lineno)
                    frame.f_trace_lines = False
                elif event == "return":
                    rec = inflight.get(_get_ident())
                    if rec is not None and rec.frame is frame and rec.state == "flight":
                        unwound(rec.exc, frame)
                        caller = frame.f_back
                        if caller is not None and caller.f_trace is None:
                            caller.f_trace = ltrace
                            caller.f_trace_lines = False
            except Exception:
                agent.internal_error()
            return ltrace

        def gtrace(frame, event, arg):
            try:
                spec = call_spec(frame.f_code, frame)
                if spec is not None:
                    called(spec, frame)
            except Exception:
                agent.internal_error()
            if exceptions:
                frame.f_trace_lines = False
                return ltrace
            return None

        def gtrace_exceptions(frame, event, arg):
            frame.f_trace_lines = False
            return ltrace

        self.ltrace = ltrace
        self.gtrace = gtrace if calls else gtrace_exceptions

    def install(self):
        agent = self.tracer.agent
        self.prev_hook = getattr(threading, "_trace_hook", None)
        threading.settrace(self.gtrace)
        if self.alltrace is not None and self.alltrace.ok:
            self.alltrace.install(self.gtrace, exclude=set(agent.agent_threads))
        elif _get_ident() not in agent.agent_threads:
            sys.settrace(self.gtrace)
        if self.tracer.exceptions:
            # Frames already running get the local tracer too: their exceptions are seen.
            for ident, frame in list(sys._current_frames().items()):
                if ident in agent.agent_threads:
                    continue
                # A frame traced by the debugger's backend (a logpoint in a frame that was
                # already running) keeps that tracer: its line events matter more.
                f = frame
                while f is not None:
                    if f.f_trace is None and not f.f_code.co_filename.startswith(AGENT_DIR):
                        f.f_trace = self.ltrace
                        f.f_trace_lines = False
                    f = f.f_back

    def forget(self):
        pass

    def thread_starting(self):
        if sys.gettrace() is not self.gtrace:
            sys.settrace(self.gtrace)

    def uninstall(self):
        # The tracers this one replaced may be the debugger backend's (logpoints in running
        # frames); if the backend has let go of them meanwhile (it detached), they go too.
        backend = self.tracer.agent.backend
        stale = () if getattr(backend, "installed", False) else (getattr(backend, "gtrace", None), getattr)
        if getattr(threading, "_trace_hook", None) is self.gtrace:
            threading.settrace(None if self.prev_hook in stale else self.prev_hook)
        if self.alltrace is not None and self.alltrace.ok:
            self.alltrace.restore(self.gtrace)
            if stale:
                self.alltrace.restore(stale[0], also=stale[1:])
        if sys.gettrace() is self.gtrace:
            sys.settrace(None)
        for frame in list(sys._current_frames().values()):
            f = frame
            while f is not None:
                if f.f_trace is self.ltrace:
                    f.f_trace = None
                f = f.f_back
