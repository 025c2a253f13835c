"""The trace requests (req_trace.py, tracing.py) against a program that keeps running."""

import sys
import threading

from helpers import MONITORING, AgentTestCase, line_of  # first: puts progs/ on sys.path
import prog_trace as pt  # noqa: E402

F = pt.__file__


def L(marker):
    return line_of(F, marker)


def site(s):
    return (s["function"].rpartition(".")[2] if sys.version_info < (3, 11) else s["function"], s["line"])


class TraceTests(AgentTestCase):
    def _run(self, **trace_args):
        go, stop, seen = threading.Event(), threading.Event(), []
        p, c = self.attach(lambda: pt.loop(go, stop, seen), stop=False)
        started = c.request("trace_start", **trace_args)
        self.assertEqual(started["backend"], "monitoring" if MONITORING else "settrace")
        go.set()
        return p, c, stop, seen

    def test_exceptions_settle_handled_native_and_report_their_sites(self):
        p, c, stop, seen = self._run(exceptions=True, max_rate=1000)
        events = {}
        while len(events) < 3:
            ev = c.wait_event("trace", kind="exception")
            events[ev["type"]] = ev
        self.assertEqual(site(events["KeyError"]["raised"]), ("swallow", L("raise")))
        self.assertEqual(events["KeyError"]["outcome"], "handled")
        self.assertEqual(site(events["KeyError"]["handled"]), ("swallow", L("handler")))
        self.assertEqual(site(events["ValueError"]["raised"]), ("deep", L("deep-raise")))
        self.assertEqual(site(events["ValueError"]["handled"]), ("catch_deep", L("deep-handler")))
        self.assertEqual([f["function"] for f in events["ValueError"]["traceback"]][-4:], ["deep"] * 4)
        self.assertEqual(events["AttributeError"]["outcome"], "native")
        self.assertEqual(site(events["AttributeError"]["handled"]), ("native", L("native")))
        summary = c.request("trace_stop")
        self.assertEqual(summary["kind"], "summary")
        groups = {(e["type"], e["outcome"]): e["count"] for e in summary["exceptions"]}
        self.assertGreater(groups[("KeyError", "handled")], 0)
        self.assertGreater(groups[("AttributeError", "native")], 0)
        stop.set()
        p.wait_result()
        self.assertEqual(seen, [None])

    def test_calls_counted_by_site_and_rate_limited(self):
        p, c, stop, seen = self._run(calls=["Registry.add"], max_rate=2, args=True)
        ev = c.wait_event("trace", kind="call")
        self.assertEqual(ev["caller"]["line"], L("call-site"))
        self.assertEqual([a[0] for a in ev["args"]], ["self", "key"])
        # Enough rounds for the limit to hold some back.
        for _ in range(3):
            c.wait_event("trace", kind="call")
        summary = c.request("trace_stop")
        (only,) = summary["calls"]
        self.assertEqual(only["caller"]["line"], L("call-site"))
        self.assertGreaterEqual(only["count"], only["suppressed"] + 3)
        stop.set()
        p.wait_result()
        self.assertEqual(seen, [None])

    def test_a_lost_connection_removes_the_hooks(self):
        p, c, stop, seen = self._run(exceptions=True, calls=["Registry.add"])
        c.wait_event("trace", kind="exception")
        c.close()
        # The agent's reader thread sees the end, detaches and ends; the program runs meanwhile.
        for t in [t for t in threading.enumerate() if t.name in ("pymri-agent", "pymri-trace")]:
            t.join(10)
            self.assertFalse(t.is_alive(), t.name)
        stop.set()
        p.wait_result()
        self.assertEqual(seen, [None])
        if MONITORING:
            self.assertEqual([sys.monitoring.get_tool(i) for i in range(6)], [None] * 6)
        else:
            self.assertIsNone(threading._trace_hook)
