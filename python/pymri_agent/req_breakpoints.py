"""Breakpoint requests: where a file or function name points, and the agent's breakpoint table.

`agent.bps` (id -> Breakpoint) and its indexes `agent.file_bps` / `agent.func_bps` are read by
the backends' callbacks; they change here, under `agent.lock`, followed by
`agent.bps_changed()`.
"""

import os
import sys

from . import inspection
from ._handlers import READER, RequestError
from .breakpoints import Breakpoint, BreakpointError, compile_condition
from .inspection import AGENT_DIR, MISSING, safe_getcwd

_IDENT_CHAIN = inspection.LazyRegex(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _known_files(agent):
    files = set()
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if isinstance(f, str) and f.endswith(".py"):
            files.add(f)
    for frame in list(sys._current_frames().values()):
        while frame is not None:
            files.add(frame.f_code.co_filename)
            frame = frame.f_back
    files.update(agent.file_bps)
    for stop in list(agent.stops.values()):
        for f, _ in stop.frames:
            files.add(f.f_code.co_filename)
    return {f for f in files if not f.startswith(AGENT_DIR)}


def resolve_file(agent, name):
    if not isinstance(name, str) or not name:
        raise RequestError("bad_request", "'file' must be a non-empty string")
    name = os.path.expanduser(name)
    known = _known_files(agent)
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
    for base in [safe_getcwd()] + [p for p in sys.path if isinstance(p, str)]:
        path = os.path.join(base or safe_getcwd(), name)
        if os.path.isfile(path):
            return resolve_file(agent, os.path.abspath(path))
    raise RequestError("not_found", "file %r not found (not loaded and not on sys.path)" % name)


def _executable_lines(agent, filename, lines):
    key = (filename, len(lines), hash(tuple(lines[:50])))
    cached = agent.exec_files_cache.get(filename)
    if cached is not None and cached[0] == key:
        return cached[1]
    result = None
    try:
        code = compile("".join(lines), filename, "exec", dont_inherit=True)
        result = inspection.code_tree_lines(code)
    except Exception:
        result = None
    agent.exec_files_cache[filename] = (key, result)
    return result


def _check_line(agent, filename, line):
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
    executable = _executable_lines(agent, filename, lines)
    if executable is None:
        return True, None
    if line in executable:
        return True, None
    return False, "line %d is not executable" % line


def resolve_function(agent, name, frame=None):
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
    code = agent.swapper.original(code)
    if agent.is_hidden_code(code):
        raise RequestError("invalid_location", "cannot break inside the agent")
    return code


def _register(agent, bp):
    bp.id = agent.next_bp
    agent.next_bp += 1
    agent.bps[bp.id] = bp


def _add_line_bp(agent, filename, line, args):
    verified, message = _check_line(agent, filename, line)
    if filename.startswith(AGENT_DIR):
        raise RequestError("invalid_location", "cannot break inside the agent")
    bp = Breakpoint(0, "line")
    bp.configure(args)
    bp.file = filename
    bp.line = line
    bp.verified = verified
    bp.message = message
    _register(agent, bp)
    lines = agent.file_bps.setdefault(filename, {})
    lines[line] = lines.get(line, []) + [bp]
    return bp


def _reported_line(code):
    """The line the program's pdb reports for a breakpoint on this function: its `def` line up
    to 3.12; from 3.13, the line of the instruction after RESUME (pdb's first executable line),
    where the breakpoint stops. Only reported: the stop is at the first line event either way."""
    if sys.version_info < (3, 13):
        return code.co_firstlineno
    import opcode
    raw = code.co_code
    resume, cache = opcode.opmap.get("RESUME"), opcode.opmap.get("CACHE", 0)
    for offset in range(0, len(raw) - 2, 2):
        if raw[offset] == resume:
            after = offset + 2
            while after < len(raw) and raw[after] == cache:  # RESUME's inline cache (3.15)
                after += 2
            for start, end, line in code.co_lines():
                if start <= after < end:
                    return line or code.co_firstlineno
            break
    return code.co_firstlineno


def _add_func_bp(agent, name, args, frame):
    code = resolve_function(agent, name, frame)
    bp = Breakpoint(0, "function")
    bp.configure(args)
    bp.function = name
    bp.code = code
    bp.file = code.co_filename
    bp.line = _reported_line(code)
    bp.verified = True
    existing = agent.func_bps.get(id(code))
    if existing:
        bp.first_line = existing[0].first_line
    _register(agent, bp)
    agent.func_bps[id(code)] = (existing or []) + [bp]
    return bp


def remove_breakpoint(agent, bp):
    """Drops `bp` from the agent's tables (agent.lock held)."""
    agent.bps.pop(bp.id, None)
    if bp.kind == "line":
        lines = agent.file_bps.get(bp.file, {})
        remaining = [b for b in lines.get(bp.line, []) if b is not bp]
        if remaining:
            lines[bp.line] = remaining
        else:
            lines.pop(bp.line, None)
        if not lines:
            agent.file_bps.pop(bp.file, None)
    else:
        cid = id(bp.code)
        remaining = [b for b in agent.func_bps.get(cid, []) if b is not bp]
        if remaining:
            agent.func_bps[cid] = remaining
        else:
            agent.func_bps.pop(cid, None)


def _frame_from_args(agent, args):
    if "thread" in args and args.get("thread") in agent.stops:
        stop = agent.stops[args["thread"]]
        return stop.frame_at(args.get("frame", 0))
    if "frame_id" in args:
        entry = agent.frame_ids.get(args["frame_id"])
        if entry and entry[0] in agent.stops:
            return agent.stops[entry[0]].frame_at(entry[1])
    return None


def req_set_breakpoint(agent, args):
    with agent.lock:
        if args.get("function"):
            bp = _add_func_bp(agent, args["function"], args, _frame_from_args(agent, args))
        else:
            if "file" not in args or "line" not in args:
                raise RequestError("bad_request", "set_breakpoint needs file+line or function")
            bp = _add_line_bp(agent, resolve_file(agent, args["file"]), args["line"], args)
        agent.bps_changed()
    return {"breakpoint": bp.to_dict()}


def _specs(args):
    specs = args.get("breakpoints", [])
    if not isinstance(specs, list):
        raise RequestError("bad_request", "'breakpoints' must be a list")
    return specs


def req_set_breakpoints(agent, args):
    filename = resolve_file(agent, args.get("file"))
    specs = _specs(args)
    out = []
    with agent.lock:
        for bp in [b for b in agent.bps.values() if b.kind == "line" and b.file == filename]:
            remove_breakpoint(agent, bp)
        for spec in specs:
            if not isinstance(spec, dict):
                raise RequestError("bad_request", "each breakpoint must be an object")
            try:
                bp = _add_line_bp(agent, filename, spec.get("line"), spec)
                out.append(bp.to_dict())
            except (RequestError, BreakpointError) as exc:
                out.append({"verified": False, "line": spec.get("line"), "message": str(exc)})
        agent.bps_changed()
    return {"breakpoints": out}


def req_set_function_breakpoints(agent, args):
    specs = _specs(args)
    frame = _frame_from_args(agent, args)
    out = []
    with agent.lock:
        for bp in [b for b in agent.bps.values() if b.kind == "function"]:
            remove_breakpoint(agent, bp)
        for spec in specs:
            try:
                if not isinstance(spec, dict):
                    raise RequestError("bad_request", "each breakpoint must be an object")
                bp = _add_func_bp(agent, spec.get("function"), spec, frame)
                out.append(bp.to_dict())
            except (RequestError, BreakpointError) as exc:
                out.append({"verified": False, "function": spec.get("function") if isinstance(spec, dict) else None,
                            "message": str(exc)})
        agent.bps_changed()
    return {"breakpoints": out}


def req_update_breakpoint(agent, args):
    if sys.version_info >= (3, 13) and isinstance(args.get("condition"), str):
        compile_condition(args["condition"])  # pdb 3.13+'s order: before the breakpoint's number
    with agent.lock:
        bp = agent.bps.get(args.get("id"))
        if bp is None:
            raise RequestError("no_such_breakpoint", "no breakpoint %r" % (args.get("id"),))
        bp.configure(args, partial=True)
        agent.bps_changed()
    return {"breakpoint": bp.to_dict()}


def _victims(agent, args):
    if args.get("all"):
        return list(agent.bps.values())
    if "ids" in args:
        ids = args["ids"]
        if not isinstance(ids, list):
            raise RequestError("bad_request", "'ids' must be a list")
        victims = []
        for i in ids:
            if i not in agent.bps:
                raise RequestError("no_such_breakpoint", "no breakpoint %r" % (i,))
            victims.append(agent.bps[i])
        return victims
    if "file" in args:
        filename = resolve_file(agent, args["file"])
        victims = [b for b in agent.bps.values() if b.kind == "line" and b.file == filename
                   and ("line" not in args or b.line == args["line"])]
        if not victims:
            raise RequestError("no_such_breakpoint", "no breakpoint at %s:%s" % (filename, args.get("line", "*")))
        return victims
    raise RequestError("bad_request", "clear_breakpoints needs ids, file[+line] or all")


def req_clear_breakpoints(agent, args):
    with agent.lock:
        victims = _victims(agent, args)
        for bp in victims:
            remove_breakpoint(agent, bp)
        agent.bps_changed()
    return {"removed": [bp.to_dict() for bp in victims]}


def req_list_breakpoints(agent, args):
    with agent.lock:
        return {"breakpoints": [agent.bps[i].to_dict() for i in sorted(agent.bps)]}


def req_set_exception_filters(agent, args):
    filters = args.get("filters", [])
    if not isinstance(filters, list) or any(f not in ("raised", "uncaught") for f in filters):
        raise RequestError("bad_request", "filters must be a list of 'raised'/'uncaught'")
    with agent.lock:
        agent.exc_filters = set(filters)
        if "uncaught" in agent.exc_filters:
            agent.install_excepthooks()
        agent.update_slow()
        agent.backend.exception_filters_changed()
    return {"filters": sorted(agent.exc_filters)}


REQUESTS = {
    "set_breakpoint": (READER, req_set_breakpoint),
    "set_breakpoints": (READER, req_set_breakpoints),
    "set_function_breakpoints": (READER, req_set_function_breakpoints),
    "update_breakpoint": (READER, req_update_breakpoint),
    "clear_breakpoints": (READER, req_clear_breakpoints),
    "list_breakpoints": (READER, req_list_breakpoints),
    "set_exception_filters": (READER, req_set_exception_filters),
}
