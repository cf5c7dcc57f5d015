//! A node's settings as steps change them: ALTER SYSTEM on a server that answers SQL, or an edit
//! of `postgresql.auto.conf` (the pure [`conf`] model) while the server is stopped.

use std::collections::BTreeMap;

use super::conf::{edit, parse, render, valid_name, ConfLine};
use super::{conf, data_dir, StepContext};
use crate::apply::StepError;

/// Read and parse the node's `postgresql.auto.conf` (empty when it does not exist).
pub async fn read_auto_conf(ctx: &StepContext, node: &str) -> Result<Vec<ConfLine>, StepError> {
    let path = data_dir::auto_conf_path(ctx, node)?;
    let bytes = ctx
        .transport(node)?
        .read_file(&path)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    Ok(bytes
        .map(|b| parse(&String::from_utf8_lossy(&b)))
        .unwrap_or_default())
}

/// Edit the file of a stopped server (atomically, 0600).
pub async fn edit_auto_conf(
    ctx: &StepContext,
    node: &str,
    set: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<(), StepError> {
    for k in set.keys().chain(reset) {
        if !valid_name(k) {
            return Err(StepError::new(format!(
                "{node}: {k:?} is not a setting name"
            )));
        }
    }
    let lines = read_auto_conf(ctx, node).await?;
    let new = render(&edit(&lines, set, reset));
    let path = data_dir::auto_conf_path(ctx, node)?;
    ctx.transport(node)?
        .write_file_atomic(&path, new.as_bytes(), 0o600)
        .await
        .map_err(|e| StepError::new(e.to_string()))
}

/// Apply settings: ALTER SYSTEM on a server that answers SQL, else an edit of the file when the
/// server is stopped. A server that runs but does not answer is an error.
pub async fn apply_settings(
    ctx: &StepContext,
    node: &str,
    set: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<(), StepError> {
    match ctx.client(node).await {
        Ok(_) => {
            let stmts = conf::alter_system_sql(set, reset)
                .map_err(|m| StepError::new(format!("{node}: {m}")))?;
            for s in stmts {
                ctx.execute_batch(node, &s, "ALTER SYSTEM").await?;
            }
            Ok(())
        }
        Err(conn_err) => {
            if data_dir::pid_file_exists(ctx, node).await? {
                return Err(StepError::new(format!(
                    "{node}: the server runs but does not answer SQL, so its settings cannot be changed: {}",
                    conn_err.message
                )));
            }
            edit_auto_conf(ctx, node, set, reset).await
        }
    }
}
