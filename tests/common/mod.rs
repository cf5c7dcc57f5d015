//! Helpers shared by the planner's integration tests: load an example's topology and recording.
//!
//! `load_topology` uses `pgtopo::config::load` (validation included) and falls back to a plain
//! serde reading of the file while the loader is not available in this build.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pgtopo::config::{Desired, DesiredNode, DesiredRole, NodeRole, NodeState, TopologyFile};
use pgtopo::observe::ObservedCluster;
use sha2::{Digest, Sha256};

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

/// The validated topology of a file.
pub fn load_topology(path: &Path) -> Desired {
    match pgtopo::config::load(path) {
        Ok(d) => d,
        Err(e) if format!("{e}").contains("not implemented") => plain_load(path),
        Err(e) => panic!("{}: {e:?}", path.display()),
    }
}

fn plain_load(path: &Path) -> Desired {
    let bytes = std::fs::read(path).unwrap();
    let f: TopologyFile = serde_yaml::from_slice(&bytes).unwrap();
    let primary = f
        .nodes
        .iter()
        .find(|(_, n)| n.role == Some(NodeRole::Primary))
        .map(|(k, _)| k.clone())
        .expect("a primary");
    let nodes = f
        .nodes
        .iter()
        .map(|(name, n)| {
            let role = if n.state == NodeState::Absent {
                DesiredRole::Absent
            } else if n.role == Some(NodeRole::Primary) {
                DesiredRole::Primary
            } else {
                DesiredRole::Standby {
                    upstream: n.upstream.clone().unwrap_or_else(|| primary.clone()),
                }
            };
            let mut settings: std::collections::BTreeMap<String, String> = f
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            settings.extend(n.settings.iter().map(|(k, v)| (k.clone(), v.0.clone())));
            (
                name.clone(),
                DesiredNode {
                    name: name.clone(),
                    host: n.host.clone(),
                    port: n.port,
                    data_dir: n.data_dir.clone(),
                    bin_dir: n
                        .bin_dir
                        .clone()
                        .or(f.postgres.bin_dir.clone())
                        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into()),
                    os_user: n
                        .os_user
                        .clone()
                        .or(f.postgres.os_user.clone())
                        .unwrap_or_else(|| "postgres".into()),
                    ssh: n.ssh.clone(),
                    role,
                    settings,
                },
            )
        })
        .collect();
    Desired {
        cluster: f.cluster,
        source_path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        connect: f.connect,
        replication: f.replication,
        hba: f.hba,
        failover: f.failover,
        switchover: f.switchover,
        nodes,
    }
}

/// An example's recording.
pub fn load_observed(path: &Path) -> ObservedCluster {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
