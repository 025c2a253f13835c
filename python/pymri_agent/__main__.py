"""`python -m pymri_agent`: run a program with the agent armed from its start
(docs/transports.md section 7).

    python -m pymri_agent (--listen ADDR | --connect ADDR) [--secret-file FILE] [--wait]
                          (script.py | -m module) [ARGS...]

--connect ADDR      connect to a controller waiting with `pymri listen` (tcp:, tls:, unix:). The
                    program starts when the controller sends `start`, after setting its
                    breakpoints, as with `pymri run`.
--listen ADDR       listen for controllers (`pymri connect ADDR`): tcp:, tls:, unix:, fifo:.
--wait              with --listen: wait for the first controller and its `start`, as with
                    --connect. Without it the program starts at once and controllers attach to
                    it while it runs.
--secret-file FILE  the session secret (else the file PYMRI_SECRET_FILE names). A loopback
                    --listen address, a Unix socket or a FIFO pair gets a generated one whose
                    path is printed on stderr; any other address needs one.

The program runs as `__main__` as with `python script.py` / `python -m module`. Exit status: the
program's, or 2 for a usage error or a failed connection (nothing of the program ran then).
"""

import sys

USAGE = ("usage: python -m pymri_agent (--listen ADDR | --connect ADDR) [--secret-file FILE] "
         "[--wait] (script.py | -m module) [ARGS...]")
EXIT_USAGE = 2


class UsageError(Exception):
    pass


def parse_args(argv):
    """({"listen", "connect", "secret_file", "wait"}, launch target), or None for --help."""
    from . import launch
    opts = {"listen": None, "connect": None, "secret_file": None, "wait": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return None
        if arg == "--wait":
            opts["wait"] = True
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name in ("--listen", "--connect", "--secret-file"):
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError("%s needs a value" % name)
                value = argv[i + 1]
            i += 1 if eq else 2
            key = name[2:].replace("-", "_")
            if opts[key] is not None:
                raise UsageError("%s is given twice" % name)
            opts[key] = value
            continue
        if arg in ("-m", "--") or not arg.startswith("-"):
            break
        raise UsageError("unknown option %s" % arg)
    if (opts["listen"] is None) == (opts["connect"] is None):
        raise UsageError("give one of --listen ADDR and --connect ADDR")
    if opts["wait"] and opts["connect"] is not None:
        raise UsageError("--wait goes with --listen (with --connect the program always waits)")
    target = launch._parse_argv(list(argv[i:]))
    if target is None:
        raise UsageError("no program to run: give script.py or -m module")
    return opts, target


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        parsed = parse_args(argv)
    except UsageError as exc:
        sys.stderr.write("pymri_agent: %s\n%s\n" % (exc, USAGE))
        return EXIT_USAGE
    if parsed is None:
        sys.stdout.write(__doc__.split("\n\n", 1)[1])
        return 0
    opts, target = parsed
    from . import launch, library
    waits = opts["connect"] is not None or opts["wait"]
    # `ready` reports sys.argv: the controller shows the program's command line, not ours.
    kind, name, args = target
    sys.argv[:] = [name if kind == "script" else "-m " + name] + args
    try:
        if opts["connect"] is not None:
            endpoint = library.open_reverse(opts["connect"], opts["secret_file"], mode="launch")
        else:
            endpoint = library.open_listener(opts["listen"], opts["secret_file"],
                                             "launch" if waits else "attach", announce=True)
    except Exception as exc:
        sys.stderr.write("pymri_agent: %s\n" % (exc,))
        return EXIT_USAGE
    agent = endpoint.wait_session() if waits else None
    if agent is not None:
        return launch.run_program(agent, target)
    code, _ = launch.run_once(None, target, False)
    return code


if __name__ == "__main__":
    sys.exit(main())
