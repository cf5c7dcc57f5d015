//! `stop`: `pg_ctl stop -m MODE -W`, then wait at ms resolution until `postmaster.pid` is gone.
//! When this stops a running primary it opens the writes-unavailable window of a switchover, so
//! act and verify do nothing else: no connection is opened, no other process spawned.

use super::{server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::StopParams;

pub async fn check(ctx: &StepContext, node: &str, _p: &StopParams) -> Result<Freshness, StepError> {
    Ok(if server::pid_file_exists(ctx, node).await? {
        Freshness::Dirty("the server is running".into())
    } else {
        Freshness::Fresh
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &StopParams) -> Result<(), StepError> {
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
