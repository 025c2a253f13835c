"""End-to-end attach into another process through CPython 3.14's sys.remote_exec, with a
bootstrap shaped like the one `pymri attach` injects."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

from helpers import PYTHON_DIR, SECRET, TIMEOUT, Controller

TARGET = r"""
import sys, threading, time
done = threading.Event()
def busy():
    n = 0
    while not done.is_set():
        n += 1
        if n == 1:
            print("ready", flush=True)
        if n % 50000 == 0:
            time.sleep(0.001)
    return n
threading.Thread(target=sys.stdin.readline, daemon=True).start()
busy()
"""

BOOTSTRAP = """\
import sys
sys.path.insert(0, {path!r})
import pymri_agent.attach
pymri_agent.attach.start({config!r})
"""


@unittest.skipUnless(hasattr(sys, "remote_exec"), "needs sys.remote_exec (CPython 3.14+)")
class RemoteAttachTests(unittest.TestCase):
    def test_attach_stop_step_detach(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        target = subprocess.Popen(
            [sys.executable, "-c", TARGET],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: target.poll() is None and target.kill())
        self.assertEqual(target.stdout.readline().strip(), b"ready")
        path = os.path.join(tmp, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        boot = os.path.join(tmp, "bootstrap.py")
        config = {"connect": "unix:" + path, "secret": SECRET, "nonce": "c0ffee",
                  "thread_offsets": None, "stop_thread": None}
        with open(boot, "w") as f:
            f.write(BOOTSTRAP.format(path=PYTHON_DIR, config=config))
        try:
            sys.remote_exec(target.pid, boot)
        except (OSError, RuntimeError) as exc:  # e.g. ptrace not permitted here
            self.skipTest("sys.remote_exec failed: %s" % exc)
        conn, _ = listener.accept()
        c = Controller(conn, SECRET, "c0ffee")
        self.addCleanup(c.close)
        ready = c.wait_event("ready")
        self.assertEqual(ready["pid"], target.pid)
        st = c.wait_event("stopped", reason="attach")
        # interrupted in busy() or in the Event.is_set() it calls
        stack = c.request("stack")["frames"]
        names = [f["function"] for f in stack]
        self.assertEqual(names[-2:], ["busy", "<module>"])
        self.assertEqual(st["frame"]["function"], names[0])
        self.assertNotIn(boot, [f["file"] for f in stack])
        self.assertEqual(c.request("evaluate", expression="n > 0", frame=len(names) - 2)["result"], "True")
        c.request("next")
        st = c.wait_event("stopped")
        self.assertIn(st["frame"]["function"], ("busy", "is_set"))
        body = c.request("evaluate", expression="import __main__; __main__.done.set()", mode="exec")
        self.assertNotIn("exception", body)
        c.request("detach")
        c.wait_event("detached")
        c.wait_closed()
        target.stdin.write(b"\n")
        target.stdin.close()
        self.assertEqual(target.wait(TIMEOUT), 0)
        self.assertEqual(target.stderr.read(), b"")
