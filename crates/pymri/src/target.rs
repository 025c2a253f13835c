//! Opening a core file with the files its process mapped.

use anyhow::{anyhow, Context, Result};
use pymri_cpython::{locate, Located, TargetFiles};
use pymri_object::CoreFile;
use std::path::Path;

/// A core file.
pub struct Core {
    pub core: CoreFile,
    sysroot: Option<std::path::PathBuf>,
}

impl Core {
    pub fn open(path: &Path, exe: Option<&Path>, sysroot: Option<&Path>) -> Result<Core> {
        let core = CoreFile::open(path, exe, sysroot)
            .with_context(|| format!("cannot read core file {}", path.display()))?;
        Ok(Core { core, sysroot: sysroot.map(Path::to_path_buf) })
    }

    pub fn locate(&self) -> Result<Located> {
        let open = |p: &str| self.core.open_mapped_file(p);
        let files = TargetFiles { mappings: self.core.mappings(), exe: self.core.exe(), open: &open };
        locate(&self.core, &files).map_err(|e| {
            let unopened = self
                .core
                .mappings()
                .iter()
                .filter(|m| m.path.contains("python"))
                .find_map(|m| Some((m.path.clone(), self.core.open_mapped_file(&m.path).err()?)));
            let mut err = anyhow!(e);
            match unopened {
                Some((path, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    err = err.context(match &self.sysroot {
                        None => format!(
                            "the core's interpreter {path} is not on this machine\nhint: pass --sysroot DIR (the root the process ran in) or --exe PATH"
                        ),
                        Some(root) => format!(
                            "the core's interpreter {path} is neither under --sysroot {} nor on this machine\nhint: pass the root the process ran in as --sysroot, or --exe PATH",
                            root.display()
                        ),
                    });
                }
                Some((path, e)) => err = err.context(format!("cannot open the core's interpreter {path}: {e}")),
                None => {}
            }
            err
        })
    }

    /// Runs `f` with the files the core's process mapped, as `locate` and `Located::tasks`
    /// take them.
    pub fn with_files<T>(&self, f: impl FnOnce(&TargetFiles<'_>) -> T) -> T {
        let open = |p: &str| self.core.open_mapped_file(p);
        f(&TargetFiles { mappings: self.core.mappings(), exe: self.core.exe(), open: &open })
    }

    pub fn known_tids(&self) -> Vec<i32> {
        self.core.threads().iter().map(|t| t.tid).collect()
    }
}

/// A path the kernel or a core reported for a process, as the process itself sees it: without
/// the root directory it runs in, when the path holds it. `ps` and `dump` (text and JSON) name a
/// target's files this way; their `root` says where that root is on this machine.
pub fn inside_root(path: &str, root: Option<&str>) -> String {
    let Some(root) = root else { return path.to_owned() };
    match Path::new(path).strip_prefix(root) {
        Ok(rest) if root != "/" => format!("/{}", rest.display()),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::inside_root;

    #[test]
    fn paths_lose_their_root_by_whole_components() {
        assert_eq!(inside_root("/srv/root/usr/bin/python3", Some("/srv/root")), "/usr/bin/python3");
        assert_eq!(
            inside_root("/srv/rootfs/usr/bin/python3", Some("/srv/root")),
            "/srv/rootfs/usr/bin/python3"
        );
        assert_eq!(inside_root("/usr/bin/python3", Some("/srv/root")), "/usr/bin/python3");
        assert_eq!(inside_root("/usr/bin/python3", Some("/")), "/usr/bin/python3");
        assert_eq!(inside_root("/usr/bin/python3", None), "/usr/bin/python3");
    }
}
