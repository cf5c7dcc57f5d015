//! `create_logical_slot`: a declared logical slot on the primary, created in its database with
//! `pg_create_logical_replication_slot(name, plugin, false, false, failover)` (PostgreSQL 17+;
//! without failover the two-argument form, which every version has). Already done when a slot
//! of that name exists; verified by its type and failover flag.

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::CreateLogicalSlotParams;

/// `(slot_type, failover)` of the slot, if it exists.
async fn slot(
    ctx: &StepContext,
    node: &str,
    name: &str,
) -> Result<Option<(String, bool)>, StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT slot_type, coalesce(to_jsonb(s) ->> 'failover', 'false') = 'true' \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&name],
        )
        .await?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1))))
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &CreateLogicalSlotParams,
) -> Result<Freshness, StepError> {
    Ok(match slot(ctx, node, &p.slot).await? {
        Some(_) => Freshness::Fresh,
        None => Freshness::Dirty(format!("logical slot {} does not exist", p.slot)),
    })
}

pub async fn act(
    ctx: &StepContext,
    node: &str,
    p: &CreateLogicalSlotParams,
) -> Result<(), StepError> {
    // A logical slot belongs to the database it is created in.
    let mut d = (*ctx.desired).clone();
    d.connect.dbname = p.database.clone();
    let client = crate::pg::connect(&d, ctx.node(node)?, ctx.connect_timeout)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    let result = if p.failover {
        client
            .query(
                "SELECT pg_create_logical_replication_slot($1, $2, false, false, true)",
                &[&p.slot, &p.plugin],
            )
            .await
    } else {
        client
            .query(
                "SELECT pg_create_logical_replication_slot($1, $2)",
                &[&p.slot, &p.plugin],
            )
            .await
    };
    result.map_err(|e| {
        StepError::new(format!(
            "{node}: creating logical slot {}: {}",
            p.slot,
            crate::pg::describe(&e)
        ))
    })?;
    Ok(())
}

pub async fn verify(
    ctx: &StepContext,
    node: &str,
    p: &CreateLogicalSlotParams,
) -> Result<(), StepError> {
    match slot(ctx, node, &p.slot).await? {
        Some((kind, failover)) if kind == "logical" && failover == p.failover => Ok(()),
        Some((kind, failover)) => Err(StepError::new(format!(
            "{node}: slot {} is {kind} with failover = {failover}",
            p.slot
        ))),
        None => Err(StepError::new(format!(
            "{node}: logical slot {} was not created",
            p.slot
        ))),
    }
}
