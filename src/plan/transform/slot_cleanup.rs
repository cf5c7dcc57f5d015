//! Rule: slots that serve nobody are dropped last.

use std::collections::HashMap;

use crate::config::DesiredRole;
use crate::diff::{self};
use crate::plan::analysis::Fate;
use crate::plan::graph::Idx;
use crate::plan::model::*;
use crate::units::ByteSize;

use super::Ctx;

/// Slot lifecycle: slots that serve nobody any more are dropped last — after the standby that
/// used one streams elsewhere, after a retired node stopped. Slots of declared standbys that are
/// down are kept. Notes state the WAL retained or freed.
pub fn slot_cleanup(c: &mut Ctx) {
    for (holder, ho) in &c.o.nodes {
        let Some(hd) = c.eff.nodes.get(holder) else {
            continue;
        };
        if hd.role == DesiredRole::Absent || !ho.reachable {
            continue;
        }
        let fate = c.fate(holder);
        if matches!(fate, Fate::Deferred { .. }) || fate.replaces_data() {
            continue;
        }
        let infos: HashMap<&str, &crate::observe::ObservedSlot> = ho
            .replication_slots
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        for s in &ho.slots {
            let info = infos.get(s.as_str()).copied();
            let Some(reason) = diff::obsolete_slot_with(c.eff, c.o, holder, s, info) else {
                continue;
            };
            let mut deps: Vec<Idx> = Vec::new();
            deps.extend(c.anchors.streaming.get(s).copied());
            deps.extend(c.anchors.retire_stop.get(s).copied());
            deps.extend(c.anchors.sync_step);
            if holder != c.primary() {
                deps.extend(c.anchors.streaming.get(holder.as_str()).copied());
            }
            c.dag.add(
                holder,
                Action::DropSlot(SlotParams { slot: s.clone() }),
                false,
                format!("slot {s} ({reason})"),
                &deps,
            );
            match info.and_then(|i| i.wal_retained_bytes) {
                Some(b) => c.notes.push(format!(
                    "dropping slot {s} on {holder} frees {} of WAL",
                    ByteSize::human(b)
                )),
                None => c.notes.push(format!(
                    "dropping slot {s} on {holder} frees the WAL it retains"
                )),
            }
        }
    }
    let mut made: Vec<&(String, String)> = c.drawn.slots_made.keys().collect();
    made.sort();
    for (h, s) in made {
        c.notes.push(format!(
            "slot {s} on {h} retains WAL from its creation until {s} streams from it"
        ));
    }
}
