//! `pymri compare FILE...`: `dump --json` documents from several machines or moments, folded
//! into the grouped view of `dump --group` ([`super::group`]), each process named by its host.
//!
//! The files are the user's, but what is in them came from targets: every string is shown
//! escaped, sizes are bounded, and a document that is not a dump is an error naming the file.

use super::group::{self, Frame, Process, Thread};
use crate::printer::Printer;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

/// The largest dump file read.
const MAX_FILE: u64 = 256 << 20;

pub struct CompareOptions {
    pub files: Vec<PathBuf>,
    pub json: bool,
}

pub fn run(opts: CompareOptions, printer: &mut Printer) -> Result<()> {
    let mut processes = Vec::new();
    for path in &opts.files {
        let mut bytes = Vec::new();
        pymri_memory::open_regular(path, MAX_FILE)
            .and_then(|f| f.take(MAX_FILE).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read {}", path.display()))?;
        let shown = path.display().to_string();
        let before = processes.len();
        for (index, doc) in serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>().enumerate() {
            let doc = doc.with_context(|| format!("{shown}: not JSON"))?;
            processes.push(process(&doc, &shown, index + 1)?);
        }
        if processes.len() == before {
            bail!("{shown}: no `pymri dump --json` report in it (the file is empty)");
        }
    }
    let g = group::group(&processes);
    if opts.json {
        printer.json(&g)?;
    } else {
        printer.write_str(&group::text(&g))?;
    }
    printer.flush()
}

/// One process of a dump document; the host is the document's own, else the file's name.
fn process(doc: &Value, path: &str, index: usize) -> Result<Process> {
    let bad =
        |why: &str| anyhow::anyhow!("{path}: document {index} is not a `pymri dump --json` report: {why}");
    if doc["schema"].as_u64() != Some(1) {
        return Err(bad("no \"schema\": 1"));
    }
    let pid = doc["pid"].as_i64().ok_or_else(|| bad("no \"pid\""))?;
    let threads = doc["threads"].as_array().ok_or_else(|| bad("no \"threads\" list"))?;
    let string = |v: &Value| v.as_str().map(str::to_string);
    let threads = threads
        .iter()
        .map(|t| {
            let frames = t["frames"].as_array().ok_or_else(|| bad("a thread without \"frames\""))?;
            let frames = frames
                .iter()
                .map(|f| {
                    Ok(Frame {
                        function: string(&f["function"])
                            .ok_or_else(|| bad("a frame without \"function\""))?,
                        file: string(&f["file"]).ok_or_else(|| bad("a frame without \"file\""))?,
                        line: f["line"].as_i64().ok_or_else(|| bad("a frame without \"line\""))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Thread { tid: t["tid"].as_i64(), name: string(&t["name"]), frames })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Process {
        host: Some(string(&doc["host"]).unwrap_or_else(|| path.to_string())),
        pid,
        rank: string(&doc["rank"]),
        threads,
    })
}
