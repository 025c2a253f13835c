"""What the agent costs a process before its first stop: `pymri attach` waits for it."""

import subprocess
import sys
import unittest

from helpers import MONITORING, PYTHON_DIR, TIMEOUT, prog_path


class FirstStopTests(unittest.TestCase):
    def test_attaching_imports_nothing_it_does_not_need(self):
        # -I -S: a program that has imported nothing itself, so every module the agent pulls in
        # shows (the benchmark's idle target is close to that)
        out = subprocess.run([sys.executable, "-I", "-S", prog_path("first_stop_modules.py"), PYTHON_DIR],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT,
                             check=True).stdout.decode()
        imported = set(out.split())
        self.assertIn("pymri_agent.engine", imported)
        # needed only by breakpoints, conditions, completion, errors, or another backend
        unneeded = {"ast", "dis", "inspect", "json", "linecache", "queue", "re", "tokenize",
                    "traceback", "_colorize"}
        if MONITORING:
            unneeded |= {"ctypes", "pymri_agent._settrace", "pymri_agent._alltrace"}
        self.assertEqual(imported & unneeded, set())


if __name__ == "__main__":
    unittest.main()
