"""Inspection requests: source, a stopped frame's arguments, return value, exception, scopes
and variables (references into them live in `agent.refs`, dropped when the thread resumes)."""

from . import inspection
from ._handlers import READER, STOPPED, RequestError
from .inspection import MISSING, safe_items, safe_repr, type_name
from .req_breakpoints import resolve_file


def req_source(agent, args):
    frame = None
    line = None
    if "file" in args:
        filename = resolve_file(agent, args["file"])
    else:
        stop = agent.target_stop(args)
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
            "breakpoints": sorted(agent.file_bps.get(filename, {}))}
    if line is not None:
        body["current"] = line
    return body


def req_args(agent, stop, args):
    frame = stop.selected_frame(args)
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


def req_retval(agent, stop, args):
    if stop.retval is MISSING:
        raise RequestError("bad_state", "not stopped at a return")
    return {"value": safe_repr(stop.retval, 10000), "type": type_name(stop.retval)}


def req_exception_info(agent, stop, args):
    if stop.exc is None:
        raise RequestError("bad_state", "not stopped at an exception")
    body = inspection.format_exception(stop.exc)
    body["post_mortem"] = stop.post_mortem
    return body


def req_scopes(agent, stop, args):
    frame = stop.selected_frame(args)
    if frame is None:
        return {"scopes": []}
    scopes = [{"name": "Locals", "ref": agent.refs.add(stop.ident, "locals", frame, frame)}]
    if frame.f_locals is not frame.f_globals:
        scopes.append({"name": "Globals", "ref": agent.refs.add(stop.ident, "globals", frame, frame)})
    return {"scopes": scopes}


def _var(agent, stop, name, value, frame, evaluate_name):
    d = {"name": name, "value": safe_repr(value), "type": type_name(value), "ref": 0}
    if evaluate_name is not None:
        d["evaluate_name"] = evaluate_name
    if inspection.is_expandable(value):
        d["ref"] = agent.refs.add(stop.ident, "value", value, frame, evaluate_name)
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            try:
                d["count"] = len(value)
            except Exception:
                pass
    return d


def _reference(agent, stop, args):
    item = agent.refs.get(args.get("ref"))
    if item is None or item[0] != stop.ident:
        raise RequestError("no_such_reference", "unknown variables reference %r" % (args.get("ref"),))
    return item


def req_variables(agent, stop, args):
    owner, kind, obj, frame, ename = _reference(agent, stop, args)
    if kind == "locals":
        entries = [(k, v, k) for k, v in safe_items(frame.f_locals)]
        if stop.retval is not MISSING and stop.frames and frame is stop.frames[0][0]:
            entries.insert(0, ("(return)", stop.retval, None))
    elif kind == "globals":
        entries = [(k, v, k) for k, v in safe_items(frame.f_globals)]
    else:
        entries = [(name, v, (ename + suffix) if ename and suffix else None)
                   for name, v, _, suffix in inspection.children(obj)]
    total = len(entries)
    start = args.get("start", 0) or 0
    count = args.get("count") or total
    out = [_var(agent, stop, n, v, frame, e) for n, v, e in entries[start:start + count]]
    return {"variables": out, "total": total}


def _assign(kind, obj, frame, name, value):
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


def req_set_variable(agent, stop, args):
    owner, kind, obj, frame, ename = _reference(agent, stop, args)
    name = args.get("name")
    source = args.get("value")
    if not isinstance(name, str) or not isinstance(source, str):
        raise RequestError("bad_request", "'name' and 'value' must be strings")
    body, value = inspection.evaluate(frame, source, "eval", agent.capture)
    if "exception" in body:
        raise RequestError("eval_error", body["exception"]["text"])
    try:
        _assign(kind, obj, frame, name, value)
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError("eval_error", "%s: %s" % (type(exc).__name__, exc))
    return _var(agent, stop, name, value, frame, None)


REQUESTS = {
    "source": (READER, req_source),
    "args": (STOPPED, req_args),
    "retval": (STOPPED, req_retval),
    "exception_info": (STOPPED, req_exception_info),
    "scopes": (STOPPED, req_scopes),
    "variables": (STOPPED, req_variables),
    "set_variable": (STOPPED, req_set_variable),
}
