//! Function symbols of one ELF file, sorted for lookups by address.

use memmap2::Mmap;
use object::{Object, ObjectSymbol, SymbolKind};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Symbols taken from one file at most: more is a corrupt or hostile table.
const MAX_SYMBOLS: usize = 1 << 21;
/// The largest separate debug file opened (they hold all of a library's DWARF).
const MAX_DEBUG_FILE: u64 = 1 << 31;

pub(crate) struct Symbols {
    /// `(start, size, name)` by start, addresses as the file states them.
    entries: Vec<(u64, u64, Arc<str>)>,
}

impl Symbols {
    /// The function symbols of the file `map` holds, and of its separate debug file under
    /// `debug_root` when it has one: the fullest table wins (`.symtab` over `.dynsym`).
    pub(crate) fn of(map: &Mmap, debug_root: Option<&Path>) -> Symbols {
        let Ok(elf) = object::File::parse(&**map) else { return Symbols { entries: Vec::new() } };
        let mut entries = Vec::new();
        if elf.section_by_name(".symtab").is_none() {
            if let Some(debug) = debug_root.and_then(|root| debug_file(&elf, root)) {
                if let Ok(debug_elf) = object::File::parse(&*debug) {
                    collect(debug_elf.symbols(), &mut entries);
                }
            }
        }
        if entries.is_empty() {
            collect(elf.symbols(), &mut entries);
        }
        if entries.is_empty() {
            collect(elf.dynamic_symbols(), &mut entries);
        }
        Symbols::sorted(entries)
    }

    fn sorted(mut entries: Vec<(u64, u64, Arc<str>)>) -> Symbols {
        // One name per address: aliases (`getpid` and `__getpid`) keep the one with the fewest
        // leading underscores, which is the name people call it by.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| underscores(&a.2).cmp(&underscores(&b.2))));
        entries.dedup_by_key(|e| e.0);
        Symbols { entries }
    }

    /// The symbol holding `address` (as the file states addresses): its name and start.
    pub(crate) fn find(&self, address: u64) -> Option<(Arc<str>, u64)> {
        let index = self.entries.partition_point(|e| e.0 <= address).checked_sub(1)?;
        let (start, size, name) = &self.entries[index];
        // A symbol without a size (hand-written assembly) holds what follows it up to the next.
        let inside = *size == 0 || address - start < *size;
        inside.then(|| (name.clone(), *start))
    }
}

fn underscores(name: &str) -> usize {
    name.bytes().take_while(|&b| b == b'_').count()
}

fn collect<'data, S: ObjectSymbol<'data>>(
    symbols: impl Iterator<Item = S>,
    out: &mut Vec<(u64, u64, Arc<str>)>,
) {
    for symbol in symbols.take(MAX_SYMBOLS) {
        if symbol.kind() != SymbolKind::Text || symbol.is_undefined() || symbol.address() == 0 {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        // `.symtab` names versioned definitions `clock_nanosleep@GLIBC_2.2.5`.
        let name = name.split('@').next().unwrap_or(name);
        if name.is_empty() {
            continue;
        }
        out.push((symbol.address(), symbol.size(), Arc::from(name)));
    }
}

/// The separate debug file of `elf`, by its build id, inside `root`.
fn debug_file(elf: &object::File<'_>, root: &Path) -> Option<Mmap> {
    let id = elf.build_id().ok()??;
    let (first, rest) = id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    let path = format!("{}/{first:02x}/{hex}.debug", super::BUILD_ID_DIR);
    let file: File = pymri_memory::open_in_root(root, Path::new(&path), MAX_DEBUG_FILE).ok()?;
    // SAFETY: a private read-only map of a regular file, parsed as untrusted input.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    // The debug file must describe this very build, not another one put at its path.
    let same = object::File::parse(&*map).ok()?.build_id().ok()?? == id;
    same.then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_respect_sizes_and_aliases() {
        let name = |n: &str| Arc::<str>::from(n);
        let symbols = Symbols::sorted(vec![
            (0x2000, 0, name("asm_stub")),
            (0x1000, 0x10, name("__getpid")),
            (0x1000, 0x10, name("getpid")),
        ]);
        assert_eq!(symbols.find(0x1004), Some((name("getpid"), 0x1000)));
        assert_eq!(symbols.find(0x1010), None, "past its size");
        assert_eq!(symbols.find(0xfff), None);
        assert_eq!(symbols.find(0x2345), Some((name("asm_stub"), 0x2000)));
    }
}
