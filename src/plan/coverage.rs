//! Drift ⊆ plan (SPEC §4): every drift finding either has steps in the plan that fix it, or the
//! plan says that it cannot fix it and why. A finding is fixed by a step of one of the kinds
//! that can change what the finding is about, on a node the finding concerns.

use crate::config::Desired;
use crate::diff::drift::{DriftItem, DriftKind, DriftReport};

use super::model::{CannotFix, Step};

/// The step kinds that can fix a finding of kind `k`.
fn fixes(k: DriftKind) -> &'static [&'static str] {
    const REJOIN_OR_UPSTREAM: [&str; 6] = [
        "clone",
        "rewind",
        "configure_standby",
        "start",
        "restart",
        "promote",
    ];
    match k {
        DriftKind::NodeDown => &["start", "restart", "clone", "rewind", "promote"],
        DriftKind::Role => &["promote", "clone", "rewind", "configure_standby", "fence"],
        DriftKind::WrongUpstream | DriftKind::NotStreaming => &REJOIN_OR_UPSTREAM,
        DriftKind::SettingChanged => &["alter_system", "clone", "rewind"],
        DriftKind::PendingRestart => &["restart", "clone", "rewind"],
        DriftKind::HbaEdited => &["write_hba", "clone"],
        DriftKind::MissingSlot => &["create_slot", "clone"],
        // Dropped, replaced with its holder's directory, or used again by its standby.
        DriftKind::OrphanSlot => &["drop_slot", "clone", "rewind", "start", "configure_standby"],
        DriftKind::SyncSet => &["alter_system"],
        DriftKind::RetiredRunning => &["stop", "fence"],
        DriftKind::SplitBrain
        | DriftKind::Diverged
        | DriftKind::ForeignSystem
        | DriftKind::SlotLost => &["clone"],
        DriftKind::SlotUnreserved => &[],
    }
}

/// The nodes a finding concerns: its node, the standby a slot address names, and for a standby
/// that does not stream, its upstream (which the plan may be starting or promoting).
fn concerns<'a>(i: &'a DriftItem, d: &'a Desired) -> Vec<&'a str> {
    let mut v = vec![i.node.as_str()];
    if let Some(rest) = i.address.strip_prefix("slot.") {
        v.extend(rest.split_once('.').map(|(_, s)| s));
    }
    if matches!(i.kind, DriftKind::NotStreaming | DriftKind::WrongUpstream) {
        v.extend(d.upstream_of(&i.node).map(|u| u.name.as_str()));
    }
    v
}

fn covered(i: &DriftItem, steps: &[Step], d: &Desired) -> bool {
    let nodes = concerns(i, d);
    let kinds = fixes(i.kind);
    steps
        .iter()
        .any(|s| nodes.contains(&s.node.as_str()) && kinds.contains(&s.action.kind()))
}

/// Why the plan cannot fix a finding it has no step for.
fn why_not(i: &DriftItem, d: &Desired, deferred: &dyn Fn(&str) -> Option<String>) -> String {
    if let Some(why) = concerns(i, d).into_iter().find_map(deferred) {
        return format!("unreachable: {why}");
    }
    match i.kind {
        DriftKind::PendingRestart => {
            "pgtopo restarts a node only for settings topology.yaml declares: declare it there, or restart the node".into()
        }
        DriftKind::HbaEdited => "pgtopo edits only its managed block of pg_hba.conf: fix the file by hand".into(),
        DriftKind::SlotUnreserved => {
            "the standby must catch up (or max_slot_wal_keep_size be raised) before the slot is lost".into()
        }
        DriftKind::OrphanSlot => {
            "the slot of a declared standby that is down is kept until it is back (SPEC §4)".into()
        }
        _ => "no step of this plan changes it".into(),
    }
}

/// The findings of `report` that no step of `steps` fixes, with why. `deferred` says why a
/// node cannot be acted on now (unreachable), if it cannot.
pub fn cannot_fix(
    report: &DriftReport,
    d: &Desired,
    steps: &[Step],
    deferred: &dyn Fn(&str) -> Option<String>,
) -> Vec<CannotFix> {
    report
        .items
        .iter()
        .filter(|i| !covered(i, steps, d))
        .map(|i| CannotFix {
            address: i.address.clone(),
            finding: i.detail.clone(),
            why: why_not(i, d, deferred),
        })
        .collect()
}
