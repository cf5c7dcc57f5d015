//! `analyze`: `vacuumdb --all --analyze-in-stages` on the upgraded primary (with
//! `--missing-stats-only` from PostgreSQL 18 on, which carries most statistics over), so that the
//! planner has statistics again. It connects over TCP as `connect.user`, with the topology's
//! connect password through a temporary passfile (`data_dir::connect_passfile`; `-w`, never a
//! prompt). Nothing in the plan waits for it. Never
//! fresh: it is cheap to run again.

use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::AnalyzeParams;

pub async fn check(_: &StepContext, _: &str, _: &AnalyzeParams) -> Result<Freshness, StepError> {
    Ok(Freshness::Dirty(
        "statistics after a major-version upgrade".into(),
    ))
}

pub async fn act(ctx: &StepContext, node: &str, p: &AnalyzeParams) -> Result<(), StepError> {
    let n = ctx.node(node)?.clone();
    let mut cmd = ctx
        .tool(&n, "vacuumdb")
        .arg("--all")
        .arg("--analyze-in-stages")
        .arg("-h")
        .arg(&n.host)
        .arg("-p")
        .arg(n.port.to_string())
        .arg("-U")
        .arg(&ctx.desired.connect.user)
        .arg("-w")
        .timeout(Duration::from_secs(12 * 3600));
    if p.missing_stats_only {
        cmd = cmd.arg("--missing-stats-only");
    }
    let passfile = super::data_dir::connect_passfile(ctx, &n, &n, "analyze").await?;
    if let Some(path) = &passfile {
        cmd = cmd.env("PGPASSFILE", path.display().to_string());
    }
    let res = ctx.run_tool(node, &cmd).await.map(|_| ());
    if let Some(path) = &passfile {
        let _ = ctx.transport(node)?.remove_file(path).await;
    }
    res
}

pub async fn verify(_: &StepContext, _: &str, _: &AnalyzeParams) -> Result<(), StepError> {
    Ok(())
}
