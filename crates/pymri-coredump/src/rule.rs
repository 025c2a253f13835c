//! Which bytes of a mapping go into the core: the kernel's own rule (`vma_dump_size` in
//! `fs/coredump.c`), driven by `/proc/PID/coredump_filter`, as far as it can be seen from
//! outside the process.

use crate::proc::{filter, Region};

/// What a core holds of one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dump {
    /// Nothing: the segment is described, its bytes are not in the file.
    Nothing,
    /// The first page: the ELF header of a mapped binary, which tells a reader what was mapped.
    FirstPage,
    /// Every byte.
    Whole,
    /// Every page that exists: private anonymous memory, whose pages never touched read as
    /// zeros and are left as holes in the file.
    Present,
}

/// Pseudo-mappings that are never read: the kernel's clock pages (`VM_IO`, not readable by
/// another process) and the legacy vsyscall page (execute-only on current kernels).
const NEVER: [&str; 3] = ["[vvar]", "[vvar_vclock]", "[vsyscall]"];

/// The rule for `region` under the filter bits `bits`. `executable_or_elf` answers, only when
/// needed, whether a private file mapping starting at offset 0 maps an executable file or one
/// that begins with an ELF header (what the kernel checks before dumping its first page).
pub(crate) fn dump_rule(region: &Region, bits: u32, executable_or_elf: impl FnOnce() -> bool) -> Dump {
    let map = &region.map;
    let has = |bit: u32| bits & bit != 0;
    // The kernel always dumps the vDSO: debuggers unwind through signal frames with it.
    if map.path == "[vdso]" {
        return Dump::Whole;
    }
    // The kernel reads unreadable memory through FOLL_FORCE; from outside, process_vm_readv
    // cannot, so such a mapping is described with no bytes.
    if map.perms[0] != b'r' || NEVER.contains(&map.path.as_str()) {
        return Dump::Nothing;
    }
    if region.flags.dont_dump || region.flags.io {
        return Dump::Nothing;
    }
    let shared = map.perms[3] == b's';
    if region.flags.hugetlb {
        let bit = if shared { filter::HUGETLB_SHARED } else { filter::HUGETLB_PRIVATE };
        return if has(bit) { Dump::Whole } else { Dump::Nothing };
    }
    if shared {
        // Shared memory without a name in the file system (MAP_SHARED|MAP_ANONYMOUS, memfd,
        // System V segments, a file deleted since) is what the kernel calls anonymous shared:
        // its inode has no link left, which maps shows as " (deleted)".
        let anonymous = !map.is_file() || map.path.ends_with(" (deleted)");
        let bit = if anonymous { filter::ANON_SHARED } else { filter::MAPPED_SHARED };
        return if has(bit) { Dump::Whole } else { Dump::Nothing };
    }
    if !map.is_file() {
        return if has(filter::ANON_PRIVATE) { Dump::Present } else { Dump::Nothing };
    }
    // A private file mapping with pages written since it was mapped holds anonymous pages: the
    // kernel dumps it whole under the anonymous-private bit.
    if region.anonymous > 0 && has(filter::ANON_PRIVATE) {
        return Dump::Whole;
    }
    if has(filter::MAPPED_PRIVATE) {
        return Dump::Whole;
    }
    if has(filter::ELF_HEADERS) && map.offset == 0 && executable_or_elf() {
        return Dump::FirstPage;
    }
    Dump::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::VmFlags;
    use pymri_memory::Mapping;

    fn region(perms: &[u8; 4], offset: u64, path: &str, anonymous: u64) -> Region {
        Region {
            map: Mapping {
                start: 0x1000,
                end: 0x5000,
                perms: *perms,
                offset,
                dev: (0, 0),
                inode: 0,
                path: path.into(),
            },
            rss: 0,
            anonymous,
            flags: VmFlags::default(),
        }
    }

    const LIB: &str = "/usr/lib/libpython3.11.so.1.0";

    #[test]
    fn the_default_filter_dumps_anonymous_memory_and_elf_headers() {
        let bits = filter::DEFAULT;
        let yes = || true;
        assert_eq!(dump_rule(&region(b"rw-p", 0, "", 0), bits, yes), Dump::Present);
        assert_eq!(dump_rule(&region(b"rw-p", 0, "[heap]", 0), bits, yes), Dump::Present);
        assert_eq!(dump_rule(&region(b"rw-p", 0, "[stack]", 0), bits, yes), Dump::Present);
        assert_eq!(dump_rule(&region(b"rw-s", 0, "/dev/zero (deleted)", 0), bits, yes), Dump::Whole);
        assert_eq!(dump_rule(&region(b"rw-s", 0, "/memfd:x (deleted)", 0), bits, yes), Dump::Whole);
        assert_eq!(dump_rule(&region(b"rw-s", 0, "/srv/data.bin", 0), bits, yes), Dump::Nothing);
        assert_eq!(dump_rule(&region(b"r--p", 0, LIB, 0), bits, yes), Dump::FirstPage);
        assert_eq!(dump_rule(&region(b"r--p", 0, LIB, 0), bits, || false), Dump::Nothing);
        assert_eq!(dump_rule(&region(b"r-xp", 0x1000, LIB, 0), bits, yes), Dump::Nothing);
        // .data after relocation: written, so copied on write.
        assert_eq!(dump_rule(&region(b"rw-p", 0x3000, LIB, 4096), bits, yes), Dump::Whole);
        assert_eq!(dump_rule(&region(b"r-xp", 0, "[vdso]", 0), bits, yes), Dump::Whole);
        for never in ["[vvar]", "[vvar_vclock]", "[vsyscall]"] {
            assert_eq!(dump_rule(&region(b"r--p", 0, never, 0), bits, yes), Dump::Nothing, "{never}");
        }
        assert_eq!(dump_rule(&region(b"---p", 0, "", 0), bits, yes), Dump::Nothing);
    }

    #[test]
    fn each_filter_bit_turns_its_kind_on_and_off() {
        let yes = || true;
        assert_eq!(dump_rule(&region(b"rw-p", 0, "", 0), 0, yes), Dump::Nothing);
        assert_eq!(dump_rule(&region(b"rw-s", 0, "", 0), filter::ANON_PRIVATE, yes), Dump::Nothing);
        assert_eq!(dump_rule(&region(b"r--p", 0x2000, LIB, 0), filter::MAPPED_PRIVATE, yes), Dump::Whole);
        assert_eq!(
            dump_rule(&region(b"rw-s", 0, "/srv/data.bin", 0), filter::MAPPED_SHARED, yes),
            Dump::Whole
        );
        // Without the ELF-headers bit, an unwritten binary leaves nothing at all.
        assert_eq!(dump_rule(&region(b"r--p", 0, LIB, 0), filter::ANON_PRIVATE, yes), Dump::Nothing);
        // Written pages of a file mapping count as anonymous memory.
        assert_eq!(dump_rule(&region(b"rw-p", 0x3000, LIB, 4096), filter::ELF_HEADERS, yes), Dump::Nothing);
        // The vDSO whatever the filter says.
        assert_eq!(dump_rule(&region(b"r-xp", 0, "[vdso]", 0), 0, yes), Dump::Whole);
    }

    #[test]
    fn dont_dump_io_and_hugetlb_follow_the_kernels_flags() {
        let yes = || true;
        let mut dd = region(b"rw-p", 0, "", 0);
        dd.flags.dont_dump = true;
        assert_eq!(dump_rule(&dd, filter::DEFAULT, yes), Dump::Nothing);
        let mut io = region(b"rw-s", 0, "/dev/mem", 0);
        io.flags.io = true;
        assert_eq!(dump_rule(&io, u32::MAX, yes), Dump::Nothing);
        let mut huge = region(b"rw-p", 0, "/anon_hugepage (deleted)", 0);
        huge.flags.hugetlb = true;
        assert_eq!(dump_rule(&huge, filter::DEFAULT, yes), Dump::Whole);
        assert_eq!(dump_rule(&huge, filter::ANON_PRIVATE, yes), Dump::Nothing);
        let mut huge_shared = region(b"rw-s", 0, "/anon_hugepage (deleted)", 0);
        huge_shared.flags.hugetlb = true;
        assert_eq!(dump_rule(&huge_shared, filter::DEFAULT, yes), Dump::Nothing);
        assert_eq!(dump_rule(&huge_shared, filter::HUGETLB_SHARED, yes), Dump::Whole);
    }
}
