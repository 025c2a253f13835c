//! Source lines of the target's files, read as the target sees them: inside its root (a
//! container's files, not the host's), regular files only, bounded, never through a link out
//! of the root. A file that cannot be read that way has no lines to show, which is no error.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A source file larger than this is not read.
const MAX_SOURCE: u64 = 8 << 20;
/// Files read for one report.
const MAX_FILES: usize = 256;

pub struct Sources {
    root: PathBuf,
    files: HashMap<String, Option<Vec<String>>>,
}

impl Sources {
    /// Files under `root` (a core file's system root).
    pub fn in_root(root: PathBuf) -> Sources {
        Sources { root, files: HashMap::new() }
    }

    /// Line `line` (from 1) of `file`, as the target's code has it.
    pub fn line(&mut self, file: &str, line: i32) -> Option<String> {
        if !self.files.contains_key(file) {
            if self.files.len() >= MAX_FILES {
                return None;
            }
            let lines = self.read(file);
            self.files.insert(file.to_string(), lines);
        }
        let lines = self.files.get(file)?.as_ref()?;
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        lines.get(index).cloned()
    }

    fn read(&self, file: &str) -> Option<Vec<String>> {
        let path = Path::new(file);
        if !path.is_absolute() {
            return None;
        }
        let mut f = pymri_memory::open_in_root(&self.root, path, MAX_SOURCE).ok()?;
        let mut bytes = Vec::new();
        f.by_ref().take(MAX_SOURCE).read_to_end(&mut bytes).ok()?;
        Some(String::from_utf8_lossy(&bytes).lines().map(str::to_string).collect())
    }
}
