//! `pymri dap` driven by a real DAP client: Microsoft's `@vscode/debugadapter-testsupport`
//! (npm), from the Node test scripts in `editors/tests/` (`node --test`). This harness installs
//! the client (`npm ci`, cached while `package-lock.json` is unchanged), prepares the targets
//! on each interpreter (fixtures copied into its root, the HTTP server started and ready) and
//! runs one script per test with a deadline. A machine without `node` or `npm` fails loudly.

mod common;

use common::{interpreter, repo_root, run_with_deadline, text, Interpreter, Scratch, Target};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A whole Node test file, client installation excluded.
const NODE_DEADLINE: Duration = Duration::from_secs(240);
/// `npm ci` from the registry (a few hundred kilobytes).
const NPM_DEADLINE: Duration = Duration::from_secs(300);

fn tests_dir() -> PathBuf {
    repo_root().join("editors/tests")
}

fn require_tool(name: &str) {
    let found = Command::new(name).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: the DAP tests need Node.js 18+ and npm \
         (Debian: apt-get install nodejs npm)"
    );
}

/// Installs the DAP test client once per `package-lock.json`, under a file lock: nextest runs
/// tests in parallel processes.
fn install_client() -> PathBuf {
    require_tool("node");
    require_tool("npm");
    let dir = tests_dir();
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pymri-dap-npm.lock");
    let lock = std::fs::File::create(&lock_path).expect("npm lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "locking {}", lock_path.display());
    let wanted =
        std::fs::read_to_string(dir.join("package-lock.json")).expect("editors/tests/package-lock.json");
    let stamp = dir.join("node_modules/.pymri-installed-lock");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&dir);
        let out = run_with_deadline(cmd, NPM_DEADLINE);
        assert!(
            out.status.success(),
            "npm ci in {} failed:\n{}\n{}",
            dir.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
        std::fs::write(&stamp, &wanted).expect("stamp");
    }
    drop(lock);
    dir
}

/// Runs one Node test file with `env`; fails with its whole output.
fn node_test(file: &str, env: &[(&str, String)]) {
    let dir = install_client();
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=tap", file])
        .current_dir(&dir)
        .env("PYMRI_BIN", env!("CARGO_BIN_EXE_pymri"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH")
        .env_remove("NODE_OPTIONS");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = run_with_deadline(cmd, NODE_DEADLINE);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "node --test {file} failed ({:?}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("# fail 0") && !stdout.contains("# pass 0"), "no test ran:\n{stdout}\n{stderr}");
}

/// The interpreter's settings for the launch scripts, with the fixtures copied into a scratch
/// directory inside its root.
fn launch_env(interp: &Interpreter, scratch: &Scratch) -> Vec<(&'static str, String)> {
    for fixture in ["dap/basket.py", "pdb/divide.py"] {
        let src = repo_root().join("fixtures").join(fixture);
        let name = Path::new(fixture).file_name().expect("file name");
        std::fs::copy(&src, scratch.host.join(name)).unwrap_or_else(|e| panic!("copy {fixture}: {e}"));
    }
    vec![
        ("PYMRI_DAP_PYTHON", interp.exe.clone()),
        ("PYMRI_DAP_ROOT", if interp.in_root() { interp.root.display().to_string() } else { String::new() }),
        ("PYMRI_DAP_DIR", scratch.host.display().to_string()),
        ("PYMRI_DAP_DIR_INSIDE", scratch.inside.clone()),
    ]
}

fn launch(version: &str) {
    let interp = interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
    let scratch = Scratch::new(&interp);
    node_test("launch.test.js", &launch_env(&interp, &scratch));
}

fn attach(version: &str) {
    let interp = interpreter(version).unwrap_or_else(|| panic!("interpreter {version} is not provisioned"));
    let target = Target::start(&interp, "http_server.py", &["{ready}"]);
    let port = target.ready_line.split_whitespace().nth(1).expect("port").to_string();
    let script = target.scratch.host.join("http_server.py");
    node_test(
        "attach.test.js",
        &[
            ("PYMRI_DAP_PID", target.pid().to_string()),
            ("PYMRI_DAP_PORT", port),
            ("PYMRI_DAP_SCRIPT", script.display().to_string()),
        ],
    );
    assert!(!target.any_thread_stopped(), "the server was left stopped");
    assert_eq!(target.tracer_pid(), 0, "the server was left traced");
}

macro_rules! per_interpreter {
    ($($version:literal => $launch:ident, $attach:ident;)*) => {
        $(
            #[test]
            fn $launch() { launch($version) }
            #[test]
            fn $attach() { attach($version) }
        )*
    };
}

per_interpreter! {
    "3.9" => launch_3_9, attach_3_9;
    "3.11" => launch_3_11, attach_3_11;
    "3.13" => launch_3_13, attach_3_13;
    "3.14" => launch_3_14, attach_3_14;
    "3.15" => launch_3_15, attach_3_15;
}

/// `attach` with `connect` (TLS) to a program whose agent listens and waits for its debugger.
#[test]
fn attach_by_connecting_to_a_listening_agent() {
    let interp = interpreter("3.14").expect("3.14");
    let scratch = Scratch::new(&interp);
    let name = "discount.py";
    scratch.copy_fixture(&format!("pdb/{name}"));
    let secret = scratch.host.join("app.secret");
    let made = common::pymri(&["secret", &secret.display().to_string()]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut agent = common::AgentProgram::start(
        &interp,
        &scratch,
        &[
            "--listen",
            &format!("tls:127.0.0.1:{port}"),
            "--secret-file",
            &format!("{}/app.secret", scratch.inside),
            "--wait",
            &format!("{}/{name}", scratch.inside),
        ],
    );
    agent.expect_line("listening", Duration::from_secs(20));
    node_test(
        "connect.test.js",
        &[
            ("PYMRI_DAP_CONNECT_PORT", port.to_string()),
            ("PYMRI_DAP_SECRET", secret.display().to_string()),
            ("PYMRI_DAP_SCRIPT", scratch.host.join(name).display().to_string()),
            ("PYMRI_DAP_DIR", scratch.host.display().to_string()),
            ("PYMRI_DAP_DIR_INSIDE", scratch.inside.clone()),
        ],
    );
    agent.expect_line("expected 80, got 120", Duration::from_secs(20));
    assert_eq!(agent.wait(Duration::from_secs(20)), Some(0), "{}", agent.transcript);
}

#[test]
fn listen_serves_clients_in_turn_and_survives_garbage() {
    let interp = interpreter("3.14").expect("3.14");
    let scratch = Scratch::new(&interp);
    node_test("listen.test.js", &launch_env(&interp, &scratch));
}

#[test]
fn vscode_extension_runs_pymri_dap_and_picks_processes() {
    let interp = interpreter("3.11").expect("3.11");
    assert!(!interp.in_root(), "3.11 is the host's interpreter");
    node_test("vscode-extension.test.js", &[("PYMRI_DAP_PYTHON", interp.exe.clone())]);
}
