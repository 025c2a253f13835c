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
    /// The file the names are in (the module's, or its separate debug file).
    names: Option<Arc<Mmap>>,
    /// By start address (as the file states addresses): where the name lies in `names`.
    entries: Vec<Entry>,
}

/// A symbol, its name kept where it lies in the file: a library's table is tens of thousands
/// of symbols, and only a handful are ever shown.
#[derive(Clone, Copy)]
struct Entry {
    start: u64,
    size: u64,
    name_at: usize,
    name_len: u32,
    /// Leading underscores: of aliases, the name with the fewest is the one people call.
    underscores: u8,
}

impl Symbols {
    /// The function symbols of the file `map` holds, and of its separate debug file under
    /// `debug_root` when it has one: the fullest table wins (`.symtab` over `.dynsym`).
    pub(crate) fn of(map: &Arc<Mmap>, debug_root: Option<&Path>) -> Symbols {
        let none = Symbols { names: None, entries: Vec::new() };
        let Ok(elf) = object::File::parse(&***map) else { return none };
        if elf.section_by_name(".symtab").is_none() {
            if let Some(debug) = debug_root.and_then(|root| debug_file(&elf, root)) {
                let debug = Arc::new(debug);
                if let Ok(debug_elf) = object::File::parse(&**debug) {
                    let entries = collect(&debug, debug_elf.symbols());
                    if !entries.is_empty() {
                        return Symbols::sorted(debug.clone(), entries);
                    }
                }
            }
        }
        let mut entries = collect(map, elf.symbols());
        if entries.is_empty() {
            entries = collect(map, elf.dynamic_symbols());
        }
        Symbols::sorted(map.clone(), entries)
    }

    fn sorted(names: Arc<Mmap>, mut entries: Vec<Entry>) -> Symbols {
        entries.sort_unstable_by_key(|e| (e.start, e.underscores));
        entries.dedup_by_key(|e| e.start);
        Symbols { names: Some(names), entries }
    }

    /// The symbol holding `address` (as the file states addresses): its name and start.
    pub(crate) fn find(&self, address: u64) -> Option<(Arc<str>, u64)> {
        let index = self.entries.partition_point(|e| e.start <= address).checked_sub(1)?;
        let e = self.entries[index];
        // A symbol without a size (hand-written assembly) holds what follows it up to the next.
        if e.size != 0 && address - e.start >= e.size {
            return None;
        }
        let bytes = self.names.as_ref()?.get(e.name_at..e.name_at.checked_add(e.name_len as usize)?)?;
        Some((Arc::from(String::from_utf8_lossy(bytes).as_ref()), e.start))
    }
}

fn collect<'data, S: ObjectSymbol<'data>>(map: &Mmap, symbols: impl Iterator<Item = S>) -> Vec<Entry> {
    let base = map.as_ptr() as usize;
    let mut out = Vec::new();
    for symbol in symbols.take(MAX_SYMBOLS) {
        if symbol.kind() != SymbolKind::Text || symbol.is_undefined() || symbol.address() == 0 {
            continue;
        }
        let Ok(name) = symbol.name_bytes() else { continue };
        // `.symtab` names versioned definitions `clock_nanosleep@GLIBC_2.2.5`.
        let name = name.split(|&b| b == b'@').next().unwrap_or(name);
        let (Some(name_at), Ok(name_len)) =
            ((name.as_ptr() as usize).checked_sub(base), u32::try_from(name.len()))
        else {
            continue;
        };
        if name.is_empty() || name_at.checked_add(name.len()).is_none_or(|end| end > map.len()) {
            continue;
        }
        let underscores = name.iter().take_while(|&&b| b == b'_').count().min(255) as u8;
        out.push(Entry { start: symbol.address(), size: symbol.size(), name_at, name_len, underscores });
    }
    out
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
        let mut file = tempfile_with(b"__getpid\0getpid\0asm_stub\0");
        let map = Arc::new(unsafe_map(&mut file));
        let entry = |start, size, name_at, name_len, underscores| Entry {
            start,
            size,
            name_at,
            name_len,
            underscores,
        };
        let symbols = Symbols::sorted(
            map,
            vec![entry(0x2000, 0, 16, 8, 0), entry(0x1000, 0x10, 0, 8, 2), entry(0x1000, 0x10, 9, 6, 0)],
        );
        let name = |n: &str| Arc::<str>::from(n);
        assert_eq!(symbols.find(0x1004), Some((name("getpid"), 0x1000)));
        assert_eq!(symbols.find(0x1010), None, "past its size");
        assert_eq!(symbols.find(0xfff), None);
        assert_eq!(symbols.find(0x2345), Some((name("asm_stub"), 0x2000)));
    }

    fn tempfile_with(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("pymri-native-symbols-{}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    fn unsafe_map(file: &mut File) -> Mmap {
        // SAFETY: a private file of this test, unchanged while mapped.
        unsafe { Mmap::map(&*file) }.unwrap()
    }
}
