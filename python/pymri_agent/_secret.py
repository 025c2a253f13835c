"""Session secrets (docs/transports.md section 3), as the controller handles them
(crates/pymri-transport/src/secret.rs): 32 random bytes written as 64 hex characters, read from
private files only, or made by a local listener for itself in the runtime directory."""

import os
import stat

SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
#: A secret file is a line of hex; anything longer is not one.
MAX_SECRET_FILE = 4096
_HEX = frozenset("0123456789abcdefABCDEF")


class SecretError(ValueError):
    """No usable secret: a missing, shared or malformed file, or none where one is required."""


def parse(text, origin):
    text = text.strip()
    if len(text) % 2 or not all(c in _HEX for c in text):
        raise SecretError("the secret from %s is not valid: not hex (a secret is 64 hex characters, "
                          "as `pymri secret` writes it)" % origin)
    key = bytes.fromhex(text)
    if len(key) < MIN_SECRET_BYTES:
        raise SecretError("the secret from %s is not valid: shorter than %d bytes"
                          % (origin, MIN_SECRET_BYTES))
    return key


def read_file(path):
    """The key bytes of a secret file: a regular file of this user or root that group and others
    may neither read nor write (a file another user owns is a secret that user knows). The
    checks are made on the opened file, so that a file swapped in between cannot slip through.

    Unlike pymri, the agent follows a symbolic link to the file: Kubernetes mounts secrets
    through links, and the checks above apply to the file reached."""
    path = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO given by mistake must not hang the program.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SecretError("reading the secret file %s: %s" % (path, exc.strerror or exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretError("the secret file %s is not a regular file" % path)
        euid = os.geteuid()
        if st.st_uid not in (euid, 0):
            raise SecretError("the secret file %s belongs to user %d, not to this user (%d) or root: "
                              "whoever owns it knows the secret; use a secret file of your own "
                              "(`pymri secret FILE` makes one)" % (path, st.st_uid, euid))
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise SecretError("the secret file %s is readable or writable by others (mode %04o); it "
                              "must be private: chmod 600 %s" % (path, mode, path))
        data = b""
        while len(data) <= MAX_SECRET_FILE:
            chunk = os.read(fd, MAX_SECRET_FILE + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE:
        raise SecretError("the secret file %s is far longer than a secret" % path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SecretError("the secret file %s is not text" % path)
    return parse(text, path)


def runtime_dir():
    """$XDG_RUNTIME_DIR/pymri, else ~/.local/state/pymri (from $HOME, as the controller does);
    None if neither variable is usable."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "pymri")
    home = os.environ.get("HOME")
    if home and os.path.isabs(home):
        return os.path.join(home, ".local", "state", "pymri")
    return None


def _private_dir(path):
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        why = "not a directory"
    elif st.st_uid != os.geteuid():
        why = "owned by user %d" % st.st_uid
    elif st.st_mode & 0o022:
        why = "writable by others, mode %04o" % stat.S_IMODE(st.st_mode)
    else:
        return
    raise SecretError("%s must be a private directory of this user (it is %s); remove it, or set "
                      "XDG_RUNTIME_DIR to a private directory" % (path, why))


def generate(name):
    """A fresh secret written to RUNTIME_DIR/NAME.secret (mode 0600, never over an existing
    file). Returns (key bytes, path)."""
    directory = runtime_dir()
    if directory is None:
        raise SecretError("no directory for pymri's secret files: neither XDG_RUNTIME_DIR nor HOME "
                          "is set; give a secret file")
    _private_dir(directory)
    text = os.urandom(SECRET_BYTES).hex()
    path = os.path.join(directory, name + ".secret")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return bytes.fromhex(text), path
