//! Drift ⊆ plan (SPEC §4): every drift finding either has steps in the plan that fix it, or the
//! plan says that it cannot fix it and why. A finding is fixed by a step of one of the kinds
//! that can change what the finding is about, on a node the finding concerns.

use crate::config::Desired;
use crate::diff::address::Address;
use crate::diff::drift::{DriftItem, DriftKind, DriftReport};

use super::model::{CannotFix, Step};

/// The step kinds that fix a finding of kind `k` when they act on the finding's own node, and
/// when they act on a node related to it ([`related`]).
fn fixes(k: DriftKind) -> (&'static [&'static str], &'static [&'static str]) {
    const START: [&str; 3] = ["start", "restart", "promote"];
    match k {
        DriftKind::NodeDown => (&["start", "restart", "clone", "rewind", "promote"], &[]),
        DriftKind::Role => (
            &["promote", "clone", "rewind", "configure_standby", "fence"],
            &[],
        ),
        DriftKind::WrongUpstream => (&["configure_standby", "clone", "rewind"], &[]),
        DriftKind::NotStreaming => (
            &["start", "restart", "configure_standby", "clone", "rewind"],
            &START,
        ),
        DriftKind::SettingChanged => (&["alter_system", "clone", "rewind"], &[]),
        DriftKind::PendingRestart => (&["restart", "clone", "rewind"], &[]),
        DriftKind::HbaEdited => (&["write_hba", "clone"], &[]),
        DriftKind::MissingSlot => (&["create_slot"], &["clone"]),
        // Dropped, replaced with its holder's directory, or used again by its standby.
        DriftKind::OrphanSlot => (
            &["drop_slot", "clone", "rewind"],
            &["start", "configure_standby", "clone", "rewind"],
        ),
        DriftKind::SyncSet => (&["alter_system"], &[]),
        DriftKind::RetiredRunning => (&["stop", "fence"], &[]),
        DriftKind::SplitBrain
        | DriftKind::Diverged
        | DriftKind::ForeignSystem
        | DriftKind::SlotLost => (&["clone"], &[]),
        DriftKind::SlotUnreserved | DriftKind::PoolerDown | DriftKind::MixedMajors => (&[], &[]),
        // A new WAL receiver (re-pointed, restarted, rebuilt) or no receiver at all (promoted).
        DriftKind::NotReceiving => (
            &["promote", "configure_standby", "restart", "clone", "rewind"],
            &START,
        ),
        // Its blockers cancelled before a promotion.
        DriftKind::ReplayBlocked => (&["catch_up", "clone", "rewind"], &[]),
        DriftKind::PoolerRoute => (&["route_pooler"], &[]),
        DriftKind::PoolerPaused => (&["resume_pooler"], &[]),
        DriftKind::LogicalSlot => (&["create_logical_slot", "sync_slots"], &[]),
        DriftKind::Archive => (
            &["create_stanza", "check_archive", "alter_system", "clone"],
            &[],
        ),
    }
}

/// The other node a finding is about: the standby a slot address names, or the declared
/// upstream of a standby that does not stream (or streams from another node).
fn related<'a>(i: &'a DriftItem, d: &'a Desired) -> Option<&'a str> {
    if let Address::Slot { slot, .. } = &i.address {
        return Some(slot);
    }
    match i.kind {
        DriftKind::NotStreaming | DriftKind::WrongUpstream | DriftKind::NotReceiving => {
            d.upstream_of(&i.node).map(|u| u.name.as_str())
        }
        _ => None,
    }
}

/// The nodes a finding concerns: its own and the related one.
fn concerns<'a>(i: &'a DriftItem, d: &'a Desired) -> Vec<&'a str> {
    std::iter::once(i.node.as_str())
        .chain(related(i, d))
        .collect()
}

fn covered(i: &DriftItem, steps: &[Step], d: &Desired) -> bool {
    let (own, other) = fixes(i.kind);
    let rel = related(i, d);
    steps.iter().any(|s| {
        let k = s.action.kind();
        (s.node == i.node && own.contains(&k))
            || (Some(s.node.as_str()) == rel && other.contains(&k))
    })
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
        DriftKind::NotReceiving => {
            "pgtopo does not repair the network or a stuck WAL receiver: find out why the standby hears nothing from its upstream".into()
        }
        DriftKind::ReplayBlocked => {
            "sessions on the standby block its replay: end them, or PostgreSQL cancels them after max_standby_streaming_delay (a switchover with switchover.cancel_conflicting_queries: true cancels them)".into()
        }
        DriftKind::OrphanSlot => {
            "the slot of a declared standby that is down is kept until it is back (SPEC §4)".into()
        }
        DriftKind::PoolerDown => "pgtopo does not start poolers: start pgbouncer (or fix its address in topology.yaml)".into(),
        DriftKind::MixedMajors => {
            "a standby streams only from its own major: declare the newer major's bin_dir to upgrade the cluster, or rebuild the node on the cluster's major".into()
        }
        DriftKind::Archive => {
            "pgtopo configures the archive but does not repair it: read the message (pgBackRest's own, or the server log's for archive_command) and fix the tool, its configuration or the repository".into()
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
            concerns: concerns(i, d).into_iter().map(str::to_string).collect(),
        })
        .collect()
}
