//! `pause_pooler`: `PAUSE db` for each database that follows the primary. PAUSE returns once the
//! database's server connections are released (transaction pooling: when running transactions
//! end); clients then wait in pgbouncer instead of failing. Already paused: nothing to do.

use std::time::Duration;

use super::pooler_admin::{command, console, declared, routes};
use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::PausePoolerParams;

pub async fn check(
    ctx: &StepContext,
    name: &str,
    p: &PausePoolerParams,
) -> Result<Freshness, StepError> {
    let pl = declared(ctx, name)?;
    let shown = routes(pl, &console(pl).await?, &p.databases).await?;
    let running: Vec<&str> = p
        .databases
        .iter()
        .filter(|d| !shown[*d].paused)
        .map(String::as_str)
        .collect();
    Ok(match running.is_empty() {
        true => Freshness::Fresh,
        false => Freshness::Dirty(format!("{} not paused", running.join(", "))),
    })
}

pub async fn act(ctx: &StepContext, name: &str, p: &PausePoolerParams) -> Result<(), StepError> {
    let pl = declared(ctx, name)?;
    let c = console(pl).await?;
    let shown = routes(pl, &c, &p.databases).await?;
    let timeout = Duration::from_millis(p.timeout_ms);
    for d in p.databases.iter().filter(|d| !shown[*d].paused) {
        command(pl, &c, &format!("PAUSE {d}"), timeout).await?;
    }
    Ok(())
}

pub async fn verify(ctx: &StepContext, name: &str, p: &PausePoolerParams) -> Result<(), StepError> {
    match check(ctx, name, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(why) => Err(StepError::new(format!("pooler {name}: {why} after PAUSE"))),
    }
}
