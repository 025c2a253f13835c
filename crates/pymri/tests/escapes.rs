//! Strings from a target reach the user's terminal escaped: a hostile program names its thread,
//! function, file, class and command line with terminal escapes (set the window title, clear
//! the screen, reverse the text), and root's `pymri ps`, `dump` and REPL must show them as
//! `\x1b`, `\u202e`, never as raw bytes. JSON keeps the exact strings.

mod common;

use common::{interpreter, pymri, pymri_with, text, Interpreter, Target};
use serde_json::Value;

const FIXTURE: &str = "hostile_names.py";
/// What the fixture puts in every name (`HOSTILE` there).
const HOSTILE: &str = "\x1b]0;pwned\x07\x1b[2J\u{202e}";
/// How pymri must show it.
const SHOWN: &str = "\\x1b]0;pwned\\x07\\x1b[2J\\u202e";

fn start(interp: &Interpreter) -> Target {
    let arg = format!("arg{HOSTILE}");
    Target::start(interp, FIXTURE, &["{ready}", &arg])
}

/// Fails on any character a terminal acts on or that reorders or hides text, other than the
/// newlines and tabs of pymri's own layout.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for (i, c) in text.char_indices() {
        let dangerous = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!dangerous, "{what}: raw {c:?} at byte {i} in:\n{text}");
    }
}

#[test]
fn ps_escapes_a_hostile_command_line() {
    let interp = interpreter("3.11").expect("3.11");
    let target = start(&interp);
    let pid = target.pid().to_string();

    let out = pymri(&["ps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_inert("ps", &out.stdout);
    let table = text(&out.stdout);
    let row = table.lines().find(|l| l.starts_with(&format!("{pid} "))).expect("the target's row");
    assert!(row.ends_with(&format!("arg{SHOWN}")), "{row}");

    let out = pymri(&["ps", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_inert("ps --json", &out.stdout);
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    let entry = list
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["pid"].as_i64() == Some(target.pid().into()))
        .expect("entry");
    assert!(entry["command"].as_str().expect("command").ends_with(&format!("arg{HOSTILE}")), "{entry:#}");
}

fn dump_escapes_hostile_names(version: &str) {
    let interp = interpreter(version).expect("interpreter");
    let target = start(&interp);
    let pid = target.pid().to_string();

    for args in [&["dump", &pid][..], &["dump", "--locals", &pid][..]] {
        let out = pymri(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_inert(&format!("{args:?}"), &out.stdout);
        let dump = text(&out.stdout);
        assert!(dump.lines().next().expect("header").ends_with(&format!("arg{SHOWN}")), "{dump}");
        assert!(dump.contains(&format!("): \"{SHOWN}\"\n")), "the thread's name: {dump}");
        assert!(dump.contains(&format!("    hostile{SHOWN} (")), "the function: {dump}");
        assert!(dump.contains(&format!("/code{SHOWN}.py:")), "the file: {dump}");
        if args.contains(&"--locals") {
            assert!(dump.contains(&format!("obj: <Hostile{SHOWN} object at 0x")), "the type: {dump}");
        }
    }

    let out = pymri(&["dump", "--locals", "--json", &pid]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_inert("dump --json", &out.stdout);
    let dump: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(dump["command"].as_str().expect("command").ends_with(&format!("arg{HOSTILE}")));
    let threads = dump["threads"].as_array().expect("threads");
    let thread = threads.iter().find(|t| t["name"] == HOSTILE).unwrap_or_else(|| panic!("{dump:#}"));
    let frame = &thread["frames"][0];
    assert_eq!(frame["function"], format!("hostile{HOSTILE}"), "{frame:#}");
    assert!(frame["file"].as_str().expect("file").ends_with(&format!("/code{HOSTILE}.py")), "{frame:#}");
    assert!(
        frame["locals"]["obj"].as_str().expect("obj").starts_with(&format!("<Hostile{HOSTILE} object")),
        "{frame:#}"
    );
}

#[test]
fn dump_escapes_hostile_names_3_11() {
    dump_escapes_hostile_names("3.11");
}

#[test]
fn dump_escapes_hostile_names_3_14() {
    dump_escapes_hostile_names("3.14");
}

/// The REPL shows what the agent sends (the stop, `where`, a repr, a listing) escaped too.
#[test]
fn attach_repl_escapes_hostile_names() {
    let interp = interpreter("3.11").expect("3.11");
    let target = start(&interp);
    let pid = target.pid().to_string();
    let dump = pymri(&["dump", "--json", &pid]);
    let dump: Value = serde_json::from_slice(&dump.stdout).expect("dump");
    let tid = dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == HOSTILE)
        .and_then(|t| t["tid"].as_i64())
        .expect("the hostile thread's id")
        .to_string();

    let args = ["attach", "--thread", &tid, &pid, "-c", "w", "-c", "p obj", "-c", "l 1, 10", "-c", "detach"];
    let out = pymri_with(&args, |c| {
        c.env("NO_COLOR", "1");
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_inert("attach's stdout", &out.stdout);
    assert_inert("attach's stderr", &out.stderr);
    let session = text(&out.stdout);
    assert!(session.contains(&format!("[Thread 2 ({SHOWN})]")), "the stopped thread: {session}");
    assert!(session.contains(&format!("/code{SHOWN}.py(")), "the stop: {session}");
    assert!(session.contains(&format!(")hostile{SHOWN}()\n")), "the stop: {session}");
    assert!(session.contains(&format!("\nrepr{SHOWN}\n")), "p obj: {session}");
    assert!(session.contains("# a comment that clears the screen: \\x1b[2J\\u202e\n"), "l: {session}");
}
