"""`exec`'s output stream and the REPL-like split of its code (req_exec), without a controller."""

import unittest

import helpers  # noqa: F401 - puts the package on sys.path
from pymri_agent import req_exec


class FakeAgent(object):
    def __init__(self):
        self.events = []

    def send_event(self, name, body):
        self.events.append((name, dict(body)))


class OutputTest(unittest.TestCase):
    def test_write_order_is_kept_and_events_are_bounded(self):
        agent = FakeAgent()
        output = req_exec._Output(agent)
        sinks = output.sinks()
        big = "a" * (2 * req_exec.CHUNK + 5)
        sinks["stdout"].append(big)
        sinks["stderr"].append("oops\n")
        sinks["stdout"].append("b\n")
        output.flush()
        self.assertTrue(all(name == "output" for name, _ in agent.events))
        self.assertTrue(all(len(body["text"]) <= req_exec.CHUNK for _, body in agent.events))
        runs = []
        for _, body in agent.events:
            if runs and runs[-1][0] == body["category"]:
                runs[-1][1] += body["text"]
            else:
                runs.append([body["category"], body["text"]])
        self.assertEqual(runs, [["stdout", big], ["stderr", "oops\n"], ["stdout", "b\n"]])
        self.assertEqual(output.dropped, 0)

    def test_output_past_the_limit_is_counted_not_kept(self):
        saved = req_exec.MAX_OUTPUT
        req_exec.MAX_OUTPUT = 10
        try:
            agent = FakeAgent()
            output = req_exec._Output(agent)
            output.sinks()["stdout"].append("0123456789abc")
            output.sinks()["stderr"].append("more")
            output.flush()
        finally:
            req_exec.MAX_OUTPUT = saved
        self.assertEqual("".join(body["text"] for _, body in agent.events), "0123456789")
        self.assertEqual(output.dropped, 7)


class CompileTest(unittest.TestCase):
    def run_code(self, source):
        statements, last = req_exec._compile(source, "<test>")
        namespace = {}
        exec(statements, namespace)
        return None if last is None else eval(last, namespace)

    def test_a_final_bare_expression_is_kept_apart(self):
        self.assertEqual(self.run_code("x = 20\nx + 22"), 42)
        self.assertEqual(self.run_code("x = 1; x * 3"), 3)

    def test_statements_alone_have_no_value(self):
        self.assertIsNone(req_exec._compile("x = 1", "<test>")[1])
        self.assertIsNone(req_exec._compile("if True:\n    3\n", "<test>")[1])
        self.assertIsNone(req_exec._compile("", "<test>")[1])

    def test_a_syntax_error_names_the_code(self):
        with self.assertRaises(SyntaxError) as caught:
            req_exec._compile("def f(:\n    pass", "<exec>")
        self.assertEqual(caught.exception.filename, "<exec>")


if __name__ == "__main__":
    unittest.main()
