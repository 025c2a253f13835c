//! `pymri record` against real interpreters: what it counts, in which format, and how a
//! recording ends.

mod common;

use common::{interpreter, pymri, reported_tids, text, Target};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FIXTURE: &str = "record_target.py";
/// Generous: the machine running the tests is shared and loaded; the benchmark holds the
/// 5-point bar.
const TOLERANCE: f64 = 0.15;

fn start(name: &str) -> Target {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    Target::start(&interp, FIXTURE, &["{ready}", "{control}"])
}

/// Seconds `busy` spent in hot and in cold so far.
fn truth(target: &mut Target) -> (f64, f64) {
    let v: Value = serde_json::from_str(&target.ask("truth")).expect("truth is JSON");
    (v["hot"].as_f64().expect("hot"), v["cold"].as_f64().expect("cold"))
}

/// Runs `pymri record PID ARGS -o FILE` to its end; the file's text and pymri's stderr.
fn record(target: &Target, args: &[&str], file: &str) -> (String, String) {
    let output = target.scratch.host.join(file);
    let pid = target.pid().to_string();
    let mut all = vec!["record", &pid, "-o", output.to_str().expect("path")];
    all.extend(args);
    let out = pymri(&all);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "pymri {all:?}: {stderr}");
    (std::fs::read_to_string(&output).expect("the output file"), stderr)
}

/// Collapsed lines as (frames root first, count).
fn stacks(collapsed: &str) -> Vec<(Vec<String>, u64)> {
    collapsed
        .lines()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no count: {line}"));
            (
                stack.split(';').map(str::to_string).collect(),
                count.parse().unwrap_or_else(|_| panic!("{line}")),
            )
        })
        .collect()
}

/// Samples whose stack has a frame of `function` (`function (...`).
fn count_of(stacks: &[(Vec<String>, u64)], function: &str) -> u64 {
    let prefix = format!("{function} (");
    stacks.iter().filter(|(s, _)| s.iter().any(|f| f.starts_with(&prefix))).map(|(_, n)| n).sum()
}

/// The sample count of the summary line.
fn samples_of(stderr: &str) -> u64 {
    let line =
        stderr.lines().find(|l| l.contains(" samples in ")).unwrap_or_else(|| panic!("no summary: {stderr}"));
    let before = line.split(" samples in ").next().expect("summary");
    before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// Wall mode, split by thread: every thread under its own root frame, and the shares of `hot`
/// and `cold` in `busy`'s samples close to the time `busy` measured in each.
fn shares(name: &str) {
    let mut target = start(name);
    let tids = reported_tids(&target);
    let (hot0, cold0) = truth(&mut target);
    let (collapsed, stderr) = record(&target, &["-d", "3", "-f", "collapsed", "--threads"], "wall.txt");
    let (hot1, cold1) = truth(&mut target);
    let stacks = stacks(&collapsed);
    let samples = samples_of(&stderr);
    assert!(samples >= 100, "{samples} samples in 3 s at 100 Hz: {stderr}");

    for thread in ["busy", "sleeper", "MainThread"] {
        let label = format!("thread {thread} ({})", tids[thread]);
        let n: u64 = stacks.iter().filter(|(s, _)| s[0] == label).map(|(_, n)| n).sum();
        assert_eq!(n, samples, "{label}: one stack per sample in wall mode\n{collapsed}");
    }
    assert!(stacks.iter().all(|(s, _)| s[0].starts_with("thread ")), "{collapsed}");
    assert_eq!(count_of(&stacks, "nap"), samples, "{collapsed}");

    let hot = count_of(&stacks, "hot") as f64;
    let cold = count_of(&stacks, "cold") as f64;
    let measured = hot / (hot + cold);
    let (dh, dc) = (hot1 - hot0, cold1 - cold0);
    let truth = dh / (dh + dc);
    assert!(
        (measured - truth).abs() <= TOLERANCE,
        "{name}: hot is {:.1}% of the samples, {:.1}% of the time ({hot} hot, {cold} cold)\n{collapsed}",
        measured * 100.0,
        truth * 100.0
    );
    // With lines, hot's frame names its file and line.
    let hot_line = common::mark(FIXTURE, "hot");
    let script = target.script_path(FIXTURE);
    assert!(collapsed.contains(&format!("hot ({script}:{hot_line})")), "{collapsed}");
}

/// CPU mode leaves out the threads that sleep; GIL mode counts only the GIL's holder.
fn modes(name: &str) {
    let target = start(name);
    let tids = reported_tids(&target);
    let (cpu, _) = record(&target, &["-d", "1", "-f", "collapsed", "--mode", "cpu", "--threads"], "cpu.txt");
    let cpu = stacks(&cpu);
    assert_eq!(count_of(&cpu, "nap"), 0, "the sleeper is off CPU: {cpu:?}");
    assert_eq!(count_of(&cpu, "main"), 0, "the main thread waits for a command: {cpu:?}");
    assert!(count_of(&cpu, "busy") > 0, "{cpu:?}");

    let (gil, stderr) =
        record(&target, &["-d", "1", "-f", "collapsed", "--mode", "gil", "--threads"], "gil.txt");
    let gil = stacks(&gil);
    let busy = format!("thread busy ({})", tids["busy"]);
    assert!(gil.iter().all(|(s, _)| s[0] == busy), "only busy ever holds the GIL: {gil:?}");
    let counted: u64 = gil.iter().map(|(_, n)| n).sum();
    let samples = samples_of(&stderr);
    assert!(counted <= samples, "at most one holder a sample: {counted} stacks, {samples} samples");
    assert!(counted * 2 >= samples, "busy holds the GIL most of the time: {counted} of {samples}");
}

macro_rules! per_interpreter {
    ($($version:literal => $shares:ident, $modes:ident;)*) => {
        $(
            #[test]
            fn $shares() { shares($version) }
            #[test]
            fn $modes() { modes($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => record_shares_3_9, record_modes_3_9;
    "3.11" => record_shares_3_11, record_modes_3_11;
    "3.13" => record_shares_3_13, record_modes_3_13;
    "3.14" => record_shares_3_14, record_modes_3_14;
    "3.15" => record_shares_3_15, record_modes_3_15;
}

#[test]
fn record_speedscope_is_json_with_one_profile_per_thread() {
    let target = start("3.14");
    let (json, _) = record(&target, &["-d", "0.5", "-f", "speedscope"], "profile.json");
    let v: Value = serde_json::from_str(&json).expect("speedscope JSON");
    assert_eq!(v["$schema"], "https://www.speedscope.app/file-format-schema.json");
    let frames: Vec<&str> =
        v["shared"]["frames"].as_array().expect("frames").iter().filter_map(|f| f["name"].as_str()).collect();
    for function in ["hot", "nap", "main"] {
        assert!(frames.iter().any(|f| f.starts_with(&format!("{function} ("))), "{function}: {frames:?}");
    }
    let profiles = v["profiles"].as_array().expect("profiles");
    let mut names: Vec<&str> = profiles.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("thread busy (")), "{names:?}");
    for p in profiles {
        assert_eq!(p["type"], "sampled");
        assert_eq!(p["samples"].as_array().map(Vec::len), p["weights"].as_array().map(Vec::len));
    }
}

#[test]
fn record_flamegraph_is_an_svg_naming_the_functions() {
    let target = start("3.11");
    let (svg, stderr) = record(&target, &["-d", "0.5"], "profile.svg");
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    for function in ["hot (", "nap (", "busy ("] {
        assert!(svg.contains(function), "{function} missing");
    }
    assert!(stderr.contains("flame graph written to"), "{stderr}");
}

/// Runs `pymri record PID ARGS -o FILE` to its end; the file's path and pymri's stderr.
fn record_binary(target: &Target, args: &[&str], file: &str) -> (std::path::PathBuf, String) {
    let output = target.scratch.host.join(file);
    let pid = target.pid().to_string();
    let mut all = vec!["record", &pid, "-o", output.to_str().expect("path")];
    all.extend(args);
    let out = pymri(&all);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "pymri {all:?}: {stderr}");
    (output, stderr)
}

/// The speedscope file in the real speedscope app (npm's `speedscope`, headless Chromium): the
/// thread `busy` weighs every sample's interval, and its functions are listed with their file
/// and line.
#[test]
fn record_speedscope_opens_in_the_speedscope_app() {
    let target = start("3.13");
    let tids = reported_tids(&target);
    let (profile, stderr) = record_binary(&target, &["-d", "0.5", "-f", "speedscope"], "profile.json");
    let samples = samples_of(&stderr);
    let script = target.script_path(FIXTURE);
    let hot = format!("hot ({script}:{})", common::mark(FIXTURE, "hot"));
    let expect = serde_json::to_string(&[hot.as_str(), "busy ("]).expect("JSON");
    let (dir, chromium) = common::browser::browser_kit();
    let screenshot = common::browser::artifacts().join("record-speedscope.png");
    let mut node = Command::new("node");
    node.arg("speedscope.mjs")
        .current_dir(&dir)
        .env("PYMRI_PROFILE", &profile)
        .env("PYMRI_EXPECT", &expect)
        .env("PYMRI_THREAD", format!("thread busy ({})", tids["busy"]))
        // Wall mode at 100 Hz: busy is in every sample, 10 ms each.
        .env("PYMRI_TOTAL", format!("{:.2}ms", samples as f64 * 10.0))
        .env("PYMRI_SCREENSHOT", &screenshot)
        .env("PYMRI_CHROMIUM", &chromium);
    let out = common::run_with_deadline(node, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "speedscope did not show the profile:\n{}\n{}\npymri: {stderr}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `go tool pprof` (Debian's golang-go), which must be installed: the test fails without it.
fn go_pprof(args: &[&str]) -> String {
    let mut go = Command::new("go");
    go.args(["tool", "pprof"]).args(args);
    let out = common::run_with_deadline(go, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The flat and cumulative sample counts `go tool pprof -top` gives `function`.
fn top_counts(top: &str, function: &str) -> (u64, u64) {
    let line = top
        .lines()
        .find(|l| l.split_whitespace().last() == Some(function))
        .unwrap_or_else(|| panic!("{function} is not in go tool pprof's top:\n{top}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| columns[i].parse().unwrap_or_else(|_| panic!("{line}"));
    (number(0), number(3))
}

/// The pprof file read by `go tool pprof`: every thread in every sample (wall mode), the busy
/// functions by name, and, split by thread, a `thread` label per sample.
#[test]
fn record_pprof_is_read_by_go_tool_pprof() {
    assert!(
        Command::new("go")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "go is required: install Debian's golang-go (scripts/test.sh does)"
    );
    let target = start("3.14");
    let tids = reported_tids(&target);
    let (profile, stderr) = record_binary(&target, &["-d", "0.5", "-f", "pprof"], "profile.pb.gz");
    assert!(stderr.contains("pprof profile written to"), "{stderr}");
    let samples = samples_of(&stderr);
    let path = profile.to_str().expect("path");
    let top = go_pprof(&["-top", "-sample_index=samples", path]);
    let total = 3 * samples;
    assert!(
        top.contains(&format!("Showing nodes accounting for {total}, 100% of {total} total")),
        "three threads in each of {samples} samples:\n{top}"
    );
    assert_eq!(top_counts(&top, "nap"), (samples, samples), "{top}");
    assert_eq!(top_counts(&top, "main"), (samples, samples), "{top}");
    assert_eq!(top_counts(&top, "busy").1, samples, "{top}");
    let (hot, cold) = (top_counts(&top, "hot").0, top_counts(&top, "cold").0);
    assert!(hot > cold && hot + cold > samples * 9 / 10, "hot takes about 3/4 of busy's time:\n{top}");
    // The wall time: ten milliseconds a sample.
    let wall = go_pprof(&["-top", "-sample_index=wall", "-unit=ms", path]);
    assert!(wall.contains(&format!("{}ms total", total * 10)), "{wall}");

    // CPU mode: the time is CPU time, and the threads that sleep are not in it.
    let (cpu, _) = record_binary(&target, &["-d", "0.2", "-f", "pprof", "--mode", "cpu"], "cpu.pb.gz");
    let cpu = go_pprof(&["-top", "-sample_index=cpu", cpu.to_str().expect("path")]);
    assert!(cpu.contains("Type: cpu") && cpu.contains(" hot\n"), "{cpu}");
    assert!(!cpu.contains(" nap\n") && !cpu.contains(" main\n"), "{cpu}");

    let (split, _) = record_binary(&target, &["-d", "0.2", "-f", "pprof", "--threads"], "threads.pb.gz");
    let tags = go_pprof(&["-tags", split.to_str().expect("path")]);
    for thread in ["busy", "sleeper", "MainThread"] {
        let label = format!("thread {thread} ({})", tids[thread]);
        assert!(tags.contains(&label), "{label}:\n{tags}");
    }
}

/// Every sample of a thread of the Firefox Profiler's processed format, as (frame names root
/// first, weight), read through the thread's tables.
fn gecko_samples(thread: &Value) -> Vec<(Vec<String>, i64)> {
    let strings = thread["stringArray"].as_array().expect("stringArray");
    let (funcs, frames, stacks, table) =
        (&thread["funcTable"], &thread["frameTable"], &thread["stackTable"], &thread["samples"]);
    let n = table["length"].as_u64().expect("samples.length") as usize;
    assert_eq!(table["stack"].as_array().map(Vec::len), Some(n));
    assert_eq!(
        table["time"].as_array().map(Vec::len).or(table["timeDeltas"].as_array().map(Vec::len)),
        Some(n)
    );
    (0..n)
        .map(|s| {
            let mut names = Vec::new();
            let mut stack = table["stack"][s].as_u64();
            while let Some(i) = stack {
                let frame = stacks["frame"][i as usize].as_u64().expect("stack frame") as usize;
                let func = frames["func"][frame].as_u64().expect("frame func") as usize;
                let name = funcs["name"][func].as_u64().expect("func name") as usize;
                names.push(strings[name].as_str().expect("a string").to_string());
                stack = stacks["prefix"][i as usize].as_u64();
            }
            names.reverse();
            (names, table["weight"][s].as_i64().expect("weight"))
        })
        .collect()
}

/// The gecko file follows the Firefox Profiler's processed format: one thread per thread, named
/// as in speedscope, whose samples weigh as many samples as were taken, with the busy function
/// at its file and line.
#[test]
fn record_gecko_follows_the_firefox_profilers_processed_format() {
    let target = start("3.15");
    let tids = reported_tids(&target);
    let (json, stderr) = record(&target, &["-d", "0.5", "-f", "gecko"], "profile.gecko.json");
    assert!(stderr.contains("Firefox Profiler profile written to"), "{stderr}");
    let samples = samples_of(&stderr);
    let v: Value = serde_json::from_str(&json).expect("gecko JSON");
    let meta = &v["meta"];
    assert!(
        meta["version"].as_u64().is_some() && meta["preprocessedProfileVersion"].as_u64().is_some(),
        "{meta}"
    );
    assert_eq!(meta["interval"], 10.0, "milliseconds: {meta}");
    assert_eq!(meta["product"].as_str().map(|p| p.starts_with("pymri record ")), Some(true), "{meta}");
    let threads = v["threads"].as_array().expect("threads");
    assert_eq!(threads.len(), 3);
    let script = target.script_path(FIXTURE);
    let hot = format!("hot ({script}:{})", common::mark(FIXTURE, "hot"));
    for name in ["busy", "sleeper", "MainThread"] {
        let label = format!("thread {name} ({})", tids[name]);
        let thread =
            threads.iter().find(|t| t["name"] == label.as_str()).unwrap_or_else(|| panic!("{label}"));
        assert_eq!(thread["tid"], tids[name].to_string());
        assert_eq!(thread["pid"], target.pid().to_string());
        let stacks = gecko_samples(thread);
        let weight: i64 = stacks.iter().map(|(_, w)| w).sum();
        assert_eq!(weight as u64, samples, "{label}: in every sample");
        if name == "busy" {
            let in_hot: i64 = stacks.iter().filter(|(s, _)| s.last() == Some(&hot)).map(|(_, w)| w).sum();
            assert!(in_hot * 2 > weight, "{hot} is most of busy's samples: {stacks:?}");
        }
    }
}

/// A `pymri record` running in the background, its stderr read line by line.
struct Recording {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: String,
}

impl Recording {
    fn start(args: &[&str]) -> Recording {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pymri"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pymri");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Recording { child, lines, stderr: String::new() }
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
            if line.contains(needle) {
                return;
            }
        }
        panic!("no line with {needle:?} from pymri: {}", self.stderr);
    }

    /// Waits (bounded) for pymri to end; its status and whole stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                }
                return (status, self.stderr);
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.stderr.push_str(&line);
                self.stderr.push('\n');
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pymri record did not end: {}", self.stderr);
            }
        }
    }
}

fn until_the_end(target: &Target, output: &std::path::Path) -> Recording {
    let pid = target.pid().to_string();
    let mut recording =
        Recording::start(&["record", &pid, "-f", "collapsed", "-o", output.to_str().expect("path")]);
    recording.wait_for("sampling process");
    recording
}

#[test]
fn record_ends_and_writes_when_the_target_exits() {
    let mut target = start("3.13");
    let output = target.scratch.host.join("exit.txt");
    let recording = until_the_end(&target, &output);
    assert_eq!(target.ask("exit"), "bye");
    let (status, stderr) = recording.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("the process exited"), "{stderr}");
    assert!(stderr.contains(&format!("written to {}", output.display())), "{stderr}");
    let collapsed = std::fs::read_to_string(&output).expect("the profile was written");
    assert_eq!(count_of(&stacks(&collapsed), "nap"), samples_of(&stderr), "{collapsed}");
}

#[test]
fn record_writes_what_it_has_at_sigint() {
    let target = start("3.11");
    let output = target.scratch.host.join("sigint.txt");
    let recording = until_the_end(&target, &output);
    // SAFETY: signalling a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(recording.child.id() as i32, libc::SIGINT) }, 0);
    let (status, stderr) = recording.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let collapsed = std::fs::read_to_string(&output).expect("the profile was written");
    assert_eq!(count_of(&stacks(&collapsed), "nap"), samples_of(&stderr), "{collapsed}");
}

#[test]
fn record_to_an_unwritable_output_fails_before_sampling() {
    let target = start("3.11");
    let pid = target.pid().to_string();
    let missing = target.scratch.host.join("no-such-dir/out.svg");
    let started = Instant::now();
    let out = pymri(&["record", &pid, "-o", missing.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with(&format!("error: cannot write {}", missing.display())), "{stderr}");
    assert!(!stderr.contains("sampling process"), "no sampling started: {stderr}");
    // Without -d, a recording that had started would last until the target ends.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn record_rate_zero_and_absurd_rates_are_usage_errors() {
    for rate in ["0", "-5", "1000000", "1e9", "fast"] {
        let out = pymri(&["record", "1", "-o", "/dev/null", "-r", rate]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rate}: {stderr}");
        assert!(stderr.starts_with(&format!("error: invalid value '{rate}' for '--rate <HZ>'")), "{stderr}");
    }
    let out = pymri(&["record", "1", "-o", "/dev/null", "-f", "pdf"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: invalid value 'pdf' for '--format <FORMAT>'"), "{stderr}");
}

/// `pymri record -- COMMAND`: the program is started, recorded from its first readable moment
/// until it exits, and its exit status is pymri's.
fn command(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let scratch = common::Scratch::new(&interp);
    let output = scratch.host.join("command.txt");
    let code = "import sys, time\n\
                def spin(until):\n    while time.time() < until: pass\n\
                spin(time.time() + 1.0)\n\
                sys.exit(3)\n";
    let mut args = vec!["record", "-f", "collapsed", "-o", output.to_str().expect("path"), "--"];
    let root = interp.root.to_str().expect("root").to_string();
    if interp.in_root() {
        args.extend(["chroot", &root]);
    }
    args.extend([interp.exe.as_str(), "-c", code]);
    let out = pymri(&args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the program's status: {stderr}");
    assert!(stderr.contains("the process exited"), "{stderr}");
    let collapsed = std::fs::read_to_string(&output).expect("the profile was written");
    let stacks = stacks(&collapsed);
    let spin = count_of(&stacks, "spin");
    assert!(
        spin * 2 >= samples_of(&stderr) && spin > 0,
        "spin is most of the samples:\n{collapsed}\n{stderr}"
    );
}

#[test]
fn record_a_command_until_it_exits_3_11() {
    command("3.11")
}

#[test]
fn record_a_command_until_it_exits_3_14() {
    command("3.14")
}

#[test]
fn record_a_command_that_cannot_start_fails_with_status_3() {
    let scratch = common::Scratch::new(&interpreter("3.11").expect("3.11"));
    let output = scratch.host.join("never.txt");
    let out = pymri(&["record", "-o", output.to_str().expect("path"), "--", "/no/such/program"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.starts_with("error: cannot start /no/such/program"), "{stderr}");
}

const FAMILY: &str = "record_family.py";

fn start_family(name: &str) -> (Target, i64) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let target = Target::start(&interp, FAMILY, &["{ready}", "{control}"]);
    let v: Value = serde_json::from_str(&target.ready_line).expect("ready line is JSON");
    let native = v["native"].as_i64().expect("the native thread's id");
    (target, native)
}

/// Context switches of a thread so far: each stop and resume of a sleeping thread adds some.
fn switches(pid: i32, tid: i64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("status");
    status
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
        .map(|l| l.rsplit(char::is_whitespace).next().and_then(|n| n.parse::<u64>().ok()).expect("count"))
        .sum()
}

/// `--blocking` stops the Python threads for each sample and only then: a thread asleep in
/// Python is woken (stopped and resumed) at least once a sample, a thread without a Python
/// thread state never; the busy thread counts on meanwhile and everything runs after.
fn blocking(name: &str) {
    let (mut target, native) = start_family(name);
    let tids = reported_tids(&target);
    let pid = target.pid();
    let count = |target: &mut Target| -> u64 { target.ask("count").parse().expect("a count") };
    let (native0, sleeper0) = (switches(pid, native), switches(pid, tids["sleeper"]));
    let count0 = count(&mut target);
    let (collapsed, stderr) =
        record(&target, &["-d", "1", "-f", "collapsed", "--threads", "--blocking"], "blocking.txt");
    let (native1, sleeper1) = (switches(pid, native), switches(pid, tids["sleeper"]));
    let samples = samples_of(&stderr);
    assert!(samples >= 20, "{samples} samples in 1 s at 100 Hz: {stderr}");
    assert_eq!(native1, native0, "the thread without a Python thread state was never stopped");
    assert!(sleeper1 - sleeper0 >= samples, "the sleeper was stopped for each of {samples} samples");
    assert!(!target.any_thread_stopped(), "threads left stopped");
    assert_eq!(target.tracer_pid(), 0, "pymri left attached");
    assert!(count(&mut target) > count0, "busy ran during the recording and runs after");

    let stacks = stacks(&collapsed);
    for thread in ["busy", "sleeper", "MainThread"] {
        let label = format!("thread {thread} ({})", tids[thread]);
        let n: u64 = stacks.iter().filter(|(s, _)| s[0] == label).map(|(_, n)| n).sum();
        assert_eq!(n, samples, "{label}: one stack per sample\n{collapsed}");
    }
    assert_eq!(count_of(&stacks, "spin"), samples, "{collapsed}");
}

#[test]
fn record_blocking_stops_only_python_threads_only_while_sampling_3_11() {
    blocking("3.11")
}

#[test]
fn record_blocking_stops_only_python_threads_only_while_sampling_3_14() {
    blocking("3.14")
}

/// `--subprocesses`: a child started after the recording began, and the grandchild it
/// starts, are recorded too, each stack under its process.
fn subprocesses(name: &str) {
    let (mut target, _) = start_family(name);
    let pid = target.pid().to_string();
    let output = target.scratch.host.join("family.txt");
    let mut recording = Recording::start(&[
        "record",
        &pid,
        "--subprocesses",
        "-d",
        "4",
        "-f",
        "collapsed",
        "-o",
        output.to_str().expect("path"),
    ]);
    recording.wait_for("sampling process");
    let reply = target.ask("spawn");
    let (child, grandchild) = reply.split_once(' ').unwrap_or_else(|| panic!("{reply}"));
    let (status, stderr) = recording.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let collapsed = std::fs::read_to_string(&output).expect("the profile was written");
    let stacks = stacks(&collapsed);
    assert!(stacks.iter().all(|(s, _)| s[0].starts_with("process ")), "{collapsed}");
    let under = |process: &str, function: &str| -> u64 {
        let root = format!("process {process} (");
        let prefix = format!("{function} (");
        stacks
            .iter()
            .filter(|(s, _)| s[0].starts_with(&root) && s.iter().any(|f| f.starts_with(&prefix)))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(under(&pid, "spin"), samples_of(&stderr), "the target, every sample\n{collapsed}");
    assert!(under(child, "child_spin") > 0, "the child\n{collapsed}");
    assert!(under(grandchild, "grandchild_spin") > 0, "the grandchild\n{collapsed}");
    // The label is the command line.
    let child_root = stacks.iter().map(|(s, _)| &s[0]).find(|r| r.starts_with(&format!("process {child} (")));
    assert!(child_root.is_some_and(|r| r.contains(" -c ")), "{child_root:?}");
}

#[test]
fn record_subprocesses_follows_children_and_grandchildren_3_11() {
    subprocesses("3.11")
}

#[test]
fn record_subprocesses_follows_children_and_grandchildren_3_14() {
    subprocesses("3.14")
}

/// `--idle` in CPU mode adds the idle threads, never the GIL's waiters; outside CPU mode it is
/// a usage error.
fn idle(name: &str) {
    let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
    let mut target = Target::start(&interp, "thread_states.py", &["{ready}", "0.00005"]);
    let tids: std::collections::HashMap<String, i64> =
        serde_json::from_str(&target.ready.line(Duration::from_secs(10)).expect("tids")).expect("JSON");
    let per_thread = |collapsed: &str, thread: &str| -> u64 {
        let label = format!("thread {thread} ({})", tids[thread]);
        stacks(collapsed).iter().filter(|(s, _)| s[0] == label).map(|(_, n)| n).sum()
    };
    for (args, idle_counted) in [(&["--mode", "cpu"][..], false), (&["--mode", "cpu", "--idle"][..], true)] {
        let mut all = vec!["-d", "1", "-f", "collapsed", "--threads"];
        all.extend(args);
        let (collapsed, stderr) = record(&target, &all, "cpu.txt");
        let samples = samples_of(&stderr);
        assert!(samples >= 20, "{stderr}");
        for busy in ["MainThread", "native"] {
            assert_eq!(per_thread(&collapsed, busy), samples, "{args:?} {busy} is on a CPU\n{collapsed}");
        }
        for waiter in ["waiter-1", "waiter-2"] {
            // Until pymri has once seen a waiter asleep in the GIL, a sample that finds it on the
            // run queue (or waking between two reads) cannot tell it from a thread running C
            // code, or an idle one: a few of the first samples, on a loaded machine (see the
            // pymri-cpython states test). Counted as on a CPU, waiters were 20 to 40%.
            let n = per_thread(&collapsed, waiter);
            assert!(n * 20 <= samples, "{args:?} {waiter} waits for the GIL: {n} of {samples}\n{collapsed}");
        }
        for sleeping in ["sleeper", "parked", "handler"] {
            let expected = if idle_counted { samples } else { 0 };
            assert_eq!(per_thread(&collapsed, sleeping), expected, "{args:?} {sleeping}\n{collapsed}");
        }
    }
    assert!(target.is_alive());
}

#[test]
fn record_cpu_mode_with_and_without_idle_3_11() {
    idle("3.11")
}

#[test]
fn record_cpu_mode_with_and_without_idle_3_15() {
    idle("3.15")
}

#[test]
fn record_idle_outside_cpu_mode_is_a_usage_error() {
    for mode in ["wall", "gil"] {
        let out = pymri(&["record", "1", "-o", "/dev/null", "--mode", mode, "--idle"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mode}: {stderr}");
        assert!(stderr.starts_with("error: --idle adds idle threads to --mode cpu"), "{stderr}");
    }
}
