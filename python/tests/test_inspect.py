import io
import sys
import threading
import types
import unittest
import warnings

from helpers import AgentTestCase, RequestFailed, line_of  # first: puts progs/ on sys.path
import prog_basic as pb  # noqa: E402
from pymri_agent import inspection  # noqa: E402

F = pb.__file__


def L(marker):
    return line_of(F, marker)


class InspectTests(AgentTestCase):
    def stop_at(self, target, marker):
        return self.run_to(target, F, L(marker))

    def test_stack_and_frames(self):
        p, c, tid = self.stop_at(pb.outer, "inner-first")
        stack = c.request("stack", thread=tid)
        names = [f["function"] for f in stack["frames"]]
        self.assertEqual(names[:2], ["inner", "outer"])
        self.assertNotIn("start", names)
        self.assertNotIn("bootstrap", names)
        self.assertFalse(any("pymri_agent" in f["file"] for f in stack["frames"]))
        self.assertEqual(stack["frames"][1]["line"], L("outer-call"))
        # addressing by frame_id
        fid = stack["frames"][1]["id"]
        self.assertEqual(c.request("evaluate", frame_id=fid, expression="secret")["result"], "5")
        c.request("continue", thread=tid)
        p.wait_result()

    def test_eval_exec_and_locals_write_back(self):
        p, c, tid = self.stop_at(pb.outer, "inner-first")
        ev = lambda expr, **kw: c.request("evaluate", thread=tid, expression=expr, **kw)  # noqa: E731
        self.assertEqual(ev("s")["result"], "5")
        self.assertEqual(ev("s", mode="eval")["type"], "int")
        self.assertEqual(ev("{'a': [1, 2]}", mode="pprint")["result"], "{'a': [1, 2]}")
        self.assertEqual(ev("'x'", mode="str")["result"], "x")
        # assignment in the top frame
        self.assertNotIn("result", ev("s = 41", mode="exec"))
        self.assertNotIn("result", ev("s += 1"))  # auto: a statement
        self.assertEqual(ev("s")["result"], "42")
        # assignment in an outer frame (`up` then `!secret = 7`)
        self.assertEqual(ev("secret", frame=1)["result"], "5")
        ev("secret = 7", frame=1, mode="exec")
        self.assertEqual(ev("secret", frame=1)["result"], "7")
        # errors come back as text, never raised into the program
        err = ev("1/0")
        self.assertEqual(err["exception"]["type"], "ZeroDivisionError")
        self.assertIn("division by zero", err["exception"]["text"])
        self.assertNotIn("pymri_agent", err["exception"]["traceback"])
        self.assertIn("SyntaxError", ev("if")["exception"]["type"])
        c.request("continue", thread=tid)
        # inner returned (42 + 1) * 10 and outer adds its modified secret
        self.assertEqual(p.wait_result(), 437)

    def test_captured_output_does_not_steal_other_threads(self):
        stop_flag = threading.Event()
        other_out = io.StringIO()
        started = threading.Event()

        def chatter():
            started.set()
            while not stop_flag.is_set():
                print("chatter", file=other_out)
                stop_flag.wait(0.001)

        p, c, tid = self.stop_at(pb.printer, "printer")
        t = threading.Thread(target=chatter)
        t.start()
        started.wait(5)
        real_stdout = sys.stdout
        try:
            body = c.request("evaluate", thread=tid, expression="print('hello from eval'); x", mode="exec")
            self.assertEqual(body["output"], "hello from eval\n")
            body = c.request("evaluate", thread=tid, expression="print('value', 1)")
            self.assertEqual(body["output"], "value 1\n")
            body = c.request("evaluate", thread=tid, expression="import sys; sys.stderr.write('err\\n')",
                             mode="exec")
            self.assertEqual(body["output"], "err\n")
        finally:
            stop_flag.set()
            t.join(5)
        self.assertIn("chatter", other_out.getvalue())
        c.request("continue", thread=tid)
        p.wait_result()
        p.finish()
        self.assertIs(sys.stdout, real_stdout)

    def test_completion(self):
        p, c, tid = self.stop_at(pb.outer, "inner-first")
        body = c.request("completions", thread=tid, text="p(s")
        self.assertEqual(body["start"], 2)
        self.assertIn("s", body["matches"])
        self.assertIn("sum", body["matches"])
        body = c.request("completions", thread=tid, text="threading.Thr")
        self.assertIn("Thread", body["matches"])
        body = c.request("completions", thread=tid, text="s.bit_")
        self.assertEqual(body["matches"], ["bit_count", "bit_length"] if sys.version_info >= (3, 10)
                         else ["bit_length"])
        c.request("continue", thread=tid)
        p.wait_result()

    def test_source_listing(self):
        p, c, tid = self.stop_at(pb.outer, "inner-first")
        body = c.request("source", thread=tid, function=True)  # ll
        self.assertEqual(body["first"], L("inner-first") - 1)
        self.assertEqual(body["lines"][0], "def inner(s):")
        self.assertEqual(len(body["lines"]), 3)
        self.assertEqual(body["current"], L("inner-first"))
        body = c.request("source", file="prog_basic.py", start=L("never") - 1, end=L("never"))  # l
        self.assertEqual(body["lines"], ["def never_called():", "    return 42  # MARK: never"])
        self.assertEqual(body["file"], F)
        c.request("continue", thread=tid)
        p.wait_result()

    def test_scopes_variables_set_variable(self):
        p, c, tid = self.stop_at(lambda: pb.loop(3), "loop-body")
        scopes = c.request("scopes", thread=tid)["scopes"]
        self.assertEqual([s["name"] for s in scopes], ["Locals", "Globals"])
        variables = c.request("variables", ref=scopes[0]["ref"])["variables"]
        by_name = {v["name"]: v for v in variables}
        self.assertEqual(by_name["n"]["value"], "3")
        self.assertEqual(by_name["i"]["value"], "0")
        self.assertNotEqual(by_name["c"]["ref"], 0)
        children = c.request("variables", ref=by_name["c"]["ref"])["variables"]
        self.assertEqual([(v["name"], v["value"]) for v in children], [("total", "0")])
        self.assertEqual(children[0]["evaluate_name"], "c.total")
        set_body = c.request("set_variable", ref=by_name["c"]["ref"], name="total", value="100")
        self.assertEqual(set_body["value"], "100")
        c.request("set_variable", ref=scopes[0]["ref"], name="n", value="1")
        self.assertEqual(c.request("evaluate", thread=tid, expression="n")["result"], "1")
        body = c.request("evaluate", thread=tid, expression="[1, [2, 3]]", want_ref=True)
        items = c.request("variables", ref=body["ref"])["variables"]
        self.assertEqual([v["value"] for v in items], ["1", "[2, 3]"])
        with self.assertRaises(RequestFailed):
            c.request("variables", ref=999999)
        c.request("continue", thread=tid)
        # range(3) was created before n changed; total started at 100 and the loop adds 0+1+2
        self.assertEqual(p.wait_result(), 103)

    def test_typed_code_is_named_as_pdb_names_it(self):
        # `p`'s expression is `<string>`, other lines `<stdin>`, interact's `<console>`, in
        # tracebacks and in warnings, also one whose stacklevel reaches past the typed code.
        p, c, tid = self.stop_at(pb.outer, "inner-first")
        sid = c.request("interact", thread=tid, action="start")["session"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for mode in ("eval", "auto", "exec"):
                body = c.request("evaluate", thread=tid, expression="warn_past_caller()", mode=mode)
                self.assertNotIn("exception", body)
            c.request("interact", thread=tid, session=sid, source="warn_past_caller()")
        self.assertEqual([(w.filename, w.lineno, str(w.message)) for w in caught],
                         [("<string>", 1, "past the caller"), ("<stdin>", 1, "past the caller"),
                          ("<stdin>", 1, "past the caller"), ("<console>", 1, "past the caller")])
        tb = c.request("evaluate", thread=tid, expression="1/0")["exception"]["traceback"]
        self.assertEqual(tb, 'Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\n'
                             'ZeroDivisionError: division by zero\n')
        tb = c.request("evaluate", thread=tid, expression="1/0", mode="eval")["exception"]["traceback"]
        self.assertIn('File "<string>", line 1, in <module>', tb)
        body = c.request("interact", thread=tid, session=sid, source="1/0")
        self.assertEqual(body["exception"]["traceback"],
                         'Traceback (most recent call last):\n  File "<console>", line 1, in <module>\n'
                         'ZeroDivisionError: division by zero\n')
        c.request("interact", thread=tid, session=sid, action="end")
        c.request("continue", thread=tid)
        p.wait_result()

    def test_whatis_args_interact(self):
        p, c, tid = self.stop_at(pb.outer, "inner-first")
        self.assertEqual(c.request("whatis", thread=tid, expression="s")["text"], "<class 'int'>")
        self.assertEqual(c.request("whatis", thread=tid, expression="inner")["text"], "Function inner")
        self.assertEqual(c.request("args", thread=tid)["args"], [{"name": "s", "value": "5"}])
        sid = c.request("interact", thread=tid, action="start")["session"]
        r = c.request("interact", thread=tid, session=sid, source="def f(a):")
        self.assertTrue(r["more"])
        c.request("interact", thread=tid, session=sid, source="    return a + 5")
        r = c.request("interact", thread=tid, session=sid, source="")
        self.assertFalse(r["more"])
        r = c.request("interact", thread=tid, session=sid, source="print(f(1))")
        self.assertEqual(r["output"], "6\n")
        r = c.request("interact", thread=tid, session=sid, source="s = 1000; print(s + 1)")
        self.assertEqual(r["output"], "1001\n")
        c.request("interact", thread=tid, session=sid, action="end")
        # interact has its own namespace: the frame's s is unchanged
        self.assertEqual(c.request("evaluate", thread=tid, expression="s")["result"], "5")
        c.request("continue", thread=tid)
        p.wait_result()


def _odd_sum(n):
    total = 0
    for i in range(n):
        if i % 2:
            total += i  # MARK: odd-add
    return total


class FrameLineTests(unittest.TestCase):
    def test_instruction_without_a_line_is_on_the_line_before(self):
        code = _odd_sum.__code__
        spans = list(getattr(code, "co_lines", lambda: [])())
        lineless = [i for i, (start, end, line) in enumerate(spans) if line is None and start < end]
        if not lineless:
            self.skipTest("every instruction of this code has a line on this version")
        for i in lineless:
            before = [line for _, _, line in spans[:i] if line is not None]
            frame = types.SimpleNamespace(f_lineno=None, f_code=code, f_lasti=spans[i][0])
            self.assertEqual(inspection.frame_line(frame), before[-1])
        if sys.version_info[:2] == (3, 11):  # the loop's closing jump, after the `if` body
            self.assertEqual(inspection.frame_line(types.SimpleNamespace(
                f_lineno=None, f_code=code, f_lasti=spans[lineless[-1]][0])), line_of(__file__, "odd-add"))

    def test_a_frame_with_a_line_keeps_it(self):
        frame = sys._getframe()
        self.assertEqual(inspection.frame_line(frame), frame.f_lineno)
