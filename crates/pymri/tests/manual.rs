//! `pymri completions SHELL` and `pymri man [COMMAND]`: the scripts are loaded by the real
//! shells and asked to complete, the pages are typeset by groff. bash, zsh, fish and groff are
//! installed by scripts/test.sh; a missing one fails the test.

mod common;

use common::{pymri, run_with_deadline, text};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn stdout_of(args: &[&str]) -> String {
    let out = pymri(args);
    assert!(out.status.success(), "pymri {args:?}: {}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "pymri {args:?} wrote to stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Runs `program args` with the completion script in `$SCRIPT`.
fn shell(program: &str, args: &[&str], script: &str) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).env("SCRIPT", script).stdin(Stdio::null());
    match cmd.get_program().to_str().map(which) {
        Some(true) => {}
        _ => panic!("{program} is not installed; scripts/test.sh installs it for the completion tests"),
    }
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{program}: {}\n{}", text(&out.stderr), text(&out.stdout));
    out
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What bash's completion offers for the command line `words` (the last one being completed).
fn bash_complete(script: &str, words: &str) -> Vec<String> {
    let program = format!(
        "eval \"$SCRIPT\"\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         COMP_LINE=\"{words}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         _pymri pymri \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let out = shell("bash", &["--norc", "-c", &program], script);
    text(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_commands_options_and_their_values() {
    let script = stdout_of(&["completions", "bash"]);
    assert_eq!(bash_complete(&script, "pymri du"), ["dump"]);
    let options = bash_complete(&script, "pymri dump --l");
    assert!(options.contains(&"--locals".to_owned()), "{options:?}");
    let formats = bash_complete(&script, "pymri record --format ''");
    for format in ["flamegraph", "speedscope", "collapsed", "gecko", "pprof"] {
        assert!(formats.contains(&format.to_owned()), "{format} missing from {formats:?}");
    }
}

#[test]
fn fish_completes_commands_options_and_their_values() {
    let script = stdout_of(&["completions", "fish"]);
    let out = shell(
        "fish",
        &[
            "--no-config",
            "-c",
            "printf '%s\\n' $SCRIPT | source; complete -C 'pymri du'; complete -C 'pymri record --format '",
        ],
        &script,
    );
    let offered: Vec<String> =
        text(&out.stdout).lines().map(|l| l.split('\t').next().unwrap_or_default().to_owned()).collect();
    assert!(offered.contains(&"dump".to_owned()), "{offered:?}");
    assert!(offered.contains(&"pprof".to_owned()), "{offered:?}");
}

#[test]
fn zsh_loads_the_script_as_pymris_completion() {
    let script = stdout_of(&["completions", "zsh"]);
    let out = shell(
        "zsh",
        &[
            "-f",
            "-c",
            "autoload -U compinit && compinit -u -D && eval \"$SCRIPT\" && print -r -- $_comps[pymri]",
        ],
        &script,
    );
    assert_eq!(text(&out.stdout).trim(), "_pymri");
    assert!(script.contains("'--locals["), "zsh script without dump's options");
}

/// `page` typeset by groff as text; groff's warnings (-ww) fail the test.
fn typeset(page: &str) -> String {
    assert!(which("groff"), "groff is not installed; scripts/test.sh installs it for the man page tests");
    let dir = std::env::temp_dir().join(format!("pymri-man-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("page.1");
    std::fs::write(&file, page).expect("write page");
    let mut cmd = Command::new("groff");
    cmd.args(["-man", "-Tutf8", "-ww"]).arg(&file).env("GROFF_NO_SGR", "1").stdin(Stdio::null());
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    assert!(out.status.success() && out.stderr.is_empty(), "groff: {}", text(&out.stderr));
    // Drop overstriking (bold, underline) to compare plain text.
    let mut plain = String::new();
    for c in text(&out.stdout).chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    // Justified lines stretch spaces: compare words.
    plain.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn man_pages_typeset_and_name_every_command_and_option() {
    let overview = typeset(&stdout_of(&["man"]));
    assert!(overview.contains("NAME pymri - Look inside running Python processes"), "{overview}");
    for command in ["ps", "dump", "record", "run", "attach", "web", "dap", "completions", "man"] {
        assert!(overview.contains(&format!("pymri-{command}(1)")), "{command} missing:\n{overview}");
    }
    let dump = typeset(&stdout_of(&["man", "dump"]));
    assert!(dump.contains("NAME pymri-dump - Print every thread"), "{dump}");
    assert!(dump.contains("SYNOPSIS pymri dump [--core]"), "{dump}");
    assert!(dump.contains("--locals"), "{dump}");
}

#[test]
fn man_for_an_unknown_command_is_a_usage_error() {
    let out = pymri(&["man", "dumpp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: pymri has no command 'dumpp'; pages exist for: ps, dump,"),
        "{stderr}"
    );
}
