//! Process trees: `dump --subprocesses` on a Python process that started Python children.

mod common;

use common::{interpreter, pymri, text, Target};
use serde_json::Value;

#[test]
fn dump_follows_children_and_grandchildren() {
    for name in ["3.9", "3.11", "3.14", "3.15"] {
        let interp = interpreter(name).unwrap_or_else(|| panic!("interpreter {name} is not provisioned"));
        let mut target = Target::start(&interp, "record_family.py", &["{ready}", "{control}"]);
        let reply = target.ask("spawn");
        let (child, grandchild) = reply.split_once(' ').unwrap_or_else(|| panic!("{reply}"));
        let (child, grandchild): (i64, i64) =
            (child.trim().parse().expect("child pid"), grandchild.trim().parse().expect("grandchild pid"));
        let pid = target.pid().to_string();

        let out = pymri(&["dump", &pid, "--subprocesses", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let documents: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
        let pids: Vec<i64> = documents.iter().filter_map(|d| d["pid"].as_i64()).collect();
        assert_eq!(pids, [i64::from(target.pid()), child, grandchild], "{name}");
        let runs = |doc: &Value, function: &str| {
            doc["threads"]
                .as_array()
                .expect("threads")
                .iter()
                .flat_map(|t| t["frames"].as_array().into_iter().flatten())
                .any(|f| f["function"] == function)
        };
        assert!(runs(&documents[0], "spin"), "{:#}", documents[0]);
        assert!(runs(&documents[1], "child_spin"), "{:#}", documents[1]);
        assert!(runs(&documents[2], "grandchild_spin"), "{:#}", documents[2]);

        let out = pymri(&["dump", &pid, "--subprocesses"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dumped = text(&out.stdout);
        let headers: Vec<&str> = dumped.lines().filter(|l| l.starts_with("Process ")).collect();
        assert_eq!(headers.len(), 3, "{dumped}");
        assert!(headers[1].starts_with(&format!("Process {child}:")), "{dumped}");
        assert!(dumped.contains("grandchild_spin"), "{dumped}");

        // Without the flag, only the process itself.
        let out = pymri(&["dump", &pid, "--json"]);
        let one: Value = serde_json::from_slice(&out.stdout).expect("one document");
        assert!(!runs(&one, "child_spin"));
    }
}
