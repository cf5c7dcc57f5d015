//! Helpers shared by the planner's integration tests: load an example's topology and recording.
//!

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pgtopo::config::Desired;
use pgtopo::observe::ObservedCluster;

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

pub const EXAMPLES: [&str; 7] = [
    "bootstrap-3-nodes",
    "switchover",
    "cascade-repoint",
    "failover-rejoin",
    "settings-rolling-restart",
    "sync-quorum",
    "retire-node",
];

/// The validated topology of a file (through the real loader, validation included).
pub fn load_topology(path: &Path) -> Desired {
    pgtopo::config::load(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// An example's recording.
pub fn load_observed(path: &Path) -> ObservedCluster {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every setting an `alter_system` step sets is in its node's postgresql.auto.conf diff, and
/// every setting that diff shows is set by a step of the plan; a pg_hba diff is shown exactly
/// for the nodes a `write_hba` step writes. Else what differs.
pub fn files_not_shown(plan: &pgtopo::plan::Plan) -> Option<String> {
    use std::collections::BTreeSet;
    let mut by_steps = BTreeSet::new();
    for s in &plan.steps {
        if let pgtopo::plan::Action::AlterSystem(p) = &s.action {
            by_steps.extend(p.set.keys().map(|k| (s.node.clone(), k.clone())));
        }
    }
    let shown: BTreeSet<(String, String)> = plan
        .file_diffs
        .iter()
        .filter(|f| f.path.contains("postgresql.auto.conf"))
        .flat_map(|f| {
            f.after
                .lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, _)| (f.node.clone(), k.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    if shown != by_steps {
        return Some(format!(
            "settings shown {shown:?}, set by steps {by_steps:?}"
        ));
    }
    let hba_steps: BTreeSet<&str> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, pgtopo::plan::Action::WriteHba(_)))
        .map(|s| s.node.as_str())
        .collect();
    let hba_shown: BTreeSet<&str> = plan
        .file_diffs
        .iter()
        .filter(|f| f.path.ends_with("pg_hba.conf"))
        .map(|f| f.node.as_str())
        .collect();
    (hba_steps != hba_shown)
        .then(|| format!("pg_hba shown on {hba_shown:?}, written on {hba_steps:?}"))
}
