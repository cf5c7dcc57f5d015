//! `checkpoint`: `CHECKPOINT`, e.g. on a primary just before a switchover stops it (so the
//! shutdown checkpoint has little to write), or on a new primary before pg_rewind uses it.

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

pub async fn act(ctx: &StepContext, node: &str, _p: &CheckpointParams) -> Result<(), StepError> {
    ctx.execute_batch(node, "CHECKPOINT", "CHECKPOINT").await
}

pub async fn verify(
    _ctx: &StepContext,
    _node: &str,
    _p: &CheckpointParams,
) -> Result<(), StepError> {
    // CHECKPOINT returns when the checkpoint is complete.
    Ok(())
}
