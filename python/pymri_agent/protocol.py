"""Wire protocol of the pymri agent: framing, the authentication handshake, message shapes.

Normative description: docs/protocol.md. This module is sans-IO where it can be (encode/decode
functions, proof computation); `Channel` binds the codec to a connected socket-like object.
"""

import hashlib
import hmac
import os
import socket
import struct
import threading

PROTOCOL_VERSION = 2
AGENT_VERSION = "0.1.0"

#: Largest frame payload accepted or sent once authenticated (bytes, excluding the 4-byte prefix).
MAX_FRAME = 8 * 1024 * 1024
#: Largest frame payload accepted before authentication completed.
HANDSHAKE_MAX_FRAME = 4096
#: Seconds the whole handshake may take.
HANDSHAKE_TIMEOUT = 10.0

NONCE_BYTES = 32
MIN_SECRET_BYTES = 16

_AGENT_LABEL = b"pymri agent proof v1"
_CONTROLLER_LABEL = b"pymri controller proof v1"
_HEADER = struct.Struct(">I")

#: Bytes of the tag after each authenticated frame's payload (section 3.1).
TAG_LEN = 32
_CONTROLLER_TO_AGENT = b"pymri frame key v1 controller to agent"
_AGENT_TO_CONTROLLER = b"pymri frame key v1 agent to controller"
_SEQ = struct.Struct(">Q")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message."""


class AuthError(ProtocolError):
    """The handshake failed (bad proof, bad version, malformed handshake message)."""


class IntegrityError(ProtocolError):
    """A frame's tag does not hold: it was injected, altered, replayed or reordered."""


class ConnectionClosed(Exception):
    """The byte stream ended or failed."""


# ---------------------------------------------------------------------------------------------
# Codec (pure functions)


def _clean(obj):
    """Replace strings that cannot be encoded as UTF-8 (lone surrogates) by an escaped form."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
            return obj
        except UnicodeEncodeError:
            return obj.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _json_codec():
    """(dumps, loads) as `json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False, default=repr)` and `json.loads`, built on the C accelerators the json
    package itself uses. Importing json (and the `re` it needs) would be a third of the agent's
    start-up, which an attach waits for, in a program that has loaded neither. The json package
    serves when the accelerators are missing or do not behave as expected."""
    try:
        from _json import encode_basestring, make_encoder, make_scanner

        class Context(object):
            """The attributes json.decoder.JSONDecoder gives the scanner (array_hook: 3.15+)."""
            strict = True
            object_hook = object_pairs_hook = array_hook = None
            parse_float = float
            parse_int = int

            def __init__(self):
                self.memo = {}
                self.parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                                       "NaN": float("nan")}.__getitem__

        scan = make_scanner(Context())
        blank = " \t\n\r"

        def dumps(obj):
            encode = make_encoder({}, repr, encode_basestring, None, ":", ",", False, False, False)
            return "".join(encode(obj, 0))

        def loads(text):
            start = len(text) - len(text.lstrip(blank))
            try:
                obj, end = scan(text, start)
            except StopIteration as exc:
                raise ValueError("Expecting value: char %d" % exc.value)
            if text[end:].strip(blank):
                raise ValueError("Extra data: char %d" % end)
            return obj

        sample = {"a": [1, -2.5, None, True, "\u00e9\u2028\n"], "b": {}}
        text = '{"a":[1,-2.5,null,true,"\u00e9\u2028\\n"],"b":{}}'
        if dumps(sample) == text and loads(" %s\n" % text) == sample:
            return dumps, loads
    except Exception:
        pass
    import json

    def dumps(obj):
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=repr)
    return dumps, json.loads


_dumps, _loads = _json_codec()


def encode_payload(message):
    """Serialise one message (a dict) to its JSON payload bytes."""
    text = _dumps(message)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _dumps(_clean(message)).encode("utf-8")


def encode_frame(message, max_frame=MAX_FRAME):
    payload = encode_payload(message)
    if len(payload) > max_frame:
        raise ProtocolError("frame of %d bytes exceeds the maximum %d" % (len(payload), max_frame))
    return _HEADER.pack(len(payload)) + payload


def decode_length(header, max_frame=MAX_FRAME):
    (length,) = _HEADER.unpack(header)
    if length == 0 or length > max_frame:
        raise ProtocolError("invalid frame length %d" % length)
    return length


def decode_payload(payload):
    try:
        message = _loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("frame is not UTF-8 JSON: %s" % exc)
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message


# ---------------------------------------------------------------------------------------------
# Handshake proofs


def new_nonce():
    return os.urandom(NONCE_BYTES).hex()


def parse_secret(text):
    """Secrets travel as hex text; returns the raw key bytes or raises AuthError."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip().lower()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise AuthError("secret is not hex")
    if len(key) < MIN_SECRET_BYTES:
        raise AuthError("secret shorter than %d bytes" % MIN_SECRET_BYTES)
    return key


def _is_nonce(value):
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES:
        return False
    return all(c in "0123456789abcdef" for c in value)


def _proof(label, key, controller_nonce, agent_nonce, attach_nonce, channel_binding=None):
    parts = [label, controller_nonce.encode("ascii"), agent_nonce.encode("ascii"),
             (attach_nonce or "").lower().encode("ascii")]
    if channel_binding is not None:
        # Over TLS (docs/transports.md section 4): the SHA-256 of the controller's certificate,
        # so that a machine in the middle terminating TLS cannot relay the handshake.
        parts.append(channel_binding.encode("ascii"))
    return hmac.new(key, b"\n".join(parts), hashlib.sha256).hexdigest()


def agent_proof(key, controller_nonce, agent_nonce, attach_nonce="", channel_binding=None):
    return _proof(_AGENT_LABEL, key, controller_nonce, agent_nonce, attach_nonce, channel_binding)


def controller_proof(key, controller_nonce, agent_nonce, attach_nonce="", channel_binding=None):
    return _proof(_CONTROLLER_LABEL, key, controller_nonce, agent_nonce, attach_nonce,
                  channel_binding)


# ---------------------------------------------------------------------------------------------
# Frame integrity (section 3.1)


def session_keys(key, controller_nonce, agent_nonce):
    """(K_c2a, K_a2c): RFC 5869 HKDF-SHA256 with the two nonces as salt and the secret as input
    keying material; each key is the single output block T(1) of its direction's label."""
    salt = bytes.fromhex(controller_nonce) + bytes.fromhex(agent_nonce)
    prk = hmac.new(salt, key, hashlib.sha256).digest()
    return tuple(hmac.new(prk, label + b"\x01", hashlib.sha256).digest()
                 for label in (_CONTROLLER_TO_AGENT, _AGENT_TO_CONTROLLER))


class FrameMac(object):
    """The tags of one direction, in order: HMAC-SHA256(key, seq || length prefix || payload)
    with seq counting that direction's frames from 0. HMAC is computed from two SHA-256 states
    keyed once (RFC 2104), copied per frame: the fastest way on every supported version, with
    or without OpenSSL's HMAC (about 1-2 us per frame)."""

    def __init__(self, key):
        block = key.ljust(64, b"\0")  # the keys are 32 bytes, shorter than SHA-256's block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.seq = 0

    def tag(self, frame):
        """The tag of the next frame (its length prefix and payload), advancing the sequence."""
        inner = self._inner.copy()
        inner.update(_SEQ.pack(self.seq))
        inner.update(frame)
        outer = self._outer.copy()
        outer.update(inner.digest())
        self.seq += 1
        return outer.digest()


# ---------------------------------------------------------------------------------------------
# Channel: the codec over a connected socket-like object (sendall/recv/close)


class Channel(object):
    """Framed JSON messages over a byte stream. One reader at a time; sends are serialised.
    Once `authenticate`d (right after the handshake), every frame carries a tag both ways."""

    def __init__(self, sock, max_frame=MAX_FRAME, keys=None):
        self.sock = sock
        self.max_frame = max_frame
        self._send_lock = threading.Lock()
        self._closed = False
        self._seal = self._open = None
        if keys is not None:
            self.authenticate(*keys)

    def authenticate(self, send_key, recv_key):
        """From now on, tag what is sent with `send_key` and check what arrives with `recv_key`."""
        self._seal = FrameMac(send_key)
        self._open = FrameMac(recv_key)

    def send_message(self, message):
        self.send_frame(encode_frame(message, self.max_frame))

    def send_frame(self, data):
        """Sends one encoded frame (length prefix and payload), tagged if authenticated."""
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed("channel closed")
            if self._seal is not None:
                # Under the lock: frames must leave in the order of their sequence numbers.
                data += self._seal.tag(data)
            try:
                self.sock.sendall(data)
            except (OSError, ValueError) as exc:
                raise ConnectionClosed(str(exc))

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                raise ConnectionClosed("timed out")
            except (OSError, ValueError) as exc:
                raise ConnectionClosed(str(exc))
            if not chunk:
                raise ConnectionClosed("end of stream")
            buf += chunk
        return bytes(buf)

    def recv_message(self):
        header = self._recv_exact(4)
        length = decode_length(header, self.max_frame)
        if self._open is None:
            return decode_payload(self._recv_exact(length))
        body = self._recv_exact(length + TAG_LEN)
        payload = body[:length]
        seq = self._open.seq
        if not hmac.compare_digest(self._open.tag(header + payload), body[length:]):
            raise IntegrityError("received frame %d failed its integrity check: the connection "
                                 "was tampered with or corrupted" % seq)
        return decode_payload(payload)

    def close(self):
        with self._send_lock:
            self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError, ValueError):
            pass
        try:
            self.sock.close()
        except (OSError, ValueError):
            pass

    @property
    def closed(self):
        return self._closed


class AgentHandshake(object):
    """The agent's side of section 3 without I/O: `answer` the challenge, then `check` the
    accept. Raises AuthError on anything else; `AuthError.reply`, when set, is a message to send
    (best effort) before closing."""

    def __init__(self, key, attach_nonce="", channel_binding=None):
        self.key = key
        self.attach_nonce = attach_nonce
        self.channel_binding = channel_binding
        self._nonces = None

    def answer(self, challenge):
        if challenge.get("kind") != "challenge":
            raise AuthError("expected a challenge")
        if challenge.get("protocol") != PROTOCOL_VERSION:
            exc = AuthError("unsupported protocol version %r" % (challenge.get("protocol"),))
            exc.reply = {"kind": "proof", "protocol": PROTOCOL_VERSION,
                         "error": "unsupported protocol version"}
            raise exc
        cnonce = challenge.get("nonce")
        if not _is_nonce(cnonce):
            raise AuthError("malformed controller nonce")
        anonce = new_nonce()
        self._nonces = (cnonce, anonce)
        return {"kind": "proof", "protocol": PROTOCOL_VERSION, "nonce": anonce,
                "proof": agent_proof(self.key, cnonce, anonce, self.attach_nonce,
                                     self.channel_binding)}

    def check(self, accept):
        if self._nonces is None:
            raise AuthError("accept before the challenge")
        expected = controller_proof(self.key, self._nonces[0], self._nonces[1], self.attach_nonce,
                                    self.channel_binding)
        got = accept.get("proof")
        if accept.get("kind") != "accept" or not isinstance(got, str):
            raise AuthError("expected an accept message")
        if not hmac.compare_digest(expected.encode("ascii"), got.encode("ascii", "replace")):
            raise AuthError("controller proof mismatch")

    def keys(self):
        """(send, receive) frame keys of the agent once `check` passed (section 3.1)."""
        to_agent, to_controller = session_keys(self.key, *self._nonces)
        return to_controller, to_agent


def agent_handshake(channel, key, attach_nonce="", timeout=HANDSHAKE_TIMEOUT):
    """Run the agent side of the handshake on a fresh channel. Raises AuthError/ConnectionClosed.

    The caller drops the connection on any exception.
    """
    sock = channel.sock
    old_timeout = None
    try:
        old_timeout = sock.gettimeout()
        sock.settimeout(timeout)
    except (AttributeError, OSError):
        pass
    saved_max = channel.max_frame
    channel.max_frame = HANDSHAKE_MAX_FRAME
    handshake = AgentHandshake(key, attach_nonce)
    try:
        try:
            proof = handshake.answer(channel.recv_message())
        except AuthError as exc:
            if getattr(exc, "reply", None) is not None:
                try:
                    channel.send_message(exc.reply)
                except ConnectionClosed:
                    pass
            raise
        channel.send_message(proof)
        handshake.check(channel.recv_message())
        channel.authenticate(*handshake.keys())
    finally:
        channel.max_frame = saved_max
        try:
            sock.settimeout(old_timeout)
        except (AttributeError, OSError):
            pass


def controller_handshake(channel, key, attach_nonce="", timeout=HANDSHAKE_TIMEOUT,
                         channel_binding=None):
    """The controller side (used by tests and Python tooling). Returns the agent nonce."""
    sock = channel.sock
    sock.settimeout(timeout)
    cnonce = new_nonce()
    channel.send_message({"kind": "challenge", "protocol": PROTOCOL_VERSION, "nonce": cnonce})
    proof = channel.recv_message()
    while proof.get("kind") == "notice":  # a listener delaying us (docs/transports.md section 5)
        proof = channel.recv_message()
    anonce = proof.get("nonce")
    if proof.get("kind") != "proof" or not _is_nonce(anonce) or not isinstance(proof.get("proof"), str):
        raise AuthError("malformed proof message: %r" % (proof,))
    expected = agent_proof(key, cnonce, anonce, attach_nonce, channel_binding)
    if not hmac.compare_digest(expected.encode("ascii"), proof["proof"].encode("ascii", "replace")):
        raise AuthError("agent proof mismatch")
    channel.send_message({"kind": "accept", "proof": controller_proof(key, cnonce, anonce, attach_nonce,
                                                                      channel_binding)})
    channel.authenticate(*session_keys(key, cnonce, anonce))
    sock.settimeout(None)
    return anonce
