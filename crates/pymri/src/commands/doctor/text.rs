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
    out
}

fn finding(out: &mut String, f: &Finding) {
    let severity = match f.severity {
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
    for n in &f.notes {
        let _ = writeln!(out, "  {}", Name(n));
    }
    for n in &f.next {
        let _ = writeln!(out, "  next: {}", Name(n));
    }
}
