//! `sync_slots` on a standby (PostgreSQL 17+): its own copies of the listed slots — not made by
//! its slot-sync worker, e.g. an old primary's after a switchover — are dropped so that the
//! worker can keep the primary's; with `wait_persistent`, the step then waits until each slot is
//! a synced, persistent copy (`synced AND NOT temporary`), at most `timeout_ms`. A switchover
//! waits so on its candidate before the old primary stops: a temporary copy does not survive a
//! promotion, and the subscriber could not resume.

use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::plan::SyncSlotsParams;

/// One listed slot as the standby holds it.
#[derive(Debug)]
struct SlotCopy {
    name: String,
    synced: bool,
    temporary: bool,
}

async fn copies(
    ctx: &StepContext,
    node: &str,
    p: &SyncSlotsParams,
) -> Result<Vec<SlotCopy>, StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT slot_name::text, coalesce(to_jsonb(s) ->> 'synced', 'false') = 'true', \
             temporary FROM pg_replication_slots s WHERE slot_name = ANY($1)",
            &[&p.slots],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SlotCopy {
            name: r.get(0),
            synced: r.get(1),
            temporary: r.get(2),
        })
        .collect())
}

/// What is not yet as the step wants it, in words; empty when done.
fn missing(p: &SyncSlotsParams, have: &[SlotCopy]) -> Vec<String> {
    let mut out = Vec::new();
    for name in &p.slots {
        match have.iter().find(|c| &c.name == name) {
            Some(c) if !c.synced => out.push(format!("{name}: its own copy, not synced")),
            Some(c) if p.wait_persistent && c.temporary => {
                out.push(format!("{name}: synced, still temporary"))
            }
            None if p.wait_persistent => out.push(format!("{name}: not synced yet")),
            _ => {}
        }
    }
    out
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &SyncSlotsParams,
) -> Result<Freshness, StepError> {
    let have = copies(ctx, node, p).await?;
    let left = missing(p, &have);
    Ok(if left.is_empty() {
        Freshness::Fresh
    } else {
        Freshness::Dirty(left.join("; "))
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &SyncSlotsParams) -> Result<(), StepError> {
    for c in copies(ctx, node, p).await? {
        if !c.synced {
            super::drop_slot::act(ctx, node, &crate::plan::SlotParams { slot: c.name }).await?;
        }
    }
    if !p.wait_persistent {
        return Ok(());
    }
    let spec = WaitSpec::new(
        format!(
            "{node} to hold synced, persistent copies of {}",
            p.slots.join(", ")
        ),
        Duration::from_millis(p.timeout_ms),
    )
    .max_interval(Duration::from_millis(50));
    wait_until(&spec, || async move {
        match copies(ctx, node, p).await {
            Err(e) => Poll::Failed(e.message),
            Ok(have) => {
                let left = missing(p, &have);
                if left.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(left.join("; "))
                }
            }
        }
    })
    .await?;
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, p: &SyncSlotsParams) -> Result<(), StepError> {
    let have = copies(ctx, node, p).await?;
    let left = missing(p, &have);
    if left.is_empty() {
        Ok(())
    } else {
        Err(StepError::new(format!("{node}: {}", left.join("; "))))
    }
}
