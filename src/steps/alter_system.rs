//! `alter_system`: ALTER SYSTEM SET / RESET on a running server; on a stopped one a careful edit
//! of postgresql.auto.conf through the transport (order and comments kept, written atomically).
//! Already done when the file already says so. Whether a reload or restart follows is a step of
//! its own.

use super::{conf, settings, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::AlterSystemParams;

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &AlterSystemParams,
) -> Result<Freshness, StepError> {
    let current = conf::values(&settings::read_auto_conf(ctx, node).await?);
    Ok(if conf::satisfied(&current, &p.set, &p.reset) {
        Freshness::Fresh
    } else {
        Freshness::Dirty("postgresql.auto.conf differs".into())
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &AlterSystemParams) -> Result<(), StepError> {
    settings::apply_settings(ctx, node, &p.set, &p.reset).await
}

pub async fn verify(ctx: &StepContext, node: &str, p: &AlterSystemParams) -> Result<(), StepError> {
    match check(ctx, node, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(_) => Err(StepError::new(format!(
            "{node}: postgresql.auto.conf does not hold the new settings after ALTER SYSTEM"
        ))),
    }
}
