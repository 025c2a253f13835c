//! Embeds every `.py` file of `python/pymri_agent` so the binary carries the agent it injects.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/pymri_agent");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("python/pymri_agent exists")
        .filter_map(|e| {
            let e = e.ok()?;
            println!("cargo:rerun-if-changed={}", e.path().display());
            let name = e.file_name().into_string().ok()?;
            name.ends_with(".py").then_some(name)
        })
        .collect();
    names.sort();
    let mut out = String::from("/// `(file name, contents)` of every module of the agent package.\npub static FILES: &[(&str, &str)] = &[\n");
    for name in names {
        let path = dir.join(&name).canonicalize().expect("agent file");
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string()).expect("write");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("files.rs");
    std::fs::write(dest, out).expect("write files.rs");
}
