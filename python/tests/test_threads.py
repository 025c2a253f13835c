import threading

from helpers import AgentTestCase, RequestFailed, line_of  # first: puts progs/ on sys.path
import prog_basic as pb  # noqa: E402

F = pb.__file__


def L(marker):
    return line_of(F, marker)


class ThreadTests(AgentTestCase):
    def test_stop_in_worker_while_main_keeps_running(self):
        stop_spin = threading.Event()
        counter = [0]
        results = []
        spinning = threading.Event()

        def target():
            worker = threading.Thread(target=pb.worker_body, args=(results,), name="worker-1")
            gate.wait(10)
            worker.start()
            spinning.set()
            pb.spin(stop_spin, counter)  # the "main" thread of the program keeps running
            worker.join(10)
            return results

        gate = threading.Event()
        p, c = self.attach(target)
        main_tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_breakpoint", file=F, line=L("helper-first"))
        c.request("continue", thread=main_tid)
        gate.set()
        st = c.wait_event("stopped", reason="breakpoint")
        worker_tid = st["thread"]
        self.assertNotEqual(worker_tid, main_tid)
        self.assertEqual(st["thread_name"], "worker-1")
        spinning.wait(10)
        # the program's main thread makes progress while the worker is stopped
        before = counter[0]
        deadline = threading.Event()
        for _ in range(1000):
            if counter[0] > before + 1000:
                break
            deadline.wait(0.01)
        self.assertGreater(counter[0], before + 1000)
        # other requests keep being served
        threads = {t["id"]: t for t in c.request("threads")["threads"]}
        self.assertTrue(threads[worker_tid]["stopped"])
        self.assertEqual(threads[worker_tid]["frame"]["function"], "helper")
        self.assertFalse(threads[main_tid]["stopped"])
        self.assertEqual(threads[main_tid]["name"], "program-main")
        self.assertNotIn("pymri-agent", [t["name"] for t in threads.values()])
        self.assertEqual(c.request("evaluate", thread=worker_tid, expression="x")["result"], "20")
        # pause the spinning thread too
        c.request("pause", thread=main_tid)
        st = c.wait_event("stopped", reason="pause")
        self.assertEqual(st["thread"], main_tid)
        self.assertIn(st["frame"]["function"], ("spin", "is_set"))  # next line event anywhere
        c.request("clear_breakpoints", all=True)
        stop_spin.set()
        body = c.request("continue")
        self.assertEqual(sorted(body["threads"]), sorted([main_tid, worker_tid]))
        self.assertEqual(p.wait_result(), [41])
        started = c.wait_event("thread", reason="started", name="worker-1")
        self.assertEqual(started["thread"], worker_tid)

    def test_breakpoint_in_thread_started_before_attach(self):
        # A thread that already runs when the agent attaches must hit breakpoints too
        # (on CPython < 3.12 this needs the thread-state offsets).
        go = threading.Event()
        done = threading.Event()
        out = []

        def existing():
            go.wait(10)
            out.append(pb.helper(5))
            done.set()

        t = threading.Thread(target=existing, name="existing")
        t.start()
        p, c = self.attach(lambda: done.wait(10))
        tid = c.wait_event("stopped", reason="attach")["thread"]
        c.request("set_breakpoint", file=F, line=L("helper-second"))
        c.request("continue", thread=tid)
        go.set()
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["thread_name"], "existing")
        c.request("continue", thread=st["thread"])
        t.join(10)
        self.assertEqual(out, [11])
        p.wait_result()

    def test_requests_queued_behind_a_resume_are_answered(self):
        # A page asks for a stop's variables while another request resumes the thread: every
        # request gets an answer (the thread is running), none waits forever.
        stop_spin = threading.Event()
        counter = [0]

        def target():
            pb.spin(stop_spin, counter)

        p, c = self.attach(target)
        tid = c.wait_event("stopped", reason="attach")["thread"]
        for _ in range(20):
            resume = c.send("continue", thread=tid)
            late = [c.send("scopes", thread=tid, frame=0) for _ in range(3)]
            c.response(resume)
            for rid in late:
                with self.assertRaises(RequestFailed) as failed:
                    c.response(rid, timeout=5)
                self.assertEqual(failed.exception.code, "not_stopped")
            c.request("pause", thread=tid)
            c.wait_event("stopped", reason="pause")
        stop_spin.set()
        c.request("continue", thread=tid)
        p.wait_result()
