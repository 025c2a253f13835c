//! `ARCHITECTURE.md` draws the workspace's crates and their dependencies; this test holds the
//! drawing to `cargo metadata`, so that a new crate or a new dependency between crates is drawn
//! in the same change that makes it.
//!
//! The drawing is the first code block under `## Crates`. Its convention:
//! - a line with no tree marker starts a crate at the top (`pymri (binary)  its job`);
//! - a line `├─ NAME` or `└─ NAME` is a crate used by the nearest crate line above it whose
//!   marker (or name, at the top) starts further left; a crate may be drawn more than once;
//! - `(also uses A, B)` anywhere in a crate's lines (its own and the `│` lines that continue
//!   it, before the next crate line) adds edges from that crate to A and B, and
//!   `(also under A, B)` adds edges from A and B to it.
//!
//! Edges are normal dependencies (build dependencies too): dev-dependencies are left out,
//! since a test-only crate such as `pymri-testkit` says nothing about the layering of the code
//! that ships.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

type Edges = BTreeSet<(String, String)>;

struct Graph {
    crates: BTreeSet<String>,
    edges: Edges,
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).expect("crates/NAME")
}

fn metadata_graph() -> Graph {
    let manifest = workspace_root().join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let crates: BTreeSet<String> =
        packages.iter().map(|p| p["name"].as_str().expect("name").to_owned()).collect();
    let mut edges = Edges::new();
    for package in packages {
        let from = package["name"].as_str().expect("name");
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let to = dep["name"].as_str().expect("dependency name");
            if crates.contains(to) && dep["kind"].as_str() != Some("dev") {
                edges.insert((from.to_owned(), to.to_owned()));
            }
        }
    }
    Graph { crates, edges }
}

/// The `(also KEYWORD A, B)` notes of `text`, as the crate names they list.
fn notes<'a>(text: &'a str, keyword: &str) -> Vec<&'a str> {
    let open = format!("(also {keyword} ");
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find(')').unwrap_or_else(|| panic!("unclosed note in {text:?}"));
        names.extend(after[..end].split(',').map(str::trim));
        rest = &after[end..];
    }
    names
}

fn drawn_graph(markdown: &str) -> Graph {
    let section = markdown.split_once("\n## Crates\n").expect("a `## Crates` section").1;
    let block = section.split_once("```\n").expect("a code block").1;
    let block = block.split_once("```").expect("the code block's end").0;

    let mut crates = BTreeSet::new();
    let mut edges = Edges::new();
    // The crate lines above the current one, as (column, name), left to right.
    let mut ancestors: Vec<(usize, String)> = Vec::new();
    let mut current: Option<String> = None;
    for line in block.lines() {
        let marker = ["├─ ", "└─ "].iter().filter_map(|m| line.find(m).map(|at| (at, m.len()))).min();
        let started = match marker {
            Some((at, len)) => {
                let column = line[..at].chars().count();
                let name = line[at + len..].split_whitespace().next().expect("a name after the marker");
                Some((column, name))
            }
            None if !line.starts_with(' ') && !line.is_empty() => {
                Some((0, line.split_whitespace().next().expect("a name")))
            }
            None => None,
        };
        if let Some((column, name)) = started {
            while ancestors.last().is_some_and(|(c, _)| *c >= column) {
                ancestors.pop();
            }
            if marker.is_some() {
                let (_, parent) = ancestors.last().unwrap_or_else(|| panic!("{name} has no crate above it"));
                edges.insert((parent.clone(), name.to_owned()));
            }
            ancestors.push((column, name.to_owned()));
            crates.insert(name.to_owned());
            current = Some(name.to_owned());
        }
        let Some(this) = &current else { continue };
        for used in notes(line, "uses") {
            edges.insert((this.clone(), used.to_owned()));
        }
        for user in notes(line, "under") {
            edges.insert((user.to_owned(), this.clone()));
        }
    }
    for (from, to) in &edges {
        assert!(
            crates.contains(from) && crates.contains(to),
            "a note names a crate not drawn: {from} -> {to}"
        );
    }
    Graph { crates, edges }
}

fn differences<'a, T: Ord + std::fmt::Debug>(
    what: &str,
    real: &'a BTreeSet<T>,
    drawn: &'a BTreeSet<T>,
) -> Vec<String> {
    let mut out: Vec<String> =
        real.difference(drawn).map(|x| format!("{what} not drawn in ARCHITECTURE.md: {x:?}")).collect();
    out.extend(
        drawn
            .difference(real)
            .map(|x| format!("{what} drawn in ARCHITECTURE.md but not in Cargo.toml: {x:?}")),
    );
    out
}

#[test]
fn architecture_md_draws_the_crate_graph_cargo_sees() {
    let markdown =
        std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let drawn = drawn_graph(&markdown);
    let real = metadata_graph();
    let mut problems = differences("crate", &real.crates, &drawn.crates);
    problems.extend(differences("dependency", &real.edges, &drawn.edges));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_drawing_convention_reads_markers_and_notes() {
    let markdown = "\n## Crates\n\n```\n\
a (binary)   job (also uses d)\n  \
├─ b         job\n  \
│    └─ c    job,\n  \
│            continued (also under a)\n  \
└─ d\n\
e            another top\n```\n";
    let graph = drawn_graph(markdown);
    let edges: Vec<(&str, &str)> = graph.edges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(edges, [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c")]);
    assert_eq!(graph.crates.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
}
