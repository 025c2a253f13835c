"""Attaches the agent in this fresh process (like `pymri attach` does), and prints the modules
imported between the start of the agent's import and its first stop, one per line."""

import os
import socket
import sys
import threading

sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
from pymri_agent import attach, protocol  # noqa: E402

SECRET = "ab" * 32
NONCE = "cd" * 16
agent_end, controller_end = socket.socketpair()
imported = []


def controller():
    channel = protocol.Channel(controller_end)
    protocol.controller_handshake(channel, protocol.parse_secret(SECRET), NONCE)
    while channel.recv_message().get("event") != "stopped":
        pass
    imported.extend(sorted(set(sys.modules) - before))
    channel.send_message({"kind": "request", "id": 1, "cmd": "detach", "args": {}})


thread = threading.Thread(target=controller)
thread.start()
attach.start({"connect": "fd:%d" % agent_end.detach(), "secret": SECRET, "nonce": NONCE,
              "stop_thread": None})
thread.join()
os.write(1, "".join(name + "\n" for name in imported).encode())
