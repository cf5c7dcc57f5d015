//! What the three pooler steps share: the declared pooler of a step, a fresh admin-console
//! connection, and the state of its databases.

use std::collections::BTreeMap;
use std::time::Duration;

use super::StepContext;
use crate::apply::StepError;
use crate::config::DesiredPooler;
use crate::pooler::{self, PoolerRoute};

/// The declared pooler a step acts on.
pub fn declared<'a>(ctx: &'a StepContext, name: &str) -> Result<&'a DesiredPooler, StepError> {
    ctx.desired
        .poolers
        .get(name)
        .ok_or_else(|| StepError::new(format!("pooler {name} is not in the topology")))
}

/// A connection to the pooler's admin console.
pub async fn console(p: &DesiredPooler) -> Result<tokio_postgres::Client, StepError> {
    pooler::connect(p, Duration::from_secs(3))
        .await
        .map_err(StepError::new)
}

/// `SHOW DATABASES` for `dbs`; a database the pooler does not have is an error.
pub async fn routes(
    p: &DesiredPooler,
    c: &tokio_postgres::Client,
    dbs: &[String],
) -> Result<BTreeMap<String, PoolerRoute>, StepError> {
    let shown = pooler::show_databases(p, c).await.map_err(StepError::new)?;
    if let Some(missing) = dbs.iter().find(|d| !shown.contains_key(*d)) {
        return Err(StepError::new(format!(
            "pooler {} has no database {missing} in its [databases]",
            p.name
        )));
    }
    Ok(shown)
}

/// Run an admin command, failing after `timeout`.
pub async fn command(
    p: &DesiredPooler,
    c: &tokio_postgres::Client,
    cmd: &str,
    timeout: Duration,
) -> Result<(), StepError> {
    match tokio::time::timeout(timeout, pooler::command(p, c, cmd)).await {
        Ok(r) => r.map_err(StepError::new),
        Err(_) => Err(StepError::new(format!(
            "pooler {}: {cmd} did not finish within {timeout:?}",
            p.name
        ))),
    }
}
