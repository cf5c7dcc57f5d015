//! One assessment per node: what the topology declares, what was observed, and a verdict with
//! its proof. The change list, the planner's fates, drift findings, the status annotations and
//! apply's end-state check all read these verdicts; none of them judges a node's replication
//! health again. Pure.
//!
//! The verdicts that need more than one node's facts are decided here:
//! - **split brain**: a node other than the current primary that accepts (or accepted) writes on
//!   the primary's timeline. pg_rewind cannot repair a fork on one timeline: the node is cloned.
//! - **diverged**: a standby on its upstream's timeline whose WAL differs from the upstream's
//!   (the bytes before its replay position differ), whose WAL goes past the upstream's end, or
//!   whose WAL receiver, not streaming, stays behind its own replay position.
//! - **foreign**: a data directory of another system (system identifier).
//! - **slot lost**: the standby's slot on its upstream is `lost`, or the WAL it needs next is no
//!   longer in the upstream's pg_wal.
//! - **not receiving**: a streaming standby whose WAL receiver has heard nothing from its upstream
//!   for longer than twice its `wal_receiver_status_interval`, while the upstream has WAL it lacks
//!   or has had no reply from it for as long (an idle upstream sends nothing for up to
//!   `wal_receiver_timeout` / 2, but the standby's replies keep flowing).
//! - **replay blocked**: a standby whose startup process waits on a recovery conflict (a lock, a
//!   buffer pin, a snapshot), with the sessions that block it.

use std::collections::BTreeMap;

use crate::config::{Desired, DesiredRole};
use crate::observe::{ObservedCluster, ObservedNode, ReplayConflict, Role};
use crate::units::ByteSize;
use crate::units::Lsn;

use super::{actionable, current_primary, needs_data, observed, observed_role, wal_end};

/// The judgement of one declared node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing about its replication is wrong (its settings and pg_hba are diffed apart).
    Healthy,
    /// Neither SQL nor its host answers: nothing can be done on it now.
    Unreachable { why: String },
    /// No data directory, or an empty one: a new standby.
    NoData,
    /// Its data directory belongs to another system.
    Foreign {
        own: String,
        primary: String,
        primary_id: String,
        running: bool,
    },
    /// It accepts (or accepted) writes on the current primary's timeline.
    SplitBrain {
        primary: String,
        timeline: u32,
        lsn: Option<Lsn>,
        primary_lsn: Option<Lsn>,
        system_identifier: String,
        running: bool,
    },
    /// A standby whose history differs from its upstream's on the same timeline.
    Diverged { upstream: String, why: String },
    /// Its slot on its upstream can no longer serve it, or the WAL it needs is gone there.
    SlotLost { upstream: String, why: String },
    /// A declared standby whose earlier pg_rewind did not finish (it failed or was interrupted):
    /// its data directory cannot be trusted.
    RewindUnfinished,
    /// A streaming standby that has not heard from its upstream for too long.
    NotReceiving { upstream: String, why: String },
    /// Its replay waits on a recovery conflict; `unreplayed`: bytes received but not replayed.
    ReplayBlocked {
        conflict: ReplayConflict,
        unreplayed: Option<u64>,
    },
    /// Anything else that differs (stopped, another upstream, not streaming): the planner's
    /// ordinary fates handle it.
    Other,
    /// `state: absent`.
    Retired,
}

impl Verdict {
    /// Only a fresh clone repairs it (and its old directory is kept).
    pub fn needs_clone(&self) -> bool {
        matches!(
            self,
            Verdict::Foreign { .. }
                | Verdict::SplitBrain { .. }
                | Verdict::Diverged { .. }
                | Verdict::SlotLost { .. }
                | Verdict::RewindUnfinished
        )
    }

    /// Stable name (status JSON): `healthy`, `unreachable`, `no_data`, `foreign_system`,
    /// `split_brain`, `diverged`, `slot_lost`, `rewind_unfinished`, `not_receiving`,
    /// `replay_blocked`, `other`, `retired`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Unreachable { .. } => "unreachable",
            Verdict::NoData => "no_data",
            Verdict::Foreign { .. } => "foreign_system",
            Verdict::SplitBrain { .. } => "split_brain",
            Verdict::Diverged { .. } => "diverged",
            Verdict::SlotLost { .. } => "slot_lost",
            Verdict::RewindUnfinished => "rewind_unfinished",
            Verdict::NotReceiving { .. } => "not_receiving",
            Verdict::ReplayBlocked { .. } => "replay_blocked",
            Verdict::Other => "other",
            Verdict::Retired => "retired",
        }
    }

    /// What the status tree says of it, when it is something only the assessment sees.
    pub fn annotation(&self) -> Option<String> {
        Some(match self {
            Verdict::Foreign {
                own,
                primary,
                primary_id,
                ..
            } => format!("another system (id {own}, {primary} has {primary_id})"),
            Verdict::SplitBrain {
                primary,
                timeline,
                lsn,
                ..
            } => format!(
                "SPLIT BRAIN: a second writer on timeline {timeline} at {} ({primary} is primary)",
                show(*lsn)
            ),
            Verdict::Diverged { why, .. } => format!("DIVERGED: {why}"),
            Verdict::SlotLost { why, .. } => format!("SLOT LOST: {why}"),
            Verdict::RewindUnfinished => {
                "REWIND UNFINISHED: its data directory cannot be trusted".into()
            }
            Verdict::NotReceiving { why, .. } => format!("NOT RECEIVING: {why}"),
            Verdict::ReplayBlocked {
                conflict,
                unreplayed,
            } => format!("REPLAY BLOCKED: {}", blocked_why(conflict, *unreplayed)),
            _ => return None,
        })
    }

    /// One line for people: why the node is cloned, or what is wrong.
    pub fn reason(&self, node: &str) -> Option<String> {
        Some(match self {
            Verdict::Foreign {
                own,
                primary,
                primary_id,
                ..
            } => format!(
                "{node} belongs to another system (system identifier {own}, {primary} has {primary_id})"
            ),
            Verdict::SplitBrain {
                primary,
                timeline,
                lsn,
                primary_lsn,
                system_identifier,
                ..
            } => format!(
                "split brain: {node} (at {}) and {primary} (at {}) both accepted writes on timeline {timeline} of system {system_identifier}; pg_rewind cannot repair a fork on one timeline",
                show(*lsn),
                show(*primary_lsn)
            ),
            Verdict::Diverged { why, .. } => format!("{node} diverged from its upstream: {why}"),
            Verdict::SlotLost { why, .. } => why.clone(),
            Verdict::RewindUnfinished => format!(
                "an earlier pg_rewind of {node} did not finish (it failed or was interrupted): its data directory cannot be trusted"
            ),
            Verdict::NotReceiving { why, .. } => format!("{node} is not receiving: {why}"),
            Verdict::ReplayBlocked {
                conflict,
                unreplayed,
            } => format!("{node}'s {}", blocked_why(conflict, *unreplayed)),
            Verdict::Unreachable { why } => format!("{node} is unreachable ({why})"),
            _ => return None,
        })
    }
}

/// "replay waits on pid 4242 (report, `select … from report`, 37 s): 12 kB not replayed".
fn blocked_why(c: &ReplayConflict, unreplayed: Option<u64>) -> String {
    let on = c.blocked_on();
    let left = unreplayed
        .map(|b| format!(": {} not replayed", ByteSize::human(b)))
        .unwrap_or_default();
    format!("replay waits on {on}{left}")
}

fn show(l: Option<Lsn>) -> String {
    l.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into())
}

/// Every declared node's verdict against the topology `d`.
pub fn assess(d: &Desired, o: &ObservedCluster) -> BTreeMap<String, Verdict> {
    let primary = current_primary(d, o);
    d.nodes
        .values()
        .map(|n| (n.name.clone(), node(d, o, &n.name, primary.as_deref())))
        .collect()
}

/// One node's verdict; `primary` is the node that is primary now ([`current_primary`]).
pub fn node(d: &Desired, o: &ObservedCluster, name: &str, primary: Option<&str>) -> Verdict {
    let Some(dn) = d.nodes.get(name) else {
        return Verdict::Other;
    };
    let x = observed(o, name);
    if dn.role == DesiredRole::Absent {
        return Verdict::Retired;
    }
    if !actionable(&x) {
        return Verdict::Unreachable {
            why: x
                .unreachable_reason
                .clone()
                .unwrap_or_else(|| "no answer".into()),
        };
    }
    if needs_data(&x) {
        return Verdict::NoData;
    }
    // Judged after what only a fresh clone repairs too (another system, a fork, a lost slot),
    // before the rest.
    let unfinished = (matches!(dn.role, DesiredRole::Standby { .. }) && x.rewind_unfinished)
        .then_some(Verdict::RewindUnfinished);
    let Some(p) = primary.filter(|p| *p != name) else {
        return unfinished.unwrap_or(Verdict::Healthy);
    };
    let po = observed(o, p);
    if let Some(v) = foreign(&x, p, &po) {
        return v;
    }
    if let Some(v) = split_brain(&x, p, &po) {
        return v;
    }
    let seen = super::observed_upstream(d, &x);
    // Divergence and lost WAL are facts about the upstream the node follows now (a candidate
    // declared primary is judged as the standby it is now, too).
    if let Some(seen) = seen.clone() {
        let uo = observed(o, &seen);
        if let Some(why) = diverged(&x, &uo, &seen) {
            return Verdict::Diverged {
                upstream: seen,
                why,
            };
        }
        if let Some(why) = slot_lost(d, &x, name, &uo, &seen) {
            return Verdict::SlotLost {
                upstream: seen,
                why,
            };
        }
    }
    let DesiredRole::Standby { upstream } = &dn.role else {
        return stalled(&x, o, name, seen.as_deref()).unwrap_or(Verdict::Other);
    };
    if let Some(v) = unfinished {
        return v;
    }
    if let Some(v) = stalled(&x, o, name, seen.as_deref()) {
        return v;
    }
    if healthy_standby(d, o, name, upstream, &x) {
        Verdict::Healthy
    } else {
        Verdict::Other
    }
}

fn foreign(x: &ObservedNode, p: &str, po: &ObservedNode) -> Option<Verdict> {
    let own = system_id(x)?;
    let primary_id = system_id(po)?;
    (own != primary_id).then(|| Verdict::Foreign {
        own,
        primary: p.to_string(),
        primary_id,
        running: x.running,
    })
}

fn system_id(x: &ObservedNode) -> Option<String> {
    x.system_identifier
        .clone()
        .or_else(|| x.control.as_ref().map(|c| c.system_identifier.clone()))
}

/// A node that is, or last was, a primary on the current primary's timeline.
fn split_brain(x: &ObservedNode, p: &str, po: &ObservedNode) -> Option<Verdict> {
    if observed_role(x) != Some(Role::Primary) {
        return None;
    }
    let tl = x.timeline()?;
    if Some(tl) != po.timeline() {
        return None;
    }
    Some(Verdict::SplitBrain {
        primary: p.to_string(),
        timeline: tl,
        lsn: wal_end(x),
        primary_lsn: wal_end(po),
        system_identifier: system_id(x).unwrap_or_default(),
        running: x.running,
    })
}

/// Why a standby on its upstream's timeline does not share the upstream's history.
fn diverged(x: &ObservedNode, uo: &ObservedNode, up: &str) -> Option<String> {
    if observed_role(x) != Some(Role::Standby) || x.timeline()? != uo.timeline()? {
        return None;
    }
    if let Some(st) = &x.replay_stall {
        return Some(format!(
            "it received WAL from {up} up to {}, but its replay stays at {} waiting for WAL ({}): what {up} sent does not continue its history on the same timeline",
            st.received, st.replay, st.wait_event
        ));
    }
    if let Some(m) = x.wal_match.as_ref().filter(|m| m.matches == Some(false)) {
        return Some(format!(
            "the {} bytes of WAL before its replay position {} differ from {up}'s at the same position on the same timeline",
            m.bytes, m.at
        ));
    }
    // The upstream's end read after the standby's own position (observe::compare_wal); for a
    // stopped standby, which does not move, as observed.
    let up_end = match &x.wal_match {
        Some(m) => m.upstream_end,
        None if !x.running => [uo.lsn, uo.receive_lsn, uo.replay_lsn]
            .into_iter()
            .flatten()
            .max()?,
        None => return None,
    };
    let mine = if x.running {
        [x.replay_lsn, x.receive_lsn].into_iter().flatten().max()
    } else {
        wal_end(x)
    }?;
    if mine > up_end {
        return Some(format!(
            "its WAL reaches {mine}, past {up}'s end of WAL {up_end} on the same timeline"
        ));
    }
    match (x.receive_lsn, x.replay_lsn) {
        (Some(rcv), Some(rep)) if x.running && !x.streaming && rcv < rep && up_end >= rep => {
            Some(format!(
                "its WAL receiver is not streaming and stays at {rcv}, behind its own replay position {rep}, although {up} has WAL up to {up_end}"
            ))
        }
        _ => None,
    }
}

/// Why a standby's slot, or the WAL it needs, is gone on its upstream.
fn slot_lost(
    d: &Desired,
    x: &ObservedNode,
    name: &str,
    uo: &ObservedNode,
    up: &str,
) -> Option<String> {
    if d.replication.slots {
        if let Some(s) = uo
            .replication_slots
            .iter()
            .find(|s| s.name == name && s.wal_status.as_deref() == Some("lost"))
        {
            return Some(format!(
                "slot {} on {up} is lost (the WAL {name} needs was removed{}): {name} must be cloned again and its slot re-created",
                s.name,
                s.restart_lsn
                    .map(|l| format!(" past {l}"))
                    .unwrap_or_default()
            ));
        }
    }
    if !x.running || x.streaming {
        return None;
    }
    let need = [x.receive_lsn, x.replay_lsn].into_iter().flatten().max()?;
    let oldest = uo.oldest_wal?;
    let seg = uo
        .control
        .as_ref()
        .map(|c| c.wal_segment_size)
        .unwrap_or(16 << 20);
    (Lsn(need.0 / seg * seg) < oldest).then(|| {
        format!(
            "{name} needs WAL from {need}, and {up}'s pg_wal starts at {oldest}: {name} must be cloned again"
        )
    })
}

/// Not receiving, or replay blocked by a recovery conflict (in that order).
fn stalled(x: &ObservedNode, o: &ObservedCluster, name: &str, up: Option<&str>) -> Option<Verdict> {
    if !x.running || observed_role(x) != Some(Role::Standby) {
        return None;
    }
    if let Some(up) = up {
        if let Some(why) = not_receiving(x, &observed(o, up), name, up) {
            return Some(Verdict::NotReceiving {
                upstream: up.to_string(),
                why,
            });
        }
    }
    let conflict = x.replay_conflict.clone()?;
    Some(Verdict::ReplayBlocked {
        conflict,
        unreplayed: match (x.receive_lsn, x.replay_lsn) {
            (Some(rcv), Some(rep)) => Some(rcv.bytes_after(rep)),
            _ => None,
        },
    })
}

/// Twice the node's `wal_receiver_status_interval` (10 s when unknown or 0), in milliseconds.
fn silence_limit_ms(x: &ObservedNode) -> u64 {
    let secs = x
        .settings
        .get("wal_receiver_status_interval")
        .and_then(|s| s.raw.as_deref())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(10);
    2 * secs * 1000
}

/// Why a streaming standby is not receiving from its upstream `uo` now, if it is not.
fn not_receiving(x: &ObservedNode, uo: &ObservedNode, name: &str, up: &str) -> Option<String> {
    if !x.streaming {
        return None;
    }
    let limit = silence_limit_ms(x);
    let r = x.last_receipt.as_ref()?;
    let age = r.age_ms.filter(|a| *a > limit)?;
    let reply = uo
        .replication
        .iter()
        .find(|rp| rp.application_name == name)
        .and_then(|rp| rp.reply_age_ms);
    let behind = match (wal_end(uo), x.receive_lsn) {
        (Some(end), Some(rcv)) => end.bytes_after(rcv),
        _ => 0,
    };
    let silent_both_ways = reply.map_or(true, |a| a > limit);
    if !(silent_both_ways || behind > 0) {
        return None;
    }
    let heard = match reply {
        Some(a) => format!("{up} last heard from it {} s ago", a / 1000),
        None => format!("{up} has no walsender for it"),
    };
    Some(format!(
        "its WAL receiver last heard from {up} {} s ago (at {}; the limit is twice wal_receiver_status_interval, {} s), {heard}, and it lacks {} of {up}'s WAL",
        age / 1000,
        r.last_msg_receipt_time.as_deref().unwrap_or("an unknown time"),
        limit / 1000,
        ByteSize::human(behind)
    ))
}

/// A standby that streams from its declared upstream through its slot.
/// Whether a standby receives from its upstream: it streams, or it is a delayed standby
/// (`apply_delay`) that starts its WAL receiver only after applying, late, the WAL it already
/// has — its startup process waits on the delay meanwhile. The one judgement; drift reads it.
pub fn receives(x: &ObservedNode) -> bool {
    x.streaming || x.startup_wait_event.as_deref() == Some("RecoveryApplyDelay")
}

fn healthy_standby(
    d: &Desired,
    o: &ObservedCluster,
    name: &str,
    up: &str,
    x: &ObservedNode,
) -> bool {
    x.running
        && x.reachable
        && receives(x)
        && observed_role(x) == Some(Role::Standby)
        && configured_as_declared(d, name, up, x)
        && observed(o, up).running
}

/// Whether a standby's recovery configuration is the declared one: primary_conninfo points at
/// `up`, through its own slot when the topology uses slots, with `replication.tls`. The one
/// judgement; the planner re-points a standby for which it is false.
pub fn configured_as_declared(d: &Desired, name: &str, up: &str, x: &ObservedNode) -> bool {
    super::observed_upstream(d, x).as_deref() == Some(up)
        && (!d.replication.slots || x.primary_slot_name.as_deref() == Some(name))
        && super::tls::conninfo_tls_ok(d, name, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::{desired3, healthy};

    #[test]
    fn a_delayed_standby_waiting_on_its_delay_is_healthy_and_drift_agrees() {
        let d = desired3();
        let mut o = healthy(&d);
        let n3 = o.nodes.get_mut("n3").unwrap();
        n3.streaming = false;
        n3.startup_wait_event = Some("RecoveryApplyDelay".into());
        assert_eq!(node(&d, &o, "n3", Some("n1")), Verdict::Healthy);
        let report = super::super::drift::drift(&d, &o);
        assert!(report.items.iter().all(|i| i.node != "n3"), "{report:?}");
        o.nodes.get_mut("n3").unwrap().startup_wait_event = None;
        assert_eq!(node(&d, &o, "n3", Some("n1")), Verdict::Other);
        let report = super::super::drift::drift(&d, &o);
        assert!(report
            .items
            .iter()
            .any(|i| i.node == "n3" && i.kind == super::super::drift::DriftKind::NotStreaming));
    }

    #[test]
    fn an_unfinished_rewind_is_the_assessments_verdict_with_or_without_a_primary() {
        let d = desired3();
        let mut o = healthy(&d);
        o.nodes.get_mut("n2").unwrap().rewind_unfinished = true;
        for primary in [Some("n1"), None] {
            let v = node(&d, &o, "n2", primary);
            assert_eq!(v, Verdict::RewindUnfinished);
            assert!(v.needs_clone());
        }
    }
}
