//! `create_slot`: a physical replication slot that reserves WAL at once
//! (`pg_create_physical_replication_slot(name, true)`), so a standby that will stream through it
//! finds its WAL kept from this moment.

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::SlotParams;

pub(crate) async fn slot_exists(
    ctx: &StepContext,
    node: &str,
    slot: &str,
) -> Result<Option<bool>, StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(rows.first().map(|r| r.get::<_, bool>(0)))
}

pub async fn check(ctx: &StepContext, node: &str, p: &SlotParams) -> Result<Freshness, StepError> {
    Ok(match slot_exists(ctx, node, &p.slot).await? {
        Some(_) => Freshness::Fresh,
        None => Freshness::Dirty(format!("slot {} does not exist", p.slot)),
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &SlotParams) -> Result<(), StepError> {
    ctx.query(
        node,
        "SELECT pg_create_physical_replication_slot($1, true)",
        &[&p.slot],
    )
    .await?;
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, p: &SlotParams) -> Result<(), StepError> {
    match slot_exists(ctx, node, &p.slot).await? {
        Some(_) => Ok(()),
        None => Err(StepError::new(format!(
            "{node}: slot {} was not created",
            p.slot
        ))),
    }
}
