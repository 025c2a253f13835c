//! Code objects: names, file, local names and the mapping from instructions to lines.

use crate::objects::{Kind, Objects};
use crate::{Error, Result};
use pymri_layouts::{LineTableFormat, LocalNames};
use pymri_memory::{field, Memory, MemoryExt};

/// A line table larger than this is corrupt (CPython's are a few bytes per instruction).
const MAX_LINETABLE: usize = 1 << 22;
/// A code object with more local slots than this is corrupt.
const MAX_LOCALS: usize = 1 << 16;

/// `co_flags` bits telling whether the code takes `*args` and `**kwargs`.
const CO_VARARGS: u32 = 0x4;
const CO_VARKEYWORDS: u32 = 0x8;
/// `co_localspluskinds` bits (3.11+); 3.9/3.10 kinds are synthesised with the same values.
pub(crate) const CO_FAST_HIDDEN: u8 = 0x10;
pub(crate) const CO_FAST_CELL: u8 = 0x40;
pub(crate) const CO_FAST_FREE: u8 = 0x80;

/// What pymri keeps of a code object for the duration of a snapshot.
#[derive(Debug)]
pub(crate) struct CodeInfo {
    pub name: String,
    pub qualname: Option<String>,
    pub filename: String,
    pub firstlineno: i32,
    linetable: Vec<u8>,
    format: LineTableFormat,
    /// Address of the first instruction, for frames that point into the code.
    pub code_start: u64,
    /// Names of the local slots, in slot order, with their kinds.
    pub locals: Vec<(String, u8)>,
    /// How many leading slots are arguments.
    pub nargs: usize,
    /// Lines already found, by position: a sampler asks for the same few positions of a code
    /// object again and again, and each search walks the table from its start.
    lines: std::cell::Cell<[(i64, i32); LINE_MEMO]>,
}

/// Positions remembered per code object (direct-mapped by position).
const LINE_MEMO: usize = 8;
/// No position: `Position` keys are built from offsets that fit far within an i64.
const NO_POSITION: i64 = i64::MIN;

/// Where a frame is in its code, as its version records it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Position {
    /// Byte offset (3.9).
    Bytes(i64),
    /// Code-unit index (3.10+, and pointers converted to an index).
    Units(i64),
}

impl CodeInfo {
    pub fn read<M: Memory>(objects: &Objects<'_, M>, code: u64) -> Result<CodeInfo> {
        let (kind, tp) = objects.kind(code)?;
        if kind != Kind::Code {
            let type_name = objects.type_name(tp)?;
            return Err(Error::Inconsistent(format!(
                "expected a code object at {code:#x}, found {type_name}"
            )));
        }
        let c = &objects.layout.code;
        let mem = objects.mem;
        let string_at = |off: u64| -> Result<String> { objects.string(objects.ptr(field(code, off)?)?) };
        let name = string_at(c.name)?;
        let qualname = c.qualname.map(string_at).transpose()?;
        let filename = string_at(c.filename)?;
        let firstlineno = mem.read_i32(field(code, c.firstlineno)?)?;
        let (linetable, total) =
            objects.read_bytes(objects.ptr(field(code, c.linetable)?)?, MAX_LINETABLE)?;
        if total > linetable.len() {
            return Err(Error::Inconsistent(format!("line table of {name} is {total} bytes")));
        }
        let argcount = mem.read_i32(field(code, c.argcount)?)?.max(0) as usize;
        let kwonly = match c.kwonlyargcount {
            Some(off) => mem.read_i32(field(code, off)?)?.max(0) as usize,
            None => 0,
        };
        let flags = match c.flags {
            Some(off) => mem.read_u32(field(code, off)?)?,
            None => 0,
        };
        let nargs = argcount
            + kwonly
            + usize::from(flags & CO_VARARGS != 0)
            + usize::from(flags & CO_VARKEYWORDS != 0);
        let locals = match c.names {
            LocalNames::Combined { names, kinds } => {
                let names = name_tuple(objects, objects.ptr(field(code, names)?)?)?;
                let (kinds, _) = objects.read_bytes(objects.ptr(field(code, kinds)?)?, MAX_LOCALS)?;
                names.into_iter().zip(kinds.into_iter().chain(std::iter::repeat(0))).collect()
            }
            LocalNames::Split { varnames, cellvars, freevars } => {
                let mut out: Vec<(String, u8)> = Vec::new();
                for (off, kind) in [(varnames, 0x20), (cellvars, CO_FAST_CELL), (freevars, CO_FAST_FREE)] {
                    out.extend(
                        name_tuple(objects, objects.ptr(field(code, off)?)?)?.into_iter().map(|n| (n, kind)),
                    );
                }
                out
            }
        };
        let code_start = c.code_adaptive.map(|off| field(code, off)).transpose()?.unwrap_or(0);
        Ok(CodeInfo {
            name,
            qualname,
            filename,
            firstlineno,
            linetable,
            format: c.linetable_format,
            code_start,
            locals,
            nargs,
            lines: std::cell::Cell::new([(NO_POSITION, 0); LINE_MEMO]),
        })
    }

    /// The function name to show: the qualified name where the version records one.
    pub fn function(&self) -> &str {
        self.qualname.as_deref().unwrap_or(&self.name)
    }

    pub fn line(&self, pos: Position) -> i32 {
        // Bytes and units of the same number are different positions.
        let key = match pos {
            Position::Bytes(b) => b.wrapping_mul(2),
            Position::Units(u) => u.wrapping_mul(2).wrapping_add(1),
        };
        let slot = (key as u64 % LINE_MEMO as u64) as usize;
        let mut memo = self.lines.get();
        if key != NO_POSITION && memo[slot].0 == key {
            return memo[slot].1;
        }
        let line = self.find_line(pos);
        memo[slot] = (key, line);
        self.lines.set(memo);
        line
    }

    fn find_line(&self, pos: Position) -> i32 {
        match (self.format, pos) {
            (LineTableFormat::Lnotab, Position::Bytes(offset)) => {
                lnotab_line(&self.linetable, self.firstlineno, offset)
            }
            (LineTableFormat::Lnotab, Position::Units(units)) => {
                lnotab_line(&self.linetable, self.firstlineno, units.saturating_mul(2))
            }
            (LineTableFormat::Linetable310, Position::Units(units)) => {
                linetable310_line(&self.linetable, self.firstlineno, units)
            }
            (LineTableFormat::Linetable310, Position::Bytes(b)) => {
                linetable310_line(&self.linetable, self.firstlineno, b / 2)
            }
            (LineTableFormat::Locations, Position::Units(units)) => {
                locations_line(&self.linetable, self.firstlineno, units)
            }
            (LineTableFormat::Locations, Position::Bytes(b)) => {
                locations_line(&self.linetable, self.firstlineno, b / 2)
            }
        }
    }
}

pub(crate) fn name_tuple<M: Memory>(objects: &Objects<'_, M>, tuple: u64) -> Result<Vec<String>> {
    let (len, items) = objects.sequence(tuple, Kind::Tuple, MAX_LOCALS)?;
    if len > items.len() {
        return Err(Error::Inconsistent(format!("{len} local names")));
    }
    items.into_iter().map(|s| objects.string(s)).collect()
}

/// 3.9's `co_lnotab`: pairs of (bytecode offset increment, signed line increment).
fn lnotab_line(table: &[u8], first: i32, offset: i64) -> i32 {
    let mut line = first;
    let mut addr: i64 = 0;
    for pair in table.chunks_exact(2) {
        addr += i64::from(pair[0]);
        if addr > offset {
            break;
        }
        line = line.saturating_add(i32::from(pair[1] as i8));
    }
    line
}

/// 3.10's PEP 626 table: pairs of (bytes covered, signed line delta or -128 for none).
fn linetable310_line(table: &[u8], first: i32, units: i64) -> i32 {
    if units < 0 {
        return first;
    }
    let target = units.saturating_mul(2);
    let mut line = first;
    let mut end: i64 = 0;
    let mut last_known = first;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += i64::from(pair[0]);
        let delta = pair[1] as i8;
        if delta != -128 {
            line = line.saturating_add(i32::from(delta));
            last_known = line;
        }
        if start <= target && target < end {
            return last_known;
        }
    }
    last_known
}

/// The location table of 3.11+: entries covering 1 to 8 code units each, whose first byte
/// (high bit set) holds a 4-bit form code and the length.
fn locations_line(table: &[u8], first: i32, units: i64) -> i32 {
    if units < 0 {
        return first;
    }
    let mut line = first;
    let mut addr: i64 = 0;
    let mut i = 0;
    while i < table.len() {
        let head = table[i];
        i += 1;
        let code = (head >> 3) & 15;
        let length = i64::from(head & 7) + 1;
        match code {
            // No location: the line does not change.
            15 => {}
            // Long form: line delta, end line, column, end column.
            14 => {
                line = line.saturating_add(read_svarint(table, &mut i));
                for _ in 0..3 {
                    read_varint(table, &mut i);
                }
            }
            // No column: just the line delta.
            13 => line = line.saturating_add(read_svarint(table, &mut i)),
            // One-line forms: the delta is in the code, two column bytes follow.
            10..=12 => {
                line = line.saturating_add(i32::from(code) - 10);
                i += 2;
            }
            // Short forms: same line, one column byte follows.
            _ => i += 1,
        }
        if addr <= units && units < addr + length {
            return line;
        }
        addr += length;
    }
    line
}

fn read_varint(table: &[u8], i: &mut usize) -> u32 {
    let mut value = 0u32;
    let mut shift = 0;
    while let Some(&b) = table.get(*i) {
        *i += 1;
        if shift < 32 {
            value |= u32::from(b & 63) << shift;
        }
        shift += 6;
        if b & 64 == 0 {
            break;
        }
    }
    value
}

fn read_svarint(table: &[u8], i: &mut usize) -> i32 {
    let v = read_varint(table, i);
    if v & 1 != 0 {
        -((v >> 1) as i32)
    } else {
        (v >> 1) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_maps_offsets_to_lines() {
        // Lines 10 (bytes 0-5), 11 (6-9), 14 (10-).
        let table = [6, 1, 4, 3];
        assert_eq!(lnotab_line(&table, 10, 0), 10);
        assert_eq!(lnotab_line(&table, 10, 5), 10);
        assert_eq!(lnotab_line(&table, 10, 6), 11);
        assert_eq!(lnotab_line(&table, 10, 12), 14);
    }

    #[test]
    fn linetable310_skips_ranges_without_lines() {
        // Bytes 0-3 on line first+1, 4-7 no line, 8-9 on line first+3.
        let table = [4, 1, 4, 0x80, 2, 2];
        assert_eq!(linetable310_line(&table, 5, 0), 6);
        assert_eq!(linetable310_line(&table, 5, 2), 6);
        assert_eq!(linetable310_line(&table, 5, 4), 8);
        assert_eq!(linetable310_line(&table, 5, -1), 5);
    }

    #[test]
    fn locations_table_handles_every_form() {
        let table = [
            0x80 | (13 << 3),     // 1 unit, no-column form
            2,                    // line delta +1 (svarint 2)
            0x80 | (10 << 3) | 1, // 2 units, one-line form, delta 0
            4,
            9,
            0x80 | (14 << 3), // 1 unit, long form
            4,
            0,
            1,
            1,                // delta +2, end line, cols
            0x80 | (15 << 3), // 1 unit, no location
            0x80 | (3 << 3),  // 1 unit, short form
            7,
        ];
        assert_eq!(locations_line(&table, 100, 0), 101);
        assert_eq!(locations_line(&table, 100, 2), 101);
        assert_eq!(locations_line(&table, 100, 3), 103);
        assert_eq!(locations_line(&table, 100, 4), 103);
        assert_eq!(locations_line(&table, 100, 5), 103);
    }

    #[test]
    fn varints_are_bounded_on_garbage() {
        let table = [0xffu8; 64];
        let mut i = 0;
        read_varint(&table, &mut i);
        assert_eq!(i, 64);
        assert_eq!(locations_line(&[0xff; 7], 1, 1000), 1);
    }
}
