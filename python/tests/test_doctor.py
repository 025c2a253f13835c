"""The doctor's window (req_doctor.py): the parts whose edge cases the live tests of
crates/pymri/tests/doctor_inside.rs do not reach."""

import os
import shutil
import sys
import tempfile
import threading
import types
import unittest
from collections import deque

from helpers import AgentTestCase  # noqa: F401  (first: puts the agent on sys.path)
from pymri_agent import req_doctor


class _Agent(object):
    def __init__(self):
        self.agent_threads = set()
        self.detach_callbacks = []
        self.backend = None
        self.errors = []

    def internal_error(self):
        import traceback
        self.errors.append(traceback.format_exc())

    def send_event(self, name, body):
        pass

    def is_hidden_code(self, code):
        return False


def _module(name, source):
    mod = types.ModuleType(name)
    mod.__file__ = "/app/%s.py" % name
    exec(source, mod.__dict__)
    sys.modules[name] = mod
    return mod


class WalkTests(unittest.TestCase):
    def tearDown(self):
        sys.modules.pop("doctor_walk_app", None)

    def test_containers_are_named_by_their_path_and_read_again_by_it(self):
        mod = _module("doctor_walk_app", (
            "from collections import deque\n"
            "class Item: pass\n"
            "class Cache:\n"
            "    entries = {}\n"
            "class Service:\n"
            "    def __init__(self):\n"
            "        self.queue = deque()\n"
            "        self.seen = set()\n"
            "SERVICE = Service()\n"
            "ITEMS = []\n"))
        walk = req_doctor._Walk().run(5.0)
        paths = {".".join(s) for s in walk.found if s[0] == "doctor_walk_app"}
        self.assertEqual(paths, {"doctor_walk_app.Cache.entries", "doctor_walk_app.SERVICE.queue",
                                 "doctor_walk_app.SERVICE.seen", "doctor_walk_app.ITEMS"})
        self.assertIs(req_doctor._resolve(("doctor_walk_app", "SERVICE", "queue")), mod.SERVICE.queue)
        # The program's modules come before the standard library's.
        first = next(iter(walk.found))
        self.assertNotIn(first[0], ("sys", "os", "threading"))
        for n in range(30):
            mod.SERVICE.queue.append(mod.Item())
            mod.Cache.entries[n] = n
        self.assertEqual(req_doctor._newest(mod.SERVICE.queue, 5), [("doctor_walk_app.Item", 5)])
        self.assertEqual(req_doctor._newest(mod.Cache.entries, 3), [("int", 3)])

    def test_a_walk_out_of_time_says_it_was_cut(self):
        walk = req_doctor._Walk()
        walk.visited = 1023  # the next visit checks the clock
        walk.run(-1.0)
        self.assertTrue(walk.cut)


class CensusTests(unittest.TestCase):
    def test_counts_by_type_and_says_when_cut(self):
        totals, by_type = req_doctor._census(5.0)
        self.assertFalse(totals["cut"])
        self.assertEqual(totals["examined"], totals["objects"])
        self.assertGreater(by_type["dict"][0], 0)
        self.assertFalse(any(t.startswith("pymri_agent.") for t in by_type))
        totals, _ = req_doctor._census(-1.0)
        self.assertTrue(totals["cut"])
        self.assertEqual(totals["examined"], 4095)


class StartSiteTests(unittest.TestCase):
    def test_the_caller_of_a_subclass_start_and_its_run_are_counted_then_start_is_restored(self):
        original = threading.Thread.__dict__["start"]

        class Worker(threading.Thread):
            def start(self):
                return super().start()

            def run(self):
                pass

        sites = req_doctor._StartSites()
        sites.install()
        try:
            w = Worker()
            w.start()  # the counted line
            line = sys._getframe().f_lineno - 1
            w.join()
        finally:
            sites.uninstall()
        self.assertIs(threading.Thread.__dict__["start"], original)
        [site] = sites.report()
        self.assertEqual((site["function"], site["line"], site["count"]),
                         ("StartSiteTests.test_the_caller_of_a_subclass_start_and_its_run_are_counted_then_start_is_restored"
                          if sys.version_info >= (3, 11) else
                          "test_the_caller_of_a_subclass_start_and_its_run_are_counted_then_start_is_restored",
                          line, 1))
        self.assertTrue(site["target"].endswith("Worker.run"), site["target"])

    def test_wrapped_again_by_someone_else_it_stays_inert_under_theirs(self):
        original = threading.Thread.__dict__["start"]
        sites = req_doctor._StartSites()
        sites.install()
        ours = threading.Thread.__dict__["start"]

        def theirs(self, *a, **k):
            return ours(self, *a, **k)

        threading.Thread.start = theirs
        try:
            sites.uninstall()
            self.assertIs(threading.Thread.__dict__["start"], theirs)
            t = threading.Thread(target=lambda: None)
            t.start()
            t.join()
            self.assertEqual(sites.report(), [])
        finally:
            threading.Thread.start = original


class VersionTests(unittest.TestCase):
    def setUp(self):
        self.dirs = [tempfile.mkdtemp(prefix="pymri-doctor-"), tempfile.mkdtemp(prefix="pymri-doctor-")]
        for d, version in zip(self.dirs, ("2.0", "1.0")):
            os.makedirs(os.path.join(d, "doctor_demo"))
            open(os.path.join(d, "doctor_demo", "__init__.py"), "w").close()
            info = os.path.join(d, "Doctor_Demo-%s.dist-info" % version)
            os.makedirs(info)
            with open(os.path.join(info, "METADATA"), "w") as f:
                f.write("Metadata-Version: 2.1\nName: Doctor_Demo\nVersion: %s\n" % version)
            # No top_level.txt (wheels built by modern backends have none): the files tell.
            with open(os.path.join(info, "RECORD"), "w") as f:
                f.write("doctor_demo/__init__.py,,\nDoctor_Demo-%s.dist-info/METADATA,,\n" % version)
        sys.path[:0] = self.dirs

    def tearDown(self):
        for d in self.dirs:
            sys.path.remove(d)
            shutil.rmtree(d)
        sys.modules.pop("doctor_demo", None)

    def test_loaded_distributions_with_the_ones_further_down_the_path(self):
        import doctor_demo  # noqa: F401
        versions, error = req_doctor._versions(10.0)
        self.assertIsNone(error)
        [demo] = [d for d in versions if d["name"] == "Doctor_Demo"]
        self.assertEqual((demo["version"], demo["modules"], demo["shadowed"]), ("2.0", ["doctor_demo"], ["1.0"]))
        self.assertEqual(demo["file"], os.path.join(self.dirs[0], "doctor_demo", "__init__.py"))


class WindowTests(unittest.TestCase):
    def test_stop_removes_every_hook_and_a_second_stop_is_harmless(self):
        agent = _Agent()
        original = threading.Thread.__dict__["start"]
        req_doctor.req_doctor_start(agent, {"interval": 0.05, "versions": False})
        self.assertIsNot(threading.Thread.__dict__["start"], original)
        with self.assertRaises(req_doctor.RequestError):
            req_doctor.req_doctor_start(agent, {})
        body = req_doctor.req_doctor_stop(agent, {})
        self.assertIs(threading.Thread.__dict__["start"], original)
        self.assertIsNone(sys.gettrace())
        self.assertFalse(any(t.name == "pymri-doctor" for t in threading.enumerate()))
        self.assertIn("census", body)
        self.assertEqual(agent.errors, [])
        for callback in agent.detach_callbacks:
            self.assertIsNone(callback())
        with self.assertRaises(req_doctor.RequestError):
            req_doctor.req_doctor_stop(agent, {})


if __name__ == "__main__":
    unittest.main()
