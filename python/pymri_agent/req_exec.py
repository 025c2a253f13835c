"""`pymri exec`: run code in a stopped thread, in the `__main__` module's globals.

What the code writes to sys.stdout and sys.stderr from this thread goes back to pymri while it
runs, as `output` events (categories `stdout` and `stderr`); the program's other threads keep
writing to the program's own streams (inspection.OutputCapture routes by thread). The value of a
final bare expression is written to the code's stdout as the REPL shows it: its repr, nothing
for None. An exception that escapes the code is the response's `exception`.
"""

import sys
import time

from . import inspection
from ._handlers import STOPPED, RequestError

# The controller bounds the source too; this keeps a hostile or buggy controller from making the
# target compile megabytes.
MAX_SOURCE = 1024 * 1024
# Output leaves in events of about CHUNK characters, or sooner when FLUSH_AFTER seconds passed
# since the last one (progress lines of a long run show up while it runs); MAX_OUTPUT characters
# in all, the rest counted, not kept: code that prints in a loop must not fill the target's memory.
CHUNK = 16384
FLUSH_AFTER = 0.1
MAX_OUTPUT = 8 * 1024 * 1024


class _Output(object):
    """Both streams' text in write order, sent in chunks; one sink per stream name."""

    def __init__(self, agent):
        self.agent = agent
        self.category = None
        self.parts = []
        self.size = 0
        self.left = MAX_OUTPUT
        self.dropped = 0
        self.last_sent = time.monotonic()

    def sinks(self):
        return {"stdout": _Sink(self, "stdout"), "stderr": _Sink(self, "stderr")}

    def add(self, category, text):
        if category != self.category:
            self.flush()
            self.category = category
        if len(text) > self.left:
            self.dropped += len(text) - self.left
            text = text[:self.left]
        if not text:
            return
        self.left -= len(text)
        self.parts.append(text)
        self.size += len(text)
        if self.size >= CHUNK or time.monotonic() - self.last_sent >= FLUSH_AFTER:
            self.flush()

    def flush(self):
        # In slices: one large write must not make an event above the frame limit (dropped).
        if self.parts:
            text = "".join(self.parts)
            self.parts = []
            self.size = 0
            for start in range(0, len(text), CHUNK):
                self.agent.send_event("output", {"category": self.category, "text": text[start:start + CHUNK]})
        self.last_sent = time.monotonic()


class _Sink(object):
    def __init__(self, output, category):
        self.output = output
        self.category = category

    def append(self, text):
        self.output.add(self.category, text)


def _compile(source, filename):
    """(statements, final expression or None): the code split as the REPL runs it."""
    import _ast
    tree = compile(source, filename, "exec", _ast.PyCF_ONLY_AST)
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = compile(_ast.Expression(body=tree.body.pop().value), filename, "eval")
    return compile(tree, filename, "exec"), last


def _format_exception(exc, source, filename):
    """The traceback, with the code's own lines shown: its source is lent to linecache for the
    time of the formatting only."""
    import linecache
    saved = linecache.cache.get(filename)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        return inspection.format_exception(exc)
    finally:
        if saved is None:
            linecache.cache.pop(filename, None)
        else:
            linecache.cache[filename] = saved


def req_exec(agent, stop, args):
    source = args.get("source")
    filename = args.get("filename", "<exec>")
    if not isinstance(source, str) or not isinstance(filename, str):
        raise RequestError("bad_request", "'source' and 'filename' must be strings")
    if len(source) > MAX_SOURCE:
        raise RequestError("bad_request", "the code is longer than %d characters" % MAX_SOURCE)
    output = _Output(agent)
    body = {}
    agent.capture.start(output.sinks())
    try:
        try:
            statements, last = _compile(source, filename)
            main = sys.modules["__main__"].__dict__
            exec(statements, main)
            if last is not None:
                value = eval(last, main)
                if value is not None:
                    output.add("stdout", repr(value) + "\n")
        except BaseException as exc:  # the code's failure is the answer, never the program's
            body["exception"] = _format_exception(exc, source, filename)
    finally:
        agent.capture.stop()
        output.flush()
    if output.dropped:
        body["dropped"] = output.dropped
    return body


REQUESTS = {
    "exec": (STOPPED, req_exec),
}
