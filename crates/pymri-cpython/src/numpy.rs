//! numpy arrays summarised from memory: `<ndarray float32 (128, 64) C 32 KiB>` where a plain
//! repr would say `<ndarray object at 0x...>`, without running code in the target.
//!
//! `PyArrayObject` has kept the same leading fields since numpy 1.7 (`data`, `nd`,
//! `dimensions`, `strides`, `base`, `descr`, `flags`), and `PyArray_Descr` its `kind`, `type`
//! and `byteorder` characters right after `typeobj`; those are all this module reads. The
//! element size is known from the type character for the fixed-size types; the flexible ones
//! (str, bytes, void) are named by kind only, since where numpy keeps their size changed in 2.0.
//! With [`ReprLimits::array_values`], a contiguous array of floats or ints small enough has its
//! data read once for its minimum, maximum, mean and NaN and Inf counts.
//!
//! An object is taken for an array only if its type is a static type named `numpy.ndarray`,
//! big enough to hold those fields; whatever it holds is then read bounded and checked: a hostile object
//! gives a wrong summary or an error, never a long read.

use crate::objects::{Objects, ReprLimits};
use crate::Result;
use pymri_layouts::flags;
use pymri_memory::{field, Memory, MemoryExt};
use std::fmt::Write;

/// `NPY_MAXDIMS` of numpy 2 (64); numpy 1 allowed 32.
const MAX_DIMS: u64 = 64;
/// Fields of `PyArrayObject` after the object header, as offsets from its end.
const DATA: u64 = 0;
const ND: u64 = 8;
const DIMENSIONS: u64 = 16;
const STRIDES: u64 = 24;
const DESCR: u64 = 40;
const FLAGS: u64 = 48;
/// The smallest `tp_basicsize` an array type can have: up to `flags`.
const FIELDS_SIZE: u64 = 52;
/// `PyArray_Descr.kind` and `.type` after the object header and `typeobj`.
const DESCR_KIND: u64 = 8;
const DESCR_TYPE: u64 = 9;
const C_CONTIGUOUS: u32 = 0x1;
const F_CONTIGUOUS: u32 = 0x2;

/// The dtype name and element size of numpy's type characters (x86-64 Linux: `l` is 64-bit).
fn dtype(type_char: u8) -> Option<(&'static str, u64)> {
    Some(match type_char {
        b'?' => ("bool", 1),
        b'b' => ("int8", 1),
        b'B' => ("uint8", 1),
        b'h' => ("int16", 2),
        b'H' => ("uint16", 2),
        b'i' => ("int32", 4),
        b'I' => ("uint32", 4),
        b'l' | b'q' => ("int64", 8),
        b'L' | b'Q' => ("uint64", 8),
        b'e' => ("float16", 2),
        b'f' => ("float32", 4),
        b'd' => ("float64", 8),
        b'g' => ("float128", 16),
        b'F' => ("complex64", 8),
        b'D' => ("complex128", 16),
        b'G' => ("complex256", 32),
        b'O' => ("object", 8),
        b'M' => ("datetime64", 8),
        b'm' => ("timedelta64", 8),
        _ => return None,
    })
}

/// Names the flexible kinds, whose element size is not read.
fn flexible(kind: u8) -> Option<&'static str> {
    Some(match kind {
        b'U' => "str",
        b'S' => "bytes",
        b'V' => "void",
        _ => return None,
    })
}

impl<M: Memory> Objects<'_, M> {
    /// The summary of `obj` if its type `tp` is numpy's array type (or the value of a numpy
    /// scalar: `numpy.float32(nan)`); `None` for any other object.
    pub fn ndarray(&self, obj: u64, tp: u64, limits: &ReprLimits) -> Result<Option<String>> {
        // numpy's array and scalar types are static types; a class can be given any name, so a
        // heap type named like them is not one of them.
        if self.mem.read_u64(field(tp, self.layout.object.tp_flags)?)? & flags::HEAPTYPE != 0 {
            return Ok(None);
        }
        let type_name = self.type_name(tp)?;
        let basicsize =
            || -> Result<u64> { Ok(self.mem.read_u64(field(tp, self.layout.object.tp_basicsize)?)?) };
        let header = self.layout.object.ob_type + 8;
        if let Some(scalar) = type_name.strip_prefix("numpy.") {
            if let Some((size, show)) = scalar_reader(scalar) {
                if basicsize()? < header + size {
                    return Ok(None);
                }
                let mut bytes = [0u8; 8];
                let bytes = &mut bytes[..usize::try_from(size).unwrap_or(8)];
                self.mem.read(field(obj, header)?, bytes)?;
                return Ok(Some(format!("{type_name}({})", show(bytes))));
            }
        }
        if &*type_name != "numpy.ndarray" || basicsize()? < header + FIELDS_SIZE {
            return Ok(None);
        }
        let at = |offset: u64| field(obj, header + offset);
        let nd = u64::try_from(self.mem.read_i32(at(ND)?)?).unwrap_or(u64::MAX);
        if nd > MAX_DIMS {
            return Ok(None);
        }
        let mut shape = Vec::new();
        let mut strides = Vec::new();
        if nd > 0 {
            let dims = self.ptr(at(DIMENSIONS)?)?;
            let steps = self.ptr(at(STRIDES)?)?;
            for i in 0..nd {
                shape.push(self.mem.read_u64(field(dims, i * 8)?)? as i64);
                strides.push(self.mem.read_u64(field(steps, i * 8)?)? as i64);
            }
        }
        let descr = self.ptr(at(DESCR)?)?;
        let kind = self.mem.read_u8(field(descr, header + DESCR_KIND)?)?;
        let type_char = self.mem.read_u8(field(descr, header + DESCR_TYPE)?)?;
        let flags = self.mem.read_u32(at(FLAGS)?)?;

        let (name, itemsize) = match (dtype(type_char), flexible(kind)) {
            (Some((name, size)), _) => (name.to_string(), Some(size)),
            (None, Some(name)) => (name.to_string(), None),
            (None, None) => (format!("dtype {:?}", char::from(type_char)), None),
        };
        let mut out = format!("<ndarray {name} (");
        for (i, d) in shape.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{d}");
        }
        if shape.len() == 1 {
            out.push(',');
        }
        out.push(')');
        out.push_str(match (flags & C_CONTIGUOUS != 0, flags & F_CONTIGUOUS != 0) {
            (true, _) => " C",
            (false, true) => " F",
            (false, false) => " strided",
        });
        if flags & (C_CONTIGUOUS | F_CONTIGUOUS) == 0 {
            let _ = write!(out, " {strides:?}");
        }
        let count = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?));
        let bytes = count.zip(itemsize).and_then(|(n, size)| n.checked_mul(size));
        if let Some(bytes) = bytes {
            let _ = write!(out, " {}", human_bytes(bytes));
        }
        let contiguous = flags & (C_CONTIGUOUS | F_CONTIGUOUS) != 0;
        if let (Some(bytes), true) = (bytes, contiguous) {
            if bytes > 0 && bytes <= limits.array_values {
                if let Some(stats) = self.values(self.ptr(at(DATA)?)?, bytes, type_char)? {
                    out.push_str(&stats);
                }
            }
        }
        out.push('>');
        Ok(Some(out))
    }
}

impl<M: Memory> Objects<'_, M> {
    /// ` min=... max=... mean=... nan=N inf=N` of `bytes` bytes of elements of `type_char` at
    /// `data` (NaN left out of the others); `None` for a dtype that has no such figures.
    fn values(&self, data: u64, bytes: u64, type_char: u8) -> Result<Option<String>> {
        let size = match type_char {
            b'f' | b'i' | b'I' => 4,
            b'd' | b'l' | b'q' | b'L' | b'Q' => 8,
            _ => return Ok(None),
        };
        let mut buf = vec![0u8; usize::try_from(bytes).unwrap_or(0)];
        self.mem.read(data, &mut buf)?;
        let (mut min, mut max, mut sum, mut n, mut nan, mut inf) =
            (f64::INFINITY, f64::NEG_INFINITY, 0.0f64, 0u64, 0u64, 0u64);
        for chunk in buf.chunks_exact(size) {
            let x = match type_char {
                b'f' => f64::from(f32::from_le_bytes(chunk.try_into().unwrap_or_default())),
                b'd' => f64::from_le_bytes(chunk.try_into().unwrap_or_default()),
                b'i' => f64::from(i32::from_le_bytes(chunk.try_into().unwrap_or_default())),
                b'I' => f64::from(u32::from_le_bytes(chunk.try_into().unwrap_or_default())),
                b'l' | b'q' => i64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f64,
                _ => u64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f64,
            };
            if x.is_nan() {
                nan += 1;
                continue;
            }
            if x.is_infinite() {
                inf += 1;
            }
            min = min.min(x);
            max = max.max(x);
            sum += x;
            n += 1;
        }
        let mut out = String::new();
        if n > 0 {
            let _ = write!(
                out,
                " min={} max={} mean={}",
                crate::objects::float_repr(min),
                crate::objects::float_repr(max),
                crate::objects::float_repr(sum / n as f64)
            );
        }
        if matches!(type_char, b'f' | b'd') {
            let _ = write!(out, " nan={nan} inf={inf}");
        }
        Ok(Some(out))
    }
}

/// How a numpy scalar type keeps its value right after the object header: its size, and how
/// it reads.
type Show = fn(&[u8]) -> String;

fn scalar_reader(name: &str) -> Option<(u64, Show)> {
    fn le<const N: usize>(b: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&b[..N]);
        out
    }
    Some(match name {
        "float64" => (8, |b| crate::objects::float_repr(f64::from_le_bytes(le(b)))),
        // The shortest text that reads back as the same float32, as numpy prints it.
        "float32" => (4, |b| match f32::from_le_bytes(le(b)) {
            x if x.is_finite() => format!("{x:?}"),
            x => crate::objects::float_repr(f64::from(x)),
        }),
        "int64" => (8, |b| i64::from_le_bytes(le(b)).to_string()),
        "int32" => (4, |b| i32::from_le_bytes(le(b)).to_string()),
        "int16" => (2, |b| i16::from_le_bytes(le(b)).to_string()),
        "int8" => (1, |b| i8::from_le_bytes(le(b)).to_string()),
        "uint64" => (8, |b| u64::from_le_bytes(le(b)).to_string()),
        "uint32" => (4, |b| u32::from_le_bytes(le(b)).to_string()),
        "uint16" => (2, |b| u16::from_le_bytes(le(b)).to_string()),
        "uint8" => (1, |b| b[0].to_string()),
        "bool_" | "bool" => (1, |b| if b[0] != 0 { "True".into() } else { "False".into() }),
        _ => return None,
    })
}

/// `512 B`, `32 KiB`, `1.5 MiB`: as a person reads sizes.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(32 * 1024), "32 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes(u64::MAX), "16777216 TiB");
    }
}
