/*
 * Layout probe for CPython 3.9 to 3.12.
 *
 * Compiled by generate.sh against one CPython version's own headers (public and internal) and
 * run on the build machine; prints one `name=value` line for every fact that a
 * `pymri_layouts::Layout` needs. Offsets come from offsetof/sizeof on the real structures,
 * the managed-dict offsets from calling the header's own inline helpers on a dummy object, and
 * a few per-version facts that no offset can express (units of f_lasti, format of the line
 * table) are chosen by PY_VERSION_HEX below, each with the reason.
 *
 * Build flags set by generate.sh:
 *   -I<dir>                   a directory holding the version's Include/ tree and a pyconfig.h
 *   -DPYMRI_DICT_COMMON=1     (3.9/3.10 only) Objects/dict-common.h is on the include path;
 *                             without it a declaration of `struct _dictkeysobject` in this
 *                             file is used instead, which check-dwarf.sh verifies.
 */
#define Py_BUILD_CORE 1
#define NDEBUG 1

#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if PY_VERSION_HEX < 0x03090000 || PY_VERSION_HEX >= 0x030D0000
#  error "probe.c covers CPython 3.9 to 3.12; 3.13+ publishes _Py_DebugOffsets instead"
#endif
#if SIZEOF_VOID_P != 8
#  error "pymri supports 64-bit targets only"
#endif
#ifdef Py_TRACE_REFS
#  error "Py_TRACE_REFS builds have a larger object header and are not supported"
#endif

#if PY_VERSION_HEX < 0x030B0000
#  include "longintrepr.h"
#  include "frameobject.h"
#endif

#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_gil.h"

#if PY_VERSION_HEX >= 0x030B0000
#  include "internal/pycore_frame.h"
#  include "internal/pycore_dict.h"
#  include "internal/pycore_object.h"
#elif defined(PYMRI_DICT_COMMON)
#  include "dict-common.h"
#else
/* Objects/dict-common.h of 3.9 and 3.10 is not installed with the headers. Same members, same
 * types, same order as there; check-dwarf.sh compares the result with the interpreter's own
 * debug information. */
typedef Py_ssize_t (*pymri_dict_lookup_func)(PyDictObject *, PyObject *, Py_hash_t,
                                             PyObject **);
struct _dictkeysobject {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    pymri_dict_lookup_func dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
};
#endif

#define SAME_TYPE(expr, type) __builtin_types_compatible_p(__typeof__(expr), type)

#define OFF(name, type, member) \
    printf("%s=%zu\n", name, (size_t)offsetof(type, member))
#define SIZE(name, type) printf("%s=%zu\n", name, (size_t)sizeof(type))
#define WORD(name, value) printf("%s=%s\n", name, value)
#define SIGNED(name, value) printf("%s=%td\n", name, (ptrdiff_t)(value))

int main(void)
{
    printf("version.major=%d\n", PY_MAJOR_VERSION);
    printf("version.minor=%d\n", PY_MINOR_VERSION);
    printf("version.string=%s\n", PY_VERSION);

    /* _PyRuntimeState and the GIL. */
    OFF("runtime.interpreters_head", _PyRuntimeState, interpreters.head);
#if PY_VERSION_HEX < 0x030C0000
    _Static_assert(SAME_TYPE(((_PyRuntimeState *)0)->ceval.gil, struct _gil_runtime_state),
                   "the GIL is embedded in _PyRuntime.ceval before 3.12");
    OFF("runtime.gil_embedded", _PyRuntimeState, ceval.gil);
#else
    _Static_assert(SAME_TYPE(((PyInterpreterState *)0)->ceval.gil,
                             struct _gil_runtime_state *),
                   "each interpreter points at its GIL from 3.12 on");
    OFF("interpreter.gil_pointer", PyInterpreterState, ceval.gil);
#endif
    OFF("gil.locked", struct _gil_runtime_state, locked);
    OFF("gil.last_holder", struct _gil_runtime_state, last_holder);

    /* PyInterpreterState. */
    OFF("interpreter.next", PyInterpreterState, next);
#if PY_VERSION_HEX < 0x030B0000
    OFF("interpreter.threads_head", PyInterpreterState, tstate_head);
#else
    OFF("interpreter.threads_head", PyInterpreterState, threads.head);
#endif
#if PY_VERSION_HEX < 0x030C0000
    OFF("interpreter.modules", PyInterpreterState, modules);
#else
    OFF("interpreter.modules", PyInterpreterState, imports.modules);
#endif

    /* PyThreadState. */
    OFF("thread.next", PyThreadState, next);
    OFF("thread.interp", PyThreadState, interp);
#if PY_VERSION_HEX < 0x030B0000
    OFF("thread.frame", PyThreadState, frame);
#else
    OFF("thread.cframe", PyThreadState, cframe);
    OFF("cframe.current_frame", _PyCFrame, current_frame);
#endif
    OFF("thread.thread_id", PyThreadState, thread_id);
    OFF("thread.exc_info", PyThreadState, exc_info);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("thread.native_thread_id", PyThreadState, native_thread_id);
#endif

    /* Frames. */
#if PY_VERSION_HEX < 0x030B0000
    OFF("frame.previous", PyFrameObject, f_back);
    OFF("frame.code", PyFrameObject, f_code);
    _Static_assert(SAME_TYPE(((PyFrameObject *)0)->f_lasti, int), "int f_lasti");
#  if PY_VERSION_HEX < 0x030A0000
    /* 3.9 ceval stores INSTR_OFFSET() = sizeof(_Py_CODEUNIT) * units: a byte offset. */
    OFF("frame.lasti_bytes", PyFrameObject, f_lasti);
#  else
    /* 3.10 ceval stores INSTR_OFFSET() = next_instr - first_instr: a code-unit index. */
    OFF("frame.lasti_units", PyFrameObject, f_lasti);
#  endif
    OFF("frame.localsplus", PyFrameObject, f_localsplus);
#else
    OFF("frame.previous", _PyInterpreterFrame, previous);
    OFF("frame.code", _PyInterpreterFrame, f_code);
    _Static_assert(SAME_TYPE(((_PyInterpreterFrame *)0)->prev_instr, _Py_CODEUNIT *),
                   "_Py_CODEUNIT *prev_instr");
    OFF("frame.prev_instr", _PyInterpreterFrame, prev_instr);
    OFF("frame.localsplus", _PyInterpreterFrame, localsplus);
    _Static_assert(sizeof(((_PyInterpreterFrame *)0)->owner) == 1, "one-byte owner");
    OFF("frame.owner", _PyInterpreterFrame, owner);
#  if PY_VERSION_HEX >= 0x030C0000
    printf("frame.owned_by_cstack=%d\n", (int)FRAME_OWNED_BY_CSTACK);
#  else
    /* 3.11 has no C-stack shim frames (its entry frames are real frames flagged by
     * is_entry), so the enum stops at FRAME_OWNED_BY_FRAME_OBJECT: the next value never
     * occurs in an owner byte. */
    printf("frame.owned_by_cstack=%d\n", (int)FRAME_OWNED_BY_FRAME_OBJECT + 1);
#  endif
#endif

    /* PyCodeObject. */
    OFF("code.filename", PyCodeObject, co_filename);
    OFF("code.name", PyCodeObject, co_name);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("code.qualname", PyCodeObject, co_qualname);
#endif
    OFF("code.firstlineno", PyCodeObject, co_firstlineno);
#if PY_VERSION_HEX < 0x030A0000
    OFF("code.linetable", PyCodeObject, co_lnotab);
    WORD("code.linetable_format", "Lnotab");
#elif PY_VERSION_HEX < 0x030B0000
    OFF("code.linetable", PyCodeObject, co_linetable);
    WORD("code.linetable_format", "Linetable310");
#else
    OFF("code.linetable", PyCodeObject, co_linetable);
    WORD("code.linetable_format", "Locations");
#endif
    OFF("code.argcount", PyCodeObject, co_argcount);
    OFF("code.kwonlyargcount", PyCodeObject, co_kwonlyargcount);
    OFF("code.flags", PyCodeObject, co_flags);
#if PY_VERSION_HEX < 0x030B0000
    OFF("code.varnames", PyCodeObject, co_varnames);
    OFF("code.cellvars", PyCodeObject, co_cellvars);
    OFF("code.freevars", PyCodeObject, co_freevars);
#else
    OFF("code.localsplusnames", PyCodeObject, co_localsplusnames);
    OFF("code.localspluskinds", PyCodeObject, co_localspluskinds);
    OFF("code.code_adaptive", PyCodeObject, co_code_adaptive);
#endif

    /* PyObject and PyTypeObject. */
    OFF("object.ob_type", PyObject, ob_type);
    OFF("object.tp_name", PyTypeObject, tp_name);
    OFF("object.tp_basicsize", PyTypeObject, tp_basicsize);
    OFF("object.tp_flags", PyTypeObject, tp_flags);
    OFF("object.tp_dictoffset", PyTypeObject, tp_dictoffset);
    OFF("object.ht_cached_keys", PyHeapTypeObject, ht_cached_keys);

    /* str. */
    OFF("unicode.length", PyASCIIObject, length);
    OFF("unicode.state", PyASCIIObject, state);
    SIZE("unicode.ascii_data", PyASCIIObject);
    SIZE("unicode.compact_data", PyCompactUnicodeObject);

    /* int. */
#if PY_VERSION_HEX < 0x030C0000
    WORD("long.format", "SignedSize");
    OFF("long.size", PyLongObject, ob_base.ob_size);
    OFF("long.digits", PyLongObject, ob_digit);
#else
    WORD("long.format", "Tagged");
    OFF("long.size", PyLongObject, long_value.lv_tag);
    OFF("long.digits", PyLongObject, long_value.ob_digit);
#endif

    /* bytes, float, tuple, list, set. */
    OFF("bytes.size", PyBytesObject, ob_base.ob_size);
    OFF("bytes.data", PyBytesObject, ob_sval);
    OFF("float.value", PyFloatObject, ob_fval);
    OFF("tuple.size", PyTupleObject, ob_base.ob_size);
    OFF("tuple.items", PyTupleObject, ob_item);
    OFF("list.size", PyListObject, ob_base.ob_size);
    OFF("list.items", PyListObject, ob_item);
    OFF("set.used", PySetObject, used);
    OFF("set.mask", PySetObject, mask);
    OFF("set.table", PySetObject, table);

    /* dict. */
    OFF("dict.used", PyDictObject, ma_used);
    OFF("dict.keys", PyDictObject, ma_keys);
    OFF("dict.values", PyDictObject, ma_values);
#if PY_VERSION_HEX < 0x030B0000
    _Static_assert(SAME_TYPE(((PyDictObject *)0)->ma_values, PyObject **),
                   "ma_values points straight at the value array");
    printf("dict.values_array=0\n");
    WORD("dictkeys.format", "Sized");
    OFF("dictkeys.size", struct _dictkeysobject, dk_size);
    OFF("dictkeys.nentries", struct _dictkeysobject, dk_nentries);
    OFF("dictkeys.indices", struct _dictkeysobject, dk_indices);
#else
    _Static_assert(SAME_TYPE(((PyDictObject *)0)->ma_values, PyDictValues *),
                   "ma_values points at a PyDictValues");
    OFF("dict.values_array", PyDictValues, values);
    WORD("dictkeys.format", "Log2");
    OFF("dictkeys.log2_size", PyDictKeysObject, dk_log2_size);
    OFF("dictkeys.log2_index_bytes", PyDictKeysObject, dk_log2_index_bytes);
    OFF("dictkeys.kind", PyDictKeysObject, dk_kind);
    OFF("dictkeys.nentries", PyDictKeysObject, dk_nentries);
    OFF("dictkeys.indices", PyDictKeysObject, dk_indices);
#endif

    /* Managed dicts: ask the header's own helpers where they look, relative to a dummy object
     * placed in the middle of a buffer (NDEBUG keeps their asserts from reading its type). */
#if PY_VERSION_HEX < 0x030B0000
    WORD("managed_dict", "None");
#else
    {
        static PyObject buffer[8];
        PyObject *obj = &buffer[4];
        char *base = (char *)obj;
#  if PY_VERSION_HEX < 0x030C0000
        WORD("managed_dict", "PreHeader");
        SIGNED("managed_dict.dict", (char *)_PyObject_ManagedDictPointer(obj) - base);
        SIGNED("managed_dict.values", (char *)_PyObject_ValuesPointer(obj) - base);
#  else
        PyDictOrValues tagged;
        WORD("managed_dict", "Tagged");
        SIGNED("managed_dict.dict_or_values", (char *)_PyObject_DictOrValuesPointer(obj) - base);
        /* The tag: a values pointer has its low bit set. */
        tagged.values = (char *)0x1001;
        if (!_PyDictOrValues_IsValues(tagged)) {
            fprintf(stderr, "probe: low-bit tag of PyDictOrValues changed\n");
            return 1;
        }
        tagged.values = (char *)0x1000;
        if (_PyDictOrValues_IsValues(tagged)) {
            fprintf(stderr, "probe: low-bit tag of PyDictOrValues changed\n");
            return 1;
        }
#  endif
    }
#endif
    return 0;
}
