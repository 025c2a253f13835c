"""The debugger engine: breakpoints, stops, stepping, and the request dispatcher.

Threads:
- the reader thread ("pymri-agent", daemon) receives frames and dispatches requests; requests
  that must run in a stopped thread (evaluation, variables, resuming) are queued to that thread;
- a thread that stops blocks in `Agent.stop`, serving its queue until resumed.
Only the thread that hits a stop stops; the others keep running.
"""

import os
import sys
import threading

try:
    # queue.Queue would import collections (2 ms of an attach, which waits for the agent)
    from _queue import SimpleQueue
except ImportError:
    from queue import Queue as SimpleQueue

from . import inspection
from ._codeswap import CodeSwapper
from .breakpoints import Breakpoint, BreakpointError, hit_condition_true, render_log_message
from .inspection import AGENT_DIR, MISSING, safe_repr, type_name
from .protocol import (AGENT_VERSION, PROTOCOL_VERSION, ConnectionClosed, IntegrityError,
                       ProtocolError)

_get_ident = threading.get_ident
_PSEUDO_FILES = ("<pymri-condition>", "<pymri-log>")
_JUMP = "jump"  # stop() result: a jump was requested at a stop inside an instrumented line's hook
_IDENT_CHAIN = inspection.LazyRegex(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ControlFlow(BaseException):
    """Raised into the program by `quit`/`restart` in launch mode only (like pdb's BdbQuit)."""


class QuitProgram(ControlFlow):
    pass


class RestartProgram(ControlFlow):
    pass


class RequestError(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


class StepState(object):
    __slots__ = ("mode", "frame", "line", "stop_at_return", "entry_code")

    def __init__(self, mode, frame, line=None, stop_at_return=True, entry_code=None):
        self.mode = mode  # step, next, return, until, entry
        self.frame = frame
        self.line = line  # until: stop at a line >= this in `frame`
        self.stop_at_return = stop_at_return
        self.entry_code = entry_code


class Stop(object):
    def __init__(self, ident, frames, reason, event):
        self.ident = ident
        self.frames = frames  # [(frame, lineno or None)], innermost first
        self.reason = reason
        self.event = event  # line, return, exception, attach, post_mortem
        self.queue = SimpleQueue()
        self.retval = MISSING
        self.exc = None
        self.post_mortem = False
        self.bp_ids = []
        self.in_callback = True
        self.hook = False  # stopped inside an instrumented line's hook (not a trace callback)
        self.jump_ok = False  # ... whose statement can complete a jump (see _codeswap)
        self.interact = {}
        self.extra = {}

    def frame_at(self, index):
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.frames):
            raise RequestError("no_such_frame", "no frame %r in thread %d" % (index, self.ident))
        return self.frames[index][0]

    def line_of(self, index):
        frame, line = self.frames[index]
        return inspection.frame_line(frame) if line is None else line


def _thread_name(ident):
    t = threading._active.get(ident)
    return t.name if t is not None else "thread-%d" % ident


# Requests run by the reader thread; everything else is queued to a stopped thread.
_READER_COMMANDS = {
    "info", "start", "set_breakpoint", "set_breakpoints", "set_function_breakpoints",
    "update_breakpoint", "clear_breakpoints", "list_breakpoints", "set_exception_filters",
    "pause", "threads", "stack", "source", "detach", "restart", "quit", "set_thread_offsets",
}
_RESUME_COMMANDS = {"continue", "step", "next", "step_out", "until"}


class Agent(object):
    ignored_exceptions = (StopIteration, StopAsyncIteration, GeneratorExit)
    control_exceptions = (ControlFlow,)

    def __init__(self, channel, mode, thread_offsets=None):
        self.channel = channel
        self.mode = mode  # "attach" or "launch"
        self.lock = threading.RLock()
        self.detached = False
        self.detach_reason = None
        self.agent_threads = set()
        self.hidden_codes = set()
        # breakpoints
        self.bps = {}
        self._next_bp = 1
        self.file_bps = {}   # filename -> {line: [Breakpoint]}
        self.func_bps = {}   # id(code) -> [Breakpoint]
        self.exc_filters = set()
        # per-thread state
        self.stops = {}
        self.steps = {}
        self.pauses = {}
        self.armed = {}
        self.busy = set()
        self.slow = set()   # non-empty => callbacks take the slow path
        self.deferred = {}  # ident -> (frame, line): a step/pause stop left to the line's hook
        self.transfers = {}  # ident -> (stop, line, rid, frame, hook line): jump from a hook stop
        self.skip_hook = {}  # ident -> (frame, line): a jump landed on this hook, skip it once
        self.refs = inspection.VarRefs()
        self.frame_ids = {}
        self._next_frame_id = 1
        self.capture = inspection.OutputCapture()
        self.known_threads = {}
        self._exec_files_cache = {}
        self._orig_excepthook = None
        self._orig_threading_excepthook = None
        # launch mode
        self.start_event = threading.Event()
        self.start_args = {}
        self.exit_action = SimpleQueue()
        self.program_exited = False
        self.main_ident = threading.main_thread().ident
        self.reader = None
        self.detach_callbacks = []
        self.in_launcher_hook = False
        if sys.version_info >= (3, 12) and getattr(sys, "monitoring", None) is not None:
            from ._monitoring import MonitoringBackend
            self.backend = MonitoringBackend(self)
        else:
            from ._settrace import TraceBackend
            self.backend = TraceBackend(self, thread_offsets)
        self.swapper = CodeSwapper(self, monitoring=self.backend.name == "monitoring")

    # ------------------------------------------------------------------------------------------
    # lifecycle

    def activate(self):
        """Install hooks, announce `ready` and start the reader thread."""
        import atexit
        atexit.register(self._atexit)
        self.backend.install()
        self.send_event("ready", self.info_body())
        for t in threading.enumerate():
            if t.ident not in self.agent_threads:  # a listener's threads (library.py) are not the program's
                self.known_threads[t.ident] = t.name
        self.reader = threading.Thread(target=self._reader_main, name="pymri-agent", daemon=True)
        self.reader.start()
        self.agent_threads.add(self.reader.ident)

    def info_body(self):
        body = {
            "protocol": PROTOCOL_VERSION,
            "agent_version": AGENT_VERSION,
            "pid": os.getpid(),
            "mode": self.mode,
            "python": {
                "version": sys.version.split()[0],
                "version_info": list(sys.version_info[:3]),
                "implementation": sys.implementation.name,
                "executable": sys.executable,
                "debug_build": hasattr(sys, "gettotalrefcount"),
            },
            "main_thread": self.main_ident,
            "cwd": _safe_getcwd(),
            "argv": list(sys.argv),
        }
        body.update(self.backend.info())
        body.update(self.swapper.info())
        return body

    def _atexit(self):
        """Interpreter exit: unhook before modules are torn down."""
        self.detach("exit", notify=True)

    def hide_code(self, code):
        self.hidden_codes.add(id(code))
        self._hidden_keep = getattr(self, "_hidden_keep", [])
        self._hidden_keep.append(code)

    def is_hidden_code(self, code):
        return code.co_filename.startswith(AGENT_DIR) or id(code) in self.hidden_codes \
            or code.co_filename in _PSEUDO_FILES

    def visible_frames(self, frame):
        out = []
        f = frame
        while f is not None:
            code = f.f_code
            if self.is_hidden_code(code):
                if out and code.co_filename.startswith(AGENT_DIR):
                    break
            else:
                out.append((f, None))
            f = f.f_back
        return out

    def internal_error(self):
        """An agent bug inside a hook: report it, never raise into the program."""
        try:
            self.send_event("output", {"category": "agent_error", "text": inspection.format_exc()})
        except Exception:
            pass

    def send_event(self, name, body):
        if self.detached:
            return
        try:
            self.channel.send_message({"kind": "event", "event": name, "body": body})
        except ConnectionClosed:
            self._async_detach("connection lost")
        except Exception:  # unencodable or oversized body: drop the event, never raise
            pass

    def _respond(self, rid, body=None, error=None):
        if error is not None:
            msg = {"kind": "response", "id": rid, "ok": False,
                   "error": {"code": error[0], "message": error[1]}}
        else:
            msg = {"kind": "response", "id": rid, "ok": True, "body": body or {}}
        try:
            self.channel.send_message(msg)
        except ProtocolError as exc:  # too large: answer with an error instead
            try:
                self.channel.send_message({"kind": "response", "id": rid, "ok": False,
                                           "error": {"code": "too_large", "message": str(exc)}})
            except Exception:
                pass
        except ConnectionClosed:
            self._async_detach("connection lost")
        except Exception:
            pass

    def _async_detach(self, reason):
        if self.detached:
            return
        if _get_ident() in self.agent_threads:
            self.detach(reason)
        else:
            # Never do the teardown in a program thread that may be inside a hook: close the
            # socket, the reader sees it and detaches.
            try:
                self.channel.close()
            except Exception:
                pass

    def detach(self, reason, notify=False):
        with self.lock:
            if self.detached:
                return
            if notify:
                try:
                    self.channel.send_message({"kind": "event", "event": "detached",
                                               "body": {"reason": reason}})
                except Exception:
                    pass
            self.detached = True
            self.detach_reason = reason
            try:
                self.swapper.restore_all()
            except Exception:
                pass
        try:
            self.backend.uninstall()
        except Exception:
            pass
        self.file_bps.clear()
        self.func_bps.clear()
        self.steps.clear()
        self.pauses.clear()
        self.armed.clear()
        self.slow.clear()
        self.deferred.clear()
        self.transfers.clear()
        self.skip_hook.clear()
        self._restore_excepthooks()
        try:
            self.capture.uninstall()
        except Exception:
            pass
        # Before any stopped thread resumes, so that a resumed program implies a finished detach.
        for callback in self.detach_callbacks:
            try:
                callback()
            except Exception:
                pass
        for stop in list(self.stops.values()):
            stop.queue.put(None)
        try:
            self.channel.close()
        except Exception:
            pass
        self.start_event.set()
        self.exit_action.put("detach")
        try:
            import atexit
            atexit.unregister(self._atexit)
        except Exception:
            pass

    # ------------------------------------------------------------------------------------------
    # reader thread

    def _reader_main(self):
        self.agent_threads.add(_get_ident())
        reason = "connection lost"
        notify = False
        try:
            while not self.detached:
                try:
                    msg = self.channel.recv_message()
                except ConnectionClosed:
                    break
                except IntegrityError as exc:
                    # Someone on the path wrote this frame. It is not answered; the controller is
                    # told why the session ends (in a tagged event it can trust), then dropped.
                    reason = str(exc)
                    notify = True
                    break
                except ProtocolError:
                    reason = "protocol error"
                    break
                if msg.get("kind") != "request" or not isinstance(msg.get("cmd"), str) \
                        or not _is_id(msg.get("id")):
                    reason = "protocol error"
                    break
                args = msg.get("args", {})
                if args is None:
                    args = {}
                if not isinstance(args, dict):
                    self._respond(msg["id"], error=("bad_request", "args must be an object"))
                    continue
                self._dispatch(msg["id"], msg["cmd"], args)
        except Exception:
            reason = "internal error"
        finally:
            self.detach(self.detach_reason or reason, notify=notify)

    def _dispatch(self, rid, cmd, args):
        handler = getattr(self, "req_" + cmd, None)
        if handler is None:
            self._respond(rid, error=("unknown_command", "unknown command %r" % cmd))
            return
        try:
            if cmd == "detach" or (cmd == "quit" and self.mode != "launch"):
                self._respond(rid, {})
                self.detach("request", notify=True)
                return
            if cmd == "continue" and "thread" not in args and "frame_id" not in args:
                resumed = sorted(self.stops)
                self._respond(rid, {"threads": resumed})
                for stop in [self.stops.get(i) for i in resumed]:
                    if stop is not None:
                        stop.queue.put((None, "continue", self.req_continue, {}))
                return
            if cmd in ("quit", "restart"):
                after = handler(args)
                self._respond(rid, {})
                after()
                return
            if cmd in _READER_COMMANDS:
                body = handler(args)
                self._respond(rid, body)
                return
            stop = self._target_stop(args)
            stop.queue.put((rid, cmd, handler, args))
        except RequestError as exc:
            self._respond(rid, error=(exc.code, exc.message))
        except BreakpointError as exc:
            self._respond(rid, error=("invalid_breakpoint", str(exc)))
        except Exception:
            self._respond(rid, error=("internal", inspection.format_exc()))

    def _target_stop(self, args):
        if "frame_id" in args:
            entry = self.frame_ids.get(args["frame_id"])
            if entry is None:
                raise RequestError("no_such_frame", "unknown frame_id %r" % (args["frame_id"],))
            args["thread"], args["frame"] = entry
        if "ref" in args and "thread" not in args:
            item = self.refs.get(args["ref"])
            if item is None:
                raise RequestError("no_such_reference", "unknown variables reference %r" % (args["ref"],))
            args["thread"] = item[0]
        tid = args.get("thread")
        if tid is None:
            if len(self.stops) == 1:
                tid = next(iter(self.stops))
            else:
                raise RequestError("bad_request", "'thread' is required")
        stop = self.stops.get(tid)
        if stop is None:
            raise RequestError("not_stopped", "thread %r is not stopped" % (tid,))
        return stop

    # ------------------------------------------------------------------------------------------
    # stops

    def arm(self, ident, frame):
        if ident in self.busy:
            return
        self.armed[ident] = frame
        self.slow.add("armed")

    def disarm(self, ident):
        self.armed.pop(ident, None)
        if not self.armed:
            self.slow.discard("armed")

    def _update_slow(self):
        for flag, on in (("step", bool(self.steps)), ("pause", bool(self.pauses)),
                         ("busy", bool(self.busy)), ("armed", bool(self.armed)),
                         ("transfer", bool(self.transfers)),
                         ("raised", "raised" in self.exc_filters and self.backend.name == "settrace")):
            if on:
                self.slow.add(flag)
            else:
                self.slow.discard(flag)
        # Instrumented lines call the agent even for a false inline condition while a thread
        # steps or pauses: the tracer leaves stops at such lines to the hook (`deferred`).
        self.swapper.set_slow(bool(self.steps or self.pauses))

    def _bps_changed(self):
        """Breakpoints changed (agent.lock held): re-instrument, then update the backend."""
        try:
            self.swapper.update()
        except Exception:
            self.internal_error()
        self.backend.breakpoints_changed()

    def file_seen(self, filename):
        """A backend saw code of a file whose breakpoints wait for it to be loaded."""
        try:
            with self.lock:
                if self.detached:
                    return
                if self.swapper.file_seen(filename):
                    self.backend.breakpoints_changed()
        except Exception:
            self.internal_error()

    def program_code(self, code):
        """Launch: the code about to run as __main__, instrumented for its breakpoints."""
        try:
            with self.lock:
                if self.detached:
                    return code
                new = self.swapper.instrument_program(code)
                self.backend.breakpoints_changed()
                return new
        except Exception:
            self.internal_error()
            return code

    def line_hit(self, frame, bps, line, entry, hook=False, jump_ok=True):
        """Breakpoints at this location were reached. Returns True if the thread stopped.

        `hook`: called from an instrumented line (not a trace callback), which holds the thread
        busy (tracers and hooks ignore it) while agent code runs as ordinary code."""
        if self.detached:
            return False
        stop_ids = []
        cond_error = None
        logs = []
        for bp in bps:
            if not bp.enabled:
                continue
            if bp.kind == "function" and not entry:
                continue
            bp.hits += 1
            if bp.cond_code is not None:
                try:
                    if not eval(bp.cond_code, frame.f_globals, frame.f_locals):
                        continue
                except Exception as exc:
                    cond_error = "%s: %s" % (type(exc).__name__, exc)
                    stop_ids.append(bp)
                    continue
            if bp.ignore_count > 0:
                bp.ignore_count -= 1
                continue
            if bp.hit_op is not None:
                bp.cond_hits += 1
                if not hit_condition_true(bp.hit_op[0], bp.hit_op[1], bp.cond_hits):
                    continue
            if bp.log_parts is not None:
                logs.append(bp)
                continue
            stop_ids.append(bp)
        for bp in logs:
            self._send_log(bp, frame, line)
        if not stop_ids:
            return False
        return self.stop_at_breakpoints(frame, stop_ids, cond_error,
                                        hook_line=line if hook else None, jump_ok=jump_ok)

    def _send_log(self, bp, frame, line):
        self.send_event("output", {"category": "log", "breakpoint": bp.id,
                                   "text": render_log_message(bp.log_parts, frame) + "\n",
                                   "file": frame.f_code.co_filename, "line": line})

    def stop_at_breakpoints(self, frame, stop_ids, cond_error, hook_line=None, jump_ok=True):
        """Stop for these breakpoints. Returns True, or _JUMP from a hook that must jump."""
        if self.detached:
            return False
        ident = _get_ident()
        if (ident in self.busy and hook_line is None) or ident in self.agent_threads:
            return False
        temporaries = [bp for bp in stop_ids if bp.temporary and cond_error is None]
        if temporaries:
            with self.lock:
                for bp in temporaries:
                    self._remove_bp(bp)
                self._bps_changed()
            for bp in temporaries:
                self.send_event("breakpoint", {"reason": "removed", "breakpoint": bp.to_dict()})
        extra = {"condition_error": cond_error} if cond_error else None
        ids = [bp.id for bp in stop_ids]
        if hook_line is None:
            self.stop(frame, "breakpoint", "line", bp_ids=ids, extra=extra)
            return True
        if self._hook_stop(frame, hook_line, "breakpoint", ids, extra, jump_ok) is _JUMP:
            return _JUMP
        return True

    # ------------------------------------------------------------------------------------------
    # instrumented lines (see _codeswap.py): these run in the program's thread, as ordinary code

    def _hook_guard(self, frame, line):
        """The thread calling a hook, now busy; None if the hook must do nothing."""
        if self.detached:
            return None
        ident = _get_ident()
        if ident in self.stops or ident in self.busy or ident in self.agent_threads:
            return None
        if self.skip_hook:
            skip = self.skip_hook.pop(ident, None)
            if skip is not None and skip[0] is frame and skip[1] == line:
                return None  # a jump just landed here: like a trace, do not report this line
        # Unlike a trace callback, a hook runs with tracing (a step) and monitoring live: the
        # agent's own work, and the stdlib code it calls, must not be traced or stepped into.
        self.busy.add(ident)
        return ident

    def _hook_stop(self, frame, line, reason, bp_ids=(), extra=None, jump_ok=True):
        frames = self.visible_frames(frame)
        if frames and frames[0][0] is frame:
            frames[0] = (frame, line)  # the line being executed is the hook's, i.e. this one
        return self.stop(frame, reason, "line", bp_ids=bp_ids, frames=frames, in_callback=False,
                         extra=extra, hook="jump" if jump_ok else "nojump")

    def hook_hit(self, hook, frame, jump_ok=True):
        """An instrumented line: every breakpoint there, evaluated like a tracer would.
        Returns True when the hook's statement must complete a jump."""
        line = hook.line
        ident = self._hook_guard(frame, line)
        if ident is None:
            return None
        try:
            return self._hook_hit(hook, frame, jump_ok, ident, line)
        finally:
            self.busy.discard(ident)

    def _hook_hit(self, hook, frame, jump_ok, ident, line):
        deferred = None
        if self.deferred:
            deferred = self.deferred.pop(ident, None)
            if deferred is not None and (deferred[0] is not frame or deferred[1] != line):
                deferred = None
        try:
            lines = self.file_bps.get(hook.file)
            bps = lines.get(line) if lines else None
            if bps:
                res = self.line_hit(frame, bps, line, False, hook=True, jump_ok=jump_ok)
                if res:
                    return True if res is _JUMP else None
            if deferred is not None:
                reason = self.line_stop_reason(ident, frame, line)
                if reason is not None \
                        and self._hook_stop(frame, line, reason, jump_ok=jump_ok) is _JUMP:
                    return True
        except self.control_exceptions:
            raise
        except Exception:
            self.internal_error()
        return None

    def _current_hook_bp(self, hook):
        bp = hook.bp
        if hook.retired or bp is None or self.bps.get(bp.id) is not bp or not bp.enabled:
            return None
        return bp

    def hook_true(self, hook, frame):
        """An inline condition was true (its hit was counted): the rest of pdb's sequence."""
        ident = self._hook_guard(frame, hook.line)
        if ident is None:
            return None
        try:
            return self._hook_true(hook, frame)
        finally:
            self.busy.discard(ident)

    def _hook_true(self, hook, frame):
        bp = self._current_hook_bp(hook)
        if bp is None:
            return None
        try:
            if bp.ignore_count > 0:
                bp.ignore_count -= 1
                return None
            if bp.hit_op is not None:
                bp.cond_hits += 1
                if not hit_condition_true(bp.hit_op[0], bp.hit_op[1], bp.cond_hits):
                    return None
            if bp.log_parts is not None:
                self._send_log(bp, frame, hook.line)
                return None
            if self.stop_at_breakpoints(frame, [bp], None, hook_line=hook.line) is _JUMP:
                return True
        except self.control_exceptions:
            raise
        except Exception:
            self.internal_error()
        return None

    def hook_error(self, hook, frame, exc):
        """An inline condition raised: like pdb, stop and report the error."""
        ident = self._hook_guard(frame, hook.line)
        if ident is None:
            return
        bp = self._current_hook_bp(hook)
        try:
            if bp is None:
                return
            # in an `except` block: no jump from here (the statement cannot complete one)
            self.stop_at_breakpoints(frame, [bp], "%s: %s" % (type(exc).__name__, exc),
                                     hook_line=hook.line, jump_ok=False)
        except self.control_exceptions:
            raise
        except Exception:
            self.internal_error()
        finally:
            self.busy.discard(ident)

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
                self._update_slow()
            return
        st.frame = caller
        if st.mode in ("return", "until"):
            st.mode = "next"
        with self.lock:
            self.backend.retarget(ident, st)

    def stop(self, frame, reason, event, bp_ids=(), retval=MISSING, exc=None, frames=None,
             post_mortem=False, in_callback=True, extra=None, hook=False):
        """Stop the calling thread and serve requests for it until it is resumed.

        Returns the resuming action, or _JUMP when a hook stop must complete a jump (the stop
        then goes on in a trace callback, see complete_transfer)."""
        if self.detached:
            return None
        ident = _get_ident()
        if ident in self.stops:
            return None
        if frames is None:
            frames = self.visible_frames(frame)
        stop = Stop(ident, frames, reason, event)
        stop.bp_ids = list(bp_ids)
        stop.retval = retval
        stop.exc = exc
        stop.post_mortem = post_mortem
        stop.in_callback = in_callback
        stop.hook = bool(hook)
        stop.jump_ok = hook == "jump"
        stop.extra = extra or {}
        with self.lock:
            if self.detached:
                return None
            self.deferred.pop(ident, None)
            had_step = self.steps.pop(ident, None) is not None
            if had_step:
                self.backend.end_step(ident)
            if self.pauses.pop(ident, None) is not None:
                self.backend.pause_done(ident)
            self.armed.pop(ident, None)
            if reason == "quit":
                self._update_slow()
                raise QuitProgram()
            self.stops[ident] = stop
            if not in_callback:
                self.busy.add(ident)
            self._update_slow()
        return self._serve(stop, announce=True)

    def _serve(self, stop, announce):
        """Serve requests for the current thread's stop, then resume it."""
        ident = stop.ident
        action = None
        transfer = False
        try:
            if announce:
                self._thread_events()
                self.send_event("stopped", self._stopped_body(stop))
            while True:
                action = self._command_loop(stop)
                if action is None or action[0] != "transfer" or self.detached:
                    break
                if self._begin_transfer(stop, action):
                    transfer = True
                    return _JUMP
        except Exception:
            self.internal_error()
            action = ("continue",)
        except BaseException:
            # A signal handler of the program raised (e.g. KeyboardInterrupt) while the thread
            # waited: the program gets its exception; the controller sees the thread resume.
            self.send_event("continued", {"thread": ident})
            raise
        finally:
            if not transfer:
                with self.lock:
                    self.stops.pop(ident, None)
                    if not stop.hook:  # a hook stop: the hook keeps it busy until it returns
                        self.busy.discard(ident)
                    self.refs.drop_owner(ident)
                    for fid in [k for k, v in self.frame_ids.items() if v[0] == ident]:
                        del self.frame_ids[fid]
                    self._update_slow()
        frames = stop.frames
        if action is None or self.detached:
            try:
                self.backend.thread_resuming(ident, [f for f, _ in frames])
            except Exception:
                pass
            return None
        kind = action[0]
        self.send_event("continued", {"thread": ident})
        if kind in ("quit", "restart"):
            self._resume_plain(ident, frames)
            raise QuitProgram() if kind == "quit" else RestartProgram()
        st = self._step_for(stop, action)
        if st is None:
            self._resume_plain(ident, frames)
        else:
            with self.lock:
                self.steps[ident] = st
                self.backend.begin_step(ident, st)
                self._update_slow()
        return action

    def _begin_transfer(self, stop, action):
        """`jump` at a hook stop: the hook returns True and its statement's next line event
        (in a trace callback) completes the jump and continues this stop."""
        _, line, rid = action
        ident = stop.ident
        frame = stop.frames[0][0]
        with self.lock:
            try:
                ok = self.backend.begin_transfer(ident, frame)
            except Exception:
                ok = False
            if not ok:
                self._respond(rid, error=("bad_state", "cannot jump from this stop"))
                return False
            self.transfers[ident] = (stop, line, rid, frame, stop.line_of(0))
            self._update_slow()
        return True

    def complete_transfer(self, frame):
        """Called by a backend at a line event of `frame`. True if a transfer was completed."""
        ident = _get_ident()
        with self.lock:
            t = self.transfers.get(ident)
            if t is None or t[3] is not frame:
                return False
            del self.transfers[ident]
            self.backend.end_transfer(ident)
            self._update_slow()
        stop, line, rid, _, hook_line = t
        body = err = None
        try:
            frame.f_lineno = line
            body = {"line": frame.f_lineno}
        except ValueError as exc:
            err = ("invalid_location", "Jump failed: %s" % exc)
            try:
                frame.f_lineno = hook_line  # back where the thread stopped
            except ValueError:
                pass
        self._after_jump(ident, frame)
        stop.frames[0] = (frame, None)
        stop.in_callback = True
        stop.hook = False
        self._respond(rid, body, error=err)
        self._serve(stop, announce=False)
        return True

    def _after_jump(self, ident, frame):
        """A jump landed on an instrumented line: its hook runs first and must not report the
        line (a trace would not: there is no line event for a jump target)."""
        hooked = self.swapper.hooked_lines(frame.f_code)
        line = frame.f_lineno
        if hooked and line in hooked:
            self.skip_hook[ident] = (frame, line)
        else:
            self.skip_hook.pop(ident, None)

    def _resume_plain(self, ident, frames):
        try:
            self.backend.thread_resuming(ident, [f for f, _ in frames])
        except Exception:
            self.internal_error()

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

    def _stopped_body(self, stop):
        body = {"thread": stop.ident, "thread_name": _thread_name(stop.ident), "reason": stop.reason}
        if stop.frames:
            frame = stop.frames[0][0]
            body["frame"] = self._frame_dict(frame, stop.line_of(0))
        if stop.bp_ids:
            body["breakpoints"] = stop.bp_ids
        if stop.retval is not MISSING:
            body["return_value"] = safe_repr(stop.retval, 1000)
        if stop.exc is not None:
            body["exception"] = inspection.format_exception(stop.exc)
        if stop.post_mortem:
            body["post_mortem"] = True
        body.update(stop.extra)
        return body

    def _frame_dict(self, frame, line):
        code = frame.f_code
        return {"file": code.co_filename, "line": line, "function": code.co_name,
                "module": frame.f_globals.get("__name__")}

    def _command_loop(self, stop):
        while True:
            item = stop.queue.get()
            if item is None or self.detached:
                return None
            rid, cmd, handler, args = item
            try:
                if cmd in _RESUME_COMMANDS or rid is None:
                    action = handler(stop, args)
                    if rid is not None:
                        self._respond(rid, {})
                    return action
                body = handler(stop, args)
                if isinstance(body, tuple) and body[0] == "transfer":
                    return ("transfer", body[1], rid)
                self._respond(rid, body)
            except RequestError as exc:
                self._respond(rid, error=(exc.code, exc.message))
            except BreakpointError as exc:
                self._respond(rid, error=("invalid_breakpoint", str(exc)))
            except Exception:
                self._respond(rid, error=("internal", inspection.format_exc()))

    def _thread_events(self):
        try:
            current = {}
            for t in threading.enumerate():
                if t.ident is not None and t.ident not in self.agent_threads:
                    current[t.ident] = t.name
            for ident in list(self.known_threads):
                if ident not in current:
                    name = self.known_threads.pop(ident)
                    self.send_event("thread", {"reason": "exited", "thread": ident, "name": name})
            for ident, name in current.items():
                if ident not in self.known_threads:
                    self.known_threads[ident] = name
                    self.send_event("thread", {"reason": "started", "thread": ident, "name": name})
        except Exception:
            pass

    # ------------------------------------------------------------------------------------------
    # entry points used by attach.py / launch.py

    def stop_here_attach(self, frame, reason="attach"):
        """Stop the calling thread at `frame` (not inside a hook)."""
        frames = self.visible_frames(frame)
        return self.stop(frame, reason, "attach", frames=frames, in_callback=False)

    def post_mortem(self, exc, tb=None):
        tb = tb if tb is not None else exc.__traceback__
        frames = []
        while tb is not None:
            if not self.is_hidden_code(tb.tb_frame.f_code):
                frames.append((tb.tb_frame, tb.tb_lineno))
            tb = tb.tb_next
        frames.reverse()
        frame = frames[0][0] if frames else None
        return self.stop(frame, "exception", "post_mortem", exc=exc, frames=frames,
                         post_mortem=True, in_callback=False)

    def request_entry_stop(self, code):
        ident = _get_ident()
        st = StepState("entry", None, entry_code=code)
        with self.lock:
            self.steps[ident] = st
            self.backend.begin_step(ident, st)
            self._update_slow()

    def cancel_entry_stop(self):
        ident = _get_ident()
        with self.lock:
            if self.steps.pop(ident, None) is not None:
                self.backend.end_step(ident)
            self._update_slow()

    def pause_thread(self, ident, reason="pause"):
        with self.lock:
            self.pauses[ident] = reason
            self._update_slow()
            ok = self.backend.pause(ident)
            if not ok:
                self.pauses.pop(ident, None)
                self._update_slow()
        return ok

    def install_excepthooks(self):
        if self._orig_excepthook is not None:
            return
        self._orig_excepthook = sys.excepthook
        self._orig_threading_excepthook = threading.excepthook
        agent = self

        def excepthook(etype, value, tb):
            agent._uncaught(value, tb)
            return agent._orig_excepthook(etype, value, tb)

        def threading_excepthook(args):
            if args.exc_value is not None:
                agent._uncaught(args.exc_value, args.exc_traceback)
            return agent._orig_threading_excepthook(args)

        self._excepthook = excepthook
        self._threading_excepthook = threading_excepthook
        sys.excepthook = excepthook
        threading.excepthook = threading_excepthook

    def _restore_excepthooks(self):
        if self._orig_excepthook is None:
            return
        if sys.excepthook is self._excepthook:
            sys.excepthook = self._orig_excepthook
        if threading.excepthook is self._threading_excepthook:
            threading.excepthook = self._orig_threading_excepthook
        self._orig_excepthook = None

    def _uncaught(self, exc, tb):
        if self.detached or "uncaught" not in self.exc_filters or exc is None or self.in_launcher_hook:
            return
        if isinstance(exc, (SystemExit, ControlFlow)):
            return
        try:
            self.post_mortem(exc, tb)
        except ControlFlow:
            pass
        except Exception:
            self.internal_error()

    # ------------------------------------------------------------------------------------------
    # breakpoints

    def _known_files(self):
        files = set()
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if isinstance(f, str) and f.endswith(".py"):
                files.add(f)
        for frame in list(sys._current_frames().values()):
            while frame is not None:
                files.add(frame.f_code.co_filename)
                frame = frame.f_back
        files.update(self.file_bps)
        for stop in list(self.stops.values()):
            for f, _ in stop.frames:
                files.add(f.f_code.co_filename)
        return {f for f in files if not f.startswith(AGENT_DIR)}

    def resolve_file(self, name):
        if not isinstance(name, str) or not name:
            raise RequestError("bad_request", "'file' must be a non-empty string")
        name = os.path.expanduser(name)
        known = self._known_files()
        if os.path.isabs(name):
            if name in known:
                return name
            real = os.path.realpath(name)
            for f in known:
                if os.path.isabs(f) and os.path.realpath(f) == real:
                    return f
            return os.path.normpath(name)
        if "/" not in name and os.sep not in name:
            matches = sorted(f for f in known if os.path.basename(f) == name)
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                main = getattr(sys.modules.get("__main__"), "__file__", None)
                if main in matches:
                    return main
                raise RequestError("ambiguous", "%r matches several files: %s" % (name, ", ".join(matches)))
        else:
            matches = [f for f in known if f.endswith(os.sep + name)]
            if len(matches) == 1:
                return matches[0]
        for base in [_safe_getcwd()] + [p for p in sys.path if isinstance(p, str)]:
            path = os.path.join(base or _safe_getcwd(), name)
            if os.path.isfile(path):
                return self.resolve_file(os.path.abspath(path))
        raise RequestError("not_found", "file %r not found (not loaded and not on sys.path)" % name)

    def _executable_lines(self, filename, lines):
        key = (filename, len(lines), hash(tuple(lines[:50])))
        cached = self._exec_files_cache.get(filename)
        if cached is not None and cached[0] == key:
            return cached[1]
        result = None
        try:
            code = compile("".join(lines), filename, "exec", dont_inherit=True)
            result = inspection.code_tree_lines(code)
        except Exception:
            result = None
        self._exec_files_cache[filename] = (key, result)
        return result

    def _check_line(self, filename, line):
        """pdb's check (blank/comment/end of file), plus DAP's 'verified' (executable line)."""
        if not isinstance(line, int) or isinstance(line, bool) or line < 1:
            raise RequestError("bad_request", "'line' must be a positive integer")
        lines = inspection.getlines(filename)
        if not lines:
            if os.path.exists(filename) or filename.startswith("<"):
                return False, "source not available"
            raise RequestError("not_found", "file %r not found" % filename)
        if line > len(lines):
            raise RequestError("invalid_location", "End of file: %s has %d lines" % (filename, len(lines)))
        text = lines[line - 1].strip()
        if not text or text.startswith("#"):
            raise RequestError("invalid_location", "Blank or comment: line %d of %s" % (line, filename))
        executable = self._executable_lines(filename, lines)
        if executable is None:
            return True, None
        if line in executable:
            return True, None
        return False, "line %d is not executable" % line

    def resolve_function(self, name, frame=None):
        if not isinstance(name, str) or not _IDENT_CHAIN.match(name):
            raise RequestError("bad_request", "function must be a dotted name, got %r" % (name,))
        obj = MISSING
        parts = name.split(".")
        if frame is not None:
            ns = [frame.f_locals, frame.f_globals]
        else:
            main = sys.modules.get("__main__")
            ns = [getattr(main, "__dict__", {})]
        for d in ns:
            if parts[0] in d:
                obj = d[parts[0]]
                try:
                    for p in parts[1:]:
                        obj = getattr(obj, p)
                except AttributeError:
                    obj = MISSING
                break
        if obj is MISSING:
            for i in range(len(parts) - 1, 0, -1):
                mod = sys.modules.get(".".join(parts[:i]))
                if mod is None:
                    continue
                try:
                    obj = mod
                    for p in parts[i:]:
                        obj = getattr(obj, p)
                    break
                except AttributeError:
                    obj = MISSING
        if obj is MISSING and len(parts) == 1:
            obj = getattr(__import__("builtins"), name, MISSING)
        if obj is MISSING:
            raise RequestError("not_found", "function %r not found" % name)
        for _ in range(20):
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
            elif hasattr(obj, "__wrapped__"):
                obj = obj.__wrapped__
            elif hasattr(obj, "__func__"):
                obj = obj.__func__
            else:
                break
        code = getattr(obj, "__code__", None)
        if code is None or not hasattr(code, "co_filename"):
            raise RequestError("not_found", "%r is not a Python function" % name)
        code = self.swapper.original(code)
        if self.is_hidden_code(code):
            raise RequestError("invalid_location", "cannot break inside the agent")
        return code

    def _add_line_bp(self, filename, line, args):
        verified, message = self._check_line(filename, line)
        if filename.startswith(AGENT_DIR):
            raise RequestError("invalid_location", "cannot break inside the agent")
        bp = Breakpoint(0, "line")
        bp.configure(args)
        bp.file = filename
        bp.line = line
        bp.verified = verified
        bp.message = message
        bp.id = self._next_bp
        self._next_bp += 1
        self.bps[bp.id] = bp
        lines = self.file_bps.setdefault(filename, {})
        lines[line] = lines.get(line, []) + [bp]
        return bp

    def _add_func_bp(self, name, args, frame):
        code = self.resolve_function(name, frame)
        bp = Breakpoint(0, "function")
        bp.configure(args)
        bp.function = name
        bp.code = code
        bp.file = code.co_filename
        bp.line = code.co_firstlineno
        bp.verified = True
        existing = self.func_bps.get(id(code))
        if existing:
            bp.first_line = existing[0].first_line
        bp.id = self._next_bp
        self._next_bp += 1
        self.bps[bp.id] = bp
        self.func_bps[id(code)] = (existing or []) + [bp]
        return bp

    def _remove_bp(self, bp):
        self.bps.pop(bp.id, None)
        if bp.kind == "line":
            lines = self.file_bps.get(bp.file, {})
            remaining = [b for b in lines.get(bp.line, []) if b is not bp]
            if remaining:
                lines[bp.line] = remaining
            else:
                lines.pop(bp.line, None)
            if not lines:
                self.file_bps.pop(bp.file, None)
        else:
            cid = id(bp.code)
            remaining = [b for b in self.func_bps.get(cid, []) if b is not bp]
            if remaining:
                self.func_bps[cid] = remaining
            else:
                self.func_bps.pop(cid, None)

    def _frame_from_args(self, args):
        if "thread" in args and args.get("thread") in self.stops:
            stop = self.stops[args["thread"]]
            return stop.frame_at(args.get("frame", 0))
        if "frame_id" in args:
            entry = self.frame_ids.get(args["frame_id"])
            if entry and entry[0] in self.stops:
                return self.stops[entry[0]].frame_at(entry[1])
        return None

    def req_set_breakpoint(self, args):
        with self.lock:
            if args.get("function"):
                bp = self._add_func_bp(args["function"], args, self._frame_from_args(args))
            else:
                if "file" not in args or "line" not in args:
                    raise RequestError("bad_request", "set_breakpoint needs file+line or function")
                bp = self._add_line_bp(self.resolve_file(args["file"]), args["line"], args)
            self._bps_changed()
        return {"breakpoint": bp.to_dict()}

    def req_set_breakpoints(self, args):
        filename = self.resolve_file(args.get("file"))
        specs = args.get("breakpoints", [])
        if not isinstance(specs, list):
            raise RequestError("bad_request", "'breakpoints' must be a list")
        out = []
        with self.lock:
            for bp in [b for b in self.bps.values() if b.kind == "line" and b.file == filename]:
                self._remove_bp(bp)
            for spec in specs:
                if not isinstance(spec, dict):
                    raise RequestError("bad_request", "each breakpoint must be an object")
                try:
                    bp = self._add_line_bp(filename, spec.get("line"), spec)
                    out.append(bp.to_dict())
                except (RequestError, BreakpointError) as exc:
                    out.append({"verified": False, "line": spec.get("line"), "message": str(exc)})
            self._bps_changed()
        return {"breakpoints": out}

    def req_set_function_breakpoints(self, args):
        specs = args.get("breakpoints", [])
        if not isinstance(specs, list):
            raise RequestError("bad_request", "'breakpoints' must be a list")
        frame = self._frame_from_args(args)
        out = []
        with self.lock:
            for bp in [b for b in self.bps.values() if b.kind == "function"]:
                self._remove_bp(bp)
            for spec in specs:
                try:
                    if not isinstance(spec, dict):
                        raise RequestError("bad_request", "each breakpoint must be an object")
                    bp = self._add_func_bp(spec.get("function"), spec, frame)
                    out.append(bp.to_dict())
                except (RequestError, BreakpointError) as exc:
                    out.append({"verified": False, "function": spec.get("function") if isinstance(spec, dict) else None,
                                "message": str(exc)})
            self._bps_changed()
        return {"breakpoints": out}

    def req_update_breakpoint(self, args):
        with self.lock:
            bp = self.bps.get(args.get("id"))
            if bp is None:
                raise RequestError("no_such_breakpoint", "no breakpoint %r" % (args.get("id"),))
            bp.configure(args, partial=True)
            self._bps_changed()
        return {"breakpoint": bp.to_dict()}

    def req_clear_breakpoints(self, args):
        with self.lock:
            if args.get("all"):
                victims = list(self.bps.values())
            elif "ids" in args:
                ids = args["ids"]
                if not isinstance(ids, list):
                    raise RequestError("bad_request", "'ids' must be a list")
                victims = []
                for i in ids:
                    if i not in self.bps:
                        raise RequestError("no_such_breakpoint", "no breakpoint %r" % (i,))
                    victims.append(self.bps[i])
            elif "file" in args:
                filename = self.resolve_file(args["file"])
                victims = [b for b in self.bps.values() if b.kind == "line" and b.file == filename
                           and ("line" not in args or b.line == args["line"])]
                if not victims:
                    raise RequestError("no_such_breakpoint", "no breakpoint at %s:%s" % (filename, args.get("line", "*")))
            else:
                raise RequestError("bad_request", "clear_breakpoints needs ids, file[+line] or all")
            for bp in victims:
                self._remove_bp(bp)
            self._bps_changed()
        return {"removed": [bp.to_dict() for bp in victims]}

    def req_list_breakpoints(self, args):
        with self.lock:
            return {"breakpoints": [self.bps[i].to_dict() for i in sorted(self.bps)]}

    def req_set_exception_filters(self, args):
        filters = args.get("filters", [])
        if not isinstance(filters, list) or any(f not in ("raised", "uncaught") for f in filters):
            raise RequestError("bad_request", "filters must be a list of 'raised'/'uncaught'")
        with self.lock:
            self.exc_filters = set(filters)
            if "uncaught" in self.exc_filters:
                self.install_excepthooks()
            self._update_slow()
            self.backend.exception_filters_changed()
        return {"filters": sorted(self.exc_filters)}

    # ------------------------------------------------------------------------------------------
    # reader-side requests

    def req_info(self, args):
        return self.info_body()

    def req_set_thread_offsets(self, args):
        setter = getattr(self.backend, "set_offsets", None)
        if setter is not None and isinstance(args.get("thread_offsets"), dict):
            with self.lock:
                setter(args["thread_offsets"])
        return self.backend.info()

    def req_start(self, args):
        if self.mode != "launch":
            raise RequestError("bad_state", "start is only for launched programs")
        if self.start_event.is_set():
            raise RequestError("bad_state", "already started")
        if isinstance(args.get("thread_offsets"), dict):
            self.req_set_thread_offsets(args)
        self.start_args = dict(args)
        self.start_event.set()
        return {}

    def req_pause(self, args):
        tid = args.get("thread")
        if tid is None:
            targets = [i for i in sys._current_frames() if i not in self.agent_threads and i not in self.stops]
        else:
            if tid in self.stops:
                return {"paused": []}
            if tid not in sys._current_frames() or tid in self.agent_threads:
                raise RequestError("no_such_thread", "no thread %r running Python code" % (tid,))
            targets = [tid]
        done = [t for t in targets if self.pause_thread(t)]
        if tid is not None and not done:
            raise RequestError("unsupported", "cannot pause thread %r (no thread-state offsets)" % tid)
        return {"paused": done}

    def req_threads(self, args):
        self._thread_events()
        frames = sys._current_frames()
        threads = {t.ident: t for t in threading.enumerate()}
        out = []
        for ident in sorted(set(frames) | set(threads), key=lambda i: (i != self.main_ident, i)):
            if ident in self.agent_threads or ident is None:
                continue
            t = threads.get(ident)
            d = {"id": ident, "name": t.name if t is not None else "thread-%d" % ident,
                 "main": ident == self.main_ident, "stopped": ident in self.stops}
            if t is not None:
                d["daemon"] = t.daemon
                native = getattr(t, "native_id", None)
                if native is not None:
                    d["native_id"] = native
            stop = self.stops.get(ident)
            if stop is not None:
                d["reason"] = stop.reason
                if stop.frames:
                    d["frame"] = self._frame_dict(stop.frames[0][0], stop.line_of(0))
            elif ident in frames:
                vis = self.visible_frames(frames[ident])
                if vis:
                    d["frame"] = self._frame_dict(vis[0][0], inspection.frame_line(vis[0][0]))
            out.append(d)
        return {"threads": out}

    def req_stack(self, args):
        stop = self._target_stop(args)
        start = args.get("start", 0)
        levels = args.get("levels")
        frames = []
        total = len(stop.frames)
        end = total if not levels else min(total, start + levels)
        for index in range(start, end):
            frame = stop.frames[index][0]
            key = (stop.ident, index)
            fid = None
            for k, v in self.frame_ids.items():
                if v == key:
                    fid = k
                    break
            if fid is None:
                fid = self._next_frame_id
                self._next_frame_id += 1
                self.frame_ids[fid] = key
            d = self._frame_dict(frame, stop.line_of(index))
            d["index"] = index
            d["id"] = fid
            frames.append(d)
        return {"frames": frames, "total": total}

    def req_source(self, args):
        frame = None
        line = None
        if "file" in args:
            filename = self.resolve_file(args["file"])
        else:
            stop = self._target_stop(args)
            index = args.get("frame", 0)
            frame = stop.frame_at(index)
            line = stop.line_of(index)
            filename = frame.f_code.co_filename
        lines = inspection.getlines(filename, frame.f_globals if frame is not None else None)
        if not lines:
            raise RequestError("not_found", "no source for %r" % filename)
        if args.get("function"):
            if frame is None:
                raise RequestError("bad_request", "'function' needs a thread/frame")
            first, last = inspection.function_range(frame.f_code, lines)
        else:
            first = args.get("start", 1)
            last = args.get("end", len(lines))
            if not isinstance(first, int) or not isinstance(last, int):
                raise RequestError("bad_request", "start/end must be integers")
            first = max(1, first)
            last = min(len(lines), last)
        body = {"file": filename, "first": first,
                "lines": [ln.rstrip("\r\n") for ln in lines[first - 1:last]] if first <= last else [],
                "total": len(lines),
                "breakpoints": sorted(self.file_bps.get(filename, {}))}
        if line is not None:
            body["current"] = line
        return body

    def req_detach(self, args):
        return {}  # answered and carried out by _dispatch

    def req_restart(self, args):
        """Checks now; the returned function acts after the response went out."""
        if self.mode != "launch":
            raise RequestError("bad_state", "restart is only for launched programs")
        if self.program_exited:
            return lambda: self.exit_action.put("restart")
        stop = self.stops.get(self.main_ident)
        if stop is None:
            raise RequestError("bad_state", "the main thread must be stopped (or the program exited) to restart")
        return lambda: stop.queue.put((None, "restart", lambda s, a: ("restart",), {}))

    def req_quit(self, args):
        if self.program_exited:
            return lambda: self.exit_action.put("quit")

        def after():
            stop = self.stops.get(self.main_ident)
            if stop is not None:
                stop.queue.put((None, "quit", lambda s, a: ("quit",), {}))
            else:
                self.pause_thread(self.main_ident, reason="quit")
            for ident, other in list(self.stops.items()):
                if ident != self.main_ident:
                    other.queue.put((None, "continue", lambda s, a: ("continue",), {}))
        return after

    # ------------------------------------------------------------------------------------------
    # thread-side requests (run in the stopped thread; `stop` is its Stop)

    def req_continue(self, stop, args):
        return ("continue",)

    def req_step(self, stop, args):
        return ("step", None, bool(args.get("stop_at_return", True)))

    def req_next(self, stop, args):
        return ("next", None, bool(args.get("stop_at_return", True)))

    def req_step_out(self, stop, args):
        return ("step_out",)

    def req_until(self, stop, args):
        line = args.get("line")
        if line is not None and (not isinstance(line, int) or isinstance(line, bool)):
            raise RequestError("bad_request", "'line' must be an integer")
        if line is not None and stop.frames and line <= stop.line_of(0):
            raise RequestError("invalid_location", "\"until\" line number is smaller than current line number")
        return ("until", line)

    def req_jump(self, stop, args):
        line = args.get("line")
        if not isinstance(line, int) or isinstance(line, bool):
            raise RequestError("bad_request", "'line' must be an integer")
        if stop.post_mortem or not stop.frames:
            raise RequestError("bad_state", "cannot jump in post-mortem")
        if stop.hook:
            if not stop.jump_ok:
                raise RequestError("bad_state", "jump is not possible at this stop (a condition "
                                                "error or a lambda); use next or step first")
            return ("transfer", line)
        if stop.event != "line" or not stop.in_callback:
            raise RequestError("bad_state", "jump is only possible at a line event (not at %s)" % stop.event)
        frame = stop.frames[0][0]
        try:
            frame.f_lineno = line
        except ValueError as exc:
            raise RequestError("invalid_location", "Jump failed: %s" % exc)
        stop.frames[0] = (frame, None)
        self._after_jump(stop.ident, frame)
        return {"line": frame.f_lineno}

    def _eval_frame(self, stop, args):
        index = args.get("frame", 0)
        if not stop.frames:
            return None
        return stop.frame_at(index)

    def req_evaluate(self, stop, args):
        expr = args.get("expression")
        if not isinstance(expr, str):
            raise RequestError("bad_request", "'expression' must be a string")
        mode = args.get("mode", "auto")
        if mode not in ("auto", "eval", "exec", "pprint", "str"):
            raise RequestError("bad_request", "bad mode %r" % (mode,))
        frame = self._eval_frame(stop, args)
        max_length = args.get("max_length", inspection.DEFAULT_MAX_LENGTH)
        body, value = inspection.evaluate(frame, expr, mode, self.capture, max_length=max_length)
        if value is not MISSING and "exception" not in body and args.get("want_ref") \
                and inspection.is_expandable(value):
            body["ref"] = self.refs.add(stop.ident, "value", value, frame, expr)
        return body

    def req_whatis(self, stop, args):
        frame = self._eval_frame(stop, args)
        body, value = inspection.evaluate(frame, args.get("expression", ""), "eval", self.capture)
        if "exception" in body:
            return body
        return {"text": inspection.whatis(value)}

    def req_args(self, stop, args):
        frame = self._eval_frame(stop, args)
        if frame is None:
            return {"args": []}
        code = frame.f_code
        n = code.co_argcount + code.co_kwonlyargcount
        if code.co_flags & 0x04:
            n += 1
        if code.co_flags & 0x08:
            n += 1
        loc = frame.f_locals
        out = []
        for name in code.co_varnames[:n]:
            if name in loc:
                out.append({"name": name, "value": safe_repr(loc[name], 1000)})
            else:
                out.append({"name": name, "value": "*** undefined ***"})
        return {"args": out}

    def req_retval(self, stop, args):
        if stop.retval is MISSING:
            raise RequestError("bad_state", "not stopped at a return")
        return {"value": safe_repr(stop.retval, 10000), "type": type_name(stop.retval)}

    def req_exception_info(self, stop, args):
        if stop.exc is None:
            raise RequestError("bad_state", "not stopped at an exception")
        body = inspection.format_exception(stop.exc)
        body["post_mortem"] = stop.post_mortem
        return body

    def req_completions(self, stop, args):
        frame = self._eval_frame(stop, args)
        text = args.get("text", "")
        if not isinstance(text, str):
            raise RequestError("bad_request", "'text' must be a string")
        if frame is None:
            g = sys.modules["__main__"].__dict__
            loc = g
        else:
            g, loc = frame.f_globals, frame.f_locals
        start, matches = inspection.completions(text, g, loc)
        return {"start": start, "matches": matches[:1000]}

    def req_scopes(self, stop, args):
        frame = self._eval_frame(stop, args)
        if frame is None:
            return {"scopes": []}
        scopes = [{"name": "Locals", "ref": self.refs.add(stop.ident, "locals", frame, frame)}]
        if frame.f_locals is not frame.f_globals:
            scopes.append({"name": "Globals", "ref": self.refs.add(stop.ident, "globals", frame, frame)})
        return {"scopes": scopes}

    def _var(self, stop, name, value, frame, evaluate_name):
        d = {"name": name, "value": safe_repr(value), "type": type_name(value), "ref": 0}
        if evaluate_name is not None:
            d["evaluate_name"] = evaluate_name
        if inspection.is_expandable(value):
            d["ref"] = self.refs.add(stop.ident, "value", value, frame, evaluate_name)
            if isinstance(value, (list, tuple, dict, set, frozenset)):
                try:
                    d["count"] = len(value)
                except Exception:
                    pass
        return d

    def req_variables(self, stop, args):
        item = self.refs.get(args.get("ref"))
        if item is None or item[0] != stop.ident:
            raise RequestError("no_such_reference", "unknown variables reference %r" % (args.get("ref"),))
        owner, kind, obj, frame, ename = item
        if kind == "locals":
            entries = [(k, v, k) for k, v in _items(frame.f_locals)]
            if stop.retval is not MISSING and stop.frames and frame is stop.frames[0][0]:
                entries.insert(0, ("(return)", stop.retval, None))
        elif kind == "globals":
            entries = [(k, v, k) for k, v in _items(frame.f_globals)]
        else:
            entries = [(name, v, (ename + suffix) if ename and suffix else None)
                       for name, v, _, suffix in inspection.children(obj)]
        total = len(entries)
        start = args.get("start", 0) or 0
        count = args.get("count") or total
        out = [self._var(stop, n, v, frame, e) for n, v, e in entries[start:start + count]]
        return {"variables": out, "total": total}

    def req_set_variable(self, stop, args):
        item = self.refs.get(args.get("ref"))
        if item is None or item[0] != stop.ident:
            raise RequestError("no_such_reference", "unknown variables reference %r" % (args.get("ref"),))
        owner, kind, obj, frame, ename = item
        name = args.get("name")
        source = args.get("value")
        if not isinstance(name, str) or not isinstance(source, str):
            raise RequestError("bad_request", "'name' and 'value' must be strings")
        body, value = inspection.evaluate(frame, source, "eval", self.capture)
        if "exception" in body:
            raise RequestError("eval_error", body["exception"]["text"])
        try:
            if kind == "locals":
                if frame.f_locals is frame.f_globals:
                    frame.f_globals[name] = value
                elif inspection.PY313:
                    frame.f_locals[name] = value
                else:
                    frame.f_locals[name] = value
                    inspection.locals_to_fast(frame)
            elif kind == "globals":
                frame.f_globals[name] = value
            else:
                for cname, _, setter, _ in inspection.children(obj):
                    if cname == name:
                        break
                else:
                    raise RequestError("not_found", "no child %r" % name)
                if setter is None:
                    raise RequestError("unsupported", "cannot assign to %r" % name)
                if setter[0] == "item":
                    obj[setter[1]] = value
                else:
                    setattr(obj, setter[1], value)
        except RequestError:
            raise
        except Exception as exc:
            raise RequestError("eval_error", "%s: %s" % (type(exc).__name__, exc))
        return self._var(stop, name, value, frame, None)

    def req_interact(self, stop, args):
        import codeop
        from collections import ChainMap
        action = args.get("action", "push")
        frame = self._eval_frame(stop, args)
        if action == "start":
            if frame is None:
                g = sys.modules["__main__"].__dict__
                ns = ChainMap({}, g)
            else:
                g = frame.f_globals
                ns = ChainMap(dict(_items(frame.f_locals)), g)
            sid = len(stop.interact) + 1
            stop.interact[sid] = (g, ns, [])
            return {"session": sid}
        sess = stop.interact.get(args.get("session"))
        if sess is None:
            raise RequestError("bad_request", "unknown interact session")
        g, ns, buf = sess
        if action == "end":
            del stop.interact[args["session"]]
            return {}
        source = args.get("source", "")
        buf.append(source)
        text = "\n".join(buf)
        try:
            code = codeop.compile_command(text, "<pymri-interact>", "single")
        except (SyntaxError, OverflowError, ValueError) as exc:
            del buf[:]
            return {"more": False, "output": "", "exception": inspection.format_exception(exc)}
        if code is None:
            return {"more": True}
        del buf[:]
        out = self.capture.start()
        body = {"more": False}
        try:
            try:
                exec(code, g, ns)
            except BaseException as exc:
                body["exception"] = inspection.format_exception(exc)
        finally:
            self.capture.stop()
        body["output"] = "".join(out)
        return body


def _items(mapping):
    try:
        return list(mapping.items())
    except Exception:
        return []


def _is_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 53


def _safe_getcwd():
    try:
        return os.getcwd()
    except OSError:
        return ""
