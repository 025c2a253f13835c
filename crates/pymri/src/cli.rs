//! Command-line arguments. They are turned into plain option structs before reaching the
//! commands, so nothing below this module depends on clap.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The longest wait a duration argument asks for.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest: below a millisecond a wait cannot be kept.
const SHORTEST_WAIT: Duration = Duration::from_millis(1);

/// The parser of every duration argument: seconds, fractions allowed, from a millisecond to a
/// day. Bounding it first keeps `inf`, `nan`, `1e300` and negative values out of `Duration`.
fn seconds(text: &str) -> Result<Duration, String> {
    let range =
        || format!("a number of seconds from {} to {}", SHORTEST_WAIT.as_secs_f64(), LONGEST_WAIT.as_secs());
    let value: f64 = text.trim().parse().map_err(|_| format!("expected {}", range()))?;
    if !(SHORTEST_WAIT.as_secs_f64()..=LONGEST_WAIT.as_secs_f64()).contains(&value) {
        return Err(format!("out of range: expected {}", range()));
    }
    Ok(Duration::from_secs_f64(value))
}

#[derive(Parser)]
#[command(
    name = "pymri",
    version,
    about = "Look inside running Python processes without stopping them",
    long_about = "Look inside running Python processes without stopping them.\n\n\
                  Exit status: 0 success, 1 the target or input is at fault, 2 usage error,\n\
                  3 no such process or file, 4 permission denied, 5 unsupported interpreter,\n\
                  6 the target refuses debuggers, 7 the target did not reach a safe point in time,\n\
                  8 the other end of a remote session failed authentication (connect, listen),\n\
                  9 snapshot's core file exists or could not be written.\n\
                  `pymri run` exits with the program's own status (128+N if signal N killed it);\n\
                  the statuses above are for failures before the program could start."
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
    /// Write a core file of a running process, stopping it only while a copy is taken (like gcore)
    #[command(long_about = SNAPSHOT_ABOUT)]
    Snapshot(SnapshotArgs),
    /// Sample a process's stacks over time into a flame graph, speedscope, collapsed, gecko or pprof file
    #[command(long_about = RECORD_ABOUT)]
    Record(RecordArgs),
    /// A live view of where a process spends its time, function by function and thread by thread
    #[command(long_about = TOP_ABOUT)]
    Top(TopArgs),
    /// Fold `dump --json` reports from several machines or moments into groups of identical stacks
    #[command(long_about = COMPARE_ABOUT)]
    Compare(CompareArgs),
    /// Watch a process for a few seconds and name what is wrong (deadlock, spiking thread, leaks, ...)
    #[command(long_about = DOCTOR_ABOUT)]
    Doctor(DoctorArgs),
    /// Run a Python program under the debugger (like `python -m pdb`)
    #[command(long_about = RUN_ABOUT)]
    Run(RunArgs),
    /// Attach the debugger to a running Python process, without restarting it
    #[command(long_about = ATTACH_ABOUT)]
    Attach(AttachArgs),
    /// Run Python code in a running process and show what it prints, without stopping it
    #[command(long_about = EXEC_ABOUT)]
    Exec(ExecArgs),
    /// Report raised exceptions, logpoints and call counts while the program keeps running
    #[command(long_about = TRACE_ABOUT)]
    Trace(TraceArgs),
    /// The debugger in a browser page: attach to a process or launch a program
    #[command(long_about = WEB_ABOUT)]
    Web(WebArgs),
    /// A Debug Adapter Protocol server for VS Code, Neovim and other editors
    #[command(long_about = DAP_ABOUT)]
    Dap(DapArgs),
    /// Connect to a pymri agent listening inside a program (a container, another machine)
    #[command(long_about = CONNECT_ABOUT)]
    Connect(ConnectArgs),
    /// Wait for a pymri agent to connect out to this machine (serverless, no inbound network)
    #[command(long_about = LISTEN_ABOUT)]
    Listen(ListenArgs),
    /// Make a secret for remote sessions: into a new private file, or on stdout
    #[command(long_about = SECRET_ABOUT)]
    Secret(SecretArgs),
    /// Print a shell completion script for bash, zsh or fish on stdout
    #[command(long_about = COMPLETIONS_ABOUT)]
    Completions(CompletionsArgs),
    /// Print a manual page (roff) for pymri or one of its commands on stdout
    #[command(long_about = MAN_ABOUT)]
    Man(ManArgs),
}

const COMPLETIONS_ABOUT: &str = "Print a shell completion script on stdout, made from pymri's own \
argument definitions.\n\n\
bash: `pymri completions bash > ~/.local/share/bash-completion/completions/pymri`\n\
zsh: `pymri completions zsh > ~/.zfunc/_pymri` (with ~/.zfunc in fpath before compinit)\n\
fish: `pymri completions fish > ~/.config/fish/completions/pymri.fish`";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

const MAN_ABOUT: &str = "Print a manual page in roff on stdout, made from pymri's own argument \
definitions: pymri(1) without COMMAND, pymri-COMMAND(1) with one.\n\n\
Read it with `pymri man | man -l -` (`pymri man dump | man -l -`), or install the pages with \
`pymri man > /usr/local/share/man/man1/pymri.1` and `pymri man dump > \
/usr/local/share/man/man1/pymri-dump.1`.";

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The command whose page to print (`dump`, `record`, ...) [default: pymri(1), the overview]
    pub command: Option<String>,
}

const CONNECT_ABOUT: &str = "Connect to a pymri agent that listens inside a program, and debug it \
with pdb's prompt and commands.\n\n\
The program was started with `python -m pymri_agent --listen ADDR app.py` or calls \
`pymri_agent.listen()`. ADDR is tcp:HOST:PORT, tls:HOST:PORT (pymri is the TLS server whoever \
connects; the agent checks it through the handshake, not a certificate authority), \
unix:PATH (a Unix socket) or fifo:DIR (the pair DIR/to-agent, DIR/from-agent).\n\n\
The secret is the agent's: --secret-file FILE (a private file, mode 0600), --secret-stdin (one \
line), or a file named by PYMRI_SECRET_FILE; never on the command line. An agent that listens on \
a local address without a secret printed the path of the one it made.\n\n\
`q` or `detach` lets the program go on and leaves the agent listening for the next session. \
Exit status: 0 after the session; 2 for a bad address, 3 if nothing listens there, 8 if the \
agent refused the secret or the TLS handshake.";

const LISTEN_ABOUT: &str = "Wait for a pymri agent to connect out to this machine (a reverse \
connection: for programs that may not open a listening socket, such as serverless functions), \
then debug it with pdb's prompt and commands.\n\n\
[ADDR:]PORT is where to listen, 127.0.0.1 unless ADDR is given (port 0 picks a free one; the \
address is printed on stderr). Listening on another address needs a secret given explicitly: \
make one with `pymri secret FILE` and give the same file to the agent. On a loopback address \
without one, pymri makes a secret and prints the path of its file, which it removes at the end. \
The program connects with `python -m pymri_agent --connect tcp:HOST:PORT --secret-file FILE \
app.py` (tls:HOST:PORT with --tls).\n\n\
One session: connections that fail the handshake are refused (5 failures within a minute lock \
their address out for a minute), later ones are closed. `q` or `detach` ends the session and \
the program goes on without the debugger. Exit status: 0 after the session; 2 for a bad address \
or a missing secret.";

const SECRET_ABOUT: &str = "Make a secret for remote sessions: 32 random bytes as 64 hex \
characters.\n\n\
With FILE, it is written to a new file with mode 0600 (an existing file is never replaced); \
give that file to both sides (`--secret-file FILE`, or PYMRI_SECRET_FILE=FILE for the agent). \
Without FILE, it is printed on stdout, for a pipe.";

/// Where the session's secret comes from; never the command line itself.
#[derive(Args, Debug)]
#[group(id = "secret", multiple = false)]
pub struct SecretSourceArgs {
    /// A private file (mode 0600) holding the secret, as `pymri secret FILE` writes it
    /// [default: the file named by PYMRI_SECRET_FILE]
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Read the secret from the first line of standard input (without echo on a terminal)
    #[arg(long)]
    pub secret_stdin: bool,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The agent's address: tcp:HOST:PORT, tls:HOST:PORT, unix:PATH or fifo:DIR
    pub address: String,
    #[command(flatten)]
    pub secret: SecretSourceArgs,
    /// A debugger command to run at the first stop, as if typed (repeatable)
    #[arg(short = 'c', value_name = "COMMAND")]
    pub commands: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Where to listen: PORT, ADDR:PORT or [V6]:PORT (ADDR defaults to 127.0.0.1)
    #[arg(value_name = "[ADDR:]PORT")]
    pub address: String,
    /// Speak TLS (the agent connects to tls:HOST:PORT)
    #[arg(long)]
    pub tls: bool,
    #[command(flatten)]
    pub secret: SecretSourceArgs,
    /// A debugger command to run at the first stop, as if typed (repeatable)
    #[arg(short = 'c', value_name = "COMMAND")]
    pub commands: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SecretArgs {
    /// A new file to write the secret to (mode 0600) [default: print it on stdout]
    pub file: Option<PathBuf>,
}

const DAP_ABOUT: &str = "A Debug Adapter Protocol server: editors (VS Code, Neovim's nvim-dap, \
Emacs, Helix) launch programs or attach to running processes through it, with pymri's agent \
inside the program (CPython 3.9 to 3.15).\n\n\
By default it speaks the protocol on stdin and stdout, for one client (the editor starts \
`pymri dap` itself). With --listen it serves clients one after the other on a TCP port, on a \
loopback address only, and only clients running as the same user, as root, or (under sudo) as \
the user who ran sudo: anyone it serves can run code as its user. Diagnostics go to stderr. The \
README shows editor configurations.";

#[derive(Args, Debug)]
pub struct DapArgs {
    /// Serve over TCP instead of stdio: PORT or ADDRESS:PORT, loopback only (port 0 picks a free
    /// port; the address is printed on stderr)
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub listen: Option<String>,
}

const ATTACH_ABOUT: &str = "Attach the debugger to a running Python process (CPython 3.9 to 3.15), \
without restarting it or changing its code.\n\n\
The chosen thread (the main one unless --thread) stops where it is, with pdb's prompt and \
commands; other threads keep running. `q` or `detach` removes every hook and lets the process go \
on; if pymri itself dies, the agent in the process detaches within a second.\n\n\
pymri asks the interpreter to start its agent at its next safe point: through PEP 768 on 3.14+, \
through the main thread's pending calls before. A thread blocked in C code (a sleep, a lock, a \
read) runs no Python and is reached when it returns; --timeout bounds the wait. A process started \
with PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug is refused, with nothing written to it.";

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Process id of a running Python program
    pub pid: i32,
    /// Stop this thread (its kernel id, as `pymri dump` shows it) instead of the main one
    #[arg(long, value_name = "TID")]
    pub thread: Option<i32>,
    /// Seconds to wait for the target to reach a safe point (at most a day)
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Duration,
    /// A debugger command to run at the first stop, as if typed (repeatable)
    #[arg(short = 'c', value_name = "COMMAND")]
    pub commands: Vec<String>,
}

const EXEC_ABOUT: &str = "Run Python code in a running process (CPython 3.9 to 3.15) and show what \
it prints, without stopping or restarting the process.\n\n\
The code runs at the next safe point of the main thread (or --thread), in the `__main__` module's \
globals, through the same injection as `pymri attach`; that thread is held only while the agent \
starts, the code runs and the agent leaves, the others go on. What the code writes to sys.stdout and sys.stderr comes back to pymri's \
stdout and stderr (the program's own output from other threads stays where it goes); the value \
of a final bare expression is printed as the Python prompt shows it. Then every hook is removed.\n\n\
Exit status: 0 when the code ran, 1 when it raised (its traceback on stderr) or did not compile, \
otherwise as for `pymri attach` (6 refused, 7 no safe point within --timeout).";

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("code").required(true).args(["command", "file"])))]
pub struct ExecArgs {
    /// Process id of a running Python program
    pub pid: i32,
    /// The code to run
    #[arg(short = 'c', value_name = "CODE")]
    pub command: Option<String>,
    /// A file of code to run (at most 1 MiB of UTF-8); `-` reads the code from stdin
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Run it in this thread (its kernel id, as `pymri dump` shows it) instead of the main one
    #[arg(long, value_name = "TID")]
    pub thread: Option<i32>,
    /// Seconds to wait for the target to reach a safe point (at most a day)
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Duration,
}

const TRACE_ABOUT: &str = "Report what a running program does, without stopping it: every raised \
exception (handled ones too: where it was raised, its traceback, and the `except` that caught it, \
or that it escaped), logpoints, and calls of chosen functions counted by call site.\n\n\
`pymri trace PID ...` injects the agent into a running process (as `pymri attach` does, without \
stopping any thread); `pymri trace ... -- [PYTHON] SCRIPT ARGS` (or `-- [PYTHON] -m MODULE ARGS`) \
starts a program under it. The trace runs until --duration, Ctrl-C, or the program's end, then \
prints a summary and removes every hook; a launched program goes on untraced. If pymri dies, the \
agent notices the lost connection and removes its hooks.\n\n\
At most --max-rate events per second and per site (raise site, call site, logpoint) are printed; \
the others are counted in the summary. With --json each event and the summary is one JSON object \
per line (docs/trace.md). Exit status: as for `attach` (6 if the target refuses debuggers); a \
launched program's own.";

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pid", "command"])))]
pub struct TraceArgs {
    /// Process id of a running Python program
    pub pid: Option<i32>,
    /// After `--`: a program to start under the trace (`-- python3 app.py ARGS`)
    #[arg(value_name = "COMMAND [ARGS]", last = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Report every raised exception, handled or not
    #[arg(long)]
    pub exceptions: bool,
    /// Only exceptions of this class or a subclass (a name or a dotted name; repeatable)
    #[arg(long = "type", value_name = "NAME")]
    pub types: Vec<String>,
    /// A logpoint: FORMAT, with `{expression}` parts evaluated in the frame, printed each time
    /// FILE:LINE runs (repeatable)
    #[arg(long = "log", num_args = 2, value_names = ["FILE:LINE", "FORMAT"], allow_hyphen_values = true)]
    pub log: Vec<String>,
    /// Count the calls of these functions by call site (`module:qualname` or `qualname`,
    /// comma-separated; repeatable)
    #[arg(long, value_name = "FUNC[,FUNC...]")]
    pub calls: Vec<String>,
    /// With --calls: report each call's arguments
    #[arg(long)]
    pub args: bool,
    /// One JSON object per line: the events, then the summary
    #[arg(long)]
    pub json: bool,
    /// Events printed per second and per site; the others are only counted (0: summary only)
    #[arg(long, value_name = "N", default_value = "10", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_rate: u32,
    /// Seconds to trace (at most a day) [default: until Ctrl-C or the program's end]
    #[arg(short, long, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Seconds to wait for the target to reach a safe point (at most a day)
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Duration,
    /// With a COMMAND: run it chrooted in DIR; PYTHON and SCRIPT are then paths inside DIR
    #[arg(long, value_name = "DIR", conflicts_with = "pid")]
    pub root: Option<PathBuf>,
}

const RUN_ABOUT: &str = "Run a Python program under the debugger, like `python -m pdb`.\n\n\
It stops at the program's first line with pdb's prompt and commands (`help` lists them); \
an uncaught exception stops in the failing frame (post-mortem); when the program ends it is \
restarted. `q` ends the program, `detach` lets it finish without the debugger. Ctrl-C while \
the program runs stops it at its next line (the program starts with SIGINT ignored, so it \
gets no KeyboardInterrupt).\n\n\
Exit status: the program's own (128+N if signal N killed it). Before the program starts, \
pymri's own: 1 if the debugger agent could not start in the interpreter, 2 for a usage error, \
3 if the interpreter or the script does not exist.";

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("program").required(true).args(["module", "target"])))]
pub struct RunArgs {
    /// The Python interpreter [default: python3 from PATH]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Run the program chrooted in DIR (a container's or a distribution's root file system);
    /// --python and the script are then paths inside DIR
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// A debugger command to run at the first stop, as if typed (repeatable; `-c continue`
    /// runs to the first breakpoint)
    #[arg(short = 'c', value_name = "COMMAND")]
    pub commands: Vec<String>,
    /// Run a library module as a script (like `python -m`); what follows is its arguments
    #[arg(short = 'm', value_name = "MODULE", num_args = 1.., allow_hyphen_values = true)]
    pub module: Option<Vec<String>>,
    /// The script, then its arguments
    #[arg(value_name = "SCRIPT [ARGS]", trailing_var_arg = true, allow_hyphen_values = true)]
    pub target: Vec<String>,
}

const WEB_ABOUT: &str = "The debugger in a browser page: source with breakpoints, stack, threads, \
variables, a console for pdb's commands and Python, and live updates.\n\n\
`pymri web PID` attaches to a running process (like `pymri attach`); `pymri web -- script.py ARGS` \
or `pymri web -m module ARGS` launches a program (like `pymri run`); `pymri web --connect ADDR` \
connects to an agent that listens inside a program (like `pymri connect`). The page is served on a \
loopback address only; the URL printed on stderr carries a random token that every request \
must present. Requests naming another host or coming from another site's page are refused.\n\n\
It serves until the session ends; Ctrl-C ends it like `q`: it detaches from a running process \
and ends a launched program. Exit status: 0 after an attach or a connection; a launched \
program's own status.";

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["pid", "connect", "module", "target"])))]
pub struct WebArgs {
    /// Process id of a running Python program to attach to
    #[arg(conflicts_with_all = ["connect", "module", "target", "python", "root"])]
    pub pid: Option<i32>,
    /// Address to serve the page on: PORT or ADDRESS:PORT, loopback only (port 0: a free one)
    #[arg(long, value_name = "[ADDR:]PORT", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Open the page in a browser ($BROWSER, else xdg-open)
    #[arg(long)]
    pub open: bool,
    /// With PID: stop this thread (its kernel id) instead of the main one
    #[arg(long, value_name = "TID", requires = "pid")]
    pub thread: Option<i32>,
    /// With PID: seconds to wait for the target to reach a safe point (at most a day)
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Duration,
    /// Connect to an agent listening inside the program: tcp:HOST:PORT, tls:HOST:PORT,
    /// unix:PATH or fifo:DIR (as `pymri connect`)
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["module", "target", "python", "root"])]
    pub connect: Option<String>,
    /// With --connect: a private file (mode 0600) holding the agent's secret
    /// [default: the file named by PYMRI_SECRET_FILE]
    #[arg(long, value_name = "FILE", requires = "connect", conflicts_with = "secret_stdin")]
    pub secret_file: Option<PathBuf>,
    /// With --connect: read the agent's secret from the first line of standard input
    #[arg(long, requires = "connect")]
    pub secret_stdin: bool,
    /// The Python interpreter of a launched program [default: python3 from PATH]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Launch the program chrooted in DIR; --python and the script are then paths inside DIR
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Launch a library module as a script (like `python -m`); what follows is its arguments
    #[arg(short = 'm', value_name = "MODULE", num_args = 1.., allow_hyphen_values = true)]
    pub module: Option<Vec<String>>,
    /// After `--`: the script to launch, then its arguments
    #[arg(value_name = "SCRIPT [ARGS]", last = true, allow_hyphen_values = true)]
    pub target: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("86400"), Ok(LONGEST_WAIT));
        assert_eq!(seconds("0.001"), Ok(SHORTEST_WAIT));
        for bad in ["inf", "-inf", "nan", "1e300", "-1", "0", "-0", "0.0009", "86400.5", "", "10s"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("512M"), Ok(512 << 20));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("1 k"), Ok(1024));
        assert_eq!(size("3TB"), Ok(3 << 40));
        for bad in ["", "M", "-1", "1.5G", "12Q", "99999999999T", "0x10"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }
}

#[derive(Args)]
pub struct PsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Show each process under the Python process that started it (workers under their master)
    #[arg(long)]
    pub tree: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["pid", "core", "matching"])))]
pub struct DumpArgs {
    /// Process id of a running Python program
    #[arg(conflicts_with = "core")]
    pub pid: Option<i32>,
    /// More processes, dumped (or grouped) after the first
    #[arg(value_name = "PID", conflicts_with = "core")]
    pub more: Vec<i32>,
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
    /// With --locals: numpy arrays of at most 1 MiB also show their minimum, maximum, mean and
    /// NaN and Inf counts, read from their data
    #[arg(long, requires = "locals")]
    pub values: bool,
    /// Print JSON (schema in the README)
    #[arg(long)]
    pub json: bool,
    /// Stop every thread while reading, for a consistent snapshot; they always resume
    #[arg(long, conflicts_with = "core")]
    pub blocking: bool,
    /// Also dump every process PID started (and theirs) that runs Python, after PID; with
    /// --json, one document per process, one after another
    #[arg(long, conflicts_with = "core")]
    pub subprocesses: bool,
    /// Also every Python process whose command line matches this regular expression
    #[arg(long = "match", value_name = "REGEX", value_parser = pattern, conflicts_with = "core")]
    pub matching: Option<regex::Regex>,
    /// Fold identical stacks of every process dumped into groups, fewest processes first: the
    /// odd one out of a job of many processes comes first
    #[arg(long, conflicts_with = "core")]
    pub group: bool,
    /// Show the asyncio tasks instead of the threads: each task's name, state, coroutine
    /// stack, awaiters and running thread, as a list, a tree of awaits or a table
    #[arg(long, value_name = "FORM", num_args = 0..=1, require_equals = true, default_missing_value = "list", value_enum)]
    pub tasks: Option<TasksForm>,
    /// Show native (C) frames too, each interpreter call replaced by the Python frames it ran;
    /// a live thread is stopped only while its stack is unwound
    #[arg(long)]
    pub native: bool,
    /// Like --native, and also list the threads that run no Python (a BLAS pool, a C library's threads)
    #[arg(long)]
    pub native_all: bool,
}

/// A `--match` pattern, of bounded size (the compiled automaton is bounded too).
fn pattern(text: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(text).size_limit(1 << 20).build().map_err(|e| e.to_string())
}

/// How `dump --tasks` shows the tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TasksForm {
    /// Each task with its stack and awaiters
    List,
    /// Tasks under the tasks that await them, like `python -m asyncio pstree`
    Tree,
    /// One line a task, like `python -m asyncio ps`
    Table,
}

const SNAPSHOT_ABOUT: &str = "Write a core file of a running process without ending it, like \
gdb's gcore: gdb (`gdb PYTHON FILE`), pystack (`pystack core FILE`) and `pymri dump --core FILE` \
read it.\n\n\
The file holds every thread's registers, the process's state and command line, its auxiliary \
vector, the files it mapped, and the memory the kernel's own core would hold under the \
process's /proc/PID/coredump_filter (by default its anonymous memory, private and shared, and \
the first page of each mapped binary). The threads are stopped only while their registers and \
a consistent copy of that memory are taken (ptrace: if pymri dies, the kernel resumes them); \
the file is written after they run again. The size is estimated and printed first.\n\n\
FILE is created new, mode 0600, owned by the user who ran pymri (with sudo: the user who ran \
sudo); an existing FILE is refused unless --force, and a link there is never followed. A \
snapshot only reads the process, like dump: it is taken also from processes that refuse \
debuggers (PYTHON_DISABLE_REMOTE_DEBUG, -X disable-remote-debug).\n\n\
Exit status: 0 when the file was written; 1 if the process exited meanwhile (nothing is left \
behind); 3 no such process; 4 permission denied; 9 FILE exists, or could not be created or \
written (a full disk: the partial file is removed).";

/// A size in bytes: a whole number with an optional binary unit (`K`, `M`, `G`, `T`, with or
/// without `iB`/`B`).
fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let unit = unit.trim_start().trim_end_matches("iB").trim_end_matches('B');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("expected a size such as 4096, 512M or 2G, not {text:?}")),
    };
    let value: u64 =
        number.parse().map_err(|_| format!("expected a size such as 4096, 512M or 2G, not {text:?}"))?;
    value.checked_mul(1 << shift).ok_or_else(|| format!("{text} is too large"))
}

#[derive(Args)]
pub struct SnapshotArgs {
    /// Process id of the running program
    pub pid: i32,
    /// The core file to write
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Replace FILE if it exists
    #[arg(long)]
    pub force: bool,
    /// The most memory pymri may use to hold the copy (such as 512M or 2G); the rest is written
    /// while the process is still stopped [default: half of the memory available]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_buffer: Option<u64>,
}

const RECORD_ABOUT: &str = "Sample a running process's Python stacks over time and write a profile: \
a flame graph (SVG, the default), a speedscope file, collapsed stacks, a Firefox Profiler \
profile (gecko) or a pprof file.\n\n\
`pymri record PID` records a running process; `pymri record -- COMMAND ARGS` starts COMMAND (a \
Python program, as this user) and records it from the moment its interpreter is running until \
it exits.\n\n\
Threads are read while they run: nothing is stopped (unless --blocking). Sampling follows a fixed schedule (--rate \
times a second); samples that could not be taken in time are counted as missed. Recording ends \
after --duration, when the process exits, or at Ctrl-C, and the profile is written in every \
case. On a terminal, a status line shows progress; a summary line follows at the end.\n\n\
Exit status: 0 when the profile was written (also when the process exited meanwhile); with \
COMMAND, the program's own (128+N if signal N killed it); 1 if the output file cannot be written \
(checked before sampling starts, and before COMMAND starts); 2 for a usage error; 3, 4, 5 as for \
dump.";

/// The highest sampling rate asked for: above it the schedule is the reader's speed anyway.
const MAX_RATE: u32 = 100_000;

fn rate(text: &str) -> Result<u32, String> {
    let range = || format!("a number of samples a second from 1 to {MAX_RATE}");
    let value: u32 = text.trim().parse().map_err(|_| format!("expected {}", range()))?;
    if !(1..=MAX_RATE).contains(&value) {
        return Err(format!("out of range: expected {}", range()));
    }
    Ok(value)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordFormat {
    /// An interactive SVG flame graph
    Flamegraph,
    /// speedscope's JSON format (one profile per thread), for https://www.speedscope.app
    Speedscope,
    /// Collapsed stacks: `frame;frame;frame COUNT` per line, root first
    Collapsed,
    /// The Firefox Profiler's processed format (JSON, one thread per thread), for https://profiler.firefox.com
    Gecko,
    /// pprof (gzipped protobuf), for `go tool pprof`, Grafana Pyroscope and other pprof readers
    Pprof,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordMode {
    /// Every thread, every sample
    Wall,
    /// Only threads on a CPU (or ready for one) when sampled, other than those waiting for the GIL
    Cpu,
    /// Only the thread holding the GIL
    Gil,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pid", "command"])))]
pub struct RecordArgs {
    /// Process id of a running Python program
    pub pid: Option<i32>,
    /// After `--`: a program to start and record until it exits (`-- python3 app.py ARGS`)
    #[arg(value_name = "COMMAND [ARGS]", last = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Where to write the profile
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The file format
    #[arg(short, long, value_enum, default_value = "flamegraph")]
    pub format: RecordFormat,
    /// Seconds to record (at most a day) [default: until the process exits or Ctrl-C]
    #[arg(short, long, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Samples a second (1 to 100000)
    #[arg(short, long, value_name = "HZ", default_value = "100", value_parser = rate, allow_negative_numbers = true)]
    pub rate: u32,
    /// Which threads each sample counts
    #[arg(long, value_enum, default_value = "wall")]
    pub mode: RecordMode,
    /// With --mode cpu: count idle threads too (off a CPU, and not waiting for the GIL)
    #[arg(long)]
    pub idle: bool,
    /// Stop the target's Python threads while each sample is read (only then, and never
    /// threads without a Python thread state): a consistent view, at a cost to the target
    #[arg(long)]
    pub blocking: bool,
    /// Also record the processes the target starts while it is recorded (and theirs), each
    /// stack under a frame `process PID (COMMAND LINE)`
    #[arg(long)]
    pub subprocesses: bool,
    /// Native (C) frames too, each interpreter call replaced by the Python frames it ran; each
    /// counted thread is stopped alone while its stack is unwound, at every sample
    #[arg(long, conflicts_with = "subprocesses")]
    pub native: bool,
    /// Split stacks by thread: each starts with a frame `thread NAME (TID)`
    #[arg(long)]
    pub threads: bool,
    /// Leave line numbers out: a function is one frame wherever it is
    #[arg(long)]
    pub nolineno: bool,
}

const TOP_ABOUT: &str = "A live view of a running process's Python functions by own and total time, \
and of its threads (state, GIL and CPU share), from stacks sampled as `pymri record` samples them \
(nothing is stopped).\n\n\
`pymri top PID` watches a running process; `pymri top -- COMMAND ARGS` starts COMMAND and watches \
it until it exits.\n\n\
On a terminal: a full-screen view, redrawn every --interval. Keys: 1-4 sort by %Own, %Total, \
OwnTime, TotalTime (again: reverse); t the threads (f or t again: the functions); space pauses \
(samples taken meanwhile are dropped); / filters by text (Enter keeps it, Esc clears it); \
Ctrl-L redraws the whole screen (after a started program wrote over it); q or Ctrl-C quits. \
%Own and %Total are shares of the thread stacks sampled during the last interval; \
OwnTime and TotalTime add up the seconds since the start.\n\n\
When stdout is not a terminal: the same tables as plain text every --interval, for scripts; \
--duration ends it.\n\n\
Exit status: as for record (0, or COMMAND's own; 2 for a usage error; 3, 4, 5 as for dump).";

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pid", "command"])))]
pub struct TopArgs {
    /// Process id of a running Python program
    pub pid: Option<i32>,
    /// After `--`: a program to start and watch until it exits (`-- python3 app.py ARGS`)
    #[arg(value_name = "COMMAND [ARGS]", last = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Samples a second (1 to 100000)
    #[arg(short, long, value_name = "HZ", default_value = "100", value_parser = rate, allow_negative_numbers = true)]
    pub rate: u32,
    /// Seconds between two redraws (or two tables, when stdout is not a terminal)
    #[arg(short, long, value_name = "SECONDS", default_value = "1", value_parser = seconds, allow_negative_numbers = true)]
    pub interval: Duration,
    /// Seconds to watch (at most a day) [default: until q, Ctrl-C or the process exits]
    #[arg(short, long, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Which threads each sample counts in the functions' times
    #[arg(long, value_enum, default_value = "wall")]
    pub mode: RecordMode,
    /// Leave line numbers out: a function is one row wherever it is
    #[arg(long)]
    pub nolineno: bool,
    /// Also sample every process it starts (and theirs) that runs Python, counted together;
    /// each thread's row names its process
    #[arg(long)]
    pub subprocesses: bool,
}

const COMPARE_ABOUT: &str = "Fold the stacks of `pymri dump --json` reports taken on several machines \
(or at several moments) into groups of identical stacks, as `dump --group` does for live processes: \
fewest processes first, so the odd one out of a job of many processes comes first. Each process is \
named by its host (the report's `host`, else the file's name) and its rank when its environment \
said (RANK and the like). A file may hold several reports one after another (`dump --subprocesses \
--json`).\n\n\
Exit status: 0; 1 for a file that is not a dump report; 2 for a usage error; 3 for a missing file.";

#[derive(Args)]
pub struct CompareArgs {
    /// `pymri dump --json` reports
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the groups as JSON
    #[arg(long)]
    pub json: bool,
}

const DOCTOR_ABOUT: &str = "Watch a running process for a window (--duration, 5 s by default), \
sampling its threads as `pymri record` does (nothing is stopped), then report what is wrong with it \
by the debugging book's names, most serious first: each finding with its pattern, a summary, the \
evidence (threads, stacks, lines, numbers over the window) and the command to run next.\n\n\
Patterns: deadlock, orphaned_lock, spiking_thread, blocked_threads, thread_leak, fd_leak, \
memory_growth, gil_contention, swallowed_exceptions, module_versions (--only picks some).\n\n\
--json writes {\"schema\": 1, \"pid\", \"python\", \"window_seconds\", \"samples\", \"findings\": \
[{\"pattern\", \"severity\", \"summary\", \"threads\", \"waits\", \"series\", \"counts\", \"notes\", \"next\"}], \
\"skipped\"} (docs/doctor.md). --html FILE also writes one self-contained page: the findings, every thread, \
the window's flame graph and the counters over time.\n\n\
Exit status: 0 when the report was made (whatever it found); 2 for a usage error; 3, 4, 5 as for dump; \
1 when the --html file cannot be written.";

#[derive(Args)]
#[command(group(clap::ArgGroup::new("doctor_target").required(true).args(["pid", "core"])))]
pub struct DoctorArgs {
    /// Process id of a running Python program
    pub pid: Option<i32>,
    /// Read a core file instead of a live process: what a single instant allows (no counters,
    /// no durations)
    #[arg(long, value_name = "FILE")]
    pub core: Option<std::path::PathBuf>,
    /// The Python executable that produced the core, when it has moved since
    #[arg(long, value_name = "PATH", requires = "core")]
    pub exe: Option<std::path::PathBuf>,
    /// Directory the core's process saw as `/` (a container's or chroot's root)
    #[arg(long, value_name = "DIR", requires = "core")]
    pub sysroot: Option<std::path::PathBuf>,
    /// Seconds to watch (at most a day)
    #[arg(short, long, value_name = "SECONDS", default_value = "5", value_parser = seconds, allow_negative_numbers = true)]
    pub duration: Duration,
    /// Samples a second during the window (1 to 100000)
    #[arg(short, long, value_name = "HZ", default_value = "100", value_parser = rate, allow_negative_numbers = true)]
    pub rate: u32,
    /// Write the report as JSON (schema 1)
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page (findings, threads, the window's
    /// flame graph, the counters over time)
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    /// Look only for these patterns (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PATTERN")]
    pub only: Vec<crate::commands::doctor::Pattern>,
    /// Read only from outside: no agent injected (memory_growth, swallowed_exceptions, the
    /// Python packages of module_versions and thread_leak's start sites are skipped)
    #[arg(long)]
    pub no_inject: bool,
    /// The versions meant to be loaded: a requirements file (`name==version` lines), a
    /// poetry.lock or a uv.lock; each loaded package of another version is a warning
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn rates_are_bounded() {
        assert_eq!(rate("100"), Ok(100));
        assert_eq!(rate("1"), Ok(1));
        assert_eq!(rate("100000"), Ok(MAX_RATE));
        for bad in ["0", "-1", "100001", "1e9", "", "fast", "4294967296", "1.5"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }
}
