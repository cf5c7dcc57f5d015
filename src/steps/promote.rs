//! `promote`: make a standby the primary.
//!
//! Preconditions, re-checked at apply time: the node is a standby (already a primary → already
//! done), and no other node that answers is a primary; the `previous_primaries` must also have
//! no postmaster running unless it answers as a standby. These looks run concurrently over the
//! connections opened before the switchover began.
//!
//! `pg_promote(wait => true)` polls for the end of recovery only every 100 ms, so the promotion is
//! requested with `wait => false` and pgtopo waits itself at millisecond resolution until
//! `pg_is_in_recovery()` is false — the moment writes are available again.

use std::time::Duration;

use super::{data_dir, server, Freshness, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::plan::PromoteParams;

/// Why another node prevents the promotion, if one does.
async fn other_primary(
    ctx: &StepContext,
    node: &str,
    p: &PromoteParams,
) -> Result<Option<String>, StepError> {
    let others: Vec<String> = ctx
        .desired
        .nodes
        .keys()
        .filter(|n| n.as_str() != node)
        .cloned()
        .collect();
    let looks = others.iter().map(|o| async move {
        let previous = p.previous_primaries.contains(o);
        // A previous primary without a postmaster.pid runs no server: a file look, no
        // connection attempt inside the writes-unavailable window.
        if previous && matches!(data_dir::pid_file_exists(ctx, o).await, Ok(false)) {
            return None;
        }
        let sql = match ctx.client_with_timeout(o, Duration::from_secs(1)).await {
            Ok(_) => server::in_recovery(ctx, o).await.ok(),
            Err(_) => None,
        };
        match sql {
            Some(false) => Some(format!("{o} is a primary")),
            Some(true) => None,
            // A pid file may be left by a crash: pg_ctl decides (only in that unusual case).
            None if previous => match data_dir::pid_file_exists(ctx, o).await {
                Ok(true) if !matches!(data_dir::running_per_pg_ctl(ctx, o).await, Ok(false)) => {
                    Some(format!(
                        "{o} (the previous primary) has a running postmaster"
                    ))
                }
                _ => None,
            },
            None => None,
        }
    });
    let found: Vec<String> = futures::future::join_all(looks)
        .await
        .into_iter()
        .flatten()
        .collect();
    Ok((!found.is_empty()).then(|| found.join("; ")))
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &PromoteParams,
) -> Result<Freshness, StepError> {
    let (me, other) = tokio::join!(server::in_recovery(ctx, node), other_primary(ctx, node, p));
    if !me? {
        return Ok(Freshness::Fresh);
    }
    if let Some(why) = other? {
        return Err(StepError::new(format!("refusing to promote {node}: {why}")));
    }
    Ok(Freshness::Dirty(format!(
        "{node} is a standby ({})",
        p.reason
    )))
}

pub async fn act(ctx: &StepContext, node: &str, _p: &PromoteParams) -> Result<(), StepError> {
    // Bounded: a candidate cut off from pgtopo fails the step (the old primary is stopped or
    // fenced before this step: never a second primary).
    let rows = server::look(ctx, node, "SELECT pg_promote(false)").await?;
    if rows.first().map(|r| r.get::<_, bool>(0)) != Some(true) {
        return Err(StepError::new(format!(
            "{node}: pg_promote refused to promote"
        )));
    }
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, p: &PromoteParams) -> Result<(), StepError> {
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(60_000));
    let spec = WaitSpec::new(format!("{node} to leave recovery"), timeout)
        .max_interval(Duration::from_millis(2));
    let started = std::time::Instant::now();
    let last_nudge = std::sync::Mutex::new(started);
    let live = server::Liveness::new(ctx, node);
    wait_until(&spec, || async {
        match server::in_recovery(ctx, node).await {
            Ok(false) => Poll::Ready(()),
            Ok(true) => {
                live.answered();
                nudge_startup(ctx, node, &last_nudge).await;
                Poll::Pending("still in recovery".into())
            }
            Err(e) => live.failed(&e.message).await,
        }
    })
    .await?;
    Ok(())
}

/// PostgreSQL (seen on 15) can sit out the rest of `wal_retrieve_retry_interval` (5 s by default)
/// before it acts on a promote request that arrives just after its WAL receiver lost the old
/// primary: the startup process notices the request, then sleeps in its retry wait. A SIGHUP sets
/// the same latch that sleep waits on, so while the node is still in recovery, every
/// [`NUDGE_EVERY`] a `pg_reload_conf()` wakes it. A reload changes nothing else: the
/// configuration files are what they were.
async fn nudge_startup(ctx: &StepContext, node: &str, last: &std::sync::Mutex<std::time::Instant>) {
    {
        let mut last = last.lock().expect("nudge clock");
        if last.elapsed() < NUDGE_EVERY {
            return;
        }
        *last = std::time::Instant::now();
    }
    let _ = ctx.query(node, "SELECT pg_reload_conf()", &[]).await;
}

const NUDGE_EVERY: Duration = Duration::from_millis(15);
