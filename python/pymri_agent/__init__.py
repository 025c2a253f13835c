"""pymri's in-target debugger agent (standard library only, CPython 3.9+).

Entry points:
  pymri_agent.attach.start(config)   run by the bootstrap that `pymri attach` injects
  pymri_agent.launch.main(argv)      `pymri run` (python -m pymri_agent.launch ...)

The agent speaks the framed protocol of docs/protocol.md over a `protocol.Channel`.
"""

from .protocol import AGENT_VERSION as __version__, PROTOCOL_VERSION  # noqa: F401
