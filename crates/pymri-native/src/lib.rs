//! Native (C) stacks of a process: unwinding from a thread's registers, and naming each frame.
//!
//! [`Modules`] holds what is learned once per process: the ELF files it mapped (found through
//! the caller's `open`, which for pymri resolves paths inside the target's root and opens only
//! regular files of bounded size), each one's unwind rules (`.eh_frame` with its
//! `.eh_frame_hdr` index, else `.debug_frame`) handed to `framehop`, and, on first use, its
//! symbols (`.symtab`, else `.dynsym`; a separate debug file found by build id under
//! `/usr/lib/debug/.build-id` when there is one). [`Modules::unwind`] then walks one thread's
//! stack from its registers, reading stack memory through [`pymri_memory::Memory`], so a live
//! process and a core file are unwound alike; a caller sampling again keeps the `Modules`.
//!
//! Every input is hostile: the files are parsed by `object` and `gimli` (bounds-checked), a
//! stack has at most [`MAX_FRAMES`] frames, and a walk that stops early says why.
//!
//! Non-goals: other architectures than x86_64, DWARF line information, demangling, registers
//! other than the instruction, stack and frame pointers.

mod symbols;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use memmap2::Mmap;
use object::{Object, ObjectSection, ObjectSegment};
use pymri_memory::{Mapping, Memory};
use std::cell::OnceCell;
use std::fs::File;
use std::io;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use symbols::Symbols;

pub use pymri_memory::Registers;

/// Frames of one native stack at most: a deeper walk is cut, and says so.
pub const MAX_FRAMES: usize = 1024;

/// Where separate debug files live, by build id, inside the target's root.
const BUILD_ID_DIR: &str = "/usr/lib/debug/.build-id";

/// One native frame, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFrame {
    /// The instruction pointer (innermost frame) or the return address (every other frame).
    pub address: u64,
    /// The mapped file it lies in, as the target names it.
    pub module: Option<Arc<str>>,
    /// The function it lies in, when a symbol table covers it.
    pub symbol: Option<Arc<str>>,
    /// Bytes from the symbol's start (or from the module's load address when there is no
    /// symbol) to the instruction.
    pub offset: u64,
    /// The stack pointer in this frame: its locals lie from here up to the next (outer)
    /// frame's stack pointer.
    pub stack_pointer: u64,
}

impl NativeFrame {
    /// Whether this frame is CPython's bytecode interpreter: `_PyEval_EvalFrameDefault` (and
    /// its `.cold` part), or one of the 3.14+ tail-calling interpreter's instruction functions.
    pub fn is_interpreter(&self) -> bool {
        self.symbol.as_deref().is_some_and(|s| {
            s == "_PyEval_EvalFrameDefault"
                || s.starts_with("_PyEval_EvalFrameDefault.")
                || s.starts_with("_TAIL_CALL_")
        })
    }
}

/// A thread's native stack.
#[derive(Debug, Clone, Default)]
pub struct NativeStack {
    pub frames: Vec<NativeFrame>,
    /// Why the walk stopped before the stack's end, when it did.
    pub error: Option<String>,
}

/// Bytes of a section inside a mapped file, as framehop takes them.
#[derive(Clone)]
struct SectionBytes {
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl Deref for SectionBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // The range was checked against the map when it was made.
        &self.map[self.range.clone()]
    }
}

/// One mapped ELF file.
struct ModuleInfo {
    path: Arc<str>,
    range: Range<u64>,
    /// What to add to an address the file states to get the address in the process.
    bias: u64,
    map: Arc<Mmap>,
    symbols: OnceCell<Symbols>,
}

/// The files a process mapped, ready to unwind and name its threads' frames.
pub struct Modules {
    modules: Vec<ModuleInfo>,
    unwinder: UnwinderX86_64<SectionBytes>,
    cache: CacheX86_64,
    debug_root: Option<PathBuf>,
}

impl Modules {
    /// Reads the modules among `mappings`. `open` opens a file by the path the target sees;
    /// `debug_root` is the directory the target sees as `/`, where separate debug files are
    /// looked for (`None`: none are looked for). A file that cannot be opened or parsed leaves
    /// its addresses unnamed, and frame pointers unwind through it.
    pub fn new(
        mappings: &[Mapping],
        open: &dyn Fn(&str) -> io::Result<File>,
        debug_root: Option<&Path>,
    ) -> Modules {
        let mut modules: Vec<ModuleInfo> = Vec::new();
        let mut unwinder = UnwinderX86_64::new();
        let mut files: Vec<&str> = Vec::new();
        for m in mappings.iter().filter(|m| m.path.starts_with('/')) {
            if !files.contains(&m.path.as_str()) {
                files.push(&m.path);
            }
        }
        for path in files {
            let Some(info) = load(path, mappings, open) else { continue };
            let module =
                Module::new(path.to_string(), info.range.clone(), info.bias, section_info(&info.map));
            unwinder.add_module(module);
            modules.push(info);
        }
        modules.sort_by_key(|m| m.range.start);
        Modules {
            modules,
            unwinder,
            cache: CacheX86_64::new(),
            debug_root: debug_root.map(Path::to_path_buf),
        }
    }

    /// Walks one thread's stack from `registers`, innermost frame first. The thread must not
    /// run meanwhile (a stopped thread, or a core).
    pub fn unwind<M: Memory + ?Sized>(&mut self, mem: &M, registers: Registers) -> NativeStack {
        let mut read_stack = |addr: u64| {
            let mut word = [0u8; 8];
            mem.read(addr, &mut word).map(|()| u64::from_le_bytes(word)).map_err(|_| ())
        };
        let mut regs = UnwindRegsX86_64::new(registers.ip, registers.sp, registers.bp);
        let mut address = FrameAddress::from_instruction_pointer(registers.ip);
        // Each frame with the stack pointer it ran with: unwinding one frame leaves `regs`
        // as its caller had them.
        let mut addresses = vec![(address, regs.sp())];
        let mut error = None;
        loop {
            match self.unwinder.unwind_frame(address, &mut regs, &mut self.cache, &mut read_stack) {
                Ok(Some(_)) if addresses.len() >= MAX_FRAMES => {
                    error = Some(format!("native stack cut at {MAX_FRAMES} frames"));
                    break;
                }
                Ok(Some(next)) => match FrameAddress::from_return_address(next) {
                    Some(next) => {
                        address = next;
                        addresses.push((next, regs.sp()));
                    }
                    None => break,
                },
                Ok(None) => break,
                Err(e) => {
                    error = Some(format!("native stack unwound in part: {e}"));
                    break;
                }
            }
        }
        let frames = addresses.into_iter().map(|(a, sp)| self.frame(a, sp)).collect();
        NativeStack { frames, error }
    }

    fn frame(&self, address: FrameAddress, stack_pointer: u64) -> NativeFrame {
        let shown = address.address();
        // A return address is the instruction after the call: the call itself is one byte
        // back, which keeps a call that ends a function inside that function.
        let lookup = address.address_for_lookup();
        let index = self.modules.partition_point(|m| m.range.start <= lookup);
        let Some(module) = index.checked_sub(1).map(|i| &self.modules[i]).filter(|m| lookup < m.range.end)
        else {
            return NativeFrame { address: shown, module: None, symbol: None, offset: 0, stack_pointer };
        };
        let stated = lookup.wrapping_sub(module.bias);
        let symbols = module.symbols.get_or_init(|| Symbols::of(&module.map, self.debug_root.as_deref()));
        match symbols.find(stated) {
            Some((name, start)) => NativeFrame {
                address: shown,
                module: Some(module.path.clone()),
                symbol: Some(name),
                offset: shown.wrapping_sub(module.bias).wrapping_sub(start),
                stack_pointer,
            },
            None => NativeFrame {
                address: shown,
                module: Some(module.path.clone()),
                symbol: None,
                offset: shown.wrapping_sub(module.range.start),
                stack_pointer,
            },
        }
    }
}

/// Maps `path` and works out where it is loaded from the mappings of it.
fn load(path: &str, mappings: &[Mapping], open: &dyn Fn(&str) -> io::Result<File>) -> Option<ModuleInfo> {
    let own: Vec<&Mapping> = mappings.iter().filter(|m| m.path == path).collect();
    let start = own.iter().map(|m| m.start).min()?;
    let end = own.iter().map(|m| m.end).max()?;
    let file = open(path).ok()?;
    // SAFETY: a private read-only map; a file changed under it yields wrong bytes at worst,
    // which every parser here treats as untrusted input anyway.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    let elf = object::File::parse(&*map).ok()?;
    let first = own.iter().min_by_key(|m| m.offset)?;
    let bias = load_bias(&elf, first)?;
    Some(ModuleInfo {
        path: Arc::from(path),
        range: start..end,
        bias,
        map: Arc::new(map),
        symbols: OnceCell::new(),
    })
}

/// The difference between where the file's bytes at `mapping.offset` are in the process and
/// where the file says they go: the loadable segment holding that offset tells.
fn load_bias(elf: &object::File<'_>, mapping: &Mapping) -> Option<u64> {
    const PAGE: u64 = 4096;
    elf.segments().find_map(|segment| {
        let (offset, size) = segment.file_range();
        let page_start = offset & !(PAGE - 1);
        if !(page_start <= mapping.offset && mapping.offset < offset.checked_add(size.max(1))?) {
            return None;
        }
        // The address the file states for the byte at `mapping.offset`.
        let stated = segment.address().checked_add(mapping.offset)?.checked_sub(offset)?;
        Some(mapping.start.wrapping_sub(stated))
    })
}

/// The sections framehop unwinds with, as they lie in the mapped file.
fn section_info(map: &Arc<Mmap>) -> ExplicitModuleSectionInfo<SectionBytes> {
    let mut info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: None,
        text: None,
        stubs_svma: None,
        stub_helper_svma: None,
        got_svma: None,
        unwind_info: None,
        eh_frame_svma: None,
        eh_frame: None,
        eh_frame_hdr_svma: None,
        eh_frame_hdr: None,
        debug_frame: None,
        text_segment_svma: None,
        text_segment: None,
    };
    let Ok(elf) = object::File::parse(&***map) else { return info };
    let section = |name: &str| {
        let s = elf.section_by_name(name)?;
        let (offset, size) = s.file_range()?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        map.get(start..end)?;
        let svma = s.address()..s.address().checked_add(s.size())?;
        Some((svma, SectionBytes { map: map.clone(), range: start..end }))
    };
    let svma = |name: &str| {
        elf.section_by_name(name).and_then(|s| Some(s.address()..s.address().checked_add(s.size())?))
    };
    info.text_svma = svma(".text");
    info.got_svma = svma(".got");
    if let Some((range, bytes)) = section(".eh_frame") {
        info.eh_frame_svma = Some(range);
        info.eh_frame = Some(bytes);
    }
    if let Some((range, bytes)) = section(".eh_frame_hdr") {
        info.eh_frame_hdr_svma = Some(range);
        info.eh_frame_hdr = Some(bytes);
    }
    if let Some((_, bytes)) = section(".debug_frame") {
        info.debug_frame = Some(bytes);
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use pymri_memory::parse_maps;

    #[test]
    fn interpreter_frames_are_recognised_by_name() {
        let frame = |name: &str| NativeFrame {
            address: 1,
            module: None,
            symbol: Some(Arc::from(name)),
            offset: 0,
            stack_pointer: 0,
        };
        assert!(frame("_PyEval_EvalFrameDefault").is_interpreter());
        assert!(frame("_PyEval_EvalFrameDefault.cold").is_interpreter());
        assert!(frame("_TAIL_CALL_CALL_PY_EXACT_ARGS").is_interpreter());
        assert!(!frame("_PyEval_EvalFrame").is_interpreter());
        assert!(!frame("_PyEval_Vector").is_interpreter());
        assert!(!NativeFrame { symbol: None, ..frame("x") }.is_interpreter());
    }

    /// Our own process: libc is mapped, and its exported `getpid` is found at its address.
    #[test]
    fn symbols_of_a_mapped_library_are_found_at_their_load_address() {
        let maps = parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap());
        let open = |p: &str| File::open(p);
        let modules = Modules::new(&maps, &open, None);
        let getpid = libc::getpid as *const () as u64;
        let frame = modules.frame(FrameAddress::from_instruction_pointer(getpid + 2), 0);
        assert!(frame.module.as_deref().is_some_and(|m| m.contains("libc")), "{frame:?}");
        assert_eq!(frame.symbol.as_deref(), Some("getpid"), "{frame:?}");
        assert_eq!(frame.offset, 2);
    }
}
