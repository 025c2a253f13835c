"""Evaluation and inspection in a frame of a stopped thread: eval/exec with write-back of
locals, captured output, bounded reprs, variables with references, completion, source."""

import builtins
import keyword
import os
import reprlib
import sys
import threading
import types

PY313 = sys.version_info >= (3, 13)
AGENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# pdb's names for the code the user types: `p`'s expression is `<string>` (pdb evals a string),
# any other line `<stdin>`, `interact`'s `<console>`. Warnings and tracebacks show them.
EXPR_FILENAME = "<string>"
STMT_FILENAME = "<stdin>"
CONSOLE_FILENAME = "<console>"


_RUNNERS = {}  # filename -> run(f, code, g, loc), made at first use
_RUNNER_CODES = set()


def run_typed(f, code, g, loc):
    """`f(code, g, loc)` (eval or exec) for code compiled under one of the names above, called
    from a frame of the same name: a warning whose stacklevel reaches past the evaluated code
    names what the user typed, not the agent's frame that evaluates it."""
    name = code.co_filename
    run = _RUNNERS.get(name)
    if run is None:
        ns = {}
        exec(compile("def run(f, code, g, loc): return f(code, g, loc)\n", name, "exec"), ns)
        run = _RUNNERS[name] = ns["run"]
        _RUNNER_CODES.add(run.__code__)
    return run(f, code, g, loc)
DEFAULT_MAX_LENGTH = 100000

_get_ident = threading.get_ident


class LazyRegex(object):
    """A pattern compiled at its first use: an attach waits for the agent's imports, and `re`
    is not needed to reach the first stop."""

    def __init__(self, pattern):
        self.pattern = pattern
        self._compiled = None

    def __getattr__(self, name):
        if self._compiled is None:
            import re
            self._compiled = re.compile(self.pattern)
        return getattr(self._compiled, name)


# ---------------------------------------------------------------------------------------------
# Frames


def frame_line(frame):
    """The frame's line. An instruction the compiler left without a location (such as 3.11's
    loop-closing jump after an `if`) has none, and the interpreter may stop there, e.g. to run
    the pending call of an attach: such a frame is on the line of the code before it."""
    line = frame.f_lineno
    if line is not None:
        return line
    code = frame.f_code
    lasti = frame.f_lasti
    line = code.co_firstlineno
    for start, _, ln in code.co_lines():
        if start > lasti:
            break
        if ln is not None:
            line = ln
    return line


def frame_dict(frame, line):
    """A frame as the protocol shows it (`stopped`, `threads`, `stack`)."""
    code = frame.f_code
    return {"file": code.co_filename, "line": line, "function": code.co_name,
            "module": frame.f_globals.get("__name__")}


def safe_items(mapping):
    """A namespace's items, or none if the mapping (a program's object) fails."""
    try:
        return list(mapping.items())
    except Exception:
        return []


def safe_getcwd():
    try:
        return os.getcwd()
    except OSError:
        return ""


def locals_to_fast(frame):
    """Make writes to frame.f_locals visible to the running code (CPython < 3.13)."""
    # Never read frame.f_locals here: before 3.13 that re-copies the fast locals over the dict.
    if PY313 or not frame.f_code.co_flags & 0x0001:  # CO_OPTIMIZED: a function frame
        return
    try:
        import ctypes
        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# Output capture: one proxy per standard stream, installed once; writes from a capturing thread
# go to its buffer, everything else to the original stream.


class _StreamRouter(object):
    def __init__(self, target, captures, name):
        object.__setattr__(self, "_pymri_target", target)
        object.__setattr__(self, "_pymri_captures", captures)
        object.__setattr__(self, "_pymri_name", name)

    def _pymri_sink(self):
        """The capturing thread's buffer for this stream, or None: a list shared by both
        streams, or a dict of one sink per stream name (`pymri exec` keeps them apart)."""
        buf = self._pymri_captures.get(_get_ident())
        if type(buf) is dict:
            return buf.get(self._pymri_name)
        return buf

    def write(self, s):
        buf = self._pymri_sink()
        if buf is not None:
            buf.append(str(s))
            return len(s)
        return self._pymri_target.write(s)

    def writelines(self, lines):
        buf = self._pymri_sink()
        if buf is not None:
            for s in lines:
                buf.append(str(s))
            return None
        return self._pymri_target.writelines(lines)

    def flush(self):
        if _get_ident() in self._pymri_captures:
            return None
        return self._pymri_target.flush()

    def __getattr__(self, name):
        return getattr(self._pymri_target, name)

    def __setattr__(self, name, value):
        setattr(self._pymri_target, name, value)

    def __iter__(self):
        return iter(self._pymri_target)


class OutputCapture(object):
    def __init__(self):
        self.captures = {}
        self._routers = {}
        self._lock = threading.Lock()

    def _ensure(self):
        for name in ("stdout", "stderr"):
            current = getattr(sys, name, None)
            if current is None:
                continue  # no stream (e.g. a daemon): print() is a no-op, leave it so
            if isinstance(current, _StreamRouter) and current._pymri_captures is self.captures:
                continue
            router = _StreamRouter(current, self.captures, name)
            self._routers[name] = router
            setattr(sys, name, router)

    def start(self, sinks=None):
        """Captures the calling thread's writes: into a new list (returned), or into `sinks`,
        {"stdout": sink, "stderr": sink}, objects with an `append(text)`."""
        with self._lock:
            self._ensure()
            buf = [] if sinks is None else sinks
            self.captures[_get_ident()] = buf
            return buf

    def stop(self):
        self.captures.pop(_get_ident(), None)

    def uninstall(self):
        with self._lock:
            for name, router in self._routers.items():
                if getattr(sys, name, None) is router:
                    setattr(sys, name, router._pymri_target)
            self._routers.clear()
            self.captures.clear()


# ---------------------------------------------------------------------------------------------
# Reprs


class _BoundedRepr(reprlib.Repr):
    def __init__(self, maxstring=200):
        reprlib.Repr.__init__(self)
        self.maxstring = maxstring
        self.maxother = maxstring
        self.maxlong = 120
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 30
        self.maxarray = 30
        self.maxdict = 20
        self.maxlevel = 4


_short_repr = _BoundedRepr()


def safe_repr(value, maxlen=200):
    try:
        if maxlen == 200:
            text = _short_repr.repr(value)
        else:
            text = _BoundedRepr(maxlen).repr(value)
    except Exception as exc:
        text = "<repr failed: %s>" % _exc_line(exc)
    if len(text) > maxlen * 4:
        text = text[: maxlen * 4] + "..."
    return text


def short_repr(value):
    """pdb's form of a return value in a location (`->...`): `reprlib.repr`, which abbreviates
    long strings, containers and other reprs."""
    try:
        return reprlib.repr(value)
    except Exception as exc:
        return "<repr failed: %s>" % _exc_line(exc)


def full_repr(value, max_length=DEFAULT_MAX_LENGTH, pretty=False):
    try:
        if pretty:
            import pprint
            text = pprint.pformat(value)
        else:
            text = repr(value)
    except Exception as exc:
        return "<repr failed: %s>" % _exc_line(exc), False
    if max_length and len(text) > max_length:
        return text[:max_length], True
    return text, False


def type_name(value):
    t = type(value)
    mod = getattr(t, "__module__", "")
    if mod in ("builtins", None, ""):
        return t.__qualname__
    return "%s.%s" % (mod, t.__qualname__)


def _traceback():
    # Imported on first use: with its own imports (_colorize, inspect, dataclasses...) it would
    # be the largest part of the agent's start-up, which an attach waits for.
    import traceback
    return traceback


def format_exc():
    return _traceback().format_exc()


def _exc_line(exc):
    """pdb's one line for an exception: the last of `format_exception_only` (for a SyntaxError,
    `SyntaxError: invalid syntax` without the location and caret before it)."""
    lines = _traceback().format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else type_name(exc)


def _agent_entry(tb):
    code = tb.tb_frame.f_code
    return code.co_filename.startswith(AGENT_DIR) or code in _RUNNER_CODES


def without_agent(tb):
    """The traceback `tb` without the agent's entries, wherever they are: an exception raised
    while a thread waits at a stop (a signal handler's) went through the agent's frames on its
    way into the program. A new chain: the exception's own is left as it is."""
    entries = []
    while tb is not None:
        if not _agent_entry(tb):
            entries.append(tb)
        tb = tb.tb_next
    out = None
    for entry in reversed(entries):
        out = types.TracebackType(out, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return out


def format_exception(exc, skip_agent=True):
    """Exception text as pdb users expect, without the agent's own frames."""
    tb = exc.__traceback__
    if skip_agent:
        tb = without_agent(tb)
    lines = _traceback().format_exception(type(exc), exc, tb)
    return {
        "type": type_name(exc),
        "message": _safe_str(exc),
        "text": _exc_line(exc),
        "traceback": "".join(lines),
    }


def _safe_str(value):
    try:
        return str(value)
    except Exception:
        return "<str failed>"


# ---------------------------------------------------------------------------------------------
# Evaluation


def _compile_mode(source, mode):
    if mode in ("eval", "pprint", "str"):
        return compile(source, EXPR_FILENAME, "eval"), True
    if mode == "exec":
        return compile(source + "\n", STMT_FILENAME, "exec"), False
    # auto: an expression if it is one, else statements
    try:
        return compile(source, STMT_FILENAME, "eval"), True
    except SyntaxError:
        return compile(source + "\n", STMT_FILENAME, "exec"), False


def evaluate(frame, source, mode, capture, globals_=None, locals_=None, max_length=DEFAULT_MAX_LENGTH):
    """Evaluate or execute `source` in `frame`. Returns (response body dict, value or missing)."""
    body = {}
    value = _MISSING
    try:
        code, is_expr = _compile_mode(source, mode)
    except SyntaxError as exc:
        body["exception"] = format_exception(exc)
        body["output"] = ""
        return body, value
    if frame is not None:
        g = frame.f_globals if globals_ is None else globals_
        loc = frame.f_locals if locals_ is None else locals_
    else:
        g = globals_ if globals_ is not None else sys.modules["__main__"].__dict__
        loc = locals_ if locals_ is not None else g
    buf = capture.start()
    try:
        try:
            if is_expr:
                value = run_typed(eval, code, g, loc)
            else:
                run_typed(exec, code, g, loc)
        except BaseException as exc:  # never let it reach the program
            body["exception"] = format_exception(exc)
    finally:
        capture.stop()
        if frame is not None and locals_ is None and not PY313:
            locals_to_fast(frame)
    body["output"] = "".join(buf)
    if value is not _MISSING and "exception" not in body:
        if mode == "auto" and value is None:
            pass
        elif mode == "str":
            text = _safe_str(value)
            if max_length and len(text) > max_length:
                text, body["truncated"] = text[:max_length], True
            body["result"] = text
        else:
            text, trunc = full_repr(value, max_length, pretty=(mode == "pprint"))
            body["result"] = text
            if trunc:
                body["truncated"] = True
        if "result" in body:
            body["type"] = type_name(value)
    return body, value


class _Missing(object):
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()
MISSING = _MISSING


def whatis(value):
    func = getattr(value, "__func__", None)
    code = getattr(func, "__code__", None)
    if code is not None:
        return "Method %s" % code.co_name
    code = getattr(value, "__code__", None)
    if code is not None:
        return "Function %s" % code.co_name
    if isinstance(value, type):
        return "Class %s.%s" % (value.__module__, value.__qualname__)
    return str(type(value))


# ---------------------------------------------------------------------------------------------
# Completion

_IDENT_CHAIN = LazyRegex(r"([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\.([\w]*)$")
_LAST_NAME = LazyRegex(r"([A-Za-z_][\w]*)?$")


def completions(text, globals_, locals_):
    """Candidates completing the end of `text`: returns (start offset, sorted matches)."""
    m = _IDENT_CHAIN.search(text)
    if m:
        expr, prefix = m.group(1), m.group(2)
        start = m.start(2)
        # Only plain dotted names are evaluated (attribute lookups on names), like rlcompleter.
        parts = expr.split(".")
        try:
            if parts[0] in locals_:
                obj = locals_[parts[0]]
            elif parts[0] in globals_:
                obj = globals_[parts[0]]
            else:
                obj = getattr(builtins, parts[0])
            for p in parts[1:]:
                obj = getattr(obj, p)
            names = set(dir(obj))
        except Exception:
            return start, []
        cls = getattr(obj, "__class__", None)
        if cls is not None:
            try:
                names.update(dir(cls))
            except Exception:
                pass
        if not prefix.startswith("_"):
            names = {n for n in names if not n.startswith("_")}
        elif not prefix.startswith("__"):
            names = {n for n in names if not n.startswith("__")}
        return start, sorted(n for n in names if n.startswith(prefix))
    m = _LAST_NAME.search(text)
    prefix = m.group(1) or ""
    start = m.start(1) if m.group(1) else len(text)
    names = set()
    for ns in (locals_, globals_, builtins.__dict__):
        try:
            names.update(k for k in ns.keys() if isinstance(k, str))
        except Exception:
            pass
    names.update(keyword.kwlist)
    if not prefix.startswith("_"):
        names = {n for n in names if not n.startswith("_")}
    return start, sorted(n for n in names if n.startswith(prefix))


# ---------------------------------------------------------------------------------------------
# Source


def getlines(filename, module_globals=None):
    try:
        import linecache  # before 3.13 it imports tokenize and re, which attaching does not need
        return linecache.getlines(filename, module_globals)
    except Exception:
        return []


def code_line_range(code):
    """(first, last) line numbers spanned by a code object."""
    first = code.co_firstlineno
    last = first
    for ln in code_lines(code):
        if ln > last:
            last = ln
    return first, last


def code_lines(code):
    if hasattr(code, "co_lines"):
        return {ln for (_, _, ln) in code.co_lines() if ln is not None}
    import dis
    return {ln for (_, ln) in dis.findlinestarts(code)}


def code_tree_lines(code):
    """Lines of `code` and of every code object nested in it."""
    out = set()
    todo = [code]
    while todo:
        c = todo.pop()
        out |= code_lines(c)
        todo.extend(k for k in c.co_consts if type(k) is type(c))
    return out


def function_range(code, lines):
    """Line range of the function owning `code`, for `ll`."""
    if code.co_name == "<module>":
        return 1, len(lines)
    first, last = code_line_range(code)
    try:
        import inspect
        block = inspect.getblock(lines[first - 1:])
        last = max(last, first + len(block) - 1)
    except Exception:
        pass
    return first, last


# ---------------------------------------------------------------------------------------------
# Variables with references (DAP)


class VarRefs(object):
    """References to expandable values, valid while their thread stays stopped."""

    def __init__(self):
        self._next = 1
        self._items = {}

    def add(self, owner, kind, obj, frame=None, evaluate_name=None):
        ref = self._next
        self._next += 1
        self._items[ref] = (owner, kind, obj, frame, evaluate_name)
        return ref

    def get(self, ref):
        return self._items.get(ref)

    def drop_owner(self, owner):
        for ref in [r for r, v in self._items.items() if v[0] == owner]:
            del self._items[ref]

    def clear(self):
        self._items.clear()


_SCALARS = (int, float, complex, str, bytes, bytearray, bool, type(None), range)


def is_expandable(value):
    if isinstance(value, _SCALARS):
        return False
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        try:
            return len(value) > 0
        except Exception:
            return False
    try:
        d = getattr(value, "__dict__", None)
    except Exception:
        d = None
    if isinstance(d, dict) or type(d).__name__ == "mappingproxy":
        return len(d) > 0
    return bool(_slot_names(value))


def _slot_names(value):
    names = []
    try:
        for klass in type(value).__mro__:
            slots = klass.__dict__.get("__slots__", ())
            if isinstance(slots, str):
                slots = (slots,)
            for s in slots:
                if s not in ("__dict__", "__weakref__") and s not in names:
                    names.append(s)
    except Exception:
        pass
    return names


def children(value):
    """List of (name, child value, setter key, evaluate suffix) for an expandable value."""
    out = []
    if isinstance(value, dict):
        for k, v in list(value.items()):
            kr = safe_repr(k, 120)
            out.append((kr, v, ("item", k), "[%s]" % kr))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(list(value)):
            out.append((str(i), v, ("item", i) if isinstance(value, list) else None, "[%d]" % i))
    elif isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            items.sort()
        except Exception:
            pass
        for i, v in enumerate(items):
            out.append((str(i), v, None, None))
    else:
        try:
            d = getattr(value, "__dict__", None)
        except Exception:
            d = None
        if d is not None:
            try:
                items = sorted(((k, v) for k, v in d.items() if isinstance(k, str)), key=lambda kv: kv[0])
            except Exception:
                items = []
            for k, v in items:
                out.append((k, v, ("attr", k), "." + k))
        for s in _slot_names(value):
            try:
                v = getattr(value, s)
            except AttributeError:
                continue
            out.append((s, v, ("attr", s), "." + s))
    return out
