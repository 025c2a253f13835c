//! `pymri`: look inside running Python processes.
//!
//! This binary parses arguments, turns them into each command's options, runs the command and
//! maps its outcome to a documented exit status. All reading of interpreters lives in the
//! library crates (`pymri-cpython` and below); this crate owns presentation only.

mod cli;
mod commands;
mod escape;
mod exit;
mod native;
mod printer;
mod render;
mod repl;
mod sampling;
mod target;

use clap::Parser;
use cli::{Cli, Command};
use exit::Status;
use printer::{BrokenPipe, Printer};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut printer = Printer::new();
    // Ok: pymri's exit status (`run`, `web` launching a program: the program's own).
    let result: anyhow::Result<u8> = match cli.command {
        Command::Run(args) => commands::run::run(run_options(args)),
        Command::Web(args) => commands::web::run(web_options(args)),
        Command::Listen(args) => commands::listen::run(commands::listen::ListenOptions {
            address: args.address,
            tls: args.tls,
            secret: commands::remote::SecretSource::new(args.secret.secret_file, args.secret.secret_stdin),
            commands: args.commands,
        }),
        Command::Connect(args) => commands::connect::run(commands::connect::ConnectOptions {
            address: args.address,
            secret: commands::remote::SecretSource::new(args.secret.secret_file, args.secret.secret_stdin),
            commands: args.commands,
        })
        .map(success),
        Command::Secret(args) => {
            commands::secret::run(commands::secret::SecretOptions { file: args.file }, &mut printer)
                .map(success)
        }
        Command::Completions(args) => commands::manual::completions(args.shell, &mut printer).map(success),
        Command::Man(args) => commands::manual::man(args.command.as_deref(), &mut printer).map(success),
        Command::Dap(args) => {
            commands::dap::run(commands::dap::DapOptions { listen: args.listen }).map(success)
        }
        Command::Attach(args) => commands::attach::run(commands::attach::AttachOptions {
            pid: args.pid,
            thread: args.thread,
            timeout: args.timeout,
            commands: args.commands,
        })
        .map(success),
        Command::Exec(args) => commands::exec::run(commands::exec::ExecOptions {
            pid: args.pid,
            thread: args.thread,
            timeout: args.timeout,
            // clap lets exactly one of -c and FILE through.
            code: match args.file {
                Some(path) if path.as_os_str() == "-" => commands::exec::Code::Stdin,
                Some(path) => commands::exec::Code::File(path),
                None => commands::exec::Code::Inline(args.command.unwrap_or_default()),
            },
        }),
        Command::Ps(args) => {
            commands::ps::run(commands::ps::PsOptions { json: args.json, tree: args.tree }, &mut printer)
                .map(success)
        }
        Command::Record(args) => commands::record::run(record_options(args)),
        Command::Trace(args) => commands::trace::run(trace_options(args), &mut printer),
        Command::Top(args) => commands::top::run(top_options(args)),
        Command::Compare(args) => commands::compare::run(
            commands::compare::CompareOptions { files: args.files, json: args.json },
            &mut printer,
        )
        .map(success),
        Command::Doctor(args) => commands::doctor::run(
            commands::doctor::DoctorOptions {
                // With --core the pid is the core's own, read from it.
                pid: args.pid.unwrap_or_default(),
                duration: args.duration,
                rate: args.rate,
                json: args.json,
                html: args.html,
                only: args.only,
                no_inject: args.no_inject,
                expect: args.expect,
                core: args.core,
                exe: args.exe,
                sysroot: args.sysroot,
            },
            &mut printer,
        ),
        Command::Snapshot(args) => commands::snapshot::run(commands::snapshot::SnapshotOptions {
            pid: args.pid,
            output: args.output,
            force: args.force,
            max_buffer: args.max_buffer,
        })
        .map(success),
        Command::Dump(args) => commands::dump::run(
            commands::dump::DumpOptions {
                pid: args.pid,
                core: args.core,
                exe: args.exe,
                sysroot: args.sysroot,
                locals: args.locals,
                json: args.json,
                blocking: args.blocking,
                subprocesses: args.subprocesses,
                more: args.more,
                matching: args.matching,
                group: args.group,
                array_values: if args.values { 1 << 20 } else { 0 },
                tasks: args.tasks.map(|form| match form {
                    cli::TasksForm::List => commands::dump::TasksForm::List,
                    cli::TasksForm::Tree => commands::dump::TasksForm::Tree,
                    cli::TasksForm::Table => commands::dump::TasksForm::Table,
                }),
                native: args.native || args.native_all,
                native_all: args.native_all,
            },
            &mut printer,
        )
        .map(success),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`pymri dump PID | head`): nothing left to say.
        Err(e) if e.is::<BrokenPipe>() => Status::Success.into(),
        Err(e) => {
            printer::report_error(&e);
            exit::status_of(&e).into()
        }
    }
}

/// The status of a command that returns nothing when it succeeds.
fn success((): ()) -> u8 {
    Status::Success as u8
}

fn record_options(args: cli::RecordArgs) -> commands::record::RecordOptions {
    use commands::record::{Format, Mode, RecordOptions};
    if args.idle && args.mode != cli::RecordMode::Cpu {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--idle adds idle threads to --mode cpu; --mode wall counts every thread already",
            )
            .exit();
    }
    RecordOptions {
        target: match args.pid {
            Some(pid) => commands::record::Target::Pid(pid),
            None => commands::record::Target::Command(args.command),
        },
        output: args.output,
        format: match args.format {
            cli::RecordFormat::Flamegraph => Format::Flamegraph,
            cli::RecordFormat::Speedscope => Format::Speedscope,
            cli::RecordFormat::Collapsed => Format::Collapsed,
            cli::RecordFormat::Gecko => Format::Gecko,
            cli::RecordFormat::Pprof => Format::Pprof,
        },
        duration: args.duration,
        rate: args.rate,
        mode: match args.mode {
            cli::RecordMode::Wall => Mode::Wall,
            cli::RecordMode::Cpu => Mode::Cpu,
            cli::RecordMode::Gil => Mode::Gil,
        },
        idle: args.idle,
        blocking: args.blocking,
        subprocesses: args.subprocesses,
        native: args.native,
        split_threads: args.threads,
        lines: !args.nolineno,
    }
}

fn trace_options(args: cli::TraceArgs) -> commands::trace::TraceOptions {
    use commands::trace::{Target, TraceOptions};
    let logpoints =
        args.log.chunks(2).map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default())).collect();
    TraceOptions {
        target: match args.pid {
            Some(pid) => Target::Pid(pid),
            None => Target::Command { words: args.command, root: args.root },
        },
        exceptions: args.exceptions,
        types: args.types,
        logpoints,
        calls: args.calls,
        args: args.args,
        json: args.json,
        max_rate: args.max_rate,
        duration: args.duration,
        timeout: args.timeout,
    }
}

fn top_options(args: cli::TopArgs) -> commands::top::TopOptions {
    use commands::record::{Mode, Target};
    commands::top::TopOptions {
        target: match args.pid {
            Some(pid) => Target::Pid(pid),
            None => Target::Command(args.command),
        },
        rate: args.rate,
        interval: args.interval,
        duration: args.duration,
        mode: match args.mode {
            cli::RecordMode::Wall => Mode::Wall,
            cli::RecordMode::Cpu => Mode::Cpu,
            cli::RecordMode::Gil => Mode::Gil,
        },
        lines: !args.nolineno,
        subprocesses: args.subprocesses,
    }
}

fn run_options(args: cli::RunArgs) -> commands::run::RunOptions {
    use commands::run::RunOptions;
    let (program, rest) = program_and_args(args.module, args.target);
    RunOptions { python: args.python, root: args.root, commands: args.commands, program, args: rest }
}

fn web_options(args: cli::WebArgs) -> commands::web::WebOptions {
    use commands::web::{WebOptions, WebTarget};
    let target = if let Some(pid) = args.pid {
        WebTarget::Attach { pid, thread: args.thread, timeout: args.timeout }
    } else if let Some(address) = args.connect {
        WebTarget::Connect {
            address,
            secret: commands::remote::SecretSource::new(args.secret_file, args.secret_stdin),
        }
    } else {
        let (program, rest) = program_and_args(args.module, args.target);
        WebTarget::Launch { python: args.python, root: args.root, program, args: rest }
    };
    WebOptions { target, listen: args.listen, open: args.open }
}

/// `-m MODULE ARGS` or `SCRIPT ARGS` (clap requires one of them): the program and its arguments.
fn program_and_args(
    module: Option<Vec<String>>,
    target: Vec<String>,
) -> (pymri_launch::Program, Vec<String>) {
    use pymri_launch::Program;
    let is_module = module.is_some();
    let mut words = module.unwrap_or(target);
    let rest = words.split_off(1.min(words.len()));
    let first = words.pop().unwrap_or_default();
    (if is_module { Program::Module(first) } else { Program::Script(first) }, rest)
}
