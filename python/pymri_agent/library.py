"""The agent as a library (docs/transports.md section 7): `listen`, `connect`, `set_trace`,
`stop`, and what `python -m pymri_agent` builds on.

One endpoint at a time per process:

- a listener (forward): one daemon thread, "pymri-agent-listen", accepts connections on a TCP
  port, a Unix socket or a FIFO pair and authenticates them itself, non-blocking, several at
  once (at most MAX_HANDSHAKES, each within HANDSHAKE_TIMEOUT). It serves one session at a
  time: a connection arriving during a live session is closed at once, unread. Failed
  handshakes count per peer (the source IP; one shared counter for Unix sockets and FIFOs); after
  MAX_FAILURES within FAILURE_WINDOW a remote peer's connections are refused for LOCKOUT (told
  so in a refusal). Loopback addresses, Unix sockets and FIFOs are one peer for every local
  user, so a lockout would let any of them shut the others out: their handshakes are delayed
  instead, from FIRST_DELAY doubling to MAX_DELAY, and each delayed connection is told so.
  Each rejected connection costs the program a few bytecodes in that thread, never a stop
  (section 6). A session that ends leaves the listener listening for the next one.
- a reverse connection: the agent connects out (retrying for CONNECT_RETRY while the controller
  is not listening yet) and authenticates in the calling thread; the endpoint ends with the
  session.

A session is an `engine.Agent` in "attach" mode (the program runs; `start`/`restart` do not
apply), or "launch" mode for `python -m pymri_agent` when the program waits for the
controller's `start`. TLS and FIFO sessions go through a pump thread (_wire.py).
"""

import os
import select
import socket
import sys
import threading
import time

from . import _secret, _wire, protocol, transport

DEFAULT_ADDRESS = "tcp:127.0.0.1:5678"
MAX_FAILURES = 5
FAILURE_WINDOW = 60.0
LOCKOUT = 60.0
#: The delay of a loopback or local peer's handshakes after MAX_FAILURES failures, doubling with
#: each further failure within FAILURE_WINDOW up to MAX_DELAY (well within the controller's own
#: handshake timeout, so that the right controller always gets in).
FIRST_DELAY = 0.25
MAX_DELAY = 4.0
MAX_HANDSHAKES = 8
HANDSHAKE_TIMEOUT = protocol.HANDSHAKE_TIMEOUT
#: Peers remembered by the lockout at once: enough for honest use, bounded under a flood.
MAX_PEERS = 4096
#: How long `connect` retries a controller that does not listen yet.
CONNECT_RETRY = 10.0
#: How long the listener stops accepting when the system is out of descriptors (instead of
#: spinning on a backlog it cannot take from).
_ACCEPT_PAUSE = 0.05
#: The lockout's peer for loopback addresses, Unix sockets and FIFOs: every local user.
_LOCAL_PEER = "local"

_lock = threading.RLock()
_endpoint = None


def is_shared_peer(peer):
    """Whether `peer` (a lockout key) stands for every local user at once: a loopback address,
    or the one key of Unix sockets and FIFOs."""
    return peer == _LOCAL_PEER or peer.startswith("127.") or peer == "::1"


class Lockout(object):
    """Failed handshakes per peer (section 5), with the time passed in: a lockout for remote
    peers, a growing delay for shared ones (is_shared_peer). Mirrors the controller's
    crates/pymri-transport/src/lockout.rs."""

    def __init__(self):
        self.peers = {}  # peer -> [failure times, locked until or None, last seen]

    def locked_until(self, peer, now):
        """The end of the peer's lockout, or None if its connections may be read."""
        record = self.peers.get(peer)
        if record is None or record[1] is None:
            return None
        if now < record[1]:
            return record[1]
        del self.peers[peer]  # the lockout is over: a clean slate
        return None

    def delayed_until(self, peer, now):
        """When a handshake of a shared peer arriving now may start, or None if at once."""
        record = self.peers.get(peer)
        if record is None:
            return None
        failures = [t for t in record[0] if now - t < FAILURE_WINDOW]
        if len(failures) < MAX_FAILURES:
            return None
        until = failures[-1] + min(MAX_DELAY, FIRST_DELAY * 2 ** (len(failures) - MAX_FAILURES))
        return until if now < until else None

    def record_failure(self, peer, now):
        """Counts a failure; returns the end of the lockout it caused, else None (always for a
        shared peer, which is delayed instead)."""
        if peer not in self.peers and len(self.peers) >= MAX_PEERS:
            self._forget_one(now)
        record = self.peers.setdefault(peer, [[], None, now])
        record[2] = now
        if record[1] is not None:
            if now < record[1]:
                return record[1]
            record[0], record[1] = [], None
        record[0] = [t for t in record[0] if now - t < FAILURE_WINDOW]
        record[0].append(now)
        if is_shared_peer(peer):
            # The delay stops growing here; older failures need not be kept.
            del record[0][:-(MAX_FAILURES + 8)]
            return None
        if len(record[0]) >= MAX_FAILURES:
            record[0], record[1] = [], now + LOCKOUT
            return record[1]
        return None

    def _forget_one(self, now):
        """Drops whatever no longer matters, else the least recently seen unlocked peer, else
        the least recently seen one."""
        for peer, (failures, until, _) in list(self.peers.items()):
            if until is not None:
                stale = now >= until
            else:
                stale = not failures or now - failures[-1] >= FAILURE_WINDOW
            if stale:
                del self.peers[peer]
        if len(self.peers) < MAX_PEERS:
            return
        unlocked = [p for p, r in self.peers.items() if r[1] is None]
        pool = unlocked or list(self.peers)
        del self.peers[min(pool, key=lambda p: self.peers[p][2])]


def _thread_offsets():
    """PyThreadState offsets of this interpreter (CPython < 3.12), found in the calling thread's
    own state, so that a controller that cannot read this process (remote, or in another
    container) need not send them: with them, breakpoints and `pause` reach threads that
    already run (engine: all_threads). The backend validates them again before any use."""
    if sys.version_info >= (3, 12):
        return None
    try:
        import ctypes
        get = ctypes.pythonapi.PyThreadState_Get
        get.restype = ctypes.c_void_p
        get.argtypes = []
        state = get()
        word = ctypes.sizeof(ctypes.c_void_p)

        def probe(frame, event, arg):
            return None

        old = sys.gettrace()
        sys.settrace(probe)
        try:
            # The fields sought lie within the first 256 bytes on 3.9-3.11, inside the struct.
            words = [ctypes.c_void_p.from_address(state + word * i).value for i in range(32)]
        finally:
            sys.settrace(old)
        obj = words.index(id(probe)) * word
        return {"c_tracefunc": obj - 2 * word, "c_traceobj": obj,
                "thread_id": words.index(threading.get_ident()) * word}
    except Exception:
        return None


def _key(secret_file):
    """The key from `secret_file`, else from the file PYMRI_SECRET_FILE names, else None."""
    path = secret_file if secret_file is not None else os.environ.get("PYMRI_SECRET_FILE") or None
    return _secret.read_file(path) if path is not None else None


class _Endpoint(object):
    """What `listen` or `connect` set up. Sessions come and go through it."""

    def __init__(self, address, key, secret_path, first_mode):
        self.address = address
        self.key = key
        self.secret_path = secret_path
        self.next_mode = first_mode
        self.cond = threading.Condition(threading.Lock())
        self.agent = None  # the live session
        self.closed = False
        self.threads = set()  # idents of the endpoint's threads, never shown as the program's
        import atexit
        atexit.register(self.close)

    def wait_session(self):
        """The live session's Agent, waiting for one if needed; None once the endpoint closed."""
        with self.cond:
            while not self.closed and self.agent is None:
                self.cond.wait()
            return self.agent

    def start_session(self, channel, threads):
        from . import engine
        agent = engine.Agent(channel, self.next_mode, _thread_offsets())
        self.next_mode = "attach"
        agent.agent_threads.update(self.threads)
        agent.agent_threads.update(threads)
        agent.detach_callbacks.append(lambda: self._session_ended(agent))
        agent.activate()
        with self.cond:
            # A controller gone already detached it during activate(): no session then.
            live = not agent.detached and not self.closed
            if live:
                self.agent = agent
                self.cond.notify_all()
        if not live:
            agent.detach("stop", notify=True)  # the endpoint closed meanwhile
        return agent

    def _session_ended(self, agent):
        with self.cond:
            if self.agent is agent:
                self.agent = None
            self.cond.notify_all()
        self.session_ended()

    def session_ended(self):
        """A session ended (the Agent detached); its hooks are gone already."""

    def close(self):
        """Ends the live session (the controller is told `detached`, reason "stop"), stops
        listening, removes the endpoint's files. Idempotent."""
        global _endpoint
        with self.cond:
            if self.closed:
                return
            self.closed = True
            agent = self.agent
            self.cond.notify_all()
        with _lock:
            if _endpoint is self:
                _endpoint = None
        if agent is not None:
            agent.detach("stop", notify=True)
        self.release()
        if self.secret_path is not None:
            try:
                os.unlink(self.secret_path)
            except OSError:
                pass
        import atexit
        atexit.unregister(self.close)

    def release(self):
        """Closes the transport once the endpoint is closed."""


class _Reverse(_Endpoint):
    """A connection the agent opened; the endpoint ends with its session."""

    def session_ended(self):
        self.close()


class _Listener(_Endpoint):
    """A listening socket or FIFO pair, served by the listener thread (see the module doc)."""

    def __init__(self, parsed, key, secret_path, first_mode):
        kind = parsed[0]
        self.tls = kind == "tls"
        self.sock = None
        self.unix_path = self.unix_inode = None
        self.fifo_dir = self.fifo_inodes = self.fifo_rfd = None
        self.fifo_busy = False  # a handshake or a session holds the FIFOs
        self.fifo_made_dir = False
        self.retry_at = 0.0  # accepting (or re-creating FIFOs) paused until then
        self.lockout = Lockout()
        self.handshakes = []
        if kind in ("tcp", "tls"):
            self.sock, port = transport.tcp_listen(parsed[1], parsed[2])
            address = transport.format_address((kind, parsed[1], port))
        elif kind == "unix":
            self.sock, self.unix_inode = transport.unix_listen(parsed[1])
            self.unix_path = parsed[1]
            address = transport.format_address(parsed)
        else:
            self.fifo_dir = parsed[1]
            self.fifo_made_dir = not os.path.lexists(self.fifo_dir)
            self._fifo_arm()
            address = transport.format_address(parsed)
        _Endpoint.__init__(self, address, key, secret_path, first_mode)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.thread = threading.Thread(target=self._run, name="pymri-agent-listen", daemon=True)
        self.thread.start()

    # -- called from other threads ----------------------------------------------------------------

    def _wake(self):
        with self.cond:
            if self.wake_w is None:
                return  # the thread is gone (and the descriptor number may be another file's)
            try:
                os.write(self.wake_w, b"x")
            except BlockingIOError:
                pass  # full: a wake-up is pending anyway

    def session_ended(self):
        self.fifo_busy = False
        self._wake()  # the listener thread reads the next FIFO pair

    def release(self):
        self._wake()
        if threading.get_ident() != self.thread.ident:
            self.thread.join(5.0)

    # -- the listener thread ----------------------------------------------------------------------

    def _run(self):
        self.threads.add(threading.get_ident())
        try:
            while not self.closed:
                now = time.monotonic()
                for hs in [h for h in self.handshakes if now >= h.deadline]:
                    self._failed(hs, now)
                for hs in [h for h in self.handshakes if h.released(now)]:
                    self._advance(hs)  # what arrived during its delay
                if self.fifo_dir is not None and self.fifo_rfd is None and not self.fifo_busy \
                        and now >= self.retry_at:
                    self._fifo_arm_checked(now)
                wanted = [(self.wake_r, select.POLLIN, "wake")]
                if self.sock is not None and now >= self.retry_at:
                    wanted.append((self.sock.fileno(), select.POLLIN, "accept"))
                if self.fifo_rfd is not None:
                    wanted.append((self.fifo_rfd, select.POLLIN, "fifo"))
                for hs in self.handshakes:
                    wanted.extend((fd, mask, hs) for fd, mask in hs.interest())
                masks = {}
                owners = {}
                for fd, mask, owner in wanted:
                    masks[fd] = masks.get(fd, 0) | mask
                    if owner not in owners.setdefault(fd, []):
                        owners[fd].append(owner)
                deadlines = [h.deadline for h in self.handshakes]
                deadlines.extend(h.hold for h in self.handshakes if h.held(now))
                if self.retry_at > now:
                    deadlines.append(self.retry_at)
                timeout = max(0.0, min(deadlines) - now) * 1000.0 if deadlines else None
                poller = select.poll()
                for fd, mask in masks.items():
                    poller.register(fd, mask)
                ready = []
                for fd, _ in poller.poll(timeout):
                    for owner in owners.get(fd, ()):
                        if owner not in ready:
                            ready.append(owner)
                for owner in ready:
                    if owner == "wake":
                        try:
                            os.read(self.wake_r, 512)
                        except OSError:
                            pass
                    elif owner == "accept":
                        self._accept()
                    elif owner == "fifo":
                        self._fifo_ready()
                    elif owner in self.handshakes:
                        self._advance(owner)
        finally:
            self._shutdown()

    def _accept(self):
        for _ in range(16):  # a bounded batch, so that handshakes and wake-ups keep their turn
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.retry_at = time.monotonic() + _ACCEPT_PAUSE
                return
            self._admit(conn, peer)

    def _admit(self, conn, peer):
        now = time.monotonic()
        if isinstance(peer, tuple):
            key = peer[0]
            if key.startswith("::ffff:") and "." in key:
                key = key[7:]  # an IPv4 peer on a dual-stack socket is that IPv4 address
            if is_shared_peer(key):
                key = _LOCAL_PEER  # any local user can connect from any loopback address
        else:
            key = _LOCAL_PEER
        if self.closed or self.agent is not None or len(self.handshakes) >= MAX_HANDSHAKES:
            transport.close_now(conn)
            return
        until = self.lockout.locked_until(key, now)
        if until is not None:
            self._refuse_locked(conn, key, until - now)
            return
        hold = self.lockout.delayed_until(key, now)
        try:
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = _wire.TlsStream(conn) if self.tls else _wire.SocketStream(conn)
            if hold is not None and not self.tls:
                # Told at once, so that a controller that gives up says why (protocol 3).
                stream.send(protocol.encode_frame({
                    "kind": "notice", "protocol": protocol.PROTOCOL_VERSION,
                    "delay": round(hold - now, 3),
                    "message": "this handshake is delayed by %.1f s: recent handshakes from "
                               "local users failed" % (hold - now)},
                    protocol.HANDSHAKE_MAX_FRAME))
        except Exception:
            transport.close_now(conn)
            return
        hs = _wire.Handshake(stream, self.key, (hold or now) + HANDSHAKE_TIMEOUT, key, hold)
        self.handshakes.append(hs)
        self._advance(hs)  # over TLS the agent speaks first: its ClientHello

    def _refuse_locked(self, conn, key, left):
        """A locked-out peer's connection: a refusal in place of the proof (protocol section 3,
        rule 2), so that its controller says why instead of "is the agent listening?"; over
        TLS, where no plain frame can be read, closed unread."""
        if not self.tls:
            try:
                conn.setblocking(False)
                try:
                    conn.recv(protocol.HANDSHAKE_MAX_FRAME)  # its challenge, if it came: unread
                    # data would make the close a reset that discards the refusal
                except (BlockingIOError, InterruptedError):
                    pass
                conn.send(protocol.encode_frame({
                    "kind": "proof", "protocol": protocol.PROTOCOL_VERSION,
                    "error": "too many failed handshakes from %s: its connections are refused for "
                             "%d s more" % (key, int(left) + 1)}, protocol.HANDSHAKE_MAX_FRAME))
                conn.shutdown(socket.SHUT_WR)
                conn.close()
                return
            except OSError:
                pass
        transport.close_now(conn)

    def _advance(self, hs):
        try:
            authenticated = hs.step()
        except Exception:
            self._failed(hs, time.monotonic())
            return
        if not authenticated:
            return
        self.handshakes.remove(hs)
        if self.closed or self.agent is not None:
            hs.stream.close()  # another controller was first: one session at a time
            self._fifo_release()
            return
        try:
            sock, pump = _wire.channel_for(hs.stream, "pymri-agent-pump")
        except Exception:
            hs.stream.close()
            self._fifo_release()
            return
        self.start_session(protocol.Channel(sock, keys=hs.keys()),
                           {pump.ident} if pump is not None else ())

    def _failed(self, hs, now):
        self.handshakes.remove(hs)
        try:
            hs.stream.close()
        except OSError:
            pass
        self.lockout.record_failure(hs.peer, now)
        self._fifo_release()

    def _shutdown(self):
        for hs in self.handshakes:
            try:
                hs.stream.close()
            except OSError:
                pass
        del self.handshakes[:]
        if self.sock is not None:
            self.sock.close()
            if self.unix_path is not None:
                transport.remove_if_ours(self.unix_path, self.unix_inode)
        if self.fifo_dir is not None:
            self._fifo_unlink()
            if self.fifo_rfd is not None:
                os.close(self.fifo_rfd)
                self.fifo_rfd = None
            if self.fifo_made_dir:
                try:
                    os.rmdir(self.fifo_dir)
                except OSError:
                    pass
        with self.cond:
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.wake_w = None

    # -- FIFO pairs -----------------------------------------------------------------------------------
    #
    # A FIFO pair has room for one controller. While no session or handshake holds it, the
    # listener keeps DIR/to-agent open for reading (non-blocking, so that it needs no writer) and
    # waits for a controller's challenge. Then it opens DIR/from-agent for writing (the
    # controller opened it for reading first) and at once puts a fresh pair in their place, which
    # nobody reads until the handshake or session ends: a second controller waits for the agent
    # to read (`pymri connect` retries for a while) and never mixes its bytes into a live
    # session. While the shared peer is locked out, the fresh pair is not read either.

    def _fifo_arm(self):
        if self.fifo_inodes is None:
            self.fifo_inodes = transport.make_fifos(self.fifo_dir)
        self.fifo_rfd = os.open(os.path.join(self.fifo_dir, transport.TO_AGENT),
                                os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))

    def _fifo_arm_checked(self, now):
        until = self.lockout.delayed_until(_LOCAL_PEER, now)
        if until is not None:
            self.retry_at = until
            return
        try:
            self._fifo_arm()
        except OSError:
            self.fifo_inodes = None
            self.retry_at = now + 1.0  # the directory went away or is full: try again later

    def _fifo_unlink(self):
        if self.fifo_inodes is not None:
            for name, inode in zip((transport.TO_AGENT, transport.FROM_AGENT), self.fifo_inodes):
                transport.remove_if_ours(os.path.join(self.fifo_dir, name), inode)
            self.fifo_inodes = None

    def _fifo_renew(self):
        self._fifo_unlink()
        try:
            self.fifo_inodes = transport.make_fifos(self.fifo_dir)
        except OSError:
            pass  # made again when the listener re-arms

    def _fifo_ready(self):
        rfd, self.fifo_rfd = self.fifo_rfd, None
        now = time.monotonic()
        try:
            wfd = os.open(os.path.join(self.fifo_dir, transport.FROM_AGENT),
                          os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            # A writer that does not read our answers: not a controller. A new pair drops what
            # it wrote.
            os.close(rfd)
            self._fifo_renew()
            self.lockout.record_failure(_LOCAL_PEER, now)
            return
        self._fifo_renew()
        self.fifo_busy = True
        self.handshakes.append(_wire.Handshake(_wire.FifoStream(rfd, wfd), self.key,
                                               now + HANDSHAKE_TIMEOUT, _LOCAL_PEER))

    def _fifo_release(self):
        """The FIFO pair's handshake ended without a session: the next one can be read."""
        if self.fifo_dir is not None and self.agent is None:
            self.fifo_busy = False


def _announce(address, secret_path):
    text = "pymri_agent: listening on %s" % address
    if secret_path is not None:
        text += "; secret in %s (pymri connect %s --secret-file %s)" % (secret_path, address,
                                                                        secret_path)
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def open_listener(address=DEFAULT_ADDRESS, secret_file=None, first_mode="attach", announce=False):
    """Starts listening (see the module doc); returns the endpoint. Raises ValueError for a bad
    address, _secret.SecretError for a missing, shared or malformed secret, OSError if the
    address cannot be listened on, RuntimeError if an endpoint exists already."""
    global _endpoint
    with _lock:
        if _endpoint is not None:
            raise RuntimeError("pymri_agent already has an endpoint (%s); call pymri_agent.stop() "
                               "first" % _endpoint.address)
        parsed = transport.parse_address(address)
        if parsed[0] == "fd":
            raise ValueError("fd: addresses are for launchers; listen on tcp:, tls:, unix: or fifo:")
        if parsed[0] == "tls":
            _wire.client_context()  # refuses now if this interpreter has no ssl module
        key = _key(secret_file)
        generated = None
        if key is None:
            if not transport.is_local(parsed):
                raise _secret.SecretError(
                    "listening on %s, which is not a loopback address, needs a secret given "
                    "explicitly (secret_file=, --secret-file or PYMRI_SECRET_FILE); make one with "
                    "`pymri secret FILE`" % address)
            key, generated = _secret.generate("agent-%d-%s" % (os.getpid(), os.urandom(4).hex()))
        try:
            endpoint = _Listener(parsed, key, generated, first_mode)
        except BaseException:
            if generated is not None:
                os.unlink(generated)
            raise
        _endpoint = endpoint
    if announce or generated is not None:
        _announce(endpoint.address, generated)
    return endpoint


def open_reverse(address, secret_file=None, mode="attach"):
    """Connects out to a listening controller and authenticates; returns the endpoint with its
    live session. Raises like open_listener, and ConnectionError if the controller cannot be
    reached or refuses the handshake."""
    global _endpoint
    with _lock:
        if _endpoint is not None:
            raise RuntimeError("pymri_agent already has an endpoint (%s); call pymri_agent.stop() "
                               "first" % _endpoint.address)
        parsed = transport.parse_address(address)
        if parsed[0] not in ("tcp", "tls", "unix"):
            raise ValueError("connect() reaches tcp:, tls: and unix: addresses, not %s:" % parsed[0])
        if parsed[0] == "tls":
            _wire.client_context()
        key = _key(secret_file)
        if key is None:
            raise _secret.SecretError("connecting to %s needs the controller's secret "
                                      "(secret_file= or PYMRI_SECRET_FILE)" % address)
        sock = _reach(parsed, address)
        try:
            if parsed[0] == "tls":
                stream = _wire.TlsStream(sock, server_hostname=parsed[1])
            else:
                stream = _wire.SocketStream(sock)
            handshake = _wire.Handshake(stream, key, time.monotonic() + HANDSHAKE_TIMEOUT)
            handshake.run()
            channel_sock, pump = _wire.channel_for(stream, "pymri-agent-pump")
        except Exception as exc:
            sock.close()
            raise ConnectionError("the handshake with the controller at %s failed: %s (is its secret "
                                  "the one given here?)" % (address, exc))
        endpoint = _Reverse(address, key, None, mode)
        _endpoint = endpoint
    endpoint.start_session(protocol.Channel(channel_sock, keys=handshake.keys()),
                           {pump.ident} if pump is not None else ())
    return endpoint


def _reach(parsed, address):
    """A connected socket, retrying while the controller does not listen yet."""
    deadline = time.monotonic() + CONNECT_RETRY
    delay = 0.05
    while True:
        left = deadline - time.monotonic()
        try:
            if parsed[0] == "unix":
                return transport.unix_connect(parsed[1], max(left, 0.1))
            return transport.tcp_connect(parsed[1], parsed[2], max(left, 0.1))
        except OSError as exc:
            if left <= delay:
                raise ConnectionError("cannot reach a controller at %s: %s" % (address, exc))
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# ---------------------------------------------------------------------------------------------
# The public API (re-exported by the package)


def listen(address=DEFAULT_ADDRESS, secret_file=None, wait=False):
    """Listens for controllers in a background thread; returns the address listened on (with
    the real port for port 0). `wait=True` blocks until a controller has connected."""
    endpoint = open_listener(address, secret_file)
    if wait:
        endpoint.wait_session()
    return endpoint.address


def connect(address, secret_file=None):
    """Connects out to a listening controller (`pymri listen`), retrying briefly; returns once
    the session is up. It ends when the controller detaches."""
    open_reverse(address, secret_file)


def set_trace(address=None, secret_file=None, frame=None):
    """Stops the calling thread at `frame` (its caller's by default), waiting for a controller
    if none is connected. Without an endpoint yet, one is made: listening on `address`, else on
    PYMRI_AGENT_LISTEN, else connecting to PYMRI_AGENT_CONNECT, else listening on
    tcp:127.0.0.1:5678. Like a PYTHONBREAKPOINT hook that cannot be imported, a failure is a
    RuntimeWarning, never an exception in the program."""
    frame = frame if frame is not None else sys._getframe(1)
    try:
        with _lock:
            endpoint = _endpoint
            if endpoint is None:
                endpoint = _open_for_set_trace(address, secret_file)
        agent = endpoint.wait_session()
        if agent is not None:
            agent.stop_here_attach(frame, reason="breakpoint")
    except Exception as exc:
        import warnings
        warnings.warn("pymri_agent.set_trace: %s" % (exc,), RuntimeWarning, stacklevel=3)
    finally:
        del frame


def _open_for_set_trace(address, secret_file):
    if address is None:
        reverse = os.environ.get("PYMRI_AGENT_CONNECT")
        address = os.environ.get("PYMRI_AGENT_LISTEN")
        if address is None and reverse:
            return open_reverse(reverse, secret_file)
    return open_listener(address or DEFAULT_ADDRESS, secret_file)


def stop():
    """Ends the session (if any), stops listening, removes every hook and the endpoint's files."""
    with _lock:
        endpoint = _endpoint
    if endpoint is not None:
        endpoint.close()
