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
