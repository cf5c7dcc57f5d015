//! Logical slots: what differs between the declared `logical_slots` and the slots the servers
//! hold. Pure; the settings failover slots need are among [`super::wanted_settings`].
//!
//! Findings: a declared slot missing on the primary, held with another plugin or database, or
//! without failover when it is declared with it; on a standby, a copy of a declared slot that its
//! slot-sync worker did not make (an old primary's own slot after it rejoined: the worker cannot
//! replace it while it exists).

use super::address::Address;
use crate::config::{Desired, DesiredRole, LogicalSlotSpec};
use crate::observe::{ObservedCluster, ObservedSlot};

use super::change::{Change, ChangeAction};
use super::finding::{DriftItem, DriftKind};
use super::observed;

/// What is wrong with a declared slot on the primary, if anything.
pub fn primary_problem(spec: &LogicalSlotSpec, seen: Option<&ObservedSlot>) -> Option<String> {
    let Some(s) = seen else {
        return Some(format!("logical slot {} is missing", spec.name));
    };
    let Some(l) = &s.logical else {
        return Some(format!("slot {} is physical, declared logical", spec.name));
    };
    if l.plugin != spec.plugin || l.database != spec.database {
        return Some(format!(
            "slot {} decodes {} with {}, declared {} with {} (drop it by hand to let pgtopo \
             create it)",
            spec.name, l.database, l.plugin, spec.database, spec.plugin
        ));
    }
    if spec.failover && l.failover != Some(true) {
        return Some(format!(
            "slot {} is not a failover slot (drop it by hand to let pgtopo create it with \
             failover)",
            spec.name
        ));
    }
    None
}

/// Declared slots that a standby holds as its own copy (not synced): they must go.
pub fn unsynced_copies(d: &Desired, o: &ObservedCluster, name: &str) -> Vec<String> {
    let x = observed(o, name);
    d.logical_slots
        .iter()
        .filter(|spec| {
            x.replication_slots.iter().any(|s| {
                s.name == spec.name && s.logical.as_ref().is_some_and(|l| l.synced != Some(true))
            })
        })
        .map(|spec| spec.name.clone())
        .collect()
}

/// Declared failover slots of which `name` holds no persistent synced copy, each with what it
/// holds instead.
pub fn not_persistent(d: &Desired, o: &ObservedCluster, name: &str) -> Vec<String> {
    let x = observed(o, name);
    d.logical_slots
        .iter()
        .filter(|spec| spec.failover)
        .filter_map(|spec| {
            let s = x.replication_slots.iter().find(|s| s.name == spec.name);
            match s.and_then(|s| s.logical.as_ref()) {
                Some(l) if l.persistent_synced() => None,
                Some(l) if l.synced == Some(true) => {
                    Some(format!("{} (synced, still temporary)", spec.name))
                }
                Some(_) => Some(format!("{} (its own copy, not synced)", spec.name)),
                None => Some(format!("{} (no copy)", spec.name)),
            }
        })
        .collect()
}

/// Drift findings about logical slots on reachable, running nodes.
pub fn drift_items(d: &Desired, o: &ObservedCluster) -> Vec<DriftItem> {
    let mut items = Vec::new();
    for n in d.present() {
        let x = observed(o, &n.name);
        if !(x.reachable && x.running) {
            continue;
        }
        if n.role == DesiredRole::Primary {
            for spec in &d.logical_slots {
                let seen = x.replication_slots.iter().find(|s| s.name == spec.name);
                if let Some(detail) = primary_problem(spec, seen) {
                    items.push(item(&n.name, &spec.name, format!("{detail} on {}", n.name)));
                }
            }
        } else {
            for slot in unsynced_copies(d, o, &n.name) {
                let detail = format!(
                    "{} holds its own copy of logical slot {slot}: the slot-sync worker cannot \
                     replace it",
                    n.name
                );
                items.push(item(&n.name, &slot, detail));
            }
        }
    }
    items
}

/// The change list's entries: a declared slot to create on the primary (`+`), a standby's own
/// copy to drop (`-`).
pub fn changes(d: &Desired, o: &ObservedCluster) -> Vec<Change> {
    let mut out = Vec::new();
    for n in d.present() {
        let x = observed(o, &n.name);
        if !x.reachable {
            continue;
        }
        if n.role == DesiredRole::Primary {
            for spec in &d.logical_slots {
                if x.replication_slots.iter().any(|s| s.name == spec.name) {
                    continue;
                }
                out.push(Change {
                    address: Address::LogicalSlot {
                        node: n.name.clone(),
                        slot: spec.name.clone(),
                    },
                    action: ChangeAction::Add,
                    attributes: vec![],
                    reason: format!(
                        "declared ({}, database {}{})",
                        spec.plugin,
                        spec.database,
                        if spec.failover { ", failover" } else { "" }
                    ),
                });
            }
        } else {
            for slot in unsynced_copies(d, o, &n.name) {
                out.push(Change {
                    address: Address::LogicalSlot {
                        node: n.name.clone(),
                        slot: slot.to_string(),
                    },
                    action: ChangeAction::Remove,
                    attributes: vec![],
                    reason: format!(
                        "{}'s own copy: its slot-sync worker keeps the primary's",
                        n.name
                    ),
                });
            }
        }
    }
    out
}

fn item(node: &str, slot: &str, detail: String) -> DriftItem {
    DriftItem {
        kind: DriftKind::LogicalSlot,
        node: node.to_string(),
        address: Address::LogicalSlot {
            node: node.to_string(),
            slot: slot.to_string(),
        },
        detail,
    }
}
