//! Command-line arguments. They are turned into plain option structs before reaching the
//! commands, so nothing below this module depends on clap.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "pymri",
    version,
    about = "Look inside running Python processes without stopping them",
    long_about = "Look inside running Python processes without stopping them.\n\n\
                  Exit status: 0 success, 1 the target or input is at fault, 2 usage error,\n\
                  3 no such process or file, 4 permission denied, 5 unsupported interpreter."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List the Python processes on this machine
    Ps(PsArgs),
    /// Print every thread's Python stack of a live process or a core file
    Dump(DumpArgs),
}

#[derive(Args)]
pub struct PsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "core"])))]
pub struct DumpArgs {
    /// Process id of a running Python program
    pub pid: Option<i32>,
    /// Read a core file (from gcore or a crash) instead of a live process
    #[arg(long, value_name = "FILE")]
    pub core: Option<PathBuf>,
    /// The Python executable that produced the core, when it has moved since
    #[arg(long, value_name = "PATH", requires = "core")]
    pub exe: Option<PathBuf>,
    /// Directory the core's process saw as `/` (a container's or chroot's root)
    #[arg(long, value_name = "DIR", requires = "core")]
    pub sysroot: Option<PathBuf>,
    /// Show each frame's arguments and local variables
    #[arg(short, long)]
    pub locals: bool,
    /// Print JSON (schema in the README)
    #[arg(long)]
    pub json: bool,
    /// Stop every thread while reading, for a consistent snapshot; they always resume
    #[arg(long, conflicts_with = "core")]
    pub blocking: bool,
}
