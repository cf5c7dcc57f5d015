//! `clone`: a fresh copy of the upstream with `pg_basebackup -X stream -c fast [-C] -S slot`,
//! run on the node's host as its os_user, connecting over TCP as the replication role (password
//! from ~/.pgpass, `-w`: never a prompt). An existing non-empty data directory is moved aside to
//! `<data_dir>.pgtopo-old-<UTC timestamp>` — never deleted. When the slot already exists on the
//! source (an earlier attempt created it) it is reused instead of created. Already done when the
//! directory holds a complete copy of the source (pg_basebackup sends `global/pg_control` last,
//! so its presence with the source's system identifier means the copy finished) and no move
//! aside was planned. A clone that replaces a directory whose rewind did not finish gets the
//! node's own configuration that the rewind recorded (`own_config`), all but a pg_wal symlink.

use std::path::PathBuf;
use std::time::Duration;

use super::{control, data_dir, own_config, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::CloneParams;

async fn listing(ctx: &StepContext, node: &str) -> Result<Option<Vec<String>>, StepError> {
    let n = ctx.node(node)?;
    ctx.transport(node)?
        .list_dir(&n.data_dir)
        .await
        .map_err(|e| StepError::new(e.to_string()))
}

async fn source_sysid(ctx: &StepContext, source: &str) -> Result<String, StepError> {
    let rows = ctx
        .query(
            source,
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await?;
    Ok(rows
        .first()
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_default())
}

async fn complete_copy_of_source(
    ctx: &StepContext,
    node: &str,
    source: &str,
) -> Result<bool, StepError> {
    let n = ctx.node(node)?;
    let t = ctx.transport(node)?;
    let pg_control = t
        .read_file(&n.data_dir.join("global").join("pg_control"))
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    let Some(snap) = pg_control.as_deref().and_then(control::parse) else {
        return Ok(false);
    };
    Ok(snap.system_identifier == source_sysid(ctx, source).await?)
}

pub async fn check(ctx: &StepContext, node: &str, p: &CloneParams) -> Result<Freshness, StepError> {
    match listing(ctx, node).await? {
        None => Ok(Freshness::Dirty("the data directory does not exist".into())),
        Some(l) if l.is_empty() => Ok(Freshness::Dirty("the data directory is empty".into())),
        Some(_) if p.move_aside => Ok(Freshness::Dirty(format!(
            "{} (the directory is moved aside)",
            p.reason
        ))),
        Some(_) => Ok(if complete_copy_of_source(ctx, node, &p.source).await? {
            Freshness::Fresh
        } else {
            Freshness::Dirty("the data directory holds no complete copy of the source".into())
        }),
    }
}

/// `<data_dir>.pgtopo-old-<UTC timestamp>`.
pub fn aside_path(data_dir: &std::path::Path, now: std::time::SystemTime) -> PathBuf {
    let ts = humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace([':', '-'], "");
    let mut p = data_dir.as_os_str().to_owned();
    p.push(format!(".pgtopo-old-{ts}"));
    PathBuf::from(p)
}

/// How often a clone is tried when a concurrent checkpoint removed WAL it still needed.
const CLONE_ATTEMPTS: u32 = 3;

pub async fn act(ctx: &StepContext, node: &str, p: &CloneParams) -> Result<(), StepError> {
    let n = ctx.node(node)?.clone();
    let t = ctx.transport(node)?.clone();
    let io = |e: crate::transport::TransportError| StepError::new(e.to_string());
    super::debian::ensure_cluster(ctx, node, &p.source).await?;
    let mut own = None;
    match listing(ctx, node).await? {
        Some(l) if !l.is_empty() => {
            if data_dir::pid_file_exists(ctx, node).await?
                && data_dir::running_per_pg_ctl(ctx, node).await?
            {
                return Err(StepError::new(format!(
                    "{node}: refusing to move aside the data directory of a running server"
                )));
            }
            let aside = aside_path(&n.data_dir, std::time::SystemTime::now());
            t.rename(&n.data_dir, &aside).await.map_err(io)?;
            // A rewind that did not finish marked the directory now moved aside.
            let marker = data_dir::rewind_marker(ctx, node)?;
            if data_dir::file_exists(ctx, node, &marker).await? {
                own = own_config::load(ctx, node).await?;
                t.remove_file(&marker).await.map_err(io)?;
            }
            tracing::info!(node, from = %n.data_dir.display(), to = %aside.display(), "data directory moved aside");
        }
        Some(_) => {}
        None => {
            if let Some(parent) = n.data_dir.parent() {
                if t.list_dir(parent).await.map_err(io)?.is_none() {
                    t.create_dir(parent, 0o755).await.map_err(io)?;
                }
            }
        }
    }
    // Two base backups started together from one source can race: each start forces a WAL
    // switch and a checkpoint, which may remove the segment the other one has still to stream
    // before its slot (created by the same pg_basebackup) holds it. pg_basebackup then fails
    // with "requested WAL segment … has already been removed" and removes what it copied; a
    // fresh attempt is safe and sees the slot as it is now.
    let mut attempt = 1;
    loop {
        let src = ctx.node(&p.source)?.clone();
        let mut cmd = ctx
            .tool(&n, "pg_basebackup")
            .arg("-h")
            .arg(&src.host)
            .arg("-p")
            .arg(src.port.to_string())
            .arg("-U")
            .arg(&ctx.desired.replication.user)
            .arg("-D")
            .arg(n.data_dir.as_os_str())
            .arg("-X")
            .arg("stream")
            .arg("-c")
            .arg("fast")
            .arg("-w")
            .timeout(Duration::from_secs(12 * 3600));
        if ctx.desired.replication.password.is_some() {
            let passfile = super::write_pgpass::pgpass_path(ctx, node).await?;
            cmd = cmd.env("PGPASSFILE", passfile.display().to_string());
        }
        // TLS and stall keywords as a connection string; -h, -p and -U above still apply.
        let tls = super::conf::tls_keywords(ctx.desired.replication_tls(node).as_ref());
        let kw = format!("{tls}{}", crate::pg::stall_keywords());
        cmd = cmd.arg("-d").arg(kw.trim_start());
        if let Some(slot) = &p.slot {
            match super::create_slot::slot_exists(ctx, &p.source, slot).await? {
                Some(true) => {
                    return Err(StepError::new(format!(
                    "{}: slot {slot} is in use by another connection; cannot clone {node} through it",
                    p.source
                )))
                }
                Some(false) => cmd = cmd.arg("-S").arg(slot),
                None => cmd = cmd.arg("-C").arg("-S").arg(slot),
            }
        }
        match ctx.run_tool(node, &cmd).await {
            Ok(_) => break,
            Err(e)
                if attempt < CLONE_ATTEMPTS
                    && e.stderr.as_deref().is_some_and(|s| {
                        s.contains("has already been removed")
                            || s.contains("terminating connection due to administrator command")
                    }) =>
            {
                // PostgreSQL 16 invalidates the slot such a checkpoint overtook and ends its
                // walsender ("terminating connection due to administrator command"): the
                // invalidated slot, which holds nothing for a node that has no data yet, is
                // dropped so that the next attempt creates it again.
                // Best effort: a source that is gone makes the next attempt fail with its cause.
                if let Some(slot) = &p.slot {
                    let _ = ctx
                        .query(
                            &p.source,
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                         WHERE slot_name = $1 AND NOT active AND wal_status = 'lost'",
                            &[slot],
                        )
                        .await;
                }
                tracing::info!(
                    node,
                    attempt,
                    "pg_basebackup lost a WAL segment or its slot to a concurrent checkpoint; trying again"
                );
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    // An empty directory that already existed keeps its mode: PostgreSQL wants 0700.
    ctx.run_tool(
        node,
        &crate::transport::CommandSpec::new("chmod")
            .arg("0700")
            .arg(n.data_dir.as_os_str())
            .timeout(Duration::from_secs(30)),
    )
    .await?;
    // The node's own configuration, recorded before the rewind this clone replaces.
    let own = own.map(own_config::OwnConfig::for_clone);
    own_config::put_back(ctx, node, own.as_ref()).await
}

pub async fn verify(ctx: &StepContext, node: &str, p: &CloneParams) -> Result<(), StepError> {
    if complete_copy_of_source(ctx, node, &p.source).await? {
        Ok(())
    } else {
        Err(StepError::new(format!(
            "{node}: the data directory holds no complete copy of {}",
            p.source
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aside_name_carries_a_utc_timestamp() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            aside_path(std::path::Path::new("/d/main"), t),
            PathBuf::from("/d/main.pgtopo-old-20231114T221320Z")
        );
    }
}
