//! Patterns read from the threads' samples and the kernel's per-thread counters.

use super::finding::{Finding, FrameEvidence, Pattern, Severity, ThreadEvidence};
use super::source::Sources;
use super::window::{Spot, ThreadWatch};
use super::Context;
use pymri_cpython::ThreadState;

/// A thread using at least this share of one CPU over the window is spiking.
const SPIKING_SHARE: f64 = 0.8;
/// Frames of a spiking thread's stack shown, from its hot frame outwards.
const SPIKING_FRAMES: usize = 8;
/// Locals shown for each frame.
const LOCALS_SHOWN: usize = 16;
/// A thread waiting for the GIL in at least this share of its samples is starved of it.
const GIL_WAIT_SHARE: f64 = 0.5;
/// Samples a thread needs before its share of them means anything.
const MIN_SAMPLES: u64 = 10;

/// `spiking_thread`: the threads that burned a CPU through the window, by the kernel's own
/// accounting, with the line they were on most often while on a CPU. A thread that wanted a
/// CPU all the time counts even when a busy machine gave it less (its share is then its time
/// on a CPU plus its time in the run queue).
pub fn spiking(cx: &Context<'_>) -> Vec<Finding> {
    let mut spinning: Vec<(f64, u64, &ThreadWatch)> = cx
        .window
        .threads
        .iter()
        .filter_map(|(&ident, w)| {
            let tid = w.tid?;
            let share = cx.window.cpu_share(tid)?;
            let wanted = cx.window.runnable_share(tid).unwrap_or(share);
            (share.max(wanted) >= SPIKING_SHARE).then_some((share, ident, w))
        })
        .collect();
    if spinning.is_empty() {
        return Vec::new();
    }
    spinning.sort_by(|a, b| b.0.total_cmp(&a.0));
    let names: Vec<String> =
        spinning.iter().map(|(s, i, w)| format!("{} ({:.0}%)", label(*i, w), s * 100.0)).collect();
    let mut finding = Finding::new(
        Pattern::SpikingThread,
        Severity::Warning,
        format!("{} burning a CPU: {}", plural(spinning.len(), "thread", "threads"), names.join(", ")),
    );
    let mut sources = Sources::in_root(cx.window.root.clone());
    for (share, ident, w) in &spinning {
        let hot = w.hot.iter().max_by_key(|(_, n)| **n);
        let frames = hot.map(|(spot, _)| hot_stack(cx, *ident, spot, &mut sources)).unwrap_or_default();
        let on_hot = hot.map_or(0, |(_, n)| *n);
        finding.threads.push(ThreadEvidence {
            ident: *ident,
            tid: w.tid,
            name: w.name.clone(),
            role: "spinning".into(),
            detail: Some(format!(
                "{:.0}% of a CPU over the window{}; on its hottest line in {on_hot} of {} samples taken on a CPU",
                share * 100.0,
                match w.tid.and_then(|t| cx.window.runnable_share(t)) {
                    Some(r) if r > share + 0.05 => format!(" (runnable {:.0}% of the time: the machine is busy)", r.min(1.0) * 100.0),
                    _ => String::new(),
                },
                w.hot.values().sum::<u64>()
            )),
            frames,
        });
    }
    if let Some((_, _, w)) = spinning.first() {
        if let Some(tid) = w.tid {
            finding
                .next
                .push(format!("pymri record {} --mode cpu --duration 10 -o profile.svg", cx.window.pid));
            finding.next.push(format!("pymri attach {} --thread {tid}", cx.window.pid));
        }
    }
    vec![finding]
}

/// The hot frame with its source line, then the frames around it (innermost first) as the
/// sample taken after the window found them, with their locals, when the thread was still
/// on that line then; else the hot frame alone.
fn hot_stack(cx: &Context<'_>, ident: u64, spot: &Spot, sources: &mut Sources) -> Vec<FrameEvidence> {
    let closing = cx.window.closing.as_ref().and_then(|s| s.threads.iter().find(|t| t.ident == ident));
    let stack = closing.map(|t| t.frames.as_slice()).unwrap_or_default();
    let at = stack.iter().position(|f| f.function == spot.function && f.file == spot.file);
    let mut frames: Vec<FrameEvidence> = match at {
        Some(i) => stack[i..]
            .iter()
            .take(SPIKING_FRAMES)
            .map(|f| FrameEvidence {
                function: f.function.clone(),
                file: f.file.clone(),
                line: f.line,
                source: None,
                locals: f
                    .locals
                    .iter()
                    .flatten()
                    .take(LOCALS_SHOWN)
                    .map(|l| (l.name.clone(), l.repr.clone()))
                    .collect(),
            })
            .collect(),
        None => Vec::new(),
    };
    match frames.first_mut() {
        // The hot line, not wherever the closing sample caught the thread in that function.
        Some(first) => first.line = spot.line,
        None => frames.push(FrameEvidence {
            function: spot.function.clone(),
            file: spot.file.clone(),
            line: spot.line,
            source: None,
            locals: Vec::new(),
        }),
    }
    for f in &mut frames {
        f.source = sources.line(&f.file, f.line).map(|s| s.trim().to_string());
    }
    frames
}

/// `gil_contention`: threads that waited for the GIL most of the window, and who held it.
pub fn gil(cx: &Context<'_>) -> Vec<Finding> {
    let threads = &cx.window.threads;
    let waiting: Vec<(u64, &ThreadWatch, f64)> = threads
        .iter()
        .filter(|(_, w)| w.samples >= MIN_SAMPLES)
        .filter_map(|(&ident, w)| {
            let share =
                w.states.get(&ThreadState::WaitingForGil).copied().unwrap_or(0) as f64 / w.samples as f64;
            (share >= GIL_WAIT_SHARE).then_some((ident, w, share))
        })
        .collect();
    if waiting.is_empty() {
        return Vec::new();
    }
    let samples = cx.window.samples.max(1) as f64;
    let holder = threads.iter().filter(|(_, w)| w.holds_gil > 0).max_by_key(|(_, w)| w.holds_gil);
    let held = holder
        .map(|(i, w)| {
            format!("; held by {} in {:.0}% of samples", label(*i, w), w.holds_gil as f64 / samples * 100.0)
        })
        .unwrap_or_default();
    let mut f = Finding::new(
        Pattern::GilContention,
        Severity::Warning,
        format!(
            "{} waiting for the GIL most of the window{held}",
            plural(waiting.len(), "thread", "threads")
        ),
    );
    let mut sources = Sources::in_root(cx.window.root.clone());
    let mut spot_frames = |w: &ThreadWatch| -> Vec<FrameEvidence> {
        w.last_spot
            .iter()
            .map(|s| FrameEvidence {
                function: s.function.clone(),
                file: s.file.clone(),
                line: s.line,
                source: sources.line(&s.file, s.line).map(|l| l.trim().to_string()),
                locals: Vec::new(),
            })
            .collect()
    };
    if let Some((&ident, w)) = holder {
        let hot = w.hot.iter().max_by_key(|(_, n)| **n).map(|(s, _)| s.clone());
        let mut frames = spot_frames(w);
        if let Some(h) = hot.filter(|h| Some(h) != w.last_spot.as_ref()) {
            frames.insert(
                0,
                FrameEvidence {
                    function: h.function,
                    file: h.file,
                    line: h.line,
                    source: None,
                    locals: Vec::new(),
                },
            );
        }
        f.threads.push(ThreadEvidence {
            ident,
            tid: w.tid,
            name: w.name.clone(),
            role: "holds".into(),
            detail: Some(format!("held the GIL in {} of {} samples", w.holds_gil, cx.window.samples)),
            frames,
        });
    }
    for (ident, w, share) in &waiting {
        f.threads.push(ThreadEvidence {
            ident: *ident,
            tid: w.tid,
            name: w.name.clone(),
            role: "waits".into(),
            detail: Some(format!("waited for the GIL in {:.0}% of its samples", share * 100.0)),
            frames: spot_frames(w),
        });
    }
    f.notes.push(
        "a thread that keeps the GIL (a long C call that does not release it, a tight loop) starves the others;          a lower sys.setswitchinterval or moving the work to a process helps"
            .into(),
    );
    f.next.push(format!("pymri record {} --mode gil --duration 10 -o gil.svg", cx.window.pid));
    vec![f]
}

pub fn label(ident: u64, w: &ThreadWatch) -> String {
    match (&w.name, w.tid) {
        (Some(name), Some(tid)) => format!("{name} (tid {tid})"),
        (Some(name), None) => name.clone(),
        (None, Some(tid)) => format!("tid {tid}"),
        (None, None) => format!("thread {ident:#x}"),
    }
}

pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
