"""Wire protocol of the pymri agent: framing, the authentication handshake, message shapes.

Normative description: docs/protocol.md. This module is sans-IO where it can be (encode/decode
functions, proof computation); `Channel` binds the codec to a connected socket-like object.
"""

import hashlib
import hmac
import json
import os
import socket
import struct
import threading

PROTOCOL_VERSION = 1
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


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message."""


class AuthError(ProtocolError):
    """The handshake failed (bad proof, bad version, malformed handshake message)."""


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


def encode_payload(message):
    """Serialise one message (a dict) to its JSON payload bytes."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=repr)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(_clean(message), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=repr).encode("utf-8")


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
        message = json.loads(payload.decode("utf-8"))
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


def _proof(label, key, controller_nonce, agent_nonce, attach_nonce):
    msg = b"\n".join([label, controller_nonce.encode("ascii"), agent_nonce.encode("ascii"),
                      (attach_nonce or "").lower().encode("ascii")])
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def agent_proof(key, controller_nonce, agent_nonce, attach_nonce=""):
    return _proof(_AGENT_LABEL, key, controller_nonce, agent_nonce, attach_nonce)


def controller_proof(key, controller_nonce, agent_nonce, attach_nonce=""):
    return _proof(_CONTROLLER_LABEL, key, controller_nonce, agent_nonce, attach_nonce)


# ---------------------------------------------------------------------------------------------
# Channel: the codec over a connected socket-like object (sendall/recv/close)


class Channel(object):
    """Framed JSON messages over a byte stream. One reader at a time; sends are serialised."""

    def __init__(self, sock, max_frame=MAX_FRAME):
        self.sock = sock
        self.max_frame = max_frame
        self._send_lock = threading.Lock()
        self._closed = False

    def send_message(self, message):
        data = encode_frame(message, self.max_frame)
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed("channel closed")
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
        length = decode_length(self._recv_exact(4), self.max_frame)
        return decode_payload(self._recv_exact(length))

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
    try:
        challenge = channel.recv_message()
        if challenge.get("kind") != "challenge":
            raise AuthError("expected a challenge")
        if challenge.get("protocol") != PROTOCOL_VERSION:
            try:
                channel.send_message({"kind": "proof", "protocol": PROTOCOL_VERSION,
                                      "error": "unsupported protocol version"})
            except ConnectionClosed:
                pass
            raise AuthError("unsupported protocol version %r" % (challenge.get("protocol"),))
        cnonce = challenge.get("nonce")
        if not _is_nonce(cnonce):
            raise AuthError("malformed controller nonce")
        anonce = new_nonce()
        channel.send_message({"kind": "proof", "protocol": PROTOCOL_VERSION, "nonce": anonce,
                              "proof": agent_proof(key, cnonce, anonce, attach_nonce)})
        accept = channel.recv_message()
        expected = controller_proof(key, cnonce, anonce, attach_nonce)
        got = accept.get("proof")
        if accept.get("kind") != "accept" or not isinstance(got, str):
            raise AuthError("expected an accept message")
        if not hmac.compare_digest(expected.encode("ascii"), got.encode("ascii", "replace")):
            raise AuthError("controller proof mismatch")
    finally:
        channel.max_frame = saved_max
        try:
            sock.settimeout(old_timeout)
        except (AttributeError, OSError):
            pass


def controller_handshake(channel, key, attach_nonce="", timeout=HANDSHAKE_TIMEOUT):
    """The controller side (used by tests and Python tooling). Returns the agent nonce."""
    sock = channel.sock
    sock.settimeout(timeout)
    cnonce = new_nonce()
    channel.send_message({"kind": "challenge", "protocol": PROTOCOL_VERSION, "nonce": cnonce})
    proof = channel.recv_message()
    anonce = proof.get("nonce")
    if proof.get("kind") != "proof" or not _is_nonce(anonce) or not isinstance(proof.get("proof"), str):
        raise AuthError("malformed proof message: %r" % (proof,))
    expected = agent_proof(key, cnonce, anonce, attach_nonce)
    if not hmac.compare_digest(expected.encode("ascii"), proof["proof"].encode("ascii", "replace")):
        raise AuthError("agent proof mismatch")
    channel.send_message({"kind": "accept", "proof": controller_proof(key, cnonce, anonce, attach_nonce)})
    sock.settimeout(None)
    return anonce
