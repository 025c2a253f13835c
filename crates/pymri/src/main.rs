//! `pymri`: look inside running Python processes.
//!
//! This binary parses arguments, turns them into each command's options, runs the command and
//! maps its outcome to a documented exit status. All reading of interpreters lives in the
//! library crates (`pymri-cpython` and below); this crate owns presentation only.

mod cli;
mod commands;
mod exit;
mod printer;
mod render;
mod target;

use clap::Parser;
use cli::{Cli, Command};
use exit::Status;
use printer::{BrokenPipe, Printer};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut printer = Printer::new();
    let result = match cli.command {
        Command::Ps(args) => commands::ps::run(commands::ps::PsOptions { json: args.json }, &mut printer),
        Command::Dump(args) => commands::dump::run(
            commands::dump::DumpOptions {
                pid: args.pid,
                core: args.core,
                exe: args.exe,
                sysroot: args.sysroot,
                locals: args.locals,
                json: args.json,
                blocking: args.blocking,
            },
            &mut printer,
        ),
    };
    match result {
        Ok(()) => Status::Success.into(),
        // The reader went away (`pymri dump PID | head`): nothing left to say.
        Err(e) if e.is::<BrokenPipe>() => Status::Success.into(),
        Err(e) => {
            printer::report_error(&e);
            exit::status_of(&e).into()
        }
    }
}
