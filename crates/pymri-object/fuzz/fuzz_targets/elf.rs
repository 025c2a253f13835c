//! Arbitrary bytes as an ELF file: every query pymri makes of an interpreter binary must
//! return an answer or an error, never panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pymri_object::Elf;

fuzz_target!(|data: &[u8]| {
    let Ok(elf) = Elf::parse(data) else { return };
    let _ = elf.section_by_name(".PyRuntime");
    let _ = elf.section_by_name(".rodata").and_then(|s| elf.section_data(&s));
    let _ = elf.symbol("_PyRuntime");
    let _ = elf.symbol("Py_Version");
    let _ = elf.first_load_vaddr();
    let _ = elf.notes();
    let _ = elf.program_headers().count();
});
