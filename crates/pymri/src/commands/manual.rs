//! `pymri completions SHELL` and `pymri man [COMMAND]`: shell completions and manual pages made
//! from the clap definitions at run time, so that they always describe the binary that prints
//! them (an installed wheel has no build directory to hold generated files).

use crate::cli::{Cli, CompletionShell};
use crate::printer::Printer;
use anyhow::{anyhow, Result};
use clap::CommandFactory;

pub fn completions(shell: CompletionShell, printer: &mut Printer) -> Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "pymri", &mut script);
    write(printer, script)
}

/// pymri(1), or pymri-COMMAND(1) for one command (as git names its pages).
pub fn man(name: Option<&str>, printer: &mut Printer) -> Result<()> {
    let mut top = Cli::command();
    // Gives each subcommand its full name (`pymri dump`) for its synopsis.
    top.build();
    let source = format!("pymri {}", env!("CARGO_PKG_VERSION"));
    let page = match name {
        None => clap_mangen::Man::new(top).source(source),
        Some(name) => {
            let sub = top
                .get_subcommands()
                .find(|c| c.get_name() == name && c.get_name() != "help")
                .cloned()
                .ok_or_else(|| anyhow!(UnknownCommand(name.to_owned())))?;
            let title = format!("pymri-{}", sub.get_name());
            clap_mangen::Man::new(sub).title(title).source(source)
        }
    };
    let mut roff = Vec::new();
    page.render(&mut roff).map_err(crate::printer::stdout_error)?;
    write(printer, roff)
}

/// `pymri man NAME` for a NAME that is not a command: a usage error (exit 2).
#[derive(Debug)]
pub struct UnknownCommand(pub String);

impl std::fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .filter(|n| n != "help")
            .collect();
        write!(f, "pymri has no command '{}'; pages exist for: {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownCommand {}

fn write(printer: &mut Printer, bytes: Vec<u8>) -> Result<()> {
    // clap's generators write what our own definitions say, all UTF-8.
    let text = String::from_utf8(bytes).map_err(|e| anyhow!("generated text is not UTF-8: {e}"))?;
    printer.write_str(&text)?;
    printer.flush()
}
