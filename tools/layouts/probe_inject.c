/*
 * Pending-call injection probe for CPython 3.9 to 3.13.
 *
 * Compiled by generate_inject.sh against one CPython version's own headers (public and
 * internal) and run on the build machine; prints one `name=value` line for every fact that a
 * `pymri_layouts::inject::PendingCallsLayout` needs: where the queue of calls that only the main
 * thread runs lives, the offsets of its fields, how its indices advance, which word wakes the
 * eval loop and what to store there, and the sizes that tell one build from another.
 *
 * Offsets and sizes come from offsetof/sizeof on the real structures; the facts that are
 * algorithms rather than offsets (how the ring index advances, which bit or value to store) are
 * chosen by PY_VERSION_HEX below with the reason, and tied to the headers by _Static_assert
 * wherever a type or a macro can prove them. docs/injection-facts.md has the evidence from
 * Python/ceval.c and Python/ceval_gil.c of each version.
 *
 * Build flags set by generate_inject.sh:
 *   -I<dir>        a directory holding the version's Include/ tree and a pyconfig.h
 *   -DPy_DEBUG=1   (optional) the layout of a --with-pydebug build, such as Debian's python3.Nd:
 *                  their pyconfig.h differs from the release one only in Py_DEBUG (and in
 *                  WITH_VALGRIND and ALT_SOABI, which change no structure).
 */
#define Py_BUILD_CORE 1
#define NDEBUG 1

#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if PY_VERSION_HEX < 0x03090000 || PY_VERSION_HEX >= 0x030E0000
#  error "probe_inject.c covers CPython 3.9 to 3.13; 3.14+ use PEP 768 (see docs)"
#endif
#if SIZEOF_VOID_P != 8
#  error "pymri supports 64-bit targets only"
#endif
#ifdef Py_GIL_DISABLED
#  error "free-threaded builds are not supported"
#endif
#ifdef Py_TRACE_REFS
#  error "Py_TRACE_REFS builds are not supported"
#endif

#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#if PY_VERSION_HEX >= 0x030D0000
#  include "internal/pycore_ceval.h"
#endif

#define SAME_TYPE(expr, type) __builtin_types_compatible_p(__typeof__(expr), type)
#define FIELD(type, member) (((type *)0)->member)

#define OFF(name, type, member) \
    printf("%s=%zu\n", name, (size_t)offsetof(type, member))
#define SIZE(name, type) printf("%s=%zu\n", name, (size_t)sizeof(type))
#define WORD(name, value) printf("%s=%s\n", name, value)
#define NUM(name, value) printf("%s=%llu\n", name, (unsigned long long)(value))

/* The queue whose calls only the main thread of the main interpreter runs. */
#if PY_VERSION_HEX < 0x030C0000
/* 3.9 to 3.11: one queue per interpreter (interp->ceval.pending), and make_pending_calls()
 * returns at once unless _Py_ThreadCanHandlePendingCalls(), i.e. unless the calling thread is
 * _PyRuntime.main_thread. Py_AddPendingCall() queues to the current (or main) interpreter. */
#  define QUEUE_OWNER "Interpreter"
#  define QUEUE_TYPE PyInterpreterState
#  define QUEUE_MEMBER ceval.pending
#else
/* 3.12 and 3.13: interp->ceval.pending is now run by any thread of its interpreter; the calls
 * that must run on the main thread (Py_AddPendingCall(), signal fallbacks) go to
 * _PyRuntime.ceval.pending_mainthread, which make_pending_calls() drains only when
 * _Py_IsMainThread() && _Py_IsMainInterpreter(interp). */
#  define QUEUE_OWNER "Runtime"
#  define QUEUE_TYPE _PyRuntimeState
#  define QUEUE_MEMBER ceval.pending_mainthread
#endif

typedef struct _pending_calls pymri_queue;
#define QFIELD(member) FIELD(pymri_queue, member)

int main(void)
{
    printf("version.major=%d\n", PY_MAJOR_VERSION);
    printf("version.minor=%d\n", PY_MINOR_VERSION);
    printf("version.string=%s\n", PY_VERSION);
#ifdef Py_DEBUG
    WORD("build.debug", "1");
#else
    WORD("build.debug", "0");
#endif

    /* Sizes that tell builds apart: sizeof(_PyRuntimeState) is both the st_size of the
     * `_PyRuntime` symbol and, from 3.13 on, _Py_DebugOffsets.runtime_state.size. */
    SIZE("runtime.size", _PyRuntimeState);
    SIZE("interpreter.size", PyInterpreterState);
    SIZE("thread.size", PyThreadState);

    /* _PyRuntimeState: who is the main thread, which is the main interpreter, finalizing. */
    _Static_assert(SAME_TYPE(FIELD(_PyRuntimeState, main_thread), unsigned long),
                   "main_thread is the pthread_t (PyThread_get_thread_ident) of the main thread");
    OFF("runtime.main_thread", _PyRuntimeState, main_thread);
    OFF("runtime.interpreters_main", _PyRuntimeState, interpreters.main);
    _Static_assert(sizeof(FIELD(_PyRuntimeState, _finalizing)) == 8,
                   "_finalizing is a pointer-sized PyThreadState * (NULL unless finalizing)");
    OFF("runtime.finalizing", _PyRuntimeState, _finalizing);
#if PY_VERSION_HEX >= 0x030D0000
    _Static_assert(SAME_TYPE(FIELD(_PyRuntimeState, main_tstate), PyThreadState *),
                   "main_tstate: the thread state _PyEval_AddPendingCall signals");
    OFF("runtime.main_tstate", _PyRuntimeState, main_tstate);
#endif

    /* Where the queue is. */
    WORD("queue.owner", QUEUE_OWNER);
    _Static_assert(SAME_TYPE(FIELD(QUEUE_TYPE, QUEUE_MEMBER), struct _pending_calls),
                   "the queue is embedded, not pointed to");
    OFF("queue.offset", QUEUE_TYPE, QUEUE_MEMBER);
    SIZE("queue.size", pymri_queue);

    /* Its lock. */
#if PY_VERSION_HEX < 0x030D0000
    /* PyThread_type_lock: a pointer to a heap lock; on Linux with glibc a sem_t whose first
     * 32-bit word is the semaphore value, 1 when free and 0 while held. */
    _Static_assert(SAME_TYPE(QFIELD(lock), PyThread_type_lock), "PyThread_type_lock lock");
    WORD("queue.lock_kind", "ThreadLock");
    OFF("queue.lock", pymri_queue, lock);
#else
    /* PyMutex: one byte, bit 0 (_Py_LOCKED) set while held, bit 1 (_Py_HAS_PARKED) while some
     * thread waits for it. */
    _Static_assert(SAME_TYPE(QFIELD(mutex), PyMutex) && sizeof(PyMutex) == 1,
                   "one-byte PyMutex mutex");
    _Static_assert(_Py_LOCKED == 1 && _Py_HAS_PARKED == 2, "PyMutex bits");
    WORD("queue.lock_kind", "PyMutex");
    OFF("queue.lock", pymri_queue, mutex);
#endif

    /* The entries. */
    _Static_assert(SAME_TYPE(QFIELD(calls[0].func), int (*)(void *)),
                   "an entry's func is int (*)(void *)");
    _Static_assert(SAME_TYPE(QFIELD(calls[0].arg), void *), "an entry's arg is void *");
    _Static_assert(SAME_TYPE(&PyRun_SimpleString, int (*)(const char *)),
                   "PyRun_SimpleString(const char *) -> int, the function we queue");
    OFF("queue.calls", pymri_queue, calls);
    NUM("queue.calls_len", sizeof(QFIELD(calls)) / sizeof(QFIELD(calls[0])));
    SIZE("queue.entry_size", QFIELD(calls[0]));
    NUM("queue.entry_func", offsetof(pymri_queue, calls[0].func) - offsetof(pymri_queue, calls));
    NUM("queue.entry_arg", offsetof(pymri_queue, calls[0].arg) - offsetof(pymri_queue, calls));
    _Static_assert(SAME_TYPE(QFIELD(first), int), "int first");
    OFF("queue.first", pymri_queue, first);

#if PY_VERSION_HEX < 0x030D0000
    /* A ring of NPENDINGCALLS with one slot kept empty: _push_pending_call writes at `last`,
     * fails when (last + 1) % NPENDINGCALLS == first, then sets last = (last + 1) %
     * NPENDINGCALLS. The request flag is calls_to_do, set to 1 by SIGNAL_PENDING_CALLS. */
    _Static_assert(NPENDINGCALLS == sizeof(QFIELD(calls)) / sizeof(QFIELD(calls[0])),
                   "calls[NPENDINGCALLS]");
    _Static_assert(SAME_TYPE(QFIELD(last), int), "int last");
    _Static_assert(sizeof(QFIELD(calls_to_do)) == 4, "_Py_atomic_int calls_to_do");
    WORD("queue.index", "FirstLast");
    OFF("queue.last", pymri_queue, last);
    OFF("queue.calls_to_do", pymri_queue, calls_to_do);
    NUM("queue.capacity", NPENDINGCALLS - 1);
#else
    /* A ring of PENDINGCALLSARRAYSIZE bounded by `max`: _push_pending_call fails when npending
     * == max, writes {func, arg, flags} at `next`, adds 1 to npending, then sets next = (next
     * + 1) % PENDINGCALLSARRAYSIZE. _PyRuntimeState_INIT sets pending_mainthread.max to
     * MAXPENDINGCALLS_MAIN and maxloop to MAXPENDINGCALLSLOOP_MAIN. */
    _Static_assert(PENDINGCALLSARRAYSIZE == sizeof(QFIELD(calls)) / sizeof(QFIELD(calls[0])),
                   "calls[PENDINGCALLSARRAYSIZE]");
    _Static_assert(SAME_TYPE(QFIELD(next), int), "int next");
    _Static_assert(SAME_TYPE(QFIELD(npending), int32_t), "int32_t npending");
    _Static_assert(SAME_TYPE(QFIELD(max), int32_t), "int32_t max");
    _Static_assert(SAME_TYPE(QFIELD(calls[0].flags), int), "int flags");
    WORD("queue.index", "FirstNextCount");
    OFF("queue.next", pymri_queue, next);
    OFF("queue.npending", pymri_queue, npending);
    OFF("queue.max", pymri_queue, max);
    OFF("queue.maxloop", pymri_queue, maxloop);
    OFF("queue.handling_thread", pymri_queue, handling_thread);
    NUM("queue.capacity", MAXPENDINGCALLS_MAIN);
    NUM("queue.entry_flags",
        offsetof(pymri_queue, calls[0].flags) - offsetof(pymri_queue, calls));
    /* Py_AddPendingCall queues with _Py_PENDING_MAINTHREADONLY; _Py_PENDING_RAWFREE would make
     * _make_pending_calls PyMem_RawFree the argument, which must never happen to ours. */
    NUM("queue.entry_flags_value", _Py_PENDING_MAINTHREADONLY);
    _Static_assert((_Py_PENDING_MAINTHREADONLY & _Py_PENDING_RAWFREE) == 0, "distinct flags");
#endif

    /* What wakes the eval loop. */
#if PY_VERSION_HEX < 0x030D0000
    /* One word per interpreter, interp->ceval.eval_breaker: the loop tests it for non-zero and
     * then calls eval_frame_handle_pending (3.9-3.11) or _Py_HandlePending (3.12), which runs
     * the calls when the queue's calls_to_do is set. COMPUTE_EVAL_BREAKER stores the OR of
     * several 0/1 flags, so 1 is the value it would store. */
    _Static_assert(sizeof(FIELD(PyInterpreterState, ceval.eval_breaker)) == 4,
                   "_Py_atomic_int eval_breaker");
    WORD("breaker.kind", "Interpreter");
    OFF("breaker.offset", PyInterpreterState, ceval.eval_breaker);
    NUM("breaker.width", 4);
    NUM("breaker.value", 1);
#else
    /* One word per thread, tstate->eval_breaker: low 8 bits are event bits (the loop calls
     * _Py_HandlePending when any is set), the rest the instrumentation version. Pending calls
     * are _PY_CALLS_TO_DO_BIT, OR-ed into _PyRuntime.main_tstate's word. */
    _Static_assert(SAME_TYPE(FIELD(PyThreadState, eval_breaker), uintptr_t),
                   "uintptr_t eval_breaker");
    _Static_assert(_PY_CALLS_TO_DO_BIT == (1U << 2), "calls-to-do is bit 2");
    _Static_assert(_PY_CALLS_TO_DO_BIT & _PY_EVAL_EVENTS_MASK, "an event bit");
    WORD("breaker.kind", "Thread");
    OFF("breaker.offset", PyThreadState, eval_breaker);
    NUM("breaker.width", 8);
    NUM("breaker.value", _PY_CALLS_TO_DO_BIT);
#endif
    return 0;
}
