//! The examples' observed.json files are recordings of real clusters (made by
//! `examples/record.sh` with `pgtopo observe --out`), not hand-written placeholders, and each one
//! belongs to its topology.yaml: same cluster, same node names, the addresses, ports and data
//! directories the topology declares, one system identifier, and the starting state that the
//! example's comment describes.
//!
//! One data-driven `check(example, expect)`: the generic recording checks, then the example's
//! own expectations as a list of `(node, state)` pairs.

mod common;

use common::*;
use pgtopo::config::Desired;
use pgtopo::observe::{ObservedCluster, ObservedNode, Role, OBSERVED_FORMAT_VERSION};

/// What the recording must show of one node.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Running primary, answering SQL.
    Primary,
    /// Running standby streaming from this upstream.
    Streaming(&'static str),
    /// Running standby whose WAL receiver is not streaming (its upstream is gone).
    StandbyNotStreaming,
    /// Stopped without a shutdown checkpoint: control data says "in production".
    Crashed,
    /// No data directory at all.
    Missing,
    /// An empty data directory.
    Empty,
}

fn load(example: &str) -> (Desired, ObservedCluster, serde_json::Value) {
    let dir = examples_dir().join(example);
    let d = load_topology(&dir.join("topology.yaml"));
    let path = dir.join("observed.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    (d, load_observed(&path), raw)
}

/// Checks that hold for every recording.
fn recorded(example: &str, d: &Desired, o: &ObservedCluster, raw: &serde_json::Value) {
    assert_eq!(
        raw["format_version"].as_u64(),
        Some(u64::from(OBSERVED_FORMAT_VERSION)),
        "{example}: format_version"
    );
    assert_eq!(o.cluster, d.cluster, "{example}: cluster name");
    let at = humantime::parse_rfc3339(&o.observed_at)
        .unwrap_or_else(|e| panic!("{example}: observed_at {:?}: {e}", o.observed_at));
    // The hand-written placeholders all carried this instant.
    assert_ne!(
        o.observed_at, "2026-11-24T23:00:00Z",
        "{example}: placeholder time"
    );
    assert!(
        at <= std::time::SystemTime::now(),
        "{example}: observed in the future"
    );
    assert_eq!(
        o.nodes.keys().collect::<Vec<_>>(),
        d.nodes.keys().collect::<Vec<_>>(),
        "{example}: the recording's nodes are the topology's"
    );
    let mut identifiers = std::collections::BTreeSet::new();
    for (name, n) in &o.nodes {
        let dn = &d.nodes[name];
        let ctx = format!("{example}/{name}");
        if n.running {
            assert!(n.reachable, "{ctx}: running but not reachable over SQL");
            let sysid = n
                .system_identifier
                .as_deref()
                .unwrap_or_else(|| panic!("{ctx}: no system identifier"));
            assert!(
                sysid.len() >= 18 && sysid.parse::<u64>().is_ok(),
                "{ctx}: system identifier {sysid}"
            );
            identifiers.insert(sysid.to_string());
            assert!(
                n.version.is_some_and(|v| v >= 120000),
                "{ctx}: version {:?}",
                n.version
            );
            assert!(
                n.timeline.is_some() && n.lsn.is_some(),
                "{ctx}: timeline/lsn"
            );
            // The server listens where the topology says.
            let port = &n.settings["port"].value;
            assert_eq!(port, &dn.port.to_string(), "{ctx}: port");
            assert_eq!(
                n.settings["listen_addresses"].value, dn.host,
                "{ctx}: listen_addresses"
            );
            let hba = n.hba.as_ref().unwrap_or_else(|| panic!("{ctx}: no hba"));
            assert!(
                hba.path.starts_with(&dn.data_dir.display().to_string()),
                "{ctx}: pg_hba.conf at {} is not in {}",
                hba.path,
                dn.data_dir.display()
            );
            assert!(
                hba.sha256.len() == 64 && hba.sha256.chars().any(|c| c != '0'),
                "{ctx}: hba hash {}",
                hba.sha256
            );
            assert!(hba.errors.is_empty(), "{ctx}: hba errors {:?}", hba.errors);
        }
        if let Some(c) = &n.control {
            identifiers.insert(c.system_identifier.clone());
        }
        if n.role == Some(Role::Standby) {
            if let Some(ci) = &n.primary_conninfo {
                let known = d.nodes.values().any(|x| {
                    Some(x.host.as_str()) == ci.host.as_deref() && Some(x.port) == ci.port
                });
                assert!(
                    known,
                    "{ctx}: primary_conninfo names no declared node: {ci:?}"
                );
                assert_eq!(
                    ci.application_name.as_deref(),
                    Some(name.as_str()),
                    "{ctx}: application_name"
                );
            }
        }
    }
    assert!(
        identifiers.len() <= 1,
        "{example}: several system identifiers {identifiers:?}"
    );
    assert!(
        !identifiers.contains("7300000000000000001"),
        "{example}: the placeholder system identifier"
    );
}

fn node_is(ctx: &str, n: &ObservedNode, e: Expect) {
    match e {
        Expect::Primary => {
            assert!(n.running && n.reachable, "{ctx}: not running");
            assert_eq!(n.role, Some(Role::Primary), "{ctx}: role");
        }
        Expect::Streaming(up) => {
            assert!(n.running && n.reachable, "{ctx}: not running");
            assert_eq!(n.role, Some(Role::Standby), "{ctx}: role");
            assert!(n.streaming, "{ctx}: not streaming");
            assert_eq!(n.upstream.as_deref(), Some(up), "{ctx}: upstream");
            assert!(n.standby_signal, "{ctx}: standby.signal");
            assert_eq!(n.primary_slot_name.as_deref(), ctx.rsplit('/').next());
        }
        Expect::StandbyNotStreaming => {
            assert!(n.running && n.reachable, "{ctx}: not running");
            assert_eq!(n.role, Some(Role::Standby), "{ctx}: role");
            assert!(!n.streaming, "{ctx}: streaming");
        }
        Expect::Crashed => {
            assert!(!n.running && !n.reachable, "{ctx}: running");
            assert!(n.host_reachable, "{ctx}: files not read");
            let c = n.control.as_ref().expect("control data of a stopped node");
            assert_eq!(c.cluster_state, "in production", "{ctx}: cluster state");
        }
        Expect::Missing => {
            assert!(!n.running && !n.data_dir.exists, "{ctx}: data dir exists");
        }
        Expect::Empty => {
            assert!(!n.running, "{ctx}: running");
            assert!(
                n.data_dir.exists && n.data_dir.empty,
                "{ctx}: {:?}",
                n.data_dir
            );
        }
    }
}

fn check(example: &str, expect: &[(&str, Expect)]) {
    let (d, o, raw) = load(example);
    recorded(example, &d, &o, &raw);
    for (node, e) in expect {
        node_is(&format!("{example}/{node}"), &o.nodes[*node], *e);
    }
}

fn slots(o: &ObservedCluster, node: &str) -> Vec<String> {
    o.nodes[node].slots.clone()
}

#[test]
fn every_example_is_checked_here() {
    // The list below and tests/common's list of examples (the golden plans) agree.
    assert_eq!(EXAMPLES.len(), 7);
    for e in EXAMPLES {
        assert!(examples_dir().join(e).join("observed.json").exists(), "{e}");
    }
}

#[test]
fn bootstrap_3_nodes() {
    use Expect::*;
    check(
        "bootstrap-3-nodes",
        &[("n1", Primary), ("n2", Missing), ("n3", Empty)],
    );
    let (_, o, _) = load("bootstrap-3-nodes");
    let n1 = &o.nodes["n1"];
    assert!(slots(&o, "n1").is_empty());
    assert!(
        n1.hba.as_ref().unwrap().managed_block.is_none(),
        "fresh initdb"
    );
}

#[test]
fn switchover() {
    use Expect::*;
    check(
        "switchover",
        &[
            ("n1", Primary),
            ("n2", Streaming("n1")),
            ("n3", Streaming("n1")),
        ],
    );
    let (_, o, _) = load("switchover");
    assert_eq!(slots(&o, "n1"), ["n2", "n3"]);
    let names: Vec<_> = o.nodes["n1"]
        .replication
        .iter()
        .map(|r| (r.application_name.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(names, [("n2", "streaming"), ("n3", "streaming")]);
}

#[test]
fn cascade_repoint() {
    use Expect::*;
    check(
        "cascade-repoint",
        &[
            ("n1", Primary),
            ("n2", Streaming("n1")),
            ("n3", Streaming("n1")),
        ],
    );
}

#[test]
fn failover_rejoin() {
    use Expect::*;
    check(
        "failover-rejoin",
        &[
            ("n1", Crashed),
            ("n2", StandbyNotStreaming),
            ("n3", StandbyNotStreaming),
        ],
    );
    let (d, o, _) = load("failover-rejoin");
    assert!(d.failover.allow, "the example has failover consent");
    // n1 took no checkpoint after its standbys left (one would remove the WAL of the last common
    // checkpoint, which pg_rewind needs), so its control data cannot tell how far its WAL goes:
    // the plan must rewind it whatever it wrote.
    let n1_checkpoint = o.nodes["n1"].control.as_ref().unwrap().latest_checkpoint;
    let n2_received = pgtopo::diff::received(&o.nodes["n2"]).unwrap();
    assert!(
        n1_checkpoint < n2_received,
        "{n1_checkpoint} vs {n2_received}"
    );
}

#[test]
fn settings_rolling_restart() {
    use Expect::*;
    check(
        "settings-rolling-restart",
        &[
            ("n1", Primary),
            ("n2", Streaming("n1")),
            ("n3", Streaming("n1")),
        ],
    );
    let (_, o, _) = load("settings-rolling-restart");
    for n in ["n1", "n2", "n3"] {
        let s = &o.nodes[n].settings;
        assert_eq!(s["max_connections"].value, "100");
        assert_eq!(s["max_connections"].context, "postmaster");
        assert_eq!(s["work_mem"].context, "user");
    }
}

#[test]
fn sync_quorum() {
    use Expect::*;
    check(
        "sync-quorum",
        &[
            ("n1", Primary),
            ("n2", Streaming("n1")),
            ("n3", Streaming("n1")),
        ],
    );
    let (_, o, _) = load("sync-quorum");
    assert_eq!(
        o.nodes["n1"].settings["synchronous_standby_names"].value,
        ""
    );
}

#[test]
fn retire_node() {
    use Expect::*;
    check(
        "retire-node",
        &[
            ("n1", Primary),
            ("n2", Streaming("n1")),
            ("n3", Streaming("n1")),
            ("n4", Streaming("n1")),
        ],
    );
    let (_, o, _) = load("retire-node");
    let n1 = &o.nodes["n1"];
    assert_eq!(
        n1.settings["synchronous_standby_names"].value,
        r#"FIRST 1 ("n2", "n3", "n4")"#
    );
    let sync: Vec<_> = n1
        .replication
        .iter()
        .map(|r| (r.application_name.as_str(), r.sync_state.as_str()))
        .collect();
    assert_eq!(
        sync,
        [("n2", "sync"), ("n3", "potential"), ("n4", "potential")]
    );
}
