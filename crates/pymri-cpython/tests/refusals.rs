//! Interpreters pymri must refuse, exercised on a real 3.14 binary whose `_Py_DebugOffsets`
//! (initialised data of its `.PyRuntime` section) is patched the way a free-threaded or a
//! future build would differ. Debian ships neither build, so this is the honest way to run
//! `locate` through those paths.

use pymri_cpython::{locate, Error, TargetFiles};
use pymri_memory::{Mapping, SliceMemory};
use pymri_object::Elf;
use std::fs::File;
use std::path::PathBuf;

fn python314() -> PathBuf {
    let text = std::env::var("PYMRI_INTERPRETERS").ok().unwrap_or_else(|| {
        let roots = std::env::var("PYMRI_ROOTS").unwrap_or_else(|_| "/var/cache/pymri/roots".into());
        std::fs::read_to_string(format!("{roots}/interpreters.env")).unwrap_or_default()
    });
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("PYTHON314="))
        .expect("PYTHON314 is provisioned (run scripts/provision-interpreters.sh)");
    let (root, exe) = line.split_once(':').expect("ROOT:EXE");
    PathBuf::from(root).join(exe.trim_start_matches('/'))
}

/// Runs `locate` over the binary's own bytes, with its `.PyRuntime` data patched by `patch`.
fn locate_patched(patch: impl FnOnce(&mut [u8])) -> Result<pymri_cpython::Located, Error> {
    let path = python314();
    let bytes = std::fs::read(&path).expect("read python3.14");
    let elf = Elf::parse(&bytes).expect("ELF");
    let section = elf.section_by_name(".PyRuntime").expect(".PyRuntime");
    let mut runtime = elf.section_data(&section).expect("section data").to_vec();
    patch(&mut runtime);
    let mem = SliceMemory { base: section.addr, bytes: &runtime };
    let first = elf.first_load_vaddr().expect("PT_LOAD");
    let name = path.to_str().expect("utf-8").to_string();
    let mapping = Mapping {
        start: first,
        end: first + 0x1000,
        perms: *b"r--p",
        offset: 0,
        dev: (0, 0),
        inode: 0,
        path: name.clone(),
    };
    let open = |_: &str| File::open(&path);
    let files = TargetFiles { mappings: std::slice::from_ref(&mapping), exe: Some(&name), open: &open };
    locate(&mem, &files)
}

#[test]
fn the_unpatched_binary_is_accepted() {
    let located = locate_patched(|_| {}).expect("a real 3.14 is readable");
    assert_eq!((located.version.major, located.version.minor), (3, 14));
}

#[test]
fn a_free_threaded_build_is_refused() {
    let err = locate_patched(|rt| rt[16..24].copy_from_slice(&1u64.to_le_bytes())).expect_err("refused");
    assert!(matches!(err, Error::FreeThreaded { .. }), "{err}");
    assert_eq!(err.to_string(), "Python 3.14.10 is a free-threaded build, which pymri does not read yet");
}

#[test]
fn a_version_without_a_table_is_refused() {
    let err =
        locate_patched(|rt| rt[8..16].copy_from_slice(&0x031000f0u64.to_le_bytes())).expect_err("refused");
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
    assert!(err.to_string().starts_with("Python 3.16.0 is not supported"), "{err}");
}

#[test]
fn a_corrupt_table_is_refused_not_trusted() {
    // thread_state.size = 8 while its fields lie beyond it.
    let err = locate_patched(|rt| rt[176..184].copy_from_slice(&8u64.to_le_bytes())).expect_err("refused");
    assert!(matches!(err, Error::Inconsistent(_)), "{err}");
}
