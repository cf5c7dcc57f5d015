//! `resume_pooler`: `RESUME db` for each paused database that follows the primary. It runs even
//! when a step of the apply failed ([`crate::plan::Action::when`]): a pooler left paused is an
//! outage. The admin console is retried for a while before the step gives up.

use std::time::Duration;

use super::pooler_admin::{command, console, declared, routes};
use super::{Freshness, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::plan::ResumePoolerParams;

async fn paused(ctx: &StepContext, name: &str, dbs: &[String]) -> Result<Vec<String>, StepError> {
    let pl = declared(ctx, name)?;
    let spec = WaitSpec::new(
        format!("pooler {name}'s admin console"),
        Duration::from_secs(10),
    );
    let c = wait_until(&spec, || async {
        match console(pl).await {
            Ok(c) => Poll::Ready(c),
            Err(e) => Poll::Pending(e.message),
        }
    })
    .await?;
    let shown = routes(pl, &c, dbs).await?;
    Ok(dbs.iter().filter(|d| shown[*d].paused).cloned().collect())
}

pub async fn check(
    ctx: &StepContext,
    name: &str,
    p: &ResumePoolerParams,
) -> Result<Freshness, StepError> {
    let v = paused(ctx, name, &p.databases).await?;
    Ok(match v.is_empty() {
        true => Freshness::Fresh,
        false => Freshness::Dirty(format!("{} paused", v.join(", "))),
    })
}

pub async fn act(ctx: &StepContext, name: &str, p: &ResumePoolerParams) -> Result<(), StepError> {
    let pl = declared(ctx, name)?;
    let c = console(pl).await?;
    for d in paused(ctx, name, &p.databases).await? {
        command(pl, &c, &format!("RESUME {d}"), Duration::from_secs(10)).await?;
    }
    Ok(())
}

pub async fn verify(
    ctx: &StepContext,
    name: &str,
    p: &ResumePoolerParams,
) -> Result<(), StepError> {
    let v = paused(ctx, name, &p.databases).await?;
    match v.is_empty() {
        true => Ok(()),
        false => Err(StepError::new(format!(
            "pooler {name}: {} still paused after RESUME",
            v.join(", ")
        ))),
    }
}
