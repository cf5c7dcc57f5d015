//! Failover-safe logical slots in the plan (PostgreSQL 17+).
//!
//! - Refusals ([`refusal`]): failover slots on a server older than 17 (named, with its version);
//!   a failover or a finished switchover to a candidate without persistent synced copies of the
//!   failover slots (nothing can sync them any more once the primary is gone).
//! - Before a switchover stops the old primary, [`before_promotion`] waits on the candidate until
//!   its synced copies are persistent (`synced AND NOT temporary`), at most `switchover.timeout`:
//!   a temporary copy would be lost by the promotion and the subscriber's slot with it.
//! - [`logical_slots`], the last transform: the declared slots missing on the primary are created
//!   with failover once it accepts writes; a standby's own (unsynced) copy of a declared slot is
//!   dropped once it streams, so that its slot-sync worker can take over (an old primary after a
//!   switchover); `synchronized_standby_slots` is set on each node after every slot it names
//!   exists there (PostgreSQL checks that when it is set) — on the new primary after its new
//!   standbys' slots, on the old one back to ''; standbys whose primary_conninfo lacks the
//!   slot-sync `dbname` are re-configured.

use crate::config::logical::FAILOVER_SLOTS_MIN_VERSION;
use crate::config::{Desired, DesiredRole};
use crate::diff::{self, logical, observed};
use crate::observe::ObservedCluster;

use super::draw::configure;
use super::Ctx;
use crate::plan::analysis::{Analysis, Fate, PromotionKind, Rejoin};
use crate::plan::error::PlanError;
use crate::plan::graph::Idx;
use crate::plan::model::{Action, AlterSystemParams, ConfigApply, ReloadParams};
pub use crate::plan::model::{CreateLogicalSlotParams, SyncSlotsParams};

/// The setting whose value names slots, so it is set only after they exist.
pub const SLOT_LIST_SETTING: &str = "synchronized_standby_slots";

/// Why no plan can be made for these failover slots, if so.
pub fn refusal(d: &Desired, o: &ObservedCluster, a: &Analysis) -> Option<PlanError> {
    if !d.has_failover_slots() {
        return None;
    }
    let old = d.present().find_map(|n| {
        let v = observed(o, &n.name).version?;
        ((v as i32) < FAILOVER_SLOTS_MIN_VERSION).then(|| (n.name.clone(), v))
    });
    if let Some((node, version)) = old {
        return Some(PlanError::FailoverSlotsNeed17 {
            node,
            version: format!("{}.{}", version / 10000, version % 10000),
        });
    }
    let p = a.promotion.as_ref()?;
    if matches!(p.kind, PromotionKind::Switchover) {
        return None;
    }
    let missing = logical::not_persistent(d, o, &p.candidate);
    (!missing.is_empty()).then(|| PlanError::SlotsNotSynced {
        candidate: p.candidate.clone(),
        slots: missing.join(", "),
    })
}

/// Before the old primary stops (or is fenced): the candidate's `synchronized_standby_slots`
/// when every slot it names exists on it by then (no window after the promotion in which a
/// subscriber could get ahead of the new standbys), then the wait until its synced copies are
/// persistent.
pub fn before_promotion(c: &mut Ctx, cand: &str, deps: &[Idx]) -> Option<Idx> {
    if !c.eff.has_failover_slots() {
        return None;
    }
    let mut deps = deps.to_vec();
    if let Some(want) = list_diff(c, cand) {
        let named_exist = want.split(',').filter(|s| !s.is_empty()).all(|s| {
            let key = (cand.to_string(), s.to_string());
            c.slot_index.contains(&key) || c.drawn.slots_made.contains_key(&key)
        });
        if named_exist {
            let made: Vec<Idx> = c
                .drawn
                .slots_made
                .iter()
                .filter(|((h, _), _)| h == cand)
                .map(|(_, i)| *i)
                .collect();
            deps.push(set_list(c, cand, want, &made));
        }
    }
    let slots: Vec<String> = failover_slot_names(c.eff);
    let desc = format!(
        "synced copies of {} persistent on {cand} before it is promoted",
        slots.join(", ")
    );
    Some(c.dag.add(
        cand,
        Action::SyncSlots(SyncSlotsParams {
            slots,
            wait_persistent: true,
            timeout_ms: c.eff.switchover.timeout.0.as_millis() as u64,
        }),
        false,
        desc,
        &deps,
    ))
}

fn failover_slot_names(d: &Desired) -> Vec<String> {
    d.logical_slots
        .iter()
        .filter(|s| s.failover)
        .map(|s| s.name.clone())
        .collect()
}

/// The transform: see the module doc.
pub fn logical_slots(c: &mut Ctx) {
    if c.eff.logical_slots.is_empty() {
        return;
    }
    create_missing(c);
    let names: Vec<String> = c.eff.present().map(|n| n.name.clone()).collect();
    for x in &names {
        if !runs_at_end(c, x) {
            continue;
        }
        drop_unsynced(c, x);
        slot_list_setting(c, x);
        conninfo_dbname(c, x);
    }
}

/// Whether `x` runs once the plan's own steps on it are done.
fn runs_at_end(c: &Ctx, x: &str) -> bool {
    let xo = observed(c.o, x);
    let started = c.anchors.streaming.contains_key(x)
        || (x == c.primary_name && c.anchors.primary_ready.is_some());
    started || (xo.reachable && xo.running && !c.drawn.stopped.contains(x))
}

fn create_missing(c: &mut Ctx) {
    let p = c.primary_name.to_string();
    let po = observed(c.o, &p);
    for spec in c.eff.logical_slots.clone() {
        let seen = po.replication_slots.iter().any(|s| s.name == spec.name);
        if seen || !runs_at_end(c, &p) {
            continue;
        }
        let failover = if spec.failover { " with failover" } else { "" };
        let desc = format!(
            "logical slot {} ({}, database {}){failover}",
            spec.name, spec.plugin, spec.database
        );
        let deps: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
        c.dag.add(
            &p,
            Action::CreateLogicalSlot(CreateLogicalSlotParams {
                slot: spec.name.clone(),
                plugin: spec.plugin.clone(),
                database: spec.database.clone(),
                failover: spec.failover,
            }),
            false,
            desc,
            &deps,
        );
    }
}

fn drop_unsynced(c: &mut Ctx, x: &str) {
    if !matches!(c.eff.nodes[x].role, DesiredRole::Standby { .. }) {
        return;
    }
    let copies = logical::unsynced_copies(c.eff, c.o, x);
    if copies.is_empty() {
        return;
    }
    let desc = format!(
        "drop {x}'s own copy of {}: its slot-sync worker keeps the primary's",
        copies.join(", ")
    );
    let deps: Vec<Idx> = c.anchors.streaming.get(x).copied().into_iter().collect();
    c.dag.add(
        x,
        Action::SyncSlots(SyncSlotsParams {
            slots: copies,
            wait_persistent: false,
            timeout_ms: c.eff.switchover.timeout.0.as_millis() as u64,
        }),
        false,
        desc,
        &deps,
    );
}

/// `synchronized_standby_slots` on `x` when it differs, after the slots it names exist.
fn slot_list_setting(c: &mut Ctx, x: &str) {
    if !matches!(
        c.fate(x),
        Fate::Keep | Fate::Promote | Fate::Repoint | Fate::Rejoin(Rejoin::Follow { .. })
    ) {
        // A copied node gets its own settings with the copy (own_settings_after_copy).
        return;
    }
    let Some(want) = list_diff(c, x) else {
        return;
    };
    let set_already = c.dag.g.node_weights().any(|s| {
        s.node == x
            && matches!(&s.action, Action::AlterSystem(a) if a.set.contains_key(SLOT_LIST_SETTING))
    });
    if set_already {
        return;
    }
    let mut deps: Vec<Idx> = c
        .eff
        .failover_standbys()
        .iter()
        .filter_map(|s| c.anchors.streaming.get(*s).copied())
        .collect();
    if x == c.primary_name {
        deps.extend(c.anchors.primary_ready);
    }
    deps.extend(c.anchors.streaming.get(x).copied());
    set_list(c, x, want, &deps);
}

/// The value `x` should get, when it differs from what it runs with.
fn list_diff(c: &Ctx, x: &str) -> Option<String> {
    diff::setting_diffs(c.eff, c.o, x)
        .into_iter()
        .find(|s| s.name == SLOT_LIST_SETTING)
        .map(|s| s.after)
}

/// ALTER SYSTEM SET synchronized_standby_slots, then reload; returns the reload.
fn set_list(c: &mut Ctx, x: &str, value: String, deps: &[Idx]) -> Idx {
    let desc = format!("{SLOT_LIST_SETTING} = '{value}'");
    c.dag.add(
        x,
        Action::AlterSystem(AlterSystemParams {
            set: [(SLOT_LIST_SETTING.to_string(), value)].into(),
            reset: vec![],
        }),
        false,
        desc,
        deps,
    );
    c.dag.add(
        x,
        Action::Reload(ReloadParams {
            reason: format!("{SLOT_LIST_SETTING} changed"),
        }),
        false,
        format!("{SLOT_LIST_SETTING} changed"),
        &[],
    )
}

/// A standby whose primary_conninfo lacks the slot-sync dbname, and that the plan does not
/// configure anyway, is configured again (reload).
fn conninfo_dbname(c: &mut Ctx, x: &str) {
    let DesiredRole::Standby { upstream } = c.eff.nodes[x].role.clone() else {
        return;
    };
    let want = c.eff.slot_sync_dbname();
    let have = observed(c.o, x)
        .primary_conninfo
        .as_ref()
        .and_then(|ci| ci.dbname.clone());
    if want.is_none() || have == want {
        return;
    }
    let configured =
        c.dag.g.node_weights().any(|s| {
            s.node == x && matches!(s.action, Action::ConfigureStandby(_) | Action::Clone(_))
        });
    if !configured {
        configure(c, x, &upstream, ConfigApply::Reload, &[]);
    }
}

/// Whether the settings transform leaves `key` to [`logical_slots`].
pub fn ordered_apart(key: &str) -> bool {
    key == SLOT_LIST_SETTING
}

#[cfg(test)]
mod tests;
