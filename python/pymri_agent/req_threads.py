"""Thread requests: which threads run where, pausing them, a stopped thread's stack."""

import sys
import threading

from . import inspection
from ._handlers import READER, RequestError


def req_pause(agent, args):
    tid = args.get("thread")
    if tid is None:
        targets = [i for i in sys._current_frames() if i not in agent.agent_threads and i not in agent.stops]
    else:
        if tid in agent.stops:
            return {"paused": []}
        if tid not in sys._current_frames() or tid in agent.agent_threads:
            raise RequestError("no_such_thread", "no thread %r running Python code" % (tid,))
        targets = [tid]
    done = [t for t in targets if agent.pause_thread(t)]
    if tid is not None and not done:
        raise RequestError("unsupported", "cannot pause thread %r (no thread-state offsets)" % tid)
    return {"paused": done}


def req_threads(agent, args):
    agent.thread_events()
    frames = sys._current_frames()
    threads = {t.ident: t for t in threading.enumerate()}
    out = []
    for ident in sorted(set(frames) | set(threads), key=lambda i: (i != agent.main_ident, i)):
        if ident in agent.agent_threads or ident is None:
            continue
        t = threads.get(ident)
        d = {"id": ident, "name": t.name if t is not None else "thread-%d" % ident,
             "main": ident == agent.main_ident, "stopped": ident in agent.stops}
        if t is not None:
            d["daemon"] = t.daemon
            native = getattr(t, "native_id", None)
            if native is not None:
                d["native_id"] = native
        stop = agent.stops.get(ident)
        if stop is not None:
            d["reason"] = stop.reason
            if stop.frames:
                d["frame"] = inspection.frame_dict(stop.frames[0][0], stop.line_of(0))
        elif ident in frames:
            vis = agent.visible_frames(frames[ident])
            if vis:
                d["frame"] = inspection.frame_dict(vis[0][0], inspection.frame_line(vis[0][0]))
        out.append(d)
    return {"threads": out}


def req_stack(agent, args):
    stop = agent.target_stop(args)
    start = args.get("start", 0)
    levels = args.get("levels")
    frames = []
    total = len(stop.frames)
    end = total if not levels else min(total, start + levels)
    for index in range(start, end):
        frame = stop.frames[index][0]
        key = (stop.ident, index)
        fid = None
        for k, v in agent.frame_ids.items():
            if v == key:
                fid = k
                break
        if fid is None:
            fid = agent.next_frame_id
            agent.next_frame_id += 1
            agent.frame_ids[fid] = key
        d = inspection.frame_dict(frame, stop.line_of(index))
        d["index"] = index
        d["id"] = fid
        frames.append(d)
    return {"frames": frames, "total": total}


REQUESTS = {
    "pause": (READER, req_pause),
    "threads": (READER, req_threads),
    "stack": (READER, req_stack),
}
