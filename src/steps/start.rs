//! `start`: `pg_ctl start -W -l <data_dir>.log`, then wait until the server accepts connections
//! and, for a standby with `wait_streaming_from`, until its WAL receiver streams from that
//! upstream. A data directory that pg_rewind left half-done is never started.

use super::{data_dir, server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::StartParams;

pub async fn check(ctx: &StepContext, node: &str, p: &StartParams) -> Result<Freshness, StepError> {
    if !(data_dir::pid_file_exists(ctx, node).await? && server::accepting(ctx, node).await) {
        return Ok(Freshness::Dirty("the server is not running".into()));
    }
    if let Some(up) = &p.wait_streaming_from {
        // Running; a short look whether it already streams.
        if server::wait_receiver(ctx, node, up, std::time::Duration::ZERO)
            .await
            .is_err()
        {
            return Ok(Freshness::Dirty(format!(
                "running but not streaming from {up} yet"
            )));
        }
    }
    Ok(Freshness::Fresh)
}

pub async fn act(ctx: &StepContext, node: &str, _p: &StartParams) -> Result<(), StepError> {
    server::start(ctx, node, ctx.server_timeout).await
}

pub async fn verify(ctx: &StepContext, node: &str, p: &StartParams) -> Result<(), StepError> {
    server::wait_accepting(ctx, node, ctx.server_timeout).await?;
    if let Some(up) = &p.wait_streaming_from {
        server::wait_streaming(ctx, node, up, ctx.server_timeout).await?;
    }
    Ok(())
}
