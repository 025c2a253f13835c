"""Doctor requests (`pymri doctor`): what only code inside the target can see over a window.

`doctor_start` takes the measurements of the window's start and installs the window's hooks;
`doctor_stop` takes those of the end, removes every hook and answers the lot. Nothing stops a
thread; the hooks only count. What each part looks at:

- census: `gc.get_objects()` counted by type (count and size), at the start and the end, each
  bounded in time (a census that ran out of time says how far it got). Sizes are
  `sys.getsizeof` for built-in types and the instance's basic size for the others: a class's
  `__sizeof__` is the program's code, not run from here.
- containers: the sizes of the dicts, lists, sets and deques reachable from modules' globals,
  from the attributes of classes defined there and from the attributes of module-level
  instances (a bounded walk, two levels under a module), named by that path
  (`registry.Registry._entries`). A thread of the agent reads their sizes again a few times in
  the window, by path (no reference to the program's objects is kept); at the end, the ones
  that grew come back with their sizes over time and the types of their newest entries.
- exceptions: a `tracing.Tracer` that reports nothing while it runs (`max_rate` 0) and counts
  every exception by type, raise site and handler site.
- thread starts: `threading.Thread.start` wrapped to count its callers' lines and the function
  each new thread runs; the original is put back at the end.
- versions: the distributions (importlib.metadata) whose top-level modules are loaded.

The hooks also go when the agent detaches (a lost connection included): pymri dying in the
window leaves the program as it was.
"""

import sys
import threading
import time

from ._handlers import READER, RequestError
from .inspection import AGENT_DIR
from .tracing import Tracer, code_qualname

_monotonic = time.monotonic
_getframe = sys._getframe

# Seconds the census and the walk may each hold the GIL, as a share of the time between
# readings (1% of a window in all), within bounds; what they did not reach is said, not guessed.
PAUSE_SHARE = 0.03
MIN_PAUSE = 0.02
MAX_PAUSE = 0.5
# Types returned from a census diff.
CENSUS_TYPES = 24
# The containers walk: objects visited, containers followed.
MAX_VISITED = 200000
MAX_CONTAINERS = 20000
# Readings of the containers' sizes within the window (besides start and end).
READINGS = 4
# A container is reported when it grew by at least this many entries.
MIN_GROWTH = 10
MAX_GROWN = 50
# Newest entries whose types are counted, per grown container.
MAX_NEWEST = 1000
MAX_START_SITES = 256
MAX_IDENTS_PER_SITE = 64
MAX_DISTRIBUTIONS = 500
VERSIONS_BUDGET = 2.0


def type_label(cls):
    try:
        mod = cls.__module__
        name = cls.__qualname__
    except Exception:
        return "?"
    if not isinstance(mod, str) or not isinstance(name, str):
        return "?"
    return name if mod in ("builtins", "") else "%s.%s" % (mod, name)


def _builtin(t):
    try:
        return t.__module__ == "builtins"
    except Exception:
        return False


def _census(budget):
    import gc
    t0 = _monotonic()
    objects = gc.get_objects()
    total = len(objects)
    by_type = {}
    getsizeof = sys.getsizeof
    examined = 0
    cut = False
    for o in objects:
        if examined & 4095 == 4095 and _monotonic() - t0 > budget:
            cut = True
            break
        examined += 1
        t = type(o)
        e = by_type.get(t)
        if e is None:
            e = by_type[t] = [0, 0, _builtin(t)]
        e[0] += 1
        try:
            e[1] += getsizeof(o) if e[2] else t.__basicsize__
        except Exception:
            pass
    del objects
    labelled = {}
    for t, (count, size, _) in by_type.items():
        label = type_label(t)
        if label.startswith("pymri_agent."):
            continue  # the agent's own objects are not the program's
        e = labelled.get(label)
        if e is None:
            labelled[label] = [count, size]
        else:
            e[0] += count
            e[1] += size
    by_type.clear()
    return {"objects": total, "examined": examined, "cut": cut,
            "seconds": round(_monotonic() - t0, 3),
            "count": sum(e[0] for e in labelled.values()),
            "size": sum(e[1] for e in labelled.values())}, labelled


def _census_diff(start, end):
    rows = []
    for label in set(start) | set(end):
        c0, s0 = start.get(label, (0, 0))
        c1, s1 = end.get(label, (0, 0))
        rows.append({"type": label, "count": c1, "size": s1, "count_start": c0, "size_start": s0})
    growing = sorted(rows, key=lambda r: -(r["count"] - r["count_start"]))[:CENSUS_TYPES // 2]
    largest = sorted(rows, key=lambda r: -r["size"])[:CENSUS_TYPES]
    out, seen = [], set()
    for r in growing + largest:
        if r["type"] not in seen and len(out) < CENSUS_TYPES:
            seen.add(r["type"])
            out.append(r)
    return out


# -- containers ------------------------------------------------------------------------------

def _kinds():
    from collections import deque
    return (dict, list, set, deque)


def _is_module(value):
    return issubclass(type(value), type(sys))


def _members(value):
    """The namespace the walk looks into under `value`: a class's own attributes or an
    instance's `__dict__`; None for anything else."""
    t = type(value)
    if issubclass(t, type):
        try:
            return type.__dict__["__dict__"].__get__(value)
        except Exception:
            return None
    if _builtin(t) or _is_module(value) or callable(value):
        return None
    try:
        d = object.__getattribute__(value, "__dict__")
    except Exception:
        return None
    return d if type(d) is dict else None


def _modules():
    """Modules with their namespaces, the program's own first, then installed packages', then
    the standard library's: a walk cut short has looked where a leak is likeliest."""
    stdlib = tuple(_stdlib_dirs())
    found = []
    for name, mod in list(sys.modules.items()):
        if mod is None or not _is_module(mod) or name.startswith("pymri_agent") or name == "__mp_main__":
            continue
        try:
            d = mod.__dict__
            path = d.get("__file__")
        except Exception:
            continue
        if type(d) is not dict:
            continue
        if not isinstance(path, str) or (stdlib and path.startswith(stdlib) and "-packages/" not in path):
            rank = 2
        elif "-packages/" in path:
            rank = 1
        else:
            rank = 0
        found.append((rank, name, d))
    found.sort(key=lambda m: m[0])
    for _, name, d in found:
        yield name, d


class _Walk(object):
    """Containers by path: (steps) -> (id, len)."""

    def __init__(self):
        self.kinds = _kinds()
        self.found = {}
        self.visited = 0
        self.cut = False

    def run(self, budget):
        deadline = _monotonic() + budget
        seen = set()
        for modname, d in _modules():
            if self.cut:
                break
            for name, value in list(d.items()):
                if not isinstance(name, str) or name.startswith("__"):
                    continue
                self.visit((modname, name), value, modname, seen, deadline, 1)
        return self

    def visit(self, steps, value, modname, seen, deadline, depth):
        self.visited += 1
        if self.visited >= MAX_VISITED or len(self.found) >= MAX_CONTAINERS \
                or (self.visited & 1023 == 0 and _monotonic() > deadline):
            self.cut = True
            return
        if id(value) in seen:
            return
        t = type(value)
        if issubclass(t, self.kinds):
            seen.add(id(value))
            self.found[steps] = (id(value), len(value))
            return
        if depth >= 3 or _is_module(value):
            return
        if issubclass(t, type) and getattr(value, "__module__", None) != modname:
            return  # a class imported from elsewhere is walked from its own module
        members = _members(value)
        if members is None:
            return
        seen.add(id(value))
        for name, attr in list(members.items()):
            if isinstance(name, str) and not (name.startswith("__") and name.endswith("__")):
                self.visit(steps + (name,), attr, modname, seen, deadline, depth + 1)
                if self.cut:
                    return


def _resolve(steps):
    mod = sys.modules.get(steps[0])
    if mod is None or not _is_module(mod):
        return None
    try:
        value = mod.__dict__.get(steps[1])
    except Exception:
        return None
    for name in steps[2:]:
        members = _members(value)
        if members is None:
            return None
        value = members.get(name)
    return value


def _newest(container, n):
    """Labels of the types of the `n` newest entries (values for a dict), counted; for a set,
    which has no order, of `n` of its entries."""
    from itertools import islice
    for _ in range(3):
        try:
            if isinstance(container, dict):
                items = list(islice(reversed(container.values()), n))
            elif isinstance(container, list):
                items = container[-n:]
            elif isinstance(container, (set,)):
                items = list(islice(iter(container), n))
            else:
                items = list(islice(reversed(container), n))
            break
        except RuntimeError:  # changed size while read: read again
            continue
    else:
        return []
    counts = {}
    for item in items:
        label = type_label(type(item))
        counts[label] = counts.get(label, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


# -- thread starts ---------------------------------------------------------------------------

class _StartSites(object):
    def __init__(self):
        self.sites = {}  # (function, file, line, target) -> [count, [idents]]
        self.active = False
        self.original = None
        self.wrapper = None

    def install(self):
        cls = threading.Thread
        original = cls.__dict__["start"]
        sites = self

        def start(self, *args, **kwargs):
            if sites.active:
                key = None
                try:
                    key = sites.site(self)
                except Exception:
                    pass
                result = original(self, *args, **kwargs)
                if key is not None:
                    sites.started(key, self)
                return result
            return original(self, *args, **kwargs)

        start.__name__ = original.__name__
        start.__qualname__ = getattr(original, "__qualname__", "Thread.start")
        start.__doc__ = original.__doc__
        start.__wrapped__ = original
        self.original = original
        self.wrapper = start
        self.active = True
        cls.start = start

    def uninstall(self):
        self.active = False
        cls = threading.Thread
        if self.wrapper is not None and cls.__dict__.get("start") is self.wrapper:
            cls.start = self.original
        # If someone wrapped it again meanwhile, ours stays under theirs, inert.
        self.wrapper = None

    def site(self, thread):
        f = _getframe(2)
        # A subclass's start calling super().start(): the line that started the thread is its caller's.
        while f is not None and f.f_code.co_name == "start" and f.f_locals.get("self") is thread:
            f = f.f_back
        if f is None or f.f_code.co_filename.startswith(AGENT_DIR):
            return None
        target = getattr(thread, "_target", None)
        if target is not None:
            label = "%s.%s" % (getattr(target, "__module__", None) or "?",
                               getattr(target, "__qualname__", None) or type_label(type(target)))
        else:
            label = "%s.run" % type_label(type(thread))
        return (code_qualname(f.f_code), f.f_code.co_filename, f.f_lineno, label)

    def started(self, key, thread):
        entry = self.sites.get(key)
        if entry is None:
            if len(self.sites) >= MAX_START_SITES:
                return
            entry = self.sites[key] = [0, []]
        entry[0] += 1
        if len(entry[1]) < MAX_IDENTS_PER_SITE and thread.ident is not None:
            entry[1].append(thread.ident)

    def report(self):
        return [{"function": k[0], "file": k[1], "line": k[2], "target": k[3], "count": v[0],
                 "threads": v[1]}
                for k, v in sorted(self.sites.items(), key=lambda kv: -kv[1][0])]


# -- versions --------------------------------------------------------------------------------

def _top_levels(dist):
    try:
        text = dist.read_text("top_level.txt")
    except Exception:
        text = None
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    tops = set()
    try:
        files = dist.files or ()
    except Exception:
        files = ()
    for path in files:
        parts = getattr(path, "parts", ())
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith((".dist-info", ".egg-info")):
            continue
        top = parts[0]
        if len(parts) == 1:
            if not top.endswith(".py"):
                if ".cpython-" in top or top.endswith(".so"):
                    top = top.split(".", 1)[0]
                else:
                    continue
            else:
                top = top[:-3]
        tops.add(top)
    return tops


def _versions(budget):
    import re
    try:
        from importlib import metadata
    except ImportError as exc:
        return [], "importlib.metadata is missing: %s" % exc
    deadline = _monotonic() + budget
    loaded = {}
    for name in list(sys.modules):
        if isinstance(name, str) and not name.startswith("pymri_agent"):
            loaded.setdefault(name.partition(".")[0], name)
    out = []
    by_name = {}
    error = None
    try:
        for dist in metadata.distributions():
            if _monotonic() > deadline or len(out) >= MAX_DISTRIBUTIONS:
                error = "cut: the distributions were not all read in time"
                break
            try:
                name = dist.metadata["Name"]
                version = dist.version
            except Exception:
                continue
            if not name:
                continue
            key = re.sub(r"[-_.]+", "-", name).lower()
            first = by_name.get(key)
            if first is not None:
                # The same distribution further down sys.path: import finds the first one.
                if first["version"] != version and len(first["shadowed"]) < 8:
                    first["shadowed"].append(version)
                continue
            mods = sorted(t for t in _top_levels(dist) if t in loaded)
            if not mods:
                continue
            module = sys.modules.get(mods[0])
            path = getattr(module, "__file__", None)
            by_name[key] = {"name": name, "version": version, "modules": mods,
                            "file": path if isinstance(path, str) else None, "shadowed": []}
            out.append(by_name[key])
    except Exception as exc:
        error = "reading the distributions failed: %s" % exc
    out.sort(key=lambda d: d["name"].lower())
    return out, error


def _stdlib_dirs():
    try:
        import sysconfig
        paths = sysconfig.get_paths()
    except Exception:
        return []
    out = []
    for key in ("stdlib", "platstdlib"):
        p = paths.get(key)
        if isinstance(p, str) and p and p.rstrip("/") + "/" not in out:
            out.append(p.rstrip("/") + "/")
    return out


# -- the window ------------------------------------------------------------------------------

class Doctor(object):
    def __init__(self, agent, args):
        self.agent = agent
        self.want = {k: bool(args.get(k, True))
                     for k in ("census", "containers", "exceptions", "thread_starts", "versions")}
        interval = args.get("interval", 1.0)
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0.05 <= interval <= 3600:
            raise RequestError("bad_request", "'interval' must be seconds from 0.05 to 3600")
        self.interval = float(interval)
        self.pause = min(MAX_PAUSE, max(MIN_PAUSE, self.interval * PAUSE_SHARE))
        self.started = _monotonic()
        self.census_start = None
        self.census_start_types = None
        self.walk = None
        self.readings = {}  # steps -> [[seconds, len], ...]
        self.tracer = None
        self.sites = None
        self.versions = None
        self.versions_error = None
        self.active = False
        self._wake = threading.Event()
        self._reader = None
        self.lock = threading.Lock()

    def start(self):
        if self.want["versions"]:
            # First: importing importlib.metadata makes objects the census should not count as growth.
            self.versions, self.versions_error = _versions(VERSIONS_BUDGET)
        if self.want["census"]:
            self.census_start, self.census_start_types = _census(self.pause)
        self.started = _monotonic()
        self.active = True
        if self.want["containers"]:
            self.walk = _Walk().run(self.pause)
            for steps, (_, n) in self.walk.found.items():
                self.readings[steps] = [[0.0, n]]
            self._reader = threading.Thread(target=self._read_main, name="pymri-doctor", daemon=True)
            self._reader.start()
            self.agent.agent_threads.add(self._reader.ident)
        try:
            if self.want["exceptions"]:
                self.tracer = Tracer(self.agent, exceptions=True, max_rate=0)
                self.tracer.start()
            if self.want["thread_starts"]:
                self.sites = _StartSites()
                self.sites.install()
        except Exception:
            self.stop()
            raise

    def info(self):
        return {"backend": self.tracer.info()["backend"] if self.tracer is not None else None,
                "tool_id": self.tracer.info()["tool_id"] if self.tracer is not None else None,
                "containers": len(self.readings)}

    def _read_main(self):
        self.agent.agent_threads.add(threading.get_ident())
        while self.active:
            self._wake.wait(self.interval)
            if not self.active:
                break
            try:
                self._read_sizes()
            except Exception:
                self.agent.internal_error()

    def _read_sizes(self):
        at = round(_monotonic() - self.started, 3)
        with self.lock:
            for steps, points in self.readings.items():
                value = _resolve(steps)
                if value is not None and id(value) == self.walk.found[steps][0] and len(points) < 10000:
                    points.append([at, len(value)])

    def stop(self):
        """Removes every hook (idempotent); the results when the window was running."""
        was = self.active
        self.active = False
        self._wake.set()
        summary = None
        if self.sites is not None:
            self.sites.uninstall()
        if self.tracer is not None:
            summary = self.tracer.stop()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(1.0)
        if not was:
            return None
        return self._results(summary)

    def _results(self, summary):
        body = {"duration": round(_monotonic() - self.started, 3)}
        if self.want["containers"] and self.walk is not None:
            self._read_sizes()
            body["containers"] = {"tracked": len(self.walk.found), "cut": self.walk.cut,
                                  "grown": self._grown()}
            self.readings.clear()
        if self.want["census"] and self.census_start is not None:
            end, end_types = _census(self.pause)
            body["census"] = {"start": self.census_start, "end": end,
                              "types": _census_diff(self.census_start_types, end_types)}
            self.census_start_types = None
        if summary is not None:
            body["exceptions"] = summary.get("exceptions", [])
            body["stdlib"] = _stdlib_dirs()
            body["exceptions_backend"] = self.tracer.info()["backend"]
        if self.sites is not None:
            body["thread_starts"] = self.sites.report()
        if self.want["versions"]:
            body["versions"] = self.versions or []
            body["versions_error"] = self.versions_error
        return body

    def _grown(self):
        grown = []
        for steps, points in self.readings.items():
            first, last = points[0][1], points[-1][1]
            if last - first < MIN_GROWTH:
                continue
            grown.append((last - first, steps, points))
        grown.sort(key=lambda g: -g[0])
        out = []
        for growth, steps, points in grown[:MAX_GROWN]:
            value = _resolve(steps)
            if value is None:
                continue
            out.append({"path": ".".join(steps), "type": type_label(type(value)),
                        "start": points[0][1], "end": points[-1][1], "points": points,
                        "newest": [[label, n] for label, n in _newest(value, min(growth, MAX_NEWEST))]})
        return out


def req_doctor_start(agent, args):
    if getattr(agent, "doctor", None) is not None:
        raise RequestError("bad_state", "a doctor window is already open")
    doctor = Doctor(agent, args)
    try:
        doctor.start()
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError("internal", "cannot start the doctor's window: %s" % exc)
    agent.doctor = doctor
    agent.detach_callbacks.append(doctor.stop)
    return doctor.info()


def req_doctor_stop(agent, args):
    doctor = getattr(agent, "doctor", None)
    if doctor is None:
        raise RequestError("bad_state", "no doctor window is open")
    agent.doctor = None
    return doctor.stop() or {}


REQUESTS = {
    "doctor_start": (READER, req_doctor_start),
    "doctor_stop": (READER, req_doctor_stop),
}
