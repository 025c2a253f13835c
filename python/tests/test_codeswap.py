"""Code-swap instrumentation, tested without a controller: for every line of a corpus of
constructs, a breakpoint served by instrumented code must fire exactly where (and as often as) a
line trace does, with the same locals, and the instrumented code must otherwise behave like the
original (same results)."""

import os
import sys
import threading
import unittest

from helpers import PROGS  # first: puts progs/ and the package on sys.path
from pymri_agent import _codeswap  # noqa: E402
from pymri_agent.breakpoints import Breakpoint  # noqa: E402

CORPUS = os.path.join(PROGS, "swap_corpus.py")


def _snapshot(frame):
    out = {}
    for k, v in frame.f_locals.items():
        if isinstance(v, (int, str, float, bool, type(None))):
            out[k] = v
        else:
            out[k] = type(v).__name__
    return (frame.f_code.co_name, tuple(sorted(out.items())))


class FakeAgent(object):
    """What CodeSwapper and the hooks use of the Agent."""

    def __init__(self):
        self.file_bps = {}
        self.func_bps = {}
        self.agent_threads = set()
        self.detached = False
        self.errors = []
        self.events = []

    def internal_error(self):
        import traceback
        self.errors.append(traceback.format_exc())

    def hook_hit(self, hook, frame, jump_ok=True):
        self.events.append(("hit", frame.f_lineno, _snapshot(frame)))

    def hook_true(self, hook, frame):
        self.events.append(("true", frame.f_lineno, _snapshot(frame)))

    def hook_error(self, hook, frame, exc):
        self.events.append(("error", frame.f_lineno, _snapshot(frame)))


def _source():
    with open(CORPUS) as f:
        return f.read()


def traced_events(line):
    """Line events at `line` while the corpus module runs (its module code included)."""
    code = compile(_source(), CORPUS, "exec", dont_inherit=True)
    events = []

    def local(frame, event, arg):
        if event == "line" and frame.f_lineno == line:
            events.append(_snapshot(frame))
        return local

    def glob(frame, event, arg):
        return local if frame.f_code.co_filename == CORPUS else None

    ns = {"__name__": "swap_corpus"}
    old = sys.gettrace()
    sys.settrace(glob)
    try:
        exec(code, ns)
    finally:
        sys.settrace(old)
    result = ns["RESULT"]
    ns.clear()
    return events, result


def hooked_events(line, condition=None, monitoring=False):
    import gc
    gc.collect()  # functions left by earlier runs would be scanned too
    agent = FakeAgent()
    bp = Breakpoint(1, "line")
    bp.configure({"condition": condition})
    bp.file = CORPUS
    bp.line = line
    agent.file_bps = {CORPUS: {line: [bp]}}
    swapper = _codeswap.CodeSwapper(agent, monitoring=monitoring)
    code = compile(_source(), CORPUS, "exec", dont_inherit=True)
    new = swapper.instrument_program(code)
    status = swapper.status.get(CORPUS), swapper.reasons.get(CORPUS)
    hooked = set(swapper.hooked.get(CORPUS, ()))
    ns = {"__name__": "swap_corpus"}
    exec(new, ns)
    result = ns["RESULT"]
    swapper.restore_all()  # like a detach: the next run starts from original code again
    ns.clear()
    swapper.status[CORPUS] = status[0]
    swapper.reasons[CORPUS] = status[1]
    swapper.hooked[CORPUS] = hooked
    return agent, swapper, bp, result


def code_lines_of_corpus():
    with open(CORPUS) as f:
        lines = f.read().splitlines()
    return [i for i, text in enumerate(lines, 1)
            if text.strip() and not text.strip().startswith("#")]


# Lines that must be instrumented (plain statements, first lines of compound statements that
# run once, elif headers...); the others may fall back to tracing, but must never misfire.
MUST_HOOK_MARKERS = [
    "    a = n + 1", "    b = a * 2; c = b - 1", "    if a > 2: d = 1", "    total = 0",
    "        total += i", "    j = 0", "        j += 1", "        x = 1 / n",
    "        x = 0", "    elif n == 1:", "        r = \"many\"", "        return m + n",
    "        h = super().__hash__() != 0", "        return n + 1", "        return self.attr",
    "    return n * 3", "        yield i", "    v = n + 1", "            acc.append(x + i)",
    "    G = n", "    assert n >= 0, \"neg\"", "    return n if n < 2 else recursion(n - 1) + recursion(n - 2)",
    "            return self.v", "def one_liner(n): return n + 1", "    out.append(simple(3))",
    "RESULT = main()", "    try:", "        w = v + 1",
]


class DifferentialTests(unittest.TestCase):
    def setUp(self):
        self.base = traced_events(1)[1]  # the corpus's own result

    def _check_line(self, line, condition=None, monitoring=False):
        expected, result = traced_events(line)
        agent, swapper, bp, hooked_result = hooked_events(line, condition, monitoring)
        self.assertEqual(agent.errors, [])
        self.assertEqual(repr(hooked_result), repr(self.base), "instrumented code changed the program")
        self.assertEqual(repr(result), repr(self.base))
        self.assertEqual(swapper.status[CORPUS], "hooked", swapper.reasons.get(CORPUS))
        hooked = line in swapper.hooked.get(CORPUS, ())
        got = [(kind, ln, snap) for kind, ln, snap in agent.events]
        for kind, ln, snap in got:
            self.assertEqual(ln, line, "hook reported f_lineno %s" % ln)
        if not hooked:
            self.assertEqual(got, [], "a line that is not instrumented called a hook")
            return False
        if condition is None:
            self.assertEqual([s for _, _, s in got], expected)
            self.assertTrue(all(k == "hit" for k, _, _ in got))
        else:
            # statement sites: the counter counts, true()/error() fire; lambda sites: hitx
            self.assertEqual(sorted(s for _, _, s in got), sorted(expected))
            self.assertEqual(bp.counter.n, len([k for k, _, _ in got if k != "hit"]))
        return True

    def test_every_line_plain(self):
        hooked = set()
        for line in code_lines_of_corpus():
            with self.subTest(line=line):
                if self._check_line(line):
                    hooked.add(line)
        with open(CORPUS) as f:
            text = f.read().splitlines()
        for marker in MUST_HOOK_MARKERS:
            line = text.index(marker) + 1 if marker in text else \
                [i for i, t in enumerate(text, 1) if t.startswith(marker)][0]
            self.assertIn(line, hooked, "line %d %r was not instrumented" % (line, marker))

    def test_every_line_inline_true_condition(self):
        for line in code_lines_of_corpus():
            with self.subTest(line=line):
                self._check_line(line, condition="True", monitoring=True)

    def test_every_line_inline_raising_condition(self):
        for line in code_lines_of_corpus():
            with self.subTest(line=line):
                self._check_line(line, condition="undefined_name_xyz > 1", monitoring=True)

    def test_inline_condition_reads_locals(self):
        with open(CORPUS) as f:
            text = f.read().splitlines()
        line = text.index("        total += i") + 1
        agent, swapper, bp, _ = hooked_events(line, condition="i == 2", monitoring=True)
        self.assertIn(line, swapper.hooked[CORPUS])
        self.assertEqual(bp.counter.n, 3)
        self.assertEqual([k for k, _, _ in agent.events], ["true"])
        self.assertIn(("i", 2), agent.events[0][2][1])


class SafetyTests(unittest.TestCase):
    def _swapper(self, path, line):
        agent = FakeAgent()
        bp = Breakpoint(1, "line")
        bp.configure({})
        bp.file = path
        bp.line = line
        agent.file_bps = {path: {line: [bp]}}
        return agent, _codeswap.CodeSwapper(agent, monitoring=False)

    def test_refused_when_compiled_differently(self):
        import tempfile
        import linecache
        d = tempfile.mkdtemp()
        path = os.path.join(d, "mod_opt.py")
        source = "def f(x):\n    assert x > 0\n    return x + 1\n"
        with open(path, "w") as f:
            f.write(source)
        linecache.checkcache(path)
        other = 0 if sys.flags.optimize else 1  # the optimisation level the interpreter does not use
        ns = {}
        exec(compile(source, path, "exec", dont_inherit=True, optimize=other), ns)
        agent, sw = self._swapper(path, 3)
        sw.update()
        self.assertEqual(sw.status[path], "refused")
        self.assertEqual(sw.fallback[path], {3})
        self.assertIs(ns["f"].__code__, ns["f"].__code__)
        ns2 = {}
        exec(compile(source, path, "exec", dont_inherit=True), ns2)
        del ns
        import gc
        gc.collect()
        sw.dirty.add(path)
        sw.update()
        self.assertEqual(sw.status[path], "hooked", sw.reasons.get(path))
        self.assertEqual(ns2["f"](1), 2)
        self.assertEqual(len(agent.events), 1)
        sw.restore_all()

    def test_threads_untouched_by_restore(self):
        # restore_all puts every original code object back
        path = CORPUS
        with open(path) as f:
            text = f.read().splitlines()
        line = text.index("    a = n + 1") + 1
        agent, sw = self._swapper(path, line)
        code = compile(_source(), CORPUS, "exec", dont_inherit=True)
        ns = {"__name__": "x"}
        exec(code, ns)
        original = ns["simple"].__code__
        sw.update()
        self.assertIsNot(ns["simple"].__code__, original)
        self.assertEqual(ns["simple"](3), 20)
        sw.restore_all()
        self.assertIs(ns["simple"].__code__, original)
        t = threading.Thread(target=ns["simple"], args=(1,))
        t.start()
        t.join()


if __name__ == "__main__":
    unittest.main()
