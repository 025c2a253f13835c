"""A small fake controller for the agent tests: handshake, requests, events, over real sockets."""

import os
import queue
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
PROGS = os.path.join(HERE, "progs")
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)
if PROGS not in sys.path:
    sys.path.insert(0, PROGS)

from pymri_agent import protocol  # noqa: E402

TIMEOUT = 10.0
SECRET = "5ec7e7" * 8
ATTACH_NONCE = "a1" * 16
MONITORING = sys.version_info >= (3, 12)


class RequestFailed(Exception):
    def __init__(self, error):
        Exception.__init__(self, "%s: %s" % (error.get("code"), error.get("message")))
        self.code = error.get("code")
        self.message = error.get("message")


def line_of(path, marker):
    """Line number of the line holding `# MARK: marker`."""
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if text.rstrip().endswith("# MARK: " + marker):
                return n
    raise LookupError(marker)


def prog_path(name):
    return os.path.join(PROGS, name)


def thread_offsets():
    """PyThreadState offsets for this interpreter (what the Rust controller would send).

    Derived by scanning the current thread state for known values, then checked against the
    documented table for the versions we know."""
    if sys.version_info >= (3, 12):
        return None
    import ctypes
    ctypes.pythonapi.PyThreadState_Get.restype = ctypes.c_void_p
    ts = ctypes.pythonapi.PyThreadState_Get()

    def probe(frame, event, arg):
        return None

    old = sys.gettrace()
    sys.settrace(probe)
    try:
        words = [ctypes.c_void_p.from_address(ts + 8 * i).value for i in range(64)]
    finally:
        sys.settrace(old)
    obj = words.index(id(probe)) * 8
    tid = words.index(threading.get_ident()) * 8
    known = {(3, 9): (64, 80, 176), (3, 11): (72, 88, 152)}
    expect = known.get(sys.version_info[:2])
    if expect is not None:
        assert (obj - 16, obj, tid) == expect, ((obj - 16, obj, tid), expect)
    return {"c_tracefunc": obj - 16, "c_traceobj": obj, "thread_id": tid}


class Controller(object):
    """Controller side of the protocol over a connected socket."""

    def __init__(self, sock, secret=SECRET, attach_nonce=""):
        self.sock = sock
        self.channel = protocol.Channel(sock)
        protocol.controller_handshake(self.channel, protocol.parse_secret(secret), attach_nonce)
        self._next = 1
        self._responses = {}
        self._cond = threading.Condition()
        self.events = []
        self.closed = False
        self._reader = threading.Thread(target=self._read, name="fake-controller", daemon=True)
        self._reader.start()

    def _read(self):
        try:
            while True:
                msg = self.channel.recv_message()
                with self._cond:
                    if msg.get("kind") == "response":
                        self._responses[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()
        except Exception:
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def send(self, cmd, **args):
        with self._cond:
            rid = self._next
            self._next += 1
        self.channel.send_message({"kind": "request", "id": rid, "cmd": cmd, "args": args})
        return rid

    def response(self, rid, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError("no response to request %d" % rid)
                self._cond.wait(left)
            msg = self._responses.pop(rid)
        if not msg["ok"]:
            raise RequestFailed(msg["error"])
        return msg["body"]

    def request(self, cmd, **args):
        return self.response(self.send(cmd, **args))

    def wait_event(self, event_name, timeout=TIMEOUT, **match):
        """Pop the first event `event_name` whose body matches `match`."""
        name = event_name
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in enumerate(self.events):
                    if ev["event"] == name and all(ev["body"].get(k) == v for k, v in match.items()):
                        del self.events[i]
                        return ev["body"]
                left = deadline - time.monotonic()
                if left <= 0 or (self.closed and name != "detached"):
                    raise AssertionError("no %s event %r; got %r" % (name, match, [e["event"] for e in self.events]))
                if self.closed:
                    raise AssertionError("connection closed waiting for %s" % name)
                self._cond.wait(left)

    def wait_closed(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("connection not closed")
                self._cond.wait(left)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def agent_threads_alive():
    return [t for t in threading.enumerate() if t.name == "pymri-agent"]


class AttachedProgram(object):
    """Runs `target()` in a fresh thread that first calls pymri_agent.attach.start(config)
    (like the injected bootstrap would); the test thread is the controller."""

    def __init__(self, target, stop=True, secret=SECRET, config_secret=None, extra=None):
        # Like the bootstrap: put the package on sys.path (the agent removes it again).
        if PYTHON_DIR not in sys.path:
            sys.path.insert(0, PYTHON_DIR)
        from pymri_agent import attach
        self.result = queue.Queue()
        a, b = socket.socketpair()
        self.agent_sock = a
        self.config = {"connect": "fd:%d" % a.detach(), "secret": config_secret or secret,
                       "nonce": ATTACH_NONCE, "thread_offsets": thread_offsets(),
                       "stop_thread": None, "stop": stop}
        if extra:
            self.config.update(extra)
        self.started = threading.Event()

        def bootstrap():
            self.started.set()
            attach.start(self.config)  # the "bootstrap" frame is this function
            self.result.put(("attached", None))
            try:
                self.result.put(("done", target()))
            except BaseException as exc:  # pragma: no cover - reported to the test
                self.result.put(("error", exc))

        self.thread = threading.Thread(target=bootstrap, name="program-main", daemon=True)
        self.thread.start()
        self.controller_sock = b
        self.controller = None
        self.secret = secret

    def connect(self):
        self.controller = Controller(self.controller_sock, self.secret, ATTACH_NONCE)
        self.ready = self.controller.wait_event("ready")
        return self.controller

    def wait_result(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            kind, value = self.result.get(timeout=max(0.01, deadline - time.monotonic()))
            if kind == "done":
                return value
            if kind == "error":
                raise value

    def finish(self):
        """Detach (if still connected) and wait for the agent to be gone."""
        c = self.controller
        if c is not None and not c.closed:
            try:
                c.request("detach")
            except Exception:
                pass
        if c is not None:
            c.close()
        else:
            self.controller_sock.close()
        self.thread.join(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while agent_threads_alive() and time.monotonic() < deadline:
            for t in agent_threads_alive():
                t.join(0.1)


class AgentTestCase(unittest.TestCase):
    def setUp(self):
        self._programs = []

    def tearDown(self):
        for p in self._programs:
            p.finish()
        self.assertEqual(agent_threads_alive(), [])
        if MONITORING:
            for tool in range(6):
                self.assertNotEqual(sys.monitoring.get_tool(tool), "pymri")

    def attach(self, target, **kw):
        p = AttachedProgram(target, **kw)
        self._programs.append(p)
        c = p.connect()
        return p, c

    def start(self, target):
        """Attaches to `target`, stopped at attach: (program, controller, thread id)."""
        p, c = self.attach(target)
        st = c.wait_event("stopped", reason="attach")
        return p, c, st["thread"]

    def run_to(self, target, file, line):
        """Attaches to `target` and runs it to a temporary breakpoint at file:line."""
        p, c, tid = self.start(target)
        c.request("set_breakpoint", file=file, line=line, temporary=True)
        c.request("continue", thread=tid)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["line"], line)
        return p, c, tid


class LaunchedProgram(object):
    """`python -m pymri_agent.launch ARGS` in a subprocess, with this test as the controller."""

    def __init__(self, argv, secret=SECRET, cwd=None, env_extra=None):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]
        rfd, wfd = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = PYTHON_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYMRI_AGENT_ADDRESS"] = "tcp:127.0.0.1:%d" % port
        env["PYMRI_AGENT_SECRET_FD"] = str(rfd)
        env.update(env_extra or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "pymri_agent.launch"] + list(argv),
                                     env=env, pass_fds=(rfd,), cwd=cwd or PROGS,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        os.close(rfd)
        os.write(wfd, secret.encode() + b"\n")
        os.close(wfd)
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError("launcher did not connect: %r %r" % (out, err))
        finally:
            listener.close()
        self.controller = Controller(conn, secret, "")
        self.ready = self.controller.wait_event("ready")

    def wait(self, timeout=TIMEOUT):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.controller.close()
