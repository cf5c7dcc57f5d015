//! Rule: the promotion (switchover, finishing one, failover) and what must precede it.

use crate::config::DesiredRole;
use crate::diff::observed;
use crate::plan::analysis::{Fate, PromotionKind};
use crate::plan::graph::Idx;
use crate::plan::model::*;

use super::draw::*;
use super::Ctx;

/// Planned switchover, finishing one, or failover: slots the new primary needs first, then stop
/// (or fence) the old primary, the zero-data-loss wait, the promotion.
pub fn promotion(c: &mut Ctx) {
    let Some(p) = c.a.promotion.clone() else {
        return;
    };
    let cand = p.candidate.clone();
    let old = p.old.clone().unwrap_or_default();
    let mut pre = slots_before_promotion(c, &cand, &old);
    pre.extend(clear_candidate_sync(c, &cand));
    let synced = super::logical::before_promotion(c, &cand, &[]);
    pre.extend(synced);
    let timeout_ms = c.eff.switchover.timeout.0.as_millis() as u64;
    // The stop's CHECKPOINT runs while writes still flow; with poolers paused before the stop,
    // it becomes a step of its own before the pause, outside the window.
    let checkpoint_first = matches!(p.kind, PromotionKind::Switchover) && super::poolers::pauses(c);
    if checkpoint_first {
        let ck = c.dag.add(
            &old,
            Action::Checkpoint(CheckpointParams {
                reason: "before the poolers pause, so the shutdown checkpoint is short".into(),
                timeout_ms: Some(timeout_ms),
            }),
            false,
            "while writes still flow, before the poolers pause",
            &pre,
        );
        pre.push(ck);
    }
    if matches!(p.kind, PromotionKind::Switchover) {
        pre = vec![catch_up(c, &p, Some(&old), &pre)];
    }
    let pauses = super::poolers::pause(c, &pre);
    let pre: Vec<Idx> = pre.into_iter().chain(pauses.iter().copied()).collect();
    let before_promote = match &p.kind {
        PromotionKind::Switchover => {
            stop_for_switchover(c, &cand, &old, &pre, timeout_ms, checkpoint_first)
        }
        PromotionKind::FinishSwitchover { checkpoint } => {
            let w = c.dag.add(
                &cand,
                Action::WaitReplay(WaitReplayParams {
                    target: ReplayTarget::ShutdownCheckpointOf { node: old.clone() },
                    timeout_ms,
                    on_failure_restart: None,
                }),
                false,
                format!("past {old}'s shutdown checkpoint {checkpoint} (already replayed)"),
                &pre,
            );
            c.anchors.writes_down = Some(w);
            w
        }
        PromotionKind::Failover { fence, .. } => {
            let deps = match before_failover(c, &old, *fence, &pre) {
                Some(b) => vec![b],
                None => pre.clone(),
            };
            let cu = catch_up(c, &p, None, &deps);
            c.anchors.writes_down.get_or_insert(cu);
            cu
        }
    };
    let reason = p.why();
    let promote = c.dag.add(
        &cand,
        Action::Promote(PromoteParams {
            reason: reason.clone(),
            previous_primaries: p.old.iter().cloned().collect(),
            writes_available: true,
            timeout_ms: Some(timeout_ms),
        }),
        true,
        reason,
        &[&[before_promote][..], &pauses].concat(),
    );
    super::poolers::after_promotion(c, promote);
    if c.anchors.writes_down.is_none() {
        c.anchors.writes_down = Some(promote);
    }
    c.anchors.writes_up = Some(promote);
    c.anchors.primary_ready = Some(promote);
}

/// The slots of the candidate's future standbys, created before it is promoted (a clone creates
/// its slot itself, with pg_basebackup -C -S).
fn slots_before_promotion(c: &mut Ctx, cand: &str, old: &str) -> Vec<Idx> {
    let followers: Vec<String> = c
        .eff
        .downstreams_of(cand)
        .filter(|n| {
            let f = c.fate(&n.name);
            !(matches!(f, Fate::Deferred { .. }) || f.copies_data())
        })
        .map(|n| n.name.clone())
        .collect();
    let mut made = Vec::new();
    for f in followers {
        let why = if f == old {
            format!("slot {f} (before promotion, so {f}'s WAL is kept from the start)")
        } else {
            format!("slot {f} (before promotion, for {f} to follow {cand})")
        };
        made.extend(create_slot(c, cand, &f, why, &[]));
    }
    made
}

/// A candidate with synchronous standbys configured would wait for them once promoted: clear
/// synchronous_standby_names until its standbys stream to it. Returns the reload.
fn clear_candidate_sync(c: &mut Ctx, cand: &str) -> Option<Idx> {
    let cand_sync = observed(c.o, cand)
        .settings
        .get("synchronous_standby_names")
        .map(|s| s.value.trim().to_string())
        .unwrap_or_default();
    if cand_sync.is_empty() {
        return None;
    }
    c.dag.add(
        cand,
        Action::AlterSystem(AlterSystemParams {
            set: [("synchronous_standby_names".to_string(), String::new())].into(),
            reset: vec![],
        }),
        false,
        format!("synchronous_standby_names = '' until its standbys stream to {cand}"),
        &[],
    );
    let reload = c.dag.add(
        cand,
        Action::Reload(ReloadParams {
            reason: "synchronous_standby_names changed".into(),
        }),
        false,
        "synchronous_standby_names changed",
        &[],
    );
    c.drawn.sync_cleared = true;
    Some(reload)
}

/// Switchover: stop the old primary (fast), then wait until the candidate replays past its
/// shutdown checkpoint (else the old primary is started again). Returns the wait.
fn stop_for_switchover(
    c: &mut Ctx,
    cand: &str,
    old: &str,
    pre: &[Idx],
    timeout_ms: u64,
    checkpointed: bool,
) -> Idx {
    let stop = c.dag.add(
        old,
        Action::Stop(StopParams {
            mode: ShutdownMode::Fast,
            writes_unavailable: true,
            timeout_ms: Some(timeout_ms),
            checkpointed,
            candidate: Some(cand.to_string()),
        }),
        false,
        "fast",
        pre,
    );
    c.anchors.writes_down = Some(stop);
    c.drawn.stopped.insert(old.to_string());
    c.drawn.restarts.insert(old.to_string());
    c.dag.add(
        cand,
        Action::WaitReplay(WaitReplayParams {
            target: ReplayTarget::ShutdownCheckpointOf {
                node: old.to_string(),
            },
            timeout_ms,
            on_failure_restart: Some(old.to_string()),
        }),
        false,
        format!("past {old}'s shutdown checkpoint (else {old} is started again as primary)"),
        &[stop],
    )
}

/// How long the sessions a catch_up cancelled may take to end before they are terminated.
pub const CANCEL_GRACE_MS: u64 = 1_000;

/// The live proof before the disruptive part of a promotion, on the candidate: a switchover's
/// (`old` given) before the pause and the stop, within `switchover.catchup_timeout`, cancelling
/// what blocks replay when `switchover.cancel_conflicting_queries` says so; a failover's before
/// the promotion, always cancelling (the candidate is about to become the primary).
fn catch_up(
    c: &mut Ctx,
    p: &crate::plan::analysis::Promotion,
    old: Option<&str>,
    deps: &[Idx],
) -> Idx {
    let sw = &c.eff.switchover;
    let (timeout, cancel) = match old {
        Some(_) => (sw.catchup_timeout.0, sw.cancel_conflicting_queries),
        None => (sw.timeout.0, true),
    };
    let target = match old {
        Some(o) => format!(
            "receives and replays {o}'s current WAL position (read when this step runs) within {}, else nothing is stopped",
            crate::units::Duration(timeout)
        ),
        None => "replays all it received before its promotion".to_string(),
    };
    let cancels = match (&p.conflict, cancel) {
        (Some(k), true) if !k.blockers.is_empty() => format!(
            "; cancels the sessions that block its replay (now {})",
            k.blocked_on()
        ),
        (_, true) => "; cancels any session that blocks its replay".to_string(),
        (_, false) => String::new(),
    };
    c.dag.add(
        &p.candidate,
        Action::CatchUp(CatchUpParams {
            primary: old.map(str::to_string),
            timeout_ms: timeout.as_millis() as u64,
            cancel_conflicts: cancel,
            grace_ms: if cancel { CANCEL_GRACE_MS } else { 0 },
        }),
        false,
        format!("{} {target}{cancels}", p.candidate),
        deps,
    )
}

/// Failover: stop a retired old primary whose host answers, or fence any other one; with its host
/// unreachable, nothing (the catch_up that follows opens the window). Returns that step.
fn before_failover(c: &mut Ctx, old: &str, fence: bool, pre: &[Idx]) -> Option<Idx> {
    let retired = c
        .eff
        .nodes
        .get(old)
        .is_some_and(|n| n.role == DesiredRole::Absent);
    let step = if fence && retired {
        // A retired node gets no step but its stop.
        let f = c.dag.add(
            old,
            plain_stop(ShutdownMode::Immediate),
            false,
            format!("{old} is retired and down: make sure it stays stopped"),
            pre,
        );
        c.drawn.stopped.insert(old.to_string());
        f
    } else if fence {
        let f = c.dag.add(
            old,
            Action::Fence(FenceParams {
                reason: format!(
                    "{old} is down and not proven shut down cleanly: it must not accept writes again"
                ),
            }),
            false,
            format!("{old} must not come back as a primary"),
            pre,
        );
        c.drawn.stopped.insert(old.to_string());
        f
    } else {
        return None;
    };
    c.anchors.writes_down = Some(step);
    Some(step)
}
