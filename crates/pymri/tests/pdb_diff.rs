//! pdb as the oracle: each case of `fixtures/pdb_diff/cases/` (a script `NAME.py` and the
//! commands typed at its prompts, `NAME.pdb`) runs through `python -m pdb` and through
//! `pymri run` on every provisioned interpreter, and the two transcripts are compared line by
//! line. On 3.14+, each case of `fixtures/pdb_diff/attach/` is attached to by
//! `python -m pdb -p PID` and by `pymri attach PID`, each a program of its own. A difference passes only when `fixtures/pdb_diff/differences.toml` explains it: as an
//! intended difference (with its reason, also in the README) or as a known bug (with its issue).
//! An entry that explains nothing on an interpreter it names fails too, so the list cannot go
//! stale.
//!
//! Both debuggers are driven through pipes, as a tool would drive them: a command is written
//! only once the prompt (`(Pdb) `, or `(com) ` while typing breakpoint commands) ends what was
//! read, and goes into the transcript after that prompt. Both transcripts are normalised the
//! same way (the case's directory is `$DIR`, the standard library `$LIB`, addresses `0x…`);
//! pdb's own frames (`bdb.py`, `pdb.py`, `runpy`, `<string>(1)<module>()`), which pdb shows in
//! `where` and in tracebacks and pymri never has, are dropped from pdb's side only, so that a
//! frame of pymri's agent showing through is still a difference.
//!
//! To look at the transcripts: `PYMRI_PDB_DIFF_KEEP=DIR` writes them, normalised, to
//! `DIR/VERSION/NAME.{pdb,pymri}` with a summary per interpreter; `PYMRI_PDB_DIFF_CASES=a,b`
//! runs only those cases (and skips the staleness check, which needs them all).

mod common;

use common::{repo_root, Interpreter, Scratch};
use regex::Regex;
use serde::Deserialize;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long either debugger may take to show its next prompt (or end).
const PROMPT_DEADLINE: Duration = Duration::from_secs(30);
/// Sessions run at once within one interpreter's test (nextest runs interpreters side by side).
const WORKERS: usize = 3;
/// `(com) ` while typing breakpoint commands; `cl` asks before clearing every breakpoint.
const PROMPTS: [&[u8]; 3] = [b"(Pdb) ", b"(com) ", b"Clear all breaks? "];

/// One test per provisioned interpreter, named after it.
macro_rules! per_interpreter {
    ($($test:ident => $name:literal),* $(,)?) => {
        const TESTED: &[&str] = &[$($name),*];
        $(
            #[test]
            fn $test() {
                compare_on($name);
            }
        )*
    };
}

per_interpreter!(
    py3_9 => "3.9",
    py3_9d => "3.9d",
    py3_11 => "3.11",
    py3_13 => "3.13",
    py3_14 => "3.14",
    py3_14d => "3.14d",
    py3_15 => "3.15",
);

#[test]
fn every_provisioned_interpreter_is_compared() {
    let provisioned: Vec<String> = common::interpreters().into_iter().map(|i| i.name).collect();
    let untested: Vec<&String> = provisioned.iter().filter(|n| !TESTED.contains(&n.as_str())).collect();
    assert!(untested.is_empty(), "add a test to pdb_diff.rs for {untested:?}");
}

#[test]
fn readme_gives_every_reason() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let heading = "## Where pymri differs from pdb, and why";
    let start = readme.find(heading).unwrap_or_else(|| panic!("README.md has no section {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let section = squeeze(&rest[..rest.find("\n## ").unwrap_or(rest.len())]);
    let differences = differences();
    let missing: Vec<&str> = differences
        .intended
        .iter()
        .chain(&differences.known_bugs)
        .map(|e| e.reason.as_str())
        .filter(|reason| !section.contains(&squeeze(reason)))
        .collect();
    assert!(missing.is_empty(), "README.md's {heading:?} lacks these reasons:\n{}", missing.join("\n"));
}

/// Text with every run of whitespace made one space (the README wraps lines).
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// The differences file

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Differences {
    #[serde(default)]
    intended: Vec<Entry>,
    #[serde(default)]
    known_bugs: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// Case names, or `*`.
    cases: Vec<String>,
    /// `3.11`, `3.13+`, `3.9-3.12` or `*`; a debug build counts as its version.
    versions: Vec<String>,
    /// Regular expression matching whole lines of pdb's transcript (joined by `\n`); empty for
    /// a line only pymri shows.
    #[serde(default)]
    pdb: String,
    /// The same for pymri's lines; empty for a line only pdb shows.
    #[serde(default)]
    pymri: String,
    reason: String,
    /// A known bug's issue; intended differences have none.
    issue: Option<u32>,
}

struct Rule {
    /// Index in intended followed by known_bugs.
    index: usize,
    pdb: Option<Regex>,
    pymri: Option<Regex>,
}

fn differences() -> Differences {
    let path = repo_root().join("fixtures/pdb_diff/differences.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let differences: Differences =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for e in &differences.intended {
        assert!(e.issue.is_none(), "an intended difference has no issue: {:?}", e.reason);
    }
    for e in &differences.known_bugs {
        assert!(e.issue.is_some(), "a known bug names its issue: {:?}", e.reason);
    }
    differences
}

fn minor(version: &str) -> u32 {
    version
        .strip_prefix("3.")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("differences.toml: bad version {version:?}"))
}

/// Whether `spec` (`*`, `3.11`, `3.13+`, `3.9-3.12`) covers the interpreter `name`.
fn version_matches(spec: &str, name: &str) -> bool {
    let have = minor(name.trim_end_matches('d'));
    if spec == "*" {
        true
    } else if let Some(low) = spec.strip_suffix('+') {
        have >= minor(low)
    } else if let Some((low, high)) = spec.split_once('-') {
        (minor(low)..=minor(high)).contains(&have)
    } else {
        have == minor(spec)
    }
}

impl Entry {
    fn applies(&self, case: &str, interp: &str) -> bool {
        self.cases.iter().any(|c| c == "*" || c == case)
            && self.versions.iter().any(|v| version_matches(v, interp))
    }
}

fn compile(pattern: &str, what: &str) -> Option<Regex> {
    if pattern.is_empty() {
        return None;
    }
    let anchored = format!("^(?:{})$", pattern.trim_end_matches('\n'));
    Some(Regex::new(&anchored).unwrap_or_else(|e| panic!("differences.toml: {what}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Cases

struct Case {
    name: String,
    script: PathBuf,
    commands: Vec<String>,
    /// `pymri attach` against `python -m pdb -p` (3.14+): the script, started with the path of
    /// a FIFO to write a line to once it waits to be attached to.
    attach: bool,
}

/// The first Python with `pdb -p`.
const ATTACH_SINCE: u32 = 14;

fn cases() -> Vec<Case> {
    let mut cases = cases_in("cases", false);
    cases.extend(cases_in("attach", true));
    cases
}

fn cases_in(folder: &str, attach: bool) -> Vec<Case> {
    let dir = repo_root().join("fixtures/pdb_diff").join(folder);
    let only: Option<Vec<String>> =
        std::env::var("PYMRI_PDB_DIFF_CASES").ok().map(|v| v.split(',').map(str::to_string).collect());
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pdb"))
        .map(|p| {
            let name = p.file_stem().and_then(|s| s.to_str()).expect("case name").to_string();
            let script = p.with_extension("py");
            assert!(script.is_file(), "{} has no script {}", p.display(), script.display());
            let text = std::fs::read_to_string(&p).expect("commands");
            // `#` starts a comment line; an empty line is an empty command (pdb repeats the last).
            let commands = text.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect();
            Case { name, script, commands, attach }
        })
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(only.is_some() || !cases.is_empty(), "no cases in {}", dir.display());
    cases
}

// ---------------------------------------------------------------------------------------------
// Running a session

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Environment shared by both debuggers: unbuffered streams (so the program's output and the
/// debugger's interleave as they happen), no colours, no rc files, no bytecode written.
fn environment(cmd: &mut Command, scratch: &Scratch) {
    cmd.env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &scratch.inside)
        .env("XDG_STATE_HOME", &scratch.host)
        .env("TERM", "dumb")
        .env("NO_COLOR", "1")
        .env("PYTHON_COLORS", "0")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
}

fn pdb_command(interp: &Interpreter, scratch: &Scratch, script: &str) -> Command {
    let mut cmd = if interp.in_root() {
        // chroot starts in the root's `/`; the script's directory is where pymri runs it too.
        let mut cmd = Command::new("chroot");
        cmd.arg(&interp.root).args(["/bin/sh", "-c", "cd \"$0\" && exec \"$1\" -m pdb \"$2\""]).args([
            &scratch.inside,
            &interp.exe,
            &script.to_string(),
        ]);
        cmd
    } else {
        let mut cmd = Command::new(&interp.exe);
        cmd.args(["-m", "pdb", script]).current_dir(&scratch.host);
        cmd
    };
    environment(&mut cmd, scratch);
    cmd
}

fn pymri_command(interp: &Interpreter, scratch: &Scratch, script: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
    cmd.arg("run");
    if interp.in_root() {
        cmd.arg("--root").arg(&interp.root);
    }
    cmd.arg("--python").arg(&interp.exe).arg(script).current_dir(&scratch.host);
    environment(&mut cmd, scratch);
    cmd
}

/// Runs a debugger, typing `commands` at its prompts; the transcript, raw (or why it failed,
/// with the transcript so far).
fn drive(mut cmd: Command, commands: &[String]) -> Result<String, String> {
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let writer2 = writer.try_clone().map_err(|e| format!("pipe: {e}"))?;
    cmd.stdin(Stdio::piped()).stdout(writer).stderr(writer2);
    let child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    // The command holds the pipe's write ends: the end of output is seen only once it is gone.
    drop(cmd);
    let mut child = Reaped(child);
    let mut stdin = child.0.stdin.take();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = reader.read(&mut chunk) {
            if tx.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut transcript: Vec<u8> = Vec::new();
    let mut next = commands.iter();
    loop {
        match rx.recv_timeout(PROMPT_DEADLINE) {
            Ok(bytes) => transcript.extend_from_slice(&bytes),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no prompt and no end within {PROMPT_DEADLINE:?}; transcript so far:\n{}",
                    String::from_utf8_lossy(&transcript)
                ))
            }
        }
        if !PROMPTS.iter().any(|p| transcript.ends_with(p)) {
            continue;
        }
        match next.next() {
            Some(line) => {
                transcript.extend_from_slice(line.as_bytes());
                transcript.push(b'\n');
                if let Some(input) = stdin.as_mut() {
                    // A debugger that ended meanwhile shows up as the end of its output.
                    let _ = input.write_all(format!("{line}\n").as_bytes());
                }
            }
            // Out of commands: the end of input, which both take as `quit`.
            None => drop(stdin.take()),
        }
    }
    let _ = child.0.wait();
    Ok(String::from_utf8_lossy(&transcript).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Normalising

struct Normaliser {
    address: Regex,
    stdlib: Regex,
    /// A line of `where` (or the current frame after `up`) in pdb's own code.
    debugger_frame: Regex,
    /// A traceback entry in pdb's own code.
    debugger_file: Regex,
    attaching: Regex,
}

fn normaliser() -> &'static Normaliser {
    static N: OnceLock<Normaliser> = OnceLock::new();
    N.get_or_init(|| {
        let own = r"(?:\$LIB/(?:bdb|pdb|runpy|cmd)\.py|<string>|<frozen runpy>)";
        Normaliser {
            address: Regex::new(r"0x[0-9a-fA-F]+").expect("regex"),
            stdlib: Regex::new(r"/usr/lib/python3\.[0-9]+d?/").expect("regex"),
            debugger_frame: Regex::new(&format!(r"^(?:\(Pdb\) )?[ >] {own}\([0-9]+\)")).expect("regex"),
            debugger_file: Regex::new(&format!(r#"^(\s*)File "{own}", line [0-9]+, in "#)).expect("regex"),
            attaching: Regex::new(r"^Attaching to process [0-9]+ \(Python [^)]*\)\.\.\.$").expect("regex"),
        }
    })
}

fn normalise(raw: &str, dir: &str, from_pdb: bool) -> Vec<String> {
    let n = normaliser();
    let text = raw.replace(dir, "$DIR");
    let text = n.stdlib.replace_all(&text, "$$LIB/");
    let text = n.address.replace_all(&text, "0x…");
    let lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    if !from_pdb {
        // `pymri attach` says which process and Python it attached to; pdb -p does not.
        return lines.into_iter().filter(|l| !n.attaching.is_match(l)).collect();
    }
    let mut kept = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if n.debugger_frame.is_match(line) {
            // The frame's line, and its `-> source` line if it has one. A prompt the frame was
            // printed after stays.
            if let Some(prompt) = line.strip_suffix(line.trim_start_matches("(Pdb) ")) {
                if !prompt.is_empty() {
                    kept.push(prompt.trim_end().to_string());
                }
            }
            i += 1;
            if lines.get(i).is_some_and(|l| l.starts_with("-> ")) {
                i += 1;
            }
        } else if let Some(m) = n.debugger_file.captures(line) {
            // The entry, and the source and caret lines indented under it.
            let indent = m[1].len();
            i += 1;
            while lines.get(i).is_some_and(|l| l.len() - l.trim_start().len() > indent) {
                i += 1;
            }
        } else {
            kept.push(line.clone());
            i += 1;
        }
    }
    kept
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// What one case gave on one interpreter.
struct Outcome {
    case: String,
    pdb: Vec<String>,
    pymri: Vec<String>,
    /// Rules that explained a difference.
    used: Vec<usize>,
    /// Differences nothing explains: (pdb's lines, pymri's lines).
    unexplained: Vec<(Vec<String>, Vec<String>)>,
    hunks: usize,
}

/// The runs of differing lines between two transcripts: (pdb's lines, pymri's lines).
fn hunks(pdb: &[String], pymri: &[String]) -> Vec<(Vec<String>, Vec<String>)> {
    use similar::DiffOp;
    let mut out: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    let mut open = false;
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, pdb, pymri) {
        let (old, new) = match op {
            DiffOp::Equal { .. } => {
                open = false;
                continue;
            }
            DiffOp::Delete { old_index, old_len, .. } => (old_index..old_index + old_len, 0..0),
            DiffOp::Insert { new_index, new_len, .. } => (0..0, new_index..new_index + new_len),
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                (old_index..old_index + old_len, new_index..new_index + new_len)
            }
        };
        if !open {
            out.push((Vec::new(), Vec::new()));
            open = true;
        }
        let last = out.last_mut().expect("a hunk");
        last.0.extend_from_slice(&pdb[old]);
        last.1.extend_from_slice(&pymri[new]);
    }
    out
}

/// The prefix lengths of `lines` that `pattern` matches whole, longest first. An empty pattern
/// matches no lines; a pattern matching the empty text (`(?s).*`) may match no lines too.
fn prefixes(pattern: &Option<Regex>, lines: &[String]) -> Vec<usize> {
    match pattern {
        None => vec![0],
        Some(re) => (0..=lines.len()).rev().filter(|&k| re.is_match(&lines[..k].join("\n"))).collect(),
    }
}

/// Rules that together explain a hunk, consumed from its start on both sides; `None` if none do.
fn explain(
    rules: &[Rule],
    pdb: &[String],
    pymri: &[String],
    at: (usize, usize),
    failed: &mut HashSet<(usize, usize)>,
) -> Option<Vec<usize>> {
    if at.0 == pdb.len() && at.1 == pymri.len() {
        return Some(Vec::new());
    }
    if failed.contains(&at) {
        return None;
    }
    for rule in rules {
        for i in prefixes(&rule.pdb, &pdb[at.0..]) {
            for j in prefixes(&rule.pymri, &pymri[at.1..]) {
                if i + j == 0 {
                    continue;
                }
                if let Some(mut used) = explain(rules, pdb, pymri, (at.0 + i, at.1 + j), failed) {
                    used.push(rule.index);
                    return Some(used);
                }
            }
        }
    }
    failed.insert(at);
    None
}

/// Both transcripts of a `run` case, normalised.
fn run_both(case: &Case, interp: &Interpreter) -> Result<(Vec<String>, Vec<String>), String> {
    let scratch = Scratch::new(interp);
    let name = format!("{}.py", case.name);
    std::fs::copy(&case.script, scratch.host.join(&name)).map_err(|e| format!("copy script: {e}"))?;
    let script = format!("{}/{name}", scratch.inside);
    let pdb =
        drive(pdb_command(interp, &scratch, &script), &case.commands).map_err(|e| format!("pdb: {e}"))?;
    let pymri =
        drive(pymri_command(interp, &scratch, &script), &case.commands).map_err(|e| format!("pymri: {e}"))?;
    Ok((normalise(&pdb, &scratch.inside, true), normalise(&pymri, &scratch.inside, false)))
}

/// Both transcripts of an `attach` case, normalised: each debugger attaches to a program of its
/// own (what the first did must not change what the second sees).
fn attach_both(case: &Case, interp: &Interpreter) -> Result<(Vec<String>, Vec<String>), String> {
    let fixture = case.script.strip_prefix(repo_root().join("fixtures")).map_err(|e| e.to_string())?;
    let fixture = fixture.to_str().ok_or("fixture path")?;
    let target = common::Target::start(interp, fixture, &["{ready}"]);
    let mut cmd = interp.command(None);
    cmd.args(["-m", "pdb", "-p", &target.pid().to_string()]);
    environment(&mut cmd, &target.scratch);
    let pdb = drive(cmd, &case.commands).map_err(|e| format!("pdb -p: {e}"))?;
    let pdb = normalise(&pdb, &target.scratch.inside, true);
    drop(target);
    let target = common::Target::start(interp, fixture, &["{ready}"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pymri"));
    cmd.args(["attach", &target.pid().to_string()]);
    environment(&mut cmd, &target.scratch);
    let pymri = drive(cmd, &case.commands).map_err(|e| format!("pymri attach: {e}"))?;
    Ok((pdb, normalise(&pymri, &target.scratch.inside, false)))
}

fn compare(case: &Case, interp: &Interpreter, rules: &[Rule]) -> Result<Outcome, String> {
    let (pdb, pymri) = if case.attach { attach_both(case, interp)? } else { run_both(case, interp)? };
    let mut used = Vec::new();
    let mut unexplained = Vec::new();
    let hunks = hunks(&pdb, &pymri);
    let count = hunks.len();
    for (p, q) in hunks {
        match explain(rules, &p, &q, (0, 0), &mut HashSet::new()) {
            Some(u) => used.extend(u),
            None => unexplained.push((p, q)),
        }
    }
    Ok(Outcome { case: case.name.clone(), pdb, pymri, used, unexplained, hunks: count })
}

fn unified(outcome: &Outcome) -> String {
    let pdb = outcome.pdb.join("\n") + "\n";
    let pymri = outcome.pymri.join("\n") + "\n";
    similar::TextDiff::from_lines(&pdb, &pymri)
        .unified_diff()
        .context_radius(3)
        .header("pdb", "pymri")
        .to_string()
}

fn compare_on(version: &str) {
    let interp =
        common::interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
    let differences = differences();
    let entries: Vec<&Entry> = differences.intended.iter().chain(&differences.known_bugs).collect();
    let attach = minor(version.trim_end_matches('d')) >= ATTACH_SINCE;
    let cases: Vec<Case> = cases().into_iter().filter(|c| attach || !c.attach).collect();
    let filtered = std::env::var_os("PYMRI_PDB_DIFF_CASES").is_some();

    let results: Mutex<Vec<Result<Outcome, String>>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let rules: Vec<Rule> = entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.applies(&case.name, &interp.name))
                        .map(|(index, e)| Rule {
                            index,
                            pdb: compile(&e.pdb, &e.reason),
                            pymri: compile(&e.pymri, &e.reason),
                        })
                        .collect();
                    let outcome =
                        compare(case, &interp, &rules).map_err(|e| format!("case {}: {e}", case.name));
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|r| r.as_ref().map(|o| o.case.clone()).unwrap_or_default());

    let mut failures = Vec::new();
    let mut used = vec![0usize; entries.len()];
    let mut identical = 0;
    for result in &results {
        match result {
            Err(e) => failures.push(e.clone()),
            Ok(outcome) => {
                for &u in &outcome.used {
                    used[u] += 1;
                }
                if outcome.hunks == 0 {
                    identical += 1;
                }
                if !outcome.unexplained.is_empty() {
                    let listed: Vec<String> = outcome
                        .unexplained
                        .iter()
                        .map(|(p, q)| format!("  pdb:\n{}\n  pymri:\n{}", indent(p), indent(q)))
                        .collect();
                    failures.push(format!(
                        "case {} differs from pdb on {} in a way differences.toml does not explain:\n{}\n{}",
                        outcome.case,
                        interp.name,
                        listed.join("\n"),
                        unified(outcome)
                    ));
                }
            }
        }
    }
    if !filtered {
        for (index, entry) in entries.iter().enumerate() {
            let runs = cases.iter().any(|c| entry.applies(&c.name, &interp.name));
            if runs && used[index] == 0 {
                let kind = if entry.issue.is_some() { "known bug" } else { "intended difference" };
                failures.push(format!(
                    "the {kind} {:?} (cases {:?}, versions {:?}) explains nothing on {}: \
                     remove it, or narrow its cases and versions",
                    entry.reason, entry.cases, entry.versions, interp.name
                ));
            }
        }
    }
    if let Some(dir) = std::env::var_os("PYMRI_PDB_DIFF_KEEP") {
        keep(Path::new(&dir), &interp, &results, &entries, &used, identical);
    }
    assert!(failures.is_empty(), "{} on {}:\n\n{}", failures.len(), interp.name, failures.join("\n\n"));
}

fn indent(lines: &[String]) -> String {
    lines.iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Writes the normalised transcripts and a summary for a person to read.
fn keep(
    dir: &Path,
    interp: &Interpreter,
    results: &[Result<Outcome, String>],
    entries: &[&Entry],
    used: &[usize],
    identical: usize,
) {
    let dir = dir.join(&interp.name);
    std::fs::create_dir_all(&dir).expect("keep dir");
    for outcome in results.iter().flatten() {
        std::fs::write(dir.join(format!("{}.pdb", outcome.case)), outcome.pdb.join("\n") + "\n")
            .expect("write");
        std::fs::write(dir.join(format!("{}.pymri", outcome.case)), outcome.pymri.join("\n") + "\n")
            .expect("write");
    }
    let mut summary = format!("sessions compared: {}\nidentical: {identical}\n", results.len());
    for outcome in results.iter().flatten() {
        let known = outcome.used.iter().any(|&u| entries[u].issue.is_some());
        let verdict = match (outcome.hunks, known) {
            (0, _) => "identical",
            (_, true) => "known bug",
            (_, false) => "intended differences only",
        };
        summary.push_str(&format!("case {}: {verdict}\n", outcome.case));
    }
    for (entry, n) in entries.iter().zip(used) {
        let kind = if entry.issue.is_some() { "known bug" } else { "intended" };
        summary.push_str(&format!("{kind} x{n}: {}\n", entry.reason));
    }
    std::fs::write(dir.join("summary"), summary).expect("write");
}
