import threading

from helpers import AgentTestCase, RequestFailed, line_of  # first: puts progs/ on sys.path
import prog_basic as pb  # noqa: E402

F = pb.__file__


def L(marker):
    return line_of(F, marker)


class BreakpointTests(AgentTestCase):
    def test_line_breakpoint_by_basename_and_pdb_numbering(self):
        p, c, tid = self.start(lambda: pb.caller())
        bp1 = c.request("set_breakpoint", file="prog_basic.py", line=L("helper-second"))["breakpoint"]
        bp2 = c.request("set_breakpoint", file=F, line=L("caller-more"))["breakpoint"]
        self.assertEqual((bp1["id"], bp2["id"]), (1, 2))
        self.assertEqual(bp1["file"], F)
        self.assertTrue(bp1["verified"])
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["breakpoints"], [1])
        self.assertEqual(st["frame"]["line"], L("helper-second"))
        self.assertEqual(st["frame"]["function"], "helper")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["breakpoints"], [2])
        bps = c.request("list_breakpoints")["breakpoints"]
        self.assertEqual([b["hits"] for b in bps], [1, 1])
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 26)

    def test_invalid_locations(self):
        p, c, tid = self.start(lambda: None)
        with self.assertRaises(RequestFailed) as cm:
            c.request("set_breakpoint", file=F, line=1 + L("never"))  # blank line
        self.assertEqual(cm.exception.code, "invalid_location")
        with self.assertRaises(RequestFailed) as cm:
            c.request("set_breakpoint", file=F, line=100000)
        self.assertEqual(cm.exception.code, "invalid_location")
        with self.assertRaises(RequestFailed) as cm:
            c.request("set_breakpoint", file="no_such_file_xyz.py", line=3)
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(RequestFailed) as cm:
            c.request("set_breakpoint", function="no_such_function_xyz")
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(RequestFailed) as cm:
            c.request("set_breakpoint", file=F, line=L("add"), condition="(")
        self.assertEqual(cm.exception.code, "invalid_breakpoint")
        with self.assertRaises(RequestFailed) as cm:
            c.request("set_breakpoint", file=F, line=L("add"), hit_condition="often")
        self.assertEqual(cm.exception.code, "invalid_breakpoint")
        with self.assertRaises(RequestFailed) as cm:
            c.request("no_such_command")
        self.assertEqual(cm.exception.code, "unknown_command")
        c.request("continue", thread=tid)
        p.wait_result()

    def test_function_breakpoints(self):
        p, c, tid = self.start(lambda: (pb.caller(), pb.loop(3)))
        b1 = c.request("set_breakpoint", function="prog_basic.helper")["breakpoint"]
        b2 = c.request("set_breakpoint", function="prog_basic.Counter.add")["breakpoint"]
        self.assertEqual(b1["kind"], "function")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("helper", L("helper-first")))
        self.assertEqual(st["breakpoints"], [b1["id"]])
        c.request("clear_breakpoints", ids=[b1["id"]])
        c.request("continue", thread=tid)
        for _ in range(3):
            st = c.wait_event("stopped", reason="breakpoint")
            self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("add", L("add")))
            c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), (26, 3))
        self.assertEqual(b2["id"], 2)

    def test_function_breakpoint_in_stopped_frame_globals(self):
        p, c, tid = self.start(lambda: pb.caller())
        # stop inside caller(), then `break helper` resolves in that frame's globals
        c.request("set_breakpoint", file=F, line=L("caller-first"))
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        bp = c.request("set_breakpoint", function="helper", thread=tid, frame=0)["breakpoint"]
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["breakpoints"], [bp["id"]])
        self.assertEqual(st["frame"]["line"], L("helper-first"))
        c.request("continue", thread=tid)
        p.wait_result()

    def test_conditional_breakpoint(self):
        p, c, tid = self.start(lambda: pb.loop(10))
        c.request("set_breakpoint", file=F, line=L("loop-body"), condition="i == 7")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "7")
        bp = c.request("list_breakpoints")["breakpoints"][0]
        self.assertEqual(bp["hits"], 8)
        # change the condition while stopped
        c.request("update_breakpoint", id=bp["id"], condition="i == 9")
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "9")
        c.request("update_breakpoint", id=bp["id"], condition=None)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 45)

    def test_condition_error_stops(self):
        p, c, tid = self.start(lambda: pb.loop(3))
        c.request("set_breakpoint", file=F, line=L("loop-body"), condition="undefined_name > 1")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertIn("NameError", st["condition_error"])
        c.request("clear_breakpoints", all=True)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 3)

    def test_temporary_breakpoint(self):
        p, c, tid = self.start(lambda: pb.loop(5))
        bp = c.request("set_breakpoint", file=F, line=L("loop-body"), temporary=True)["breakpoint"]
        self.assertTrue(bp["temporary"])
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        ev = c.wait_event("breakpoint", reason="removed")
        self.assertEqual(ev["breakpoint"]["id"], bp["id"])
        self.assertEqual(c.request("list_breakpoints")["breakpoints"], [])
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 10)

    def test_ignore_count_and_disable(self):
        p, c, tid = self.start(lambda: pb.loop(10))
        bp = c.request("set_breakpoint", file=F, line=L("loop-body"), ignore_count=4)["breakpoint"]
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "4")
        c.request("update_breakpoint", id=bp["id"], enabled=False)
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 45)
        bp = c.request("list_breakpoints")["breakpoints"][0]
        self.assertFalse(bp["enabled"])
        self.assertEqual(bp["hits"], 5)

    def test_reenable_after_disable(self):
        gate = threading.Event()
        go = threading.Event()

        def target():
            pb.loop(3)
            gate.set()
            go.wait(10)
            return pb.loop(4)

        p, c, tid = self.start(target)
        bp = c.request("set_breakpoint", file=F, line=L("loop-body"), enabled=False)["breakpoint"]
        c.request("continue", thread=tid)
        gate.wait(10)
        c.request("update_breakpoint", id=bp["id"], enabled=True)
        go.set()
        c.wait_event("stopped", reason="breakpoint")
        c.request("clear_breakpoints", file=F, line=L("loop-body"))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 6)

    def test_hit_condition(self):
        p, c, tid = self.start(lambda: pb.loop(10))
        c.request("set_breakpoint", file=F, line=L("loop-body"), hit_condition="% 3")
        c.request("continue", thread=tid)
        seen = []
        for _ in range(3):
            c.wait_event("stopped", reason="breakpoint")
            seen.append(c.request("evaluate", thread=tid, expression="i")["result"])
            c.request("continue", thread=tid)
        self.assertEqual(seen, ["2", "5", "8"])
        self.assertEqual(p.wait_result(), 45)

    def test_hit_condition_ge_with_condition(self):
        p, c, tid = self.start(lambda: pb.loop(10))
        c.request("set_breakpoints", file=F, breakpoints=[
            {"line": L("loop-body"), "condition": "i % 2 == 0", "hit_condition": ">= 4"}])
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(c.request("evaluate", thread=tid, expression="i")["result"], "6")
        c.request("set_breakpoints", file=F, breakpoints=[])
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 45)

    def test_log_message(self):
        p, c, tid = self.start(lambda: pb.loop(3))
        c.request("set_breakpoint", file=F, line=L("loop-body"), log_message="i={i} sq={i*i} {{x}}")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 3)
        texts = [c.wait_event("output", category="log")["text"] for _ in range(3)]
        self.assertEqual(texts, ["i=0 sq=0 {x}\n", "i=1 sq=1 {x}\n", "i=2 sq=4 {x}\n"])

    def test_breakpoint_in_code_defined_later(self):
        gate = threading.Event()

        def target():
            gate.wait(10)
            import prog_late  # imported only after the breakpoint was set
            return prog_late.late(4)

        import os
        late_path = os.path.join(os.path.dirname(F), "prog_late.py")
        p, c, tid = self.start(target)
        bp = c.request("set_breakpoint", file=late_path, line=line_of(late_path, "late"))["breakpoint"]
        self.assertTrue(bp["verified"])
        c.request("continue", thread=tid)
        gate.set()
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["function"], "inner_late")
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), 9)

    def test_exception_filter_raised(self):
        p, c, tid = self.start(lambda: pb.raiser())
        c.request("set_exception_filters", filters=["raised"])
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="exception")
        self.assertEqual(st["exception"]["type"], "ValueError")
        self.assertEqual(st["frame"]["line"], L("raise"))
        info = c.request("exception_info", thread=tid)
        self.assertEqual(info["message"], "boom")
        c.request("set_exception_filters", filters=[])
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), "caught")

    def test_exception_filter_raised_stops_once_per_raise(self):
        p, c, tid = self.start(lambda: pb.raise_through())
        c.request("set_exception_filters", filters=["raised"])
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="exception")
        self.assertEqual(st["frame"]["line"], L("raise deep"))
        # Unwinding through the three callers and into raise_through's handler is not a raise.
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), "caught deep")

    def test_exception_filter_uncaught_in_thread(self):
        quiet_hook_calls = []
        saved = threading.excepthook
        threading.excepthook = lambda args: quiet_hook_calls.append(args.exc_type)
        self.addCleanup(setattr, threading, "excepthook", saved)

        def target():
            t = threading.Thread(target=pb.divide, args=(1, 0), name="doomed")
            gate.wait(10)
            t.start()
            t.join(10)
            return "joined"

        gate = threading.Event()
        p, c, tid = self.start(target)
        c.request("set_exception_filters", filters=["uncaught"])
        c.request("continue", thread=tid)
        gate.set()
        st = c.wait_event("stopped", reason="exception")
        self.assertTrue(st["post_mortem"])
        self.assertEqual(st["thread_name"], "doomed")
        self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("divide", L("divide")))
        self.assertEqual(c.request("evaluate", thread=st["thread"], expression="a + b")["result"], "1")
        with self.assertRaises(RequestFailed):
            c.request("jump", thread=st["thread"], line=L("divide"))
        c.request("continue", thread=st["thread"])
        self.assertEqual(p.wait_result(), "joined")
        self.assertEqual(quiet_hook_calls, [ZeroDivisionError])  # the program's hook still ran
