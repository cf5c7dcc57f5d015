//! `fence`: make sure a node that must not be primary cannot act as one: stop it (fast, and
//! immediate if a fast shutdown does not finish in 10 s), then write standby.signal so that
//! whatever starts it later brings it up in recovery, never as a second primary.

use std::time::Duration;

use super::{data_dir, server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::{FenceParams, ShutdownMode};

fn signal(ctx: &StepContext, node: &str) -> Result<std::path::PathBuf, StepError> {
    Ok(ctx.node(node)?.data_dir.join("standby.signal"))
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    _p: &FenceParams,
) -> Result<Freshness, StepError> {
    if data_dir::pid_file_exists(ctx, node).await?
        && data_dir::running_per_pg_ctl(ctx, node).await?
    {
        return Ok(Freshness::Dirty("the server is running".into()));
    }
    if !data_dir::file_exists(ctx, node, &signal(ctx, node)?).await? {
        return Ok(Freshness::Dirty("standby.signal is missing".into()));
    }
    Ok(Freshness::Fresh)
}

pub async fn act(ctx: &StepContext, node: &str, _p: &FenceParams) -> Result<(), StepError> {
    if data_dir::pid_file_exists(ctx, node).await? {
        if let Err(e) = server::stop(ctx, node, ShutdownMode::Fast, Duration::from_secs(10)).await {
            tracing::warn!(node, error = %e, "fast shutdown did not finish; stopping immediately");
            server::stop(ctx, node, ShutdownMode::Immediate, Duration::from_secs(30)).await?;
        }
    }
    ctx.transport(node)?
        .write_file_atomic(&signal(ctx, node)?, b"", 0o600)
        .await
        .map_err(|e| StepError::new(e.to_string()))
}

pub async fn verify(ctx: &StepContext, node: &str, p: &FenceParams) -> Result<(), StepError> {
    match check(ctx, node, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(why) => Err(StepError::new(format!("{node}: not fenced: {why}"))),
    }
}
