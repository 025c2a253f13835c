"""Evaluation requests, run in the stopped thread: expressions, completions, the interactive
console (`interact`), with the program's output captured into the response."""

import sys

from . import inspection
from ._handlers import STOPPED, RequestError
from .inspection import MISSING, safe_items


def req_evaluate(agent, stop, args):
    expr = args.get("expression")
    if not isinstance(expr, str):
        raise RequestError("bad_request", "'expression' must be a string")
    mode = args.get("mode", "auto")
    if mode not in ("auto", "eval", "exec", "pprint", "str"):
        raise RequestError("bad_request", "bad mode %r" % (mode,))
    frame = stop.selected_frame(args)
    max_length = args.get("max_length", inspection.DEFAULT_MAX_LENGTH)
    body, value = inspection.evaluate(frame, expr, mode, agent.capture, max_length=max_length)
    if value is not MISSING and "exception" not in body and args.get("want_ref") \
            and inspection.is_expandable(value):
        body["ref"] = agent.refs.add(stop.ident, "value", value, frame, expr)
    return body


def req_whatis(agent, stop, args):
    frame = stop.selected_frame(args)
    body, value = inspection.evaluate(frame, args.get("expression", ""), "eval", agent.capture)
    if "exception" in body:
        return body
    return {"text": inspection.whatis(value)}


def req_completions(agent, stop, args):
    frame = stop.selected_frame(args)
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


def req_interact(agent, stop, args):
    import codeop
    from collections import ChainMap
    action = args.get("action", "push")
    frame = stop.selected_frame(args)
    if action == "start":
        if frame is None:
            g = sys.modules["__main__"].__dict__
            ns = ChainMap({}, g)
        else:
            g = frame.f_globals
            ns = ChainMap(dict(safe_items(frame.f_locals)), g)
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
        code = codeop.compile_command(text, inspection.CONSOLE_FILENAME, "single")
    except (SyntaxError, OverflowError, ValueError) as exc:
        del buf[:]
        return {"more": False, "output": "", "exception": inspection.format_exception(exc)}
    if code is None:
        return {"more": True}
    del buf[:]
    out = agent.capture.start()
    body = {"more": False}
    try:
        try:
            inspection.run_typed(exec, code, g, ns)
        except BaseException as exc:
            body["exception"] = inspection.format_exception(exc)
    finally:
        agent.capture.stop()
    body["output"] = "".join(out)
    return body


REQUESTS = {
    "evaluate": (STOPPED, req_evaluate),
    "whatis": (STOPPED, req_whatis),
    "completions": (STOPPED, req_completions),
    "interact": (STOPPED, req_interact),
}
