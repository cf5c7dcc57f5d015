//! Planning failover slots against hand-built PostgreSQL 18 clusters.

use super::*;
use crate::config::LogicalSlotSpec;
use crate::observe::fixtures::*;
use crate::observe::{LogicalSlotFacts, ObservedSlot};
use crate::plan::{build, PlanOptions, Step};

fn with_slot(mut d: Desired) -> Desired {
    d.logical_slots = vec![LogicalSlotSpec {
        name: "orders_sub".into(),
        plugin: "pgoutput".into(),
        database: "shop".into(),
        failover: true,
    }];
    d
}

fn logical(synced: bool, temporary: bool) -> ObservedSlot {
    ObservedSlot {
        name: "orders_sub".into(),
        slot_type: "logical".into(),
        active: !synced,
        restart_lsn: None,
        wal_retained_bytes: None,
        wal_status: None,
        safe_wal_size: None,
        logical: Some(LogicalSlotFacts {
            plugin: "pgoutput".into(),
            database: "shop".into(),
            temporary,
            failover: Some(true),
            synced: Some(synced),
            conflicting: Some(false),
            invalidation_reason: None,
        }),
    }
}

/// A healthy PostgreSQL 18 cluster that matches `d`: settings, the primary's slot, and
/// persistent synced copies on the standbys that may take over.
fn healthy18(d: &Desired) -> ObservedCluster {
    let mut o = healthy(d);
    let standbys = d.failover_standbys();
    for (name, x) in o.nodes.iter_mut() {
        x.version = Some(180001);
        for (k, v, _) in d.failover_slot_settings(name) {
            x.settings.insert(k.to_string(), setting(&v, "sighup"));
        }
        if name == &d.primary().name {
            x.replication_slots.push(logical(false, false));
        } else if standbys.contains(&name.as_str()) {
            x.replication_slots.push(logical(true, false));
        }
        x.slots = x.replication_slots.iter().map(|s| s.name.clone()).collect();
    }
    o
}

fn kinds(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| format!("{} {} {}", s.action.kind(), s.node, s.description))
        .collect()
}

fn find<'a>(steps: &'a [Step], kind: &str, node: &str) -> &'a Step {
    steps
        .iter()
        .find(|s| s.action.kind() == kind && s.node == node)
        .unwrap_or_else(|| panic!("no {kind} on {node}: {:#?}", kinds(steps)))
}

/// `a` is a (transitive) dependency of `b`.
fn before(steps: &[Step], a: &Step, b: &Step) -> bool {
    let mut stack = vec![b.id];
    while let Some(x) = stack.pop() {
        for &d in &steps[x as usize - 1].after {
            if d == a.id {
                return true;
            }
            stack.push(d);
        }
    }
    false
}

fn setting_step<'a>(steps: &'a [Step], node: &str) -> &'a Step {
    steps
        .iter()
        .find(|s| {
            s.node == node
                && matches!(&s.action, Action::AlterSystem(p) if p.set.contains_key(SLOT_LIST_SETTING))
        })
        .unwrap_or_else(|| panic!("no {SLOT_LIST_SETTING} on {node}: {:#?}", kinds(steps)))
}

#[test]
fn a_matching_cluster_needs_nothing() {
    let d = with_slot(desired3());
    let p = build(&d, &healthy18(&d), &PlanOptions::default()).unwrap();
    assert!(p.steps.is_empty(), "{:#?}", kinds(&p.steps));
}

#[test]
fn the_primary_names_the_slots_of_its_direct_standbys_only() {
    let mut d = with_slot(desired3());
    d.nodes.get_mut("n3").unwrap().role = DesiredRole::Standby {
        upstream: "n2".into(),
    };
    let list = |n: &str| {
        d.failover_slot_settings(n)
            .into_iter()
            .find(|(k, ..)| *k == SLOT_LIST_SETTING)
            .unwrap()
            .1
    };
    assert_eq!(list("n1"), "n2");
    assert_eq!(list("n2"), "");
    assert!(d
        .failover_slot_settings("n3")
        .iter()
        .all(|(k, ..)| *k == SLOT_LIST_SETTING));
}

#[test]
fn a_missing_slot_is_created_with_failover_and_the_list_is_set() {
    let d = with_slot(desired3());
    let mut o = healthy18(&d);
    let p1 = o.nodes.get_mut("n1").unwrap();
    p1.replication_slots.clear();
    p1.slots.clear();
    p1.settings
        .insert(SLOT_LIST_SETTING.into(), setting("", "sighup"));
    let p = build(&d, &o, &PlanOptions::default()).unwrap();
    let create = find(&p.steps, "create_logical_slot", "n1");
    assert!(
        matches!(&create.action, Action::CreateLogicalSlot(c) if c.failover && c.database == "shop")
    );
    let set = setting_step(&p.steps, "n1");
    assert!(matches!(&set.action, Action::AlterSystem(a) if a.set[SLOT_LIST_SETTING] == "n2,n3"));
    let drift = crate::diff::drift::drift(&d, &o);
    assert!(drift
        .items
        .iter()
        .any(|i| i.kind == crate::diff::drift::DriftKind::LogicalSlot));
}

/// The heart of it: after the switchover the new primary's list names its new standbys' slots
/// (set only once they exist on it), the old primary's list is cleared and its own copy of the
/// slot dropped, and the candidate's copies are persistent before the old primary stops.
#[test]
fn a_switchover_moves_the_slot_list_to_the_new_primary() {
    let mut d = with_slot(desired3());
    let o = healthy18(&d);
    set_primary(&mut d, "n2");
    let p = build(&d, &o, &PlanOptions::default()).unwrap();
    let s = &p.steps;
    let wait = find(s, "sync_slots", "n2");
    let stop = find(s, "stop", "n1");
    assert!(before(s, wait, stop), "{:#?}", kinds(s));
    let new_list = setting_step(s, "n2");
    assert!(
        matches!(&new_list.action, Action::AlterSystem(a) if a.set[SLOT_LIST_SETTING] == "n1,n3")
    );
    // Set before the old primary stops: no moment after the promotion without it.
    assert!(before(s, new_list, stop), "{:#?}", kinds(s));
    for slot in ["n1", "n3"] {
        let made = s.iter().find(|x| {
            x.node == "n2" && matches!(&x.action, Action::CreateSlot(c) if c.slot == slot)
        });
        if let Some(made) = made {
            assert!(before(s, made, new_list), "slot {slot} after the list");
        }
    }
    let old_list = setting_step(s, "n1");
    assert!(
        matches!(&old_list.action, Action::AlterSystem(a) if a.set[SLOT_LIST_SETTING].is_empty())
    );
    let drop = s
        .iter()
        .find(|x| x.node == "n1" && matches!(&x.action, Action::SyncSlots(p) if !p.wait_persistent))
        .unwrap_or_else(|| panic!("old primary's copy kept: {:#?}", kinds(s)));
    let n1_start = s
        .iter()
        .filter(|x| x.node == "n1")
        .position(|x| x.id == drop.id)
        .unwrap();
    assert!(n1_start > 0);
    assert!(
        p.summary.cannot_fix.is_empty(),
        "{:?}",
        p.summary.cannot_fix
    );
}

#[test]
fn failover_slots_on_postgresql_16_are_refused_naming_the_version() {
    let d = with_slot(desired3());
    let mut o = healthy18(&d);
    o.nodes.get_mut("n3").unwrap().version = Some(160002);
    let e = build(&d, &o, &PlanOptions::default()).unwrap_err();
    assert_eq!(
        e,
        PlanError::FailoverSlotsNeed17 {
            node: "n3".into(),
            version: "16.2".into()
        }
    );
    assert!(e.to_string().contains("PostgreSQL 16.2"), "{e}");
}

#[test]
fn a_failover_to_a_temporary_copy_is_refused() {
    let mut d = with_slot(desired3());
    let mut o = healthy18(&d);
    let n1 = o.nodes.get_mut("n1").unwrap();
    n1.reachable = false;
    n1.running = false;
    n1.host_reachable = false;
    n1.unreachable_reason = Some("connection refused".into());
    let n2 = o.nodes.get_mut("n2").unwrap();
    n2.replication_slots.retain(|s| s.logical.is_none());
    n2.replication_slots.push(logical(true, true));
    set_primary(&mut d, "n2");
    let opts = PlanOptions {
        allow_failover: true,
        assume_down: vec![],
        accept_data_loss: false,
    };
    let e = build(&d, &o, &opts).unwrap_err();
    assert!(
        matches!(&e, PlanError::SlotsNotSynced { candidate, slots } if candidate == "n2" && slots.contains("temporary")),
        "{e}"
    );
    // With a persistent copy the failover is planned.
    let n2 = o.nodes.get_mut("n2").unwrap();
    n2.replication_slots.retain(|s| s.logical.is_none());
    n2.replication_slots.push(logical(true, false));
    let p = build(&d, &o, &opts).unwrap();
    let promote = find(&p.steps, "promote", "n2");
    assert!(promote.id > 0);
}
