"""Transports: turn an address string into a connected socket-like object.

Addresses:
  tcp:HOST:PORT       connect over TCP (HOST may be a bracketed IPv6 literal)
  unix:PATH           connect to a Unix stream socket
  fd:N                an already connected stream socket inherited as file descriptor N

Every transport yields an object with sendall/recv/close/shutdown/settimeout/gettimeout, the
interface `protocol.Channel` needs. Listening transports and FIFOs plug in here later.
"""

import socket

CONNECT_TIMEOUT = 10.0


def parse_address(address):
    if not isinstance(address, str) or ":" not in address:
        raise ValueError("bad address %r" % (address,))
    scheme, _, rest = address.partition(":")
    if scheme == "tcp":
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("bad tcp address %r" % (address,))
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return ("tcp", host, int(port))
    if scheme == "unix":
        if not rest:
            raise ValueError("bad unix address %r" % (address,))
        return ("unix", rest)
    if scheme == "fd":
        if not rest.isdigit():
            raise ValueError("bad fd address %r" % (address,))
        return ("fd", int(rest))
    raise ValueError("unknown transport %r" % (scheme,))


def connect(address, timeout=CONNECT_TIMEOUT):
    parsed = parse_address(address)
    kind = parsed[0]
    if kind == "tcp":
        sock = socket.create_connection((parsed[1], parsed[2]), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    elif kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(parsed[1])
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.socket(fileno=parsed[1])
    sock.settimeout(None)
    try:
        # The agent's socket must not leak into programs the target spawns.
        sock.set_inheritable(False)
    except OSError:
        pass
    return sock
