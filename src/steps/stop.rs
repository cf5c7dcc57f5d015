//! `stop`: `pg_ctl stop -m MODE -W`, then wait at ms resolution until `postmaster.pid` is gone
//! (a switchover's stop for at most `switchover.timeout`, carried in the step).
//! When this stops a running primary (`writes_unavailable`) it opens the writes-unavailable
//! window of a switchover: it first runs a `CHECKPOINT` while writes are still possible (so the
//! shutdown checkpoint is short), then nothing but pg_ctl and file reads — no connection is
//! opened, no other process spawned.

use std::time::Duration;

use super::{data_dir, server, Freshness, StepContext};
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
    if p.writes_unavailable && p.mode != ShutdownMode::Immediate && !p.checkpointed {
        // The textbook clean switchover: a CHECKPOINT while the primary still accepts writes,
        // so the shutdown checkpoint — inside the writes-unavailable window — has little to
        // flush. Best effort: the stop does not depend on it.
        let t = std::time::Instant::now();
        if let Err(e) = ctx.execute_batch(node, "CHECKPOINT", "CHECKPOINT").await {
            tracing::info!(node, error = %e, "checkpoint before the stop failed");
        }
        tracing::debug!(node, elapsed = ?t.elapsed(), "checkpoint before the stop");
    }
    server::request_stop(ctx, node, p.mode).await
}

pub async fn verify(ctx: &StepContext, node: &str, p: &StopParams) -> Result<(), StepError> {
    let timeout = p
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(ctx.server_timeout);
    let Err(mut e) = server::wait_stopped(ctx, node, timeout).await else {
        return Ok(());
    };
    if !data_dir::running_per_pg_ctl(ctx, node).await? {
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
