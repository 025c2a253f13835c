//! `pymri top` against real interpreters: the plain tables a script reads, the full-screen view
//! in a pseudo-terminal, and how it ends.

mod common;

use common::pty::Repl;
use common::{interpreter, pymri, reported_tids, text, Interpreter, Target};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FIXTURE: &str = "record_target.py";

fn interp(name: &str) -> Interpreter {
    interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"))
}

fn start(name: &str) -> Target {
    Target::start(&interp(name), FIXTURE, &["{ready}", "{control}"])
}

/// One table of the plain output.
#[derive(Debug)]
struct Table {
    header: String,
    /// (%Own, %Total, function text).
    functions: Vec<(f64, f64, String)>,
    /// (tid, %GIL, %CPU, the rest of the row: state, thread name, where it is).
    threads: Vec<(String, f64, f64, String)>,
}

/// The tables of `pymri top`'s stdout, in order.
fn tables(stdout: &str) -> Vec<Table> {
    stdout
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let header = lines.next().expect("header").to_string();
            assert!(header.starts_with("pymri top: process "), "{block}");
            assert!(lines.next().expect("column titles").contains("%Own %Total"), "{block}");
            let mut table = Table { header, functions: Vec::new(), threads: Vec::new() };
            let mut in_threads = false;
            for line in lines {
                if line.trim_start().starts_with("TID ") {
                    in_threads = true;
                    continue;
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                let number = |i: usize| -> f64 {
                    words
                        .get(i)
                        .and_then(|w| w.trim_end_matches('s').parse().ok())
                        .unwrap_or_else(|| panic!("{line}"))
                };
                if in_threads {
                    let rest = words[3..].join(" ");
                    table.threads.push((words[0].to_string(), number(1), number(2), rest));
                } else if !line.starts_with('(') {
                    table.functions.push((number(0), number(1), words[4..].join(" ")));
                }
            }
            table
        })
        .collect()
}

/// `pymri top PID ARGS` with stdout a pipe, to its end.
fn top(target: &Target, args: &[&str]) -> (Vec<Table>, String, String) {
    let pid = target.pid().to_string();
    let mut all = vec!["top", &pid];
    all.extend(args);
    let out = pymri(&all);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "pymri {all:?}: {stderr}\n{stdout}");
    assert!(!stdout.contains('\x1b'), "no escape codes when stdout is not a terminal:\n{stdout}");
    (tables(&stdout), stdout, stderr)
}

/// The busy thread's `hot` tops the own-time column in cpu mode; own shares add up to 100% in
/// each mode; the thread view has every thread with its state and shares.
fn table(name: &str) {
    let target = start(name);
    let tids = reported_tids(&target);
    let (tables, stdout, stderr) = top(&target, &["-d", "2.5", "--interval", "1", "--mode", "cpu"]);
    assert!(tables.len() >= 2, "a table a second, and one at the end:\n{stdout}\n{stderr}");
    // The second table covers a whole interval after the first.
    let t = &tables[1];
    assert!(t.header.contains(&format!("process {}", target.pid())), "{}", t.header);
    assert!(t.header.contains("mode cpu"), "{}", t.header);
    let (own, total, first) = &t.functions[0];
    assert!(first.starts_with("hot ("), "hot tops the own column:\n{stdout}");
    let hot = format!("hot ({}:{})", target.script_path(FIXTURE), common::mark(FIXTURE, "hot"));
    assert_eq!(first, &hot, "function (file:line)");
    assert!(*own > 50.0 && own <= total, "{own} {total}\n{stdout}");
    let sum: f64 = t.functions.iter().map(|f| f.0).sum();
    assert!((sum - 100.0).abs() < 1.0, "own shares add up to 100%, not {sum}:\n{stdout}");
    // One row per line of busy that calls: together, nearly every stack counted in cpu mode.
    let busy: f64 = t.functions.iter().filter(|f| f.2.starts_with("busy (")).map(|f| f.1).sum();
    assert!(busy > 90.0, "busy's share in cpu mode: {busy}\n{stdout}");
    assert!(t.functions.iter().all(|f| f.0 <= f.1 + 0.05 && f.1 <= 100.05), "own <= total <= 100:\n{stdout}");

    // Threads: every one, whatever the mode counts.
    assert_eq!(t.threads.len(), 3, "{stdout}");
    let row = |name: &str| {
        let tid = tids[name].to_string();
        t.threads.iter().find(|r| r.0 == tid).unwrap_or_else(|| panic!("{name} ({tid}):\n{stdout}"))
    };
    let busy = row("busy");
    assert!(busy.2 > 50.0 && busy.1 > 50.0, "busy is on a CPU and holds the GIL: {busy:?}");
    assert!(busy.3.contains(" busy "), "{busy:?}");
    let sleeper = row("sleeper");
    assert_eq!((sleeper.1, sleeper.2), (0.0, 0.0), "{sleeper:?}");
    assert!(sleeper.3.starts_with("idle ") && sleeper.3.contains("nap ("), "{sleeper:?}");
    assert!(stderr.contains("pymri top: done: "), "{stderr}");

    // Wall mode counts every thread: nap's share is a third.
    let (tables, stdout, _) = top(&target, &["-d", "2.2", "--interval", "1", "--nolineno"]);
    let t = &tables[1];
    let sum: f64 = t.functions.iter().map(|f| f.0).sum();
    assert!((sum - 100.0).abs() < 1.0, "own shares add up to 100%, not {sum}:\n{stdout}");
    let nap = t.functions.iter().find(|f| f.2.starts_with("nap (")).expect("nap's row");
    assert!((nap.0 - 100.0 / 3.0).abs() < 2.0, "nap: {nap:?}\n{stdout}");
    assert!(nap.2.ends_with("record_target.py)"), "no line number with --nolineno: {nap:?}");
}

macro_rules! per_interpreter {
    ($($table:ident => $version:literal),* $(,)?) => {
        $(
            #[test]
            fn $table() { table($version) }
        )*
    };
}

per_interpreter! {
    top_table_3_9 => "3.9",
    top_table_3_11 => "3.11",
    top_table_3_13 => "3.13",
    top_table_3_14 => "3.14",
    top_table_3_15 => "3.15",
}

#[test]
fn top_escapes_hostile_names() {
    let interp = interp("3.11");
    let target = Target::start(&interp, "hostile_names.py", &["{ready}", "arg"]);
    let (_, stdout, _) = top(&target, &["-d", "0.5", "--interval", "0.2"]);
    for (i, c) in stdout.char_indices() {
        let dangerous =
            (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!dangerous, "raw {c:?} at byte {i} in:\n{stdout}");
    }
    assert!(stdout.contains("hostile\\x1b]0;pwned\\x07\\x1b[2J\\u202e ("), "{stdout}");
}

/// A process that exits while watched ends top with status 0 and what it had.
#[test]
fn top_ends_when_the_target_exits() {
    let mut target = start("3.11");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pymri"))
        .args(["top", &target.pid().to_string(), "--interval", "0.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pymri");
    // The first table: top is sampling.
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.expect("stdout line")).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("a first table");
    assert!(first.starts_with("pymri top: process "), "{first}");
    assert_eq!(target.ask("exit"), "bye");
    let mut err = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let pymri_pid = child.id() as libc::pid_t;
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = match done.recv_timeout(Duration::from_secs(20)) {
        Ok(status) => status.expect("wait for pymri"),
        Err(_) => {
            // SAFETY: a plain kill(2) of the pymri this test started, not yet reaped.
            unsafe { libc::kill(pymri_pid, libc::SIGKILL) };
            panic!("top did not end once the process was gone");
        }
    };
    let stderr = text(&stderr.join().expect("stderr"));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("pymri top: the process exited: "), "{stderr}");
}

/// `pymri top -- COMMAND`: watched from its start until it exits; its status is pymri's.
#[test]
fn top_a_command_until_it_exits() {
    let interp = interp("3.11");
    let code = "import sys, time\n\
                def spin(until):\n    while time.time() < until: pass\n\
                spin(time.time() + 1.5)\n\
                sys.exit(3)\n";
    let mut args = vec!["top", "--interval", "0.5", "--mode", "cpu", "--"];
    let root = interp.root.to_str().expect("root").to_string();
    if interp.in_root() {
        args.extend(["chroot", &root]);
    }
    args.extend([interp.exe.as_str(), "-c", code]);
    let out = pymri(&args);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the program's status: {stderr}");
    assert!(stderr.contains("the process exited"), "{stderr}");
    let tables = tables(&stdout);
    let first = &tables.first().unwrap_or_else(|| panic!("a table:\n{stdout}\n{stderr}")).functions[0];
    assert!(first.2.starts_with("spin ("), "spin tops the own column:\n{stdout}");
}

#[test]
fn top_usage_errors() {
    for bad in [
        &["top", "1", "-r", "0"][..],
        &["top", "1", "--interval", "0"],
        &["top"],
        &["top", "1", "--mode", "x"],
    ] {
        let out = pymri(bad);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    let out = pymri(&["top", "999999999"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

/// What a full-screen program has drawn: the text at each place of a terminal, from the cursor
/// moves and characters it wrote (the view redraws only the cells that change, so a name on
/// the screen need not be contiguous in the bytes).
const SCREEN_DEADLINE: Duration = Duration::from_secs(15);

struct Screen {
    cells: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// Every byte read, for the escapes the view itself writes.
    raw: String,
}

impl Screen {
    fn new() -> Screen {
        Screen { cells: Vec::new(), row: 0, col: 0, raw: String::new() }
    }

    fn put(&mut self, c: char) {
        if self.cells.len() <= self.row {
            self.cells.resize(self.row + 1, Vec::new());
        }
        let line = &mut self.cells[self.row];
        if line.len() <= self.col {
            line.resize(self.col + 1, ' ');
        }
        line[self.col] = c;
        self.col += 1;
    }

    fn feed(&mut self, raw: &str) {
        self.raw.push_str(raw);
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut last = ' ';
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                last = c;
                                break;
                            }
                            params.push(c);
                        }
                        let numbers: Vec<usize> = params.split(';').map(|n| n.parse().unwrap_or(1)).collect();
                        match last {
                            'H' => {
                                self.row = numbers.first().copied().unwrap_or(1).saturating_sub(1);
                                self.col = numbers.get(1).copied().unwrap_or(1).saturating_sub(1);
                            }
                            'J' if params == "2" => self.cells.clear(),
                            // Leaving or entering the alternate screen: a blank one either way.
                            'h' | 'l' if params == "?1049" => self.cells.clear(),
                            _ => {}
                        }
                    }
                    Some(']') => {
                        while let Some(c) = chars.next() {
                            if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                },
                '\r' => self.col = 0,
                '\n' => self.row += 1,
                c if c.is_control() => {}
                c => self.put(c),
            }
        }
    }

    fn text(&self) -> String {
        self.cells.iter().map(|l| l.iter().collect::<String>()).collect::<Vec<_>>().join("\n")
    }

    /// Reads until `done` holds, within [`SCREEN_DEADLINE`] (a view that keeps redrawing
    /// never leaves a single read waiting).
    fn until(&mut self, top: &mut Repl, what: &str, done: impl Fn(&Screen) -> bool) {
        let deadline = Instant::now() + SCREEN_DEADLINE;
        while !done(self) {
            assert!(Instant::now() < deadline, "the screen never showed {what}:\n{}", self.text());
            let raw = top.read_raw();
            self.feed(&raw);
        }
    }

    fn shows(&self, needle: &str) -> bool {
        self.cells.iter().any(|l| l.iter().collect::<String>().contains(needle))
    }
}

/// How a terminal session of top is ended.
#[derive(Debug, Clone, Copy)]
enum Quit {
    Q,
    ControlC,
    Sigterm,
    TargetExits,
}

/// In a pseudo-terminal: the view is drawn on the alternate screen with the busy function in
/// it; `t` shows the threads; top ends (by `how`) leaving the alternate screen, with the cursor
/// shown again.
fn terminal(how: Quit) {
    let mut target = start("3.11");
    let pid = target.pid().to_string();
    let mut top = Repl::pymri(&target.interp, &["top", &pid, "--interval", "0.2", "--mode", "cpu"], &[]);
    top.resize(40, 200);
    let mut screen = Screen::new();
    let hot = format!("hot ({}:{})", target.script_path(FIXTURE), common::mark(FIXTURE, "hot"));
    screen.until(&mut top, "hot", |s| s.shows(&hot));
    assert!(screen.raw.starts_with("\x1b[?1049h"), "the alternate screen first: {:?}", screen.raw);
    assert!(screen.shows("%Own") && screen.shows("TotalTime"), "{}", screen.text());
    top.send("t");
    screen.until(&mut top, "the threads", |s| s.shows("%GIL") && s.shows("sleeper") && s.shows("nap ("));
    match how {
        Quit::Q => top.send("q"),
        Quit::ControlC => top.control('c'),
        Quit::Sigterm => top.signal(rexpect::process::Signal::SIGTERM),
        Quit::TargetExits => assert_eq!(target.ask("exit"), "bye"),
    }
    screen.until(&mut top, "the screen left", |s| s.raw.contains("\x1b[?1049l\x1b[?25h"));
    let (rest, status) = top.finish();
    assert_eq!(status, 0, "{how:?}: {}", top.transcript);
    let after = strip_after(&screen.raw, "\x1b[?1049l") + &rest;
    let why = match how {
        Quit::Q | Quit::ControlC | Quit::Sigterm => "pymri top: stopped: ",
        Quit::TargetExits => "pymri top: the process exited: ",
    };
    assert!(after.contains(why), "{how:?}: {after:?}");
    assert!(!after.contains("%Own"), "nothing is drawn after the screen is left: {after:?}");
}

/// What was written after the last `marker`, escapes removed.
fn strip_after(raw: &str, marker: &str) -> String {
    common::pty::strip(raw.rsplit_once(marker).map_or("", |(_, after)| after))
}

#[test]
fn top_in_a_terminal_quits_on_q() {
    terminal(Quit::Q);
}

#[test]
fn top_in_a_terminal_quits_on_control_c() {
    terminal(Quit::ControlC);
}

#[test]
fn top_in_a_terminal_ends_at_sigterm() {
    terminal(Quit::Sigterm);
}

/// Sorting, filtering and pausing, as the screen shows them.
#[test]
fn top_in_a_terminal_sorts_filters_and_pauses() {
    let target = start("3.11");
    let pid = target.pid().to_string();
    let mut top = Repl::pymri(&target.interp, &["top", &pid, "--interval", "0.2", "--mode", "cpu"], &[]);
    top.resize(40, 200);
    let mut screen = Screen::new();
    screen.until(&mut top, "hot and cold", |s| s.shows("hot (") && s.shows("cold (") && s.shows("v%Own"));
    top.send("2");
    screen.until(&mut top, "sorted by %Total", |s| s.shows("v%Total") && !s.shows("v%Own"));
    top.send("2");
    screen.until(&mut top, "sorted by %Total, ascending", |s| s.shows("^%Total"));
    top.send("/cold\r");
    screen
        .until(&mut top, "only cold", |s| s.shows("filter: cold ") && s.shows("cold (") && !s.shows("hot ("));
    top.send("\x1b");
    screen.until(&mut top, "no filter", |s| !s.shows("filter: cold") && s.shows("hot ("));
    // Ctrl-L: the whole screen is cleared and drawn again.
    let before = screen.raw.len();
    top.control('l');
    screen.until(&mut top, "a repaint", |s| s.raw[before..].contains("\x1b[2J") && s.shows("hot ("));
    top.send(" ");
    screen.until(&mut top, "paused", |s| s.shows("[paused]"));
    top.send(" ");
    screen.until(&mut top, "running", |s| !s.shows("[paused]"));
    top.send("q");
    let (_, status) = top.finish();
    assert_eq!(status, 0, "{}", top.transcript);
}

#[test]
fn top_in_a_terminal_ends_when_the_target_exits() {
    terminal(Quit::TargetExits);
}

/// Names from the target are drawn escaped: the raw escapes never reach the terminal.
#[test]
fn top_in_a_terminal_escapes_hostile_names() {
    let interp = interp("3.11");
    let target = Target::start(&interp, "hostile_names.py", &["{ready}", "arg"]);
    let pid = target.pid().to_string();
    let mut top = Repl::pymri(&interp, &["top", &pid, "--interval", "0.2"], &[]);
    top.resize(40, 200);
    let mut screen = Screen::new();
    // The function's name (the file's and the thread's hold the same escapes).
    screen.until(&mut top, "the escaped name", |s| s.shows("hostile\\x1b]0;pwned\\x07\\x1b[2J\\u202e ("));
    assert!(!screen.raw.contains("\x1b]0;pwned"), "a raw OSC from the target: {:?}", screen.raw);
    assert!(!screen.raw.contains('\u{202e}'), "a raw bidi override from the target: {:?}", screen.raw);
    top.send("q");
    let (_, status) = top.finish();
    assert_eq!(status, 0);
}

/// `--subprocesses`: a child and a grandchild of the target are counted with the
/// target, their functions in the table and their threads named with their process.
#[test]
fn top_follows_subprocesses() {
    for name in ["3.11", "3.14"] {
        let mut target = Target::start(&interp(name), "record_family.py", &["{ready}", "{control}"]);
        let reply = target.ask("spawn");
        let (child, grandchild) = reply.split_once(' ').unwrap_or_else(|| panic!("{reply}"));
        let (child, grandchild) = (child.trim().to_string(), grandchild.trim().to_string());
        let (tables, stdout, _) = top(&target, &["--subprocesses", "-d", "2", "-i", "1", "--mode", "cpu"]);
        let last = tables.last().unwrap_or_else(|| panic!("no table:\n{stdout}"));
        assert!(last.header.contains("and its subprocesses"), "{stdout}");
        for function in ["spin (", "child_spin (", "grandchild_spin ("] {
            assert!(
                last.functions.iter().any(|(own, _, f)| f.starts_with(function) && *own > 0.0),
                "{function}:\n{stdout}"
            );
        }
        for pid in [&child, &grandchild] {
            assert!(
                last.threads.iter().any(|(_, _, _, rest)| rest.contains(&format!("(pid {pid})"))),
                "{pid}:\n{stdout}"
            );
        }
        let (tables, stdout, _) = top(&target, &["-d", "1", "-i", "1", "--mode", "cpu"]);
        let last = tables.last().unwrap_or_else(|| panic!("no table:\n{stdout}"));
        assert!(!last.functions.iter().any(|(_, _, f)| f.starts_with("child_spin (")), "{stdout}");
    }
}
