//! `_Py_DebugOffsets`: the layout table CPython 3.13+ publishes at the start of `_PyRuntime`.
//!
//! CPython fills this struct at build time with `offsetof` and `sizeof` of everything a
//! debugger needs, so reading it at run time makes pymri immune to patch releases and to the
//! differences between release and debug builds. The struct itself grows between minor
//! versions; [`Spec`] says where each field sits in the struct of each minor version (read from
//! the DWARF of Debian's 3.13, 3.14 and 3.15 builds), and [`decode`] turns the values into a
//! [`Layout`].
//!
//! A few facts are not in the table: the dict-keys header, the inline-values header and
//! the managed-dict slot ([`pymri_layouts::structural`]), plus, before 3.15, the type
//! object's `tp_basicsize`/`tp_dictoffset` and the compact-unicode size. Each is documented
//! where it is used and checked against real interpreters by the test suite.

use crate::{Error, Result, Version};
use pymri_layouts::asyncio::{GenFrame, YieldFrom};
use pymri_layouts::{
    structural, BytesLayout, CodeLayout, DictLayout, FloatLayout, FrameLayout, FrameRef, GilAccess,
    GilLayout, InstructionRef, InterpreterLayout, Layout, LineTableFormat, LocalNames, LongFormat,
    LongLayout, ObjectLayout, RuntimeLayout, SequenceLayout, SetLayout, ThreadLayout, UnicodeLayout,
};

/// The eight bytes `_PyRuntime` starts with on 3.13+.
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// How many bytes to read to decode any known version's struct.
pub const MAX_SIZE: usize = 1024;

/// Offsets the PEP 768 remote-debugging protocol needs (3.14+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDebugOffsets {
    /// `PyInterpreterState.threads.main`: the main thread's state.
    pub threads_main: u64,
    /// `PyThreadState.eval_breaker`.
    pub eval_breaker: u64,
    /// `PyThreadState.remote_debugger_support`.
    pub remote_debugger_support: u64,
    /// `PyInterpreterState.config.remote_debug`: non-zero when remote debugging is allowed.
    pub remote_debugging_enabled: u64,
    /// Inside `_PyRemoteDebuggerSupport`: the pending flag and the script path buffer.
    pub debugger_pending_call: u64,
    pub debugger_script_path: u64,
    pub debugger_script_path_size: u64,
}

/// Per-thread GIL flags published by 3.15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadGilFlags {
    /// `PyThreadState.holds_gil`.
    pub holds_gil: Option<u64>,
    /// `PyThreadState.gil_requested`: set while the thread waits in `take_gil`.
    pub gil_requested: Option<u64>,
}

/// Everything decoded from one `_Py_DebugOffsets`.
#[derive(Debug, Clone)]
pub struct DebugOffsets {
    pub version: Version,
    pub free_threaded: bool,
    pub layout: Layout,
    pub gil_flags: ThreadGilFlags,
    pub remote: Option<RemoteDebugOffsets>,
    /// `sizeof(_PyRuntimeState)`, which differs between release and debug builds.
    pub runtime_size: u64,
}

/// Where each needed field sits inside one minor version's `_Py_DebugOffsets`.
struct Spec {
    total: usize,
    runtime_size: usize,
    interpreters_head: usize,
    interp_size: usize,
    interp_next: usize,
    interp_threads_head: usize,
    interp_modules: usize,
    gil_state: usize,
    gil_locked: usize,
    gil_holder: usize,
    thread_size: usize,
    thread_next: usize,
    thread_interp: usize,
    thread_current_frame: usize,
    thread_id: usize,
    thread_native_id: usize,
    thread_holds_gil: Option<usize>,
    thread_gil_requested: Option<usize>,
    /// `offsetof(PyThreadState, exc_info)`, which the table does not publish: read from each
    /// version's headers and checked against running interpreters (the `states` tests).
    thread_exc_info: u64,
    frame_size: usize,
    frame_previous: usize,
    frame_executable: usize,
    frame_instr_ptr: usize,
    frame_localsplus: usize,
    frame_owner: usize,
    code_size: usize,
    code_filename: usize,
    code_name: usize,
    code_qualname: usize,
    code_linetable: usize,
    code_firstlineno: usize,
    code_argcount: usize,
    code_localsplusnames: usize,
    code_localspluskinds: usize,
    code_adaptive: usize,
    ob_type: usize,
    type_size: usize,
    tp_name: usize,
    tp_flags: usize,
    tp_basicsize: Option<usize>,
    tp_dictoffset: Option<usize>,
    ht_cached_keys: Option<usize>,
    tuple_items: usize,
    tuple_size: usize,
    list_items: usize,
    list_size: usize,
    /// `(used, table, mask)`.
    set: Option<(usize, usize, usize)>,
    dict_keys: usize,
    dict_values: usize,
    float_value: usize,
    long_tag: usize,
    long_digits: usize,
    bytes_size: usize,
    bytes_data: usize,
    unicode_state: usize,
    unicode_length: usize,
    unicode_ascii_size: usize,
    unicode_compact_size: Option<usize>,
    /// The six `debugger_support` fields, in declaration order.
    debugger_support: Option<usize>,
}

const V3_13: Spec = Spec {
    total: 584,
    runtime_size: 24,
    interpreters_head: 40,
    interp_size: 48,
    interp_next: 64,
    interp_threads_head: 72,
    interp_modules: 88,
    gil_state: 120,
    gil_locked: 136,
    gil_holder: 144,
    thread_size: 152,
    thread_next: 168,
    thread_interp: 176,
    thread_current_frame: 184,
    thread_id: 192,
    thread_native_id: 200,
    thread_holds_gil: None,
    thread_gil_requested: None,
    thread_exc_info: 120,
    frame_size: 224,
    frame_previous: 232,
    frame_executable: 240,
    frame_instr_ptr: 248,
    frame_localsplus: 256,
    frame_owner: 264,
    code_size: 272,
    code_filename: 280,
    code_name: 288,
    code_qualname: 296,
    code_linetable: 304,
    code_firstlineno: 312,
    code_argcount: 320,
    code_localsplusnames: 328,
    code_localspluskinds: 336,
    code_adaptive: 344,
    ob_type: 360,
    type_size: 368,
    tp_name: 376,
    tp_flags: 392,
    tp_basicsize: None,
    tp_dictoffset: None,
    ht_cached_keys: None,
    tuple_items: 408,
    tuple_size: 416,
    list_items: 432,
    list_size: 440,
    set: None,
    dict_keys: 456,
    dict_values: 464,
    float_value: 480,
    long_tag: 496,
    long_digits: 504,
    bytes_size: 520,
    bytes_data: 528,
    unicode_state: 544,
    unicode_length: 552,
    unicode_ascii_size: 560,
    unicode_compact_size: None,
    debugger_support: None,
};

const V3_14: Spec = Spec {
    total: 760,
    runtime_size: 24,
    interpreters_head: 40,
    interp_size: 48,
    interp_next: 64,
    interp_threads_head: 72,
    interp_modules: 96,
    gil_state: 128,
    gil_locked: 144,
    gil_holder: 152,
    thread_size: 176,
    thread_next: 192,
    thread_interp: 200,
    thread_current_frame: 208,
    thread_id: 216,
    thread_native_id: 224,
    thread_holds_gil: None,
    thread_gil_requested: None,
    thread_exc_info: 120,
    frame_size: 248,
    frame_previous: 256,
    frame_executable: 264,
    frame_instr_ptr: 272,
    frame_localsplus: 280,
    frame_owner: 288,
    code_size: 312,
    code_filename: 320,
    code_name: 328,
    code_qualname: 336,
    code_linetable: 344,
    code_firstlineno: 352,
    code_argcount: 360,
    code_localsplusnames: 368,
    code_localspluskinds: 376,
    code_adaptive: 384,
    ob_type: 408,
    type_size: 416,
    tp_name: 424,
    tp_flags: 440,
    tp_basicsize: None,
    tp_dictoffset: None,
    ht_cached_keys: None,
    tuple_items: 456,
    tuple_size: 464,
    list_items: 480,
    list_size: 488,
    set: Some((504, 512, 520)),
    dict_keys: 536,
    dict_values: 544,
    float_value: 560,
    long_tag: 576,
    long_digits: 584,
    bytes_size: 600,
    bytes_data: 608,
    unicode_state: 624,
    unicode_length: 632,
    unicode_ascii_size: 640,
    unicode_compact_size: None,
    debugger_support: Some(712),
};

const V3_15: Spec = Spec {
    total: 888,
    runtime_size: 24,
    interpreters_head: 40,
    interp_size: 48,
    interp_next: 64,
    interp_threads_head: 72,
    interp_modules: 96,
    gil_state: 128,
    gil_locked: 144,
    gil_holder: 152,
    thread_size: 176,
    thread_next: 192,
    thread_interp: 200,
    thread_current_frame: 208,
    thread_id: 240,
    thread_native_id: 248,
    thread_holds_gil: Some(272),
    thread_gil_requested: Some(280),
    thread_exc_info: 144,
    frame_size: 312,
    frame_previous: 320,
    frame_executable: 328,
    frame_instr_ptr: 336,
    frame_localsplus: 344,
    frame_owner: 352,
    code_size: 376,
    code_filename: 384,
    code_name: 392,
    code_qualname: 400,
    code_linetable: 408,
    code_firstlineno: 416,
    code_argcount: 424,
    code_localsplusnames: 432,
    code_localspluskinds: 440,
    code_adaptive: 448,
    ob_type: 472,
    type_size: 480,
    tp_name: 488,
    tp_flags: 504,
    tp_basicsize: Some(512),
    tp_dictoffset: Some(520),
    ht_cached_keys: Some(536),
    tuple_items: 552,
    tuple_size: 560,
    list_items: 576,
    list_size: 584,
    set: Some((600, 608, 616)),
    dict_keys: 632,
    dict_values: 640,
    float_value: 656,
    long_tag: 672,
    long_digits: 680,
    bytes_size: 696,
    bytes_data: 704,
    unicode_state: 720,
    unicode_length: 728,
    unicode_ascii_size: 736,
    unicode_compact_size: Some(744),
    debugger_support: Some(840),
};

/// `_PyInterpreterFrame.owner` values from 3 on mark frames that belong to the C stack or to
/// the interpreter itself (entry trampolines), never to Python code, in 3.11 through 3.15.
const FIRST_SHIM_OWNER: u8 = 3;

/// Upper bound for any structure size published in the table; larger means the bytes are not
/// a table pymri understands.
const MAX_STRUCT_SIZE: u64 = 1 << 20;

/// Decodes `bytes`, the start of `_PyRuntime`. Fails unless the cookie is present and every
/// offset lies inside the structure it belongs to.
pub fn decode(bytes: &[u8]) -> Result<DebugOffsets> {
    if bytes.get(..8) != Some(COOKIE.as_slice()) {
        return Err(Error::Inconsistent("_PyRuntime does not start with the debug-offsets cookie".into()));
    }
    let at = |off: usize| -> Result<u64> {
        bytes
            .get(off..off + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| Error::Inconsistent(format!("debug offsets truncated at {off}")))
    };
    let version = Version::from_hex(at(8)?);
    let spec = match (version.major, version.minor) {
        (3, 13) => &V3_13,
        (3, 14) => &V3_14,
        (3, 15) => &V3_15,
        _ => return Err(Error::UnsupportedVersion { version }),
    };
    if bytes.len() < spec.total {
        return Err(Error::Inconsistent("debug offsets truncated".into()));
    }
    let free_threaded = at(16)? != 0;

    // Each offset must fall inside its structure's published size.
    let within = |size_at: usize, fields: &[usize]| -> Result<u64> {
        let size = at(size_at)?;
        if size == 0 || size > MAX_STRUCT_SIZE {
            return Err(Error::Inconsistent(format!("implausible structure size {size} in debug offsets")));
        }
        for &f in fields {
            if at(f)? >= size {
                return Err(Error::Inconsistent(format!("debug offset at {f} lies outside its structure")));
            }
        }
        Ok(size)
    };
    let runtime_size = within(spec.runtime_size, &[spec.interpreters_head])?;
    within(
        spec.interp_size,
        &[spec.interp_next, spec.interp_threads_head, spec.interp_modules, spec.gil_locked, spec.gil_holder],
    )?;
    within(
        spec.thread_size,
        &[
            spec.thread_next,
            spec.thread_interp,
            spec.thread_current_frame,
            spec.thread_id,
            spec.thread_native_id,
        ],
    )?;
    within(
        spec.frame_size,
        &[spec.frame_previous, spec.frame_executable, spec.frame_instr_ptr, spec.frame_owner],
    )?;
    within(
        spec.code_size,
        &[
            spec.code_filename,
            spec.code_name,
            spec.code_qualname,
            spec.code_linetable,
            spec.code_firstlineno,
            spec.code_argcount,
            spec.code_localsplusnames,
            spec.code_localspluskinds,
        ],
    )?;
    let type_size = within(spec.type_size, &[spec.tp_name, spec.tp_flags])?;

    let opt = |o: Option<usize>| o.map(at).transpose();
    let ascii_size = at(spec.unicode_ascii_size)?;
    let (set_used, set_table, set_mask) = match spec.set {
        Some((u, t, m)) => (at(u)?, at(t)?, at(m)?),
        None => (structural::SET_USED, structural::SET_TABLE, structural::SET_MASK),
    };
    let argcount = at(spec.code_argcount)?;
    let gil_state = at(spec.gil_state)?;
    // The target wrote these offsets: derived ones are checked like the ones read.
    let near = |offset: u64, by: i64| -> Result<u64> {
        offset
            .checked_add_signed(by)
            .ok_or_else(|| Error::Inconsistent(format!("debug offset {offset} {by:+} is out of range")))
    };
    let inside_gil = |offset: u64| -> Result<u64> {
        offset.checked_sub(gil_state).ok_or_else(|| {
            Error::Inconsistent(format!("GIL field at {offset} lies before the GIL state at {gil_state}"))
        })
    };
    let layout = Layout {
        version: (version.major, version.minor),
        runtime: RuntimeLayout { interpreters_head: at(spec.interpreters_head)?, gil: None },
        interpreter: InterpreterLayout {
            next: at(spec.interp_next)?,
            threads_head: at(spec.interp_threads_head)?,
            modules: at(spec.interp_modules)?,
            gil: Some(GilLayout {
                // The main interpreter's own `_gil`; its fields are published as offsets from
                // the interpreter state, turned here into offsets inside the GIL state.
                access: GilAccess::Embedded(gil_state),
                locked: inside_gil(at(spec.gil_locked)?)?,
                last_holder: inside_gil(at(spec.gil_holder)?)?,
            }),
        },
        thread: ThreadLayout {
            next: at(spec.thread_next)?,
            interp: at(spec.thread_interp)?,
            current_frame: FrameRef::Direct(at(spec.thread_current_frame)?),
            thread_id: at(spec.thread_id)?,
            native_thread_id: Some(at(spec.thread_native_id)?),
            exc_info: Some(spec.thread_exc_info),
        },
        frame: FrameLayout {
            previous: at(spec.frame_previous)?,
            code: at(spec.frame_executable)?,
            // 3.14 turned `f_executable` and the local slots into tagged `_PyStackRef`s.
            code_is_tagged: version.minor >= 14,
            instruction: InstructionRef::Pointer(at(spec.frame_instr_ptr)?),
            localsplus: at(spec.frame_localsplus)?,
            owner: Some((at(spec.frame_owner)?, FIRST_SHIM_OWNER)),
        },
        code: CodeLayout {
            filename: at(spec.code_filename)?,
            name: at(spec.code_name)?,
            qualname: Some(at(spec.code_qualname)?),
            firstlineno: at(spec.code_firstlineno)?,
            linetable: at(spec.code_linetable)?,
            linetable_format: LineTableFormat::Locations,
            argcount,
            // `co_flags`, `co_argcount`, `co_posonlyargcount`, `co_kwonlyargcount` are four
            // adjacent ints in every version since 3.11; only `co_argcount` is published.
            kwonlyargcount: Some(near(argcount, 8)?),
            flags: Some(near(argcount, -4)?),
            names: LocalNames::Combined {
                names: at(spec.code_localsplusnames)?,
                kinds: at(spec.code_localspluskinds)?,
            },
            code_adaptive: Some(at(spec.code_adaptive)?),
        },
        object: ObjectLayout {
            ob_type: at(spec.ob_type)?,
            tp_name: at(spec.tp_name)?,
            tp_basicsize: opt(spec.tp_basicsize)?.unwrap_or(structural::TP_BASICSIZE),
            tp_flags: at(spec.tp_flags)?,
            tp_dictoffset: opt(spec.tp_dictoffset)?.unwrap_or(structural::TP_DICTOFFSET),
            ht_cached_keys: opt(spec.ht_cached_keys)?
                .unwrap_or(near(type_size, structural::HT_CACHED_KEYS_AFTER_TYPE as i64)?),
        },
        unicode: UnicodeLayout {
            length: at(spec.unicode_length)?,
            state: at(spec.unicode_state)?,
            ascii_data: ascii_size,
            // `PyCompactUnicodeObject` adds `utf8_length` and `utf8` to the ASCII header.
            compact_data: match opt(spec.unicode_compact_size)? {
                Some(size) => size,
                None => near(ascii_size, 16)?,
            },
        },
        long: LongLayout {
            format: LongFormat::Tagged,
            size: at(spec.long_tag)?,
            digits: at(spec.long_digits)?,
        },
        bytes: BytesLayout { size: at(spec.bytes_size)?, data: at(spec.bytes_data)? },
        float: FloatLayout { value: at(spec.float_value)? },
        tuple: SequenceLayout { size: at(spec.tuple_size)?, items: at(spec.tuple_items)? },
        list: SequenceLayout { size: at(spec.list_size)?, items: at(spec.list_items)? },
        set: SetLayout { used: set_used, mask: set_mask, table: set_table },
        dict: DictLayout {
            used: structural::DICT_USED,
            keys: at(spec.dict_keys)?,
            values: at(spec.dict_values)?,
            keys_format: structural::DICT_KEYS,
            values_array: structural::DICT_VALUES_ARRAY,
        },
        managed_dict: structural::MANAGED_DICT,
    };
    let remote = match spec.debugger_support {
        Some(base) => Some(RemoteDebugOffsets {
            // `threads_main` follows `threads_head` in the 3.14+ table.
            threads_main: at(spec.interp_threads_head + 8)?,
            eval_breaker: at(base)?,
            remote_debugger_support: at(base + 8)?,
            remote_debugging_enabled: at(base + 16)?,
            debugger_pending_call: at(base + 24)?,
            debugger_script_path: at(base + 32)?,
            debugger_script_path_size: at(base + 40)?,
        }),
        None => None,
    };
    Ok(DebugOffsets {
        version,
        free_threaded,
        layout,
        gil_flags: ThreadGilFlags {
            holds_gil: opt(spec.thread_holds_gil)?,
            gil_requested: opt(spec.thread_gil_requested)?,
        },
        remote,
        runtime_size,
    })
}

/// Where 3.14+ publish the generator fields and the frame's stack pointer inside
/// `_Py_DebugOffsets`: `(gen_object.size, gi_iframe, gi_frame_state, interpreter_frame.size,
/// interpreter_frame.stackpointer)`, read from the DWARF of Debian's 3.14 and 3.15 builds.
fn generator_fields(version: (u8, u8)) -> Option<(usize, usize, usize, usize, usize)> {
    match version {
        (3, 14) => Some((664, 680, 688, 248, 296)),
        (3, 15) => Some((792, 808, 816, 312, 360)),
        _ => None,
    }
}

/// How generators reach their frame and what they wait on, from a 3.14+ `_Py_DebugOffsets`
/// (`bytes`, as [`decode`] takes them); `None` for versions that do not publish it.
pub fn generators(bytes: &[u8]) -> Result<Option<(GenFrame, YieldFrom)>> {
    let decoded = decode(bytes)?;
    let version = decoded.layout.version;
    let Some((gen_size, iframe, state, frame_size, stackpointer)) = generator_fields(version) else {
        return Ok(None);
    };
    let at = |off: usize| -> Result<u64> {
        bytes
            .get(off..off + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| Error::Inconsistent(format!("debug offsets truncated at {off}")))
    };
    let (gen_size, frame_size) = (at(gen_size)?, at(frame_size)?);
    let (iframe, state, stackpointer) = (at(iframe)?, at(state)?, at(stackpointer)?);
    if gen_size > MAX_STRUCT_SIZE || iframe >= gen_size || state >= gen_size || stackpointer >= frame_size {
        return Err(Error::Inconsistent("generator debug offsets lie outside their structures".into()));
    }
    let (yield_from, finished, depth) = pymri_layouts::asyncio::frame_states(version);
    Ok(Some((
        GenFrame::Embedded { iframe, state, finished },
        YieldFrom::StateStackPointer { yield_from, stackpointer, depth },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bytes_without_the_cookie() {
        assert!(decode(&[0u8; MAX_SIZE]).is_err());
    }

    #[test]
    fn rejects_offsets_outside_their_structure() {
        let mut bytes = vec![0u8; MAX_SIZE];
        bytes[..8].copy_from_slice(COOKIE);
        bytes[8..16].copy_from_slice(&0x030e0af0u64.to_le_bytes());
        // runtime_state.size = 16, interpreters_head = 40: outside.
        bytes[24..32].copy_from_slice(&16u64.to_le_bytes());
        bytes[40..48].copy_from_slice(&40u64.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(Error::Inconsistent(_))));
    }

    #[test]
    fn refuses_versions_it_has_no_table_for() {
        let mut bytes = vec![0u8; MAX_SIZE];
        bytes[..8].copy_from_slice(COOKIE);
        bytes[8..16].copy_from_slice(&0x031000f0u64.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(Error::UnsupportedVersion { .. })));
    }
}
