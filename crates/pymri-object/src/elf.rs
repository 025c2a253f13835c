//! A bounded reader of 64-bit little-endian ELF files.

use crate::{u16_at, u32_at, u64_at, ObjectError};

pub const ET_CORE: u16 = 4;
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
const SHT_DYNSYM: u32 = 11;
const SHT_SYMTAB: u32 = 2;
const SHT_GNU_HASH: u32 = 0x6fff_fff6;
/// `st_shndx` of a symbol that is only referenced, not defined, by this file.
const SHN_UNDEF: u16 = 0;

/// Headers of more than this many program or section entries are treated as corrupt: real
/// binaries have a few dozen, cores a few thousand.
const MAX_HEADERS: u64 = 1 << 20;

/// A parsed ELF file borrowing its bytes (typically a memory map).
pub struct Elf<'a> {
    data: &'a [u8],
    pub e_type: u16,
    phoff: u64,
    phnum: u64,
    phentsize: u64,
    shoff: u64,
    shnum: u64,
    shentsize: u64,
    shstrndx: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub p_flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub sh_type: u32,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub entsize: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    pub value: u64,
    pub size: u64,
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, ObjectError> {
        if data.get(..4) != Some(b"\x7fELF") {
            return Err(ObjectError::NotElf);
        }
        match (data.get(4), data.get(5)) {
            (Some(2), Some(1)) => {}
            (Some(_), Some(1)) => return Err(ObjectError::Unsupported("32-bit ELF")),
            (Some(_), Some(_)) => return Err(ObjectError::Unsupported("big-endian ELF")),
            _ => return Err(ObjectError::Malformed("ELF header")),
        }
        let bad = || ObjectError::Malformed("ELF header");
        let elf = Elf {
            data,
            e_type: u16_at(data, 16).ok_or_else(bad)?,
            phoff: u64_at(data, 32).ok_or_else(bad)?,
            shoff: u64_at(data, 40).ok_or_else(bad)?,
            phentsize: u16_at(data, 54).ok_or_else(bad)?.into(),
            phnum: u16_at(data, 56).ok_or_else(bad)?.into(),
            shentsize: u16_at(data, 58).ok_or_else(bad)?.into(),
            shnum: u16_at(data, 60).ok_or_else(bad)?.into(),
            shstrndx: u16_at(data, 62).ok_or_else(bad)?.into(),
        };
        if elf.phnum > 0 && elf.phentsize < 56 {
            return Err(ObjectError::Malformed("program header size"));
        }
        if elf.shnum > 0 && elf.shentsize < 64 {
            return Err(ObjectError::Malformed("section header size"));
        }
        Ok(elf)
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Number of program headers; `PN_XNUM` (0xffff) means the real count is in section 0,
    /// as in cores with more than 65534 mappings.
    fn program_header_count(&self) -> u64 {
        if self.phnum == 0xffff {
            let info = self.shoff.checked_add(44).and_then(|o| u32_at(self.data, o));
            return info.map_or(0, u64::from).min(MAX_HEADERS);
        }
        self.phnum
    }

    pub fn program_headers(&self) -> impl Iterator<Item = ProgramHeader> + '_ {
        (0..self.program_header_count()).map_while(move |i| {
            let base = self.phoff.checked_add(i.checked_mul(self.phentsize)?)?;
            Some(ProgramHeader {
                p_type: u32_at(self.data, base)?,
                p_flags: u32_at(self.data, base + 4)?,
                offset: u64_at(self.data, base + 8)?,
                vaddr: u64_at(self.data, base + 16)?,
                filesz: u64_at(self.data, base + 32)?,
                memsz: u64_at(self.data, base + 40)?,
            })
        })
    }

    fn section_at(&self, index: u64) -> Option<(u32, Section)> {
        if index >= self.shnum.min(MAX_HEADERS) {
            return None;
        }
        let base = self.shoff.checked_add(index.checked_mul(self.shentsize)?)?;
        Some((
            u32_at(self.data, base)?,
            Section {
                sh_type: u32_at(self.data, base + 4)?,
                addr: u64_at(self.data, base + 16)?,
                offset: u64_at(self.data, base + 24)?,
                size: u64_at(self.data, base + 32)?,
                link: u32_at(self.data, base + 40)?,
                entsize: u64_at(self.data, base + 56)?,
            },
        ))
    }

    fn sections(&self) -> impl Iterator<Item = (u32, Section)> + '_ {
        (0..self.shnum.min(MAX_HEADERS)).map_while(move |i| self.section_at(i))
    }

    /// The bytes of a section, if they lie inside the file.
    pub fn section_data(&self, section: &Section) -> Option<&'a [u8]> {
        let start = usize::try_from(section.offset).ok()?;
        let len = usize::try_from(section.size).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }

    pub fn section_by_name(&self, name: &str) -> Option<Section> {
        let (_, strtab) = self.section_at(self.shstrndx)?;
        let names = self.section_data(&strtab)?;
        self.sections()
            .find(|(name_off, _)| c_str_at(names, u64::from(*name_off)) == Some(name.as_bytes()))
            .map(|(_, s)| s)
    }

    fn section_of_type(&self, sh_type: u32) -> Option<Section> {
        self.sections().map(|(_, s)| s).find(|s| s.sh_type == sh_type)
    }

    /// Looks a defined symbol up in the dynamic symbol table (through `.gnu.hash` when present)
    /// and then in `.symtab`, if the file still has one.
    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        if let Some(found) = self.dynamic_symbol(name) {
            return Some(found);
        }
        let symtab = self.section_of_type(SHT_SYMTAB)?;
        self.linear_lookup(&symtab, name)
    }

    /// Looks a symbol up only among those the file defines for the dynamic linker: the ones
    /// that take part in symbol resolution across the objects of a process.
    pub fn dynamic_symbol(&self, name: &str) -> Option<Symbol> {
        let dynsym = self.section_of_type(SHT_DYNSYM)?;
        match self.section_of_type(SHT_GNU_HASH) {
            Some(hash) => self.gnu_hash_lookup(&hash, &dynsym, name),
            None => self.linear_lookup(&dynsym, name),
        }
    }

    fn symbol_at(&self, symtab: &Section, strtab: &'a [u8], index: u64) -> Option<(&'a [u8], u16, Symbol)> {
        let entsize = if symtab.entsize == 0 { 24 } else { symtab.entsize };
        if index.checked_mul(entsize)? >= symtab.size {
            return None;
        }
        let base = symtab.offset.checked_add(index * entsize)?;
        let name = c_str_at(strtab, u64::from(u32_at(self.data, base)?))?;
        let shndx = u16_at(self.data, base + 6)?;
        let sym = Symbol { value: u64_at(self.data, base + 8)?, size: u64_at(self.data, base + 16)? };
        Some((name, shndx, sym))
    }

    fn linear_lookup(&self, symtab: &Section, name: &str) -> Option<Symbol> {
        let (_, strsec) = self.section_at(u64::from(symtab.link))?;
        let strtab = self.section_data(&strsec)?;
        let entsize = if symtab.entsize == 0 { 24 } else { symtab.entsize };
        // The header's size is untrusted: only entries whose bytes are in the file are walked.
        let present = (self.data.len() as u64).saturating_sub(symtab.offset) / entsize;
        (0..(symtab.size / entsize).min(present))
            .filter_map(|i| self.symbol_at(symtab, strtab, i))
            .find(|(n, shndx, _)| *n == name.as_bytes() && *shndx != SHN_UNDEF)
            .map(|(_, _, s)| s)
    }

    fn gnu_hash_lookup(&self, hash: &Section, dynsym: &Section, name: &str) -> Option<Symbol> {
        let (_, strsec) = self.section_at(u64::from(dynsym.link))?;
        let strtab = self.section_data(&strsec)?;
        let table = self.section_data(hash)?;
        let nbuckets = u64::from(u32_at(table, 0)?);
        let symoffset = u64::from(u32_at(table, 4)?);
        let bloom_size = u64::from(u32_at(table, 8)?);
        let bloom_shift = u32_at(table, 12)?;
        if nbuckets == 0 || bloom_size == 0 {
            return None;
        }
        let h = gnu_hash(name.as_bytes());
        let bloom_word = u64_at(table, 16 + 8 * ((u64::from(h) / 64) % bloom_size))?;
        let mask = (1u64 << (h % 64)) | (1u64 << ((h >> (bloom_shift % 32)) % 64));
        if bloom_word & mask != mask {
            return None;
        }
        let buckets = 16 + 8 * bloom_size;
        let chains = buckets + 4 * nbuckets;
        let mut index = u64::from(u32_at(table, buckets + 4 * (u64::from(h) % nbuckets))?);
        if index < symoffset {
            return None;
        }
        // A chain ends at an entry with its low bit set; a corrupt table without one still ends
        // when the chain runs out of the section.
        loop {
            let chain_hash = u32_at(table, chains + 4 * (index - symoffset))?;
            if chain_hash | 1 == h | 1 {
                let (n, shndx, sym) = self.symbol_at(dynsym, strtab, index)?;
                if n == name.as_bytes() && shndx != SHN_UNDEF {
                    return Some(sym);
                }
            }
            if chain_hash & 1 == 1 {
                return None;
            }
            index += 1;
        }
    }

    /// The lowest `p_vaddr` of the loadable segments, which maps to the start of the file's
    /// first mapping in a process.
    pub fn first_load_vaddr(&self) -> Option<u64> {
        self.program_headers().filter(|p| p.p_type == PT_LOAD).map(|p| p.vaddr).min()
    }

    /// The notes of every `PT_NOTE` segment: `(name, type, descriptor)`.
    pub fn notes(&self) -> Vec<(&'a [u8], u32, &'a [u8])> {
        let mut out = Vec::new();
        for ph in self.program_headers().filter(|p| p.p_type == PT_NOTE) {
            let Some(seg) = usize::try_from(ph.offset)
                .ok()
                .zip(usize::try_from(ph.filesz).ok())
                .and_then(|(o, n)| self.data.get(o..o.checked_add(n)?))
            else {
                continue;
            };
            let mut off = 0u64;
            while let (Some(namesz), Some(descsz), Some(ntype)) =
                (u32_at(seg, off), u32_at(seg, off + 4), u32_at(seg, off + 8))
            {
                let name_start = off + 12;
                let desc_start = name_start + align4(u64::from(namesz));
                let next = desc_start + align4(u64::from(descsz));
                let name = slice(seg, name_start, u64::from(namesz));
                let desc = slice(seg, desc_start, u64::from(descsz));
                match (name, desc) {
                    (Some(name), Some(desc)) => {
                        let name = name.strip_suffix(b"\0").unwrap_or(name);
                        out.push((name, ntype, desc));
                    }
                    _ => break,
                }
                off = next;
            }
        }
        out
    }
}

fn align4(n: u64) -> u64 {
    (n + 3) & !3
}

fn slice(data: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let off = usize::try_from(off).ok()?;
    let len = usize::try_from(len).ok()?;
    data.get(off..off.checked_add(len)?)
}

fn c_str_at(data: &[u8], off: u64) -> Option<&[u8]> {
    let rest = data.get(usize::try_from(off).ok()?..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..end])
}

/// The hash function of `.gnu.hash` (djb2 over the name's bytes).
fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(u32::from(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_binary() -> Vec<u8> {
        std::fs::read("/proc/self/exe").unwrap()
    }

    #[test]
    fn rejects_non_elf_and_truncated_input() {
        assert!(matches!(Elf::parse(b"#!/bin/sh"), Err(ObjectError::NotElf)));
        assert!(Elf::parse(b"\x7fELF\x02\x01").is_err());
        let bin = own_binary();
        for len in [0, 7, 20, 63, 64, 200] {
            if let Ok(elf) = Elf::parse(&bin[..len]) {
                assert!(elf.section_by_name(".text").is_none());
                assert!(elf.symbol("main").is_none());
            }
        }
    }

    #[test]
    fn finds_sections_and_loads_in_a_real_binary() {
        let bin = own_binary();
        let elf = Elf::parse(&bin).unwrap();
        assert!(elf.section_by_name(".text").is_some());
        assert!(elf.first_load_vaddr().is_some());
        assert!(elf.section_by_name(".no-such-section").is_none());
    }

    /// Found by the `elf` fuzz target: a symbol table claiming an enormous size made the
    /// lookup walk it entry by entry for minutes.
    #[test]
    fn regression_huge_symbol_table_size_is_bounded_by_the_file() {
        let mut bin = own_binary();
        let elf = Elf::parse(&bin).unwrap();
        let (index, _) = elf
            .sections()
            .enumerate()
            .find(|(_, (_, s))| s.sh_type == SHT_SYMTAB)
            .expect("the test binary keeps .symtab");
        let shoff = u64_at(&bin, 40).unwrap() as usize;
        let size_field = shoff + index * 64 + 32;
        bin[size_field..size_field + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let elf = Elf::parse(&bin).unwrap();
        let start = std::time::Instant::now();
        assert!(elf.symbol("pymri_no_such_symbol").is_none());
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "took {:?}", start.elapsed());
    }

    #[test]
    fn gnu_hash_matches_the_reference_values() {
        assert_eq!(gnu_hash(b""), 0x0000_1505);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(gnu_hash(b"exit"), 0x7c96_7e3f);
    }

    #[test]
    fn finds_a_dynamic_symbol_of_libc_through_gnu_hash() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc_path = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("libc.so") || p.contains("libc-"))
            .expect("libc mapped");
        let bin = std::fs::read(libc_path).unwrap();
        let elf = Elf::parse(&bin).unwrap();
        let sym = elf.symbol("malloc").expect("malloc exported");
        assert!(sym.value > 0);
        assert!(elf.symbol("pymri_no_such_symbol").is_none());
    }
}
