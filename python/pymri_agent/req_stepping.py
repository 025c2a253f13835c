"""Requests that resume a stopped thread (continue, the steps) or move it (jump).

They run in the stopped thread and return the action `Agent._serve` carries out; the stepping
itself (`StepState`, the backends' step callbacks) is the engine's.
"""

from ._handlers import RESUME, STOPPED, RequestError
from ._stepping import set_frame_line


def req_continue(agent, stop, args):
    return ("continue",)


def req_step(agent, stop, args):
    return ("step", None, bool(args.get("stop_at_return", True)))


def req_next(agent, stop, args):
    return ("next", None, bool(args.get("stop_at_return", True)))


def req_step_out(agent, stop, args):
    return ("step_out",)


def req_until(agent, stop, args):
    line = args.get("line")
    if line is not None and (not isinstance(line, int) or isinstance(line, bool)):
        raise RequestError("bad_request", "'line' must be an integer")
    if line is not None and stop.frames and line <= stop.line_of(0):
        raise RequestError("invalid_location", "\"until\" line number is smaller than current line number")
    return ("until", line)


def req_jump(agent, stop, args):
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
        set_frame_line(frame, line)
    except (ValueError, Warning) as exc:
        raise RequestError("invalid_location", "Jump failed: %s" % exc)
    stop.frames[0] = (frame, None)
    agent.after_jump(stop.ident, frame)
    return {"line": frame.f_lineno}


REQUESTS = {
    "continue": (RESUME, req_continue),
    "step": (RESUME, req_step),
    "next": (RESUME, req_next),
    "step_out": (RESUME, req_step_out),
    "until": (RESUME, req_until),
    "jump": (STOPPED, req_jump),
}
