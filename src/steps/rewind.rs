//! `rewind`: `pg_rewind --target-pgdata DIR --source-server CONNINFO` on the stopped node, as its
//! os_user, against its new upstream (connect user; a password, when the topology has one, goes
//! through a temporary 0600 passfile beside the data directory, never argv or environment).
//!
//! A marker `<data_dir>.pgtopo-rewinding` exists while pg_rewind works: a directory that
//! pg_rewind did not finish is never started (see `server::start`), and the next apply rewinds it
//! again. PostgreSQL ≥ 13's pg_rewind runs crash recovery on an uncleanly stopped target itself.
//! pg_rewind copies the source's configuration: `configure_standby` re-asserts the node's own.

use std::time::Duration;

use super::{conf, control, server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::RewindParams;

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &RewindParams,
) -> Result<Freshness, StepError> {
    if server::pid_file_exists(ctx, node).await? && server::running_per_pg_ctl(ctx, node).await? {
        return Err(StepError::new(format!(
            "{node}: pg_rewind needs the server stopped, and it runs"
        )));
    }
    if server::file_exists(ctx, node, &server::rewind_marker(ctx, node)?).await? {
        return Ok(Freshness::Dirty(
            "an earlier pg_rewind did not finish".into(),
        ));
    }
    Ok(Freshness::Dirty(p.reason.clone()))
}

pub async fn act(ctx: &StepContext, node: &str, p: &RewindParams) -> Result<(), StepError> {
    let n = ctx.node(node)?.clone();
    let src = ctx.node(&p.source)?.clone();
    let t = ctx.transport(node)?.clone();
    let io = |e: crate::transport::TransportError| StepError::new(e.to_string());
    let marker = server::rewind_marker(ctx, node)?;
    t.write_file_atomic(&marker, p.reason.as_bytes(), 0o600)
        .await
        .map_err(io)?;

    let user = &ctx.desired.connect.user;
    let conninfo = format!(
        "host={} port={} user={} dbname={}",
        conf::conninfo_value(&src.host),
        src.port,
        conf::conninfo_value(user),
        conf::conninfo_value(&ctx.desired.connect.dbname)
    );
    let mut cmd = ctx
        .tool(&n, "pg_rewind")
        .arg("--target-pgdata")
        .arg(n.data_dir.as_os_str())
        .arg("--source-server")
        .arg(conninfo)
        .timeout(Duration::from_secs(6 * 3600));
    let mut passfile = None;
    if let Some(r) = &ctx.desired.connect.password {
        let secret = r.resolve().map_err(|e| StepError::new(e.to_string()))?;
        let mut path = n.data_dir.as_os_str().to_owned();
        path.push(".pgtopo-rewind.pgpass");
        let path = std::path::PathBuf::from(path);
        let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        let line = format!(
            "{}:{}:*:{}:{}\n",
            esc(&src.host),
            src.port,
            esc(user),
            esc(secret.expose())
        );
        t.write_file_atomic(&path, line.as_bytes(), 0o600)
            .await
            .map_err(io)?;
        cmd = cmd.env("PGPASSFILE", path.display().to_string());
        passfile = Some(path);
    }
    let res = ctx.run_tool(node, &cmd).await;
    if let Some(pf) = passfile {
        let _ = t.remove_file(&pf).await;
    }
    res?;
    t.remove_file(&marker).await.map_err(io)?;
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, _p: &RewindParams) -> Result<(), StepError> {
    if server::file_exists(ctx, node, &server::rewind_marker(ctx, node)?).await? {
        return Err(StepError::new(format!("{node}: pg_rewind did not finish")));
    }
    control::read(ctx, node).await.map(|_| ())
}
