"""The request dispatch table's vocabulary: how a request is run, and how modules combine.

Each `req_*` module ends with a literal `REQUESTS = {name: (KIND, handler)}`; `engine.REQUESTS`
is their union (`compose`), and a request it lacks is answered `unknown_command`. A new set of
requests is a new module with its own table, added to `engine.REQUESTS`. The tables are kept
literal: a Rust test (pymri-protocol) reads them to check that they and the protocol crate define
the same requests.
"""

# Run by the reader thread: `handler(agent, args)` returns the response body.
READER = "reader"
# Run by the reader thread: `handler(agent, args)` returns a function run after the (empty)
# response went out (detach, quit, restart).
AFTER = "after"
# Queued to the stopped thread the request names: `handler(agent, stop, args)` returns the
# response body (or a ("transfer", line) for a jump that a hook must complete).
STOPPED = "stopped"
# Like STOPPED, but the handler returns the action that resumes the thread; answered `{}`.
RESUME = "resume"

KINDS = (READER, AFTER, STOPPED, RESUME)


class RequestError(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


def compose(*tables):
    """One dispatch table from per-module ones; a request defined twice is an agent bug."""
    out = {}
    for table in tables:
        for name, entry in table.items():
            if name in out:
                raise ValueError("request %r is defined twice" % name)
            if entry[0] not in KINDS:
                raise ValueError("request %r has an unknown kind %r" % (name, entry[0]))
            out[name] = entry
    return out
