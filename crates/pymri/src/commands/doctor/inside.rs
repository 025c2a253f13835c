//! What the doctor learns from code inside the target (the injected agent's `doctor_start` and
//! `doctor_stop` requests, python/pymri_agent/req_doctor.py), and the patterns made of it:
//! `memory_growth`, `swallowed_exceptions`, `module_versions`; and the thread start sites that
//! `thread_leak` shows. Native libraries' build ids are read from outside (the process's mapped
//! files), so `module_versions` keeps those with `--no-inject`.
//!
//! The agent is injected without stopping a thread, as for `pymri trace`; it takes the start's
//! measurements and installs its hooks before the window's sampling begins, and removes them
//! when asked for the results (or when the session is lost: pymri killed in the window).

use super::finding::{Finding, Pattern, Series, Severity, Table};
use super::Context;
use crate::commands::attach::{connect_quietly, Attached};
use crate::commands::trace::Usage;
use anyhow::{anyhow, Result};
use pymri_cpython::Version;
use pymri_inject::attach::AttachError;
use pymri_inject::InjectError;
use pymri_session::protocol::requests::{
    Detach, DoctorResults, DoctorStart, DoctorStop, ExceptionGroup, GrownContainer, ThreadStartSite,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// How long a request of the window may take: the start's census and version reading are
/// bounded by the agent in well under this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the agent gets to start: a thread must run Python code for it, which a
/// deadlocked or blocked process never does; the window waits for this, so it is short.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(3);
/// Readings of the containers' sizes within the window.
const READINGS: f64 = 5.0;
/// Exceptions handled at this rate or more are a warning.
const SWALLOWED_RATE: f64 = 10.0;
/// A container growing by at least this many entries, at every reading, is a warning.
const STEADY_GROWTH: u64 = 20;
/// Resident memory growing by at least this share over the window, at every quarter.
const RSS_GROWTH: f64 = 0.05;
const RSS_MIN_BYTES: u64 = 1 << 20;
/// Bytes read from the start of a mapped file for its notes.
const NOTES_PREFIX: u64 = 64 * 1024;
const MAX_LIBRARIES: usize = 512;
/// The largest --expect file read.
const MAX_EXPECT: u64 = 16 * 1024 * 1024;

/// The patterns that need code inside the target.
const NEEDS_AGENT: [Pattern; 4] =
    [Pattern::MemoryGrowth, Pattern::SwallowedExceptions, Pattern::ModuleVersions, Pattern::ThreadLeak];

/// Pinned versions from `--expect`: normalised name -> (name as written, version).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub file: String,
    pub pins: BTreeMap<String, (String, String)>,
    /// Requirements without an exact version (`>=`, unpinned): not checked.
    pub unpinned: usize,
}

/// A shared library (or the executable) the process maps, with its GNU build id.
#[derive(Debug, Clone)]
pub struct NativeLibrary {
    pub path: String,
    pub build_id: Option<String>,
}

/// What the window learned inside and around the target.
#[derive(Default)]
pub struct Inside {
    pub results: Option<DoctorResults>,
    pub expected: Option<Expected>,
    pub libraries: Vec<NativeLibrary>,
    /// Why parts were not examined; goes to the report's `skipped`.
    pub skipped: Vec<String>,
}

impl Inside {
    /// Where threads were started during the window (`threading.Thread.start`'s callers) and
    /// what they run: for `thread_leak`. Empty when the agent was not there.
    pub fn thread_start_sites(&self) -> &[ThreadStartSite] {
        self.results.as_ref().and_then(|r| r.thread_starts.as_deref()).unwrap_or(&[])
    }
}

/// The agent's side of a window in progress.
pub struct Opened {
    attached: Option<Attached>,
    inside: Inside,
}

/// Reads `--expect` (bad input fails here, before anything touches the target).
pub fn read_expected(path: Option<&Path>) -> Result<Option<Expected>> {
    let Some(path) = path else { return Ok(None) };
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_EXPECT + 1).read_to_string(&mut text))
        .map_err(|e| Usage(format!("--expect {}: {e}", path.display())))?;
    if read as u64 > MAX_EXPECT {
        return Err(
            Usage(format!("--expect {}: larger than {} MiB", path.display(), MAX_EXPECT >> 20)).into()
        );
    }
    let mut expected = if path.extension().is_some_and(|e| e == "lock") {
        parse_lock(&text)
    } else {
        parse_requirements(&text)
    };
    if expected.pins.is_empty() && expected.unpinned == 0 {
        return Err(Usage(format!(
            "--expect {}: no `name==version` line in it\nhint: pass a requirements file or a poetry.lock / uv.lock",
            path.display()
        ))
        .into());
    }
    expected.file = path.display().to_string();
    Ok(Some(expected))
}

/// PEP 503: case and runs of `-_.` do not tell names apart.
fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn parse_requirements(text: &str) -> Expected {
    let mut e = Expected::default();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").split(';').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
            continue;
        }
        let pinned = line.split_once("===").or_else(|| line.split_once("=="));
        match pinned {
            Some((name, version)) => {
                let name = name.split('[').next().unwrap_or(name).trim();
                let version = version.trim().split([',', ' ']).next().unwrap_or("").trim();
                if !name.is_empty() && !version.is_empty() {
                    e.pins.insert(normalise(name), (name.to_string(), version.to_string()));
                }
            }
            None => e.unpinned += 1,
        }
    }
    e
}

/// `[[package]]` tables of poetry.lock and uv.lock: their `name = "..."` and `version = "..."`.
fn parse_lock(text: &str) -> Expected {
    let mut e = Expected::default();
    let mut current: (Option<String>, Option<String>) = (None, None);
    let mut in_package = false;
    let value = |line: &str, key: &str| -> Option<String> {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
        Some(rest.strip_prefix('"')?.strip_suffix('"')?.to_string())
    };
    let flush = |current: &mut (Option<String>, Option<String>), e: &mut Expected| {
        if let (Some(name), Some(version)) = (current.0.take(), current.1.take()) {
            e.pins.insert(normalise(&name), (name, version));
        }
        *current = (None, None);
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            flush(&mut current, &mut e);
            in_package = line == "[[package]]";
            continue;
        }
        if in_package {
            if let Some(v) = value(line, "name") {
                current.0 = Some(v);
            } else if let Some(v) = value(line, "version") {
                current.1 = Some(v);
            }
        }
    }
    flush(&mut current, &mut e);
    e
}

/// Injects the agent and opens its window, unless nothing needs it; what could not be done is
/// said in `skipped`, never fatal: the rest of the doctor works from outside.
pub fn open(
    pid: i32,
    python: &Version,
    only: &[Pattern],
    no_inject: bool,
    expected: Option<Expected>,
    duration: Duration,
) -> Opened {
    let mut inside = Inside { expected, ..Inside::default() };
    // Before 3.12, exceptions are only seen through a trace function in every frame, which
    // makes call-heavy code several times slower (bench/README.md, trace.sh): not for a window
    // nobody asked exceptions of.
    let costly = (python.major, python.minor) < (3, 12) && !only.contains(&Pattern::SwallowedExceptions);
    let asked = |p: Pattern| only.is_empty() || only.contains(&p);
    let wanted = |p: Pattern| asked(p) && !(p == Pattern::SwallowedExceptions && costly);
    if wanted(Pattern::ModuleVersions) {
        inside.libraries = native_libraries(pid);
    }
    let needed: Vec<Pattern> = NEEDS_AGENT.into_iter().filter(|p| asked(*p)).collect();
    if needed.is_empty() {
        return Opened { attached: None, inside };
    }
    let why = if no_inject { Some("--no-inject".to_string()) } else { None };
    let refused = |why: &str, inside: &mut Inside| {
        for p in &needed {
            inside.skipped.push(skipped_line(*p, why));
        }
    };
    if let Some(why) = why {
        refused(&why, &mut inside);
        return Opened { attached: None, inside };
    }
    let attached = match connect_quietly(pid, None, ATTACH_TIMEOUT, false) {
        Ok(attached) => attached,
        Err(e) => {
            refused(&refusal(&e), &mut inside);
            return Opened { attached: None, inside };
        }
    };
    if costly && asked(Pattern::SwallowedExceptions) {
        inside.skipped.push(format!(
            "swallowed_exceptions: on Python {python} counting exceptions slows every call of the program; \
             ask for it with --only swallowed_exceptions"
        ));
    }
    let start = DoctorStart {
        census: wanted(Pattern::MemoryGrowth),
        containers: wanted(Pattern::MemoryGrowth),
        exceptions: wanted(Pattern::SwallowedExceptions),
        thread_starts: wanted(Pattern::ThreadLeak),
        versions: wanted(Pattern::ModuleVersions),
        interval: (duration.as_secs_f64() / READINGS).clamp(0.05, 3600.0),
    };
    if let Err(e) = attached.session.request_with_timeout(&start, Some(REQUEST_TIMEOUT)) {
        refused(&format!("the agent could not open its window: {e}"), &mut inside);
        close(attached);
        return Opened { attached: None, inside };
    }
    Opened { attached: Some(attached), inside }
}

fn skipped_line(pattern: Pattern, why: &str) -> String {
    let what = match pattern {
        Pattern::MemoryGrowth => "memory_growth (object census, growing containers)",
        Pattern::SwallowedExceptions => "swallowed_exceptions",
        Pattern::ModuleVersions => {
            "module_versions: Python packages (native libraries are read from outside)"
        }
        _ => "thread_leak: where threads are started",
    };
    format!("{what}: needs code inside the target, and {why}")
}

/// Why the agent could not come: one line, as the user can act on it.
fn refusal(e: &anyhow::Error) -> String {
    match e.downcast_ref::<AttachError>() {
        Some(AttachError::Inject(InjectError::RemoteDebugDisabled { how, .. })) => {
            format!("the target refuses remote debugging ({how})")
        }
        Some(AttachError::Timeout(_)) => format!(
            "the agent did not start within {} s (no thread ran Python code: a blocked or deadlocked process cannot take it)",
            ATTACH_TIMEOUT.as_secs()
        ),
        _ => {
            let text = format!("{e:#}");
            format!("the agent could not be injected: {}", text.lines().next().unwrap_or(""))
        }
    }
}

impl Opened {
    /// Closes the window (every hook removed in the target) and detaches.
    pub fn finish(mut self) -> Inside {
        if let Some(attached) = self.attached.take() {
            match attached.session.request_with_timeout(&DoctorStop {}, Some(REQUEST_TIMEOUT)) {
                Ok(results) => self.inside.results = Some(results),
                Err(e) => {
                    let e = anyhow!(e);
                    for p in NEEDS_AGENT {
                        self.inside
                            .skipped
                            .push(format!("{}: the agent's results were lost: {e:#}", p.name()));
                    }
                }
            }
            close(attached);
        }
        self.inside
    }
}

fn close(attached: Attached) {
    let Attached { pending, session, .. } = attached;
    let _ = session.request_with_timeout(&Detach {}, Some(REQUEST_TIMEOUT));
    session.close();
    // The staging directory goes after the session, as for `attach`.
    drop(pending);
}

// ---------------------------------------------------------------------------------------------
// Native libraries

/// The ELF files the process maps (its executable and shared libraries), each with its GNU
/// build id, read from the first pages of the very file mapped (`LiveProcess::open_mapped`),
/// named by its path as the process sees it (inside its root).
fn native_libraries(pid: i32) -> Vec<NativeLibrary> {
    let Ok(live) = pymri_cpython::LiveProcess::open(pid) else { return Vec::new() };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for m in &live.maps {
        if !m.is_file() || m.offset != 0 || m.path.ends_with(" (deleted)") || !seen.insert(m.path.as_str()) {
            continue;
        }
        if out.len() >= MAX_LIBRARIES {
            break;
        }
        let Ok(file) = live.open_mapped(&m.path) else { continue };
        let Some(build_id) = elf_build_id(file) else { continue };
        let inside = live.root.as_ref().and_then(|r| Path::new(&m.path).strip_prefix(r).ok());
        let path = inside.map_or_else(|| m.path.clone(), |p| format!("/{}", p.display()));
        out.push(NativeLibrary { path, build_id });
    }
    out
}

/// `None` for a file that is not ELF; `Some(None)` for one without a build id note.
fn elf_build_id(file: std::fs::File) -> Option<Option<String>> {
    let mut head = Vec::new();
    file.take(NOTES_PREFIX).read_to_end(&mut head).ok()?;
    let elf = pymri_object::Elf::parse(&head).ok()?;
    const NT_GNU_BUILD_ID: u32 = 3;
    let id = elf
        .notes()
        .into_iter()
        .find(|(name, kind, _)| *name == b"GNU" && *kind == NT_GNU_BUILD_ID)
        .map(|(_, _, desc)| desc.iter().map(|b| format!("{b:02x}")).collect::<String>());
    Some(id)
}

// ---------------------------------------------------------------------------------------------
// Analyzers

fn shown(cx: &Context<'_>, pattern: Pattern) -> bool {
    cx.only.contains(&pattern)
}

/// `memory_growth`: resident memory over the window, the containers that grew at every
/// reading (by their path from a module), and the census of live objects by type.
pub fn memory_growth(cx: &Context<'_>) -> Vec<Finding> {
    let rss: Vec<(f64, f64)> = cx.window.counters.iter().map(|c| (c.at, c.rss_bytes as f64)).collect();
    let rss_steady = steady_rss(&rss);
    let results = cx.inside.results.as_ref();
    let grown: Vec<&GrownContainer> = results
        .and_then(|r| r.containers.as_ref())
        .map(|c| c.grown.iter().filter(|g| steady_container(g)).collect())
        .unwrap_or_default();
    let census = results.and_then(|r| r.census.as_ref());
    if !rss_steady && grown.is_empty() && !(census.is_some() && shown(cx, Pattern::MemoryGrowth)) {
        return Vec::new();
    }
    let warning = rss_steady || !grown.is_empty();
    let mib = |b: f64| b / 1048576.0;
    let summary = match (grown.first(), rss_steady) {
        (Some(g), _) => format!(
            "{} grows steadily: +{} entries{} in {:.1} s{}",
            g.path,
            g.end.saturating_sub(g.start),
            newest_of(g),
            cx.window.elapsed.as_secs_f64(),
            if grown.len() > 1 {
                format!(" (and {} more containers)", grown.len() - 1)
            } else {
                String::new()
            }
        ),
        (None, true) => format!(
            "resident memory grows steadily: {:.1} -> {:.1} MiB",
            mib(rss.first().map_or(0.0, |p| p.1)),
            mib(rss.last().map_or(0.0, |p| p.1))
        ),
        (None, false) => "no steady growth; the census of live objects by type".to_string(),
    };
    let mut f = Finding::new(
        Pattern::MemoryGrowth,
        if warning { Severity::Warning } else { Severity::Info },
        summary,
    );
    f.series.push(Series { name: "resident memory".into(), unit: "bytes".into(), points: rss });
    for g in &grown {
        f.notes.push(format!(
            "{} ({}): {} -> {} entries{}",
            g.path,
            g.type_name,
            g.start,
            g.end,
            newest_of(g)
        ));
        f.series.push(Series {
            name: g.path.clone(),
            unit: "entries".into(),
            points: g.points.iter().map(|(t, n)| (*t, *n as f64)).collect(),
        });
    }
    if let Some(c) = results.and_then(|r| r.containers.as_ref()) {
        if c.cut {
            f.notes.push(format!(
                "the walk of modules' containers was cut after {} containers (time or size bound)",
                c.tracked
            ));
        }
    }
    if let Some(census) = census {
        for (when, t) in [("start", &census.start), ("end", &census.end)] {
            if t.cut {
                f.notes.push(format!(
                    "the census at the window's {when} was cut after {:.1} s: {} of {} objects counted",
                    t.seconds, t.examined, t.objects
                ));
            }
        }
        f.notes.push(format!(
            "live objects (tracked by the garbage collector): {} -> {} ({:+}), {:.1} -> {:.1} MiB",
            census.start.count,
            census.end.count,
            census.end.count as i64 - census.start.count as i64,
            mib(census.start.size as f64),
            mib(census.end.size as f64)
        ));
        let mut rows: Vec<_> = census.types.iter().collect();
        rows.sort_by_key(|t| std::cmp::Reverse(t.size));
        f.table = Some(Table {
            columns: ["type", "count", "bytes", "count growth", "bytes growth"].map(String::from).to_vec(),
            rows: rows
                .iter()
                .map(|t| {
                    vec![
                        t.type_name.clone(),
                        t.count.to_string(),
                        t.size.to_string(),
                        format!("{:+}", t.count as i64 - t.count_start as i64),
                        format!("{:+}", t.size as i64 - t.size_start as i64),
                    ]
                })
                .collect(),
        });
    }
    if warning {
        f.next.push(format!("pymri exec {} -c 'import gc; print(len(gc.get_objects()))'", cx.window.pid));
        f.next.push(format!("pymri doctor {} --only memory_growth --duration 30", cx.window.pid));
    }
    vec![f]
}

fn newest_of(g: &GrownContainer) -> String {
    match g.newest.first() {
        Some((t, _)) => format!(" of {t}"),
        None => String::new(),
    }
}

/// Grew at every reading, by at least [`STEADY_GROWTH`] over the window.
fn steady_container(g: &GrownContainer) -> bool {
    g.end >= g.start.saturating_add(STEADY_GROWTH)
        && g.points.len() >= 3
        && g.points.windows(2).all(|w| w[1].1 >= w[0].1)
        && g.points.windows(2).filter(|w| w[1].1 > w[0].1).count() * 2 >= g.points.len()
}

/// Resident memory rose in every quarter of the window, by [`RSS_GROWTH`] and
/// [`RSS_MIN_BYTES`] at least in all.
fn steady_rss(points: &[(f64, f64)]) -> bool {
    if points.len() < 8 {
        return false;
    }
    let quarter = points.len() / 4;
    let means: Vec<f64> = (0..4)
        .map(|i| {
            let part = &points[i * quarter..(i + 1) * quarter];
            part.iter().map(|p| p.1).sum::<f64>() / part.len() as f64
        })
        .collect();
    let (first, last) = (points[0].1, points[points.len() - 1].1);
    means.windows(2).all(|w| w[1] > w[0])
        && last - first >= RSS_MIN_BYTES as f64
        && last >= first * (1.0 + RSS_GROWTH)
}

/// `swallowed_exceptions`: exceptions raised and handled, grouped by raise and handler site,
/// with their rate over the window.
pub fn swallowed_exceptions(cx: &Context<'_>) -> Vec<Finding> {
    let Some(results) = cx.inside.results.as_ref() else { return Vec::new() };
    let Some(groups) = results.exceptions.as_ref() else { return Vec::new() };
    let seconds = results.duration.max(cx.window.elapsed.as_secs_f64()).max(0.001);
    // Raised and handled inside the standard library: its own idioms (a probe for an optional
    // method), not the program's failures.
    let internal = |g: &ExceptionGroup| {
        let in_stdlib = |file: &str| results.stdlib.iter().any(|d| file.starts_with(d.as_str()));
        in_stdlib(&g.raised.file) && g.handled.as_ref().is_some_and(|h| in_stdlib(&h.file))
    };
    let mut handled: Vec<&ExceptionGroup> = groups
        .iter()
        .filter(|g| matches!(g.outcome.as_str(), "handled" | "native") && !internal(g))
        .collect();
    handled.sort_by_key(|g| std::cmp::Reverse(g.count));
    let Some(top) = handled.first() else { return Vec::new() };
    let rate = |g: &ExceptionGroup| g.count as f64 / seconds;
    let warning = rate(top) >= SWALLOWED_RATE;
    if !warning && !shown(cx, Pattern::SwallowedExceptions) {
        return Vec::new();
    }
    let mut f = Finding::new(
        Pattern::SwallowedExceptions,
        if warning { Severity::Warning } else { Severity::Info },
        format!(
            "{} raised in {} and handled at a rate of {:.0}/s",
            top.type_name,
            top.raised.function,
            rate(top)
        ),
    );
    f.table = Some(Table {
        columns: ["per second", "count", "type", "raised at", "handled at"].map(String::from).to_vec(),
        rows: handled
            .iter()
            .map(|g| {
                let site = |s: &pymri_session::protocol::requests::Site| {
                    format!("{} ({}:{})", s.function, s.file, s.line)
                };
                let handler = match (&g.handled, g.outcome.as_str()) {
                    (Some(h), "native") => format!("native code called at {}", site(h)),
                    (Some(h), _) => site(h),
                    (None, _) => "?".into(),
                };
                vec![
                    format!("{:.1}", rate(g)),
                    g.count.to_string(),
                    g.type_name.clone(),
                    site(&g.raised),
                    handler,
                ]
            })
            .collect(),
    });
    if let Some(backend) = &results.exceptions_backend {
        f.notes.push(format!("counted by the agent's {backend} hooks over {seconds:.1} s"));
    }
    // The type's name comes from the target: into a command line only if it cannot be more
    // than one word of it.
    let only_type =
        if shell_word(&top.type_name) { format!(" --type {}", top.type_name) } else { String::new() };
    f.next.push(format!("pymri trace {} --exceptions{only_type} --duration 5", cx.window.pid));
    vec![f]
}

/// `module_versions`: loaded distributions and their versions, native libraries and their
/// build ids; with `--expect`, every loaded package whose version is not the one pinned.
pub fn module_versions(cx: &Context<'_>) -> Vec<Finding> {
    let versions = cx.inside.results.as_ref().and_then(|r| r.versions.as_ref());
    let mut mismatches = Vec::new();
    let mut checked = 0;
    if let (Some(expected), Some(versions)) = (&cx.inside.expected, versions) {
        for d in versions {
            if let Some((pinned_name, pinned)) = expected.pins.get(&normalise(&d.name)) {
                checked += 1;
                if pinned != &d.version {
                    mismatches.push((d, pinned_name, pinned));
                }
            }
        }
    }
    if versions.is_none() && cx.inside.libraries.is_empty() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for (d, pinned_name, pinned) in &mismatches {
        let mut f = Finding::new(
            Pattern::ModuleVersions,
            Severity::Warning,
            format!(
                "not my version: {} {} is loaded, {} expects {pinned_name}=={pinned}",
                d.name,
                d.version,
                expected_file(cx)
            ),
        );
        if let Some(file) = &d.file {
            f.notes.push(format!("{} is loaded from {file}", d.modules.join(", ")));
        }
        if !d.shadowed.is_empty() {
            f.notes.push(format!(
                "also installed further down sys.path, not imported: {}",
                d.shadowed.join(", ")
            ));
        }
        if shell_word(&d.name) {
            f.next.push(format!(
                "pymri exec {} -c 'import importlib.metadata as m; print(m.distribution({:?}).locate_file(\"\"))'",
                cx.window.pid, d.name
            ));
        }
        findings.push(f);
    }
    let packages = versions.map_or(0, Vec::len);
    let summary = match &cx.inside.expected {
        Some(e) if versions.is_some() => format!(
            "{packages} loaded packages, {checked} pinned in {}, {} not as pinned; {} native libraries",
            e.file,
            mismatches.len(),
            cx.inside.libraries.len()
        ),
        _ => format!("{packages} loaded packages, {} native libraries", cx.inside.libraries.len()),
    };
    let mut f = Finding::new(Pattern::ModuleVersions, Severity::Info, summary);
    let mut rows: Vec<Vec<String>> = versions
        .into_iter()
        .flatten()
        .map(|d| {
            vec![d.name.clone(), d.version.clone(), d.modules.join(", "), d.file.clone().unwrap_or_default()]
        })
        .collect();
    rows.extend(cx.inside.libraries.iter().map(|l| {
        vec![
            l.path.rsplit('/').next().unwrap_or(&l.path).to_string(),
            l.build_id.as_ref().map_or_else(|| "(no build id)".into(), |b| format!("build id {b}")),
            "(native)".into(),
            l.path.clone(),
        ]
    }));
    f.table =
        Some(Table { columns: ["name", "version", "modules", "file"].map(String::from).to_vec(), rows });
    if let Some(error) = cx.inside.results.as_ref().and_then(|r| r.versions_error.as_ref()) {
        f.notes.push(error.clone());
    }
    if let Some(e) = &cx.inside.expected {
        if e.unpinned > 0 {
            f.notes.push(format!(
                "{} requirements of {} have no exact version: not checked",
                e.unpinned, e.file
            ));
        }
    }
    findings.push(f);
    findings
}

/// Safe as one word of a shell command, quoted or not: a name from the target that is not is
/// left out of the commands suggested.
fn shell_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn expected_file(cx: &Context<'_>) -> String {
    cx.inside.expected.as_ref().map_or_else(String::new, |e| e.file.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pins_by_normalised_name() {
        let e = parse_requirements(
            "# comment\nRequests==2.31.0 ; python_version > '3'\nfoo_bar[extra]===1.0\n-r other.txt\nbaz>=2\n\nqux == 3.1  # why\n",
        );
        assert_eq!(e.pins.get("requests"), Some(&("Requests".into(), "2.31.0".into())));
        assert_eq!(e.pins.get("foo-bar"), Some(&("foo_bar".into(), "1.0".into())));
        assert_eq!(e.pins.get("qux"), Some(&("qux".into(), "3.1".into())));
        assert_eq!(e.unpinned, 1);
        assert_eq!(normalise("Foo.__Bar-"), "foo-bar");
    }

    #[test]
    fn only_plain_names_go_into_suggested_commands() {
        assert!(shell_word("socket.gaierror"));
        assert!(shell_word("pymri-demo-pkg"));
        for bad in ["", "a b", "x;rm", "it's", "$(id)", "a\u{1b}[2J", "é"] {
            assert!(!shell_word(bad), "{bad:?}");
        }
    }

    #[test]
    fn lock_files_pin_each_package() {
        let e = parse_lock(
            "version = 1\n[[package]]\nname = \"Alpha\"\nversion = \"1.2\"\n[package.dependencies]\nx = \"1\"\n\n[[package]]\nname = \"beta\"\nversion = \"0.3\"\n",
        );
        assert_eq!(e.pins.len(), 2);
        assert_eq!(e.pins.get("alpha"), Some(&("Alpha".into(), "1.2".into())));
        assert_eq!(e.pins.get("beta"), Some(&("beta".into(), "0.3".into())));
    }

    #[test]
    fn steadiness() {
        let g = |points: Vec<(f64, u64)>| GrownContainer {
            start: points[0].1,
            end: points[points.len() - 1].1,
            points,
            ..GrownContainer::default()
        };
        assert!(steady_container(&g(vec![(0.0, 0), (1.0, 10), (2.0, 20), (3.0, 30)])));
        assert!(!steady_container(&g(vec![(0.0, 0), (1.0, 100), (2.0, 0), (3.0, 30)])));
        assert!(!steady_container(&g(vec![(0.0, 0), (3.0, 30)])));
        let rss: Vec<(f64, f64)> = (0..16).map(|i| (i as f64, 1e7 + i as f64 * 2e5)).collect();
        assert!(steady_rss(&rss));
        let flat: Vec<(f64, f64)> = (0..16).map(|i| (i as f64, 1e7 + (i % 2) as f64 * 2e6)).collect();
        assert!(!steady_rss(&flat));
    }
}
