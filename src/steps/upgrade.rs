//! `upgrade`: pg_upgrade of the primary into a new data directory (see `plan::upgrade`).
//!
//! Layout: `<work_dir>` = `<data_dir>.pgtopo-upgrade` is pg_upgrade's working directory (it
//! must be writable: pg_upgrade writes its sockets and scripts there; it is entered with
//! `env -C`, an argv, no shell); the new cluster is initialised in `<work_dir>/new`, and the
//! install superuser's name is kept in `<work_dir>/superuser` for the run phase (the old server
//! is stopped by then).
//!
//! - `check` phase: initdb of `<work_dir>/new` with the old cluster's options that pg_upgrade
//!   requires to match (install superuser, encoding, locale and provider from SQL; data
//!   checksums and WAL segment size from the old `pg_controldata`), unless it is there already;
//!   then `pg_upgrade --check`, live against the running old server. A failure carries
//!   pg_upgrade's report. Never fresh: the check runs every time.
//! - `run` phase: `pg_upgrade --link|--clone|--copy` of the stopped old cluster into
//!   `<work_dir>/new`; the node's own configuration (postgresql.conf, postgresql.auto.conf,
//!   pg_hba.conf, pg_ident.conf) is copied byte for byte into the new cluster; pg_upgrade's
//!   `delete_old_cluster.sh` is removed (after the swap it would name the new cluster); then
//!   `<data_dir>` is renamed to `<data_dir>.pgtopo-pre-upgrade-<UTC>` and `<work_dir>/new` to
//!   `<data_dir>`. Fresh when `<data_dir>/PG_VERSION` is the new major. A run that finished
//!   pg_upgrade but not the swap (the old `global/pg_control` is renamed `pg_control.old` by
//!   link mode, and the new cluster is complete) only swaps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::{UpgradeParams, UpgradePhase};
use crate::transport::{CommandSpec, TransportError};

/// The configuration files that belong to the node, carried into the new cluster.
const OWN_FILES: &[&str] = &[
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
];

fn io(e: TransportError) -> StepError {
    StepError::new(e.to_string())
}

fn new_dir(p: &UpgradeParams) -> PathBuf {
    Path::new(&p.work_dir).join("new")
}

/// `<data_dir>.pgtopo-pre-upgrade-<UTC timestamp>`.
pub fn kept_path(data_dir: &Path, now: std::time::SystemTime) -> PathBuf {
    let ts = humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace([':', '-'], "");
    let mut p = data_dir.as_os_str().to_owned();
    p.push(format!(".pgtopo-pre-upgrade-{ts}"));
    PathBuf::from(p)
}

async fn pg_version(ctx: &StepContext, node: &str, dir: &Path) -> Result<Option<u32>, StepError> {
    let text = ctx
        .transport(node)?
        .read_file(&dir.join("PG_VERSION"))
        .await
        .map_err(io)?;
    Ok(text.and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok()))
}

async fn exists(ctx: &StepContext, node: &str, path: &Path) -> Result<bool, StepError> {
    super::data_dir::file_exists(ctx, node, path).await
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &UpgradeParams,
) -> Result<Freshness, StepError> {
    let data_dir = ctx.node(node)?.data_dir.clone();
    Ok(match p.phase {
        UpgradePhase::Check => Freshness::Dirty("pg_upgrade --check runs every time".into()),
        UpgradePhase::Run if pg_version(ctx, node, &data_dir).await? == Some(p.to_major) => {
            Freshness::Fresh
        }
        UpgradePhase::Run => Freshness::Dirty(format!(
            "{} holds PostgreSQL {} data",
            data_dir.display(),
            p.from_major
        )),
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &UpgradeParams) -> Result<(), StepError> {
    match p.phase {
        UpgradePhase::Check => {
            init_new_cluster(ctx, node, p).await?;
            pg_upgrade(ctx, node, p, true).await
        }
        UpgradePhase::Run => run(ctx, node, p).await,
    }
}

pub async fn verify(ctx: &StepContext, node: &str, p: &UpgradeParams) -> Result<(), StepError> {
    if p.phase == UpgradePhase::Check {
        return Ok(());
    }
    let data_dir = ctx.node(node)?.data_dir.clone();
    match pg_version(ctx, node, &data_dir).await? {
        Some(v) if v == p.to_major => Ok(()),
        v => Err(StepError::new(format!(
            "{node}: {} holds PostgreSQL {} data after the upgrade, not {}",
            data_dir.display(),
            v.map_or("no".to_string(), |v| v.to_string()),
            p.to_major
        ))),
    }
}

/// What initdb needs to know of the old cluster.
struct OldOptions {
    superuser: String,
    initdb_args: Vec<String>,
}

async fn old_options(
    ctx: &StepContext,
    node: &str,
    p: &UpgradeParams,
) -> Result<OldOptions, StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT (SELECT rolname::text FROM pg_roles WHERE oid = 10), \
                    pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text, \
                    to_jsonb(d)->>'datlocprovider', \
                    coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale') \
             FROM pg_database d WHERE d.datname = 'template0'",
            &[],
        )
        .await?;
    let r = rows
        .first()
        .ok_or_else(|| StepError::new(format!("{node}: template0 not found")))?;
    let superuser: String = r.get(0);
    let mut args = vec![
        format!("--encoding={}", r.get::<_, String>(1)),
        format!("--lc-collate={}", r.get::<_, String>(2)),
        format!("--lc-ctype={}", r.get::<_, String>(3)),
    ];
    let provider: Option<String> = r.get(4);
    let locale: Option<String> = r.get(5);
    match provider.as_deref() {
        Some("i") => {
            args.push("--locale-provider=icu".into());
            args.extend(locale.map(|l| format!("--icu-locale={l}")));
        }
        Some("b") => {
            args.push("--locale-provider=builtin".into());
            args.extend(locale.map(|l| format!("--builtin-locale={l}")));
        }
        _ => {}
    }
    let control = control_data(ctx, node, p).await?;
    let checksums = control
        .lines()
        .find_map(|l| l.strip_prefix("Data page checksum version:"))
        .map(|v| v.trim() != "0")
        .unwrap_or(false);
    // pg_upgrade needs the same checksum setting on both sides. initdb enables checksums by
    // default from 18 on (and only 18 knows `--no-data-checksums`); before 18 they are off
    // unless asked for.
    if checksums {
        args.push("--data-checksums".into());
    } else if p.to_major >= 18 {
        args.push("--no-data-checksums".into());
    }
    if let Some(bytes) = control
        .lines()
        .find_map(|l| l.strip_prefix("Bytes per WAL segment:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        args.push(format!("--wal-segsize={}", bytes / (1024 * 1024)));
    }
    Ok(OldOptions {
        superuser,
        initdb_args: args,
    })
}

/// The old cluster's control data, read with the old major's pg_controldata.
async fn control_data(
    ctx: &StepContext,
    node: &str,
    p: &UpgradeParams,
) -> Result<String, StepError> {
    let n = ctx.node(node)?;
    let cmd = CommandSpec::new(Path::new(&p.old_bin_dir).join("pg_controldata"))
        .arg(n.data_dir.as_os_str())
        .env("LC_ALL", "C")
        .timeout(Duration::from_secs(30));
    Ok(ctx.run_tool(node, &cmd).await?.stdout_text().into_owned())
}

async fn init_new_cluster(
    ctx: &StepContext,
    node: &str,
    p: &UpgradeParams,
) -> Result<(), StepError> {
    let n = ctx.node(node)?.clone();
    let t = ctx.transport(node)?.clone();
    let work = PathBuf::from(&p.work_dir);
    let new = new_dir(p);
    if pg_version(ctx, node, &new).await?.is_some()
        && exists(ctx, node, &work.join("superuser")).await?
    {
        return Ok(());
    }
    let old = old_options(ctx, node, p).await?;
    if t.list_dir(&work).await.map_err(io)?.is_some() {
        // An initdb that did not finish: start again.
        t.remove_tree(&work).await.map_err(io)?;
    }
    t.create_dir(&work, 0o700).await.map_err(io)?;
    let cmd = ctx
        .tool(&n, "initdb")
        .arg("-D")
        .arg(new.as_os_str())
        .arg("-U")
        .arg(&old.superuser)
        // Only pg_upgrade's own servers (unix socket in the 0700 work directory) use these
        // rules: the node's pg_hba.conf replaces them before the new cluster starts.
        .arg("--auth=trust")
        .args(&old.initdb_args)
        .timeout(Duration::from_secs(600));
    ctx.run_tool(node, &cmd).await?;
    t.write_file_atomic(&work.join("superuser"), old.superuser.as_bytes(), 0o600)
        .await
        .map_err(io)
}

async fn superuser(ctx: &StepContext, node: &str, p: &UpgradeParams) -> Result<String, StepError> {
    let path = Path::new(&p.work_dir).join("superuser");
    let bytes = ctx.transport(node)?.read_file(&path).await.map_err(io)?;
    bytes
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .ok_or_else(|| {
            StepError::new(format!(
                "{node}: {} is missing: the pg_upgrade --check step did not run",
                path.display()
            ))
        })
}

/// `env -C <work_dir> <bin_dir>/pg_upgrade …` (pg_upgrade needs a writable working directory).
async fn pg_upgrade(
    ctx: &StepContext,
    node: &str,
    p: &UpgradeParams,
    check: bool,
) -> Result<(), StepError> {
    let n = ctx.node(node)?.clone();
    let su = superuser(ctx, node, p).await?;
    let mut cmd = CommandSpec::new("env")
        .arg("-C")
        .arg(&p.work_dir)
        .arg(n.bin_dir.join("pg_upgrade"))
        .arg("-b")
        .arg(&p.old_bin_dir)
        .arg("-B")
        .arg(n.bin_dir.as_os_str())
        .arg("-d")
        .arg(n.data_dir.as_os_str())
        .arg("-D")
        .arg(new_dir(p).as_os_str())
        .arg("-U")
        .arg(su)
        .timeout(Duration::from_secs(12 * 3600));
    cmd = if check {
        cmd.arg("--check")
    } else {
        cmd.arg(p.mode.flag())
    };
    match ctx.run_tool(node, &cmd).await {
        Ok(_) => Ok(()),
        Err(mut e) => {
            // pg_upgrade reports on stdout; its stderr is mostly empty.
            e.message = format!(
                "{}; pg_upgrade{} refused: {}",
                e.message,
                if check { " --check" } else { "" },
                if check {
                    "nothing was stopped or changed; fix what it reports (its logs are under the new cluster's pg_upgrade_output.d), then run apply again"
                } else {
                    "the old cluster was not started again; see its report"
                }
            );
            Err(e)
        }
    }
}

async fn run(ctx: &StepContext, node: &str, p: &UpgradeParams) -> Result<(), StepError> {
    let n = ctx.node(node)?.clone();
    let t = ctx.transport(node)?.clone();
    let new = new_dir(p);
    if pg_version(ctx, node, &new).await?.is_none() {
        return Err(StepError::new(format!(
            "{node}: no new cluster in {}: the pg_upgrade --check step did not run",
            new.display()
        )));
    }
    let linked = !exists(ctx, node, &n.data_dir.join("global/pg_control")).await?
        && exists(ctx, node, &n.data_dir.join("global/pg_control.old")).await?;
    if !linked {
        pg_upgrade(ctx, node, p, false).await?;
    }
    for f in OWN_FILES {
        if let Some(bytes) = t.read_file(&n.data_dir.join(f)).await.map_err(io)? {
            t.write_file_atomic(&new.join(f), &bytes, 0o600)
                .await
                .map_err(io)?;
        }
    }
    t.remove_file(&Path::new(&p.work_dir).join("delete_old_cluster.sh"))
        .await
        .map_err(io)?;
    let kept = kept_path(&n.data_dir, std::time::SystemTime::now());
    t.rename(&n.data_dir, &kept).await.map_err(io)?;
    t.rename(&new, &n.data_dir).await.map_err(io)?;
    tracing::info!(node, kept = %kept.display(), "upgraded; the old cluster is kept");
    ctx.remove_later(node, PathBuf::from(&p.work_dir));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_name_carries_a_utc_timestamp() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            kept_path(Path::new("/d/main"), t),
            PathBuf::from("/d/main.pgtopo-pre-upgrade-20231114T221320Z")
        );
    }
}
