import os
import queue
import socket
import struct
import sys
import threading
import time

from helpers import (MONITORING, TIMEOUT, AgentTestCase, AttachedProgram, Controller,
                     agent_threads_alive, line_of)  # first: puts progs/ on sys.path
import prog_basic as pb  # noqa: E402
from pymri_agent import protocol  # noqa: E402

F = pb.__file__


def L(marker):
    return line_of(F, marker)


class TraceReporter(object):
    """A thread that existed during the debug session and reports its own sys.gettrace()."""

    def __init__(self):
        self.ask = queue.Queue()
        self.answer = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="trace-reporter", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.ask.get()
            if item is None:
                return
            pb.printer()  # run some Python code so a pending tracer would be visible
            self.answer.put(sys.gettrace())

    def gettrace(self):
        self.ask.put(1)
        return self.answer.get(timeout=TIMEOUT)

    def close(self):
        self.ask.put(None)
        self.thread.join(TIMEOUT)


class LifecycleTests(AgentTestCase):
    def test_ready_event(self):
        p, c = self.attach(lambda: 1)
        ready = p.ready
        self.assertEqual(ready["protocol"], protocol.PROTOCOL_VERSION)
        self.assertEqual(ready["pid"], os.getpid())
        self.assertEqual(ready["mode"], "attach")
        self.assertEqual(ready["backend"], "monitoring" if MONITORING else "settrace")
        self.assertTrue(ready["all_threads"])
        if MONITORING:
            self.assertIn(ready["tool_id"], range(6))
        c.wait_event("stopped", reason="attach")
        c.request("continue")
        self.assertEqual(p.wait_result(), 1)

    def test_detach_cleans_everything(self):
        reporter = TraceReporter()
        self.assertIsNone(reporter.gettrace())
        old_stdout = sys.stdout
        old_hook = sys.excepthook
        p, c = self.attach(lambda: (pb.caller(), pb.loop(4)))
        tool = p.ready["tool_id"]
        tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_breakpoint", file=F, line=L("helper-second"))
        c.request("set_breakpoint", function="prog_basic.Counter.add")
        c.request("set_exception_filters", filters=["uncaught"])
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        c.request("evaluate", thread=tid, expression="print('captured')")
        if not MONITORING:
            self.assertIsNotNone(reporter.gettrace())  # tracing reached the existing thread
        else:
            self.assertEqual(sys.monitoring.get_tool(tool), "pymri")
        c.request("next", thread=tid)
        c.wait_event("stopped", reason="step")
        c.request("detach")
        c.wait_event("detached")
        c.wait_closed()
        # the stopped thread resumes and the program gives the right result
        self.assertEqual(p.wait_result(), (26, 6))
        p.thread.join(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while agent_threads_alive() and time.monotonic() < deadline:
            agent_threads_alive()[0].join(0.1)
        self.assertEqual(agent_threads_alive(), [])
        self.assertIsNone(reporter.gettrace())
        self.assertIsNone(sys.gettrace())
        if MONITORING:
            self.assertIsNone(sys.monitoring.get_tool(tool))
        else:
            self.assertIsNone(getattr(threading, "_trace_hook", None))
        self.assertIs(sys.stdout, old_stdout)
        self.assertIs(sys.excepthook, old_hook)
        self.assertNotIn("pymri_agent.engine", sys.modules)
        reporter.close()

    def test_connection_drop_detaches_within_one_second(self):
        reporter = TraceReporter()
        p, c = self.attach(lambda: pb.caller())
        tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_breakpoint", file=F, line=L("helper-second"))
        c.request("continue", thread=tid)
        c.wait_event("stopped", reason="breakpoint")
        t0 = time.monotonic()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # abrupt
        self.assertEqual(p.wait_result(timeout=1.0), 26)
        while agent_threads_alive() and time.monotonic() - t0 < 1.0:
            agent_threads_alive()[0].join(0.05)
        self.assertEqual(agent_threads_alive(), [])
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertIsNone(reporter.gettrace())
        reporter.close()

    def _garbage(self, payload, tagged=False):
        """Send `payload` after the handshake, as it is or as a frame with a valid tag: the agent
        must drop the connection."""
        p, c = self.attach(lambda: pb.caller())
        tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_breakpoint", file=F, line=L("helper-second"))
        if tagged:
            c.channel.send_frame(payload)
        else:
            c.sock.sendall(payload)
        c.wait_closed()
        self.assertEqual(p.wait_result(), 26)
        return tid

    def test_garbage_random_bytes(self):
        self._garbage(b"\x00\x00\x00\x08\xff\xfe\x00garbage!", tagged=True)

    def test_a_frame_without_a_valid_tag_is_not_run_and_ends_the_session(self):
        """What a relay on the path can write (issue 8): a well-formed request without the
        session's key. It gets no answer, the agent says why it detaches, removes its hooks and
        lets the program go on."""
        p, c = self.attach(lambda: pb.caller())
        tid = c.wait_event("stopped", reason="attach")["thread"]
        forged = protocol.encode_frame({"kind": "request", "id": 99, "cmd": "evaluate",
                                        "args": {"thread": tid, "expression": "1/0"}})
        c.sock.sendall(forged + bytes(protocol.TAG_LEN))
        self.assertIn("received frame 0 failed its integrity check",
                      c.wait_event("detached")["reason"])
        c.wait_closed()
        self.assertNotIn(99, c._responses)
        self.assertEqual(p.wait_result(), 26)
        self.assertIsNone(sys.gettrace())

    def test_garbage_oversized_length(self):
        self._garbage(struct.pack(">I", protocol.MAX_FRAME + 1) + b"x" * 100)

    def test_garbage_zero_length(self):
        self._garbage(struct.pack(">I", 0))

    def test_garbage_bad_json(self):
        data = b"{not json"
        self._garbage(struct.pack(">I", len(data)) + data, tagged=True)

    def test_garbage_not_a_request(self):
        data = b'[1, 2, 3]'
        self._garbage(struct.pack(">I", len(data)) + data, tagged=True)

    def _bad_handshake(self, **kw):
        p = AttachedProgram(lambda: "ran", **kw)
        self._programs.append(p)
        return p

    def test_wrong_secret_is_rejected_and_program_unaffected(self):
        p = self._bad_handshake(config_secret="00" * 32)
        with self.assertRaises(protocol.AuthError):
            Controller(p.controller_sock, p.secret, "a1" * 16)
        p.controller_sock.close()  # a controller drops the connection on a bad proof
        self.assertEqual(p.wait_result(), "ran")

    def test_wrong_controller_proof_drops(self):
        p = self._bad_handshake()
        ch = protocol.Channel(p.controller_sock)
        ch.send_message({"kind": "challenge", "protocol": 2, "nonce": protocol.new_nonce()})
        proof = ch.recv_message()
        self.assertEqual(proof["kind"], "proof")
        ch.send_message({"kind": "accept", "proof": "0" * 64})
        with self.assertRaises(protocol.ConnectionClosed):
            ch.recv_message()
        self.assertEqual(p.wait_result(), "ran")

    def test_wrong_attach_nonce_fails_controller_check(self):
        p = self._bad_handshake(extra={"nonce": "b2" * 16})
        with self.assertRaises(protocol.AuthError):
            Controller(p.controller_sock, p.secret, "a1" * 16)
        p.controller_sock.close()
        self.assertEqual(p.wait_result(), "ran")

    def test_garbage_before_handshake(self):
        p = self._bad_handshake()
        p.controller_sock.sendall(os.urandom(64))
        p.controller_sock.settimeout(TIMEOUT)
        try:
            self.assertEqual(p.controller_sock.recv(100), b"")
        except ConnectionResetError:
            pass
        self.assertEqual(p.wait_result(), "ran")

    def test_unsupported_protocol_version(self):
        p = self._bad_handshake()
        ch = protocol.Channel(p.controller_sock)
        ch.send_message({"kind": "challenge", "protocol": 99, "nonce": protocol.new_nonce()})
        reply = ch.recv_message()
        self.assertIn("error", reply)
        self.assertEqual(p.wait_result(), "ran")

    def test_no_local_events_without_breakpoints(self):
        """Performance sanity: code without breakpoints gets no local events / no tracer."""
        p, c = self.attach(lambda: (pb.caller(), pb.loop(3)))
        tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_breakpoint", file=F, line=L("never"))
        c.request("continue", thread=tid)
        self.assertEqual(p.wait_result(), (26, 3))
        if MONITORING:
            tool = p.ready["tool_id"]
            for func in (pb.caller, pb.helper, pb.loop, pb.Counter.add):
                self.assertEqual(sys.monitoring.get_local_events(tool, func.__code__), 0, func)
        else:
            import pymri_agent.engine  # noqa: F401 - the live agent's backend
            agent_mod = sys.modules["pymri_agent.engine"]
            agents = [o for o in _live_agents(agent_mod)]
            self.assertEqual(len(agents), 1)
            agent = agents[0]
            backend = agent.backend
            # the breakpoint is served by instrumented code: no tracer anywhere
            self.assertFalse(backend.installed)
            self.assertIn(L("never"), agent.swapper.hooked_lines(pb.never_called.__code__))
            for func in (pb.caller, pb.helper, pb.loop, pb.Counter.add):
                self.assertIsNone(agent.swapper.hooked_lines(func.__code__), func)
                self.assertIsNone(backend.gtrace(_FakeFrame(func.__code__), "call", None))


class _FakeFrame(object):
    def __init__(self, code):
        self.f_code = code


def _live_agents(mod):
    import gc
    return [o for o in gc.get_objects() if isinstance(o, mod.Agent) and not o.detached]


if __name__ == "__main__":
    import unittest
    unittest.main()
