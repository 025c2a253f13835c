"""Trace requests (`pymri trace`): start a trace session's hooks, end it with its summary.

One trace at a time. Its logpoints are log breakpoints of the agent's table, remembered by id so
that `_hits` sends their output as `trace` events and `trace_stop` removes them. The hooks also
go when the agent detaches (a lost connection included), and a program that exits while traced
sends its summary first.
"""

import atexit

from . import req_breakpoints
from ._handlers import READER, RequestError
from .breakpoints import BreakpointError
from .tracing import Tracer

MAX_LOGPOINTS = 64
MAX_CALL_SPECS = 64
MAX_TYPES = 64


def _strings(args, key, limit):
    value = args.get(key, [])
    if not isinstance(value, list) or len(value) > limit \
            or not all(isinstance(v, str) and v and len(v) <= 1000 for v in value):
        raise RequestError("bad_request", "%r must be a list of at most %d non-empty strings" % (key, limit))
    return value


def req_trace_start(agent, args):
    if getattr(agent, "tracer", None) is not None:
        raise RequestError("bad_state", "a trace is already running")
    types = _strings(args, "types", MAX_TYPES)
    calls = _strings(args, "calls", MAX_CALL_SPECS)
    logpoints = args.get("logpoints", [])
    if not isinstance(logpoints, list) or len(logpoints) > MAX_LOGPOINTS:
        raise RequestError("bad_request", "'logpoints' must be a list of at most %d" % MAX_LOGPOINTS)
    max_rate = args.get("max_rate", 10)
    if not isinstance(max_rate, int) or isinstance(max_rate, bool) or not 0 <= max_rate <= 10 ** 6:
        raise RequestError("bad_request", "'max_rate' must be an integer from 0 to 1000000")
    for spec in calls:
        if spec.count(":") > 1 or not spec.rpartition(":")[2]:
            raise RequestError("bad_request", "%r is not MODULE:QUALNAME or QUALNAME" % spec)
    tracer = Tracer(agent, exceptions=bool(args.get("exceptions")), types=types, calls=calls,
                    args=bool(args.get("args")), max_rate=max_rate)
    placed = []
    with agent.lock:
        try:
            for lp in logpoints:
                if not isinstance(lp, dict) or not isinstance(lp.get("line"), int) \
                        or not isinstance(lp.get("format"), str):
                    raise RequestError("bad_request", "a logpoint is {file, line, format}")
                filename = req_breakpoints.resolve_file(agent, lp.get("file"))
                bp = req_breakpoints._add_line_bp(agent, filename, lp["line"],
                                                  {"log_message": lp["format"]})
                placed.append(bp)
                tracer.log_bps[bp.id] = [bp.file, bp.line, lp["format"], 0]
        except BreakpointError as exc:
            _remove(agent, placed)
            raise RequestError("invalid_logpoint", str(exc))
        except Exception:
            _remove(agent, placed)
            raise
        agent.tracer = tracer
        # The logpoints first: on 3.9-3.11 their tracers (frames already running) are the ones
        # the trace's own hooks leave in place, and restore when they go.
        if placed:
            agent.bps_changed()
        try:
            tracer.start()
        except Exception as exc:
            agent.tracer = None
            _remove(agent, placed)
            agent.bps_changed()
            raise RequestError("internal", "cannot install the trace hooks: %s" % exc)
    agent.detach_callbacks.append(lambda: _end(agent, tracer))
    atexit.register(_at_exit, agent, tracer)
    body = tracer.info()
    body["logpoints"] = [{"file": bp.file, "line": bp.line, "verified": bool(bp.verified),
                          "message": bp.message} for bp in placed]
    return body


def _remove(agent, bps):
    for bp in bps:
        req_breakpoints.remove_breakpoint(agent, bp)


def _end(agent, tracer):
    """Removes the trace's hooks and logpoints; returns its summary."""
    try:
        atexit.unregister(_at_exit)
    except Exception:
        pass
    # The hooks first: they give back the tracers they replaced, which the logpoints' removal
    # then takes away.
    summary = tracer.stop()
    with agent.lock:
        if getattr(agent, "tracer", None) is tracer:
            agent.tracer = None
        mine = [agent.bps[i] for i in tracer.log_bps if i in agent.bps]
        _remove(agent, mine)
        if mine and not agent.detached:
            agent.bps_changed()
    return summary


def _at_exit(agent, tracer):
    """The program exits while traced: its summary goes out before the agent detaches."""
    summary = _end(agent, tracer)
    agent.send_event("trace", summary)


def req_trace_stop(agent, args):
    tracer = getattr(agent, "tracer", None)
    if tracer is None:
        raise RequestError("bad_state", "no trace is running")
    return _end(agent, tracer)


REQUESTS = {
    "trace_start": (READER, req_trace_start),
    "trace_stop": (READER, req_trace_stop),
}
