//! `--html FILE`: the report as one self-contained page (no script, style sheet, font or image
//! from anywhere else): the findings, a table of the threads, the window's flame graph (the
//! same inferno SVG `pymri record` writes) and the counters over time as inline SVG charts.
//! Every string from the target is escaped for HTML after the terminal escaping.

use super::finding::{Finding, Report, Series, Severity};
use super::window::Window;
use pymri_cpython::ThreadState;
use pymri_profile::{Flamegraph, Writer};
use std::fmt::Write as _;

/// Text from anywhere, made inert for HTML: control and bidi characters spelled out as the
/// terminal output spells them, then the markup characters escaped.
fn esc(s: &str) -> String {
    let shown = pymri_text::name(s);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Copies markup made by inferno (which escapes markup in names but passes control and bidi
/// characters through), with those characters spelled out; its own line breaks and tabs stay.
fn inert_controls(out: &mut String, markup: &str) {
    for c in markup.chars() {
        if matches!(c, '\n' | '\t') || !pymri_text::escaped_in_name(c) {
            out.push(c);
        } else {
            out.push_str(&pymri_text::name(c.encode_utf8(&mut [0; 4])));
        }
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:1250px}\
code,pre,td.mono{font-family:monospace}\
.finding{border-left:6px solid #999;padding:.2em .8em;margin:1em 0;background:#f7f7f7}\
.warning{border-color:#d98c00}.info{border-color:#4a7fb5}.critical{border-color:#c62828}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
.chart{display:inline-block;margin-right:1em}";

pub fn page(report: &Report, window: &Window) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pymri doctor {pid}</title>\
         <style>{STYLE}</style></head><body>\n<h1>pymri doctor: process {pid} (Python {python})</h1>\n\
         <p>Watched {secs:.1} s, {samples} samples.</p>\n",
        pid = report.pid,
        python = esc(&report.python),
        secs = report.window_seconds,
        samples = report.samples
    );
    out.push_str("<h2>Findings</h2>\n");
    if report.findings.is_empty() {
        out.push_str("<p>No problem found.</p>\n");
    }
    for f in &report.findings {
        finding(&mut out, f);
    }
    for s in &report.skipped {
        let _ = writeln!(out, "<p>Not examined: {}</p>", esc(s));
    }
    threads(&mut out, window);
    out.push_str("<h2>Counters</h2>\n");
    for series in [
        window.series("threads", "threads", |c| c.threads as f64),
        window.series("file descriptors", "descriptors", |c| c.fds as f64),
        window.series("resident memory", "MiB", |c| c.rss_bytes as f64 / 1048576.0),
    ] {
        chart(&mut out, &series);
    }
    out.push_str("<h2>Flame graph of the window</h2>\n");
    let mut svg = Vec::new();
    match Flamegraph.write(&window.profile, &mut svg) {
        // The SVG's XML declaration has no place inside HTML.
        Ok(()) => {
            let svg = String::from_utf8_lossy(&svg);
            let start = svg.find("<svg").unwrap_or(0);
            inert_controls(&mut out, &svg[start..]);
        }
        Err(e) => {
            let _ = write!(out, "<p>No flame graph: {}</p>", esc(&e.to_string()));
        }
    }
    out.push_str("\n</body></html>\n");
    out
}

fn finding(out: &mut String, f: &Finding) {
    let class = match f.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    let _ = writeln!(
        out,
        "<div class=\"finding {class}\"><h3>{} {}</h3><p>{}</p>",
        class.to_uppercase(),
        f.pattern.name(),
        esc(&f.summary)
    );
    for t in &f.threads {
        let tid = t.tid.map(|t| format!(" tid {t}")).unwrap_or_default();
        let _ = write!(
            out,
            "<p><b>Thread \"{}\"{tid}</b> ({})",
            esc(t.name.as_deref().unwrap_or("(unnamed)")),
            esc(&t.role)
        );
        if let Some(d) = &t.detail {
            let _ = write!(out, "<br>{}", esc(d));
        }
        out.push_str("</p><pre>");
        for fr in &t.frames {
            let _ = writeln!(out, "at {} ({}:{})", esc(&fr.function), esc(&fr.file), fr.line);
            if let Some(src) = &fr.source {
                let _ = writeln!(out, "    {}", esc(src.trim()));
            }
            for (k, v) in &fr.locals {
                let _ = writeln!(out, "    {} = {}", esc(k), esc(v));
            }
        }
        out.push_str("</pre>\n");
    }
    for c in &f.counts {
        let _ = writeln!(out, "<p>{} {}: {}</p>", esc(&c.by), esc(&c.value), c.count);
    }
    for n in &f.notes {
        let _ = writeln!(out, "<p>{}</p>", esc(n));
    }
    for s in &f.series {
        chart(out, s);
    }
    for n in &f.next {
        let _ = writeln!(out, "<p>next: <code>{}</code></p>", esc(n));
    }
    out.push_str("</div>\n");
}

fn threads(out: &mut String, window: &Window) {
    out.push_str(
        "<h2>Threads</h2>\n<table><tr><th>name</th><th>tid</th><th>samples</th><th>on a CPU</th>\
         <th>holds the GIL</th><th>waits for the GIL</th><th>still since (s)</th><th>last seen at</th></tr>\n",
    );
    for w in window.threads.values() {
        let pct = |n: u64| format!("{:.0}%", n as f64 * 100.0 / w.samples.max(1) as f64);
        let waiting = w.states.get(&ThreadState::WaitingForGil).copied().unwrap_or(0);
        let spot = w
            .last_spot
            .as_ref()
            .map(|s| format!("{} ({}:{})", esc(&s.function), esc(&s.file), s.line))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td class=\"mono\">{spot}</td></tr>",
            esc(w.name.as_deref().unwrap_or("")),
            w.tid.map(|t| t.to_string()).unwrap_or_default(),
            w.samples,
            pct(w.on_cpu),
            pct(w.holds_gil),
            pct(waiting),
            w.still_since
        );
    }
    out.push_str("</table>\n");
}

/// A line chart of a series, drawn to scale from zero.
fn chart(out: &mut String, s: &Series) {
    const W: f64 = 360.0;
    const H: f64 = 120.0;
    const PAD: f64 = 30.0;
    let Some(&(t_end, _)) = s.points.last() else { return };
    let max = s.points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let t_end = t_end.max(0.001);
    let points: Vec<String> = s
        .points
        .iter()
        .map(|(t, v)| {
            format!("{:.1},{:.1}", PAD + t / t_end * (W - PAD - 5.0), H - PAD + 10.0 - v / max * (H - PAD))
        })
        .collect();
    let last = s.points.last().map_or(0.0, |p| p.1);
    let _ = writeln!(
        out,
        "<div class=\"chart\"><svg width=\"{W}\" height=\"{H}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"{PAD}\" y1=\"{base}\" x2=\"{W}\" y2=\"{base}\" stroke=\"#999\"/>\
         <line x1=\"{PAD}\" y1=\"10\" x2=\"{PAD}\" y2=\"{base}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"16\" font-size=\"10\">{max:.0}</text><text x=\"2\" y=\"{base}\" font-size=\"10\">0</text>\
         <text x=\"{W2}\" y=\"{H1}\" font-size=\"10\" text-anchor=\"end\">{t_end:.1} s</text>\
         <polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"{}\"/></svg>\
         <br>{} ({}): {last:.1} at the end</div>",
        points.join(" "),
        esc(&s.name),
        esc(&s.unit),
        base = H - PAD + 10.0,
        W2 = W - 5.0,
        H1 = H - 5.0,
    );
}

#[cfg(test)]
mod tests {
    use super::{esc, inert_controls};

    #[test]
    fn controls_in_markup_are_spelled_out() {
        let mut out = String::new();
        inert_controls(&mut out, "<text>a\u{1b}[2J\u{202e}b</text>\n\t<g/>");
        assert!(!out.contains(['\u{1b}', '\u{202e}']), "{out}");
        assert!(out.starts_with("<text>a\\x1b[2J") && out.ends_with("</text>\n\t<g/>"), "{out}");
    }

    #[test]
    fn markup_and_controls_are_inert() {
        assert_eq!(
            esc("<script>\"a\"&'b'</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        assert!(!esc("a\u{1b}[2J\u{202e}b").contains(['\u{1b}', '\u{202e}']));
    }
}
