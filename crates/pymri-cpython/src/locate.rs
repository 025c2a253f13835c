//! Finding `_PyRuntime`, the interpreter's version and its layout.

use crate::debug_offsets::{self, RemoteDebugOffsets, ThreadGilFlags};
use crate::objects::BuiltinTypes;
use crate::{Error, Result, Version};
use memmap2::Mmap;
use pymri_layouts::Layout;
use pymri_memory::{Mapping, Memory, MemoryExt};
use pymri_object::Elf;
use std::fs::File;
use std::io;

/// The files a target had mapped, and how to open them from here.
pub struct TargetFiles<'a> {
    pub mappings: &'a [Mapping],
    /// The executable's path as the target sees it.
    pub exe: Option<&'a str>,
    /// Opens a file by the path the target sees (inside its own root).
    pub open: &'a dyn Fn(&str) -> io::Result<File>,
}

/// A CPython runtime found in a target.
#[derive(Debug, Clone)]
pub struct Located {
    pub version: Version,
    pub layout: Layout,
    /// Address of `_PyRuntime`.
    pub runtime: u64,
    /// The file that holds the runtime (the executable or `libpython`), as the target sees it.
    pub binary: String,
    pub gil_flags: ThreadGilFlags,
    pub remote: Option<RemoteDebugOffsets>,
    /// `sizeof(_PyRuntimeState)`: published on 3.13+, the size of the `_PyRuntime` symbol
    /// before. Tells release and debug builds, and patch releases, apart.
    pub runtime_size: Option<u64>,
    /// Where the binary's linked addresses are in the target: add to a symbol's value.
    pub bias: u64,
    /// Where the builtin types pymri decodes by value live in the target.
    pub types: BuiltinTypes,
}

impl Located {
    /// The address in the target of a symbol the interpreter binary defines, such as
    /// `PyRun_SimpleString`.
    pub fn symbol(&self, files: &TargetFiles<'_>, name: &str) -> Result<Option<u64>> {
        let file = (files.open)(&self.binary)
            .map_err(|e| Error::NotPython { reason: format!("cannot reopen {}: {e}", self.binary) })?;
        // SAFETY: a read-only private map, as in `locate_in`.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::NotPython { reason: e.to_string() })?;
        let elf = Elf::parse(&map)?;
        Ok(elf.symbol(name).map(|s| self.bias.wrapping_add(s.value)))
    }
}

/// An interpreter binary larger than this is not one; it bounds the work spent on a wrong file.
const MAX_BINARY: u64 = 1 << 30;

/// Finds the CPython runtime among the target's mapped files.
pub fn locate<M: Memory>(mem: &M, files: &TargetFiles<'_>) -> Result<Located> {
    let candidates = candidates(files);
    if candidates.is_empty() {
        return Err(Error::NotPython { reason: "no python executable or libpython is mapped".into() });
    }
    let mut tried = Vec::new();
    for path in &candidates {
        match locate_in(mem, files, path)? {
            Some(found) => return Ok(found),
            None => tried.push(path.as_str()),
        }
    }
    Err(Error::NotPython {
        reason: format!("no mapped file defines _PyRuntime (looked in {})", tried.join(", ")),
    })
}

/// Files that may hold the runtime: `libpython` first (a shared build keeps it there), then
/// the executable, then anything else named like an interpreter.
fn candidates(files: &TargetFiles<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: &str| {
        if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    };
    let named = |m: &&Mapping| m.is_file() && basename(&m.path).starts_with("libpython3");
    for m in files.mappings.iter().filter(named) {
        push(&m.path);
    }
    if let Some(exe) = files.exe {
        push(exe);
    }
    for m in files.mappings.iter().filter(|m| m.is_file() && basename(&m.path).starts_with("python3")) {
        push(&m.path);
    }
    out
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A mapped file of the target, mapped here, if it opens and is not too large to be a binary.
pub(crate) fn map_binary(files: &TargetFiles<'_>, path: &str) -> Option<Mmap> {
    let file = (files.open)(path).ok()?;
    if file.metadata().map(|m| m.len() > MAX_BINARY).unwrap_or(true) {
        return None;
    }
    // SAFETY: a read-only private map; a binary replaced under us yields wrong bytes, which the
    // ELF parser and every later reader treat as untrusted.
    unsafe { Mmap::map(&file) }.ok()
}

/// The builtin type objects as the dynamic linker bound them. The executable comes first in
/// the lookup scope: a program linked without PIE that names `PyLong_Type` gets its own copy
/// of it (a copy relocation), which libpython then uses too, leaving its original unused.
fn builtin_types(files: &TargetFiles<'_>, path: &str, elf: &Elf<'_>, bias: u64) -> BuiltinTypes {
    let exe_map = files.exe.filter(|exe| *exe != path).and_then(|exe| Some((map_binary(files, exe)?, exe)));
    let exe = exe_map.as_ref().and_then(|(map, exe)| {
        let elf = Elf::parse(map).ok()?;
        let bias = load_bias(&elf, files.mappings, exe)?;
        Some((elf, bias))
    });
    BuiltinTypes::from_symbols(|name| {
        exe.as_ref()
            .and_then(|(exe, exe_bias)| exe.dynamic_symbol(name).map(|s| exe_bias.wrapping_add(s.value)))
            .or_else(|| elf.symbol(name).map(|s| bias.wrapping_add(s.value)))
    })
}

fn locate_in<M: Memory>(mem: &M, files: &TargetFiles<'_>, path: &str) -> Result<Option<Located>> {
    let Some(map) = map_binary(files, path) else { return Ok(None) };
    let Ok(elf) = Elf::parse(&map) else { return Ok(None) };
    let Some(bias) = load_bias(&elf, files.mappings, path) else { return Ok(None) };

    // 3.11 and 3.12 already have the section, but only 3.13+ start it with debug offsets.
    let section = elf.section_by_name(".PyRuntime");
    let mut head = vec![0u8; debug_offsets::MAX_SIZE];
    if let Some(section) = section.filter(|s| {
        mem.read(bias.wrapping_add(s.addr), &mut head).is_ok() && head.starts_with(debug_offsets::COOKIE)
    }) {
        let runtime = bias.wrapping_add(section.addr);
        let decoded = debug_offsets::decode(&head)?;
        let mut version = decoded.version;
        version.debug_build = is_debug_name(path);
        if decoded.free_threaded {
            return Err(Error::FreeThreaded { version });
        }
        return Ok(Some(Located {
            version,
            layout: decoded.layout,
            runtime,
            binary: path.to_string(),
            gil_flags: decoded.gil_flags,
            remote: decoded.remote,
            runtime_size: Some(decoded.runtime_size),
            bias,
            types: builtin_types(files, path, &elf, bias),
        }));
    }

    let Some(symbol) = elf.symbol("_PyRuntime") else { return Ok(None) };
    let runtime = bias.wrapping_add(symbol.value);
    let version = match elf.symbol("Py_Version") {
        // `Py_Version` (3.11+) holds PY_VERSION_HEX.
        Some(sym) => Version::from_hex(mem.read_u64(bias.wrapping_add(sym.value))?),
        None => version_from_name(path)
            .map(|(major, minor)| Version {
                major,
                minor,
                micro: micro_from_rodata(&elf, major, minor),
                level: "",
                serial: 0,
                debug_build: false,
            })
            .ok_or_else(|| Error::NotPython {
                reason: format!("cannot tell the Python version of {path}"),
            })?,
    };
    let version = Version { debug_build: is_debug_name(path), ..version };
    let layout = match (version.major, version.minor) {
        (3, 9) => pymri_layouts::v3_9(),
        (3, 10) => pymri_layouts::v3_10(),
        (3, 11) => pymri_layouts::v3_11(),
        (3, 12) => pymri_layouts::v3_12(),
        _ => return Err(Error::UnsupportedVersion { version }),
    };
    Ok(Some(Located {
        version,
        layout,
        runtime,
        binary: path.to_string(),
        gil_flags: ThreadGilFlags::default(),
        remote: None,
        runtime_size: (symbol.size > 0).then_some(symbol.size),
        bias,
        types: builtin_types(files, path, &elf, bias),
    }))
}

/// The difference between where the file's segments were linked and where they are mapped.
/// Zero for a fixed-address executable, the load address for PIE and shared libraries. It is
/// modular on purpose: a library prelinked above where it is mapped has a negative bias, and
/// `bias + linked address` wraps back to the mapped one. Whatever the addresses come to, they
/// are only read through `Memory`, which checks them.
fn load_bias(elf: &Elf<'_>, mappings: &[Mapping], path: &str) -> Option<u64> {
    const PAGE: u64 = 4096;
    let loads: Vec<_> = elf.program_headers().filter(|p| p.p_type == 1).collect();
    mappings.iter().filter(|m| m.path == path).find_map(|m| {
        let ph = loads.iter().find(|p| p.offset & !(PAGE - 1) == m.offset)?;
        Some(m.start.wrapping_sub(ph.vaddr & !(PAGE - 1)))
    })
}

/// `python3.9`, `libpython3.10.so.1.0`, `python3.14d` → `(3, minor)`.
fn version_from_name(path: &str) -> Option<(u8, u8)> {
    let name = basename(path);
    let at = name.find("python3.")? + "python3.".len();
    let digits: String = name[at..].chars().take_while(char::is_ascii_digit).collect();
    Some((3, digits.parse().ok()?))
}

fn is_debug_name(path: &str) -> bool {
    let name = basename(path);
    let Some(at) = name.find("python3.") else { return false };
    let rest = &name[at + "python3.".len()..];
    rest.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with('d')
}

/// Finds the micro version in the `PY_VERSION` string ("3.9.2") stored in `.rodata`, for the
/// versions that do not export `Py_Version`. The linker may merge the literal into the tail
/// of a longer string (`.../Python-3.10.13`), so a separator before it is accepted too.
fn micro_from_rodata(elf: &Elf<'_>, major: u8, minor: u8) -> Option<u8> {
    let rodata = elf.section_by_name(".rodata")?;
    let data = elf.section_data(&rodata)?;
    let needle = format!("{major}.{minor}.");
    let needle = needle.as_bytes();
    let mut start = 0;
    while let Some(pos) = find(&data[start..], needle) {
        let at = start + pos;
        let before = at.checked_sub(1).map(|i| data[i]);
        let rest = &data[at + needle.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let separated = matches!(before, None | Some(0) | Some(b'-') | Some(b'/'));
        if separated && (1..=3).contains(&digits) && matches!(rest.get(digits), Some(0) | Some(b'+')) {
            return std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
        }
        start = at + 1;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_debug_builds_are_read_from_names() {
        assert_eq!(version_from_name("/usr/bin/python3.9"), Some((3, 9)));
        assert_eq!(version_from_name("/usr/lib/x86_64-linux-gnu/libpython3.10.so.1.0"), Some((3, 10)));
        assert_eq!(version_from_name("/usr/bin/python3"), None);
        assert!(is_debug_name("/usr/bin/python3.14d"));
        assert!(is_debug_name("libpython3.14d.so.1.0"));
        assert!(!is_debug_name("/usr/bin/python3.14"));
    }

    #[test]
    fn libpython_is_tried_before_the_executable() {
        let mapping = |path: &str| Mapping {
            start: 0,
            end: 1,
            perms: *b"r--p",
            offset: 0,
            dev: (0, 0),
            inode: 0,
            path: path.into(),
        };
        let maps = [
            mapping("/usr/bin/python3.14d"),
            mapping("/usr/lib/libpython3.14d.so.1.0"),
            mapping("/usr/lib/libc.so.6"),
        ];
        let open = |_: &str| -> io::Result<File> { Err(io::ErrorKind::NotFound.into()) };
        let files = TargetFiles { mappings: &maps, exe: Some("/usr/bin/python3.14d"), open: &open };
        assert_eq!(candidates(&files), vec!["/usr/lib/libpython3.14d.so.1.0", "/usr/bin/python3.14d"]);
    }
}
