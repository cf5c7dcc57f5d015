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

use super::{server, Freshness, StepContext};
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
        let sql = match ctx.client_with_timeout(o, Duration::from_secs(1)).await {
            Ok(_) => server::in_recovery(ctx, o).await.ok(),
            Err(_) => None,
        };
        match sql {
            Some(false) => Some(format!("{o} is a primary")),
            Some(true) => None,
            None if previous => match server::pid_file_exists(ctx, o).await {
                Ok(true) => Some(format!(
                    "{o} (the previous primary) has a running postmaster"
                )),
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
    let rows = ctx.query(node, "SELECT pg_promote(false)", &[]).await?;
    if rows.first().map(|r| r.get::<_, bool>(0)) != Some(true) {
        return Err(StepError::new(format!(
            "{node}: pg_promote refused to promote"
        )));
    }
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, _p: &PromoteParams) -> Result<(), StepError> {
    let spec = WaitSpec::new(format!("{node} to leave recovery"), Duration::from_secs(60))
        .max_interval(Duration::from_millis(2));
    wait_until(&spec, || async move {
        match server::in_recovery(ctx, node).await {
            Ok(false) => Poll::Ready(()),
            Ok(true) => Poll::Pending("still in recovery".into()),
            Err(e) => Poll::Pending(e.message),
        }
    })
    .await?;
    Ok(())
}
