//! The in-target agent (`python/pymri_agent`), embedded in the binary.
//!
//! `pymri attach` and `pymri run` write these files into a private directory the target can
//! read and import the package from there; nothing has to be installed in the target's
//! environment. The package name inside the target is [`PACKAGE`].

include!(concat!(env!("OUT_DIR"), "/files.rs"));

/// The import name of the agent package.
pub const PACKAGE: &str = "pymri_agent";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_and_its_init_are_embedded() {
        assert!(FILES.iter().any(|(name, _)| *name == "__init__.py"));
        assert!(FILES.iter().all(|(name, text)| name.ends_with(".py") && !text.is_empty()));
    }
}
