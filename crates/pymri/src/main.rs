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
mod repl;
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
        Command::Run(args) => {
            return match commands::run::run(run_options(args)) {
                // The program's own exit status.
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    printer::report_error(&e);
                    exit::status_of(&e).into()
                }
            };
        }
        Command::Web(args) => {
            return match commands::web::run(web_options(args)) {
                // A launched program's own exit status; 0 after an attach.
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    printer::report_error(&e);
                    exit::status_of(&e).into()
                }
            };
        }
        Command::Listen(args) => {
            let options = commands::listen::ListenOptions {
                address: args.address,
                tls: args.tls,
                secret: commands::remote::SecretSource::new(
                    args.secret.secret_file,
                    args.secret.secret_stdin,
                ),
                commands: args.commands,
            };
            return match commands::listen::run(options) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    printer::report_error(&e);
                    exit::status_of(&e).into()
                }
            };
        }
        Command::Connect(args) => commands::connect::run(commands::connect::ConnectOptions {
            address: args.address,
            secret: commands::remote::SecretSource::new(args.secret.secret_file, args.secret.secret_stdin),
            commands: args.commands,
        }),
        Command::Secret(args) => {
            commands::secret::run(commands::secret::SecretOptions { file: args.file }, &mut printer)
        }
        Command::Dap(args) => commands::dap::run(commands::dap::DapOptions { listen: args.listen }),
        Command::Attach(args) => commands::attach::run(commands::attach::AttachOptions {
            pid: args.pid,
            thread: args.thread,
            timeout: std::time::Duration::from_secs_f64(args.timeout.max(0.0)),
            commands: args.commands,
        })
        .map(|_| ()),
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

fn run_options(args: cli::RunArgs) -> commands::run::RunOptions {
    use commands::run::{Program, RunOptions};
    let (program, rest) = match args.module {
        Some(mut module) => {
            let rest = module.split_off(1);
            (Program::Module(module.remove(0)), rest)
        }
        None => {
            let mut target = args.target;
            let rest = target.split_off(1.min(target.len()));
            (Program::Script(target.pop().unwrap_or_default()), rest)
        }
    };
    RunOptions { python: args.python, root: args.root, commands: args.commands, program, args: rest }
}

fn web_options(args: cli::WebArgs) -> commands::web::WebOptions {
    use commands::web::{Program, WebOptions, WebTarget};
    let target = if let Some(pid) = args.pid {
        WebTarget::Attach {
            pid,
            thread: args.thread,
            timeout: std::time::Duration::from_secs_f64(args.timeout.max(0.0)),
        }
    } else if let Some(address) = args.connect {
        WebTarget::Connect {
            address,
            secret: commands::remote::SecretSource::new(args.secret_file, args.secret_stdin),
        }
    } else {
        let (program, rest) = match args.module {
            Some(mut module) => {
                let rest = module.split_off(1);
                (Program::Module(module.remove(0)), rest)
            }
            None => {
                let mut target = args.target;
                let rest = target.split_off(1.min(target.len()));
                (Program::Script(target.pop().unwrap_or_default()), rest)
            }
        };
        WebTarget::Launch { python: args.python, root: args.root, program, args: rest }
    };
    WebOptions { target, listen: args.listen, open: args.open }
}
