//! `reload`: `SELECT pg_reload_conf()`, then check pg_file_settings for errors in the files it
//! read. A stopped server reads its configuration when it starts: nothing to do.

use super::{data_dir, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::ReloadParams;

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &ReloadParams,
) -> Result<Freshness, StepError> {
    if !data_dir::pid_file_exists(ctx, node).await? {
        return Ok(Freshness::Fresh);
    }
    Ok(Freshness::Dirty(format!("reload: {}", p.reason)))
}

pub async fn act(ctx: &StepContext, node: &str, _p: &ReloadParams) -> Result<(), StepError> {
    ctx.query(node, "SELECT pg_reload_conf()", &[]).await?;
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, _p: &ReloadParams) -> Result<(), StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT sourcefile || ':' || sourceline || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL",
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let errs: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect();
    Err(StepError::with_stderr(
        format!("{node}: the configuration files have errors"),
        errs.join("\n"),
    ))
}
