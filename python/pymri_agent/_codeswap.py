"""Code-swap breakpoints: functions holding a breakpoint run an instrumented copy of their code.

Tracing (sys.settrace before 3.12) puts the interpreter on its slow path for every line of every
thread, whether or not a breakpoint is near. Instead, for a line breakpoint at FILE:LINE, the
functions whose code executes LINE get a copy of that code, compiled from the file's source,
which is identical except for a statement inserted just before the statement starting at LINE:

    plain:      if HOOK.hit():                      (conditions, hit counts, log messages are
                    HOOK.jump                         evaluated by the agent, like with tracing)
    inline:     if HOOK.slow:                        (one enabled breakpoint with a condition:
                    if HOOK.hit():                    the condition reads the fast locals natively,
                        HOOK.jump                     so a condition that is never true costs a
                else:                                 few bytecodes)
                    COUNTER.n += 1                    (3.9/3.10: TICK(), a C counter)
                    try:
                        if (CONDITION):
                            if HOOK.true():
                                HOOK.jump
                    except EXCEPTION:
                        HOOK.error()
    lambda:     lambda ...: HOOK.hitx() or BODY

`HOOK.jump` carries the first line of its scope (the `def` line): it runs only when the user asked
for `jump` at a stop in the hook, where the frame cannot jump (it is not in a trace callback). The
hook then returns True, the frame gets a local tracer, and the line event of `HOOK.jump` is where
the stop continues, in a real trace callback, and performs the jump.

HOOK, COUNTER and EXCEPTION are constants: the copy is compiled with unique placeholder strings
that are then replaced in `co_consts` by the agent's objects (the hook, the breakpoint's hit
counter, the `Exception` class). Nothing is added to the module's globals or to builtins, no
name is looked up, no bytecode is edited. The trade-off: these objects are visible in
`co_consts` (`dis`, code introspection) and the instrumented code cannot be marshalled.

Safety. The running code must be exactly what the current source compiles to: the file is
re-parsed (linecache) and the unmodified tree compiled with the same pipeline (`ast.parse` +
`compile(tree, co_filename, "exec", dont_inherit=True)`, the interpreter's optimisation level);
every code object reachable from the file's functions, frames and generators must then equal its
counterpart in every field (`co_code`, constants recursively, names, line and exception tables,
flags...). Otherwise (file edited since import, different compile flags, `-O` mismatch, code
compiled by another tool such as an assertion rewriter) the whole file keeps the tracing
mechanism.

A line is instrumented only when the copy provably fires exactly where a line event would: a
probe compile inserts a marker before the statement starting at LINE in every scope, and in every
code object executing LINE, each run of instructions of LINE must start with the marker and no
jump or exception handler may enter such a run elsewhere (this rejects loop headers, `with`
statements, lines inside multi-line statements that the interpreter revisits, `elif`/`except`
headers, comprehensions and any other construct a statement cannot precede). Lines executed by
no code object are "dead" (nothing can hit them). Anything else falls back to tracing.

Swapping. Function objects get `__code__` replaced (found with one `gc.get_objects()` pass plus a
walk of the file's modules for objects hidden from the collector by `gc.freeze()`); a parent code
that creates functions later gets a copy whose constants hold the instrumented child. Frames
already running the old code keep it: their parents' constant tuples are patched in place (so
closures they create later are instrumented), and the frames themselves are traced (3.9-3.11) or
covered by sys.monitoring (3.12+). Disabling or clearing restores the original code
objects; so does detach.
"""

import gc
import os
import sys
import types

from .inspection import code_lines, code_tree_lines, getlines

# Imported by _load() when code is first instrumented: an attach waits for the agent's imports,
# and reaching its first stop needs none of these.
ast = bisect = dis = weakref = None
_JUMP_OPS = _LOAD_CONST = _REJECTED_IN_CONDITIONS = None

CodeType = types.CodeType
FunctionType = types.FunctionType
PY310 = sys.version_info >= (3, 10)
PY311 = sys.version_info >= (3, 11)
PY314 = sys.version_info >= (3, 14)

_GEN_TYPES = {types.GeneratorType: ("gi_code", "gi_frame", "gi_running"),
              types.CoroutineType: ("cr_code", "cr_frame", "cr_running"),
              types.AsyncGeneratorType: ("ag_code", "ag_frame", "ag_running")}
_GEN_FLAGS = 0x20 | 0x80 | 0x100 | 0x200  # GENERATOR, COROUTINE, ITERABLE_COROUTINE, ASYNC_GENERATOR
_CO_OPTIMIZED = 0x01
_CO_HAS_DOCSTRING = 0x4000000  # 3.14+

_NO_FALLTHROUGH = {"JUMP_ABSOLUTE", "JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT",
                   "JUMP", "JUMP_NO_INTERRUPT", "RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS",
                   "RERAISE"}

_COMPARED_FIELDS = ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
                    "co_stacksize", "co_flags", "co_code", "co_names", "co_varnames",
                    "co_freevars", "co_cellvars", "co_filename", "co_name", "co_qualname",
                    "co_firstlineno", "co_exceptiontable")
_LINE_FIELD = "co_linetable" if PY310 else "co_lnotab"
_SIGNATURE_FIELDS = ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
                     "co_varnames", "co_freevars", "co_cellvars", "co_flags", "co_name",
                     "co_qualname", "co_firstlineno", "co_filename")


def _load():
    global ast, bisect, weakref, _JUMP_OPS, _LOAD_CONST, _REJECTED_IN_CONDITIONS, dis
    if dis is not None:
        return
    import ast as ast_module
    import bisect as bisect_module
    import dis as dis_module
    import weakref as weakref_module
    ast, bisect, weakref = ast_module, bisect_module, weakref_module
    _JUMP_OPS = set(dis_module.hasjrel) | set(dis_module.hasjabs) \
        | set(getattr(dis_module, "hasjump", ()))
    _LOAD_CONST = dis_module.opmap["LOAD_CONST"]
    _REJECTED_IN_CONDITIONS = tuple(getattr(ast, n) for n in (
        "Lambda", "ListComp", "SetComp", "DictComp", "GeneratorExp", "NamedExpr", "Yield",
        "YieldFrom", "Await", "Starred") if hasattr(ast, n))
    dis = dis_module  # last: the others are set once it is


_UNSET = object()


class SwapError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Runtime objects referenced from instrumented code


class Hook(object):
    """The object an instrumented line calls. `slow` forces the agent path (set while a thread
    steps or pauses, and forever once the hook is retired by a breakpoint change)."""
    __slots__ = ("slow", "retired", "agent", "file", "line", "bp", "key", "__weakref__")
    jump = None  # `HOOK.jump`: the statement whose line event completes a jump

    def __init__(self, agent, key, filename, line, bp=None):
        self.agent = agent
        self.key = key
        self.file = filename
        self.line = line
        self.bp = bp
        self.slow = False
        self.retired = False

    def hit(self):
        agent = self.agent
        if agent is not None:
            return agent.hook_hit(self, sys._getframe(1))
        return None

    def hitx(self):
        agent = self.agent
        if agent is not None:
            agent.hook_hit(self, sys._getframe(1), jump_ok=False)
        return None

    def true(self):
        agent = self.agent
        if agent is not None:
            return agent.hook_true(self, sys._getframe(1))
        return None

    def error(self):
        agent = self.agent
        if agent is not None:
            agent.hook_error(self, sys._getframe(1), sys.exc_info()[1])
        return None

    def __repr__(self):
        return "<pymri breakpoint hook %s:%s>" % (self.file, self.line)


# ---------------------------------------------------------------------------------------------
# Code object helpers


def _children(code):
    return [k for k in code.co_consts if type(k) is CodeType]


def _walk_paths(root):
    """{path: code} for a code tree; a path is the tuple of child ordinals from the root."""
    out = {}
    todo = [((), root)]
    while todo:
        path, code = todo.pop()
        out[path] = code
        for i, k in enumerate(_children(code)):
            todo.append((path + (i,), k))
    return out


def _code_key(code):
    return (code.co_name, code.co_firstlineno, getattr(code, "co_qualname", None))


def _const_equal(a, b, original, depth=0):
    if type(a) is CodeType:
        return type(b) is CodeType and _code_equal(original(a), b, original, depth + 1)
    if type(a) is not type(b):
        return False
    if isinstance(a, (float, complex)):
        return repr(a) == repr(b)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_const_equal(x, y, original, depth + 1) for x, y in zip(a, b))
    if isinstance(a, frozenset):
        return len(a) == len(b) and a == b
    try:
        return bool(a == b)
    except Exception:
        return False


def _code_equal(a, b, original, depth=0):
    """Running code `a` (its constants may hold our instrumented children) vs compiled `b`."""
    if depth > 200:
        return False
    for name in _COMPARED_FIELDS + (_LINE_FIELD,):
        if getattr(a, name, None) != getattr(b, name, None):
            return False
    ca, cb = a.co_consts, b.co_consts
    if len(ca) != len(cb):
        return False
    for x, y in zip(ca, cb):
        if not _const_equal(x, y, original, depth):
            return False
    return True


def _signature_equal(a, b):
    for name in _SIGNATURE_FIELDS:
        if getattr(a, name, None) != getattr(b, name, None):
            return False
    ka, kb = _children(a), _children(b)
    if [(k.co_name, k.co_firstlineno) for k in ka] != [(k.co_name, k.co_firstlineno) for k in kb]:
        return False
    if a.co_flags & _CO_OPTIMIZED and (not PY314 or a.co_flags & _CO_HAS_DOCSTRING):
        # the docstring slot: functions take __doc__ from co_consts[0]
        da = a.co_consts[:1]
        db = b.co_consts[:1]
        if len(da) != len(db) or (da and (type(da[0]) is not type(db[0]) or da[0] != db[0])):
            return False
    return True


def _line_of_offsets(code):
    """A function offset -> line (None: no line) for the instructions of `code`."""
    if PY310:
        starts, ends, lines = [], [], []
        for start, end, line in code.co_lines():
            starts.append(start)
            ends.append(end)
            lines.append(line)

        def line_of(offset):
            i = bisect.bisect_right(starts, offset) - 1
            if i < 0 or offset >= ends[i]:
                return None
            return lines[i]
        return line_of
    pairs = list(dis.findlinestarts(code))
    offs = [o for o, _ in pairs]
    lns = [ln for _, ln in pairs]

    def line_of(offset):
        i = bisect.bisect_right(offs, offset) - 1
        return lns[i] if i >= 0 else None
    return line_of


class _LineInfo(object):
    """Runs of consecutive instructions per line, jumps and handler targets, of one code object.

    A line event fires when execution enters a run from another line or by a backward jump;
    a forward jump inside a run fires none (on every version)."""
    __slots__ = ("runs", "jumps", "handlers", "consts", "fallthrough")

    def __init__(self, code):
        instrs = list(dis.get_instructions(code))
        line_of = _line_of_offsets(code)
        skip_until = -1
        if PY311:
            for ins in instrs:
                if ins.opname == "RESUME":
                    skip_until = ins.offset
                    break
        elif PY310 and instrs and instrs[0].opname == "GEN_START":
            skip_until = instrs[0].offset
        self.runs = {}  # line -> [(first Instruction, [offsets])]
        self.jumps = {}  # target -> [source offsets]
        self.handlers = set()
        self.fallthrough = set()  # offsets the previous instruction can fall through to
        prev = None
        current = None
        prev_op = None
        for ins in instrs:
            if ins.opcode in _JUMP_OPS and isinstance(ins.argval, int):
                self.jumps.setdefault(ins.argval, []).append(ins.offset)
                if ins.opname.startswith("SETUP_"):  # 3.9/3.10 handler blocks
                    self.handlers.add(ins.argval)
            if prev_op not in _NO_FALLTHROUGH:
                self.fallthrough.add(ins.offset)
            prev_op = ins.opname
            if ins.offset <= skip_until:
                prev = None
                continue
            ln = line_of(ins.offset)
            if ln is None:
                prev = None
                continue
            if ln != prev:
                current = (ins, [ins.offset])
                self.runs.setdefault(ln, []).append(current)
            else:
                current[1].append(ins.offset)
            prev = ln
        if PY311:
            try:
                for entry in dis.Bytecode(code).exception_entries:
                    self.handlers.add(entry.target)
            except Exception:
                pass
        self.consts = {k for k in code.co_consts if type(k) is str}

    def run_count(self, line):
        return len(self.runs.get(line, ()))

    def entries(self, offsets):
        """How many ways in at the start of a run (0: unreachable)."""
        start = offsets[0]
        return len(self.jumps.get(start, ())) + (start in self.fallthrough) + (start in self.handlers)

    def entered_midway(self, offsets):
        """Can a line event fire inside this run (a list of offsets), not at its start?

        3.10+: on entering from another line or by a backward jump. 3.9: only at the start of a
        line's range, or on a backward jump."""
        inside = set(offsets)
        for target in offsets[1:]:
            if PY310 and target in self.handlers:  # 3.9: handlers follow their block (forward)
                return True
            for source in self.jumps.get(target, ()):
                if source > target or (PY310 and source not in inside):
                    return True
        return False


# ---------------------------------------------------------------------------------------------
# AST instrumentation


def _is_docstring(stmt):
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
        and isinstance(stmt.value.value, str)


def _is_future(stmt):
    return isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"


def _locate(node, line, col, force=True):
    """Put `node` and its descendants on `line` (with force=False: those without a line yet)."""
    for sub in ast.walk(node):
        if "lineno" in sub._attributes and (force or getattr(sub, "lineno", None) is None):
            sub.lineno = line
            sub.end_lineno = line
            sub.col_offset = col
            sub.end_col_offset = col
    return node


class _Builder(object):
    """Inserts hooks before the statement starting at each wanted line, in every scope.

    Sites are numbered (line, k) in traversal order, so a probe build and a final build of the
    same source agree on them."""

    def __init__(self, lines, make_stmt, make_expr):
        self.lines = lines
        self.make_stmt = make_stmt
        self.make_expr = make_expr
        self.count = {}

    def _key(self, line):
        k = self.count.get(line, 0)
        self.count[line] = k + 1
        return (line, k)

    def module(self, tree):
        self.body(tree.body, frozenset(), True, 0, 1)
        return tree

    def body(self, stmts, excluded, scope_start, after, scope_line):
        out = []
        prev_end = after
        first = True
        for st in stmts:
            line = st.lineno
            hooked = False
            if line in self.lines and line not in excluded and line > prev_end \
                    and not _is_future(st) and not (first and scope_start and _is_docstring(st)):
                hooked = True
                new = self.make_stmt(line, self._key(line), st, scope_line)
                if new:
                    out.extend(new)
            self.stmt(st, excluded | {line} if hooked else excluded, scope_line)
            out.append(st)
            end = getattr(st, "end_lineno", None) or line
            prev_end = max(prev_end, end)
            first = False
        stmts[:] = out

    def stmt(self, st, excluded, scope_line):
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if isinstance(st, ast.ClassDef):
                self.lambdas([st.decorator_list, st.bases, st.keywords])
            else:
                self.lambdas([st.decorator_list, st.args, st.returns])
            first = min([st.lineno] + [d.lineno for d in st.decorator_list])  # co_firstlineno
            self.body(st.body, frozenset(), True, 0, first)
            return
        for _, value in ast.iter_fields(st):
            if isinstance(value, list) and value:
                head = value[0]
                if isinstance(head, ast.stmt):
                    self.body(value, excluded, False, st.lineno, scope_line)
                elif isinstance(head, ast.excepthandler):
                    for h in value:
                        self.lambdas(h.type)
                        self.body(h.body, excluded, False, h.lineno, scope_line)
                elif type(head).__name__ == "match_case":
                    for case in value:
                        self.lambdas([case.pattern, case.guard])
                        self.body(case.body, excluded, False, st.lineno, scope_line)
                else:
                    self.lambdas(value)
            elif isinstance(value, ast.AST):
                self.lambdas(value)

    def lambdas(self, node):
        if node is None:
            return
        if isinstance(node, list):
            for n in node:
                self.lambdas(n)
            return
        if not isinstance(node, ast.AST):
            return
        for sub in list(ast.walk(node)):
            if isinstance(sub, ast.Lambda) and sub.body.lineno in self.lines:
                line = sub.body.lineno
                new = self.make_expr(line, self._key(line), sub.body)
                if new is not None:
                    sub.body = new


def _attr_call(ph, method, line, col):
    return _locate(ast.Call(func=ast.Attribute(value=ast.Constant(value=ph), attr=method,
                                               ctx=ast.Load()), args=[], keywords=[]), line, col)


def _or_hook(ph, method, line, expr):
    """`PH.method() or EXPR`: the call returns None, so the value is EXPR's."""
    return ast.copy_location(
        ast.BoolOp(op=ast.Or(), values=[_attr_call(ph, method, line, expr.col_offset), expr]), expr)


def _stmt_call(ph, method, line, col):
    return _locate(ast.Expr(value=_attr_call(ph, method, line, col)), line, col)


def _if_call_jump(ph, method, line, col, jline):
    """`if PH.method(): PH.jump` with the body on line `jline`."""
    body = _locate(ast.Expr(value=ast.Attribute(value=ast.Constant(value=ph), attr="jump",
                                                ctx=ast.Load())), jline, 0)
    return _locate(ast.If(test=_attr_call(ph, method, line, col), body=[body], orelse=[]),
                   line, col, force=False)


def condition_inlinable(text):
    """Can `text` be compiled inside the function (same result as eval in the frame)?"""
    _load()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, _REJECTED_IN_CONDITIONS):
            return False
        name = None
        if isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.Attribute):
            name = node.attr
        if name is not None and (name in ("super", "__class__")
                                 or (name.startswith("__") and not name.endswith("__"))):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# In-place patching of constant tuples (frames that are running a parent code)


class _TuplePatcher(object):
    """Replaces an item of a code object's co_consts tuple in place.

    A frame already running a parent code loads its nested code objects from that tuple when it
    creates closures; patching the tuple is the only way to have them instrumented. This matters
    on 3.12+ too: sys.monitoring covers the original code, but evaluating a hot condition in a
    LINE callback costs several times the inline form (`pymri run` sets breakpoints at the entry
    stop, while the module code that defines every function is already running). Only code
    objects replace code objects, so LOAD_CONST's specialisations (mortal/immortal) stay valid.
    The layout (`tuple.__basicsize__` = offset of ob_item) is validated before each write."""

    def __init__(self):
        import ctypes
        self.ctypes = ctypes
        self.base = tuple.__basicsize__
        self.step = tuple.__itemsize__
        api = ctypes.pythonapi
        self.incref = api.Py_IncRef
        self.incref.argtypes = [ctypes.py_object]
        self.incref.restype = None
        self.decref = api.Py_DecRef
        self.decref.argtypes = [ctypes.py_object]
        self.decref.restype = None
        probe = (object(), object())
        if self._slot(probe, 1).value != id(probe[1]):
            raise SwapError("unexpected tuple layout")

    def _slot(self, tup, index):
        return self.ctypes.c_void_p.from_address(id(tup) + self.base + self.step * index)

    def set(self, tup, index, new):
        old = tup[index]
        slot = self._slot(tup, index)
        if slot.value != id(old):
            raise SwapError("unexpected tuple layout")
        self.incref(new)
        slot.value = id(new)
        self.decref(old)  # `old` stays alive: the caller holds it


def _make_patcher():
    if sys.implementation.name != "cpython":
        return None
    # Without the GIL a thread may read the slot while it is written.
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        return None
    try:
        return _TuplePatcher()
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# Per-file analysis


class _FileState(object):
    """Source and unmodified compile of one file; probe analyses cached per set of lines."""

    def __init__(self, filename, source):
        self.filename = filename
        self.source = source
        self.error = None
        self.paths = {}
        self.keys = {}
        self.info = {}
        self.analyses = {}
        try:
            tree = ast.parse(source, filename)
            root = compile(tree, filename, "exec", dont_inherit=True)
        except Exception as exc:
            self.error = "%s: %s" % (type(exc).__name__, exc)
            return
        self.paths = _walk_paths(root)
        for path, code in self.paths.items():
            self.keys.setdefault(_code_key(code), []).append(path)

    def line_info(self, path):
        info = self.info.get(path)
        if info is None:
            info = self.info[path] = _LineInfo(self.paths[path])
        return info

    def match(self, code, original):
        for path in self.keys.get(_code_key(code), ()):
            if _code_equal(code, self.paths[path], original):
                return path
        return None


class _Analysis(object):
    __slots__ = ("hookable", "dead", "sites", "site_paths", "execs", "expr_sites")

    def __init__(self):
        self.expr_sites = set()   # (line, k) of lambda bodies
        self.hookable = set()
        self.dead = set()
        self.sites = set()        # allowed (line, k)
        self.site_paths = {}      # (line, k) -> path
        self.execs = {}           # line -> paths executing it


class _Plan(object):
    __slots__ = ("t1", "ph", "hooked", "path_lines", "path_hooks")

    def __init__(self):
        self.t1 = {}
        self.ph = {}
        self.hooked = {}          # line -> spec actually used
        self.path_lines = {}      # path -> set of lines hooked in that code
        self.path_hooks = {}      # path -> tuple of hook keys in that code


class _Variant(object):
    __slots__ = ("ref", "original", "lines", "sig", "filename")


class _Scan(object):
    def __init__(self):
        self.funcs = {}   # filename -> [function]
        self.frames = []  # (ident, frame)
        self.gens = []    # (generator, code)


# ---------------------------------------------------------------------------------------------


class CodeSwapper(object):
    """Owns every instrumented code object. All methods run with agent.lock held."""

    def __init__(self, agent, monitoring):
        self.agent = agent
        self.monitoring = monitoring
        self.active = sys.implementation.name == "cpython"
        self.nonce = "%x" % (id(self) ^ os.getpid())
        self._patcher = _UNSET  # made on first use: it imports ctypes
        self.files = {}        # filename -> _FileState (current source)
        self.variants = {}     # id(variant code) -> _Variant
        self.vcache = {}       # id(original) -> (original, sig, version)
        self.hooks = {}        # key -> Hook (current ones)
        self.file_hooks = {}   # filename -> set of hook keys in use
        self.applied = {}      # filename -> signature of the last application
        self.status = {}       # filename -> "hooked"/"pending"/"refused"/"idle"
        self.reasons = {}      # filename -> why refused
        self.fallback = {}     # filename -> lines needing the tracing backend
        self.hooked = {}       # filename -> lines instrumented
        self.dead = {}         # filename -> lines no code executes
        self.patches = {}      # (id(code), index) -> (weakref(code), index, original const, filename)
        self.programs = {}     # id(code) -> (weakref(code), filename): launch/import roots
        self.old_gens = []     # weakrefs of suspended generators running old code with breakpoints
        self.slow = False
        self.dirty = set()
        self._counter = 0
        self._gen_died = False

    # -- queries used by the backends (hot: keep them cheap) ----------------------------------

    def hooked_lines(self, code):
        v = self.variants.get(id(code))
        return v.lines if v is not None else None

    def original(self, code):
        v = self.variants.get(id(code))
        return v.original if v is not None else code

    def needs_tracing(self):
        """Before 3.12: does anything need the global tracer (all threads)?"""
        for lines in self.fallback.values():
            if lines:
                return True
        return self.has_old_generators()

    def has_old_generators(self):
        alive = []
        for ref in self.old_gens:
            gen = ref()
            if gen is None:
                continue
            frame = getattr(gen, "gi_frame", getattr(gen, "cr_frame", getattr(gen, "ag_frame", None)))
            if frame is not None:
                alive.append(ref)
        self.old_gens = alive
        return bool(alive)

    def is_pending(self, filename):
        return self.status.get(filename) == "pending"

    def set_slow(self, slow):
        if slow == self.slow:
            return
        self.slow = slow
        for hook in self.hooks.values():
            if not hook.retired:
                hook.slow = slow

    def info(self):
        return {"code_swap": self.active}

    # -- policy -------------------------------------------------------------------------------

    def _spec(self, bps):
        enabled = [b for b in bps if b.enabled]
        if not enabled:
            return None
        if len(enabled) == 1 and enabled[0].cond_code is not None \
                and condition_inlinable(enabled[0].condition):
            return ("cond", enabled[0])
        if self.monitoring:
            return None  # 3.12+: sys.monitoring is already as cheap for everything else
        return ("plain",)

    @staticmethod
    def _spec_key(filename, line, spec):
        if spec[0] == "cond":
            return (filename, line, "cond", spec[1].id, spec[1].condition)
        return (filename, line, "plain")

    # -- update -------------------------------------------------------------------------------

    def update(self, only=None):
        if not self.active or self.agent.detached:
            return
        agent = self.agent
        func_codes = {}
        for bps in agent.func_bps.values():
            code = bps[0].code
            func_codes.setdefault(code.co_filename, set()).add(id(code))
        files = set(agent.file_bps) | {f for f, keys in self.file_hooks.items() if keys} \
            | set(self.status)
        if only is not None:
            files &= set(only)
        todo = {}
        for filename in files:
            lines = agent.file_bps.get(filename, {})
            specs = {}
            enabled = set()
            for line, bps in lines.items():
                if any(b.enabled for b in bps):
                    enabled.add(line)
                spec = self._spec(bps)
                if spec is not None:
                    specs[line] = spec
            if self.status.get(filename) == "pending" and self._module_loaded(filename):
                self.dirty.add(filename)
            sig = (tuple(sorted((line, self._spec_key(filename, line, s)) for line, s in specs.items())),
                   tuple(sorted(enabled)), tuple(sorted(func_codes.get(filename, ()))))
            if self.applied.get(filename) == sig and filename not in self.dirty:
                continue
            todo[filename] = (specs, enabled, func_codes.get(filename, set()), sig)
        if not todo:
            return
        if self.monitoring and not any(specs or self._instrumented(filename)
                                       for filename, (specs, _, _, _) in todo.items()):
            # 3.12+ plain breakpoints: sys.monitoring serves them and nothing is to be restored,
            # so no walk of the whole heap (long in a large program) and no compile.
            for filename, (_, enabled, _, sig) in todo.items():
                self.dirty.discard(filename)
                self.status[filename] = "idle"
                self.fallback[filename] = set(enabled)
                self.hooked[filename] = set()
                self.applied[filename] = sig
            return
        _load()
        scan = self._scan(set(todo))
        for filename, (specs, enabled, fcodes, sig) in todo.items():
            self.dirty.discard(filename)
            try:
                self._apply_file(filename, specs, enabled, fcodes, scan)
            except Exception:
                # never leave a file half-instrumented: back to tracing for it
                self.status[filename] = "refused"
                self.reasons[filename] = "internal error"
                self.fallback[filename] = set(enabled)
                try:
                    self._restore_file(filename, scan)
                except Exception:
                    pass
                agent.internal_error()
            self.applied[filename] = sig
        self._refresh_old_generators(scan)

    def _instrumented(self, filename):
        """Does code of `filename` run instrumented copies, or patched constants?"""
        if self.file_hooks.get(filename):
            return True
        if any(entry[3] == filename for entry in self.patches.values()):
            return True
        return any(v.filename == filename for v in list(self.variants.values()))

    def file_seen(self, filename):
        """A tracer saw code of a pending file run: it has been loaded, instrument it now."""
        if self.status.get(filename) != "pending":
            return False
        self.dirty.add(filename)
        self.update(only={filename})
        return True

    def instrument_program(self, code):
        """Launch: the program's module code, before it runs."""
        if not self.active or self.agent.detached or code.co_filename not in self.agent.file_bps:
            return code
        _load()
        self.programs[id(code)] = (weakref.ref(code), code.co_filename)
        self.dirty.add(code.co_filename)
        self.update(only={code.co_filename})
        version = self._current_version(code)
        return version if version is not None else code

    def _current_version(self, code):
        entry = self.vcache.get(id(code))
        if entry is not None and entry[0] is code:
            return entry[2]
        return None

    def _module_loaded(self, filename):
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if f == filename:
                return True
        return False

    # -- scanning -----------------------------------------------------------------------------

    def _scan(self, files):
        scan = _Scan()
        funcs = scan.funcs
        seen = set()
        for obj in gc.get_objects():
            t = type(obj)
            if t is FunctionType:
                fname = obj.__code__.co_filename
                if fname in files and id(obj) not in seen:
                    seen.add(id(obj))
                    funcs.setdefault(fname, []).append(obj)
            elif t in _GEN_TYPES:
                code_attr, frame_attr, running_attr = _GEN_TYPES[t]
                code = getattr(obj, code_attr)
                if code.co_filename in files and getattr(obj, frame_attr) is not None:
                    scan.gens.append((obj, code))
        # Objects moved to the permanent generation by gc.freeze() are not in get_objects().
        for mod in list(sys.modules.values()):
            mfile = getattr(mod, "__file__", None)
            if mfile in files:
                self._walk_namespace(getattr(mod, "__dict__", {}), files, seen, funcs,
                                     getattr(mod, "__name__", None), 0)
        agent_threads = self.agent.agent_threads
        for ident, frame in list(sys._current_frames().items()):
            if ident in agent_threads:
                continue
            f = frame
            while f is not None:
                if f.f_code.co_filename in files:
                    scan.frames.append((ident, f))
                f = f.f_back
        return scan

    def _walk_namespace(self, ns, files, seen, funcs, modname, depth):
        if depth > 4:
            return
        for value in list(ns.values()):
            for _ in range(10):
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                elif isinstance(value, property):
                    for f in (value.fget, value.fset, value.fdel):
                        self._add_func(f, files, seen, funcs)
                    break
                else:
                    break
            if type(value) is FunctionType:
                for _ in range(20):
                    self._add_func(value, files, seen, funcs)
                    value = getattr(value, "__wrapped__", None)
                    if type(value) is not FunctionType:
                        break
            elif isinstance(value, type) and getattr(value, "__module__", None) == modname:
                try:
                    self._walk_namespace(dict(value.__dict__), files, seen, funcs, modname, depth + 1)
                except Exception:
                    pass

    @staticmethod
    def _add_func(f, files, seen, funcs):
        if type(f) is FunctionType and id(f) not in seen:
            fname = f.__code__.co_filename
            if fname in files:
                seen.add(id(f))
                funcs.setdefault(fname, []).append(f)

    # -- per-file application -----------------------------------------------------------------

    def _file_state(self, filename):
        lines = getlines(filename)
        if not lines:
            return None
        source = "".join(lines)
        fs = self.files.get(filename)
        if fs is None or fs.source != source:
            fs = self.files[filename] = _FileState(filename, source)
        return fs

    def _roots(self, filename, scan):
        roots = {}
        for f in scan.funcs.get(filename, ()):
            c = self.original(f.__code__)
            roots[id(c)] = c
        for _, frame in scan.frames:
            if frame.f_code.co_filename == filename:
                c = self.original(frame.f_code)
                roots[id(c)] = c
        for _, code in scan.gens:
            if code.co_filename == filename:
                c = self.original(code)
                roots[id(c)] = c
        for key, (ref, fname) in list(self.programs.items()):
            code = ref()
            if code is None:
                del self.programs[key]
            elif fname == filename:
                roots[id(code)] = code
        for key, (ref, index, orig, fname) in list(self.patches.items()):
            code = ref()
            if code is None:
                del self.patches[key]
            elif fname == filename:
                c = self.original(code)
                roots[id(c)] = c
        return roots

    def _apply_file(self, filename, specs, enabled, fcodes, scan):
        roots = self._roots(filename, scan)
        if not specs:
            self._restore_file(filename, scan)
            self.status[filename] = "idle"
            self.fallback[filename] = set(enabled)
            self.hooked[filename] = set()
            return
        if not roots and not self._module_loaded(filename):
            self._restore_file(filename, scan)
            self.status[filename] = "pending"
            self.fallback[filename] = set(enabled)
            self.hooked[filename] = set()
            return
        fs = self._file_state(filename)
        reason = None
        if fs is None:
            reason = "source not available"
        elif fs.error:
            reason = "source does not compile: %s" % fs.error
        paths = {}
        unmatched = []
        if reason is None:
            for cid, code in roots.items():
                path = fs.match(code, self.original)
                if path is None:
                    unmatched.append(code)
                else:
                    paths[cid] = path
            if unmatched and not paths:
                code = unmatched[0]
                reason = "the running code of %s (line %d) differs from the source" % (
                    code.co_name, code.co_firstlineno)
        if reason is not None:
            self._restore_file(filename, scan)
            self.status[filename] = "refused"
            self.reasons[filename] = reason
            self.fallback[filename] = set(enabled)
            self.hooked[filename] = set()
            return
        blocked = set()
        for cid, path in paths.items():
            if cid in fcodes:
                blocked.add(path)
        analysis = self._analyze(fs, frozenset(specs))
        plan = self._plan(fs, filename, specs, analysis, blocked)
        hooked = set(plan.hooked)
        dead = set(analysis.dead)
        self.hooked[filename] = hooked
        self.dead[filename] = dead
        self.fallback[filename] = set(enabled) - hooked - dead
        # Code that differs from the source (rewritten by a decorator such as types.coroutine,
        # or left from an older version of the file) keeps its code: tracing covers its lines.
        for code in unmatched:
            self.fallback[filename] |= enabled & code_tree_lines(code)
        self.status[filename] = "hooked"
        if unmatched:
            code = unmatched[0]
            self.reasons[filename] = "%d code object(s) differ from the source, e.g. %s (line %d)" % (
                len(unmatched), code.co_name, code.co_firstlineno)
        else:
            self.reasons.pop(filename, None)
        # versions of every reachable code
        versions = {}
        for cid, code in roots.items():
            if cid in paths:
                self._version(code, paths[cid], fs, plan, versions, filename)
        # functions
        for func in scan.funcs.get(filename, ()):
            cur = func.__code__
            orig = self.original(cur)
            want = versions.get(id(orig))
            if want is None or want is cur:
                continue
            try:
                func.__code__ = want
            except Exception:
                self.fallback[filename] |= enabled & code_tree_lines(orig)
        # frames and generators already running some version: closures they create later
        running = [frame.f_code for _, frame in scan.frames if frame.f_code.co_filename == filename]
        running += [code for _, code in scan.gens if code.co_filename == filename]
        for key, (ref, index, orig, fname) in list(self.patches.items()):
            code = ref()
            if code is not None and fname == filename:
                running.append(code)
        done = set()
        for code in running:
            if id(code) in done:
                continue
            done.add(id(code))
            self._patch_children(code, versions, filename, enabled)
        # hooks no longer used by this file
        new_keys = set()
        for keys in plan.path_hooks.values():
            new_keys.update(keys)
        for key in [k for k in self.hooks if k[0] == filename and k not in new_keys]:
            self._retire(key)
        self.file_hooks[filename] = new_keys

    def _patch_children(self, code, versions, filename, enabled):
        consts = code.co_consts
        for index, k in enumerate(consts):
            if type(k) is not CodeType:
                continue
            orig = self.original(k)
            want = versions.get(id(orig), orig)
            if want is k:
                continue
            key = (id(code), index)
            if self._patcher is _UNSET:
                self._patcher = _make_patcher()
            if self._patcher is None:
                if not self.monitoring:
                    self.fallback[filename] |= enabled & code_tree_lines(orig)
                continue
            try:
                self._patcher.set(consts, index, want)
            except Exception:
                self._patcher = None
                self.fallback[filename] |= enabled & code_tree_lines(orig)
                continue
            entry = self.patches.get(key)
            if want is orig:
                self.patches.pop(key, None)
            elif entry is None:
                self.patches[key] = (weakref.ref(code), index, orig, filename)

    def _version(self, code, path, fs, plan, versions, filename):
        """The code object that functions of `code` (an original) should run."""
        cid = id(code)
        if cid in versions:
            return versions[cid]
        kids = [self.original(k) for k in _children(code)]
        kid_versions = [self._version(k, path + (i,), fs, plan, versions, filename)
                        for i, k in enumerate(kids)]
        hook_keys = plan.path_hooks.get(path, ())
        sig = (tuple(id(self.hooks.get(k)) for k in hook_keys), tuple(id(v) for v in kid_versions))
        cached = self.vcache.get(cid)
        if cached is not None and cached[0] is code and cached[1] == sig:
            versions[cid] = cached[2]
            return cached[2]
        if hook_keys:
            x1 = plan.t1[path]
            it = iter(kid_versions)
            consts = []
            for k in x1.co_consts:
                if type(k) is CodeType:
                    consts.append(next(it))
                elif type(k) is str and k in plan.ph:
                    consts.append(plan.ph[k])
                else:
                    consts.append(k)
            version = x1.replace(co_consts=tuple(consts))
            lines = frozenset(plan.path_lines.get(path, ()))
        elif any(v is not k for v, k in zip(kid_versions, kids)):
            it = iter(kid_versions)
            version = code.replace(co_consts=tuple(next(it) if type(k) is CodeType else k
                                                   for k in code.co_consts))
            lines = frozenset()
        else:
            version = code
            lines = None
        if version is not code:
            self._register_variant(version, code, lines, filename)
        self.vcache[cid] = (code, sig, version)
        versions[cid] = version
        return version

    def _register_variant(self, version, original, lines, filename):
        vid = id(version)
        variants = self.variants

        def gone(_ref, vid=vid):
            v = variants.get(vid)
            if v is not None and v.ref is _ref:
                del variants[vid]
        v = _Variant()
        v.ref = weakref.ref(version, gone)
        v.original = original
        v.lines = lines
        v.filename = filename
        v.sig = None
        variants[vid] = v

    def _retire(self, key):
        hook = self.hooks.pop(key, None)
        if hook is not None:
            hook.retired = True
            hook.slow = True

    # -- analysis and plan --------------------------------------------------------------------

    def _ph(self, tag):
        self._counter += 1
        return "\x00pymri-%s-%s-%d" % (self.nonce, tag, self._counter)

    def _analyze(self, fs, lines):
        cached = fs.analyses.get(lines)
        if cached is not None:
            return cached
        res = _Analysis()
        site_ph = {}

        def make_stmt(line, key, st, jline):
            ph = site_ph[key] = self._ph("p")
            return [_stmt_call(ph, "x", line, st.col_offset)]

        def make_expr(line, key, expr):
            ph = site_ph[key] = self._ph("p")
            res.expr_sites.add(key)
            return _or_hook(ph, "x", line, expr)

        tree = _Builder(set(lines), make_stmt, make_expr).module(ast.parse(fs.source, fs.filename))
        probe = _walk_paths(compile(tree, fs.filename, "exec", dont_inherit=True))
        if set(probe) != set(fs.paths):
            res.dead = set()
            return res
        ph_site = {ph: key for key, ph in site_ph.items()}
        bad = set()
        for path, xp in probe.items():
            info0 = fs.line_info(path)
            infop = _LineInfo(xp)
            landed = {}
            for ph in infop.consts:
                key = ph_site.get(ph)
                if key is not None:
                    landed.setdefault(key[0], []).append((key, ph))
            for line in lines:
                runs0 = info0.runs.get(line, ())
                if not any(info0.entries(offsets) for _, offsets in runs0):
                    continue  # this code never executes the line (no run, or unreachable ones)
                here = landed.get(line, [])
                res.execs.setdefault(line, set()).add(path)
                if not here:
                    bad.add(line)
                    continue
                phs = {ph for _, ph in here}
                runs = infop.runs.get(line, [])
                if len(runs) != len(runs0):
                    bad.add(line)
                    continue
                for (first, offsets), (_, offsets0) in zip(runs, runs0):
                    # each run starts with the marker, is entered the same number of ways as
                    # the original one (no jump threaded past it), and only at its start
                    if first.opcode != _LOAD_CONST or first.argval not in phs \
                            or infop.entries(offsets) != info0.entries(offsets0) \
                            or infop.entered_midway(offsets):
                        bad.add(line)
                        break
                for key, _ in here:
                    res.site_paths[key] = path
        for line in lines:
            if line not in res.execs:
                res.dead.add(line)
            elif line not in bad:
                res.hookable.add(line)
        res.sites = {key for key, path in res.site_paths.items() if key[0] in res.hookable}
        fs.analyses[lines] = res
        return res

    def _plan(self, fs, filename, specs, analysis, blocked):
        specs = {line: spec for line, spec in specs.items() if line in analysis.hookable}
        if self.monitoring:
            for key in analysis.expr_sites:
                specs.pop(key[0], None)
        for path in blocked:
            for line, paths in analysis.execs.items():
                if path in paths:
                    specs.pop(line, None)
        for _ in range(4):
            plan = self._build(fs, filename, specs, analysis)
            if plan is None:
                # the instrumented tree does not compile (e.g. a condition using a name before
                # its `global` declaration): demote conditions, then give up
                if any(s[0] == "cond" for s in specs.values()) and not self.monitoring:
                    specs = {line: ("plain",) for line in specs}
                    continue
                return _Plan()
            failed = set()
            for path, lines in plan.path_lines.items():
                if not _signature_equal(plan.t1[path], fs.paths[path]):
                    failed |= lines
            if not failed:
                return plan
            for line in failed:
                spec = specs.get(line)
                if spec is not None and spec[0] == "cond" and not self.monitoring:
                    specs[line] = ("plain",)
                else:
                    specs.pop(line, None)
        return _Plan()

    def _hook_for(self, filename, line, spec):
        key = self._spec_key(filename, line, spec)
        hook = self.hooks.get(key)
        if hook is None:
            hook = Hook(self.agent, key, filename, line, spec[1] if spec[0] == "cond" else None)
            hook.slow = self.slow
            self.hooks[key] = hook
        return hook

    def _build(self, fs, filename, specs, analysis):
        plan = _Plan()
        if not specs:
            return plan
        ph = plan.ph
        exc_ph = self._ph("e")
        ph[exc_ph] = Exception
        used = {}

        def hook_ph(line, spec):
            hook = self._hook_for(filename, line, spec)
            p = self._ph("h")
            ph[p] = hook
            return p, hook

        def make_stmt(line, key, st, jline):
            if key not in analysis.sites:
                return None
            spec = specs.get(line)
            if spec is None:
                return None
            col = st.col_offset
            p, hook = hook_ph(line, spec)
            used[key] = hook.key
            if spec[0] == "plain":
                return [_if_call_jump(p, "hit", line, col, jline)]
            bp = spec[1]
            cph = self._ph("c")
            cond = _locate(ast.parse(bp.condition, mode="eval").body, line, col)
            if bp.counter.tick is not None:  # before 3.11: TICK()
                ph[cph] = bp.counter.tick
                # `(TICK if True else TICK)()`: compiles to LOAD_CONST + CALL, without the
                # compiler's "'str' object is not callable" warning about a constant callee
                callee = ast.IfExp(test=ast.Constant(value=True), body=ast.Constant(value=cph),
                                   orelse=ast.Constant(value=cph))
                count = _locate(ast.Expr(value=ast.Call(func=callee, args=[], keywords=[])),
                                line, col)
            else:  # COUNTER.n += 1
                ph[cph] = bp.counter
                count = _locate(ast.AugAssign(
                    target=ast.Attribute(value=ast.Constant(value=cph), attr="n", ctx=ast.Store()),
                    op=ast.Add(), value=ast.Constant(value=1)), line, col)
            test = _locate(ast.If(test=cond, body=[_if_call_jump(p, "true", line, col, jline)],
                                  orelse=[]), line, col, force=False)
            guarded = _locate(ast.Try(
                body=[test],
                handlers=[ast.ExceptHandler(type=ast.Constant(value=exc_ph), name=None,
                                            body=[_stmt_call(p, "error", line, col)])],
                orelse=[], finalbody=[]), line, col, force=False)
            node = _locate(ast.If(test=ast.Attribute(value=ast.Constant(value=p), attr="slow",
                                                      ctx=ast.Load()),
                                  body=[_if_call_jump(p, "hit", line, col, jline)],
                                  orelse=[count, guarded]), line, col, force=False)
            return [node]

        def make_expr(line, key, expr):
            if key not in analysis.sites:
                return None
            spec = specs.get(line)
            if spec is None:
                return None
            # a lambda body cannot hold the inline form: the agent evaluates the condition
            p, hook = hook_ph(line, ("plain",))
            used[key] = hook.key
            return _or_hook(p, "hitx", line, expr)

        tree = _Builder(set(specs), make_stmt, make_expr).module(ast.parse(fs.source, fs.filename))
        try:
            t1 = compile(tree, fs.filename, "exec", dont_inherit=True)
        except Exception:
            return None
        plan.t1 = _walk_paths(t1)
        if set(plan.t1) != set(fs.paths):
            return None
        for key, hkey in used.items():
            path = analysis.site_paths.get(key)
            if path is None:
                continue
            plan.path_lines.setdefault(path, set()).add(key[0])
            plan.path_hooks.setdefault(path, set()).add(hkey)
            plan.hooked[key[0]] = specs[key[0]]
        plan.path_hooks = {p: tuple(sorted(keys, key=repr)) for p, keys in plan.path_hooks.items()}
        return plan

    # -- restore ------------------------------------------------------------------------------

    def _restore_file(self, filename, scan):
        for func in scan.funcs.get(filename, ()):
            cur = func.__code__
            orig = self.original(cur)
            if orig is not cur:
                try:
                    func.__code__ = orig
                except Exception:
                    pass
        for key, (ref, index, orig, fname) in list(self.patches.items()):
            if fname != filename:
                continue
            code = ref()
            del self.patches[key]
            if code is None or not isinstance(self._patcher, _TuplePatcher):
                continue
            try:
                if code.co_consts[index] is not orig:
                    self._patcher.set(code.co_consts, index, orig)
            except Exception:
                pass
        for key in self.file_hooks.pop(filename, set()):
            self._retire(key)
        for key, entry in list(self.vcache.items()):
            if entry[0].co_filename == filename:
                del self.vcache[key]
        self.hooked[filename] = set()

    def restore_all(self):
        """Detach: every function back to its original code, patched constants restored."""
        files = {v.filename for v in list(self.variants.values())} | set(self.file_hooks) \
            | {e[3] for e in self.patches.values()}
        if files:
            scan = self._scan(files)
            for filename in files:
                try:
                    self._restore_file(filename, scan)
                except Exception:
                    pass
        for key in list(self.hooks):
            self._retire(key)
        self.vcache.clear()
        self.applied.clear()
        self.status.clear()
        self.fallback.clear()
        self.old_gens = []
        self.programs.clear()
        self.active = False

    # -- old generators -----------------------------------------------------------------------

    def _refresh_old_generators(self, scan):
        """Generators and coroutines (suspended or running) whose code lacks hooks for some of
        its breakpoint lines: any thread may resume them, so they need the global tracer."""
        refs = []
        for gen, code in scan.gens:
            if self.code_needs_tracing(code):
                try:
                    refs.append(weakref.ref(gen, self._on_gen_died))
                except TypeError:
                    pass
        self.old_gens = refs

    def _on_gen_died(self, _ref):
        self._gen_died = True

    def unhooked_bp_lines(self, code):
        """{line: [Breakpoint]}: the breakpoint lines of `code` it has no hook for, which a
        tracer must serve."""
        table = {}
        lines = self.agent.file_bps.get(code.co_filename)
        if lines:
            hooked = self.hooked_lines(code) or ()
            have = code_lines(code)
            for line, bps in lines.items():
                if line in have and line not in hooked:
                    table[line] = bps
        return table

    def code_needs_tracing(self, code):
        """Does `code` (an original or a stale copy) hold breakpoint lines it has no hook for?"""
        for bps in self.unhooked_bp_lines(code).values():
            if any(b.enabled for b in bps):
                return True
        return False
