"""The agent as a library and its transports (docs/transports.md): addresses, secrets, TLS
channel binding, lockout, listening and connecting agents in real subprocesses, and the target's
progress under a flood of garbage connections."""

import functools
import hashlib
import os
import queue
import re
import select
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

from helpers import (PROGS, PYTHON_DIR, SECRET, TIMEOUT, AgentTestCase, Controller, line_of,  # first
                     prog_path)
from pymri_agent import _secret, _wire, library, protocol, transport  # noqa: E402

PROG = prog_path("prog_transports.py")
IDENTITY = prog_path("tls_test_identity.pem")
OTHER_SECRET = "0badc0de" * 8
#: The longest stall the target may see during the flood. The agent's part is tens of
#: microseconds per connection (a few ms at worst, measured); the rest is room for a loaded
#: 2-core machine.
MAX_STALL_MS = 20.0
GARBAGE = 1000


def write_secret(directory, text=SECRET, mode=0o600, name="secret"):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (text + "\n").encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


def certificate_fingerprint():
    import ssl
    with open(IDENTITY) as f:
        pem = f.read()
    cert = pem[pem.index("-----BEGIN CERTIFICATE-----"):]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert)).hexdigest()


def drive(step, fds, timeout=TIMEOUT):
    """Runs a non-blocking `step` until it returns True, waiting on `fds` in between."""
    deadline = time.monotonic() + timeout
    while not step():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out")
        select.select(fds, [], [], left)


def tls_server_socket(tcp):
    """The test controller is the TLS server (section 4) over `tcp`, whoever connected; returns
    a plain socket carrying the decrypted stream (through the agent's own pump)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(IDENTITY)
    stream = _wire.TlsStream(tcp, context=ctx, server_side=True)
    drive(stream.handshake, [stream.rfd])
    sock, _ = _wire.channel_for(stream, "test-tls-pump")
    return sock


def bound_controller(sock, secret, binding):
    """helpers.Controller with both proofs bound to `binding` (a certificate fingerprint)."""
    real = protocol.controller_handshake
    with mock.patch.object(protocol, "controller_handshake",
                           functools.partial(real, channel_binding=binding)):
        return Controller(sock, secret)


def fifo_controller(directory, secret):
    """A controller on a FIFO pair, opening it as `pymri connect fifo:DIR` does: from-agent
    first (non-blocking), then to-agent, here blocking until the agent reads it."""
    rfd = os.open(os.path.join(directory, transport.FROM_AGENT), os.O_RDONLY | os.O_NONBLOCK)
    opened = queue.Queue()
    threading.Thread(target=lambda: opened.put(os.open(os.path.join(directory, transport.TO_AGENT),
                                                       os.O_WRONLY)), daemon=True).start()
    wfd = opened.get(timeout=TIMEOUT)
    sock, _ = _wire.channel_for(_wire.FifoStream(rfd, wfd), "test-fifo-pump")
    return Controller(sock, secret)


def connect_to(address):
    parsed = transport.parse_address(address)
    if parsed[0] == "unix":
        return transport.unix_connect(parsed[1])
    return transport.tcp_connect(parsed[1], parsed[2])


def closed_unanswered(address, send=None):
    """True if the agent at `address` closes a new connection without sending a byte (after we
    sent `send`). Closed at once, the connection may be reset before connect() even returns."""
    try:
        sock = connect_to(address)
    except ConnectionResetError:
        return True
    sock.settimeout(TIMEOUT)
    try:
        if send:
            sock.sendall(send)
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sock.close()


def challenge_frame():
    return protocol.encode_frame({"kind": "challenge", "protocol": 2, "nonce": protocol.new_nonce()})


def failed_handshake(address, secret=OTHER_SECRET):
    """A controller that does not know the agent's secret, as far as the agent can tell: its
    accept carries a proof made with `secret`. True if the agent then closed the connection."""
    sock = connect_to(address)
    channel = protocol.Channel(sock)
    sock.settimeout(TIMEOUT)
    cnonce = protocol.new_nonce()
    channel.send_message({"kind": "challenge", "protocol": 2, "nonce": cnonce})
    proof = channel.recv_message()
    key = protocol.parse_secret(secret)
    channel.send_message({"kind": "accept",
                          "proof": protocol.controller_proof(key, cnonce, proof["nonce"])})
    # A request right behind it, which must never run.
    channel.send_message({"kind": "request", "id": 1, "cmd": "set_breakpoint",
                          "args": {"file": PROG, "line": line_of(PROG, "work")}})
    sock.settimeout(TIMEOUT)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


class Target(object):
    """prog_transports.py in a subprocess; lines of its stdout and stderr come through queues."""

    def __init__(self, test, args, env=None, argv=None):
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = PYTHON_DIR
        self.env["XDG_RUNTIME_DIR"] = test.tmp
        for name in ("PYMRI_SECRET_FILE", "PYMRI_AGENT_LISTEN", "PYMRI_AGENT_CONNECT",
                     "PYTHONBREAKPOINT"):
            self.env.pop(name, None)
        self.env.update(env or {})
        self.proc = subprocess.Popen(argv or [sys.executable, PROG] + list(args), env=self.env,
                                     cwd=PROGS, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, universal_newlines=True)
        self.out = queue.Queue()
        self.err = queue.Queue()
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True).start()
        test.addCleanup(self.kill)

    @staticmethod
    def _pump(stream, lines):
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def line(self, lines=None, timeout=TIMEOUT):
        try:
            line = (lines or self.out).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the target said nothing in %ss" % timeout)
        if line is None:
            raise AssertionError("the target ended: %r" % (self.drain_err(),))
        return line

    def drain_err(self):
        """What the ended target wrote to stderr: up to the end of the stream, which the pump
        thread may reach after the process is reaped."""
        lines = []
        while True:
            try:
                line = self.err.get(timeout=TIMEOUT)
            except queue.Empty:
                return lines
            if line is None:
                self.err.put(None)  # a later call ends here too
                return lines
            lines.append(line)

    def ready(self):
        line = self.line()
        assert line.startswith("ready "), line
        return line.split(" ", 1)[1]

    def listening(self):
        """(address, generated secret file) from the agent's line on stderr."""
        line = self.line(self.err)
        m = re.match(r"pymri_agent: listening on ([^;\s]+)(?:; secret in (\S+) )?", line)
        assert m, line
        return m.group(1), m.group(2)

    def command(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def ask(self, text):
        self.command(text)
        return self.line()

    def finish(self):
        self.proc.stdin.close()
        self.proc.wait(TIMEOUT)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pymri-tr-")
        self.addCleanup(self._rmtree)

    def _rmtree(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def controller(self, address, secret=SECRET):
        c = Controller(connect_to(address), secret)
        self.addCleanup(c.close)
        c.ready = c.wait_event("ready")
        return c

    def hit_work(self, target, c, n=21):
        """A breakpoint in work(), hit, inspected and continued: the session works."""
        bp = c.request("set_breakpoint", file=PROG, line=line_of(PROG, "work"))["breakpoint"]
        target.command("work %d" % n)
        st = c.wait_event("stopped", reason="breakpoint")
        self.assertEqual(st["frame"]["function"], "work")
        self.assertEqual(c.request("evaluate", thread=st["thread"], expression="n")["result"], str(n))
        c.request("continue", thread=st["thread"])
        self.assertEqual(target.line(), "work %d" % (2 * n))
        c.request("clear_breakpoints", ids=[bp["id"]])


# ---------------------------------------------------------------------------------------------
# Pure parts: what both sides must agree on byte for byte


class AddressTests(unittest.TestCase):
    def test_every_scheme_parses_as_the_controller_parses_it(self):
        p = transport.parse_address
        self.assertEqual(p("tcp:myhost:5678"), ("tcp", "myhost", 5678))
        self.assertEqual(p("tls:10.1.2.3:443"), ("tls", "10.1.2.3", 443))
        self.assertEqual(p("tcp:[::1]:5678"), ("tcp", "::1", 5678))
        self.assertEqual(p("unix:/tmp/app.sock"), ("unix", "/tmp/app.sock"))
        self.assertEqual(p("unix:/tmp/a:b"), ("unix", "/tmp/a:b"))
        self.assertEqual(p("fifo:/tmp/app.dbg"), ("fifo", "/tmp/app.dbg"))
        self.assertEqual(p("fd:3"), ("fd", 3))
        for text in ["tcp:myhost:5678", "tls:[fe80::1]:1", "tcp:127.0.0.1:0", "unix:/s", "fifo:/d",
                     "fd:0"]:
            self.assertEqual(transport.format_address(p(text)), text)

    def test_malformed_addresses_say_why(self):
        cases = [
            ("localhost:5678", "unknown scheme"), ("/tmp/sock", "no scheme"),
            ("http:x:1", "unknown scheme"), ("tcp:myhost", "HOST:PORT"),
            ("tcp::5678", "host is missing"), ("tcp:host:65536", "not a port"),
            ("tcp:host:-1", "not a port"), ("tcp:host:+1", "not a port"), ("tcp:host:", "not a port"),
            ("tcp:::1:5678", "brackets"), ("tcp:[::1]5678", "port is missing"),
            ("tcp:[::1:5678", "closing"), ("tcp:[nope]:1", "not an IPv6"),
            ("tcp:my host:1", "not a host name"), ("unix:", "path is missing"),
            ("fifo:", "path is missing"), ("unix:a\0b", "NUL"), ("fd:x", "number"),
            ("fd:99999999999", "number"), ("unix:/" + "a" * 200, "longer than"),
        ]
        for text, why in cases:
            with self.assertRaises(ValueError, msg=text) as cm:
                transport.parse_address(text)
            self.assertIn(why, str(cm.exception), text)

    def test_loopback_is_decided_without_resolving(self):
        for text in ["tcp:127.0.0.1:1", "tcp:127.8.9.10:1", "tls:[::1]:1", "tcp:LocalHost:1",
                     "tcp:[::ffff:127.0.0.1]:1", "unix:/s", "fifo:/d"]:
            self.assertTrue(transport.is_local(transport.parse_address(text)), text)
        for text in ["tcp:0.0.0.0:1", "tls:[::]:1", "tcp:myhost:1", "tcp:10.0.0.1:1", "tcp:127.1:1"]:
            self.assertFalse(transport.is_local(transport.parse_address(text)), text)


class ProofTests(unittest.TestCase):
    def test_channel_bound_proofs_match_the_controller(self):
        # The vectors of crates/pymri-protocol/src/handshake.rs.
        key = bytes(16)
        cn, an, fp = "11" * 32, "22" * 32, "33" * 32
        self.assertEqual(protocol.agent_proof(key, cn, an, ""),
                         "9c59db80298f18b343d0e4be8e3434d1974f2c50962d828f9b9321d1269654bf")
        cases = [("", "b3dcd7343beff74df774c04cafe23057ff7430aa864fb2db98504d3306b19377",
                  "af6ae2c2589e960f81d366c2215acf028817e6f0dce96bc3647fe4fbfb95120b"),
                 ("AB12", "783ca91a7b5ac40cf79d1c84faa826d3444716a9e26404067242d53d6e588e38",
                  "dc64ce7aa6c3df6ee1233afede27890e90cd8733d1a76874edf7db4be4eb545d")]
        for attach_nonce, agent, controller in cases:
            self.assertEqual(protocol.agent_proof(key, cn, an, attach_nonce, fp), agent)
            self.assertEqual(protocol.controller_proof(key, cn, an, attach_nonce, fp), controller)


class SecretTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pymri-secret-")
        self.addCleanup(__import__("shutil").rmtree, self.tmp, True)

    def test_a_private_file_is_read_and_a_shared_one_refused(self):
        path = write_secret(self.tmp, "  " + SECRET.upper())
        for mode in (0o640, 0o604, 0o620, 0o602, 0o644, 0o666):
            os.chmod(path, mode)
            with self.assertRaises(_secret.SecretError) as cm:
                _secret.read_file(path)
            self.assertIn("chmod 600", str(cm.exception))
        for mode in (0o600, 0o400):
            os.chmod(path, mode)
            self.assertEqual(_secret.read_file(path), bytes.fromhex(SECRET))

    def test_bad_secret_files_say_why(self):
        with self.assertRaises(_secret.SecretError):
            _secret.read_file(os.path.join(self.tmp, "none"))
        with self.assertRaises(_secret.SecretError):
            _secret.read_file(self.tmp)
        for i, text in enumerate(["abc", "zz" * 32, "", "ab" * 15, "ab cd" * 8, "ab" * 5000]):
            with self.assertRaises(_secret.SecretError, msg=text[:20]):
                _secret.read_file(write_secret(self.tmp, text, name="s%d" % i))

    @unittest.skipUnless(os.geteuid() == 0, "making another user's file needs root")
    def test_a_private_file_of_another_user_is_refused(self):
        # Its owner knows the secret: a program reading it would let that user in.
        path = write_secret(self.tmp)
        os.chown(path, 65534, 65534)
        with self.assertRaises(_secret.SecretError) as cm:
            _secret.read_file(path)
        self.assertIn("belongs to user 65534", str(cm.exception))
        os.chown(path, 0, 0)
        self.assertEqual(_secret.read_file(path), bytes.fromhex(SECRET))

    def test_a_fifo_is_refused_without_waiting(self):
        path = os.path.join(self.tmp, "fifo")
        os.mkfifo(path, 0o600)
        outcome = []

        def read():
            try:
                _secret.read_file(path)
            except _secret.SecretError as exc:
                outcome.append(str(exc))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(TIMEOUT)
        self.assertFalse(reader.is_alive(), "reading a FIFO with no writer hung")
        self.assertEqual(len(outcome), 1)
        self.assertIn("not a regular file", outcome[0])

    def test_generated_secrets_are_private_in_the_runtime_directory(self):
        with mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": self.tmp}):
            key, path = _secret.generate("agent-test")
        self.assertEqual(path, os.path.join(self.tmp, "pymri", "agent-test.secret"))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)
        self.assertEqual(_secret.read_file(path), key)
        self.assertEqual(len(key), 32)
        with mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": self.tmp}):
            with self.assertRaises(FileExistsError):
                _secret.generate("agent-test")  # never over an existing file
        env = {"XDG_RUNTIME_DIR": "", "HOME": self.tmp}
        with mock.patch.dict(os.environ, env):
            self.assertEqual(_secret.runtime_dir(), os.path.join(self.tmp, ".local", "state", "pymri"))
        # A directory others may write to is not used.
        os.chmod(os.path.join(self.tmp, "pymri"), 0o777)
        with mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": self.tmp}):
            with self.assertRaises(_secret.SecretError):
                _secret.generate("other")


class RemoteLockoutTests(TempDirTest):
    def test_a_locked_out_remote_peer_is_told_so_in_place_of_a_proof(self):
        """Instead of a reset that a controller can only take for "is the agent listening?"
        (issue 8). Loopback stands in for a remote address here."""
        with mock.patch.object(library, "is_shared_peer", lambda peer: False):
            address = library.listen("tcp:127.0.0.1:0", secret_file=write_secret(self.tmp))
            try:
                for _ in range(library.MAX_FAILURES):
                    self.assertTrue(failed_handshake(address))
                sock = connect_to(address)
                sock.settimeout(TIMEOUT)
                channel = protocol.Channel(sock, protocol.HANDSHAKE_MAX_FRAME)
                channel.send_message({"kind": "challenge", "protocol": protocol.PROTOCOL_VERSION,
                                      "nonce": protocol.new_nonce()})
                refusal = channel.recv_message()
                sock.close()
            finally:
                library.stop()
        self.assertEqual(refusal["kind"], "proof")
        self.assertNotIn("proof", refusal)
        self.assertRegex(refusal["error"], r"^too many failed handshakes from 127\.0\.0\.1: its "
                                           r"connections are refused for \d+ s more$")


class LockoutTests(unittest.TestCase):
    def test_five_failures_within_a_minute_lock_a_peer_out_for_a_minute(self):
        lockout = library.Lockout()
        for i in range(4):
            self.assertIsNone(lockout.record_failure("10.0.0.1", 100.0 + i))
            self.assertIsNone(lockout.locked_until("10.0.0.1", 100.0 + i))
        self.assertEqual(lockout.record_failure("10.0.0.1", 159.0), 219.0)
        self.assertEqual(lockout.locked_until("10.0.0.1", 218.9), 219.0)
        self.assertIsNone(lockout.locked_until("10.0.0.2", 160.0))
        # A failure while locked out does not extend it; afterwards, a clean slate.
        self.assertEqual(lockout.record_failure("10.0.0.1", 200.0), 219.0)
        self.assertIsNone(lockout.locked_until("10.0.0.1", 219.0))
        for i in range(4):
            self.assertIsNone(lockout.record_failure("10.0.0.1", 219.0 + i))

    def test_failures_older_than_the_window_do_not_count(self):
        lockout = library.Lockout()
        for i in range(20):  # one every 16 s: at most 4 within any 60 s
            self.assertIsNone(lockout.record_failure("p", i * 16.0))
        self.assertEqual(lockout.record_failure("p", 19 * 16.0 + 1), 19 * 16.0 + 1 + 60.0)

    def test_shared_peers_are_delayed_more_and_more_never_locked_out(self):
        lockout = library.Lockout()
        for peer in ("127.0.0.1", "::1", library._LOCAL_PEER):
            for i in range(library.MAX_FAILURES - 1):
                self.assertIsNone(lockout.record_failure(peer, 100.0 + i))
            self.assertIsNone(lockout.delayed_until(peer, 104.0))
            delays = []
            for i in range(8):
                now = 104.0 + 5 * i
                self.assertIsNone(lockout.record_failure(peer, now))
                self.assertIsNone(lockout.locked_until(peer, now))
                delays.append(lockout.delayed_until(peer, now) - now)
            self.assertEqual(delays, [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0])
            # The delay runs from the last failure; a minute without any, and none is left.
            self.assertIsNone(lockout.delayed_until(peer, 139.0 + 4.0))
            self.assertEqual(lockout.delayed_until(peer, 139.0 + 3.9), 143.0)
            self.assertIsNone(lockout.delayed_until(peer, 139.0 + 60.0))
            self.assertLessEqual(len(lockout.peers[peer][0]), library.MAX_FAILURES + 8)

    def test_the_table_is_bounded_and_keeps_locked_peers(self):
        with mock.patch.object(library, "MAX_PEERS", 16):
            lockout = library.Lockout()
            for _ in range(5):
                lockout.record_failure("attacker", 0.0)
            for n in range(100):
                lockout.record_failure("peer-%d" % n, 1.0)
                self.assertLessEqual(len(lockout.peers), 16)
            self.assertIsNotNone(lockout.locked_until("attacker", 2.0))
            lockout.record_failure("late", 1000.0)
            self.assertEqual(list(lockout.peers), ["late"])


# ---------------------------------------------------------------------------------------------
# Refusals made before anything listens (in this process)


def fresh_agent():
    """The package and its library module as imported now: attach tests (in this process) take
    the package off sys.path and out of sys.modules when they detach."""
    import importlib
    if PYTHON_DIR not in sys.path:
        sys.path.insert(0, PYTHON_DIR)
    return importlib.import_module("pymri_agent"), importlib.import_module("pymri_agent.library")


class RefusalTests(TempDirTest):
    """Refusals before anything listens. A SecretError is caught as the ValueError it is: the
    package may have been imported anew (fresh_agent), its exception classes with it."""

    def setUp(self):
        TempDirTest.setUp(self)
        self.agent, self.library = fresh_agent()
        self.addCleanup(self.agent.stop)

    def test_a_shared_readable_secret_file_is_refused(self):
        sock = os.path.join(self.tmp, "a.sock")
        for mode in (0o644, 0o640, 0o620):
            path = write_secret(self.tmp, mode=mode, name="shared-%o" % mode)
            with self.assertRaises(ValueError) as cm:
                self.agent.listen("unix:" + sock, secret_file=path)
            self.assertIn("must be private", str(cm.exception))
            with mock.patch.dict(os.environ, {"PYMRI_SECRET_FILE": path}):
                with self.assertRaises(ValueError):
                    self.agent.listen("unix:" + sock)
        self.assertFalse(os.path.exists(sock))
        self.assertIsNone(self.library._endpoint)

    def test_listening_beyond_loopback_needs_a_secret_given_explicitly(self):
        with mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": self.tmp}):
            for address in ("tcp:0.0.0.0:0", "tls:[::]:0", "tcp:myhost.example:0"):
                with self.assertRaises(ValueError) as cm:
                    self.agent.listen(address)
                self.assertIn("needs a secret given explicitly", str(cm.exception))
        self.assertIsNone(self.library._endpoint)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "pymri")), "no secret was made")

    def test_one_endpoint_at_a_time_and_no_descriptors(self):
        with self.assertRaises(ValueError):
            self.agent.listen("fd:3")
        self.agent.listen("unix:" + os.path.join(self.tmp, "a.sock"),
                           secret_file=write_secret(self.tmp))
        with self.assertRaises(RuntimeError):
            self.agent.listen("unix:" + os.path.join(self.tmp, "b.sock"))


class StopTests(AgentTestCase):
    """stop() in this very process: everything the agent made is gone afterwards."""

    def test_stop_ends_the_session_and_removes_every_hook_and_file(self):
        agent, library = fresh_agent()
        tmp = tempfile.mkdtemp(prefix="pymri-stop-")
        self.addCleanup(__import__("shutil").rmtree, tmp, True)
        sock_path = os.path.join(tmp, "agent.sock")
        err = []
        with mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": tmp}), \
                mock.patch.object(sys, "stderr", mock.Mock(write=err.append)):
            address = agent.listen("unix:" + sock_path)
        secret_path = re.search(r"secret in (\S+) ", err[0]).group(1)
        self.assertEqual(stat.S_IMODE(os.stat(sock_path).st_mode), 0o600)
        with open(secret_path) as f:
            c = Controller(connect_to(address), f.read().strip())
        self.addCleanup(c.close)
        ready = c.wait_event("ready")
        self.assertEqual(ready["mode"], "attach")
        names = [t["name"] for t in c.request("threads")["threads"]]
        self.assertNotIn("pymri-agent-listen", names)
        c.request("set_breakpoint", file=PROG, line=line_of(PROG, "work"))
        c.request("set_exception_filters", filters=["uncaught"])
        agent.stop()
        self.assertEqual(c.wait_event("detached")["reason"], "stop")
        c.wait_closed()
        self.assertFalse(os.path.exists(sock_path))
        self.assertFalse(os.path.exists(secret_path))
        self.assertIsNone(library._endpoint)
        for thread in threading.enumerate():
            if thread.name.startswith("pymri-agent"):
                thread.join(TIMEOUT)  # the session's reader ends once it sees its socket closed
                self.assertFalse(thread.is_alive(), thread.name)
        self.assertIs(sys.excepthook, sys.__excepthook__)
        self.assertIsNone(sys.gettrace())
        agent.stop()  # idempotent


# ---------------------------------------------------------------------------------------------
# Sessions with a real target process


class SessionTests(TempDirTest):
    def test_forward_tcp_detach_leaves_the_agent_listening(self):
        secret = write_secret(self.tmp)
        t = Target(self, ["listen", "tcp:127.0.0.1:0", secret])
        address = t.ready()
        self.assertRegex(address, r"^tcp:127\.0\.0\.1:\d+$")
        c = self.controller(address)
        self.assertEqual(c.ready["mode"], "attach")
        self.hit_work(t, c)
        c.request("detach")
        c.wait_closed()
        self.assertEqual(t.ask("work 2"), "work 4")  # runs undebugged
        c = self.controller(address)  # the next session
        self.hit_work(t, c, 5)
        self.assertEqual(t.ask("stop"), "stopped")
        self.assertEqual(c.wait_event("detached")["reason"], "stop")
        with self.assertRaises(ConnectionRefusedError):
            connect_to(address)
        self.assertEqual(t.ask("endpoint"), "endpoint no")
        self.assertEqual(t.finish(), 0)
        self.assertEqual(t.drain_err(), [])

    def test_reverse_tcp_session_ends_with_its_detach(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        listener.settimeout(TIMEOUT)
        t = Target(self, ["connect", "tcp:127.0.0.1:%d" % listener.getsockname()[1],
                          write_secret(self.tmp)])
        conn, _ = listener.accept()
        c = Controller(conn, SECRET)
        self.addCleanup(c.close)
        self.assertEqual(c.wait_event("ready")["mode"], "attach")
        self.assertEqual(t.ready(), "-")
        self.hit_work(t, c)
        c.request("detach")
        c.wait_closed()
        self.assertEqual(t.ask("endpoint"), "endpoint no")
        self.assertEqual(t.ask("work 3"), "work 6")
        self.assertEqual(t.finish(), 0)

    def test_unix_socket_with_a_generated_secret(self):
        sock_path = os.path.join(self.tmp, "app.sock")
        t = Target(self, ["listen", "unix:" + sock_path])
        address, secret_path = t.listening()
        self.assertEqual(address, "unix:" + sock_path)
        self.assertEqual(t.ready(), address)
        self.assertEqual(os.path.dirname(secret_path), os.path.join(self.tmp, "pymri"))
        self.assertEqual(stat.S_IMODE(os.stat(secret_path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(sock_path).st_mode), 0o600)
        with open(secret_path) as f:
            secret = f.read().strip()
        self.assertEqual(len(secret), 64)
        c = self.controller(address, secret)
        self.hit_work(t, c)
        self.assertEqual(t.finish(), 0)
        self.assertEqual(c.wait_event("detached")["reason"], "exit")
        self.assertFalse(os.path.exists(sock_path))
        self.assertFalse(os.path.exists(secret_path))

    def test_fifo_pair_sessions_one_after_the_other(self):
        directory = os.path.join(self.tmp, "app.dbg")
        t = Target(self, ["listen", "fifo:" + directory])
        address, secret_path = t.listening()
        self.assertEqual(t.ready(), "fifo:" + directory)
        for name in (transport.TO_AGENT, transport.FROM_AGENT):
            st = os.stat(os.path.join(directory, name))
            self.assertTrue(stat.S_ISFIFO(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        with open(secret_path) as f:
            secret = f.read().strip()
        for n in (4, 6):
            c = fifo_controller(directory, secret)
            self.addCleanup(c.close)
            c.wait_event("ready")
            self.hit_work(t, c, n)
            c.request("detach")
            c.wait_closed()
        self.assertEqual(t.ask("stop"), "stopped")
        self.assertFalse(os.path.exists(directory))
        self.assertEqual(t.finish(), 0)

    def test_tls_forward_and_reverse_with_channel_binding(self):
        fingerprint = certificate_fingerprint()
        secret = write_secret(self.tmp)
        t = Target(self, ["listen", "tls:127.0.0.1:0", secret])
        address = t.ready()
        self.assertTrue(address.startswith("tls:127.0.0.1:"))
        port = int(address.rsplit(":", 1)[1])
        c = bound_controller(tls_server_socket(socket.create_connection(("127.0.0.1", port))),
                             SECRET, fingerprint)
        self.addCleanup(c.close)
        c.wait_event("ready")
        self.hit_work(t, c)
        c.request("detach")
        c.wait_closed()
        self.assertEqual(t.ask("stop"), "stopped")
        self.assertEqual(t.finish(), 0)
        # Reverse: the agent connects, and is the TLS client all the same.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        self.addCleanup(listener.close)
        t = Target(self, ["connect", "tls:127.0.0.1:%d" % listener.getsockname()[1], secret])
        c = bound_controller(tls_server_socket(listener.accept()[0]), SECRET, fingerprint)
        self.addCleanup(c.close)
        c.wait_event("ready")
        self.assertEqual(t.ready(), "-")
        self.hit_work(t, c, 7)
        self.assertEqual(t.finish(), 0)

    def test_tls_through_a_machine_in_the_middle_is_refused(self):
        """A proxy terminating TLS shows the agent its own certificate: the controller's proof,
        bound to the controller's certificate, does not verify, nor does the agent's."""
        t = Target(self, ["listen", "tls:127.0.0.1:0", write_secret(self.tmp)])
        port = int(t.ready().rsplit(":", 1)[1])
        sock = tls_server_socket(socket.create_connection(("127.0.0.1", port)))
        channel = protocol.Channel(sock)
        sock.settimeout(TIMEOUT)
        key = protocol.parse_secret(SECRET)
        cnonce = protocol.new_nonce()
        channel.send_message({"kind": "challenge", "protocol": 2, "nonce": cnonce})
        proof = channel.recv_message()
        other = "a0" * 32  # the real controller's certificate, behind the proxy
        self.assertNotEqual(proof["proof"], protocol.agent_proof(key, cnonce, proof["nonce"], "", other))
        self.assertEqual(proof["proof"], protocol.agent_proof(key, cnonce, proof["nonce"], "",
                                                              certificate_fingerprint()))
        channel.send_message({"kind": "accept", "proof": protocol.controller_proof(
            key, cnonce, proof["nonce"], "", other)})
        self.assertEqual(sock.recv(1), b"")
        sock.close()
        # Without any binding (a plain proof over TLS) it is refused too.
        sock = tls_server_socket(socket.create_connection(("127.0.0.1", port)))
        with self.assertRaises(protocol.AuthError):
            Controller(sock, SECRET)
        sock.close()
        self.assertEqual(t.ask("work 1"), "work 2")

    def test_wrong_or_missing_secret_is_refused_before_any_command(self):
        t = Target(self, ["listen", "tcp:127.0.0.1:0", write_secret(self.tmp)])
        address = t.ready()
        self.assertTrue(failed_handshake(address))
        # No handshake at all: a request straight away.
        request = protocol.encode_frame({"kind": "request", "id": 1, "cmd": "set_breakpoint",
                                         "args": {"file": PROG, "line": line_of(PROG, "work")}})
        self.assertTrue(closed_unanswered(address, request))
        c = self.controller(address)
        self.assertEqual(c.request("list_breakpoints")["breakpoints"], [])
        self.assertEqual(t.ask("work 1"), "work 2")  # and nothing stops

    def test_five_failures_delay_a_loopback_peer_without_locking_it_out(self):
        """Loopback is every local user at once: failures there delay the next handshakes (and
        say so) instead of locking everyone out (issue 8)."""
        t = Target(self, ["listen", "tcp:127.0.0.1:0", write_secret(self.tmp)])
        address = t.ready()
        for _ in range(library.MAX_FAILURES):
            self.assertTrue(failed_handshake(address))
        sock = connect_to(address)
        sock.settimeout(TIMEOUT)
        notice = protocol.Channel(sock, protocol.HANDSHAKE_MAX_FRAME).recv_message()
        sock.close()
        self.assertEqual(notice["kind"], "notice")
        self.assertIn("this handshake is delayed by", notice["message"])
        self.assertLessEqual(notice["delay"], library.MAX_DELAY)
        # That connection gave up, a sixth failure: the right secret still gets in.
        c = self.controller(address)
        self.assertEqual(c.request("list_breakpoints")["breakpoints"], [])
        self.assertEqual(t.ask("work 1"), "work 2")

    def test_garbage_connections_do_not_stall_the_target_nor_the_session(self):
        t = Target(self, ["listen", "tcp:127.0.0.1:0", write_secret(self.tmp)])
        address = t.ready()
        c = self.controller(address)
        garbage = [b"", b"GET / HTTP/1.0\r\n\r\n", b"\xff\xff\xff\xff", challenge_frame(),
                   os.urandom(64)]
        # A second flood is allowed when the first one's worst stall is over the bound: the bound
        # is the agent's, and on a loaded machine the kernel alone can keep a runnable thread off
        # the CPU that long (seen: 5 ms with no agent at all, 20 ms while builds ran beside);
        # an agent that stalls the target does it in every flood.
        worst = []
        for _ in range(2):
            self.assertEqual(t.ask("measure-start"), "measuring")
            for i in range(GARBAGE):
                self.assertTrue(closed_unanswered(address, garbage[i % len(garbage)]))
                if i % 50 == 0:
                    c.request("threads")  # the live session, used all through the flood
            worst.append(float(t.ask("measure-stop").split()[1]))
            if worst[-1] < MAX_STALL_MS:
                break
        sys.stderr.write("[garbage flood: worst stall of the target %s ms] "
                         % ", ".join("%.2f" % w for w in worst))
        self.assertLess(min(worst), MAX_STALL_MS, worst)
        self.hit_work(t, c)


class SetTraceTests(TempDirTest):
    def check_trace_stop(self, t, c):
        t.command("trace 4")
        st = c.wait_event("stopped")
        self.assertEqual(st["reason"], "breakpoint")
        self.assertEqual((st["frame"]["function"], st["frame"]["line"]), ("traced", line_of(PROG, "trace")))
        tid = st["thread"]
        self.assertEqual(c.request("evaluate", thread=tid, expression="x")["result"], "5")
        frames = [f["function"] for f in c.request("stack", thread=tid)["frames"]]
        self.assertEqual(frames[:2], ["traced", "main"])
        c.request("next", thread=tid)
        st = c.wait_event("stopped", reason="step")
        self.assertEqual(st["frame"]["line"], line_of(PROG, "after-trace"))
        c.request("continue", thread=tid)
        self.assertEqual(t.line(), "trace 50")

    def test_breakpoint_waits_for_a_controller_on_the_listen_address(self):
        sock_path = os.path.join(self.tmp, "bp.sock")
        t = Target(self, ["plain"], env={"PYTHONBREAKPOINT": "pymri_agent.set_trace",
                                         "PYMRI_AGENT_LISTEN": "unix:" + sock_path})
        self.assertEqual(t.ready(), "-")
        t.command("trace 4")
        address, secret_path = t.listening()  # breakpoint() made the listener, and waits
        with open(secret_path) as f:
            c = self.controller(address, f.read().strip())
        st = c.wait_event("stopped")
        self.assertEqual((st["reason"], st["frame"]["line"]), ("breakpoint", line_of(PROG, "trace")))
        c.request("continue", thread=st["thread"])
        self.assertEqual(t.line(), "trace 50")
        self.check_trace_stop(t, c)  # the next breakpoint() reuses the session
        self.assertEqual(t.finish(), 0)

    def test_breakpoint_connects_out_with_the_environment_secret(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        self.addCleanup(listener.close)
        t = Target(self, ["plain"], env={
            "PYTHONBREAKPOINT": "pymri_agent.set_trace", "PYMRI_SECRET_FILE": write_secret(self.tmp),
            "PYMRI_AGENT_CONNECT": "tcp:127.0.0.1:%d" % listener.getsockname()[1]})
        self.assertEqual(t.ready(), "-")
        t.command("trace 4")
        c = Controller(listener.accept()[0], SECRET)
        self.addCleanup(c.close)
        c.wait_event("ready")
        st = c.wait_event("stopped")
        c.request("continue", thread=st["thread"])
        self.assertEqual(t.line(), "trace 50")
        self.check_trace_stop(t, c)
        self.assertEqual(t.finish(), 0)

    def test_set_trace_that_cannot_listen_warns_and_the_program_goes_on(self):
        t = Target(self, ["plain"], env={"PYTHONBREAKPOINT": "pymri_agent.set_trace",
                                         "PYMRI_AGENT_LISTEN": "tcp:0.0.0.0:0"})
        self.assertEqual(t.ready(), "-")
        self.assertEqual(t.ask("trace 4"), "trace 50")
        self.assertEqual(t.finish(), 0)
        self.assertIn("needs a secret given explicitly", "\n".join(t.drain_err()))


class CommandLineTests(TempDirTest):
    def run_main(self, args, **kw):
        return Target(self, None, argv=[sys.executable, "-m", "pymri_agent"] + args, **kw)

    def test_connect_arms_the_agent_before_the_program_starts(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        self.addCleanup(listener.close)
        script = prog_path("script_exit.py")
        t = self.run_main(["--connect", "tcp:127.0.0.1:%d" % listener.getsockname()[1],
                           "--secret-file", write_secret(self.tmp), "script_exit.py", "a", "b"])
        c = Controller(listener.accept()[0], SECRET)
        self.addCleanup(c.close)
        self.assertEqual(c.wait_event("ready")["mode"], "launch")
        c.request("set_breakpoint", file="script_exit.py", line=line_of(script, "body"),
                  condition="i == 2")
        c.request("start", stop_on_entry=True)
        st = c.wait_event("stopped", reason="entry")
        self.assertEqual(st["frame"]["file"], script)
        self.assertEqual([f["function"] for f in c.request("stack", thread=st["thread"])["frames"]],
                         ["<module>"])
        c.request("continue", thread=st["thread"])
        st = c.wait_event("stopped", reason="breakpoint")
        c.request("continue", thread=st["thread"])
        self.assertEqual(c.wait_event("exited")["code"], 3)
        c.request("quit")
        self.assertEqual(t.finish(), 3)
        self.assertIn("counter 3 main __main__ script_exit.py ['a', 'b']", t.line())

    def test_listen_wait_runs_a_module_after_start(self):
        sock_path = os.path.join(self.tmp, "m.sock")
        t = self.run_main(["--listen", "unix:" + sock_path, "--wait", "-m", "pkgmod", "z"])
        address, secret_path = t.listening()
        with open(secret_path) as f:
            c = self.controller(address, f.read().strip())
        self.assertEqual(c.ready["mode"], "launch")
        c.request("start", stop_on_entry=False)
        self.assertEqual(c.wait_event("exited")["code"], 0)
        c.request("quit")
        self.assertEqual(t.finish(), 0)
        self.assertEqual(t.line(), "pkgmod main __main__ pkgmod ['z']")

    def test_listen_without_wait_runs_the_program_at_once(self):
        secret = write_secret(self.tmp)
        t = self.run_main(["--listen=tcp:127.0.0.1:0", "--secret-file=" + secret, "prog_transports.py",
                           "plain"])
        address, generated = t.listening()
        self.assertIsNone(generated)
        self.assertEqual(t.ready(), "-")
        c = self.controller(address)
        self.assertEqual(c.ready["mode"], "attach")
        self.hit_work(t, c)
        self.assertEqual(t.finish(), 0)

    def test_usage_errors_and_refusals_exit_2_without_running_anything(self):
        shared = write_secret(self.tmp, mode=0o644)
        cases = [
            ([], "give one of --listen"),
            (["script_exit.py"], "give one of --listen"),
            (["--listen", "unix:/x", "--connect", "tcp:127.0.0.1:1", "script_exit.py"], "give one of"),
            (["--connect", "tcp:127.0.0.1:1", "--wait", "script_exit.py"], "--wait goes with --listen"),
            (["--listen", "unix:/x", "--bogus", "script_exit.py"], "unknown option --bogus"),
            (["--listen", "unix:/x"], "no program to run"),
            (["--listen"], "--listen needs a value"),
            (["--listen", "nowhere", "script_exit.py"], "no scheme"),
            (["--listen", "unix:" + os.path.join(self.tmp, "s"), "--secret-file", shared,
              "script_exit.py"], "chmod 600"),
            (["--listen", "tcp:0.0.0.0:0", "script_exit.py"], "needs a secret given explicitly"),
        ]
        for args, message in cases:
            t = self.run_main(args)
            self.assertEqual(t.finish(), 2, args)
            self.assertIn(message, "\n".join(t.drain_err()), args)
            with self.assertRaises(AssertionError):
                t.line()  # nothing on stdout: the program did not run
        t = self.run_main(["--help"])
        self.assertEqual(t.finish(), 0)
        self.assertIn("--listen ADDR", t.line())


if __name__ == "__main__":
    unittest.main()
