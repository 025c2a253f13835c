"""Queues one pending call in a live CPython 3.9-3.13 with nothing but process_vm_writev while
its threads are stopped, the way pymri does, using one table of crates/pymri-layouts/src/inject.rs
(given as `key=value` lines on stdin, as check-inject.sh's dumper prints them). Then checks that
the target's main thread ran PyRun_SimpleString on the queued string.

    inject_live.py [--thread] -- COMMAND...   (COMMAND runs a Python, e.g. `chroot ROOT python3.9`)

The target is started with a small program that prints its pid, the address of `_PyRuntime` and
of `PyRun_SimpleString` (asked of its own ctypes, to keep symbol lookup out of this test), and
then spins in a Python loop until a global `done` is set. With --thread a second thread spins as
well, so the GIL changes hands and non-main threads trip the eval breaker too. Only the injected
string sets `done`, to the name of the thread that ran it: success is "MainThread".

The stop is a group stop (SIGSTOP), which like pymri's PTRACE_INTERRUPT leaves every thread at an
arbitrary instruction; the script refuses, as pymri must, when the queue's lock is held.
Prints one line; exits 0 on success, 1 on failure, 2 on a refusal that a retry could cure.
"""

import ctypes
import os
import signal
import struct
import subprocess
import sys
import time

TARGET = r"""
import ctypes, os, sys, threading, time
runtime = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
func = ctypes.cast(ctypes.pythonapi.PyRun_SimpleString, ctypes.c_void_p).value
done = None
stop = False
def spin():
    while not stop:
        pass
if sys.argv[1] == "thread":
    threading.Thread(target=spin, daemon=True).start()
print(os.getpid(), runtime, func, flush=True)
deadline = time.monotonic() + 10
while done is None and time.monotonic() < deadline:
    pass
stop = True
print("done=%s" % done, flush=True)
"""

SCRIPT = b"import threading\ndone = threading.current_thread().name\n"


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


libc = ctypes.CDLL(None, use_errno=True)
for name in ("process_vm_readv", "process_vm_writev"):
    fn = getattr(libc, name)
    fn.restype = ctypes.c_ssize_t
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(IoVec), ctypes.c_ulong,
                   ctypes.POINTER(IoVec), ctypes.c_ulong, ctypes.c_ulong]


class Target:
    def __init__(self, pid):
        self.pid = pid

    def read(self, addr, size):
        buf = ctypes.create_string_buffer(size)
        local, remote = IoVec(ctypes.addressof(buf), size), IoVec(addr, size)
        if libc.process_vm_readv(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != size:
            raise OSError(ctypes.get_errno(), "process_vm_readv at %#x" % addr)
        return buf.raw

    def write(self, addr, data):
        buf = ctypes.create_string_buffer(data, len(data))
        local, remote = IoVec(ctypes.addressof(buf), len(data)), IoVec(addr, len(data))
        if libc.process_vm_writev(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != len(data):
            raise OSError(ctypes.get_errno(), "process_vm_writev at %#x" % addr)

    def u8(self, a):
        return self.read(a, 1)[0]

    def i32(self, a):
        return struct.unpack("<i", self.read(a, 4))[0]

    def u64(self, a):
        return struct.unpack("<Q", self.read(a, 8))[0]

    def put_i32(self, a, v):
        self.write(a, struct.pack("<i", v))

    def put_u64(self, a, v):
        self.write(a, struct.pack("<Q", v))


def all_stopped(pid):
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
    return True


def string_slots(t, first, entry, capacity, size):
    """The first of a run of whole slots, contiguous in memory, for `size` bytes. Never a slot of
    a queued call (ours included) nor the slot the next push writes; preferably none that a push
    can reach before our call is taken off the queue, else as far behind `first` as possible:
    in ring order those are the last slots pushes reach."""
    n = t["queue.calls_len"]
    need = -(-size // t["queue.entry_size"])
    queued = (entry + 1 - first) % n  # entries from first up to and including ours
    taken = {(first + i) % n for i in range(queued)}
    reach = {(entry + 1 + i) % n for i in range(max(capacity - queued, 1))}
    for avoid in (taken | reach, taken | {(entry + 1) % n}):
        for end in [(first - 1 - i) % n for i in range(n)]:
            start = end - need + 1
            if start >= 0 and not set(range(start, end + 1)) & avoid:
                return start
    return None


def inject(t, target, runtime, func):
    interp = target.u64(runtime + t["runtime.interpreters_main"])
    base = (interp if t["queue.owner"] == "Interpreter" else runtime) + t["queue.offset"]
    if target.u64(runtime + t["runtime.finalizing"]):
        return 2, "refused: finalizing"
    if t["queue.lock_kind"] == "ThreadLock":
        lock = target.u64(base + t["queue.lock"])
        if lock == 0:
            return 2, "refused: pending calls not initialised"
        if target.read(lock, 4) != b"\x01\0\0\0":
            return 2, "refused: queue lock held (sem value %r)" % target.read(lock, 4)
    elif target.u8(base + t["queue.lock"]) & 1:
        return 2, "refused: queue mutex held"

    n = t["queue.calls_len"]
    first = target.i32(base + t["queue.first"])
    if t["queue.index"] == "FirstLast":
        entry = target.i32(base + t["queue.last"])
        capacity = n - 1
        if (entry + 1) % n == first:
            return 2, "refused: queue full"
    else:
        entry = target.i32(base + t["queue.next"])
        npending = target.i32(base + t["queue.npending"])
        capacity = target.i32(base + t["queue.max"])
        if npending >= capacity:
            return 2, "refused: queue full"
    text = SCRIPT + b"\0"
    slot = string_slots(t, first, entry, capacity, len(text))
    if slot is None:
        return 2, "refused: no room for the string"
    calls = base + t["queue.calls"]
    size = t["queue.entry_size"]
    arg = calls + slot * size
    target.write(arg, text)
    at = calls + entry * size
    target.put_u64(at + t["queue.entry_func"], func)
    target.put_u64(at + t["queue.entry_arg"], arg)
    if t["queue.index"] == "FirstLast":
        target.put_i32(base + t["queue.last"], (entry + 1) % n)
        target.put_i32(base + t["queue.calls_to_do"], 1)
    else:
        target.put_i32(at + t["queue.entry_flags"], t["queue.entry_flags_value"])
        target.put_i32(base + t["queue.npending"], npending + 1)
        target.put_i32(base + t["queue.next"], (entry + 1) % n)
    if t["breaker.kind"] == "Interpreter":
        target.put_i32(interp + t["breaker.offset"], t["breaker.value"])
    else:
        tstate = target.u64(runtime + t["runtime.main_tstate"])
        word = target.u64(tstate + t["breaker.offset"])
        target.put_u64(tstate + t["breaker.offset"], word | t["breaker.value"])
    return 0, "queued at slot %d, string at slot %d" % (entry, slot)


def main():
    args = sys.argv[1:]
    mode = "thread" if args[:1] == ["--thread"] else "single"
    command = args[args.index("--") + 1:]
    t = {}
    for line in sys.stdin:
        key, _, value = line.strip().partition("=")
        if key:
            t[key] = int(value) if value.lstrip("-").isdigit() else value
    proc = subprocess.Popen(command + ["-c", TARGET, mode], stdout=subprocess.PIPE, text=True)
    try:
        pid, runtime, func = map(int, proc.stdout.readline().split())
        time.sleep(0.3)  # let it reach its loop (and the second thread start)
        target = Target(pid)
        os.kill(pid, signal.SIGSTOP)
        while not all_stopped(pid):
            time.sleep(0.001)
        try:
            status, what = inject(t, target, runtime, func)
        finally:
            os.kill(pid, signal.SIGCONT)
        if status:
            print(what)
            return status
        result = proc.stdout.readline().strip()
        ok = result == "done=MainThread"
        print("%s: %s, target printed %s" % ("ok" if ok else "FAILED", what, result or "nothing"))
        return 0 if ok else 1
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
