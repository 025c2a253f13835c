"""The codec and handshake in isolation (the shapes docs/protocol.md specifies)."""

import hashlib
import hmac
import json
import socket
import struct
import sys
import threading
import unittest

import helpers  # noqa: F401 - puts the package on sys.path
from pymri_agent import protocol, transport


class CodecTests(unittest.TestCase):
    def test_frame_layout(self):
        frame = protocol.encode_frame({"kind": "event", "event": "x", "body": {"é": 1}})
        (length,) = struct.unpack(">I", frame[:4])
        self.assertEqual(length, len(frame) - 4)
        self.assertEqual(json.loads(frame[4:].decode("utf-8"))["body"], {"é": 1})

    def test_lone_surrogates_are_escaped(self):
        payload = protocol.encode_payload({"value": "bad \udcff byte"})
        text = payload.decode("utf-8")  # valid UTF-8
        self.assertIn("\\\\udcff", text)

    def test_limits(self):
        with self.assertRaises(protocol.ProtocolError):
            protocol.decode_length(struct.pack(">I", 0))
        with self.assertRaises(protocol.ProtocolError):
            protocol.decode_length(struct.pack(">I", protocol.MAX_FRAME + 1))
        self.assertEqual(protocol.decode_length(struct.pack(">I", protocol.MAX_FRAME)), protocol.MAX_FRAME)
        with self.assertRaises(protocol.ProtocolError):
            protocol.decode_length(struct.pack(">I", 5000), protocol.HANDSHAKE_MAX_FRAME)
        with self.assertRaises(protocol.ProtocolError):
            protocol.encode_frame({"x": "y" * 100}, max_frame=50)
        for bad in (b"\xff\xfe", b"{", b"[1]", b"\"s\""):
            with self.assertRaises(protocol.ProtocolError):
                protocol.decode_payload(bad)

    VALUES = [{"a": 1}, {"k": [1.5, 1e300, -0.0, 2 ** 70, "\x00\x1f\"\\/", "\u2028\u00e9\U0001d11e"]},
              {"o": object, "t": (1, 2), "n": None, "b": [True, False], "d": {1: 2, None: 3, 1.5: 4}}]
    TEXTS = ['{"a":1}', ' {"a" : [1, 2.5e3, -0, "x\\u00e9\\ud834\\udd1e"], "b":NaN}\n', '{"a":1} x', '',
             '[1,2]', '{"a":tru}', '\ufeff{}', '{"a":"\x01"}', '{"a":1}\t\r\n', '{"a":-Infinity}',
             '{"a":1,"a":2}', '{"a":"\\ud800"}']

    def _check_codec(self, dumps, loads):
        """Same results as the json module with the options the agent uses."""
        for value in self.VALUES:
            self.assertEqual(dumps(value), json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                                      allow_nan=False, default=repr))
        for bad in ({"f": float("nan")}, {"k": {(1, 2): 3}}):
            with self.assertRaises(ValueError if "f" in bad else TypeError):
                dumps(bad)
        cycle = []
        cycle.append(cycle)
        with self.assertRaises(ValueError):
            dumps({"c": cycle})
        for text in self.TEXTS:
            try:
                expected = repr(json.loads(text))
            except ValueError:
                expected = ValueError
            try:
                got = repr(loads(text))
            except ValueError:
                got = ValueError
            self.assertEqual(got, expected, text)

    def test_codec_equals_json(self):
        self._check_codec(protocol._dumps, protocol._loads)

    def test_codec_without_the_accelerators(self):
        saved = sys.modules.get("_json")
        sys.modules["_json"] = None  # import fails: the json package serves
        try:
            dumps, loads = protocol._json_codec()
        finally:
            if saved is None:
                del sys.modules["_json"]
            else:
                sys.modules["_json"] = saved
        self.assertIs(loads, json.loads)
        self._check_codec(dumps, loads)

    def test_proofs_match_the_spec(self):
        key = bytes(range(32))
        cn, an, nonce = "1" * 64, "2" * 64, "abcd"
        msg = b"pymri agent proof v1\n" + cn.encode() + b"\n" + an.encode() + b"\nabcd"
        self.assertEqual(protocol.agent_proof(key, cn, an, nonce), hmac.new(key, msg, hashlib.sha256).hexdigest())
        msg = b"pymri controller proof v1\n" + cn.encode() + b"\n" + an.encode() + b"\n"
        self.assertEqual(protocol.controller_proof(key, cn, an, ""), hmac.new(key, msg, hashlib.sha256).hexdigest())

    def test_frame_keys_and_tags_match_the_protocol_test_vector(self):
        """The vector of docs/protocol.md section 3.1, also checked by the Rust implementation
        (crates/pymri-protocol/src/integrity.rs): same keys, same tag."""
        c2a, a2c = protocol.session_keys(b"\x5a" * 32, "11" * 32, "22" * 32)
        self.assertEqual(c2a.hex(), "2eff7486ed75bb12dde0fd1d9c27e9626b0cc40e96d5d9d0449d373f29cc6653")
        self.assertEqual(a2c.hex(), "3020235ae53fe6ae9bcb149715e8349c05225847b9b944a527bd4fe96584ae57")
        payload = b'{"kind":"request","id":1,"cmd":"threads"}'
        mac = protocol.FrameMac(c2a)
        mac.seq = 7
        self.assertEqual(mac.tag(struct.pack(">I", len(payload)) + payload).hex(),
                         "3c604cb27a68a324e8fff43c50a4d41a6d3f9c7c248860ab2afe979661714230")
        self.assertEqual(mac.seq, 8)
        # The same as HMAC from the standard library (FrameMac computes it from SHA-256 states).
        frame = struct.pack(">I", 2) + b"{}"
        self.assertEqual(protocol.FrameMac(a2c).tag(frame),
                         hmac.new(a2c, struct.pack(">Q", 0) + frame, hashlib.sha256).digest())

    def test_tagged_frames_are_checked_in_sequence_and_per_direction(self):
        a, b = socket.socketpair()
        c2a, a2c = protocol.session_keys(b"\x01" * 16, "ab" * 32, "cd" * 32)
        agent, controller = protocol.Channel(a, keys=(a2c, c2a)), protocol.Channel(b, keys=(c2a, a2c))
        controller.send_message({"n": 1})
        controller.send_message({"n": 2})
        self.assertEqual([agent.recv_message(), agent.recv_message()], [{"n": 1}, {"n": 2}])
        # A frame reflected back to its sender fails: the other direction has the other key.
        agent.send_message({"n": 3})
        data = b.recv(4096)
        b.sendall(data)
        with self.assertRaises(protocol.IntegrityError):
            agent.recv_message()
        a.close()
        b.close()

    def test_secret_parsing(self):
        self.assertEqual(protocol.parse_secret(" " + "ab" * 16 + "\n"), b"\xab" * 16)
        for bad in ("zz" * 16, "ab" * 8, ""):
            with self.assertRaises(protocol.AuthError):
                protocol.parse_secret(bad)

    def test_addresses(self):
        self.assertEqual(transport.parse_address("tcp:127.0.0.1:80"), ("tcp", "127.0.0.1", 80))
        self.assertEqual(transport.parse_address("tcp:[::1]:80"), ("tcp", "::1", 80))
        self.assertEqual(transport.parse_address("unix:/run/x"), ("unix", "/run/x"))
        self.assertEqual(transport.parse_address("fd:3"), ("fd", 3))
        for bad in ("tcp:host", "udp:1:2", "fd:x", "unix:", 5):
            with self.assertRaises(ValueError):
                transport.parse_address(bad)

    def test_handshake_over_a_socket_pair(self):
        a, b = socket.socketpair()
        key = protocol.parse_secret(helpers.SECRET)
        errors = []

        def agent_side():
            try:
                protocol.agent_handshake(protocol.Channel(a), key, "feed")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=agent_side)
        t.start()
        ch = protocol.Channel(b)
        protocol.controller_handshake(ch, key, "feed")
        t.join(helpers.TIMEOUT)
        self.assertEqual(errors, [])
        ch.close()
        a.close()
