//! Each transform run alone (after the analysis, with no other transform before it).
use super::hba_managed_block::hba_managed_block;
use super::promotion::promotion;
use super::replication_role::replication_role;
use super::retire::retire;
use super::settings_rolling::settings_rolling;
use super::slot_cleanup::slot_cleanup;
use super::standbys::standbys;
use super::start_stopped_primary::start_stopped_primary;
use super::synchronous_set::synchronous_set;
use super::*;
use crate::config::{Desired, DesiredRole};
use crate::config::{SyncMode, SyncSpec};
use crate::observe::fixtures::*;
use crate::observe::ObservedCluster;
use crate::observe::{ControlData, ObservedNode};
use crate::plan::analysis::analyse;
use crate::plan::PlanOptions;
use crate::units::Lsn;

/// A step as "kind node" (a slot step also names its slot: "create_slot n2:n3").
fn label(s: &crate::plan::Step) -> String {
    match &s.action {
        crate::plan::Action::CreateSlot(p) | crate::plan::Action::DropSlot(p) => {
            format!("{} {}:{}", s.action.kind(), s.node, p.slot)
        }
        a => format!("{} {}", a.kind(), s.node),
    }
}

/// What one transform drew: its steps, and its DAG's edges as "before -> after" (each step's
/// direct dependencies), both as sets: the order steps were inserted in is not the contract.
#[derive(Debug, PartialEq, Eq)]
struct Drawn {
    steps: std::collections::BTreeSet<String>,
    edges: std::collections::BTreeSet<String>,
}

impl Drawn {
    fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The expected drawing: steps, and edges "a -> b".
fn drawn(steps: &[&str], edges: &[&str]) -> Drawn {
    Drawn {
        steps: steps.iter().map(|s| s.to_string()).collect(),
        edges: edges.iter().map(|s| s.to_string()).collect(),
    }
}

/// Run `only` after the analysis; what it drew.
fn alone(d: &Desired, o: &ObservedCluster, only: Transform) -> Drawn {
    let a = analyse(d, o, &PlanOptions::default()).expect("analysis");
    let mut c = Ctx::new(&a.eff, o, &a);
    only(&mut c);
    let steps = c.dag.finish();
    let by_id = |id: &crate::plan::StepId| label(&steps[*id as usize - 1]);
    Drawn {
        steps: steps.iter().map(label).collect(),
        edges: steps
            .iter()
            .flat_map(|s| s.after.iter().map(move |b| (b, s)))
            .map(|(b, s)| format!("{} -> {}", by_id(b), label(s)))
            .collect(),
    }
}

fn stopped(o: &mut ObservedCluster, n: &str, state: &str) {
    let x = o.nodes.get_mut(n).unwrap();
    x.running = false;
    x.reachable = false;
    x.control = Some(ControlData {
        system_identifier: "7300000000000000001".into(),
        cluster_state: state.into(),
        latest_checkpoint: Lsn(0x3000028),
        latest_checkpoint_redo: Lsn(0x3000028),
        checkpoint_timeline: 1,
        min_recovery_end: Lsn(0),
        min_recovery_end_timeline: 0,
        wal_log_hints: true,
        data_checksums: false,
        wal_segment_size: 16 << 20,
    });
}

#[test]
fn transforms_are_named_and_ordered() {
    let names: Vec<&str> = TRANSFORMS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.first(), Some(&"hooks_before"));
    assert_eq!(names.last(), Some(&"hooks_after"));
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("settings_rolling") < pos("promotion"));
    assert!(pos("promotion") < pos("standbys"));
    assert!(pos("standbys") < pos("synchronous_set"));
    assert!(pos("synchronous_set") < pos("retire"));
    assert!(pos("standbys") < pos("logical_slots"));
}

#[test]
fn start_stopped_primary_alone() {
    let d = desired3();
    let mut o = healthy(&d);
    stopped(&mut o, "n1", "shut down");
    assert_eq!(
        alone(&d, &o, start_stopped_primary),
        drawn(&["start n1"], &[])
    );
    assert!(alone(&d, &healthy(&d), start_stopped_primary).is_empty());
}

#[test]
fn hba_managed_block_alone() {
    let mut d = desired3();
    d.hba.push(crate::config::HbaRule {
        kind: "host".into(),
        database: "all".into(),
        user: "app".into(),
        address: Some("10.0.0.0/8".into()),
        method: "scram-sha-256".into(),
        allow_trust: false,
    });
    let o = healthy(&desired3());
    // Each node's file, then its reload; the nodes independent of one another.
    assert_eq!(
        alone(&d, &o, hba_managed_block),
        drawn(
            &[
                "write_hba n1",
                "reload n1",
                "write_hba n2",
                "reload n2",
                "write_hba n3",
                "reload n3"
            ],
            &[
                "write_hba n1 -> reload n1",
                "write_hba n2 -> reload n2",
                "write_hba n3 -> reload n3"
            ]
        )
    );
}

#[test]
fn settings_rolling_alone() {
    let mut d = desired3();
    for n in d.nodes.values_mut() {
        n.settings.insert("max_wal_senders".into(), "20".into());
    }
    let o = healthy(&desired3());
    // An increase of max_wal_senders: the standbys first, one node at a time (the next node's
    // change waits for the previous restart), the primary last.
    assert_eq!(
        alone(&d, &o, settings_rolling),
        drawn(
            &[
                "alter_system n2",
                "restart n2",
                "alter_system n3",
                "restart n3",
                "alter_system n1",
                "restart n1"
            ],
            &[
                "alter_system n2 -> restart n2",
                "alter_system n3 -> restart n3",
                "alter_system n1 -> restart n1",
                "restart n2 -> alter_system n3",
                "restart n3 -> alter_system n1",
            ]
        )
    );
}

#[test]
fn promotion_alone() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let o = healthy(&desired3());
    // The new primary's slots, its catch-up, then the old primary's stop, the wait for its
    // shutdown checkpoint and the promotion, in a chain.
    assert_eq!(
        alone(&d, &o, promotion),
        drawn(
            &[
                "create_slot n2:n1",
                "create_slot n2:n3",
                "catch_up n2",
                "stop n1",
                "wait_replay n2",
                "promote n2"
            ],
            &[
                "create_slot n2:n1 -> create_slot n2:n3",
                "create_slot n2:n3 -> catch_up n2",
                "catch_up n2 -> stop n1",
                "stop n1 -> wait_replay n2",
                "wait_replay n2 -> promote n2",
            ]
        )
    );
}

#[test]
fn replication_role_alone() {
    let d = desired3();
    let mut o = healthy(&d);
    *o.nodes.get_mut("n3").unwrap() = ObservedNode {
        host_reachable: true,
        ..Default::default()
    };
    assert_eq!(
        alone(&d, &o, replication_role),
        drawn(&["create_role n1"], &[])
    );
    assert!(alone(&d, &healthy(&d), replication_role).is_empty());
}

#[test]
fn standbys_alone_walks_upstream_first() {
    let mut d = desired3();
    d.nodes.get_mut("n3").unwrap().role = DesiredRole::Standby {
        upstream: "n2".into(),
    };
    let mut o = healthy(&desired3());
    for n in ["n2", "n3"] {
        *o.nodes.get_mut(n).unwrap() = ObservedNode {
            host_reachable: true,
            ..Default::default()
        };
    }
    let g = alone(&d, &o, standbys);
    // n3's clone comes from n2 once n2 runs: an edge of the DAG, not an order of insertion.
    for e in ["clone n2 -> configure_standby n2", "start n2 -> clone n3"] {
        assert!(g.edges.contains(e), "{e} missing: {g:#?}");
    }
    assert!(
        g.steps.contains("clone n3") && g.steps.contains("start n3"),
        "{g:#?}"
    );
}

#[test]
fn synchronous_set_alone() {
    let mut d = desired3();
    d.replication.synchronous = Some(SyncSpec {
        mode: SyncMode::Priority,
        count: 1,
        standbys: vec!["n2".into()],
    });
    let o = healthy(&desired3());
    assert_eq!(
        alone(&d, &o, synchronous_set),
        drawn(
            &["alter_system n1", "reload n1"],
            &["alter_system n1 -> reload n1"]
        )
    );
}

#[test]
fn retire_alone() {
    let mut d = desired3();
    let o = healthy(&d);
    d.nodes.get_mut("n3").unwrap().role = DesiredRole::Absent;
    assert_eq!(alone(&d, &o, retire), drawn(&["stop n3"], &[]));
}

#[test]
fn slot_cleanup_alone_keeps_slots_of_down_standbys() {
    let d = desired3();
    let mut o = healthy(&d);
    let n1 = o.nodes.get_mut("n1").unwrap();
    n1.slots.push("gone".into());
    let n3 = o.nodes.get_mut("n3").unwrap();
    n3.running = false;
    n3.reachable = false;
    n3.host_reachable = false;
    assert_eq!(
        alone(&d, &o, slot_cleanup),
        drawn(&["drop_slot n1:gone"], &[])
    );
}
