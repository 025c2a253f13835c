"""Non-blocking byte streams (a socket, a FIFO pair, TLS over a socket), the agent's handshake as
a state machine over them, and the pump that hands TLS and FIFO sessions to a plain socket.

Why non-blocking: a listening agent authenticates connections in its one listener thread
(library.py), several at once, none of which may hold it up; a blocking read would let one slow
peer stall every other. Why a pump: the session (`protocol.Channel`) reads in one thread while
stopped threads write, sets timeouts and shuts the stream down to wake its reader. A socket gives
all of that; an SSL object may not be used from two threads at once, and a FIFO can be neither
timed out nor shut down from another thread. So one pump thread owns such a transport and moves
bytes between it and one end of a socket pair, whose other end the session gets (the
controller's crates/pymri-transport/src/pump.rs does the same).

TLS (docs/transports.md section 4): the agent is always the TLS client (whoever connected to
whom), verifies no certificate authority, and binds the handshake to the channel instead: both
proofs cover the SHA-256 of the certificate it received. `ssl` is imported only for tls:
addresses.
"""

import atexit
import hashlib
import os
import select
import socket
import threading
import time

from . import protocol

_CHUNK = 64 * 1024
#: Bytes from the transport that may wait for the session (flow control).
_MAX_BUFFERED = 256 * 1024
#: How long a clean close (TLS close_notify) may take once the session is gone.
_CLOSE_TIMEOUT = 2.0
_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_OUT = select.POLLOUT | select.POLLERR
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)

# Pump threads are daemons, which the interpreter abandons at exit: the last answers of a
# session (a `detach` at a post-mortem stop, the `exited` event) could then stay unsent. This
# module is imported before any endpoint registers its own atexit handler, so this one runs
# last, after the endpoints closed their sessions, and lets the pumps drain.
_pumps = set()
_pumps_lock = threading.Lock()


def _drain_pumps():
    deadline = time.monotonic() + _CLOSE_TIMEOUT
    with _pumps_lock:
        pumps = list(_pumps)
    for thread in pumps:
        thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(_drain_pumps)


class _PlainStream(object):
    """A non-blocking transport without TLS: writes wait in `out` until it takes them."""

    tls = False

    def send(self, data):
        self.out += data
        self.flush()

    def flush(self):
        while self.out:
            try:
                n = self._write(self.out)
            except (BlockingIOError, InterruptedError):
                return
            del self.out[:n]

    def pending_out(self):
        return len(self.out)

    def finish(self):
        """Queues a clean end of the stream before close(): nothing to say without TLS."""


class SocketStream(_PlainStream):
    """A connected socket, non-blocking."""

    def __init__(self, sock):
        sock.setblocking(False)
        self.sock = sock
        self.rfd = self.wfd = sock.fileno()
        self.out = bytearray()

    def recv(self, n):
        """Up to n bytes, b"" at the end of the stream, None if nothing is there yet."""
        try:
            return self.sock.recv(n)
        except (BlockingIOError, InterruptedError):
            return None

    def _write(self, data):
        return self.sock.send(data, _SEND_FLAGS)

    def close(self):
        self.sock.close()


class FifoStream(_PlainStream):
    """A FIFO pair: read from one descriptor, write to the other, both non-blocking."""

    def __init__(self, rfd, wfd):
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self.rfd = rfd
        self.wfd = wfd
        self.out = bytearray()

    def recv(self, n):
        try:
            return os.read(self.rfd, n)
        except (BlockingIOError, InterruptedError):
            return None

    def _write(self, data):
        return os.write(self.wfd, data)

    def close(self):
        for fd in (self.rfd, self.wfd):
            os.close(fd)


def client_context():
    """TLS 1.2+, no certificate verification (the channel binding replaces it, section 4)."""
    try:
        import ssl
    except ImportError:
        raise RuntimeError("tls: addresses need Python's ssl module, which this interpreter lacks")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class TlsStream(object):
    """TLS over a non-blocking socket through memory BIOs, so that every step is non-blocking
    and the SSL object is only ever used by the thread driving this stream."""

    tls = True

    def __init__(self, sock, context=None, server_side=False, server_hostname=None):
        import ssl
        self._ssl = ssl
        self.raw = SocketStream(sock)
        self.rfd = self.wfd = self.raw.rfd
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        context = context if context is not None else client_context()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=server_hostname)
        self.handshaken = False

    def _push(self):
        data = self.outgoing.read()
        if data:
            self.raw.send(data)

    def _pull(self):
        """Moves what the socket has into the SSL object. False if nothing was there."""
        data = self.raw.recv(_CHUNK)
        if data is None:
            return False
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return True

    def handshake(self):
        """Advances the TLS handshake; True once it is complete. Raises on failure."""
        while not self.handshaken:
            try:
                self.obj.do_handshake()
                self.handshaken = True
            except self._ssl.SSLWantReadError:
                self._push()
                if self.incoming.eof:
                    raise protocol.ConnectionClosed("closed during the TLS handshake")
                if not self._pull():
                    return False
        self._push()
        return True

    def fingerprint(self):
        """Lowercase hex SHA-256 of the peer's DER certificate: the channel binding."""
        der = self.obj.getpeercert(binary_form=True)
        if not der:
            raise protocol.AuthError("the TLS peer presented no certificate")
        return hashlib.sha256(der).hexdigest()

    def recv(self, n):
        while True:
            try:
                data = self.obj.read(n)
                self._push()  # reading may answer the peer (a key update, an alert)
                return data
            except self._ssl.SSLWantReadError:
                self._push()
                if self.incoming.eof:
                    return b""
                if not self._pull():
                    return None
            except (self._ssl.SSLZeroReturnError, self._ssl.SSLEOFError):
                return b""

    def send(self, data):
        self.obj.write(data)
        self._push()

    def flush(self):
        self.raw.flush()

    def pending_out(self):
        return self.raw.pending_out()

    def finish(self):
        try:
            self.obj.unwrap()  # queues close_notify; the peer's answer is not waited for
        except (self._ssl.SSLError, ValueError):
            pass
        self._push()

    def close(self):
        self.raw.close()


class Handshake(object):
    """The agent's side of the handshake (protocol section 3) over a non-blocking stream: the TLS
    handshake first if the stream is TLS, then challenge, proof, accept. `step()` does what the
    stream allows and returns True once authenticated; it raises AuthError, ProtocolError or
    ConnectionClosed on failure. Reads stop at frame boundaries, so whatever the controller sent
    after `accept` stays in the stream for the session."""

    def __init__(self, stream, key, deadline, peer=None, hold=None):
        self.stream = stream
        self.key = key
        self.deadline = deadline
        self.peer = peer
        #: Nothing is read before this time (the listener's delay for a peer that failed).
        self.hold = hold
        self.auth = None
        self.answered = False
        self._buf = bytearray()
        self._length = None

    def held(self, now):
        return self.hold is not None and now < self.hold

    def released(self, now):
        """True once, when the hold is over: the bytes that came during it are to be read."""
        if self.hold is None or now < self.hold:
            return False
        self.hold = None
        return True

    def interest(self):
        if not self.held(time.monotonic()):
            yield self.stream.rfd, _IN
        if self.stream.pending_out():
            yield self.stream.wfd, _OUT

    def _frame(self):
        need = 4 if self._length is None else self._length
        while len(self._buf) < need:
            data = self.stream.recv(need - len(self._buf))
            if data is None:
                return None
            if not data:
                raise protocol.ConnectionClosed("end of stream during the handshake")
            self._buf += data
        if self._length is None:
            self._length = protocol.decode_length(bytes(self._buf), protocol.HANDSHAKE_MAX_FRAME)
            del self._buf[:]
            return self._frame()
        message = protocol.decode_payload(bytes(self._buf))
        del self._buf[:]
        self._length = None
        return message

    def step(self):
        stream = self.stream
        if self.held(time.monotonic()):
            stream.flush()
            return False
        if self.auth is None:
            if stream.tls and not stream.handshake():
                stream.flush()
                return False
            binding = stream.fingerprint() if stream.tls else None
            self.auth = protocol.AgentHandshake(self.key, "", binding)
        while True:
            message = self._frame()
            if message is None:
                stream.flush()
                return False
            if not self.answered:
                try:
                    reply = self.auth.answer(message)
                except protocol.AuthError as exc:
                    if getattr(exc, "reply", None) is not None:
                        stream.send(protocol.encode_frame(exc.reply, protocol.HANDSHAKE_MAX_FRAME))
                    raise
                stream.send(protocol.encode_frame(reply, protocol.HANDSHAKE_MAX_FRAME))
                self.answered = True
            else:
                self.auth.check(message)
                stream.flush()
                return True

    def keys(self):
        """The agent's (send, receive) frame keys once authenticated (protocol section 3.1)."""
        return self.auth.keys()

    def run(self):
        """Drives the handshake to its end in the calling thread (a reverse connection)."""
        while not self.step():
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise protocol.ConnectionClosed("the handshake timed out")
            poller = select.poll()
            for fd, mask in merge(self.interest()):
                poller.register(fd, mask)
            poller.poll(left * 1000.0)


def merge(interests):
    """(fd, mask) pairs with one entry per descriptor (poll takes each descriptor once)."""
    out = {}
    for fd, mask in interests:
        out[fd] = out.get(fd, 0) | mask
    return out.items()


def channel_for(stream, name):
    """The blocking socket a `protocol.Channel` needs for an authenticated stream: the socket
    itself, or the session's end of a pump (TLS, FIFOs). Returns (socket, pump thread or None)."""
    if isinstance(stream, SocketStream):
        stream.sock.setblocking(True)
        stream.sock.sendall(stream.out)
        return stream.sock, None
    session_end, pump_end = socket.socketpair()
    pump = Pump(stream, pump_end)
    thread = threading.Thread(target=_run_pump, args=(pump,), name=name, daemon=True)
    with _pumps_lock:
        _pumps.add(thread)
    thread.start()
    return session_end, thread


def _run_pump(pump):
    try:
        pump.run()
    finally:
        with _pumps_lock:
            _pumps.discard(threading.current_thread())


class Pump(object):
    """Moves bytes between a stream and the pump's end of a socket pair until either ends."""

    def __init__(self, stream, local):
        local.setblocking(False)
        self.stream = stream
        self.local = local
        self.down = bytearray()  # from the stream, for the session
        self.stream_done = False
        self.session_done = False
        self.close_by = None

    def run(self):
        ready = ()
        try:
            while self._step(ready):
                timeout = None
                if self.close_by is not None:
                    timeout = max(0.0, self.close_by - time.monotonic()) * 1000.0
                poller = select.poll()
                for fd, mask in merge(self._interest()):
                    poller.register(fd, mask)
                ready = [fd for fd, _ in poller.poll(timeout)]
        except Exception:
            pass  # a transport error ends the session like an end of stream
        finally:
            try:
                self.local.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.local.close()
            try:
                self.stream.close()
            except OSError:
                pass

    def _interest(self):
        stream = self.stream
        if not self.session_done and not stream.pending_out():
            yield self.local.fileno(), _IN
        if self.down:
            yield self.local.fileno(), _OUT
        if not self.stream_done and not self.session_done and len(self.down) < _MAX_BUFFERED:
            yield stream.rfd, _IN
        if stream.pending_out():
            yield stream.wfd, _OUT

    def _step(self, ready):
        """One round of non-blocking transfers; False when the pump is done. The stream is read
        only when poll says so (or when TLS may hold decrypted bytes), because a FIFO whose
        writer has not opened it yet reads as an end of stream."""
        stream = self.stream
        readable = stream.tls or stream.rfd in ready
        while readable and not self.stream_done and not self.session_done \
                and len(self.down) < _MAX_BUFFERED:
            data = stream.recv(_CHUNK)
            if data is None:
                break
            if not data:
                self.stream_done = True
            self.down += data
        if self.down and not self.session_done:
            try:
                del self.down[:self.local.send(self.down, _SEND_FLAGS)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.session_done = True
        while not self.session_done and not stream.pending_out():
            try:
                data = self.local.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.session_done = True
                stream.finish()
                self.close_by = time.monotonic() + _CLOSE_TIMEOUT
                break
            stream.send(data)
        stream.flush()
        if self.session_done:
            return bool(stream.pending_out()) and time.monotonic() < self.close_by
        # The stream ended: once the session has everything, it is told by the shutdown.
        return not (self.stream_done and not self.down)
