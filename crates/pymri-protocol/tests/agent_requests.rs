//! The requests this crate defines and the handlers the Python agent registers are the same set.
//!
//! Both sides are read as source: every request here is a `request!(Type, "cmd", Body)` in
//! `src/requests.rs`, and every agent handler is an entry of a literal `REQUESTS = {...}` table
//! in a module of `python/pymri_agent`, composed into `engine.REQUESTS`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pymri_protocol::requests::{Info, Interact};
use pymri_protocol::Request;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn agent_dir() -> PathBuf {
    crate_dir().join("../../python/pymri_agent")
}

/// The second argument of every `request!(` invocation: the commands this crate can send.
fn rust_commands() -> Vec<String> {
    let source = std::fs::read_to_string(crate_dir().join("src/requests.rs")).expect("requests.rs");
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("request!("))
        .map(|rest| {
            let cmd = rest.split('"').nth(1).expect("request!(Type, \"cmd\", Body)");
            cmd.to_string()
        })
        .collect()
}

/// `(module, [request names])` for every agent module with a literal `REQUESTS = {` table.
fn agent_tables() -> Vec<(String, Vec<String>)> {
    let mut tables = Vec::new();
    for entry in std::fs::read_dir(agent_dir()).expect("python/pymri_agent") {
        let path = entry.expect("entry").path();
        let Some(module) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".py"))
        else {
            continue;
        };
        let source = std::fs::read_to_string(&path).expect("agent module");
        let mut lines = source.lines().skip_while(|line| *line != "REQUESTS = {");
        if lines.next().is_none() {
            continue;
        }
        let names = lines
            .take_while(|line| *line != "}")
            .filter_map(|line| line.trim().strip_prefix('"'))
            .map(|rest| rest.split('"').next().expect("\"name\": (KIND, handler)").to_string())
            .collect();
        tables.push((module.to_string(), names));
    }
    tables.sort();
    tables
}

#[test]
fn the_agent_handles_exactly_the_requests_this_crate_defines() {
    let rust = rust_commands();
    let rust_set: BTreeSet<&str> = rust.iter().map(String::as_str).collect();
    assert_eq!(rust_set.len(), rust.len(), "a command defined twice in requests.rs: {rust:?}");
    // The parse found the crate's real commands, not some other string.
    assert!(rust_set.contains(Info::COMMAND) && rust_set.contains(Interact::COMMAND), "{rust:?}");

    let tables = agent_tables();
    assert!(!tables.is_empty(), "no REQUESTS table in the agent");
    let engine = std::fs::read_to_string(agent_dir().join("engine.py")).expect("engine.py");
    let mut agent_set = BTreeSet::new();
    for (module, names) in &tables {
        assert!(
            engine.contains(&format!("{module}.REQUESTS")),
            "engine.REQUESTS does not compose {module}.REQUESTS"
        );
        for name in names {
            assert!(agent_set.insert(name.as_str()), "request {name:?} registered twice (again in {module})");
        }
    }

    let only_rust: Vec<_> = rust_set.difference(&agent_set).collect();
    let only_agent: Vec<_> = agent_set.difference(&rust_set).collect();
    assert!(
        only_rust.is_empty() && only_agent.is_empty(),
        "requests without an agent handler: {only_rust:?}; agent handlers without a request: {only_agent:?}"
    );
}
