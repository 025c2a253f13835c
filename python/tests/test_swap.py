"""Code-swap breakpoints through the protocol: instrumented functions, conditions, fallbacks to
the tracing backends, old frames, restore on clear/disable/detach, jump and steps at hook stops.

On CPython 3.9-3.11 every line breakpoint is instrumented when possible (observable: a stopped
thread has no tracer, `sys.gettrace()` is None); on 3.12+ only breakpoints with a condition are
(sys.monitoring serves the others as cheaply)."""

import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest

from helpers import AgentTestCase, LaunchedProgram, RequestFailed, MONITORING, line_of, prog_path, thread_offsets
import prog_swap as ps  # noqa: E402

F = ps.__file__
SETTRACE = not MONITORING


def L(marker):
    return line_of(F, marker)


def live_agent():
    mod = sys.modules["pymri_agent.engine"]
    agents = [o for o in gc.get_objects() if isinstance(o, mod.Agent) and not o.detached]
    assert len(agents) == 1, agents
    return agents[0]


def has_hook(code):
    return any(type(k).__name__ == "Hook" for k in code.co_consts)


class SwapTestCase(AgentTestCase):
    def evaluate(self, c, tid, expr, frame=0):
        body = c.request("evaluate", thread=tid, expression=expr, mode="eval", frame=frame)
        self.assertNotIn("exception", body, body)
        return body["result"]

    def assert_hook_stop(self, c, tid, line, function):
        """Stopped at `line` in `function`, agent frames hidden, and (3.9-3.11) no tracer."""
        stack = c.request("stack", thread=tid)["frames"]
        self.assertEqual((stack[0]["line"], stack[0]["function"]), (line, function))
        self.assertFalse(any("pymri_agent" in f["file"] for f in stack), stack)
        if SETTRACE:
            self.assertEqual(self.evaluate(c, tid, "__import__('sys').gettrace()"), "None")
        return stack


class InstrumentedBreakpointTests(SwapTestCase):
    def test_fires_with_locals_stack_and_hidden_hook(self):
        original = ps.plain.__code__
        p, c, tid = self.start(lambda: ps.plain(5))
        bp = c.request("set_breakpoint", file=F, line=L("plain-body"))["breakpoint"]
        if SETTRACE:
            self.assertIsNot(ps.plain.__code__, original)
            self.assertTrue(has_hook(ps.plain.__code__))
        c.request("continue", thread=tid)
        seen = []
        for _ in range(5):
            st = c.wait_event("stopped", reason="breakpoint")
            self.assertEqual(st["breakpoints"], [bp["id"]])
            self.assertEqual(st["frame"]["line"], L("plain-body"))
            self.assert_hook_stop(c, tid, L("plain-body"), "plain")
            seen.append((self.evaluate(c, tid, "i"), self.evaluate(c, tid, "total")))
            scopes = c.request("scopes", thread=tid)["scopes"]
            names = [v["name"] for v in c.request("variables", ref=scopes[0]["ref"])["variables"]]
            self.assertEqual(sorted(names), ["i", "n", "total"])
            c.request("continue", thread=tid)
        self.assertEqual(seen, [("0", "0"), ("1", "0"), ("2", "1"), ("3", "3"), ("4", "6")])
        self.assertEqual(p.wait_result(), 10)
        self.assertEqual(c.request("list_breakpoints")["breakpoints"][0]["hits"], 5)
        c.request("clear_breakpoints", all=True)
        self.assertIs(ps.plain.__code__, original)

    def test_conditions_true_false_raising(self):
        original = ps.plain.__code__
        p, c, tid = self.start(lambda: (ps.plain(6), ps.plain(3), ps.plain(2)))
        bp = c.request("set_breakpoint", file=F, line=L("plain-body"), condition="i == 4")["breakpoint"]
        self.assertIsNot(ps.plain.__code__, original)  # every version: an inline condition
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        self.assert_hook_stop(c, tid, L("plain-body"), "plain")
        self.assertEqual(self.evaluate(c, tid, "i"), "4")
        self.assertEqual(c.request("list_breakpoints")["breakpoints"][0]["hits"], 5)
        # never true: plain(3) runs without stopping, hits still counted (pdb)
        c.request("update_breakpoint", id=bp["id"], condition="i > 100")
        c.request("set_breakpoint", file=F, line=L("plain-return"), condition="n == 2")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["line"], L("plain-return"))
        self.assertEqual(self.evaluate(c, tid, "n"), "2")
        hits = {b["line"]: b["hits"] for b in c.request("list_breakpoints")["breakpoints"]}
        self.assertEqual(hits[L("plain-body")], 6 + 3 + 2)  # all iterations of the 3 calls
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), (15, 3, 1))
        c.request("clear_breakpoints", all=True)
        self.assertIs(ps.plain.__code__, original)

    @unittest.skipIf(SETTRACE, "3.12+: sys.monitoring serves plain breakpoints")
    def test_plain_breakpoints_do_not_walk_the_heap(self):
        original = ps.plain.__code__
        p, c, tid = self.start(lambda: ps.plain(3))
        swapper = live_agent().swapper
        scans = []
        scan = swapper._scan
        swapper._scan = lambda files: scans.append(files) or scan(files)
        try:
            c.request("set_breakpoint", file=F, line=L("plain-body"))
            self.assertEqual((scans, swapper.status.get(F)), ([], "idle"))
            self.assertIs(ps.plain.__code__, original)
            c.request("set_breakpoint", file=F, line=L("plain-return"), condition="n == 3")
            self.assertEqual(len(scans), 1)
            self.assertIsNot(ps.plain.__code__, original)
            c.request("clear_breakpoints", file=F, line=L("plain-return"))
            self.assertEqual(len(scans), 2)  # the instrumented code had to be restored
            self.assertIs(ps.plain.__code__, original)
        finally:
            del swapper._scan
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["line"], L("plain-body"))
        c.request("clear_breakpoints", all=True)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 3)

    def test_raising_condition_stops_with_error(self):
        p, c, tid = self.start(lambda: ps.plain(3))
        c.request("set_breakpoint", file=F, line=L("plain-body"), condition="undefined_name_q > 1")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertIn("NameError", st["condition_error"])
        self.assert_hook_stop(c, tid, L("plain-body"), "plain")
        with self.assertRaises(RequestFailed) as cm:  # not from the error path of an inline condition
            c.request("jump", thread=tid, line=L("plain-return"))
        self.assertEqual(cm.exception.code, "bad_state")
        c.request("clear_breakpoints", all=True)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 3)

    def test_constructs(self):
        cases = [
            (lambda: ps.Child().greet(), "super", ["greet"], "base+child"),
            (lambda: ps.outer(4), "inner", ["inner"] * 3, [0, 4, 8]),
            (lambda: ps.make_adder(2)(3), "lambda", ["make_adder", "<lambda>"], 5),
            (lambda: list(ps.gen(3)), "gen", ["gen"] * 3, [0, 2, 4]),
            (lambda: ps.run_async(1), "async", ["acoro"], 2),
            (lambda: ps.decorated(2), "decorated", ["decorated"], 20),
        ]
        for target, marker, functions, result in cases:
            with self.subTest(marker=marker):
                p, c, tid = self.start(target)
                c.request("set_breakpoint", file=F, line=L(marker))
                c.request("continue", thread=tid)
                for function in functions:
                    st = c.wait_event("stopped", reason="breakpoint")
                    self.assert_hook_stop(c, tid, L(marker), function)
                    c.request("continue", thread=tid)
                self.assertEqual(p.wait_result(), result)
                c.request("clear_breakpoints", all=True)
                p.finish()
                self._programs.remove(p)

    def test_decorated_stack_shows_wrapper(self):
        p, c, tid = self.start(lambda: ps.decorated(3))
        c.request("set_breakpoint", file=F, line=L("decorated"), condition="x == 3")
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        stack = self.assert_hook_stop(c, tid, L("decorated"), "decorated")
        self.assertEqual(stack[1]["function"], "wrapper")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 30)

    def test_disable_and_clear_restore_the_original_code(self):
        original = ps.plain.__code__
        p, c, tid = self.start(lambda: ps.plain(3))
        bp = c.request("set_breakpoint", file=F, line=L("plain-body"), condition="i == 1")["breakpoint"]
        self.assertIsNot(ps.plain.__code__, original)
        c.request("update_breakpoint", id=bp["id"], enabled=False)
        self.assertIs(ps.plain.__code__, original)
        c.request("update_breakpoint", id=bp["id"], enabled=True)
        self.assertIsNot(ps.plain.__code__, original)
        c.request("clear_breakpoints", ids=[bp["id"]])
        self.assertIs(ps.plain.__code__, original)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 3)

    def test_detach_restores(self):
        original = ps.plain.__code__
        original_inner = ps.decorated.__wrapped__.__code__
        p, c, tid = self.start(lambda: None)
        c.request("set_breakpoint", file=F, line=L("plain-body"), condition="i == 1")
        c.request("set_breakpoint", file=F, line=L("decorated"), condition="x == 1")
        self.assertIsNot(ps.plain.__code__, original)
        self.assertIsNot(ps.decorated.__wrapped__.__code__, original_inner)
        c.request("continue", thread=tid)
        p.wait_result()
        c.request("detach")
        c.wait_closed()
        p.finish()
        self.assertIs(ps.plain.__code__, original)
        self.assertIs(ps.decorated.__wrapped__.__code__, original_inner)
        self.assertEqual(ps.plain(3), 3)

    def test_temporary_ignore_hit_condition_log_on_instrumented_line(self):
        p, c, tid = self.start(lambda: ps.plain(10))
        c.request("set_breakpoint", file=F, line=L("plain-body"), condition="i % 2 == 0",
                  ignore_count=1, hit_condition=">= 2")
        c.request("set_breakpoint", file=F, line=L("plain-first"), log_message="n={n}")
        c.request("set_breakpoint", file=F, line=L("plain-return"), temporary=True)
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        # i=0 ignored, i=2 is the 1st counted (< 2), i=4 stops
        self.assertEqual(self.evaluate(c, tid, "i"), "4")
        self.assertEqual(c.wait_event("output", category="log")["text"], "n=10\n")
        c.request("clear_breakpoints", file=F, line=L("plain-body"))
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["line"], L("plain-return"))
        c.wait_event("breakpoint", reason="removed")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 45)


class SteppingAndJumpTests(SwapTestCase):
    def test_jump_from_inline_condition_stop(self):
        p, c, tid = self.start(lambda: ps.plain(5))
        c.request("set_breakpoint", file=F, line=L("plain-body"), condition="i == 2")
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        body = c.request("jump", thread=tid, line=L("plain-return"))
        self.assertEqual(body["line"], L("plain-return"))
        stack = c.request("stack", thread=tid)["frames"]
        self.assertEqual(stack[0]["line"], L("plain-return"))
        self.assertEqual(self.evaluate(c, tid, "total"), "1")
        with self.assertRaises(RequestFailed) as cm:
            c.request("jump", thread=tid, line=100000)
        self.assertEqual(cm.exception.code, "invalid_location")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 1)

    def test_failed_jump_keeps_the_stop_at_the_breakpoint(self):
        p, c, tid = self.start(lambda: ps.plain(3))
        c.request("set_breakpoint", file=F, line=L("plain-body"))
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        with self.assertRaises(RequestFailed) as cm:
            c.request("jump", thread=tid, line=100000)
        self.assertEqual(cm.exception.code, "invalid_location")
        self.assertEqual(c.request("stack", thread=tid)["frames"][0]["line"], L("plain-body"))
        c.request("clear_breakpoints", all=True)
        st = self.step(c, tid, "next")
        self.assertEqual(st["frame"]["line"], L("plain-body") - 1)  # the for line: no second stop
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 3)

    def step(self, c, tid, cmd, **kw):
        c.request(cmd, thread=tid, **kw)
        return c.wait_event("stopped", thread=tid)

    def test_steps_from_and_onto_instrumented_lines(self):
        p, c, tid = self.start(lambda: ps.plain(2))
        b1 = c.request("set_breakpoint", file=F, line=L("plain-first"))["breakpoint"]
        b2 = c.request("set_breakpoint", file=F, line=L("plain-return"), condition="n == 2")["breakpoint"]
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["breakpoints"], [b1["id"]])
        lines = []
        for _ in range(6):
            st = self.step(c, tid, "next", stop_at_return=False)
            lines.append((st["frame"]["line"], st["reason"], st.get("breakpoints")))
            if st["frame"]["line"] == L("plain-return"):
                break
        body, loop = L("plain-body"), L("plain-body") - 1
        self.assertEqual(lines, [(loop, "step", None), (body, "step", None), (loop, "step", None),
                                 (body, "step", None), (loop, "step", None),
                                 (L("plain-return"), "breakpoint", [b2["id"]])])
        hits = {b["id"]: b["hits"] for b in c.request("list_breakpoints")["breakpoints"]}
        self.assertEqual(hits, {b1["id"]: 1, b2["id"]: 1})
        st = self.step(c, tid, "step")
        self.assertEqual(st["reason"], "return")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 1)

    def test_step_into_from_hook_stop(self):
        p, c, tid = self.start(lambda: ps.outer(2))
        c.request("set_breakpoint", file=F, line=L("inner"), condition="m == 1")
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        st = self.step(c, tid, "step")
        self.assertEqual((st["reason"], st["frame"]["function"]), ("return", "inner"))
        st = self.step(c, tid, "step")
        self.assertNotIn("pymri_agent", st["frame"]["file"])
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), [0, 2, 4])


class OldFramesAndFallbackTests(SwapTestCase):
    def test_breakpoint_in_loop_running_in_another_thread(self):
        flag, started = threading.Event(), threading.Event()
        worker = threading.Thread(target=ps.spin, args=(flag, started), name="spinner", daemon=True)
        worker.start()
        started.wait(10)
        original = ps.spin.__code__
        p, c, tid = self.start(lambda: None)
        c.request("set_breakpoint", file=F, line=L("spin"), condition="n > 10")
        if SETTRACE:
            self.assertIsNot(ps.spin.__code__, original)  # new calls are instrumented
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")  # the old frame is traced
        self.assertEqual(st["thread_name"], "spinner")
        self.assertEqual(st["frame"]["line"], L("spin"))
        c.request("clear_breakpoints", all=True)
        self.assertIs(ps.spin.__code__, original)
        flag.set()
        c.request("continue", thread=st["thread"])
        worker.join(10)
        self.assertFalse(worker.is_alive())
        p.wait_result()

    def test_closures_created_by_a_running_parent_are_instrumented(self):
        flag, started, out = threading.Event(), threading.Event(), []
        worker = threading.Thread(target=ps.closure_factory, args=(flag, started, out),
                                  name="factory", daemon=True)
        worker.start()
        started.wait(10)
        p, c, tid = self.start(lambda: None)
        c.request("set_breakpoint", file=F, line=L("cb"), condition="v > 3")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        wt = st["thread"]
        self.assertEqual(st["thread_name"], "factory")
        # the parent frame's constants were patched: the closure runs instrumented code (3.12+
        # too, where sys.monitoring would cover it, at several times the cost for a condition)
        self.assert_hook_stop(c, wt, L("cb"), "cb")
        self.assertEqual(self.evaluate(c, wt, "any(type(k).__name__ == 'Hook' for k in cb.__code__.co_consts)",
                                       frame=1), "True")
        c.request("clear_breakpoints", all=True)
        flag.set()
        c.request("continue", thread=wt)
        worker.join(10)
        self.assertFalse(worker.is_alive())
        p.wait_result()
        # restored: closures created now run the original code again
        def factory_code_consts():
            return [k for k in ps.closure_factory.__code__.co_consts if hasattr(k, "co_code")]
        self.assertFalse(any(has_hook(k) for k in factory_code_consts()))

    def test_file_changed_on_disk_falls_back_to_tracing(self):
        import importlib
        import linecache
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "swap_edited_mod.py")
        with open(path, "w") as f:
            f.write("def f(x):\n    y = x + 1\n    return y * 2\n")
        sys.path.insert(0, d)
        self.addCleanup(sys.path.remove, d)
        mod = importlib.import_module("swap_edited_mod")
        self.addCleanup(sys.modules.pop, "swap_edited_mod", None)
        original = mod.f.__code__
        with open(path, "w") as f:  # edited after import: a line inserted at the top
            f.write("# edited\ndef f(x):\n    y = x + 1\n    return y * 2\n")
        linecache.checkcache(path)
        p, c, tid = self.start(lambda: mod.f(4))
        c.request("set_breakpoint", file=path, line=3, condition="x == 4")  # `return y * 2`
        agent = live_agent()
        self.assertEqual(agent.swapper.status.get(path), "refused")
        self.assertIs(mod.f.__code__, original)
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["line"], 3)
        self.assertEqual(self.evaluate(c, tid, "y"), "5")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 10)

    def test_line_that_cannot_be_instrumented_is_traced(self):
        p, c, tid = self.start(lambda: ps.outer(2))
        # before 3.12 the list comprehension's own code executes this line too (no statement can
        # precede it there); 3.12+ inlines it, with a loop jumping back into the line
        line = L("inner") + 1
        c.request("set_breakpoint", file=F, line=line, condition="n == 2")
        agent = live_agent()
        self.assertNotIn(line, agent.swapper.hooked.get(F, ()))
        self.assertIn(line, agent.swapper.fallback.get(F, ()))
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["function"], "outer")
        if SETTRACE:
            c.request("continue", thread=tid)
            st = c.wait_event("stopped", reason="breakpoint")
            self.assertEqual(st["frame"]["function"], "<listcomp>")
        c.request("clear_breakpoints", all=True)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), [0, 2, 4])


class LaunchTests(AgentTestCase):
    def launch(self, argv, **kw):
        p = LaunchedProgram(argv, **kw)
        self.addCleanup(p.kill)
        return p

    def _script(self, text):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "swap_script.py")
        with open(path, "w") as f:
            f.write(text)
        return path

    SCRIPT = ("import sys\n"
              "def work(n):\n"
              "    total = 0\n"
              "    for i in range(n):\n"
              "        assert i >= 0\n"
              "        total += i\n"
              "    return total\n"
              "r = work(5)\n"
              "print('result', r)\n")

    def _tracer(self, c, tid):
        body = c.request("evaluate", thread=tid, expression="sys.gettrace()", mode="eval")
        return body.get("result")

    def test_breakpoint_set_before_start(self):
        path = self._script(self.SCRIPT)
        p = self.launch([path])
        c = p.controller
        c.request("set_breakpoint", file=path, line=6, condition="i == 3")
        c.request("set_breakpoint", file=path, line=9)  # module level
        c.request("start", stop_on_entry=False, thread_offsets=thread_offsets())
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual((st["frame"]["line"], st["frame"]["function"]), (6, "work"))
        self.assertEqual(c.request("evaluate", thread=st["thread"], expression="i")["result"], "3")
        if SETTRACE:
            self.assertEqual(self._tracer(c, st["thread"]), "None")
        c.request("continue", thread=st["thread"])
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual((st["frame"]["line"], st["frame"]["function"]), (9, "<module>"))
        if SETTRACE:
            self.assertEqual(self._tracer(c, st["thread"]), "None")
        c.request("continue", thread=st["thread"])
        self.assertEqual(c.wait_event("exited")["code"], 0)
        c.request("quit")
        code, out, err = p.wait()
        self.assertEqual((code, out, err), (0, "result 10\n", ""))

    def test_breakpoint_set_at_entry_stop_in_function_defined_later(self):
        path = self._script(self.SCRIPT)
        p = self.launch([path])
        c = p.controller
        c.request("start", stop_on_entry=True, thread_offsets=thread_offsets())
        st = c.wait_event("stopped", reason="entry")
        c.request("set_breakpoint", file=path, line=6, condition="i == 2")
        c.request("continue", thread=st["thread"])
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(c.request("evaluate", thread=st["thread"], expression="i")["result"], "2")
        # `work` was created from the running module code: its constants were patched
        hooked = "any(type(k).__name__ == 'Hook' for k in work.__code__.co_consts)"
        self.assertEqual(c.request("evaluate", thread=st["thread"], expression=hooked)["result"], "True")
        if SETTRACE:
            self.assertEqual(self._tracer(c, st["thread"]), "None")
        c.request("continue", thread=st["thread"])
        self.assertEqual(c.wait_event("exited")["code"], 0)
        c.request("quit")
        self.assertEqual(p.wait()[0], 0)

    def test_optimized_interpreter(self):
        # -O: asserts are compiled out; the safety check compiles with the same level
        path = self._script(self.SCRIPT)
        p = self.launch([path], env_extra={"PYTHONOPTIMIZE": "1"})
        c = p.controller
        c.request("set_breakpoint", file=path, line=6, condition="i == 4")
        c.request("start", stop_on_entry=False, thread_offsets=thread_offsets())
        st = c.wait_event("stopped", reason="breakpoint")
        tid = st["thread"]
        self.assertEqual(c.request("evaluate", thread=tid, expression="sys.flags.optimize")["result"], "1")
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "4")
        if SETTRACE:
            self.assertEqual(self._tracer(c, tid), "None")
        c.request("continue", thread=tid)
        self.assertEqual(c.wait_event("exited")["code"], 0)
        c.request("quit")
        self.assertEqual(p.wait()[0], 0)
