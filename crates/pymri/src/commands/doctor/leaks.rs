//! `thread_leak` and `fd_leak`: a count the kernel keeps (threads, descriptors) that rises
//! through the window, with what the new ones are: the threads' stacks grouped and the function
//! they run; the descriptors by type and by their most repeated paths and peers.

use super::fds;
use super::finding::{Count, Finding, Pattern, Series, Severity, ThreadEvidence};
use super::source::Sources;
use super::stacks;
use super::threads::plural;
use super::Context;
use std::collections::{BTreeMap, HashMap};

/// A count must rise by at least this much over the window to be a leak...
const MIN_NEW_THREADS: f64 = 3.0;
const MIN_NEW_FDS: f64 = 5.0;
/// ...and keep rising: the last third of the readings higher than the first third by at least
/// this share of the rise (a burst that is given back is no leak).
const KEEPS_RISING: f64 = 0.5;
/// Groups, paths and peers listed.
const TOP: usize = 5;
/// Frames shown for a group of identical stacks.
const FRAMES_SHOWN: usize = 6;

/// Whether a series rises through the window by at least `min` (start to end, and from its
/// first third to its last).
pub fn rises(series: &Series, min: f64) -> bool {
    let p = &series.points;
    if p.len() < 3 {
        return false;
    }
    let third = (p.len() / 3).max(1);
    let mean = |s: &[(f64, f64)]| s.iter().map(|(_, v)| v).sum::<f64>() / s.len() as f64;
    let last = p[p.len() - 1].1;
    let rise = last - p[0].1;
    let max = p.iter().map(|(_, v)| *v).fold(f64::MIN, f64::max);
    rise >= min
        && mean(&p[p.len() - third..]) - mean(&p[..third]) >= KEEPS_RISING * rise
        && last >= max - (1.0 - KEEPS_RISING) * rise
}

fn per_second(series: &Series) -> f64 {
    match (series.points.first(), series.points.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) / (b.0 - a.0),
        _ => 0.0,
    }
}

pub fn thread_leak(cx: &Context<'_>) -> Vec<Finding> {
    let w = cx.window;
    let series = w.series("threads", "threads", |c| c.threads as f64);
    if !rises(&series, MIN_NEW_THREADS) {
        return Vec::new();
    }
    let (start, end) = (series.points[0].1, series.points[series.points.len() - 1].1);
    let mut f = Finding::new(
        Pattern::ThreadLeak,
        Severity::Warning,
        format!(
            "thread count grew from {start} to {end} in {:.1} s ({:+.1} a second)",
            w.elapsed.as_secs_f64(),
            per_second(&series)
        ),
    );
    // The threads that started during the window, grouped by their whole stack.
    let mut groups: HashMap<Vec<(String, String, i32)>, Vec<u64>> = HashMap::new();
    // Threads the first sample found are old; any other started during the window.
    let first_sample = w.threads.values().map(|t| t.first_seen).fold(f64::INFINITY, f64::min);
    if let Some(closing) = &w.closing {
        for t in &closing.threads {
            let new = w.threads.get(&t.ident).is_none_or(|watch| watch.first_seen > first_sample);
            if new && !t.frames.is_empty() {
                let key = t.frames.iter().map(|fr| (fr.function.clone(), fr.file.clone(), fr.line)).collect();
                groups.entry(key).or_default().push(t.ident);
            }
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    let mut sources = Sources::in_root(w.root.clone());
    let closing = w.closing.as_ref();
    for (stack, idents) in groups.iter().take(TOP) {
        let Some(dump) = closing.and_then(|c| c.threads.iter().find(|t| t.ident == idents[0])) else {
            continue;
        };
        let entry = stacks::entry(&dump.frames).map(|i| dump.frames[i].function.clone());
        let runs = entry.clone().unwrap_or_else(|| stack[stack.len() - 1].0.clone());
        f.counts.push(Count { by: "function".into(), value: runs.clone(), count: idents.len() as u64 });
        let names: Vec<String> = idents
            .iter()
            .take(TOP)
            .filter_map(|i| closing?.threads.iter().find(|t| t.ident == *i)?.name.clone())
            .collect();
        f.threads.push(ThreadEvidence {
            ident: dump.ident,
            tid: dump.tid,
            name: dump.name.clone(),
            role: "new".into(),
            detail: Some(format!(
                "{} started during the window with this same stack, running {runs} ({}{})",
                plural(idents.len(), "thread", "threads"),
                names.join(", "),
                if idents.len() > names.len() { ", ..." } else { "" }
            )),
            frames: dump
                .frames
                .iter()
                .take(FRAMES_SHOWN)
                .map(|fr| super::blocked::frame_evidence(fr, &mut sources))
                .collect(),
        });
    }
    let sites = cx.inside.thread_start_sites();
    if sites.is_empty() {
        f.notes.push("where the threads are started needs code inside the target (the agent)".into());
    }
    for site in sites {
        f.notes.push(format!(
            "{} thread(s) running {} started by {} ({}:{})",
            site.count, site.target, site.function, site.file, site.line
        ));
    }
    f.series.push(series);
    f.next.push(format!("pymri dump {}", w.pid));
    vec![f]
}

pub fn fd_leak(cx: &Context<'_>) -> Vec<Finding> {
    let w = cx.window;
    if !w.live {
        return Vec::new();
    }
    let series = w.series("fds", "descriptors", |c| c.fds as f64);
    if !rises(&series, MIN_NEW_FDS) {
        return Vec::new();
    }
    let (start, end) = (series.points[0].1, series.points[series.points.len() - 1].1);
    let now = fds::targets(w.pid);
    let new: Vec<&String> =
        now.iter().filter(|(fd, t)| w.fds_at_start.get(fd) != Some(*t)).map(|(_, t)| t).collect();
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_value: HashMap<(&str, String), u64> = HashMap::new();
    let sockets = fds::tcp_sockets(w.pid);
    for t in &new {
        let kind = fds::kind(t);
        *by_kind.entry(kind).or_default() += 1;
        let value = match kind {
            "file" | "device" => Some(("path", (*t).clone())),
            "socket" => Some(match fds::socket_inode(t).and_then(|i| sockets.get(&i)) {
                Some(ends) => ("peer", ends.remote.clone()),
                None => ("peer", "(not TCP)".to_string()),
            }),
            _ => None,
        };
        if let Some(v) = value {
            *by_value.entry(v).or_default() += 1;
        }
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut f = Finding::new(
        Pattern::FdLeak,
        Severity::Warning,
        format!(
            "open file descriptors grew from {start} to {end} in {:.1} s ({:+.1} a second); new: {}",
            w.elapsed.as_secs_f64(),
            per_second(&series),
            if kinds.is_empty() { "none left open".to_string() } else { kinds.join(", ") }
        ),
    );
    for (kind, n) in &by_kind {
        f.counts.push(Count { by: "type".into(), value: (*kind).to_string(), count: *n });
    }
    let mut values: Vec<_> = by_value.into_iter().collect();
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for ((by, value), n) in values.into_iter().take(TOP) {
        f.notes.push(format!("{n} x {by} {value}"));
        f.counts.push(Count { by: by.into(), value, count: n });
    }
    f.series.push(series);
    f.next.push(format!("ls -l /proc/{}/fd", w.pid));
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Series {
        Series {
            name: "x".into(),
            unit: "x".into(),
            points: values.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect(),
        }
    }

    #[test]
    fn what_rises() {
        assert!(rises(&series(&[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]), 3.0));
        assert!(!rises(&series(&[10.0, 11.0, 12.0]), 3.0), "too little");
        assert!(!rises(&series(&[10.0, 30.0, 30.0, 30.0, 30.0, 14.0]), 3.0), "a burst given back");
        assert!(!rises(&series(&[10.0, 10.0, 10.0, 10.0, 10.0, 10.0]), 3.0));
        assert!(!rises(&series(&[10.0, 20.0]), 3.0), "two readings");
    }
}
