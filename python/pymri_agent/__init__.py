"""pymri's in-target debugger agent (standard library only, CPython 3.9+).

As a library (docs/transports.md section 7; the controller is `pymri connect` / `pymri listen`):

    pymri_agent.listen(address="tcp:127.0.0.1:5678", secret_file=None, wait=False)
    pymri_agent.connect(address, secret_file=None)
    pymri_agent.set_trace(address=None, secret_file=None)   # also PYTHONBREAKPOINT=pymri_agent.set_trace
    pymri_agent.stop()
    python -m pymri_agent (--listen ADDR | --connect ADDR) [--secret-file FILE] [--wait] \
        (script.py | -m module) ARGS

Entry points of pymri itself:
  pymri_agent.attach.start(config)   run by the bootstrap that `pymri attach` injects
  pymri_agent.launch.main(argv)      `pymri run` (python -m pymri_agent.launch ...)

The agent speaks the framed protocol of docs/protocol.md over a `protocol.Channel`. Importing
the package stays cheap: the functions below load the rest (engine, sockets, ssl) when called.
"""

import sys

from .protocol import AGENT_VERSION as __version__, PROTOCOL_VERSION  # noqa: F401


def listen(address="tcp:127.0.0.1:5678", secret_file=None, wait=False):
    """Listens for a controller in a background thread; returns the address listened on.

    Without a secret (`secret_file`, or the file PYMRI_SECRET_FILE names), a loopback address,
    Unix socket or FIFO pair gets a generated one in $XDG_RUNTIME_DIR/pymri/ (else
    ~/.local/state/pymri/), whose path is printed on stderr; any other address needs one.
    `wait=True` blocks until a controller has connected. A session the controller detaches
    leaves the agent listening for the next one."""
    from . import library
    return library.listen(address, secret_file, wait)


def connect(address, secret_file=None):
    """Connects out to a controller waiting with `pymri listen` (tcp:, tls: or unix:),
    retrying briefly; returns once the session is up. It ends when the controller detaches."""
    from . import library
    library.connect(address, secret_file)


def set_trace(address=None, secret_file=None):
    """Stops the calling thread at its caller's frame, like pdb.set_trace, waiting for a
    controller if none is connected. Without arguments the address comes from
    PYMRI_AGENT_LISTEN or PYMRI_AGENT_CONNECT (else tcp:127.0.0.1:5678, listening) and the
    secret from PYMRI_SECRET_FILE."""
    from . import library
    library.set_trace(address, secret_file, sys._getframe(1))


def stop():
    """Ends the session, stops listening, removes every hook and the agent's files."""
    from . import library
    library.stop()
