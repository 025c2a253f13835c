"""Entry point of `pymri run`: run a script or module under the agent.

    python3 -m pymri_agent.launch script.py ARGS...
    python3 -m pymri_agent.launch -m module ARGS...
    python3 -c "...; import pymri_agent.launch as l; raise SystemExit(l.main(ARGV))"

Environment (removed from os.environ before the program runs):
    PYMRI_AGENT_ADDRESS     where to connect (see transport.py)
    PYMRI_AGENT_SECRET_FD   number of an inherited file descriptor holding the hex secret; it is
                            read to end of file, then closed
The directory holding the package is removed from sys.path and from PYTHONPATH.
"""

import builtins
import os
import sys
import types

from . import engine, protocol, transport
from .engine import QuitProgram, RestartProgram

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PATH_ENTRY = os.path.dirname(_PACKAGE_DIR)
EXIT_USAGE = 2


def _clean_agent_path():
    for entry in list(sys.path):
        try:
            if entry and os.path.abspath(entry) == _PATH_ENTRY:
                sys.path.remove(entry)
        except (TypeError, ValueError):
            pass
    pp = os.environ.get("PYTHONPATH")
    if pp is not None:
        parts = [p for p in pp.split(os.pathsep) if not (p and os.path.abspath(p) == _PATH_ENTRY)]
        if parts:
            os.environ["PYTHONPATH"] = os.pathsep.join(parts)
        else:
            del os.environ["PYTHONPATH"]


def _read_secret(fd_text):
    fd = int(fd_text)
    chunks = []
    size = 0
    try:
        while size < 4096:
            data = os.read(fd, 4096)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _parse_argv(argv):
    if not argv:
        return None
    if argv[0] == "-m":
        if len(argv) < 2:
            return None
        return ("module", argv[1], list(argv[2:]))
    if argv[0] == "--":
        argv = argv[1:]
        if not argv:
            return None
    return ("script", argv[0], list(argv[1:]))


def _prepare(target):
    """Compile the program and build a fresh __main__ like `python script.py` / `-m` would."""
    kind, name, args = target
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if kind == "script":
        path = os.path.abspath(name)
        with open(path, "rb") as f:
            source = f.read()
        code = compile(source, path, "exec", dont_inherit=True)
        import importlib.machinery
        main.__file__ = path
        main.__cached__ = None
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
        main.__spec__ = None
        main.__package__ = None
        sys.argv[:] = [name] + args
        path0 = os.path.dirname(path)
    else:
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ImportError("No module named %s" % name)
        if spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(name + ".__main__")
            if spec is None:
                raise ImportError("No module named %s.__main__; '%s' is a package and cannot be "
                                  "directly executed" % (name, name))
        code = spec.loader.get_code(spec.name)
        if code is None:
            raise ImportError("No code object available for %s" % name)
        main.__file__ = spec.origin
        main.__cached__ = spec.cached
        main.__loader__ = spec.loader
        main.__spec__ = spec
        main.__package__ = spec.parent
        sys.argv[:] = [spec.origin] + args
        path0 = os.getcwd()
    if sys.path:
        sys.path[0] = path0
    else:
        sys.path.append(path0)
    sys.modules["__main__"] = main
    return code, main


def _exit_code(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _strip_tb(agent, tb):
    from .inspection import without_agent
    return without_agent(tb)


def run_once(agent, target, stop_on_entry):
    """Run the program once. Returns (exit code, outcome) with outcome exit/exception/restart/quit."""
    try:
        code, main = _prepare(target)
    except QuitProgram:
        # `quit` sent right after `start` can land on a line of the standard library code that
        # loads the program, before the program's first line.
        return 0, "quit"
    except RestartProgram:
        return None, "restart"
    except BaseException as exc:
        sys.stderr.write("%s: %s\n" % (type(exc).__name__, exc))
        return 1, "exception"
    active = agent is not None and not agent.detached
    if active:
        code = agent.program_code(code)  # instrumented for the breakpoints already set
    if active and stop_on_entry:
        agent.request_entry_stop(code)
    if active:
        agent.backend.program_starting()
        if agent.tracer is not None:
            agent.tracer.program_starting()
    try:
        exec(code, main.__dict__)
        return 0, "exit"
    except SystemExit as exc:
        return _exit_code(exc), "exit"
    except RestartProgram:
        return None, "restart"
    except QuitProgram:
        return 0, "quit"
    except BaseException as exc:
        tb = _strip_tb(agent, exc.__traceback__)
        exc.__traceback__ = tb
        if agent is not None:
            agent.in_launcher_hook = True
        try:
            sys.excepthook(type(exc), exc, tb)
        except Exception:
            pass
        finally:
            if agent is not None:
                agent.in_launcher_hook = False
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
        if agent is not None and not agent.detached:
            try:
                agent.post_mortem(exc, tb)
            except RestartProgram:
                return None, "restart"
            except QuitProgram:
                return code, "quit"
        return code, "exception"
    finally:
        if active:
            agent.cancel_entry_stop()


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    address = os.environ.pop("PYMRI_AGENT_ADDRESS", None)
    fd_text = os.environ.pop("PYMRI_AGENT_SECRET_FD", None)
    _clean_agent_path()
    target = _parse_argv(list(argv))
    if target is None or address is None or fd_text is None:
        return EXIT_USAGE
    try:
        key = protocol.parse_secret(_read_secret(fd_text))
        sock = transport.connect(address)
    except Exception:
        return EXIT_USAGE
    channel = protocol.Channel(sock)
    try:
        protocol.agent_handshake(channel, key, os.environ.pop("PYMRI_AGENT_NONCE", ""))
    except Exception:
        channel.close()
        return EXIT_USAGE
    agent = engine.Agent(channel, "launch")
    try:
        agent.activate()
    except QuitProgram:
        # The agent serves requests as soon as its reader thread runs: a `quit` right after
        # `start` can stop this thread while it still waits for that thread to be started.
        agent.send_event("exited", {"code": 0, "reason": "quit"})
        agent.detach("quit", notify=True)
        return 0
    return run_program(agent, target)


def run_program(agent, target):
    """The sequence of section 9 once `ready` was sent: wait for `start`, run the program, report
    `exited`, then `restart` or `quit`. Returns the exit status. Also used by __main__.py."""
    agent.start_event.wait()
    code = 0
    # The status of the last run that ended by itself: `quit` during the run restarted after it
    # ends the process with that status (the program's own), not with the 0 of an interrupted run.
    finished = None
    while True:
        if agent.detached:
            code, outcome = run_once(None, target, False)
            return code
        code, outcome = run_once(agent, target, bool(agent.start_args.get("stop_on_entry", True)))
        if outcome == "restart":
            continue
        if agent.detached:
            return code if code is not None else 0
        if outcome == "quit":
            if code == 0 and finished is not None:
                code = finished
            agent.send_event("exited", {"code": code, "reason": "quit"})
            break
        finished = code
        while not agent.exit_action.empty():
            agent.exit_action.get_nowait()
        agent.program_exited = True
        agent.send_event("exited", {"code": code, "reason": outcome})
        action = agent.exit_action.get()
        agent.program_exited = False
        if action != "restart":
            break
    agent.detach("quit", notify=True)
    return code if code is not None else 0


if __name__ == "__main__":
    sys.exit(main())
