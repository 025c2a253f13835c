"""Session requests: the agent's description, starting a launched program, leaving it."""

from ._handlers import AFTER, READER, RequestError


def req_info(agent, args):
    return agent.info_body()


def req_set_thread_offsets(agent, args):
    setter = getattr(agent.backend, "set_offsets", None)
    if setter is not None and isinstance(args.get("thread_offsets"), dict):
        with agent.lock:
            setter(args["thread_offsets"])
    return agent.backend.info()


def req_start(agent, args):
    if agent.mode != "launch":
        raise RequestError("bad_state", "start is only for launched programs")
    if agent.start_event.is_set():
        raise RequestError("bad_state", "already started")
    if isinstance(args.get("thread_offsets"), dict):
        req_set_thread_offsets(agent, args)
    agent.start_args = dict(args)
    agent.start_event.set()
    return {}


def _detach(agent):
    return lambda: agent.detach("request", notify=True)


def req_detach(agent, args):
    return _detach(agent)


def _queue_action(stop, action):
    stop.queue.put((None, True, lambda agent, s, a: (action,), {}))


def req_restart(agent, args):
    if agent.mode != "launch":
        raise RequestError("bad_state", "restart is only for launched programs")
    if agent.program_exited:
        return lambda: agent.exit_action.put("restart")
    stop = agent.stops.get(agent.main_ident)
    if stop is None:
        raise RequestError("bad_state", "the main thread must be stopped (or the program exited) to restart")
    return lambda: _queue_action(stop, "restart")


def req_quit(agent, args):
    if agent.mode != "launch":  # attached: quit leaves the program running, like detach
        return _detach(agent)
    if agent.program_exited:
        return lambda: agent.exit_action.put("quit")

    def after():
        stop = agent.stops.get(agent.main_ident)
        if stop is not None:
            _queue_action(stop, "quit")
        else:
            agent.pause_thread(agent.main_ident, reason="quit")
        for ident, other in list(agent.stops.items()):
            if ident != agent.main_ident:
                _queue_action(other, "continue")
    return after


REQUESTS = {
    "info": (READER, req_info),
    "set_thread_offsets": (READER, req_set_thread_offsets),
    "start": (READER, req_start),
    "detach": (AFTER, req_detach),
    "restart": (AFTER, req_restart),
    "quit": (AFTER, req_quit),
}
