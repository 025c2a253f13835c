//! Paths as the client sees them versus as the program sees them.
//!
//! A program run in a root (`"root"` in `launch`) or attached in a container names its files
//! inside that root, while the editor opens them on the host. Mappings are prefix pairs tried
//! in order (the user's `pathMappings` first, then the root's own); a path under no prefix is
//! the same on both sides.

use crate::types::PathMapping;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct PathMap {
    /// (local, remote), both normalised.
    pairs: Vec<(PathBuf, PathBuf)>,
}

impl PathMap {
    pub fn new(mappings: &[PathMapping]) -> PathMap {
        PathMap {
            pairs: mappings
                .iter()
                .map(|m| (normalise(Path::new(&m.local_root)), normalise(Path::new(&m.remote_root))))
                .collect(),
        }
    }

    /// Adds a mapping tried after the ones already there.
    pub fn push(&mut self, local: &Path, remote: &Path) {
        self.pairs.push((normalise(local), normalise(remote)));
    }

    /// The client's path for a path in the program.
    pub fn to_local(&self, remote: &str) -> String {
        Self::map(self.pairs.iter().map(|(l, r)| (r, l)), remote)
    }

    /// The program's path for a path in the client.
    pub fn to_remote(&self, local: &str) -> String {
        Self::map(self.pairs.iter().map(|(l, r)| (l, r)), local)
    }

    fn map<'a>(pairs: impl Iterator<Item = (&'a PathBuf, &'a PathBuf)>, path: &str) -> String {
        let p = Path::new(path);
        if !p.is_absolute() {
            return path.to_string();
        }
        let p = normalise(p);
        for (from, to) in pairs {
            if let Ok(rest) = p.strip_prefix(from) {
                return to.join(rest).to_string_lossy().into_owned();
            }
        }
        path.to_string()
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (the path may not exist here).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_and_user_mappings() {
        let mut map = PathMap::new(&[PathMapping {
            local_root: "/home/me/app/".into(),
            remote_root: "/srv/app".into(),
        }]);
        map.push(Path::new("/var/roots/sid"), Path::new("/"));
        assert_eq!(map.to_local("/srv/app/main.py"), "/home/me/app/main.py");
        assert_eq!(
            map.to_local("/usr/lib/python3.14/json/__init__.py"),
            "/var/roots/sid/usr/lib/python3.14/json/__init__.py"
        );
        assert_eq!(map.to_remote("/home/me/app/./pkg/../main.py"), "/srv/app/main.py");
        assert_eq!(map.to_remote("/var/roots/sid/tmp/x.py"), "/tmp/x.py");
        assert_eq!(map.to_remote("/elsewhere/x.py"), "/elsewhere/x.py");
        assert_eq!(map.to_local("<string>"), "<string>");
        // A prefix matches whole components only.
        assert_eq!(map.to_remote("/var/roots/sidecar/x.py"), "/var/roots/sidecar/x.py");
        assert_eq!(PathMap::default().to_local("/a/b.py"), "/a/b.py");
    }
}
