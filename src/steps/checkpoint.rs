//! `checkpoint`: `CHECKPOINT`, e.g. on a primary just before a switchover stops it (so the
//! shutdown checkpoint has little to write), or on a new primary before pg_rewind uses it.
//! Bounded ([`bounded`], also used by the stop's own CHECKPOINT): a frozen node fails the step
//! at its timeout instead of holding the apply.

use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::CheckpointParams;

pub async fn check(
    _ctx: &StepContext,
    _node: &str,
    p: &CheckpointParams,
) -> Result<Freshness, StepError> {
    Ok(Freshness::Dirty(p.reason.clone()))
}

pub async fn act(ctx: &StepContext, node: &str, p: &CheckpointParams) -> Result<(), StepError> {
    let timeout = p
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(ctx.server_timeout);
    bounded(ctx, node, timeout).await.and_then(|r| r)
}

/// `CHECKPOINT`: its result, or — the outer error — it did not finish within `timeout` (the
/// connection is dropped then: a node that does not answer keeps no statement of ours waiting).
pub async fn bounded(
    ctx: &StepContext,
    node: &str,
    timeout: Duration,
) -> Result<Result<(), StepError>, StepError> {
    match tokio::time::timeout(timeout, ctx.execute_batch(node, "CHECKPOINT", "CHECKPOINT")).await {
        Ok(r) => Ok(r),
        Err(_) => {
            ctx.forget(node);
            Err(StepError::new(format!(
                "{node}: CHECKPOINT did not finish within {} s (is the node frozen, or its disk \
                 stalled?); nothing was stopped",
                timeout.as_secs_f64()
            )))
        }
    }
}

pub async fn verify(
    _ctx: &StepContext,
    _node: &str,
    _p: &CheckpointParams,
) -> Result<(), StepError> {
    // CHECKPOINT returns when the checkpoint is complete.
    Ok(())
}
