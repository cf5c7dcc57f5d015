//! `drop_slot`: wait until the slot is inactive (its standby has moved on), then drop it.
//! A slot that a walsender takes again between the look and the drop is retried until the
//! timeout.

use std::time::Duration;

use super::create_slot::slot_exists;
use super::{Freshness, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::plan::SlotParams;

pub async fn check(ctx: &StepContext, node: &str, p: &SlotParams) -> Result<Freshness, StepError> {
    Ok(match slot_exists(ctx, node, &p.slot).await? {
        None => Freshness::Fresh,
        Some(_) => Freshness::Dirty(format!("slot {} exists", p.slot)),
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &SlotParams) -> Result<(), StepError> {
    let spec = WaitSpec::new(
        format!("slot {} on {node} to be inactive and dropped", p.slot),
        Duration::from_secs(60),
    )
    .max_interval(Duration::from_millis(20));
    let slot = p.slot.as_str();
    wait_until(&spec, || async move {
        match slot_exists(ctx, node, slot).await {
            Err(e) => Poll::Failed(e.message),
            Ok(None) => Poll::Ready(()),
            Ok(Some(true)) => Poll::Pending(format!("slot {slot} is active")),
            Ok(Some(false)) => match ctx
                .query(node, "SELECT pg_drop_replication_slot($1)", &[&slot])
                .await
            {
                Ok(_) => Poll::Ready(()),
                Err(e) if e.message.contains("is active") => Poll::Pending(e.message),
                Err(e) if e.message.contains("does not exist") => Poll::Ready(()),
                Err(e) => Poll::Failed(e.message),
            },
        }
    })
    .await?;
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, p: &SlotParams) -> Result<(), StepError> {
    match slot_exists(ctx, node, &p.slot).await? {
        None => Ok(()),
        Some(_) => Err(StepError::new(format!(
            "{node}: slot {} still exists",
            p.slot
        ))),
    }
}
