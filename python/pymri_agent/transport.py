"""Transports (docs/transports.md section 1): address strings, connecting, listening.

Addresses:
  tcp:HOST:PORT       TCP (HOST a name, an IPv4 address or a bracketed IPv6 address)
  tls:HOST:PORT       TCP, then TLS with the agent as the TLS client (see _wire.py)
  unix:PATH           a Unix stream socket
  fifo:DIR            two FIFOs, DIR/to-agent (the agent reads) and DIR/from-agent (it writes)
  fd:N                an already connected stream socket inherited as file descriptor N

Parsing follows the controller's (crates/pymri-transport/src/address.rs) rule for rule, so that
an address means the same on both sides. `connect` serves `attach` and `run` (tcp, unix, fd);
the library (library.py) adds TLS, FIFOs and listening on top of the helpers below.

Only the standard library's socket layer is imported here: `attach` imports this module in
every target it is injected into.
"""

import errno
import os
import socket
import stat
import struct

CONNECT_TIMEOUT = 10.0
#: Longest path a Unix socket address holds (sun_path minus its NUL); FIFO directories are only
#: bounded by PATH_MAX.
MAX_UNIX_PATH = 107
MAX_PATH = 4095
MAX_HOST_NAME = 253
TO_AGENT = "to-agent"
FROM_AGENT = "from-agent"
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_BACKLOG = 128


def _bad(address, why):
    return ValueError("%r is not an address: %s (addresses are tcp:HOST:PORT, tls:HOST:PORT, "
                      "unix:PATH or fifo:DIR)" % (str(address)[:200], why))


def _decimal(text, limit):
    if not text or len(text) > 10 or not all("0" <= c <= "9" for c in text):
        return None
    value = int(text)
    return value if value <= limit else None


def _host_port(address, text):
    if text.startswith("["):
        ip, sep, after = text[1:].partition("]")
        if not sep:
            raise _bad(address, "an IPv6 address needs its closing ']'")
        if not after.startswith(":"):
            raise _bad(address, "the port is missing after the IPv6 address")
        port = after[1:]
        try:
            socket.inet_pton(socket.AF_INET6, ip)
        except (OSError, ValueError):
            raise _bad(address, "%r is not an IPv6 address" % ip)
        host = ip
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise _bad(address, "expected HOST:PORT")
        if ":" in host:
            raise _bad(address, "an IPv6 address goes in brackets: [::1]:PORT")
        if not host:
            raise _bad(address, "the host is missing")
        if len(host) > MAX_HOST_NAME:
            raise _bad(address, "the host name is longer than 253 characters")
        if not all(c in _HOST_CHARS for c in host):
            raise _bad(address, "%r is not a host name or an IP address" % host)
    number = _decimal(port, 65535)
    if number is None:
        raise _bad(address, "%r is not a port number (0-65535)" % port)
    return host, number


def _path(address, text, limit):
    if not text:
        raise _bad(address, "the path is missing")
    if "\0" in text:
        raise _bad(address, "a path cannot contain a NUL byte")
    if len(os.fsencode(text)) > limit:
        raise _bad(address, "the path is longer than %d bytes" % limit)
    return text


def parse_address(address):
    """("tcp"|"tls", host, port), ("unix", path), ("fifo", dir) or ("fd", n); ValueError says why
    an address is malformed. Hosts come without IPv6 brackets."""
    if not isinstance(address, str) or ":" not in address:
        raise _bad(address, "it has no scheme (tcp:, tls:, unix:, fifo:)")
    scheme, _, rest = address.partition(":")
    if scheme in ("tcp", "tls"):
        host, port = _host_port(address, rest)
        return (scheme, host, port)
    if scheme == "unix":
        return ("unix", _path(address, rest, MAX_UNIX_PATH))
    if scheme == "fifo":
        return ("fifo", _path(address, rest, MAX_PATH))
    if scheme == "fd":
        n = _decimal(rest, 2 ** 31 - 1)
        if n is None:
            raise _bad(address, "a descriptor is a number (fd:N)")
        return ("fd", n)
    raise _bad(address, "unknown scheme %r (tcp:, tls:, unix:, fifo:, fd:)" % scheme)


def format_address(parsed):
    kind = parsed[0]
    if kind in ("tcp", "tls"):
        host = "[%s]" % parsed[1] if ":" in parsed[1] else parsed[1]
        return "%s:%s:%d" % (kind, host, parsed[2])
    return "%s:%s" % parsed


def is_local(parsed):
    """Whether only this machine can use the address (section 3: such a listener may make its
    own secret). Names other than `localhost` are not resolved, as in the controller."""
    if parsed[0] not in ("tcp", "tls"):
        return True
    host = parsed[1]
    if host.lower() == "localhost":
        return True
    import ipaddress
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _private(sock):
    try:
        # The agent's sockets must not leak into programs the target spawns.
        sock.set_inheritable(False)
    except OSError:
        pass
    return sock


def tcp_connect(host, port, timeout=CONNECT_TIMEOUT):
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return _private(sock)


def unix_connect(path, timeout=CONNECT_TIMEOUT):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return _private(sock)


def connect(address, timeout=CONNECT_TIMEOUT):
    """A connected, blocking socket for a tcp:, unix: or fd: address (`attach`, `run`)."""
    parsed = parse_address(address)
    kind = parsed[0]
    if kind == "tcp":
        sock = tcp_connect(parsed[1], parsed[2], timeout)
    elif kind == "unix":
        sock = unix_connect(parsed[1], timeout)
    elif kind == "fd":
        sock = _private(socket.socket(fileno=parsed[1]))
    else:
        raise ValueError("%s: addresses are for pymri_agent.connect/listen" % kind)
    sock.settimeout(None)
    return sock


# ---------------------------------------------------------------------------------------------
# Listening


def tcp_listen(host, port):
    """A non-blocking listening TCP socket and its address with the real port."""
    last = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM,
                                                               0, socket.AI_PASSIVE):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(_BACKLOG)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setblocking(False)
        return _private(sock), sock.getsockname()[1]
    raise last or OSError(errno.EADDRNOTAVAIL, "%s has no address" % host)


def unix_listen(path):
    """A non-blocking listening Unix socket at `path`, mode 0600, and the inode it has (so that
    only our own socket file is removed later). A socket file nobody listens on any more is
    replaced; any other file is left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a socket", path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # left over by a process that is gone
        else:
            raise OSError(errno.EADDRINUSE, "another process listens on this socket", path)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # Before listen(), connections are refused whatever the mode: nobody gets in between.
        os.chmod(path, 0o600)
        sock.listen(_BACKLOG)
        inode = os.lstat(path).st_ino
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return _private(sock), inode


def close_now(sock):
    """Closes an accepted connection at once, unread: a TCP reset, nothing left in TIME_WAIT on
    our side for a flood to fill."""
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def remove_if_ours(path, inode):
    try:
        if inode is not None and os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def make_fifos(directory):
    """Creates DIR (0700) if needed and a fresh FIFO pair in it, mode 0600; returns their inodes.
    FIFOs left in DIR are replaced; other files are refused."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", directory)
    inodes = []
    for name in (TO_AGENT, FROM_AGENT):
        path = os.path.join(directory, name)
        try:
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                raise FileExistsError(errno.EEXIST, "exists and is not a FIFO", path)
            # A new pair each time: a writer still holding the old one cannot reach the new one.
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mkfifo(path, 0o600)
        os.chmod(path, 0o600)
        inodes.append(os.lstat(path).st_ino)
    return inodes
