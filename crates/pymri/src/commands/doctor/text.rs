//! The report as text, in the shape of `jstack`'s deadlock report: readable at 3 a.m. Every
//! string from the target goes through the escaping the output layer uses.

use super::finding::{Finding, Report};
use crate::escape::Name;
use std::fmt::Write as _;

pub fn report(r: &Report) -> String {
    let mut out = String::new();
    if r.source == "core" {
        let _ = writeln!(out, "Process {} (Python {}): a core file, one instant", r.pid, r.python);
    } else {
        let _ = writeln!(
            out,
            "Process {} (Python {}): watched {:.1} s, {} samples",
            r.pid, r.python, r.window_seconds, r.samples
        );
        let c = &r.counters;
        let _ = writeln!(
            out,
            "Threads {} -> {}, file descriptors {} -> {}, resident memory {:.1} -> {:.1} MiB",
            c.threads.0,
            c.threads.1,
            c.fds.0,
            c.fds.1,
            c.rss_bytes.0 as f64 / 1048576.0,
            c.rss_bytes.1 as f64 / 1048576.0
        );
    }
    if r.findings.is_empty() {
        out.push_str("\nNo problem found.\n");
    }
    for f in &r.findings {
        finding(&mut out, f);
    }
    for s in &r.skipped {
        let _ = writeln!(out, "\nNot examined: {}", Name(s));
    }
    if !r.thread_starts.is_empty() {
        out.push_str("\nThreads started during the window, by the line that started them:\n");
        for s in &r.thread_starts {
            let _ = writeln!(
                out,
                "  {:>6}  {} ({}:{}) started {}",
                s.count,
                Name(&s.function),
                Name(&s.file),
                s.line,
                Name(&s.target)
            );
        }
    }
    out
}

fn finding(out: &mut String, f: &Finding) {
    let severity = match f.severity {
        super::finding::Severity::Critical => "CRITICAL",
        super::finding::Severity::Warning => "WARNING",
        super::finding::Severity::Info => "INFO",
    };
    let _ = writeln!(out, "\n{severity} {}: {}", f.pattern.name(), Name(&f.summary));
    for t in &f.threads {
        let name = t.name.as_deref().unwrap_or("(unnamed)");
        let tid = t.tid.map(|t| format!(" tid {t}")).unwrap_or_default();
        let _ = writeln!(out, "  Thread \"{}\"{tid} ({}):", Name(name), Name(&t.role));
        if let Some(d) = &t.detail {
            let _ = writeln!(out, "    {}", Name(d));
        }
        for fr in &t.frames {
            let _ = writeln!(out, "    at {} ({}:{})", Name(&fr.function), Name(&fr.file), fr.line);
            if let Some(src) = &fr.source {
                let _ = writeln!(out, "        {}", Name(src.trim()));
            }
            for (k, v) in &fr.locals {
                let _ = writeln!(out, "        {} = {}", Name(k), Name(v));
            }
        }
    }
    // Threads by the name the finding shows them with, by ident where it has none.
    let thread = |ident: u64| match f.threads.iter().find(|t| t.ident == ident).and_then(|t| t.name.as_ref())
    {
        Some(name) => format!("\"{}\"", Name(name)),
        None => format!("thread {ident:#x}"),
    };
    for l in &f.locks {
        let owner = match (l.owner, l.owner_inferred) {
            (Some(o), false) => format!("held by {}", thread(o)),
            (Some(o), true) => format!("held by {} (inferred)", thread(o)),
            (None, _) => "holder unknown".into(),
        };
        let waiters: Vec<String> = l.waiters.iter().map(|&w| thread(w)).collect();
        let _ = writeln!(
            out,
            "  Lock {} ({} at {:#x}): {owner}, waited for by {}",
            Name(&l.name),
            Name(&l.kind),
            l.address,
            waiters.join(", ")
        );
    }
    for n in &f.notes {
        let _ = writeln!(out, "  {}", Name(n));
    }
    for s in &f.series {
        series(out, s);
    }
    if let Some(t) = &f.table {
        table(out, t);
    }
    for n in &f.next {
        let _ = writeln!(out, "  next: {}", Name(n));
    }
}

/// First, last, lowest and highest values of a counter.
fn series(out: &mut String, s: &super::finding::Series) {
    let (Some(first), Some(last)) = (s.points.first(), s.points.last()) else { return };
    let low = s.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let high = s.points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let v = |x: f64| {
        if s.unit == "bytes" {
            format!("{:.1} MiB", x / 1048576.0)
        } else {
            format!("{x:.0} {}", Name(&s.unit))
        }
    };
    let _ = writeln!(
        out,
        "  {} over {:.1} s: {} -> {} (lowest {}, highest {}, {} readings)",
        Name(&s.name),
        last.0 - first.0,
        v(first.1),
        v(last.1),
        v(low),
        v(high),
        s.points.len()
    );
}

/// Columns aligned on the widest cell (each cell escaped first).
fn table(out: &mut String, t: &super::finding::Table) {
    let cells: Vec<Vec<String>> = std::iter::once(&t.columns)
        .chain(&t.rows)
        .map(|row| row.iter().map(|c| Name(c).to_string()).collect())
        .collect();
    let mut widths = vec![0; t.columns.len()];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in &cells {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "    {}", line.join("  ").trim_end());
    }
}
