"""Entry point of `pymri attach PID`: the injected bootstrap calls `start(config)`.

config = {
    "connect": "tcp:127.0.0.1:PORT" | "unix:PATH" | "fd:N",
    "secret": "<hex>",            # shared with the controller
    "nonce": "<hex>",             # attach nonce: proves to the controller that THIS injection ran
    "thread_offsets": {"c_tracefunc": N, "c_traceobj": N, "thread_id": N},   # CPython < 3.12
    "stop_thread": <thread ident or None>,   # None: stop the thread running the bootstrap
    "stop": True,                 # optional; False attaches without stopping
    "skip_frames": 0,             # optional; frames between the bootstrap and the interrupted
                                  # code (1 when PyRun_SimpleString ran the bootstrap)
    "stage": "/tmp/pymri-...",    # optional; the session's private directory, removed on detach
}

`start` connects back, authenticates, then stops the calling thread in the frame the bootstrap
interrupted, and returns when the user continues or detaches. It never raises.
"""

import os
import sys
import threading

# The package directory leaves sys.path when `start` runs; modules imported later (the
# backend of this interpreter only) are found through the package's own __path__.
from . import engine, protocol, transport

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PATH_ENTRY = os.path.dirname(_PACKAGE_DIR)


def _remove_path_entry():
    for entry in list(sys.path):
        try:
            if entry and os.path.abspath(entry) == _PATH_ENTRY:
                sys.path.remove(entry)
                sys.path_importer_cache.pop(entry, None)
        except (ValueError, TypeError):
            pass


def _forget_modules():
    for name in list(sys.modules):
        if name == "pymri_agent" or name.startswith("pymri_agent."):
            mod = sys.modules.get(name)
            if getattr(mod, "__file__", "") and os.path.abspath(mod.__file__).startswith(_PACKAGE_DIR):
                sys.modules.pop(name, None)


def _remove_stage(path):
    """Removes the session's private directory (bootstrap, socket), also if pymri itself died.
    The package directory, shared by later attaches for its bytecode cache, stays."""
    name = os.path.basename(str(path or ""))
    if name.startswith("pymri-") and not name.startswith("pymri-agent-"):
        _remove_tree(path)


def _remove_tree(path):
    # Not shutil.rmtree: importing shutil loads a dozen compression modules into the program.
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _remove_tree(entry.path)
                else:
                    os.unlink(entry.path)
        os.rmdir(path)
    except OSError:
        pass


def start(config):
    """Connect, authenticate, stop here. Returns None; never raises into the program."""
    caller = sys._getframe(1)
    _remove_path_entry()
    try:
        return _start(config, caller)
    except Exception:
        return None
    finally:
        del caller


def _start(config, caller):
    key = protocol.parse_secret(config["secret"])
    attach_nonce = str(config.get("nonce") or "")
    sock = transport.connect(config["connect"])
    channel = protocol.Channel(sock)
    try:
        protocol.agent_handshake(channel, key, attach_nonce)
    except Exception:
        channel.close()
        return None
    agent = engine.Agent(channel, "attach", config.get("thread_offsets"))
    agent.hide_code(caller.f_code)
    agent.detach_callbacks.append(_forget_modules)
    agent.detach_callbacks.append(lambda: _remove_stage(config.get("stage")))
    agent.activate()
    if not config.get("stop", True):
        return None
    interrupted = caller.f_back
    for _ in range(int(config.get("skip_frames") or 0)):
        if interrupted is None or interrupted.f_back is None:
            break
        agent.hide_code(interrupted.f_code)
        interrupted = interrupted.f_back
    stop_thread = config.get("stop_thread")
    if stop_thread is None or stop_thread == threading.get_ident():
        agent.stop_here_attach(interrupted)
    else:
        agent.pause_thread(stop_thread, reason="attach")
    return None
