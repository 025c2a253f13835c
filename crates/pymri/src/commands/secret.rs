//! `pymri secret [FILE]`: a new secret for remote sessions (`docs/transports.md` §3), written
//! to a new private file (mode 0600, never over an existing one) or printed on stdout.

use crate::printer::{note, Printer};
use anyhow::Result;
use pymri_transport::{secret, SharedSecret};
use std::path::PathBuf;

pub struct SecretOptions {
    pub file: Option<PathBuf>,
}

pub fn run(opts: SecretOptions, printer: &mut Printer) -> Result<()> {
    let made = SharedSecret::generate()?;
    match opts.file {
        Some(path) => {
            secret::write_new(&path, &made)?;
            note(&format!(
                "pymri: wrote a new secret to {} (mode 0600); give both sides --secret-file {}",
                path.display(),
                path.display()
            ));
        }
        None => {
            printer.write_str(&format!("{}\n", made.hex()))?;
            printer.flush()?;
        }
    }
    Ok(())
}
