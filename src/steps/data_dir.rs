//! A node's data directory as pgtopo sees it through the node's transport: the paths of the
//! files in it and beside it (postmaster.pid, postgresql.auto.conf, the server log, the rewind
//! marker) and what can be read from them without a server — whether a server runs on it, its
//! major version, whether it holds a finished pg_rewind nobody started yet. Below `server`,
//! `rewind` and `settings`, which all ask these questions.

use std::path::PathBuf;
use std::time::Duration;

use super::StepContext;
use crate::apply::StepError;

/// `<data_dir>/postmaster.pid`.
pub fn pid_file(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    Ok(ctx.node(node)?.data_dir.join("postmaster.pid"))
}

/// The server log beside the data directory: `<data_dir>.log`.
pub fn log_file(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    Ok(crate::config::service::log_file(ctx.node(node)?))
}

/// Marker beside the data directory while pg_rewind works on it: such a directory is never
/// started.
pub fn rewind_marker(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    let mut p = ctx.node(node)?.data_dir.as_os_str().to_owned();
    p.push(".pgtopo-rewinding");
    Ok(PathBuf::from(p))
}

/// Whether `postmaster.pid` exists (a server runs, or crashed and left it).
pub async fn pid_file_exists(ctx: &StepContext, node: &str) -> Result<bool, StepError> {
    let t = ctx.transport(node)?;
    t.read_file(&pid_file(ctx, node)?)
        .await
        .map(|b| b.is_some())
        .map_err(|e| StepError::new(e.to_string()))
}

/// Whether a file exists on the node's host.
pub async fn file_exists(
    ctx: &StepContext,
    node: &str,
    path: &std::path::Path,
) -> Result<bool, StepError> {
    ctx.transport(node)?
        .read_file(path)
        .await
        .map(|b| b.is_some())
        .map_err(|e| StepError::new(e.to_string()))
}

/// The node's `postgresql.auto.conf`.
pub fn auto_conf_path(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    Ok(ctx.node(node)?.data_dir.join("postgresql.auto.conf"))
}

/// `pg_ctl status`: true when a server runs on the data directory.
pub async fn running_per_pg_ctl(ctx: &StepContext, node: &str) -> Result<bool, StepError> {
    let n = ctx.node(node)?;
    let cmd = ctx
        .tool(n, "pg_ctl")
        .arg("status")
        .arg("-D")
        .arg(n.data_dir.as_os_str())
        .timeout(Duration::from_secs(30));
    let out = ctx
        .transport(node)?
        .run(&cmd)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    // 0: running; 3: not running; 4: no accessible data directory.
    Ok(out.code == Some(0))
}

/// Whether the node's host has little dirty data waiting for write-back (`Dirty` + `Writeback`
/// in /proc/meminfo ≤ 32 MB), so that a syncfs(2) — which flushes everything dirty on its file
/// system, not only PostgreSQL's files — cannot cost much more than fsyncing each file. False
/// when unknown.
pub async fn little_dirty(ctx: &StepContext, node: &str) -> bool {
    const LIMIT_KB: u64 = 32 * 1024;
    let Ok(t) = ctx.transport(node) else {
        return false;
    };
    let Ok(Some(bytes)) = t.read_file(std::path::Path::new("/proc/meminfo")).await else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    match (kb("Dirty:"), kb("Writeback:")) {
        (Some(d), Some(w)) => d + w <= LIMIT_KB,
        _ => false,
    }
}

/// The major version in the data directory's PG_VERSION, when readable.
pub async fn pg_major(ctx: &StepContext, node: &str) -> Option<u32> {
    let n = ctx.node(node).ok()?;
    let bytes = ctx
        .transport(node)
        .ok()?
        .read_file(&n.data_dir.join("PG_VERSION"))
        .await
        .ok()??;
    String::from_utf8_lossy(&bytes).trim().parse().ok()
}

/// The data directory holds the result of a finished pg_rewind that nobody started yet:
/// pg_rewind's backup_label and a control file "in archive recovery".
pub async fn rewound(ctx: &StepContext, node: &str) -> Result<bool, StepError> {
    let n = ctx.node(node)?;
    let label = ctx
        .transport(node)?
        .read_file(&n.data_dir.join("backup_label"))
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    let by_rewind = label.is_some_and(|b| {
        String::from_utf8_lossy(&b)
            .lines()
            .any(|l| l.trim() == "BACKUP METHOD: pg_rewind")
    });
    if !by_rewind {
        return Ok(false);
    }
    Ok(super::control::read(ctx, node).await?.state == "in archive recovery")
}

/// Bytes free on the file system that holds the node's pg_wal (a symlinked pg_wal followed),
/// as `df` on the node's host reports them.
pub async fn wal_free_bytes(ctx: &StepContext, node: &str) -> Result<u64, StepError> {
    let dir = ctx.node(node)?.data_dir.join("pg_wal").join("");
    let cmd = crate::transport::CommandSpec::new("df")
        .arg("-Pk")
        .arg(dir)
        .timeout(Duration::from_secs(10));
    let out = ctx.run_tool(node, &cmd).await?;
    let text = out.stdout_text();
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| StepError::new(format!("{node}: df printed no free space: {text}")))
}

/// When the topology has a connect password: a temporary 0600 passfile beside `n`'s data
/// directory (`<data_dir>.pgtopo-<purpose>.pgpass`) with the entry for `connect.user` at `to`,
/// for a tool run on `n`'s host through `PGPASSFILE` (never argv or environment). The caller
/// removes it after the tool ran.
pub async fn connect_passfile(
    ctx: &StepContext,
    n: &crate::config::DesiredNode,
    to: &crate::config::DesiredNode,
    purpose: &str,
) -> Result<Option<PathBuf>, StepError> {
    let Some(r) = &ctx.desired.connect.password else {
        return Ok(None);
    };
    let secret = r.resolve().map_err(|e| StepError::new(e.to_string()))?;
    let mut path = n.data_dir.as_os_str().to_owned();
    path.push(format!(".pgtopo-{purpose}.pgpass"));
    let path = PathBuf::from(path);
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let line = format!(
        "{}:{}:*:{}:{}\n",
        esc(&to.host),
        to.port,
        esc(&ctx.desired.connect.user),
        esc(secret.expose())
    );
    ctx.transport(&n.name)?
        .write_file_atomic(&path, line.as_bytes(), 0o600)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    Ok(Some(path))
}
