//! `pymri run` and its pdb-compatible REPL, driven through a pseudo-terminal as a person would:
//! the walkthroughs of the scenarios (wrong arithmetic, falsy zero, conditional breakpoint in a
//! loop, post-mortem) and every command group, on each tested interpreter.

mod common;

use common::pty::{Launch, Repl, PROMPT};
use common::{mark, Interpreter};

/// One test per interpreter, named after it, so a failure says which version broke.
macro_rules! on_every_python {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                fn on(version: &str) {
                    let interp = crate::common::interpreter(version)
                        .unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
                    super::$name(&interp);
                }
                #[test]
                fn py3_9() { on("3.9") }
                #[test]
                fn py3_11() { on("3.11") }
                #[test]
                fn py3_13() { on("3.13") }
                #[test]
                fn py3_14() { on("3.14") }
                #[test]
                fn py3_15() { on("3.15") }
            }
        )*
    };
}

on_every_python!(
    wrong_arithmetic,
    falsy_zero,
    conditional_breakpoint_in_a_loop,
    post_mortem_in_the_failing_frame,
    assignments_reach_inner_and_outer_frames,
    display_shows_changed_values,
    breakpoint_commands_run_at_their_stop,
    silent_commands_that_continue_never_prompt,
    tbreak_clear_disable_enable_ignore_condition,
    listings_mark_breakpoints_and_the_current_line,
    until_leaves_the_loop_and_jump_skips_a_line,
    steps_stop_where_an_exception_is_raised,
    step_stops_at_the_call_then_the_first_line,
    jump_over_an_assignment_then_next,
    messages_are_those_of_the_versions_pdb,
    function_breakpoints_name_the_line_of_the_versions_pdb,
    a_long_return_value_is_abbreviated_in_locations,
    threads_stopped_at_the_same_breakpoint,
    threads_aligns_long_names,
    tab_completes_commands_and_names,
    interact_runs_a_nested_console,
    exit_status_restart_and_detach,
    rc_commands_and_modules,
    ctrl_c_pauses_the_running_program,
    sticky_and_colours,
);

fn line(fixture: &str, name: &str) -> i32 {
    mark(&format!("pdb/{fixture}"), name)
}

fn assert_has(output: &str, needle: &str) {
    assert!(output.contains(needle), "expected {needle:?} in:\n{output}");
}

fn assert_lacks(output: &str, needle: &str) {
    assert!(!output.contains(needle), "did not expect {needle:?} in:\n{output}");
}

/// The line of the first statement of a fixture: where a run first stops.
fn first_line(fixture: &str) -> usize {
    let text =
        std::fs::read_to_string(common::repo_root().join("fixtures/pdb").join(fixture)).expect("fixture");
    let i =
        text.lines().position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).expect("code");
    i + 1
}

/// `> file(LINE)<module>()` at the script's first statement.
fn entry(r: &Repl, fixture: &str) -> String {
    format!("> {}({})<module>()", r.path(fixture), first_line(fixture))
}

/// The first stop: pdb's location at the script's first statement.
fn first_stop(r: &mut Repl, fixture: &str) -> String {
    let out = r.prompt();
    assert_has(&out, &entry(r, fixture));
    out
}

fn quit(mut r: Repl) -> i32 {
    r.type_line("q");
    r.exit_status()
}

// ---------------------------------------------------------------------------------------------
// The walkthroughs of scenarios.md

fn wrong_arithmetic(interp: &Interpreter) {
    let f = "discount.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    // Not defined yet: found by its `def`, the breakpoint goes to the body's first line.
    let out = r.cmd("b calculate_discount");
    assert_has(&out, &format!("Breakpoint 1 at {path}:{}", function_bp_line(interp, f, "discount")));
    let out = r.cmd("c");
    assert_has(
        &out,
        &format!(
            "> {path}({})calculate_discount()\n-> discount = price * percent / 100",
            line(f, "discount")
        ),
    );
    let out = r.cmd("n");
    assert_has(
        &out,
        &format!("> {path}({})calculate_discount()\n-> final_price = price + discount", line(f, "final")),
    );
    // An empty line repeats the last command (`n`).
    let out = r.cmd("");
    assert_has(&out, &format!("> {path}({})calculate_discount()\n-> return final_price", line(f, "return")));
    assert_eq!(r.cmd("p final_price").trim(), "120.0");
    assert_eq!(r.cmd("p price - discount").trim(), "80.0");
    assert_eq!(r.cmd("price - price * percent / 100").trim(), "80.0");
    let out = r.cmd("c");
    assert_has(&out, "expected 80, got 120");
    assert_has(&out, "The program finished and will be restarted");
    assert_has(&out, &entry(&r, f));
    assert_eq!(quit(r), 0);
}

fn falsy_zero(interp: &Interpreter) {
    let f = "quantity.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let call = line(f, "call");
    assert_has(&r.cmd(&format!("b {call}")), &format!("Breakpoint 1 at {path}:{call}"));
    assert_has(&r.cmd("c"), &format!("> {path}({call})total_price()\n-> quantity = sanitize(quantity)"));
    // pdb stops first at the call, on the `def` line.
    let out = r.cmd("s");
    assert_has(
        &out,
        &format!("--Call--\n> {path}({})sanitize()\n-> def sanitize(quantity):", line(f, "sanitize") - 1),
    );
    let out = r.cmd("s");
    assert_has(&out, &format!("> {path}({})sanitize()\n-> return quantity or 1", line(f, "sanitize")));
    assert_eq!(r.cmd("p quantity").trim(), "0");
    assert_eq!(r.cmd("a").trim(), "quantity = 0");
    assert_has(&r.cmd("retval"), "*** Not yet returned!");
    let out = r.cmd("s");
    assert_has(
        &out,
        &format!("--Return--\n> {path}({})sanitize()->1\n-> return quantity or 1", line(f, "sanitize")),
    );
    assert_eq!(r.cmd("retval").trim(), "1");
    assert_eq!(r.cmd("rv").trim(), "1");
    assert_eq!(r.cmd("p quantity or 1").trim(), "1");
    let out = r.cmd("c");
    assert_has(&out, "total: 100");
    assert_eq!(quit(r), 0);
}

fn conditional_breakpoint_in_a_loop(interp: &Interpreter) {
    let f = "prices.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let at = line(f, "append");
    let out = r.cmd(&format!("b {f}:{at}, final_result < 0"));
    assert_has(&out, &format!("Breakpoint 1 at {path}:{at}"));
    let out = r.cmd("c");
    assert_has(&out, &format!("> {path}({at})apply_discount()\n-> results.append(final_result)"));
    assert_eq!(r.cmd("p price").trim(), "12");
    assert_eq!(r.cmd("p discount").trim(), "15");
    assert_eq!(r.cmd("p final_result").trim(), "-3");
    assert_eq!(r.cmd("p results").trim(), "[35, 15]");
    let out = r.cmd("c");
    assert_has(&out, "results: [35, 15, -3, 65]");
    assert_has(&out, "The program finished and will be restarted");
    let out = r.cmd("b");
    assert_has(&out, "Num Type         Disp Enb   Where");
    assert_has(&out, &format!("1   breakpoint   keep yes   at {path}:{at}"));
    assert_has(&out, "\tstop only if final_result < 0");
    assert_has(&out, "\tbreakpoint already hit 4 times");
    assert_eq!(quit(r), 0);
}

fn post_mortem_in_the_failing_frame(interp: &Interpreter) {
    let f = "divide.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let out = r.cmd("c");
    assert_has(&out, "share: 25.0\nshare: 50.0");
    assert_has(&out, "ZeroDivisionError: division by zero");
    assert_has(&out, "Uncaught exception. Entering post mortem debugging\nRunning 'cont' or 'step' will restart the program");
    let divide = line(f, "divide");
    let call = line(f, "call");
    let main = line(f, "main");
    assert_has(&out, &format!("> {path}({divide})share()\n-> return total / count"));
    let out = r.cmd("w");
    let expected = format!(
        "  {path}({main})<module>()\n-> main()  # @mark main\n  {path}({call})main()\n-> print(\"share:\", share(100, count))  # @mark call\n> {path}({divide})share()\n-> return total / count  # @mark divide\n"
    );
    assert!(out.ends_with(&expected), "where:\n{out}\nexpected:\n{expected}");
    assert_lacks(&out, "pymri_agent");
    assert_eq!(r.cmd("p count").trim(), "0");
    let out = r.cmd("u");
    assert_has(&out, &format!("> {path}({call})main()"));
    assert_eq!(r.cmd("p count").trim(), "0");
    assert_eq!(r.cmd("p counts").trim(), "[4, 2, 0, 1]");
    assert_has(&r.cmd("u"), &format!("> {path}({main})<module>()"));
    assert_has(&r.cmd("u"), "*** Oldest frame");
    assert_has(&r.cmd("d 2"), &format!("> {path}({divide})share()"));
    assert_has(&r.cmd("d"), "*** Newest frame");
    assert_has(&r.cmd("p undefined_name"), "*** NameError: name 'undefined_name' is not defined");
    let out = r.cmd("c");
    // pdb 3.13 stopped telling a restart after a post-mortem from a normal one.
    let minor: u32 = interp.name.trim_start_matches("3.").trim_end_matches('d').parse().expect("version");
    if minor >= 13 {
        assert_has(&out, "The program finished and will be restarted");
    } else {
        assert_has(&out, &format!("Post mortem debugger finished. The {f} will be restarted"));
    }
    assert_has(&out, &entry(&r, f));
    // Quitting at the first line of the new run: pymri exits with the status of the run that
    // ended, the uncaught exception's 1.
    assert_eq!(quit(r), 1);
}

// ---------------------------------------------------------------------------------------------
// Evaluation and frames

fn assignments_reach_inner_and_outer_frames(interp: &Interpreter) {
    let f = "writeback.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    r.cmd(&format!("b {}", line(f, "inner")));
    r.cmd("c");
    assert_eq!(r.cmd("p x").trim(), "1");
    assert_eq!(r.cmd("!x = 5").trim(), "");
    assert_eq!(r.cmd("p x").trim(), "5");
    let out = r.cmd("n");
    assert_has(&out, &format!("({})inner()", line(f, "inner_return")));
    assert_eq!(r.cmd("p y").trim(), "10",);
    assert_has(&r.cmd("u"), &format!("({})outer()", line(f, "outer")));
    assert_eq!(r.cmd("p x").trim(), "1");
    r.cmd("x = 7");
    assert_eq!(r.cmd("p x").trim(), "7");
    assert_has(&r.cmd("d"), "inner()");
    assert_eq!(r.cmd("p x").trim(), "5");
    let out = r.cmd("c");
    assert_has(&out, "outer x: 7 z: 10");
    assert_eq!(quit(r), 0);
}

fn display_shows_changed_values(interp: &Interpreter) {
    let f = "counter.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let add = line(f, "add");
    r.cmd(&format!("b {add}"));
    r.cmd("c");
    assert_eq!(r.cmd("display total").trim(), "display total: 0");
    assert_eq!(r.cmd("display i").trim(), "display i: 0");
    let out = r.cmd("c");
    // total is still 0 after adding 0: only i changed.
    assert_has(&out, "display i: 1  [old: 0]");
    assert_lacks(&out, "display total");
    let out = r.cmd("c");
    assert_has(&out, "display total: 1  [old: 0]");
    assert_has(&out, "display i: 2  [old: 1]");
    let out = r.cmd("display");
    assert_has(&out, "Currently displaying:\ntotal: 1\ni: 2");
    assert_eq!(r.cmd("undisplay i").trim(), "");
    assert_has(&r.cmd("undisplay nothing"), "*** not displaying nothing");
    let out = r.cmd("display");
    assert_lacks(&out, "i: 2");
    assert_has(&out, "total: 1");
    let help = r.cmd("help");
    assert_has(&help, "Documented commands (type help <topic>):");
    assert_has(&help, "undisplay");
    assert_has(&r.cmd("help until"), "unt(il) [lineno]");
    assert_has(&r.cmd("h nonsense"), "*** No help for 'nonsense'");
    assert_has(&r.cmd("whatis total"), "<class 'int'>");
    assert_has(&r.cmd("whatis count_up"), "Function count_up");
    assert_eq!(r.cmd("pp {'b': [1] * 3, 'a': 2}").trim(), "{'a': 2, 'b': [1, 1, 1]}");
    assert_eq!(quit(r), 0);
}

// ---------------------------------------------------------------------------------------------
// Breakpoints

fn breakpoint_commands_run_at_their_stop(interp: &Interpreter) {
    let f = "counter.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let add = line(f, "add");
    r.cmd(&format!("b {add}"));
    r.type_line("commands 1");
    r.expect("(com) ");
    r.type_line("p i * 100");
    r.expect("(com) ");
    r.type_line("p 'total was', total");
    r.expect("(com) ");
    let out = r.cmd("end");
    assert_eq!(out.trim(), "");
    let out = r.cmd("c");
    // pdb's order: the commands' output, then where it stopped.
    assert_has(&out, &format!("0\n('total was', 0)\n> {path}({add})count_up()"));
    let out = r.cmd("c");
    assert_has(&out, &format!("100\n('total was', 0)\n> {path}({add})count_up()"));
    assert_eq!(quit(r), 0);
}

fn silent_commands_that_continue_never_prompt(interp: &Interpreter) {
    let f = "counter.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let add = line(f, "add");
    r.cmd(&format!("b {add}"));
    r.type_line("commands");
    r.expect("(com) ");
    r.type_line("silent");
    r.expect("(com) ");
    r.type_line("p f'i={i}'");
    r.expect("(com) ");
    // A resuming command ends the list (no `end` needed) and resumes at each hit.
    let out = r.cmd("continue");
    assert_eq!(out.trim(), "");
    let out = r.cmd("c");
    assert_has(&out, "'i=0'\n'i=1'\n'i=2'\n'i=0'\n'i=1'\n'i=2'\n'i=3'\n");
    assert_has(&out, "totals: 3 6");
    assert_has(&out, "value: 2");
    assert_has(&out, "The program finished and will be restarted");
    assert_lacks(&out, "count_up()");
    assert_eq!(quit(r), 0);
}

fn tbreak_clear_disable_enable_ignore_condition(interp: &Interpreter) {
    let f = "counter.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let add = line(f, "add");
    let ret = line(f, "return");
    assert_has(&r.cmd(&format!("tbreak {add}")), &format!("Breakpoint 1 at {path}:{add}"));
    let out = r.cmd("b");
    assert_has(&out, &format!("1   breakpoint   del  yes   at {path}:{add}"));
    let out = r.cmd("c");
    assert_has(&out, &format!("Deleted breakpoint 1 at {path}:{add}\n> {path}({add})count_up()"));
    assert_eq!(r.cmd("b").trim(), "");
    assert_has(&r.cmd(&format!("b {f}:{add}")), "Breakpoint 2 at");
    assert_has(&r.cmd(&format!("b {ret}")), "Breakpoint 3 at");
    assert_has(&r.cmd("disable 2"), &format!("Disabled breakpoint 2 at {path}:{add}"));
    assert_has(&r.cmd("b"), "2   breakpoint   keep no    at");
    // Only the return breakpoint stops now.
    assert_has(&r.cmd("c"), &format!("> {path}({ret})count_up()"));
    assert_eq!(r.cmd("p total").trim(), "3");
    assert_has(&r.cmd("enable 2"), &format!("Enabled breakpoint 2 at {path}:{add}"));
    assert_eq!(r.cmd("ignore 2 2").trim(), "Will ignore next 2 crossings of breakpoint 2.");
    assert_eq!(r.cmd("condition 2 i >= 1").trim(), "New condition set for breakpoint 2.");
    // count_up(4): i=0 fails the condition, i=1 and i=2 are ignored, i=3 stops.
    r.cmd("c");
    assert_eq!(r.cmd("p i").trim(), "3");
    assert_eq!(r.cmd("condition 2").trim(), "Breakpoint 2 is now unconditional.");
    assert_eq!(r.cmd("ignore 2").trim(), "Will stop next time breakpoint 2 is reached.");
    assert_has(&r.cmd("disable 9"), "*** Breakpoint number 9 out of range");
    assert_has(&r.cmd("disable x"), "*** Non-numeric breakpoint number x");
    assert_has(&r.cmd(&format!("cl {f}:{ret}")), &format!("Deleted breakpoint 3 at {path}:{ret}"));
    assert_has(&r.cmd("b 3"), "*** Blank or comment");
    r.type_line("cl");
    r.expect("Clear all breaks? ");
    let out = r.cmd("y");
    assert_has(&out, &format!("Deleted breakpoint 2 at {path}:{add}"));
    assert_eq!(r.cmd("b").trim(), "");
    let out = r.cmd("c");
    assert_has(&out, "totals: 3 6");
    assert_eq!(quit(r), 0);
}

// ---------------------------------------------------------------------------------------------
// Source, stepping

fn listings_mark_breakpoints_and_the_current_line(interp: &Interpreter) {
    let f = "counter.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let add = line(f, "add");
    r.cmd(&format!("b {add}"));
    r.cmd("c");
    let out = r.cmd("ll");
    let expected = format!(
        "  4  \tdef count_up(n):\n  5  \t    total = 0\n  6  \t    for i in range(n):\n  {add} B->\t        total += i\n  8  \t    return total  # @mark return\n"
    );
    assert_eq!(out.replace("  # @mark add", ""), expected);
    let out = r.cmd("l");
    assert!(out.starts_with("  2  \t\n  3  \t\n  4  \tdef count_up(n):"), "list:\n{out}");
    assert_has(&out, &format!("  {add} B->\t        total += i  # @mark add"));
    assert_has(&out, " 12  \t    value = 1\n");
    // An empty line repeats `list`, which continues where it stopped.
    let out = r.cmd("");
    assert!(out.starts_with(" 13  \t    value = 2"), "continued list:\n{out}");
    assert_has(&out, " 23  \t");
    // pdb marks a listing that asked for lines past the end, with or without lines.
    let out = r.cmd("l");
    assert_eq!(out, " 24  \tmain()\n[EOF]\n");
    assert_eq!(r.cmd("l"), "[EOF]\n");
    assert_eq!(r.cmd("l 23, 30"), " 23  \t\n 24  \tmain()\n[EOF]\n");
    let out = r.cmd("l .");
    assert!(out.starts_with("  2  \t"), "list .:\n{out}");
    assert_eq!(r.cmd("l 5, 6").trim_end(), "  5  \t    total = 0\n  6  \t    for i in range(n):");
    assert_eq!(r.cmd("l 12, 2").lines().count(), 3, "a second number below the first is a count");
    let out = r.cmd("l 18");
    assert!(out.starts_with(" 13  \t") && out.lines().last() == Some(" 23  \t"), "l 18 lists 13-23:\n{out}");
    // Up in main, `ll` shows main with its current line.
    r.cmd("u");
    let out = r.cmd("ll");
    assert_has(&out, &format!(" {}  ->\t    first = count_up(3)", line(f, "first")));
    assert_eq!(quit(r), 0);
}

fn until_leaves_the_loop_and_jump_skips_a_line(interp: &Interpreter) {
    let f = "counter.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let add = line(f, "add");
    r.cmd(&format!("tbreak {add}"));
    r.cmd("c");
    let out = r.cmd("until");
    assert_has(&out, &format!("> {path}({})count_up()", line(f, "return")));
    assert_eq!(r.cmd("p total").trim(), "3");
    let out = r.cmd("r");
    assert_has(&out, &format!("--Return--\n> {path}({})count_up()->3", line(f, "return")));
    let skip = line(f, "skip");
    let print = line(f, "print");
    r.cmd(&format!("tbreak {skip}"));
    assert_has(&r.cmd("c"), &format!("> {path}({skip})jumpy()"));
    assert_has(
        &r.cmd(&format!("j {print}")),
        &format!("> {path}({print})jumpy()\n-> print(\"value:\", value)"),
    );
    assert_has(
        &r.cmd(&format!("until {}", print - 5)),
        "*** \"until\" line number is smaller than current line number",
    );
    let out = r.cmd("c");
    assert_has(&out, "value: 1");
    assert_eq!(quit(r), 0);
}

/// `n` over a line that raises stops on that line with the exception, as pdb does, before the
/// frame unwinds; `retval` is not there yet; the unwinding gives `--Return--` with `None`, then
/// the caller stops where the exception reached it. An exception handled in the same function
/// stops the same way.
fn steps_stop_where_an_exception_is_raised(interp: &Interpreter) {
    let f = "raising.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let inner = line(f, "inner");
    let call = line(f, "call");
    r.cmd(&format!("tbreak {inner}"));
    assert_has(&r.cmd("c"), &format!("> {path}({inner})inner()\n-> return 10 / x"));
    let out = r.cmd("n");
    assert_has(
        &out,
        &format!("ZeroDivisionError: division by zero\n> {path}({inner})inner()\n-> return 10 / x"),
    );
    assert_lacks(&out, "--Return--");
    assert_has(&r.cmd("retval"), "*** Not yet returned!");
    assert_has(&r.cmd("n"), &format!("--Return--\n> {path}({inner})inner()->None\n-> return 10 / x"));
    assert_eq!(r.cmd("retval").trim(), "None");
    assert_has(
        &r.cmd("n"),
        &format!("ZeroDivisionError: division by zero\n> {path}({call})handled()\n-> y = inner(0)"),
    );
    assert_has(
        &r.cmd("n"),
        &format!("> {path}({})handled()\n-> except ZeroDivisionError:", line(f, "except")),
    );
    let pop = line(f, "pop");
    r.cmd(&format!("tbreak {pop}"));
    assert_has(&r.cmd("c"), &format!("> {path}({pop})local()"));
    assert_has(
        &r.cmd("n"),
        &format!("IndexError: pop from empty list\n> {path}({pop})local()\n-> values.pop()"),
    );
    assert_has(&r.cmd("n"), &format!("> {path}({})local()\n-> except IndexError:", line(f, "local-except")));
    assert_has(&r.cmd("c"), "done: 2.0");
    assert_eq!(quit(r), 0);
}

/// `s` into a function stops at its call (`--Call--`, on the `def` line), then at its first line,
/// as pdb; `s` over a line that raises shows the exception too.
fn step_stops_at_the_call_then_the_first_line(interp: &Interpreter) {
    let f = "raising.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let call = line(f, "call");
    let inner = line(f, "inner");
    r.cmd(&format!("tbreak {call}"));
    assert_has(&r.cmd("c"), &format!("> {path}({call})handled()"));
    let out = r.cmd("s");
    assert_has(&out, &format!("--Call--\n> {path}({})inner()\n-> def inner(x):", line(f, "inner-def")));
    assert_has(&r.cmd("retval"), "*** Not yet returned!");
    let out = r.cmd("s");
    assert_has(&out, &format!("> {path}({inner})inner()\n-> return 10 / x"));
    assert_lacks(&out, "--Call--");
    assert_has(&r.cmd("s"), &format!("ZeroDivisionError: division by zero\n> {path}({inner})inner()"));
    assert_has(&r.cmd("s"), &format!("--Return--\n> {path}({inner})inner()->None"));
    assert_has(&r.cmd("s"), &format!("ZeroDivisionError: division by zero\n> {path}({call})handled()"));
    assert_has(&r.cmd("c"), "done: 2.0");
    assert_eq!(quit(r), 0);
}

/// The line pdb names a breakpoint on a function by: the `def` line up to 3.12 (the line before
/// the mark on the body's first line, in these fixtures), that first line from 3.13.
fn function_bp_line(interp: &Interpreter, fixture: &str, body_mark: &str) -> i32 {
    line(fixture, body_mark) - i32::from(minor(interp) < 13)
}

/// Breakpoints on functions, defined or not yet: named by the line the program's pdb names
/// them by, stopping at the body's first line on every version.
fn function_breakpoints_name_the_line_of_the_versions_pdb(interp: &Interpreter) {
    let f = "cart.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let main = function_bp_line(interp, f, "main");
    let add = function_bp_line(interp, f, "add");
    assert_eq!(r.cmd("b main"), format!("Breakpoint 1 at {path}:{main}\n"));
    assert_has(&r.cmd("c"), &format!("> {path}({})main()\n-> cart = Cart()", line(f, "main")));
    assert_eq!(r.cmd("b Cart.add"), format!("Breakpoint 2 at {path}:{add}\n"));
    let table = r.cmd("b");
    assert_has(&table, &format!("1   breakpoint   keep yes   at {path}:{main}\n"));
    assert_has(&table, &format!("2   breakpoint   keep yes   at {path}:{add}\n"));
    assert_has(&r.cmd("c"), &format!("> {path}({})add()\n", line(f, "add")));
    assert_eq!(r.cmd("cl 1"), format!("Deleted breakpoint 1 at {path}:{main}\n"));
    assert_has(&r.cmd("c"), "items: 1");
    assert_eq!(quit(r), 0);
}

/// pdb shows a return value after `->` through `reprlib.repr`; `retval` shows all of it.
fn a_long_return_value_is_abbreviated_in_locations(interp: &Interpreter) {
    let f = "cart.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let stock = line(f, "stock");
    r.cmd(&format!("tbreak {stock}"));
    r.cmd("c");
    let short = format!("> {path}({stock})stock()->[0, 1, 2, 3, 4, 5, ...]\n");
    assert_has(&r.cmd("r"), &format!("--Return--\n{short}"));
    assert_has(&r.cmd("w"), &short);
    assert_eq!(r.cmd("retval").trim(), format!("{:?}", (0..20).collect::<Vec<_>>()));
    assert_has(&r.cmd("c"), "stock: 20");
    assert_eq!(quit(r), 0);
}

/// The interpreter's minor version (`3.14d` is 14).
fn minor(interp: &Interpreter) -> u32 {
    interp.name.trim_end_matches('d').split('.').nth(1).and_then(|m| m.parse().ok()).expect("version")
}

/// `j` over the assignment of a local, then `n`: up to 3.12 the program's own
/// `UnboundLocalError`, shown where it is raised; from 3.13 the jump binds the local to None and
/// warns, and the warning names the program's file and line, never pymri's agent.
fn jump_over_an_assignment_then_next(interp: &Interpreter) {
    let f = "raising.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let assign = line(f, "assign");
    let use_ = line(f, "use");
    r.cmd(&format!("tbreak {assign}"));
    assert_has(&r.cmd("c"), &format!("> {path}({assign})skipped()"));
    let out = r.cmd(&format!("j {use_}"));
    assert_has(&out, &format!("> {path}({use_})skipped()\n-> print(\"value:\", value)"));
    if minor(interp) >= 13 {
        assert_has(
            &out,
            &format!("{path}:{use_}: RuntimeWarning: assigning None to 1 unbound local\n  print(\"value:\", value)"),
        );
        assert_lacks(&out, "pymri_agent");
        assert_has(&r.cmd("n"), "value: None");
        assert_has(&r.cmd("c"), "done: 2.0");
    } else {
        let message = if minor(interp) < 11 {
            "local variable 'value' referenced before assignment"
        } else {
            "cannot access local variable 'value' where it is not associated with a value"
        };
        assert_has(
            &r.cmd("n"),
            &format!("UnboundLocalError: {message}\n> {path}({use_})skipped()\n-> print(\"value:\", value)"),
        );
        assert_has(&r.cmd("n"), &format!("--Return--\n> {path}({use_})skipped()->None"));
        let out = r.cmd("c");
        assert_has(&out, "unbound\n");
        assert_has(&out, "done: 2.0");
    }
    assert_eq!(quit(r), 0);
}

/// The same mistakes get the same words as from the program's version of pdb.
fn messages_are_those_of_the_versions_pdb(interp: &Interpreter) {
    let f = "cart.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let new = minor(interp) >= 13;
    assert_eq!(
        r.cmd("b Cart.add"),
        "*** The specified object 'Cart.add' is not a function or was not found along sys.path.\n"
    );
    assert_eq!(r.cmd("commands 1"), "*** cannot set commands: Breakpoint number 1 out of range\n");
    assert_eq!(r.cmd("b 200"), "End of file\n");
    assert_eq!(r.cmd("b 3"), "*** Blank or comment\n");
    assert_eq!(r.cmd("b nowhere.py:3"), "*** 'nowhere.py' not found from sys.path\n");
    let out = r.cmd("p 1 +");
    assert!(out.starts_with("*** SyntaxError: ") && out.lines().count() == 1, "p 1 +:\n{out}");
    let out = r.cmd("condition 5 x >");
    if new {
        assert!(out.starts_with("*** Invalid condition x >: SyntaxError: "), "condition:\n{out}");
        assert_eq!(r.cmd("display"), "No expression is being displayed\n");
        let out = r.cmd("display 1 +");
        assert!(out.starts_with("*** Unable to display 1 +: SyntaxError: "), "display:\n{out}");
    } else {
        assert_eq!(out, "*** Breakpoint number 5 out of range\n");
        assert_eq!(r.cmd("display"), "Currently displaying:\n");
        let out = r.cmd("display 1 +");
        assert!(
            out.starts_with("display 1 +: ** raised SyntaxError: ") && out.lines().count() == 1,
            "display:\n{out}"
        );
    }
    assert_eq!(quit(r), 0);
}

// ---------------------------------------------------------------------------------------------
// Threads

/// A thread name longer than the Name column widens it: every row's State starts under the
/// header's.
fn threads_aligns_long_names(interp: &Interpreter) {
    let f = "long_names.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    r.cmd(&format!("b {}", line(f, "started")));
    assert_has(&r.cmd("c"), &format!("({})main()", line(f, "started")));
    let table = r.cmd("threads");
    let header = table
        .lines()
        .find(|l| l.contains("Name") && l.contains("State") && l.contains("Where"))
        .unwrap_or_else(|| panic!("no header:\n{table}"));
    let column = header.find("State").expect("State");
    let rows: Vec<&str> = table.lines().collect();
    let long = rows
        .iter()
        .find(|l| l.contains("connection-pool-worker-with-a-long-name-7"))
        .unwrap_or_else(|| panic!("no long-named thread:\n{table}"));
    let main = rows.iter().find(|l| l.contains("MainThread")).expect("MainThread row");
    assert_eq!(long.find("running"), Some(column), "threads:\n{table}");
    assert_eq!(main.find("stopped (breakpoint)"), Some(column), "threads:\n{table}");
    assert_eq!(header.find("Where"), main.find(&r.path(f)), "threads:\n{table}");
    assert_eq!(quit(r), 0);
}

fn threads_stopped_at_the_same_breakpoint(interp: &Interpreter) {
    let f = "two_threads.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let path = r.path(f);
    let work = line(f, "work");
    r.cmd(&format!("b {work}"));
    let out = r.cmd("c");
    assert_has(&out, &format!("> {path}({work})work()"));
    assert!(out.contains("(worker-1)]") || out.contains("(worker-2)]"), "thread header:\n{out}");
    // The other worker reaches the breakpoint a moment later: wait until `threads` shows it.
    let mut table = String::new();
    for _ in 0..100 {
        table = r.cmd("threads");
        if table.matches("stopped (breakpoint)").count() == 2 {
            break;
        }
    }
    assert_eq!(table.matches("stopped (breakpoint)").count(), 2, "threads:\n{table}");
    assert_has(&table, "  Id  Name             State                 Where");
    assert_has(&table, "  1   MainThread       running");
    assert_eq!(table.matches(&format!("{path}({work})work()")).count(), 2);
    let selected = table.lines().find(|l| l.starts_with('*')).expect("a selected thread").to_string();
    let other = table
        .lines()
        .find(|l| l.contains("stopped (breakpoint)") && !l.starts_with('*'))
        .expect("the other stopped worker")
        .to_string();
    let other_number: usize = other.split_whitespace().next().expect("number").parse().expect("a number");
    let n_here = r.cmd("p n").trim().to_string();
    let out = r.cmd(&format!("thread {other_number}"));
    assert_has(&out, &format!("> {path}({work})work()"));
    let n_there = r.cmd("p n").trim().to_string();
    let mut both = [n_here.clone(), n_there.clone()];
    both.sort();
    assert_eq!(both, ["1".to_string(), "2".to_string()], "{selected}");
    let out = r.cmd("w");
    assert_lacks(&out, "pymri_agent");
    assert_has(&out, "run()");
    assert_has(&r.cmd("thread 1"), "*** Thread 1 is not stopped");
    // Continuing this worker shows the one still stopped.
    let out = r.cmd("c");
    assert_has(&out, &format!("> {path}({work})work()"));
    assert_eq!(r.cmd("p n").trim(), n_here);
    let out = r.cmd("c");
    assert_has(&out, "both done");
    assert_has(&out, "The program finished and will be restarted");
    assert_eq!(quit(r), 0);
}

// ---------------------------------------------------------------------------------------------
// Line editing

fn tab_completes_commands_and_names(interp: &Interpreter) {
    let f = "discount.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    r.cmd("b calculate_discount");
    r.cmd("c");
    // A unique command name.
    r.send("whati\t");
    r.expect("(Pdb) whatis");
    r.send(" perc\t");
    r.expect("percent");
    r.send("\r");
    r.expect("\n");
    assert_has(&r.prompt(), "<class 'int'>");
    // A name of the frame after a command.
    r.send("p pric\t");
    r.expect("price");
    r.send(" * 2\r");
    r.expect("\n");
    assert_eq!(r.prompt().trim(), "200");
    // An attribute.
    r.send("p price.bit_len\t");
    r.expect("bit_length");
    r.send("()\r");
    r.expect("\n");
    assert_eq!(r.prompt().trim(), "7");
    // History: Up brings the last line back.
    r.send("\x1b[A\r");
    r.expect("\n");
    assert_eq!(r.prompt().trim(), "7");
    r.type_line("q");
    assert_eq!(r.exit_status(), 0);
    // The history file is under $XDG_STATE_HOME/pymri.
    let history = std::fs::read_to_string(r.scratch.host.join("pymri/history")).expect("history file");
    assert_has(&history, "p price.bit_length()");
    assert_has(&history, "whatis percent");
}

fn interact_runs_a_nested_console(interp: &Interpreter) {
    let f = "discount.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    r.cmd("b calculate_discount");
    r.cmd("c");
    r.type_line("interact");
    // pdb's banners changed in 3.13.
    let (banner, exit) = if minor(interp) >= 13 {
        ("*pdb interact start*", "*exit from pdb interact command*")
    } else {
        ("*interactive*", "now exiting InteractiveConsole...")
    };
    assert_has(&r.expect(">>> "), banner);
    r.type_line("price * 3");
    assert_eq!(r.expect(">>> ").trim(), "300");
    r.type_line("for k in range(2):");
    r.expect("... ");
    r.type_line("    print('k', k)");
    r.expect("... ");
    r.type_line("");
    assert_eq!(r.expect(">>> ").trim(), "k 0\nk 1");
    r.type_line("1/0");
    assert_has(&r.expect(">>> "), "ZeroDivisionError: division by zero");
    r.control('d');
    let out = r.prompt();
    assert_has(&out, exit);
    assert_eq!(r.cmd("p price").trim(), "100");
    assert_eq!(quit(r), 0);
}

// ---------------------------------------------------------------------------------------------
// The program's life

fn exit_status_restart_and_detach(interp: &Interpreter) {
    let f = "exit_three.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    let out = r.cmd("c");
    assert_has(&out, "about to exit");
    assert_has(&out, "The program exited via sys.exit(). Exit status: 3");
    assert_has(&out, &entry(&r, f));
    let out = r.cmd("restart");
    assert_has(&out, &entry(&r, f));
    // `detach`: the program runs to its end without the debugger; pymri exits with its status.
    r.type_line("detach");
    let (out, status) = r.finish();
    assert_has(&out, "Detached: the program goes on without the debugger.");
    assert_has(&out, "about to exit");
    assert_eq!(status, 3);

    // `q` or end of input once the program ended and was restarted: the status of the run that
    // ended, not the 0 of the one interrupted at its first line.
    for end_of_input in [false, true] {
        let mut r = Repl::run(interp, f);
        first_stop(&mut r, f);
        assert_has(&r.cmd("c"), "The program exited via sys.exit(). Exit status: 3");
        if end_of_input {
            r.control('d');
        } else {
            r.type_line("q");
        }
        assert_eq!(r.exit_status(), 3, "after a restart, {}", if end_of_input { "Ctrl-D" } else { "q" });
    }

    // `q` in the middle of a run ends the program: status 0 at a plain stop...
    let mut r = Repl::run(interp, "discount.py");
    first_stop(&mut r, "discount.py");
    assert_eq!(quit(r), 0);
    // ... and the uncaught exception's 1 after a post-mortem.
    let mut r = Repl::run(interp, "divide.py");
    first_stop(&mut r, "divide.py");
    assert_has(&r.cmd("c"), "Uncaught exception");
    assert_eq!(quit(r), 1);
    // Ctrl-D at the prompt is `quit`.
    let mut r = Repl::run(interp, "discount.py");
    first_stop(&mut r, "discount.py");
    r.control('d');
    assert_eq!(r.exit_status(), 0);
}

fn rc_commands_and_modules(interp: &Interpreter) {
    // `-c`: commands at the first stop; one that resumes means "do not stop there".
    let f = "discount.py";
    let mut r = Repl::launch(
        interp,
        Launch { fixtures: &[f], args: &["-c", "b calculate_discount", "-c", "continue", f], colour: false },
    );
    let out = r.prompt();
    let path = r.path(f);
    assert_lacks(&out, "<module>()");
    assert_has(&out, &format!("Breakpoint 1 at {path}:{}", function_bp_line(interp, f, "discount")));
    assert_has(&out, &format!("> {path}({})calculate_discount()", line(f, "discount")));
    let out = r.cmd("c");
    assert_has(&out, "expected 80, got 120");
    // Restarted: the `-c` commands are not run again, the program stops at its first line.
    assert_has(&out, &entry(&r, f));
    assert_eq!(quit(r), 0);

    // `-m module ARGS`: runpy semantics, the working directory on sys.path.
    let mut r = Repl::launch(
        interp,
        Launch { fixtures: &[f], args: &["-m", "discount", "--flag", "x"], colour: false },
    );
    first_stop(&mut r, f);
    assert_eq!(r.cmd("p __name__").trim(), "'__main__'");
    assert_eq!(r.cmd("import sys; print(sys.argv[1:])").trim(), "['--flag', 'x']");
    assert_has(&r.cmd("c"), "expected 80, got 120");
    assert_eq!(quit(r), 0);

    // A script's own arguments, and `-c` commands that do not resume.
    let mut r = Repl::launch(
        interp,
        Launch { fixtures: &[f], args: &["-c", "p 6 * 7", f, "a", "-b"], colour: false },
    );
    let out = r.prompt();
    assert_has(&out, "42\n> ");
    assert_eq!(r.cmd("p __import__('sys').argv").trim(), format!("['{f}', 'a', '-b']"));
    assert_eq!(quit(r), 0);
}

fn ctrl_c_pauses_the_running_program(interp: &Interpreter) {
    let f = "busy_loop.py";
    let mut r = Repl::run(interp, f);
    first_stop(&mut r, f);
    r.type_line("c");
    r.expect("looping");
    r.control('c');
    let out = r.prompt();
    assert_has(&out, "Program interrupted. (Use 'cont' to resume).");
    assert_has(&out, &format!("{}(", r.path(f)));
    assert_eq!(r.cmd("p spins > 0").trim(), "True");
    // Ctrl-C at the prompt abandons the line.
    r.send("p this line is abandoned");
    r.control('c');
    assert_lacks(&r.prompt(), "SyntaxError");
    assert_eq!(r.cmd("p 1 + 1").trim(), "2");
    assert_eq!(quit(r), 0);
}

fn sticky_and_colours(interp: &Interpreter) {
    let f = "counter.py";
    let mut r = Repl::launch(interp, Launch { fixtures: &[f], args: &[f], colour: true });
    first_stop(&mut r, f);
    let add = line(f, "add");
    r.cmd(&format!("b {add}"));
    r.cmd("c");
    r.type_line("ll");
    let (text, raw) = r.expect_raw(PROMPT);
    assert_has(&text, &format!("  {add} B->\t        total += i"));
    assert_has(&raw, "\x1b[35mdef\x1b[0m count_up(n):");
    assert_has(&raw, "\x1b[90m# @mark add\x1b[0m");
    assert_has(&raw, "\x1b[1;31mB\x1b[0m\x1b[1;33m->\x1b[0m");
    r.type_line("sticky");
    let (text, raw) = r.expect_raw(PROMPT);
    assert_has(&raw, "\x1b[H\x1b[2J");
    assert_has(&text, &format!("> {}({add})count_up()", r.path(f)));
    assert_has(&text, "  4  \tdef count_up(n):");
    r.type_line("n");
    let (text, raw) = r.expect_raw(PROMPT);
    assert_has(&raw, "\x1b[H\x1b[2J");
    assert_has(&text, "->\t    for i in range(n):");
    assert_has(&text, &format!("  {add} B\t        total += i"));
    assert_has(&r.cmd("sticky"), "sticky mode off");
    assert_eq!(quit(r), 0);
}
