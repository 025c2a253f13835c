//! Patterns read from the threads' samples and the kernel's per-thread counters.

use super::finding::{Finding, FrameEvidence, Pattern, Severity, ThreadEvidence};
use super::window::ThreadWatch;
use super::Context;

/// A thread using at least this share of one CPU over the window is spiking.
const SPIKING_SHARE: f64 = 0.8;

/// `spiking_thread`: the threads that burned a CPU through the window, by the kernel's own
/// accounting, with the line they were on most often while on a CPU.
pub fn spiking(cx: &Context<'_>) -> Vec<Finding> {
    let mut spinning: Vec<(f64, u64, &ThreadWatch)> = cx
        .window
        .threads
        .iter()
        .filter_map(|(&ident, w)| {
            let share = cx.window.cpu_share(w.tid?)?;
            (share >= SPIKING_SHARE).then_some((share, ident, w))
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
    for (share, ident, w) in &spinning {
        let hot = w.hot.iter().max_by_key(|(_, n)| **n);
        let frames = hot
            .map(|(spot, _)| {
                vec![FrameEvidence {
                    function: spot.function.clone(),
                    file: spot.file.clone(),
                    line: spot.line,
                    source: None,
                    locals: Vec::new(),
                }]
            })
            .unwrap_or_default();
        let on_hot = hot.map_or(0, |(_, n)| *n);
        finding.threads.push(ThreadEvidence {
            ident: *ident,
            tid: w.tid,
            name: w.name.clone(),
            role: "spinning".into(),
            detail: Some(format!(
                "{:.0}% of a CPU over the window; on its hottest line in {on_hot} of {} samples taken on a CPU",
                share * 100.0,
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

fn label(ident: u64, w: &ThreadWatch) -> String {
    match (&w.name, w.tid) {
        (Some(name), Some(tid)) => format!("{name} (tid {tid})"),
        (Some(name), None) => name.clone(),
        (None, Some(tid)) => format!("tid {tid}"),
        (None, None) => format!("thread {ident:#x}"),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
