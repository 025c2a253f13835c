"""Breakpoint model: conditions, hit conditions and log messages compiled once when set."""

import itertools
import sys

from .inspection import LazyRegex, safe_repr

_HIT_RE = LazyRegex(r"^\s*(==|>=|<=|!=|>|<|%)?\s*(\d+)\s*$")


class BreakpointError(ValueError):
    pass


def parse_hit_condition(text):
    """DAP hitCondition: 'N' (== N), '== N', '>= N', '> N', '<= N', '< N', '!= N', '% N'."""
    if text is None or text == "":
        return None
    m = _HIT_RE.match(str(text))
    if not m:
        raise BreakpointError("invalid hit condition %r (expected e.g. '>= 3', '== 5', '%% 2')" % (text,))
    op = m.group(1) or "=="
    n = int(m.group(2))
    if op == "%" and n == 0:
        raise BreakpointError("hit condition '% 0' is invalid")
    return op, n


def hit_condition_true(op, n, count):
    if op == "==":
        return count == n
    if op == ">=":
        return count >= n
    if op == ">":
        return count > n
    if op == "<=":
        return count <= n
    if op == "<":
        return count < n
    if op == "!=":
        return count != n
    return count % n == 0


def parse_log_message(text):
    """Split a log message into literal strings and compiled `{expr}` parts."""
    parts = []
    i = 0
    literal = []
    n = len(text)
    while i < n:
        c = text[i]
        if c == "{":
            if i + 1 < n and text[i + 1] == "{":
                literal.append("{")
                i += 2
                continue
            depth = 1
            j = i + 1
            while j < n and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise BreakpointError("unbalanced '{' in log message")
            expr = text[i + 1:j - 1].strip()
            if not expr:
                raise BreakpointError("empty '{}' in log message")
            try:
                code = compile(expr, "<pymri-log>", "eval")
            except SyntaxError as exc:
                code = _formatted(expr)
                if code is None:
                    raise BreakpointError("invalid expression {%s} in log message: %s" % (expr, exc.msg))
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(code)
            i = j
        elif c == "}":
            if i + 1 < n and text[i + 1] == "}":
                i += 1
            literal.append("}")
            i += 1
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _formatted(expr):
    """`{expr!r}`, `{expr:>8}`, `{expr=}`: the part compiled as an f-string of its own (whose
    value is the text), or None if it is not one either."""
    for quote in ("'", '"', "'''", '"""'):
        if quote in expr or "\\" in expr or "\n" in expr:
            continue
        try:
            return _Formatted(compile("f" + quote + "{" + expr + "}" + quote, "<pymri-log>", "eval"))
        except SyntaxError:
            return None
    return None


class _Formatted(object):
    """A log message part evaluated as an f-string: its value is already text."""

    __slots__ = ("code",)

    def __init__(self, code):
        self.code = code


def render_log_message(parts, frame):
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
            continue
        try:
            if isinstance(p, _Formatted):
                text = eval(p.code, frame.f_globals, frame.f_locals)
                out.append(text if len(text) <= 4000 else text[:4000] + "...")
                continue
            value = eval(p, frame.f_globals, frame.f_locals)
            out.append(value if isinstance(value, str) else safe_repr(value, 1000))
        except Exception as exc:
            out.append("<error: %s: %s>" % (type(exc).__name__, exc))
    return "".join(out)


def compile_condition(text):
    if text is None or text == "":
        return None
    try:
        return compile(text, "<pymri-condition>", "eval")
    except SyntaxError as exc:
        raise BreakpointError("Invalid condition %s: %s: %s" % (text, type(exc).__name__, exc.msg))


if sys.version_info >= (3, 11):
    class HitCounter(object):
        """Hits counted by instrumented code: `COUNTER.n += 1` before an inline condition
        (specialized attribute access makes this the cheapest form on 3.11+)."""
        __slots__ = ("n",)
        tick = None

        def __init__(self):
            self.n = 0
else:
    class HitCounter(object):
        """Hits counted by instrumented code: `TICK()` before an inline condition, where TICK is
        the `__next__` of an itertools.count (one C call: cheaper than attribute arithmetic
        before 3.11). Its value is only readable from its repr, "count(N)"."""
        __slots__ = ("_count", "tick")

        def __init__(self):
            self._count = itertools.count()
            self.tick = self._count.__next__

        @property
        def n(self):
            text = repr(self._count)
            return int(text[text.index("(") + 1:-1])


class Breakpoint(object):
    __slots__ = ("id", "kind", "file", "line", "function", "code", "enabled", "temporary",
                 "condition", "cond_code", "hit_condition", "hit_op", "log_message", "log_parts",
                 "ignore_count", "_hits", "counter", "cond_hits", "verified", "message",
                 "first_line")

    def __init__(self, bid, kind):
        self.id = bid
        self.kind = kind  # "line" or "function"
        self.file = None
        self.line = None
        self.function = None
        self.code = None
        self.enabled = True
        self.temporary = False
        self.condition = None
        self.cond_code = None
        self.hit_condition = None
        self.hit_op = None
        self.log_message = None
        self.log_parts = None
        self.ignore_count = 0
        self._hits = 0
        self.counter = HitCounter()
        self.cond_hits = 0
        self.verified = False
        self.message = None
        self.first_line = None

    @property
    def hits(self):
        return self._hits + self.counter.n

    @hits.setter
    def hits(self, value):
        self._hits = value - self.counter.n

    def configure(self, args, partial=False):
        """Apply condition/hit_condition/log_message/... from request args (validated first)."""
        updates = {}
        if "condition" in args or not partial:
            cond = args.get("condition") or None
            updates["condition"] = (cond, compile_condition(cond))
        if "hit_condition" in args or not partial:
            hc = args.get("hit_condition")
            hc = None if hc in (None, "") else str(hc)
            updates["hit_condition"] = (hc, parse_hit_condition(hc))
        if "log_message" in args or not partial:
            lm = args.get("log_message")
            lm = None if lm in (None, "") else str(lm)
            updates["log_message"] = (lm, parse_log_message(lm) if lm is not None else None)
        if "ignore_count" in args:
            ic = args.get("ignore_count")
            if not isinstance(ic, int) or isinstance(ic, bool) or ic < 0:
                raise BreakpointError("ignore_count must be a non-negative integer")
            updates["ignore_count"] = ic
        if "enabled" in args:
            updates["enabled"] = bool(args["enabled"])
        if "temporary" in args:
            updates["temporary"] = bool(args["temporary"])
        for key, value in updates.items():
            if key == "condition":
                self.condition, self.cond_code = value
            elif key == "hit_condition":
                self.hit_condition, self.hit_op = value
                self.cond_hits = 0
            elif key == "log_message":
                self.log_message, self.log_parts = value
            else:
                setattr(self, key, value)

    def to_dict(self):
        d = {
            "id": self.id,
            "kind": self.kind,
            "enabled": self.enabled,
            "temporary": self.temporary,
            "hits": self.hits,
            "ignore_count": self.ignore_count,
            "verified": self.verified,
        }
        if self.file is not None:
            d["file"] = self.file
        if self.line is not None:
            d["line"] = self.line
        if self.function is not None:
            d["function"] = self.function
        if self.condition is not None:
            d["condition"] = self.condition
        if self.hit_condition is not None:
            d["hit_condition"] = self.hit_condition
        if self.log_message is not None:
            d["log_message"] = self.log_message
        if self.message:
            d["message"] = self.message
        return d
