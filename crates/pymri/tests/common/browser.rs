//! The browser kit shared by the tests that drive headless Chromium (`pymri web`'s page, the
//! speedscope app): node and npm, Debian's Chromium, and the npm packages of
//! `tests/web/package-lock.json`.

use pymri_testkit::{repo_root, run_with_deadline, text};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// node, npm and Chromium, and the npm packages (playwright-core, speedscope) installed from
/// the committed lock file: the scripts' folder and the browser.
pub fn browser_kit() -> (PathBuf, PathBuf) {
    for tool in ["node", "npm"] {
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "{tool} is required for the browser tests: install Debian's nodejs and npm (scripts/test.sh does)"
        );
    }
    let chromium =
        PathBuf::from(std::env::var("PYMRI_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        chromium.exists(),
        "{} is missing: the browser tests need Debian's chromium package (scripts/test.sh installs it)",
        chromium.display()
    );
    let dir = repo_root().join("crates/pymri/tests/web");
    // One install at a time across the test processes; none while the lock file is unchanged.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).expect("target tmp");
    let lock = std::fs::File::create(tmp.join("web-npm.lock")).expect("lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0, "flock");
    let wanted = std::fs::read_to_string(dir.join("package-lock.json")).expect("package-lock.json");
    let stamp = dir.join("node_modules/.pymri-installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let mut npm = Command::new("npm");
        npm.args(["ci", "--prefer-offline", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        let out = run_with_deadline(npm, Duration::from_secs(300));
        assert!(out.status.success(), "npm ci failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
        std::fs::write(&stamp, &wanted).expect("install stamp");
    }
    drop(lock);
    (dir, chromium)
}

/// Where screenshots go: `target/test-artifacts/`.
pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}
