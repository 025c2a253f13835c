//! Opening a core file with the files its process mapped.

use anyhow::{anyhow, Context, Result};
use pymri_cpython::{locate, Located, TargetFiles};
use pymri_object::CoreFile;
use std::fs::File;
use std::path::Path;

/// A core file.
pub struct Core {
    pub core: CoreFile,
}

impl Core {
    pub fn open(path: &Path, exe: Option<&Path>, sysroot: Option<&Path>) -> Result<Core> {
        let core = CoreFile::open(path, exe, sysroot)
            .with_context(|| format!("cannot read core file {}", path.display()))?;
        Ok(Core { core })
    }

    pub fn locate(&self) -> Result<Located> {
        let open = |p: &str| File::open(self.core.resolve(p));
        let files = TargetFiles { mappings: self.core.mappings(), exe: self.core.exe(), open: &open };
        locate(&self.core, &files).map_err(|e| {
            let missing: Vec<String> = self
                .core
                .mappings()
                .iter()
                .filter(|m| m.path.contains("python"))
                .map(|m| m.path.clone())
                .filter(|p| !self.core.resolve(p).exists())
                .collect();
            let mut err = anyhow!(e);
            if let Some(first) = missing.first() {
                err = err.context(format!(
                    "the core's interpreter {first} is not on this machine\nhint: pass --sysroot DIR (the root the process ran in) or --exe PATH"
                ));
            }
            err
        })
    }

    pub fn known_tids(&self) -> Vec<i32> {
        self.core.threads().iter().map(|t| t.tid).collect()
    }
}
