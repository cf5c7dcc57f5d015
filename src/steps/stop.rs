//! `stop`: `pg_ctl stop -m MODE -W`, then wait at ms resolution until `postmaster.pid` is gone
//! (a switchover's stop for at most `switchover.timeout`, carried in the step).
//! When this stops a running primary (`writes_unavailable`) it opens the writes-unavailable
//! window of a switchover: it first runs a `CHECKPOINT` while writes are still possible (so the
//! shutdown checkpoint is short), then nothing but pg_ctl and file reads — no connection is
//! opened, no other process spawned.
//!
//! The stop of a switchover's old primary is bounded: after `switchover.timeout` it is escalated
//! and the switchover rolled back unless the candidate already has the shutdown checkpoint
//! ([`escalate`]).

use std::time::{Duration, Instant};

use super::position::{wait_position, CaughtUp, PositionGoal, Target};
use super::{checkpoint, control, data_dir, server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::{ShutdownMode, StopParams};

pub async fn check(ctx: &StepContext, node: &str, _p: &StopParams) -> Result<Freshness, StepError> {
    Ok(if data_dir::pid_file_exists(ctx, node).await? {
        Freshness::Dirty("the server is running".into())
    } else {
        Freshness::Fresh
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &StopParams) -> Result<(), StepError> {
    if p.writes_unavailable {
        refuse_frozen(ctx, node).await?;
    }
    if p.writes_unavailable && p.mode != ShutdownMode::Immediate && !p.checkpointed {
        // The textbook clean switchover: a CHECKPOINT while the primary still accepts writes,
        // so the shutdown checkpoint — inside the writes-unavailable window — has little to
        // flush. Best effort: an error does not prevent the stop. But it is bounded: a primary
        // that cannot finish a CHECKPOINT within the stop's timeout would not finish its
        // shutdown checkpoint either; then nothing is stopped.
        let t = std::time::Instant::now();
        if let Err(e) = checkpoint::bounded(ctx, node, stop_timeout(ctx, p)).await? {
            tracing::info!(node, error = %e, "checkpoint before the stop failed");
        }
        tracing::debug!(node, elapsed = ?t.elapsed(), "checkpoint before the stop");
    }
    server::request_stop(ctx, node, p.mode).await
}

/// A frozen postmaster (SIGSTOP, a debugger) acts on no shutdown request until someone
/// continues it, and then on the one pgtopo left queued: the primary is not asked to stop, and
/// writes go on.
async fn refuse_frozen(ctx: &StepContext, node: &str) -> Result<(), StepError> {
    if server::postmaster(ctx, node).await? != server::Postmaster::Frozen {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{node}'s postmaster is stopped by a signal (SIGSTOP or a debugger): it would act on a \
         shutdown request only when continued. Nothing was stopped: {node} serves its open \
         connections, new ones wait until it runs again. Find out who stopped it, continue it \
         (kill -CONT), then run apply again"
    )))
}

fn stop_timeout(ctx: &StepContext, p: &StopParams) -> Duration {
    p.timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(ctx.server_timeout)
}

pub async fn verify(ctx: &StepContext, node: &str, p: &StopParams) -> Result<(), StepError> {
    let t0 = Instant::now();
    let timeout = stop_timeout(ctx, p);
    let Err(mut e) = server::wait_stopped(ctx, node, timeout).await else {
        return Ok(());
    };
    if let (true, Some(cand)) = (p.writes_unavailable, &p.candidate) {
        match server::postmaster(ctx, node).await? {
            server::Postmaster::Gone => return Ok(()),
            server::Postmaster::Running {
                walsenders,
                frozen_walsenders,
            } => {
                let w = [walsenders, frozen_walsenders];
                return escalate(ctx, node, cand, &w, timeout, t0).await;
            }
            server::Postmaster::Frozen => {}
        }
    } else if !data_dir::running_per_pg_ctl(ctx, node).await? {
        return Ok(());
    }
    if p.writes_unavailable {
        e.message = format!(
            "{}; nothing was promoted. {node} was asked to shut down and has not finished: it \
             accepts no writes until it has stopped and is started again. Find out why it is stuck \
             (its log: {}), then run apply again",
            e.message,
            data_dir::log_file(ctx, node)?.display()
        );
    }
    Err(e)
}

/// How long each escalation stage may take to end the server.
const STAGE: Duration = Duration::from_millis(1500);

/// How long the candidate gets, after the old primary stopped, to show that it replayed past
/// the shutdown checkpoint (it has received all it will ever get from it).
const LOOK: Duration = Duration::from_millis(200);

/// The fast shutdown of a switchover's old primary did not finish within `timeout` (typically
/// a walsender blocked writing to a standby that no longer answers, which holds the shutdown
/// until `wal_sender_timeout`): end its walsenders (SIGTERM; SIGKILL for a frozen one), then,
/// if it still runs after [`STAGE`], an immediate stop.
/// Then the switchover goes on only when `cand` has replayed past the old primary's shutdown
/// checkpoint; otherwise the old primary is started again as primary ([`server::roll_back`])
/// and the step fails, saying how long writes were unavailable and why.
async fn escalate(
    ctx: &StepContext,
    node: &str,
    cand: &str,
    [walsenders, frozen]: &[Vec<i32>; 2],
    timeout: Duration,
    t0: Instant,
) -> Result<(), StepError> {
    tracing::info!(node, elapsed = ?t0.elapsed(), "the fast shutdown is escalated");
    server::end_walsenders(ctx, node, walsenders, "TERM").await?;
    server::end_walsenders(ctx, node, frozen, "KILL").await?;
    let mut how = format!(
        "its {} walsender(s) were ended",
        walsenders.len() + frozen.len()
    );
    if server::wait_stopped(ctx, node, STAGE).await.is_err() {
        server::request_stop(ctx, node, ShutdownMode::Immediate).await?;
        // A walsender that did not act on SIGTERM (frozen) would hold the immediate stop too.
        server::end_walsenders(ctx, node, walsenders, "KILL").await?;
        if let Err(e) = server::wait_stopped(ctx, node, STAGE).await {
            return Err(StepError::new(format!(
                "{node} did not shut down within {} s, nor after its walsenders were ended and an \
                 immediate stop was asked ({e}); nothing was promoted. It accepts no writes: find \
                 out why it is stuck (a frozen postmaster? its log: {}), then run apply again",
                timeout.as_secs_f64(),
                data_dir::log_file(ctx, node)?.display()
            )));
        }
        how.push_str(", then it was stopped in immediate mode");
    }
    tracing::info!(node, elapsed = ?t0.elapsed(), "stopped after the escalation");
    if candidate_has_shutdown_checkpoint(ctx, node, cand).await {
        tracing::warn!(node, cand, "{node}'s fast shutdown was escalated ({how}); {cand} has its shutdown checkpoint: the switchover goes on");
        return Ok(());
    }
    let why = StepError::new(format!(
        "{node}'s fast shutdown did not finish within {} s (typically a walsender blocked on a standby \
         that no longer answers holds it until wal_sender_timeout): {how}; {cand} has not \
         replayed {node}'s shutdown checkpoint, so nothing was promoted",
        timeout.as_secs_f64()
    ));
    tracing::info!(node, elapsed = ?t0.elapsed(), "rolling back");
    let mut e = server::roll_back(ctx, node, why).await;
    e.message = format!(
        "{}; writes were unavailable for {:.1} s",
        e.message,
        t0.elapsed().as_secs_f64()
    );
    Err(e)
}

/// Whether the stopped `old` shut down cleanly and `cand` has replayed past its shutdown
/// checkpoint. Its walsenders are gone, so nothing more will reach the candidate: a short look
/// ([`LOOK`]) decides (the candidate may be unreachable too).
async fn candidate_has_shutdown_checkpoint(ctx: &StepContext, old: &str, cand: &str) -> bool {
    let Ok(c) = control::read(ctx, old).await else {
        return false;
    };
    if !c.shut_down() {
        return false;
    }
    let goal = PositionGoal::reach(Target::PastCheckpoint(c.latest_checkpoint));
    let wait = wait_position(ctx, cand, CaughtUp::Replayed, goal, LOOK);
    matches!(tokio::time::timeout(LOOK * 2, wait).await, Ok(Ok(())))
}
