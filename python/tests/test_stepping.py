import gc
import sys
import unittest
import warnings

from helpers import MONITORING, AgentTestCase, RequestFailed, line_of  # first: puts progs/ on sys.path
import prog_basic as pb  # noqa: E402

F = pb.__file__


def L(marker):
    return line_of(F, marker)


class SteppingTests(AgentTestCase):
    def stop_at(self, target, marker):
        return self.run_to(target, F, L(marker))

    def step(self, c, tid, cmd, **args):
        c.request(cmd, thread=tid, **args)
        c.wait_event("continued", thread=tid)
        return c.wait_event("stopped", thread=tid)

    def test_next_steps_over_calls(self):
        p, c, tid = self.stop_at(pb.caller, "caller-first")
        st = self.step(c, tid, "next")
        self.assertEqual((st["reason"], st["frame"]["line"]), ("step", L("caller-call")))
        st = self.step(c, tid, "next")
        self.assertEqual(st["frame"]["line"], L("caller-after"))
        self.assertEqual(c.request("evaluate", thread=tid, expression="b")["result"], "3")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 26)

    def test_step_into_and_return(self):
        p, c, tid = self.stop_at(pb.caller, "caller-call")
        st = self.step(c, tid, "step")
        # pdb's `--Call--`: the call, on the `def` line, before the first line
        self.assertEqual((st["reason"], st["frame"]["function"], st["frame"]["line"]),
                         ("call", "helper", L("helper-first") - 1))
        with self.assertRaises(RequestFailed):
            c.request("retval", thread=tid)
        st = self.step(c, tid, "step")
        self.assertEqual((st["reason"], st["frame"]["function"], st["frame"]["line"]),
                         ("step", "helper", L("helper-first")))
        st = self.step(c, tid, "step_out")
        self.assertEqual(st["reason"], "return")
        self.assertEqual(st["frame"]["function"], "helper")
        self.assertEqual(st["return_value"], "3")
        self.assertEqual(c.request("retval", thread=tid)["value"], "3")
        st = self.step(c, tid, "next")
        self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("caller", L("caller-after")))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 26)

    def test_next_stops_at_return_then_caller(self):
        p, c, tid = self.stop_at(pb.caller, "helper-second")
        st = self.step(c, tid, "next")
        self.assertEqual(st["frame"]["line"], L("helper-return"))
        st = self.step(c, tid, "next")
        self.assertEqual((st["reason"], st["frame"]["function"]), ("return", "helper"))
        st = self.step(c, tid, "next")
        self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("caller", L("caller-after")))
        # DAP style: no stop at the return event
        c.request("set_breakpoint", file=F, line=L("inner-return"), temporary=True)
        c.request("continue", thread=tid)
        p.wait_result()

    def test_next_stops_where_an_exception_is_raised(self):
        # pdb: the exception at its line, before the frame unwinds; then, handled in the same
        # frame, the `except` line.
        p, c, tid = self.stop_at(pb.raiser, "raise")
        st = self.step(c, tid, "next")
        self.assertEqual((st["reason"], st["frame"]["line"]), ("exception", L("raise")))
        self.assertEqual(st["exception"]["text"], "ValueError: boom")
        with self.assertRaises(RequestFailed):
            c.request("retval", thread=tid)
        st = self.step(c, tid, "next")
        self.assertEqual((st["reason"], st["frame"]["line"]), ("step", L("raise") + 1))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), "caught")

    def test_steps_over_an_unwinding_frame(self):
        # The raising frame: exception, then its return with None; the caller: the exception
        # where it arrived, and so on outwards. `until` and `return` at a return stop go on in
        # the caller like `next`.
        p, c, tid = self.stop_at(pb.raise_through, "raise deep")
        st = self.step(c, tid, "next")
        self.assertEqual((st["reason"], st["frame"]["line"]), ("exception", L("raise deep")))
        self.assertEqual(st["exception"]["text"], "KeyError: 'deep'")
        st = self.step(c, tid, "next")
        self.assertEqual((st["reason"], st["frame"]["line"], st["return_value"]),
                         ("return", L("raise deep"), "None"))
        self.assertEqual(c.request("retval", thread=tid)["value"], "None")
        st = self.step(c, tid, "until")
        self.assertEqual((st["reason"], st["frame"]["function"], st["frame"]["line"]),
                         ("exception", "raise_deep", L("raise deep") + 1))
        self.assertEqual(c.request("evaluate", thread=tid, expression="n")["result"], "1")
        st = self.step(c, tid, "step_out")
        self.assertEqual((st["reason"], st["return_value"]), ("return", "None"))
        st = self.step(c, tid, "step_out")
        self.assertEqual((st["reason"], st["frame"]["function"]), ("exception", "raise_deep"))
        self.assertEqual(c.request("evaluate", thread=tid, expression="n")["result"], "2")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), "caught deep")

    def test_dap_step_does_not_stop_at_the_call(self):
        p, c, tid = self.stop_at(pb.caller, "caller-call")
        st = self.step(c, tid, "step", stop_at_return=False)
        self.assertEqual((st["reason"], st["frame"]["line"]), ("step", L("helper-first")))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 26)

    def test_dap_next_does_not_stop_at_an_exception(self):
        p, c, tid = self.stop_at(pb.raiser, "raise")
        st = self.step(c, tid, "next", stop_at_return=False)
        self.assertEqual((st["reason"], st["frame"]["line"]), ("step", L("raise") + 1))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), "caught")

    def test_next_over_a_yield_goes_on_in_the_generator(self):
        # pdb: `next` at a yield does not stop there (no --Return--) but where the generator
        # resumes; `return` at a yield stops at the caller's next line.
        p, c, tid = self.stop_at(pb.consume_gen, "gen-yield")
        st = self.step(c, tid, "next")
        self.assertEqual((st["reason"], st["frame"]["function"], st["frame"]["line"]),
                         ("step", "gen", L("gen-yield") - 1))
        st = self.step(c, tid, "next")
        self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("gen", L("gen-yield")))
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "1")
        st = self.step(c, tid, "step_out")
        self.assertEqual((st["reason"], st["frame"]["function"], st["frame"]["line"]),
                         ("step", "consume_gen", L("consume") + 1))
        self.assertEqual(c.request("evaluate", thread=tid, expression="v")["result"], "10")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 30)

    def test_next_without_return_stops(self):
        p, c, tid = self.stop_at(pb.caller, "helper-return")
        st = self.step(c, tid, "next", stop_at_return=False)
        self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("caller", L("caller-after")))
        c.request("continue", thread=tid)
        p.wait_result()

    @unittest.skipUnless(MONITORING, "sys.monitoring (3.12+)")
    def test_next_leaves_the_start_events_of_callees_disabled(self):
        # With a breakpoint set, PY_START is global (to find code objects created later); over
        # a `next`, each callee location must call the agent once, not on every call it makes.
        p, c = self.attach(lambda: pb.loop_caller(300))
        tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_breakpoint", file=F, line=L("loop-call"), temporary=True)
        c.request("set_breakpoint", file=F, line=L("never"))
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        engine = sys.modules["pymri_agent.engine"]
        (agent,) = [o for o in gc.get_objects() if isinstance(o, engine.Agent) and not o.detached]
        backend = agent.backend
        started = []
        start_fast = backend._start_fast

        def counting(code, depth=2):
            started.append(code.co_name)
            return start_fast(code, depth)

        backend._start_fast = counting
        try:
            st = self.step(c, tid, "next")
        finally:
            del backend._start_fast
        self.assertEqual(st["frame"]["line"], L("loop-call-after"))
        self.assertEqual(started.count("add"), 1)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), sum(range(300)))

    def test_until(self):
        p, c, tid = self.stop_at(lambda: pb.loop(5), "loop-body")
        st = self.step(c, tid, "until")
        self.assertEqual(st["frame"]["line"], L("loop-return"))
        self.assertEqual(c.request("evaluate", thread=tid, expression="c.total")["result"], "10")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 10)

    def test_until_line(self):
        p, c, tid = self.stop_at(pb.caller, "caller-first")
        st = self.step(c, tid, "until", line=L("caller-more"))
        self.assertEqual(st["frame"]["line"], L("caller-more"))
        with self.assertRaises(RequestFailed):
            c.request("until", thread=tid, line=L("caller-first"))
        c.request("continue", thread=tid)
        p.wait_result()

    def test_jump(self):
        p, c, tid = self.stop_at(pb.jumper, "jump-skip")
        body = c.request("jump", thread=tid, line=L("jump-target"))
        self.assertEqual(body["line"], L("jump-target"))
        st = self.step(c, tid, "next")
        self.assertEqual(st["frame"]["line"], L("jump-return"))
        self.assertEqual(c.request("evaluate", thread=tid, expression="n")["result"], "100")
        with self.assertRaises(RequestFailed):
            c.request("jump", thread=tid, line=10000)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 100)

    @unittest.skipUnless(sys.version_info >= (3, 13), "a jump binds unbound locals to None from 3.13")
    def test_jump_warning_names_the_program(self):
        p, c, tid = self.stop_at(pb.unbound_jumper, "unbound-assign")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            body = c.request("jump", thread=tid, line=L("unbound-use"))
        self.assertEqual(body["line"], L("unbound-use"))
        self.assertEqual([(w.category, str(w.message), w.filename, w.lineno) for w in caught],
                         [(RuntimeWarning, "assigning None to 1 unbound local", F, L("unbound-use"))])
        c.request("continue", thread=tid)
        self.assertIsNone(p.wait_result())

    @unittest.skipUnless(sys.version_info >= (3, 13), "a jump binds unbound locals to None from 3.13")
    def test_jump_fails_when_the_program_makes_its_warning_an_error(self):
        p, c, tid = self.stop_at(pb.unbound_jumper, "unbound-assign")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with self.assertRaises(RequestFailed) as cm:
                c.request("jump", thread=tid, line=L("unbound-use"))
        self.assertEqual(cm.exception.message, "Jump failed: assigning None to 1 unbound local")
        frame = c.request("stack", thread=tid)["frames"][0]
        self.assertEqual(frame["line"], L("unbound-assign"))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 1)

    def test_step_from_attach_stop(self):
        p, c = self.attach(lambda: pb.helper(1))
        tid = c.wait_event("stopped", reason="attach")["thread"]
        with self.assertRaises(RequestFailed) as cm:
            c.request("jump", thread=tid, line=1)
        self.assertEqual(cm.exception.code, "bad_state")
        st = self.step(c, tid, "step")
        # the first line the program runs after the bootstrap returned (never the agent's)
        self.assertFalse(st["frame"]["file"].endswith(("attach.py", "engine.py")))
        stack = c.request("stack", thread=tid)["frames"]
        self.assertFalse(any("pymri_agent" in f["file"] for f in stack))
        c.request("continue", thread=tid)
        p.wait_result()

    def test_breakpoint_in_generator_and_coroutine(self):
        p, c, tid = self.stop_at(lambda: (pb.consume_gen(), pb.run_async()), "gen-yield")
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "0")
        c.request("set_breakpoint", file=F, line=L("gen-yield"), condition="i == 2")
        c.request("set_breakpoint", file=F, line=L("coro"))
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "2")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["function"], "coro_work")
        self.assertEqual(c.request("evaluate", thread=tid, expression="x")["result"], "41")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), (30, 42))

    def test_recursive_function_breakpoint(self):
        p, c = self.attach(lambda: pb.fact(4))
        tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_function_breakpoints", breakpoints=[{"function": "prog_basic.fact",
                                                            "hit_condition": ">= 3"}])
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["line"], L("fact-first"))
        self.assertEqual(c.request("evaluate", thread=tid, expression="n")["result"], "2")
        stack = c.request("stack", thread=tid)["frames"]
        self.assertEqual([f["function"] for f in stack[:3]], ["fact", "fact", "fact"])
        c.request("set_function_breakpoints", breakpoints=[])  # else fact(1) would stop first
        st = self.step(c, tid, "step_out")
        self.assertEqual((st["reason"], st["return_value"]), ("return", "2"))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 24)
