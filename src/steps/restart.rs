//! `restart`: stop (ms-resolution wait for the pid file to go), start (ms-resolution wait for
//! connections), and for a standby wait until it streams again. A restart has no lasting
//! result that could be checked afterwards (the settings that needed it are the planner's
//! concern), so it always runs; a stopped server is simply started.
//!
//! A running standby first catches up with its upstream: PostgreSQL checks a hot standby's
//! max_connections & co. at startup against the values in its control file, which come from the
//! last parameter-change record it replayed. After a primary restarted with a lower value (a
//! decrease restarts the primary first), a standby restarted before it replayed that record
//! refuses to start ("recovery aborted because of insufficient parameter settings").

use super::{data_dir, server, Freshness, StepContext};
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
    let running = data_dir::pid_file_exists(ctx, node).await?;
    if let (true, Some(up)) = (running, &p.wait_streaming_from) {
        catch_up(ctx, node, up).await?;
    }
    if running {
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

/// Wait until the standby streams from `upstream` and has replayed everything the upstream has
/// at this moment (see [`server::wait_streaming`]).
async fn catch_up(ctx: &StepContext, node: &str, upstream: &str) -> Result<(), StepError> {
    server::wait_streaming(ctx, node, upstream, ctx.server_timeout).await
}
