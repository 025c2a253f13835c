import os
import signal
import unittest

from helpers import TIMEOUT, LaunchedProgram, line_of, prog_path, thread_offsets  # first


DIV = prog_path("script_div.py")
EXIT = prog_path("script_exit.py")
SIGNAL = prog_path("script_signal.py")


class LaunchTests(unittest.TestCase):
    def launch(self, argv, **kw):
        p = LaunchedProgram(argv, **kw)
        self.addCleanup(p.kill)
        return p

    def test_entry_stop_and_run_to_exit_then_restart(self):
        p = self.launch(["script_exit.py", "a", "b"])
        c = p.controller
        self.assertEqual(p.ready["mode"], "launch")
        c.request("start", stop_on_entry=True, thread_offsets=thread_offsets())
        st = c.wait_event("stopped", reason="entry")
        self.assertEqual(st["frame"]["file"], EXIT)
        self.assertEqual(st["frame"]["function"], "<module>")
        tid = st["thread"]
        self.assertEqual(c.request("evaluate", thread=tid, expression="__name__")["result"], "'__main__'")
        self.assertEqual(c.request("evaluate", thread=tid, expression="__file__")["result"], repr(EXIT))
        stack = c.request("stack", thread=tid)["frames"]
        self.assertEqual([f["function"] for f in stack], ["<module>"])
        c.request("set_breakpoint", file="script_exit.py", line=line_of(EXIT, "body"), condition="i == 2")
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        c.request("continue", thread=tid)
        ex = c.wait_event("exited")
        self.assertEqual(ex["code"], 3)
        # restart: the script runs again from scratch, breakpoints kept
        c.request("restart")
        st = c.wait_event("stopped", reason="entry")
        c.request("continue", thread=st["thread"])
        st = c.wait_event("stopped", reason="breakpoint")
        c.request("continue", thread=st["thread"])
        self.assertEqual(c.wait_event("exited")["code"], 3)
        c.request("quit")
        code, out, err = p.wait()
        self.assertEqual(code, 3)
        lines = out.splitlines()
        self.assertEqual(lines.count("counter 3 main __main__ script_exit.py ['a', 'b']"), 2)
        self.assertEqual(lines.count("env False False"), 2)
        self.assertIn("path0 progs", lines)
        self.assertEqual(err, "")

    def test_post_mortem_on_uncaught_exception(self):
        p = self.launch(["script_div.py", "x"])
        c = p.controller
        c.request("start", stop_on_entry=False)
        st = c.wait_event("stopped", reason="exception")
        self.assertTrue(st["post_mortem"])
        self.assertEqual(st["exception"]["type"], "ZeroDivisionError")
        self.assertEqual(st["frame"]["function"], "compute")
        self.assertEqual(st["frame"]["line"], line_of(DIV, "div"))
        tid = st["thread"]
        stack = c.request("stack", thread=tid)["frames"]
        self.assertEqual([f["function"] for f in stack], ["compute", "<module>"])
        self.assertEqual(c.request("evaluate", thread=tid, expression="v")["result"], "0")
        self.assertEqual(c.request("evaluate", thread=tid, expression="total")["result"], "15.0")
        self.assertEqual(c.request("evaluate", thread=tid, frame=1, expression="__name__")["result"],
                         "'__main__'")
        info = c.request("exception_info", thread=tid)
        self.assertIn("division by zero", info["text"])
        c.request("continue", thread=tid)
        ex = c.wait_event("exited")
        self.assertEqual((ex["code"], ex["reason"]), (1, "exception"))
        c.request("quit")
        code, out, err = p.wait()
        self.assertEqual(code, 1)
        self.assertIn("starting ['x']", out)
        self.assertIn("ZeroDivisionError", err)
        self.assertNotIn("pymri_agent", err)  # the traceback shows the program's frames only

    def test_an_exception_raised_at_a_stop_shows_no_agent_frame(self):
        # A signal handler raises while the main thread waits at a breakpoint: the exception
        # goes through the agent's frames into the program; its traceback (the post-mortem's,
        # the one printed) names the program's frames only.
        p = self.launch(["script_signal.py"])
        c = p.controller
        c.request("set_breakpoint", file=SIGNAL, line=line_of(SIGNAL, "stop"))
        c.request("start", stop_on_entry=False)
        c.wait_event("stopped", reason="breakpoint")
        os.kill(p.proc.pid, signal.SIGUSR1)
        st = c.wait_event("stopped", reason="exception")
        self.assertTrue(st["post_mortem"])
        self.assertEqual(st["exception"]["text"], "KeyboardInterrupt: signalled")
        self.assertNotIn("pymri_agent", st["exception"]["traceback"])
        self.assertIn("in on_usr1", st["exception"]["traceback"])
        c.request("continue", thread=st["thread"])
        self.assertEqual(c.wait_event("exited")["code"], 130)
        c.request("quit")
        code, out, err = p.wait()
        self.assertEqual(code, 130)
        self.assertIn("KeyboardInterrupt: signalled", err)
        self.assertIn("in on_usr1", err)
        self.assertNotIn("pymri_agent", err)

    def test_run_module(self):
        p = self.launch(["-m", "pkgmod", "z"])
        c = p.controller
        c.request("start", stop_on_entry=True)
        st = c.wait_event("stopped", reason="entry")
        self.assertTrue(st["frame"]["file"].endswith(os.path.join("pkgmod", "__main__.py")))
        c.request("continue", thread=st["thread"])
        self.assertEqual(c.wait_event("exited")["code"], 0)
        c.request("quit")
        code, out, err = p.wait()
        self.assertEqual(code, 0, err)
        self.assertIn("pkgmod main __main__ pkgmod ['z']", out)

    def test_quit_while_stopped(self):
        p = self.launch(["script_exit.py"])
        c = p.controller
        c.request("start")
        st = c.wait_event("stopped", reason="entry")
        c.request("quit")
        ex = c.wait_event("exited")
        self.assertEqual(ex["reason"], "quit")
        code, out, err = p.wait(TIMEOUT)
        self.assertNotIn("counter", out)

    def test_quit_while_running(self):
        p = self.launch(["script_loop.py"])
        c = p.controller
        c.request("start", stop_on_entry=False, thread_offsets=thread_offsets())
        threads = c.request("threads")["threads"]
        self.assertEqual([t["name"] for t in threads], ["MainThread"])
        c.request("quit")
        self.assertEqual(c.wait_event("exited"), {"code": 0, "reason": "quit"})
        code, out, err = p.wait()
        self.assertEqual((code, err), (0, ""))

    def test_controller_vanishes_program_completes(self):
        p = self.launch(["script_exit.py"])
        c = p.controller
        c.request("start", stop_on_entry=True)
        c.wait_event("stopped", reason="entry")
        c.close()
        code, out, err = p.wait()
        self.assertEqual(code, 3)
        self.assertIn("counter 3", out)

    def test_bad_secret_fd_content(self):
        # the launcher must refuse to run anything if the handshake fails
        import socket
        import subprocess
        import sys
        from helpers import PROGS, PYTHON_DIR
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        rfd, wfd = os.pipe()
        os.write(wfd, b"not-hex")
        os.close(wfd)
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR, PYMRI_AGENT_SECRET_FD=str(rfd),
                   PYMRI_AGENT_ADDRESS="tcp:127.0.0.1:%d" % listener.getsockname()[1])
        proc = subprocess.run([sys.executable, "-m", "pymri_agent.launch", "script_exit.py"], env=env,
                              pass_fds=(rfd,), cwd=PROGS, capture_output=True, timeout=TIMEOUT)
        os.close(rfd)
        listener.close()
        self.assertEqual(proc.returncode, 2)
        self.assertEqual(proc.stdout, b"")
