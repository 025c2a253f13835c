"""Install a `sys.settrace` tracer in threads other than the calling one (CPython 3.9-3.11).

`sys.settrace` only affects the calling thread and `threading.settrace` only future threads. For
threads that already run, we call CPython's exported `_PyEval_SetTrace(tstate, func, obj)` on
their thread states, where `func` is the C trampoline that `sys.settrace` itself installs (read
from the calling thread's state). The byte offsets of `c_tracefunc`, `c_traceobj` and
`thread_id` inside PyThreadState come from the controller (it knows the running layout); they
are validated against the calling thread before any other thread state is touched, and
everything is done while holding the GIL (ctypes.pythonapi calls never release it).
"""

import ctypes
import sys
import threading

_api = ctypes.pythonapi


def _setup():
    _api.PyThreadState_Get.restype = ctypes.c_void_p
    _api.PyThreadState_Get.argtypes = []
    _api.PyInterpreterState_Get.restype = ctypes.c_void_p
    _api.PyInterpreterState_Get.argtypes = []
    _api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
    _api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
    _api.PyThreadState_Next.restype = ctypes.c_void_p
    _api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
    fn = _api._PyEval_SetTrace
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return fn


def _read_ptr(addr):
    return ctypes.c_void_p.from_address(addr).value


def _read_ulong(addr):
    return ctypes.c_ulong.from_address(addr).value


class AllThreadsTracer(object):
    """Sets/restores a tracer in every thread state of the interpreter."""

    def __init__(self, offsets):
        self.ok = False
        self.error = None
        self._saved = {}  # thread id -> (func pointer, traceobj or None)
        try:
            self.off_func = int(offsets["c_tracefunc"])
            self.off_obj = int(offsets["c_traceobj"])
            self.off_tid = int(offsets["thread_id"])
            self._set_trace = _setup()
            self._validate()
            self.ok = True
        except Exception as exc:  # no usable layout: only current and new threads get traced
            self.error = "%s: %s" % (type(exc).__name__, exc)

    def _validate(self):
        if sys.version_info >= (3, 12):
            raise RuntimeError("only for CPython < 3.12")

        def probe(frame, event, arg):
            return None

        old = sys.gettrace()
        sys.settrace(probe)
        try:
            ts = _api.PyThreadState_Get()
            if _read_ptr(ts + self.off_obj) != id(probe):
                raise RuntimeError("c_traceobj offset does not match this interpreter")
            if _read_ulong(ts + self.off_tid) != threading.get_ident():
                raise RuntimeError("thread_id offset does not match this interpreter")
            self.trampoline = _read_ptr(ts + self.off_func)
            if not self.trampoline:
                raise RuntimeError("c_tracefunc offset does not match this interpreter")
        finally:
            sys.settrace(old)

    def _states(self):
        interp = _api.PyInterpreterState_Get()
        ts = _api.PyInterpreterState_ThreadHead(interp)
        while ts:
            yield ts
            ts = _api.PyThreadState_Next(ts)

    def install(self, tracer, exclude=()):
        """Set `tracer` in every thread whose ident is not in `exclude`; remember old tracers."""
        if not self.ok:
            return []
        done = []
        for ts in list(self._states()):
            tid = _read_ulong(ts + self.off_tid)
            if tid in exclude:
                continue
            func = _read_ptr(ts + self.off_func)
            objp = _read_ptr(ts + self.off_obj)
            if objp == id(tracer):
                continue
            if tid not in self._saved:
                old = ctypes.cast(objp, ctypes.py_object).value if objp else None
                self._saved[tid] = (func, old)
            self._set_trace(ts, self.trampoline, id(tracer))
            done.append(tid)
        return done

    def install_one(self, tid, tracer):
        if not self.ok:
            return False
        for ts in list(self._states()):
            if _read_ulong(ts + self.off_tid) == tid:
                objp = _read_ptr(ts + self.off_obj)
                if objp != id(tracer):
                    if tid not in self._saved:
                        func = _read_ptr(ts + self.off_func)
                        old = ctypes.cast(objp, ctypes.py_object).value if objp else None
                        self._saved[tid] = (func, old)
                    self._set_trace(ts, self.trampoline, id(tracer))
                return True
        return False

    def restore(self, tracer, exclude=(), also=()):
        """Undo `install`: threads still running `tracer` (or one of `also`) get their previous
        tracer (or none)."""
        if not self.ok:
            return
        ours = {id(tracer)} | {id(t) for t in also}
        for ts in list(self._states()):
            tid = _read_ulong(ts + self.off_tid)
            if tid in exclude:
                continue
            objp = _read_ptr(ts + self.off_obj)
            if objp not in ours:
                continue
            func, old = self._saved.get(tid, (None, None))
            if func and old is not None:
                self._set_trace(ts, func, id(old))
            else:
                self._set_trace(ts, None, None)
        self._saved.clear()

    def remove_one(self, tid, tracer):
        """Clear the tracer of thread `tid` if it is still `tracer`."""
        if not self.ok:
            return
        for ts in list(self._states()):
            if _read_ulong(ts + self.off_tid) == tid:
                if _read_ptr(ts + self.off_obj) == id(tracer):
                    self._set_trace(ts, None, None)
                    self._saved.pop(tid, None)
                return

    def gettrace_of(self, tid):
        """The Python-level tracer object of thread `tid` (or None)."""
        if not self.ok:
            return None
        for ts in list(self._states()):
            if _read_ulong(ts + self.off_tid) == tid:
                objp = _read_ptr(ts + self.off_obj)
                return ctypes.cast(objp, ctypes.py_object).value if objp else None
        return None
