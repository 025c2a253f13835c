//! Python objects read from target memory: strings, numbers, containers, attributes, and
//! bounded reprs of them.

use crate::{Error, Result};
use pymri_layouts::{flags, structural, DictKeysFormat, Layout, LongFormat, ManagedDict};
use pymri_memory::{field, field_signed, Memory, MemoryExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::rc::Rc;

/// Bounds on one repr, so that a huge or cyclic object can never blow up the output or
/// pymri's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReprLimits {
    /// Characters of a string (or digits of an int) shown before eliding the middle.
    pub max_string: usize,
    /// Items of a container shown before `...`.
    pub max_items: usize,
    /// Nesting of containers shown before `[...]`.
    pub max_depth: usize,
    /// Characters of the whole repr.
    pub max_len: usize,
    /// Bytes of a numpy array's data read to give its minimum, maximum, mean and NaN/Inf
    /// counts; 0: none (an array larger than this gets none either).
    pub array_values: u64,
}

impl Default for ReprLimits {
    fn default() -> Self {
        ReprLimits { max_string: 100, max_items: 10, max_depth: 3, max_len: 400, array_values: 0 }
    }
}

/// The largest container or string pymri will walk or copy from a target, whatever its header
/// claims.
const MAX_ENTRIES: u64 = 1 << 16;
const MAX_TYPE_NAME: usize = 256;
/// An int of more 30-bit digits than this is shown by size only: decimal conversion is
/// quadratic and Python itself refuses to print ints above 4300 digits.
const MAX_INT_DIGITS: u64 = 1500;
/// `PyCellObject.ob_ref`, unchanged since cells exist.
const CELL_REF: u64 = 16;

/// `PyTypeObject.tp_dict`: in the type object's prefix, unmoved since 3.0.
const TP_DICT: u64 = 264;
/// `PyHeapTypeObject.ht_qualname` is the field just before `ht_cached_keys`.
const HT_QUALNAME_BEFORE_CACHED_KEYS: u64 = 8;

/// The builtin types pymri shows by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
    Cell,
    Code,
    Function,
    Coroutine,
    Other,
}

/// The symbols of the static type objects behind each [`Kind`]. CPython exports every one of
/// them (`PyAPI_DATA`), from `libpython` or from a statically linked executable alike.
const TYPE_SYMBOLS: [(&str, Kind); 15] = [
    ("_PyNone_Type", Kind::None),
    ("PyBool_Type", Kind::Bool),
    ("PyLong_Type", Kind::Int),
    ("PyFloat_Type", Kind::Float),
    ("PyUnicode_Type", Kind::Str),
    ("PyBytes_Type", Kind::Bytes),
    ("PyList_Type", Kind::List),
    ("PyTuple_Type", Kind::Tuple),
    ("PyDict_Type", Kind::Dict),
    ("PySet_Type", Kind::Set),
    ("PyFrozenSet_Type", Kind::FrozenSet),
    ("PyCell_Type", Kind::Cell),
    ("PyCode_Type", Kind::Code),
    ("PyFunction_Type", Kind::Function),
    ("PyCoro_Type", Kind::Coroutine),
];

/// Where the builtin types pymri decodes live in the target.
///
/// An object is decoded as a `str`, a `dict` or a cell only if its type *is* that static type
/// object, never because its type is called so: any class can be named `int` and lay out
/// its instances as it likes. A type whose address is unknown is shown as
/// `<name object at 0x...>`, like every other object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuiltinTypes {
    by_address: Vec<(u64, Kind)>,
}

impl BuiltinTypes {
    /// Asks `address` for each type object's symbol (`PyLong_Type`, `PyCell_Type`, ...), as
    /// the dynamic linker resolved it in the target. Missing symbols leave their type unknown.
    pub fn from_symbols(mut address: impl FnMut(&str) -> Option<u64>) -> BuiltinTypes {
        let by_address = TYPE_SYMBOLS
            .iter()
            .filter_map(|&(name, kind)| address(name).filter(|&a| a != 0).map(|a| (a, kind)))
            .collect();
        BuiltinTypes { by_address }
    }

    /// The symbol names [`from_symbols`](Self::from_symbols) asks about.
    pub fn symbol_names() -> impl Iterator<Item = &'static str> {
        TYPE_SYMBOLS.iter().map(|(name, _)| *name)
    }

    fn kind_of(&self, tp: u64) -> Kind {
        self.by_address.iter().find(|(a, _)| *a == tp).map_or(Kind::Other, |(_, k)| *k)
    }
}

/// Reads objects of one interpreter, caching type names for the duration of a snapshot.
pub(crate) struct Objects<'a, M> {
    pub mem: &'a M,
    pub layout: &'a Layout,
    types: &'a BuiltinTypes,
    type_names: RefCell<HashMap<u64, Rc<str>>>,
}

impl<'a, M: Memory> Objects<'a, M> {
    pub fn new(mem: &'a M, layout: &'a Layout, types: &'a BuiltinTypes) -> Self {
        Objects { mem, layout, types, type_names: RefCell::new(HashMap::new()) }
    }

    pub fn ptr(&self, addr: u64) -> Result<u64> {
        Ok(self.mem.read_u64(addr)?)
    }

    pub fn ob_type(&self, obj: u64) -> Result<u64> {
        let tp = self.ptr(field(obj, self.layout.object.ob_type)?)?;
        if tp == 0 || tp % 8 != 0 {
            return Err(Error::Inconsistent(format!("object at {obj:#x} has no valid type")));
        }
        Ok(tp)
    }

    pub fn type_name(&self, tp: u64) -> Result<Rc<str>> {
        if let Some(name) = self.type_names.borrow().get(&tp) {
            return Ok(name.clone());
        }
        let name_ptr = self.ptr(field(tp, self.layout.object.tp_name)?)?;
        let bytes = self.mem.read_c_string(name_ptr, MAX_TYPE_NAME)?;
        let name: Rc<str> = String::from_utf8_lossy(&bytes).into();
        self.type_names.borrow_mut().insert(tp, name.clone());
        Ok(name)
    }

    pub fn kind(&self, obj: u64) -> Result<(Kind, u64)> {
        let tp = self.ob_type(obj)?;
        Ok((self.types.kind_of(tp), tp))
    }

    /// The object a cell holds (0 when empty).
    pub fn cell_contents(&self, cell: u64) -> Result<u64> {
        self.ptr(field(cell, CELL_REF)?)
    }

    /// Reads a `str`, keeping at most `max_chars` characters; returns whether it was cut.
    pub fn read_str(&self, obj: u64, max_chars: usize) -> Result<(String, bool)> {
        let u = &self.layout.unicode;
        let len = self.mem.read_i64(field(obj, u.length)?)?;
        let state = self.mem.read_u32(field(obj, u.state)?)?;
        if !(0..=(isize::MAX as i64)).contains(&len) {
            return Err(Error::Inconsistent(format!("str at {obj:#x} has length {len}")));
        }
        // state: interned:2, kind:3, compact:1, ascii:1 (same bits in 3.9 to 3.15).
        let kind = (state >> 2) & 7;
        let compact = state & (1 << 5) != 0;
        let ascii = state & (1 << 6) != 0;
        let data = match (compact, ascii) {
            (true, true) => field(obj, u.ascii_data)?,
            (true, false) => field(obj, u.compact_data)?,
            // A legacy, non-compact string keeps its characters behind `data.any`, the first
            // field after the compact header.
            (false, _) => self.ptr(field(obj, u.compact_data)?)?,
        };
        let width = match kind {
            1 => 1,
            2 => 2,
            4 => 4,
            _ => return Err(Error::Inconsistent(format!("str at {obj:#x} has kind {kind}"))),
        };
        let take = (len as usize).min(max_chars);
        let raw = self.mem.read_vec(data, take * width, (max_chars + 1) * 4)?;
        let text: String = match width {
            1 => raw.iter().map(|&b| char::from(b)).collect(),
            2 => raw
                .chunks_exact(2)
                .map(|c| char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]]))).unwrap_or('\u{fffd}'))
                .collect(),
            _ => raw
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}'))
                .collect(),
        };
        Ok((text, take < len as usize))
    }

    /// A `str` read whole, up to a generous bound; for names and file paths.
    pub fn string(&self, obj: u64) -> Result<String> {
        Ok(self.read_str(obj, 4096)?.0)
    }

    pub fn read_bytes(&self, obj: u64, max: usize) -> Result<(Vec<u8>, usize)> {
        let len = self.mem.read_i64(field(obj, self.layout.bytes.size)?)?;
        if !(0..=(isize::MAX as i64)).contains(&len) {
            return Err(Error::Inconsistent(format!("bytes at {obj:#x} has length {len}")));
        }
        let len = len as usize;
        let data = self.mem.read_vec(field(obj, self.layout.bytes.data)?, len.min(max), max)?;
        Ok((data, len))
    }

    /// An int's decimal digits with its sign.
    pub fn read_int(&self, obj: u64) -> Result<String> {
        let l = &self.layout.long;
        let word = self.mem.read_i64(field(obj, l.size)?)?;
        let (negative, ndigits) = match l.format {
            LongFormat::SignedSize => (word < 0, word.unsigned_abs()),
            LongFormat::Tagged => ((word & 3) == 2, (word as u64) >> 3),
        };
        if ndigits == 0 {
            return Ok("0".into());
        }
        if ndigits > MAX_INT_DIGITS {
            return Ok(match ndigits.checked_mul(30) {
                Some(bits) => format!("<int of about {bits} bits>"),
                None => format!("<int of {ndigits} digits>"),
            });
        }
        let raw =
            self.mem.read_vec(field(obj, l.digits)?, ndigits as usize * 4, MAX_INT_DIGITS as usize * 4)?;
        let digits: Vec<u32> =
            raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut text = digits_to_decimal(&digits);
        if negative {
            text.insert(0, '-');
        }
        Ok(text)
    }

    /// `True`/`False` from a bool, which is an int holding 0 or 1.
    pub fn read_bool(&self, obj: u64) -> Result<bool> {
        Ok(self.read_int(obj)? != "0")
    }

    pub fn read_float(&self, obj: u64) -> Result<f64> {
        Ok(f64::from_bits(self.mem.read_u64(field(obj, self.layout.float.value)?)?))
    }

    /// Length and the first `max` item pointers of a list or tuple.
    pub fn sequence(&self, obj: u64, kind: Kind, max: usize) -> Result<(usize, Vec<u64>)> {
        let (layout, inline) = match kind {
            Kind::Tuple => (&self.layout.tuple, true),
            _ => (&self.layout.list, false),
        };
        let len = self.mem.read_i64(field(obj, layout.size)?)?;
        if !(0..=(isize::MAX as i64)).contains(&len) {
            return Err(Error::Inconsistent(format!("sequence at {obj:#x} has length {len}")));
        }
        let take = (len as usize).min(max);
        let items = if inline { field(obj, layout.items)? } else { self.ptr(field(obj, layout.items)?)? };
        let raw = self.mem.read_vec(items, take * 8, max * 8)?;
        Ok((
            len as usize,
            raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect(),
        ))
    }

    /// Length and the first `max` `(key, value)` pairs of a dict, in insertion order.
    pub fn dict_items(&self, dict: u64, max: usize) -> Result<(usize, Vec<(u64, u64)>)> {
        let d = &self.layout.dict;
        let used = self.mem.read_i64(field(dict, d.used)?)?.max(0) as usize;
        let keys = self.ptr(field(dict, d.keys)?)?;
        let values = self.ptr(field(dict, d.values)?)?;
        let values = (values != 0).then(|| field(values, d.values_array)).transpose()?;
        let mut out = Vec::new();
        self.walk_keys(keys, values, |k, v| {
            out.push((k, v));
            out.len() < max
        })?;
        Ok((used, out))
    }

    /// Walks the live entries of a keys object, with values from `values` (a split table's
    /// array) when given, until `visit` returns false.
    fn walk_keys(
        &self,
        keys: u64,
        values: Option<u64>,
        mut visit: impl FnMut(u64, u64) -> bool,
    ) -> Result<()> {
        let (entries, nentries, entry_size, key_at) = match self.layout.dict.keys_format {
            DictKeysFormat::Sized { size, nentries, indices } => {
                let dk_size = self.mem.read_i64(field(keys, size)?)?;
                if dk_size <= 0 || dk_size as u64 > 1 << 32 || (dk_size & (dk_size - 1)) != 0 {
                    return Err(Error::Inconsistent(format!("dict keys at {keys:#x} have size {dk_size}")));
                }
                let index_bytes = match dk_size {
                    s if s <= 0xff => 1,
                    s if s <= 0xffff => 2,
                    s if s <= 0xffff_ffff => 4,
                    _ => 8,
                };
                let n = self.mem.read_i64(field(keys, nentries)?)?;
                (field(field(keys, indices)?, dk_size as u64 * index_bytes)?, n, 24u64, 8u64)
            }
            DictKeysFormat::Log2 { log2_index_bytes, kind, nentries, indices, .. } => {
                let log2_index_bytes = self.mem.read_u8(field(keys, log2_index_bytes)?)?;
                if log2_index_bytes > 40 {
                    return Err(Error::Inconsistent(format!("dict keys at {keys:#x} are corrupt")));
                }
                // Kind 0 is a general table of `{hash, key, value}`; unicode and split tables
                // drop the hash.
                let general = self.mem.read_u8(field(keys, kind)?)? == 0;
                let n = self.mem.read_i64(field(keys, nentries)?)?;
                let (size, key_at) = if general { (24, 8) } else { (16, 0) };
                (field(field(keys, indices)?, 1u64 << log2_index_bytes)?, n, size, key_at)
            }
        };
        if nentries < 0 {
            return Err(Error::Inconsistent(format!("dict keys at {keys:#x} have {nentries} entries")));
        }
        let nentries = (nentries as u64).min(MAX_ENTRIES);
        const CHUNK: u64 = 256;
        let mut i = 0;
        while i < nentries {
            let n = CHUNK.min(nentries - i);
            let raw = self.mem.read_vec(
                field(entries, i * entry_size)?,
                (n * entry_size) as usize,
                (CHUNK * 24) as usize,
            )?;
            let vals = match values {
                Some(v) => {
                    Some(self.mem.read_vec(field(v, i * 8)?, (n * 8) as usize, (CHUNK * 8) as usize)?)
                }
                None => None,
            };
            for j in 0..n {
                let e = (j * entry_size) as usize;
                let word = |at: u64| {
                    u64::from_le_bytes(raw[e + at as usize..e + at as usize + 8].try_into().expect("8"))
                };
                let key = word(key_at);
                let value = match &vals {
                    Some(v) => {
                        u64::from_le_bytes(v[(j * 8) as usize..(j * 8 + 8) as usize].try_into().expect("8"))
                    }
                    None => word(key_at + 8),
                };
                if key != 0 && value != 0 && !visit(key, value) {
                    return Ok(());
                }
            }
            i += n;
        }
        Ok(())
    }

    /// Looks up a string key in a dict.
    pub fn dict_get(&self, dict: u64, name: &str) -> Result<Option<u64>> {
        let d = &self.layout.dict;
        let keys = self.ptr(field(dict, d.keys)?)?;
        let values = self.ptr(field(dict, d.values)?)?;
        let values = (values != 0).then(|| field(values, d.values_array)).transpose()?;
        self.keys_get(keys, values, name)
    }

    fn keys_get(&self, keys: u64, values: Option<u64>, name: &str) -> Result<Option<u64>> {
        let mut found = None;
        self.walk_keys(keys, values, |k, v| {
            if self.key_is(k, name) {
                found = Some(v);
                return false;
            }
            true
        })?;
        Ok(found)
    }

    fn key_is(&self, key: u64, name: &str) -> bool {
        let Ok(len) = field(key, self.layout.unicode.length).and_then(|at| self.mem.read_i64(at)) else {
            return false;
        };
        if len as usize != name.chars().count() {
            return false;
        }
        matches!(self.read_str(key, name.len() + 1), Ok((s, false)) if s == name)
    }

    /// `module.qualname` of a class (`obj` of type `tp`), as `repr` names it: `None` when `obj`
    /// is not a class. A class made in Python keeps its qualified name in `ht_qualname` and its
    /// module in its dict's `__module__`; a class written in C has both in `tp_name` already.
    pub fn class_name(&self, obj: u64, tp: u64) -> Option<String> {
        let o = &self.layout.object;
        let metaclass_flags = self.mem.read_u64(field(tp, o.tp_flags).ok()?).ok()?;
        if metaclass_flags & flags::TYPE_SUBCLASS == 0 {
            return None;
        }
        let class_flags = self.mem.read_u64(field(obj, o.tp_flags).ok()?).ok()?;
        if class_flags & flags::HEAPTYPE == 0 {
            return Some(self.type_name(obj).ok()?.to_string());
        }
        let qualname_at = o.ht_cached_keys.checked_sub(HT_QUALNAME_BEFORE_CACHED_KEYS)?;
        let qualname = self.string(self.ptr(field(obj, qualname_at).ok()?).ok()?).ok()?;
        let module = self
            .ptr(field(obj, TP_DICT).ok()?)
            .ok()
            .filter(|&dict| dict != 0)
            .and_then(|dict| self.dict_get(dict, "__module__").ok().flatten())
            .and_then(|module| self.string(module).ok());
        Some(match module {
            Some(module) if module != "builtins" => format!("{module}.{qualname}"),
            _ => qualname,
        })
    }

    /// The instance attribute `name` of `obj`, wherever its class keeps attributes.
    pub fn attribute(&self, obj: u64, name: &str) -> Result<Option<u64>> {
        let o = &self.layout.object;
        let tp = self.ob_type(obj)?;
        let tp_flags = self.mem.read_u64(field(tp, o.tp_flags)?)?;
        let cached_keys = || self.ptr(field(tp, o.ht_cached_keys)?);
        let at = |off: i64| field_signed(obj, off);
        match self.layout.managed_dict {
            ManagedDict::PreHeader { dict, values } if tp_flags & flags::MANAGED_DICT != 0 => {
                let d = self.ptr(at(dict)?)?;
                if d != 0 {
                    return self.dict_get(d, name);
                }
                let v = self.ptr(at(values)?)?;
                if v == 0 {
                    return Ok(None);
                }
                self.keys_get(cached_keys()?, Some(field(v, self.layout.dict.values_array)?), name)
            }
            ManagedDict::Tagged { dict_or_values } if tp_flags & flags::MANAGED_DICT != 0 => {
                let w = self.ptr(at(dict_or_values)?)?;
                match w {
                    0 => Ok(None),
                    // CPython stores the values pointer minus one, which makes it odd.
                    w if w & 1 == 1 => {
                        let values = field(field(w, 1)?, self.layout.dict.values_array)?;
                        self.keys_get(cached_keys()?, Some(values), name)
                    }
                    d => self.dict_get(d, name),
                }
            }
            ManagedDict::Inline { dict, valid }
                if tp_flags & (flags::INLINE_VALUES | flags::MANAGED_DICT) != 0 =>
            {
                if tp_flags & flags::INLINE_VALUES != 0 {
                    let basicsize = self.mem.read_u64(field(tp, o.tp_basicsize)?)?;
                    let values = field(obj, basicsize)?;
                    if self.mem.read_u8(field(values, valid)?)? != 0 {
                        return self.keys_get(
                            cached_keys()?,
                            Some(field(values, self.layout.dict.values_array)?),
                            name,
                        );
                    }
                }
                match self.ptr(at(dict)?)? {
                    0 => Ok(None),
                    d => self.dict_get(d, name),
                }
            }
            _ => {
                let offset = self.mem.read_i64(field(tp, o.tp_dictoffset)?)?;
                if offset <= 0 {
                    return Ok(None);
                }
                match self.ptr(field(obj, offset as u64)?)? {
                    0 => Ok(None),
                    d => self.dict_get(d, name),
                }
            }
        }
    }

    /// Live keys of a set or frozenset, the first `max` of them, and the length.
    pub fn set_items(&self, obj: u64, max: usize) -> Result<(usize, Vec<u64>)> {
        let s = &self.layout.set;
        let used = self.mem.read_i64(field(obj, s.used)?)?.max(0) as usize;
        let mask = self.mem.read_i64(field(obj, s.mask)?)?;
        if mask < 0 || mask as u64 >= MAX_ENTRIES * 8 {
            return Err(Error::Inconsistent(format!("set at {obj:#x} has mask {mask}")));
        }
        let table = self.ptr(field(obj, s.table)?)?;
        let slots = mask as u64 + 1;
        let raw = self.mem.read_vec(table, (slots * 16) as usize, (MAX_ENTRIES * 8 * 16) as usize)?;
        let mut out = Vec::new();
        for entry in raw.chunks_exact(16) {
            let key = u64::from_le_bytes(entry[..8].try_into().expect("8"));
            // A deleted slot holds the `dummy` sentinel with the hash -1, which no live key has.
            let hash = i64::from_le_bytes(entry[8..].try_into().expect("8"));
            if key == 0 || hash == -1 {
                continue;
            }
            out.push(key);
            if out.len() >= max {
                break;
            }
        }
        Ok((used, out))
    }

    /// A bounded Python-style repr of any object.
    pub fn repr(&self, obj: u64, limits: &ReprLimits) -> String {
        let mut out = String::new();
        let mut stack = Vec::new();
        self.repr_into(obj, limits, 0, &mut stack, &mut out);
        if out.chars().count() > limits.max_len {
            out = out.chars().take(limits.max_len.saturating_sub(3)).collect();
            out.push_str("...");
        }
        out
    }

    fn repr_into(&self, obj: u64, limits: &ReprLimits, depth: usize, stack: &mut Vec<u64>, out: &mut String) {
        if out.len() > limits.max_len * 4 {
            return;
        }
        if let Err(e) = self.try_repr(obj, limits, depth, stack, out) {
            let _ = write!(out, "<unreadable object at {obj:#x}: {}>", short_error(&e));
        }
    }

    fn try_repr(
        &self,
        obj: u64,
        limits: &ReprLimits,
        depth: usize,
        stack: &mut Vec<u64>,
        out: &mut String,
    ) -> Result<()> {
        let (kind, tp) = self.kind(obj)?;
        let container = |open: &str, close: &str, out: &mut String| -> bool {
            if stack.contains(&obj) || depth >= limits.max_depth {
                let _ = write!(out, "{open}...{close}");
                return false;
            }
            true
        };
        match kind {
            Kind::None => out.push_str("None"),
            Kind::Bool => out.push_str(if self.read_bool(obj)? { "True" } else { "False" }),
            Kind::Int => out.push_str(&elide(&self.read_int(obj)?, limits.max_string)),
            Kind::Float => out.push_str(&float_repr(self.read_float(obj)?)),
            Kind::Str => {
                let (text, cut) = self.read_str(obj, limits.max_string)?;
                out.push_str(&str_repr(&text));
                if cut {
                    out.push_str("...");
                }
            }
            Kind::Bytes => {
                let (data, len) = self.read_bytes(obj, limits.max_string)?;
                out.push_str(&bytes_repr(&data));
                if len > data.len() {
                    out.push_str("...");
                }
            }
            Kind::List | Kind::Tuple => {
                let (open, close) = if kind == Kind::List { ("[", "]") } else { ("(", ")") };
                if !container(open, close, out) {
                    return Ok(());
                }
                let (len, items) = self.sequence(obj, kind, limits.max_items)?;
                stack.push(obj);
                out.push_str(open);
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.repr_into(*item, limits, depth + 1, stack, out);
                }
                if len > items.len() {
                    out.push_str(", ...");
                } else if kind == Kind::Tuple && len == 1 {
                    out.push(',');
                }
                out.push_str(close);
                stack.pop();
            }
            Kind::Dict => {
                if !container("{", "}", out) {
                    return Ok(());
                }
                let (len, items) = self.dict_items(obj, limits.max_items)?;
                stack.push(obj);
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.repr_into(*k, limits, depth + 1, stack, out);
                    out.push_str(": ");
                    self.repr_into(*v, limits, depth + 1, stack, out);
                }
                if len > items.len() {
                    out.push_str(", ...");
                }
                out.push('}');
                stack.pop();
            }
            Kind::Set | Kind::FrozenSet => {
                let (open, close) = if kind == Kind::Set { ("{", "}") } else { ("frozenset({", "})") };
                if !container(open, close, out) {
                    return Ok(());
                }
                let (len, items) = self.set_items(obj, limits.max_items)?;
                if len == 0 {
                    out.push_str(if kind == Kind::Set { "set()" } else { "frozenset()" });
                    return Ok(());
                }
                stack.push(obj);
                out.push_str(open);
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.repr_into(*item, limits, depth + 1, stack, out);
                }
                if len > items.len() {
                    out.push_str(", ...");
                }
                out.push_str(close);
                stack.pop();
            }
            // A cell is a container of one: it can hold itself, or a cycle through it.
            Kind::Cell => {
                if !container("<cell: ", ">", out) {
                    return Ok(());
                }
                match self.cell_contents(obj)? {
                    0 => out.push_str("<cell: empty>"),
                    inner => {
                        stack.push(obj);
                        out.push_str("<cell: ");
                        self.repr_into(inner, limits, depth + 1, stack, out);
                        out.push('>');
                        stack.pop();
                    }
                }
            }
            // As `repr` shows them, by qualified name; the address tells two apart.
            Kind::Function | Kind::Coroutine => {
                let at = if kind == Kind::Function {
                    structural::func_qualname(self.layout.version)
                } else {
                    structural::coro_qualname(self.layout.version)
                };
                let qualname = self.string(self.ptr(field(obj, at)?)?)?;
                let what = if kind == Kind::Function { "function" } else { "coroutine object" };
                let _ = write!(out, "<{what} {qualname} at {obj:#x}>");
            }
            Kind::Code | Kind::Other => {
                if let Some(array) = self.ndarray(obj, tp, limits)? {
                    out.push_str(&array);
                    return Ok(());
                }
                match self.class_name(obj, tp) {
                    Some(name) => {
                        let _ = write!(out, "<class '{name}'>");
                    }
                    None => {
                        let _ = write!(out, "<{} object at {obj:#x}>", self.type_name(tp)?);
                    }
                }
            }
        }
        Ok(())
    }
}

fn short_error(e: &Error) -> String {
    match e {
        Error::Memory(_) => "memory not readable".into(),
        other => other.to_string(),
    }
}

/// Base-2^30 little-endian digits to decimal.
fn digits_to_decimal(digits: &[u32]) -> String {
    // Accumulate in base 10^9, most significant digit first.
    const BASE: u64 = 1_000_000_000;
    let mut acc: Vec<u64> = vec![0];
    for &d in digits.iter().rev() {
        let mut carry = u64::from(d & ((1 << 30) - 1));
        for limb in acc.iter_mut() {
            let v = (*limb << 30) + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            acc.push(carry % BASE);
            carry /= BASE;
        }
    }
    let mut out = acc.last().map(|v| v.to_string()).unwrap_or_default();
    for limb in acc.iter().rev().skip(1) {
        let _ = write!(out, "{limb:09}");
    }
    out
}

/// Keeps the first and last characters of a long text around an ellipsis.
fn elide(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max || max < 8 {
        return text.to_string();
    }
    let head: String = text.chars().take(max / 2).collect();
    let tail: String = text.chars().skip(n - max / 2).collect();
    format!("{head}...{tail}")
}

/// Python's `repr` of a float: shortest round-trip digits, fixed notation for exponents from
/// -4 to 15, scientific with a signed two-digit exponent otherwise.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{body}")
    } else {
        let mantissa = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    }
}

/// Python's `repr` of a str: single quotes unless the text has a single quote and no double.
pub(crate) fn str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr` of bytes.
pub(crate) fn bytes_repr(data: &[u8]) -> String {
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') { b'"' } else { b'\'' };
    let mut out = String::from("b");
    out.push(char::from(quote));
    for &b in data {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push(char::from(quote));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (123456.0, "123456.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (5e-324, "5e-324"),
            (0.0, "0.0"),
            (f64::INFINITY, "inf"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn strings_and_bytes_quote_like_python() {
        assert_eq!(str_repr("abc"), "'abc'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(str_repr("tab\there\n\u{1}"), "'tab\\there\\n\\x01'");
        assert_eq!(str_repr("héllo"), "'héllo'");
        assert_eq!(bytes_repr(b"a\x00\xff'"), "b\"a\\x00\\xff'\"");
    }

    #[test]
    fn big_ints_convert_exactly() {
        // 2**30 + 5 and 2**60 as base-2^30 digits.
        assert_eq!(digits_to_decimal(&[5, 1]), "1073741829");
        assert_eq!(digits_to_decimal(&[0, 0, 1]), "1152921504606846976");
        assert_eq!(digits_to_decimal(&[7]), "7");
    }

    /// A little 3.12 heap: a `str` type, two strings, a class with managed attributes and an
    /// instance whose values live in the tagged dict-or-values word.
    #[test]
    fn regression_3_12_tagged_values_pointer_is_stored_minus_one() {
        use pymri_memory::SliceMemory;
        let layout = pymri_layouts::v3_12();
        let base = 0x10000u64;
        let mut heap = vec![0u8; 0x4000];
        let mut put = |addr: u64, value: u64| {
            let at = (addr - base) as usize;
            heap[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        let (str_type, class, name_key, name_value, keys, values, instance) = (
            base + 0x100,
            base + 0x800,
            base + 0x1000,
            base + 0x1100,
            base + 0x1200,
            base + 0x1400,
            base + 0x1800,
        );
        let tp_name = base + 0x40;
        put(str_type + layout.object.tp_name, tp_name);
        let bytes_at = |addr: u64, text: &[u8]| (addr, text.to_vec());
        let mut writes = vec![bytes_at(tp_name, b"str\0")];
        for (obj, text) in [(name_key, &b"_name"[..]), (name_value, &b"worker-7"[..])] {
            put(obj + layout.object.ob_type, str_type);
            put(obj + layout.unicode.length, text.len() as u64);
            // kind 1, compact, ascii
            put(obj + layout.unicode.state, (1 << 2) | (1 << 5) | (1 << 6));
            writes.push(bytes_at(obj + layout.unicode.ascii_data, text));
        }
        put(class + layout.object.tp_flags, flags::MANAGED_DICT);
        put(class + layout.object.ht_cached_keys, keys);
        let DictKeysFormat::Log2 { log2_index_bytes, kind, nentries, indices, .. } = layout.dict.keys_format
        else {
            panic!("3.12 keys are log2");
        };
        writes.push(bytes_at(keys + log2_index_bytes, &[3]));
        writes.push(bytes_at(keys + kind, &[2]));
        put(keys + nentries, 1);
        put(keys + indices + 8, name_key);
        put(values, name_value);
        put(instance + layout.object.ob_type, class);
        let ManagedDict::Tagged { dict_or_values } = layout.managed_dict else { panic!("3.12 is tagged") };
        put(instance.wrapping_add_signed(dict_or_values), values - 1);
        for (addr, data) in writes {
            let at = (addr - base) as usize;
            heap[at..at + data.len()].copy_from_slice(&data);
        }
        let mem = SliceMemory { base, bytes: &heap };
        let types = BuiltinTypes::from_symbols(|name| (name == "PyUnicode_Type").then_some(str_type));
        let objects = Objects::new(&mem, &layout, &types);
        let found = objects.attribute(instance, "_name").expect("readable").expect("present");
        assert_eq!(found, name_value);
        assert_eq!(objects.string(found).expect("str"), "worker-7");
    }

    /// A cell holding itself, and a cell whose contents hold the cell: shown with the cycle
    /// marked, where a reader that showed a cell by its contents recursed until the stack
    /// overflowed.
    #[test]
    fn regression_a_cell_that_contains_itself_is_a_cycle() {
        use pymri_memory::SliceMemory;
        let layout = pymri_layouts::v3_11();
        let base = 0x10000u64;
        let (cell_type, list_type, cell, list, other_cell) =
            (base + 0x100, base + 0x200, base + 0x1000, base + 0x1100, base + 0x1200);
        let mut heap = vec![0u8; 0x2000];
        let mut put = |addr: u64, value: u64| {
            let at = (addr - base) as usize;
            heap[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        put(cell + layout.object.ob_type, cell_type);
        put(cell + CELL_REF, cell);
        // other_cell -> [other_cell]
        put(other_cell + layout.object.ob_type, cell_type);
        put(other_cell + CELL_REF, list);
        put(list + layout.object.ob_type, list_type);
        put(list + layout.list.size, 1);
        put(list + layout.list.items, list + 0x80);
        put(list + 0x80, other_cell);
        let mem = SliceMemory { base, bytes: &heap };
        let types = BuiltinTypes::from_symbols(|name| match name {
            "PyCell_Type" => Some(cell_type),
            "PyList_Type" => Some(list_type),
            _ => None,
        });
        let objects = Objects::new(&mem, &layout, &types);
        let limits = ReprLimits { max_depth: 100, ..ReprLimits::default() };
        assert_eq!(objects.repr(cell, &limits), "<cell: <cell: ...>>");
        assert_eq!(objects.repr(other_cell, &limits), "<cell: [<cell: ...>]>");
    }

    #[test]
    fn long_texts_keep_both_ends() {
        let s = "1234567890".repeat(5);
        let e = elide(&s, 10);
        assert_eq!(e, "12345...67890");
    }
}
