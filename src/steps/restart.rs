//! `restart`: stop (ms-resolution wait for the pid file to go), start (ms-resolution wait for
//! connections), and for a standby wait until it streams again. A restart has no lasting
//! result that could be checked afterwards (the settings that needed it are the planner's
//! concern), so it always runs; a stopped server is simply started.

use super::{server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::RestartParams;

pub async fn check(
    _ctx: &StepContext,
    _node: &str,
    p: &RestartParams,
) -> Result<Freshness, StepError> {
    Ok(Freshness::Dirty(format!("restart: {}", p.reason)))
}

pub async fn act(ctx: &StepContext, node: &str, p: &RestartParams) -> Result<(), StepError> {
    if server::pid_file_exists(ctx, node).await? {
        server::stop(ctx, node, p.mode, ctx.server_timeout).await?;
    }
    server::start(ctx, node, ctx.server_timeout).await
}

pub async fn verify(ctx: &StepContext, node: &str, p: &RestartParams) -> Result<(), StepError> {
    server::wait_accepting(ctx, node, ctx.server_timeout).await?;
    if let Some(up) = &p.wait_streaming_from {
        server::wait_streaming(ctx, node, up, ctx.server_timeout).await?;
    }
    Ok(())
}
