//! `stop`: `pg_ctl stop -m MODE -W`, then wait at ms resolution until `postmaster.pid` is gone.
//! When this stops a running primary (`writes_unavailable`) it opens the writes-unavailable
//! window of a switchover: it first runs a `CHECKPOINT` while writes are still possible (so the
//! shutdown checkpoint is short), then nothing but pg_ctl and file reads — no connection is
//! opened, no other process spawned.

use super::{server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::{ShutdownMode, StopParams};

pub async fn check(ctx: &StepContext, node: &str, _p: &StopParams) -> Result<Freshness, StepError> {
    Ok(if server::pid_file_exists(ctx, node).await? {
        Freshness::Dirty("the server is running".into())
    } else {
        Freshness::Fresh
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &StopParams) -> Result<(), StepError> {
    if p.writes_unavailable && p.mode != ShutdownMode::Immediate {
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
    match server::wait_stopped(ctx, node, ctx.server_timeout).await {
        Ok(()) => Ok(()),
        Err(e) => {
            if !server::running_per_pg_ctl(ctx, node).await? {
                return Ok(());
            }
            let _ = p;
            Err(e)
        }
    }
}
