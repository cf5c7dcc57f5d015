//! `analyze`: `vacuumdb --all --analyze-in-stages` on the upgraded primary (with
//! `--missing-stats-only` from PostgreSQL 18 on, which carries most statistics over), so that the
//! planner has statistics again. It connects over TCP as `connect.user` (password from the
//! os_user's ~/.pgpass or trust: `-w`, never a prompt). Nothing in the plan waits for it. Never
//! fresh: it is cheap to run again.

use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::upgrade::AnalyzeParams;

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
    ctx.run_tool(node, &cmd).await.map(|_| ())
}

pub async fn verify(_: &StepContext, _: &str, _: &AnalyzeParams) -> Result<(), StepError> {
    Ok(())
}
