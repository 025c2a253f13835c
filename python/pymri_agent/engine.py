"""The debugger engine: the agent's state, its stops, and the request dispatcher.

The requests live in the `req_*` modules, one per concern; `REQUESTS`, their union, is the
dispatch table (see `_handlers`). What the backends' callbacks call is in the mixins `_hits`
(breakpoint hits, instrumented lines) and `_stepping` (where a step ends). What stays here is
what all of them share: the state, a thread's `Stop` and its command loop, resuming, detaching.

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

from . import (inspection, req_breakpoints, req_doctor, req_evaluate, req_exec, req_inspect, req_session,
               req_stepping, req_threads, req_trace)
from ._codeswap import CodeSwapper
from ._handlers import AFTER, READER, RESUME, RequestError, compose
from ._hits import JUMP, BreakpointHits
from ._stepping import Stepping, set_frame_line
from .breakpoints import BreakpointError
from .inspection import AGENT_DIR, MISSING, safe_getcwd, safe_repr
from .protocol import (AGENT_VERSION, PROTOCOL_VERSION, ConnectionClosed, IntegrityError,
                       ProtocolError)

_get_ident = threading.get_ident
_PSEUDO_FILES = ("<pymri-condition>", "<pymri-log>")

# name -> (kind, handler): every request the agent answers.
REQUESTS = compose(req_session.REQUESTS, req_breakpoints.REQUESTS, req_stepping.REQUESTS,
                   req_threads.REQUESTS, req_inspect.REQUESTS, req_evaluate.REQUESTS,
                   req_exec.REQUESTS, req_trace.REQUESTS, req_doctor.REQUESTS)


class ControlFlow(BaseException):
    """Raised into the program by `quit`/`restart` in launch mode only (like pdb's BdbQuit)."""


class QuitProgram(ControlFlow):
    pass


class RestartProgram(ControlFlow):
    pass


def _drain(queue):
    """The ids of the requests left in a stop's queue, which is emptied."""
    ids = []
    while True:
        try:
            item = queue.get_nowait()
        except Exception:
            return ids
        if item is not None and item[0] is not None:
            ids.append(item[0])


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

    def selected_frame(self, args):
        """The frame a request names (`frame`, default 0); None for a stop without frames."""
        if not self.frames:
            return None
        return self.frame_at(args.get("frame", 0))


def _thread_name(ident):
    t = threading._active.get(ident)
    return t.name if t is not None else "thread-%d" % ident


class Agent(BreakpointHits, Stepping):
    """The agent's state (set up here, shared with the mixins `BreakpointHits` and `Stepping`),
    its life, the reader thread's dispatch and the stops."""

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
        self.next_bp = 1
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
        self.next_frame_id = 1
        self.capture = inspection.OutputCapture()
        self.known_threads = {}
        self.exec_files_cache = {}
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
        self.tracer = None  # a `pymri trace` session's hooks (tracing.Tracer)
        self.doctor = None  # a `pymri doctor` window's hooks (req_doctor.Doctor)
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
            # A listener's threads (library.py) are not the program's; a thread still starting
            # (in threading's limbo) has no ident yet, and is announced once it has one.
            if t.ident is not None and t.ident not in self.agent_threads:
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
            "cwd": safe_getcwd(),
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
        entry = REQUESTS.get(cmd)
        if entry is None:
            self._respond(rid, error=("unknown_command", "unknown command %r" % cmd))
            return
        kind, handler = entry
        try:
            if kind == READER:
                body = handler(self, args)
                self._respond(rid, body)
                return
            if kind == AFTER:
                after = handler(self, args)
                self._respond(rid, {})
                after()
                return
            if cmd == "continue" and "thread" not in args and "frame_id" not in args:
                # No thread named: every stopped thread resumes, answered by the reader.
                resumed = sorted(self.stops)
                self._respond(rid, {"threads": resumed})
                for stop in [self.stops.get(i) for i in resumed]:
                    if stop is not None:
                        stop.queue.put((None, True, handler, {}))
                return
            # Under the lock that a resuming thread takes to forget its stop: a request is
            # either queued before the stop ends (and answered by _serve's drain) or refused.
            with self.lock:
                stop = self.target_stop(args)
                stop.queue.put((rid, kind == RESUME, handler, args))
        except Exception as exc:
            self._respond_failure(rid, exc)

    def _respond_failure(self, rid, exc):
        """Answers a request whose handler raised `exc` (called in its `except` block)."""
        if isinstance(exc, RequestError):
            error = (exc.code, exc.message)
        elif isinstance(exc, BreakpointError):
            error = ("invalid_breakpoint", str(exc))
        else:
            error = ("internal", inspection.format_exc())
        self._respond(rid, error=error)

    def target_stop(self, args):
        """The stop a request names by `thread`, `frame_id` or `ref` (or the only one)."""
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

    def update_slow(self):
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

    def bps_changed(self):
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

    def stop(self, frame, reason, event, bp_ids=(), retval=MISSING, exc=None, frames=None,
             post_mortem=False, in_callback=True, extra=None, hook=False):
        """Stop the calling thread and serve requests for it until it is resumed.

        Returns the resuming action, or JUMP when a hook stop must complete a jump (the stop
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
                self.update_slow()
                raise QuitProgram()
            self.stops[ident] = stop
            if not in_callback:
                self.busy.add(ident)
            self.update_slow()
        return self._serve(stop, announce=True)

    def _serve(self, stop, announce):
        """Serve requests for the current thread's stop, then resume it."""
        ident = stop.ident
        action = None
        transfer = False
        try:
            if announce:
                self.thread_events()
                self.send_event("stopped", self._stopped_body(stop))
            while True:
                action = self._command_loop(stop)
                if action is None or action[0] != "transfer" or self.detached:
                    break
                if self._begin_transfer(stop, action):
                    transfer = True
                    return JUMP
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
                    orphans = _drain(stop.queue)
                    if not stop.hook:  # a hook stop: the hook keeps it busy until it returns
                        self.busy.discard(ident)
                    self.refs.drop_owner(ident)
                    for fid in [k for k, v in self.frame_ids.items() if v[0] == ident]:
                        del self.frame_ids[fid]
                    self.update_slow()
                # Requests queued behind the one that resumed the thread (a page asking for
                # the variables of the stop just left) must not wait for an answer forever.
                for rid in orphans:
                    self._respond(rid, error=("not_stopped", "thread %r is not stopped" % (ident,)))
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
                self.update_slow()
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
            self.update_slow()
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
            self.update_slow()
        stop, line, rid, _, hook_line = t
        body = err = None
        try:
            set_frame_line(frame, line)
            body = {"line": frame.f_lineno}
        except (ValueError, Warning) as exc:
            err = ("invalid_location", "Jump failed: %s" % exc)
            try:
                frame.f_lineno = hook_line  # back where the thread stopped
            except ValueError:
                pass
        self.after_jump(ident, frame)
        stop.frames[0] = (frame, None)
        stop.in_callback = True
        stop.hook = False
        self._respond(rid, body, error=err)
        self._serve(stop, announce=False)
        return True

    def after_jump(self, ident, frame):
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

    def _stopped_body(self, stop):
        body = {"thread": stop.ident, "thread_name": _thread_name(stop.ident), "reason": stop.reason}
        if stop.frames:
            frame = stop.frames[0][0]
            body["frame"] = inspection.frame_dict(frame, stop.line_of(0))
        if stop.bp_ids:
            body["breakpoints"] = stop.bp_ids
        if stop.retval is not MISSING:
            body["return_value"] = safe_repr(stop.retval, 1000)
            body["return_value_short"] = inspection.short_repr(stop.retval)
        if stop.exc is not None:
            body["exception"] = inspection.format_exception(stop.exc)
        if stop.post_mortem:
            body["post_mortem"] = True
        body.update(stop.extra)
        return body

    def _command_loop(self, stop):
        while True:
            item = stop.queue.get()
            if item is None or self.detached:
                return None
            rid, resume, handler, args = item
            try:
                if resume:
                    action = handler(self, stop, args)
                    if rid is not None:
                        self._respond(rid, {})
                    return action
                body = handler(self, stop, args)
                if isinstance(body, tuple) and body[0] == "transfer":
                    return ("transfer", body[1], rid)
                self._respond(rid, body)
            except Exception as exc:
                self._respond_failure(rid, exc)

    def thread_events(self):
        """Announces the threads that started or exited since the last call."""
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

    def pause_thread(self, ident, reason="pause"):
        with self.lock:
            self.pauses[ident] = reason
            self.update_slow()
            ok = self.backend.pause(ident)
            if not ok:
                self.pauses.pop(ident, None)
                self.update_slow()
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


def _is_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 53
