//! `rewind`: `pg_rewind --target-pgdata DIR --source-server CONNINFO` on the stopped node, as its
//! os_user, against its new upstream (connect user; a password, when the topology has one, goes
//! through a temporary 0600 passfile beside the data directory, never argv or environment; so
//! do copies of connect.user's client certificate and key when it has one).
//!
//! A marker `<data_dir>.pgtopo-rewinding` exists while pg_rewind works: a directory that
//! pg_rewind did not finish is never started (see `server::start`), and the next apply rewinds it
//! again. When pgtopo was killed but pg_rewind itself ran to its end (it runs in its own process
//! group), the directory is recognised as rewound — `backup_label` says `BACKUP METHOD:
//! pg_rewind` and the control file is "in archive recovery", the two things pg_rewind writes
//! last — and the marker is cleared instead ([`finish_interrupted`]).
//!
//! An uncleanly stopped target (crashed, killed) gets its crash recovery from pgtopo first:
//! `postgres --single -c wal_keep_size=<max>` (`wal_keep_segments` on 12). pg_rewind ≥ 13 would
//! run the same single-user recovery itself, but its end-of-recovery checkpoint recycles the WAL
//! from the last checkpoint before the fork — exactly what pg_rewind reads next ("could not find
//! previous WAL record").
//! Single-user mode refuses to run with `standby.signal` ("standby mode is not supported by
//! single-user servers"): a fenced node has one, so it is removed for the duration of the
//! recovery and pg_rewind (pg_rewind deletes it anyway: the source has none). Whatever the outcome,
//! `standby.signal` is written back before the step ends, so a rewound (or half-rewound)
//! directory started by anyone comes up in recovery, never as a primary. (PostgreSQL 12's
//! pg_rewind needs a cleanly stopped target, which this recovery gives it; untested on 12.)
//!
//! pg_rewind copies the source's configuration files over the node's and removes those only the
//! node has: the node's own are recorded before it runs and put back byte for byte after it,
//! modes and a symlinked pg_wal included ([`own_config`]); `configure_standby` then sets the
//! recovery settings and the node's port and listen_addresses.
//!
//! Where pg_rewind's time went, measured with a 1 GB database and 10 MB of divergence
//! (`benches/rejoin.sh`: pg_rewind 0.8 s before, ~0.16 s after, sync included):
//! - Its source file list is one recursive query whose estimated cost crosses `jit_above_cost`;
//!   compiling it took ~200 ms of the source's time. The source session runs with `jit=off`.
//! - It unlinks every WAL segment the target has that the source does not, one by one — mostly
//!   the segments a cleanly shut down target had recycled for future use (max_wal_size worth,
//!   ~3.5 ms each on ext4). Segments wholly after the target's shutdown checkpoint hold no WAL:
//!   they are moved into `<data_dir>.pgtopo-recycled-wal` (a rename each, never a copy: skipped
//!   when that is another filesystem), which apply removes after its last step. (Removed while
//!   pg_rewind ran, it slowed pg_rewind's own writes by ~100 ms.) A directory left by a killed
//!   pgtopo holds only garbage; the next rewind of the node removes it with its own.
//! - Its final sync fsyncs each file of the directory, every written one a device flush
//!   (~70 ms). One syncfs(2) per file system does the same ([`sync_data_dir`]; pg_rewind ≥ 17:
//!   `--sync-method=syncfs`), before the marker is cleared; an interrupted rewind that is
//!   finished later is synced again first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{conf, control, data_dir, own_config, rewind_wal, Freshness, StepContext};
use crate::apply::StepError;
use crate::config::DesiredNode;
use crate::plan::RewindParams;
use crate::transport::{DynTransport, TransportError};
use crate::units::{parse_wal_segment, wal_segment_name};

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &RewindParams,
) -> Result<Freshness, StepError> {
    if data_dir::pid_file_exists(ctx, node).await?
        && data_dir::running_per_pg_ctl(ctx, node).await?
    {
        return Err(StepError::new(format!(
            "{node}: pg_rewind needs the server stopped, and it runs"
        )));
    }
    if data_dir::file_exists(ctx, node, &data_dir::rewind_marker(ctx, node)?).await? {
        return Ok(Freshness::Dirty(if data_dir::rewound(ctx, node).await? {
            "an earlier pg_rewind finished after pgtopo was interrupted".into()
        } else {
            "an earlier pg_rewind did not finish".into()
        }));
    }
    Ok(Freshness::Dirty(p.reason.clone()))
}

fn io(e: TransportError) -> StepError {
    StepError::new(e.to_string())
}

/// `standby.signal` in the node's data directory.
async fn write_standby_signal(ctx: &StepContext, node: &str) -> Result<(), StepError> {
    let n = ctx.node(node)?;
    ctx.transport(node)?
        .write_file_atomic(&n.data_dir.join("standby.signal"), b"", 0o600)
        .await
        .map_err(io)
}

/// A rewind marker left by an interrupted pgtopo whose pg_rewind nevertheless finished: make
/// the directory a (not yet configured) standby and clear the marker. Returns whether the
/// marker is gone. Used by `server::start` before it refuses a marked directory.
pub async fn finish_interrupted(ctx: &StepContext, node: &str) -> Result<bool, StepError> {
    let marker = data_dir::rewind_marker(ctx, node)?;
    if !data_dir::file_exists(ctx, node, &marker).await? {
        return Ok(true);
    }
    if !data_dir::rewound(ctx, node).await? {
        return Ok(false);
    }
    // pgtopo may have been killed between pg_rewind --no-sync and the sync that follows it.
    sync_data_dir(ctx, node).await?;
    write_standby_signal(ctx, node).await?;
    let own = own_config::load(ctx, node).await?;
    own_config::put_back(ctx, node, own.as_ref())
        .await
        .map_err(|e| own_config_not_back(node, e))?;
    ctx.transport(node)?
        .remove_file(&marker)
        .await
        .map_err(io)?;
    tracing::info!(node, "an interrupted rewind had finished; marker cleared");
    Ok(true)
}

pub async fn act(ctx: &StepContext, node: &str, p: &RewindParams) -> Result<(), StepError> {
    let n = ctx.node(node)?.clone();
    let src = ctx.node(&p.source)?.clone();
    let t = ctx.transport(node)?.clone();
    let marker = data_dir::rewind_marker(ctx, node)?;
    if data_dir::file_exists(ctx, node, &marker).await? && data_dir::rewound(ctx, node).await? {
        // pgtopo was interrupted after pg_rewind had done its work: nothing to copy again.
        return finish_interrupted(ctx, node).await.map(|_| ());
    }
    let own = own_config_before(ctx, node, &marker).await?;
    t.write_file_atomic(&marker, p.reason.as_bytes(), 0o600)
        .await
        .map_err(io)?;
    let ctl = recover_if_unclean(ctx, node, &n).await?;
    let recycled = match &ctl {
        Some(c) => set_aside_recycled_wal(ctx, node, c).await?,
        None => None,
    };
    let wal = WalAside {
        recycled,
        kept: rewind_wal::keep(ctx, node).await?,
        seg_size: ctl.as_ref().and_then(|c| c.wal_segment_size),
    };
    let sync = sync_method(ctx, node).await;
    let cert = copy_client_cert(ctx, &n, &t).await?;
    let mut cmd = ctx
        .tool(&n, "pg_rewind")
        .arg("--target-pgdata")
        .arg(n.data_dir.as_os_str())
        .arg("--source-server")
        .arg(source_conninfo(ctx, node, &src, cert.as_ref()))
        .arg("--progress")
        .args(restore_target_wal(ctx, node).await)
        .args(match sync {
            Sync::PgRewind => None,
            Sync::PgRewindSyncfs => Some("--sync-method=syncfs"),
            Sync::Syncfs => Some("--no-sync"),
        })
        .timeout(Duration::from_secs(6 * 3600));
    let passfile = data_dir::connect_passfile(ctx, &n, &src, "rewind").await?;
    if let Some(path) = &passfile {
        cmd = cmd.env("PGPASSFILE", path.display().to_string());
    }
    let mut said = String::new();
    let res = ctx.run_tool(node, &cmd).await.map(|out| {
        // "need to copy 39 MB (total source directory size is 1101 MB)"
        if let Some(line) = out.stderr.lines().find(|l| l.contains("need to copy")) {
            tracing::info!(node, "{}", line.trim_start_matches("pg_rewind: "));
        }
        said = out.stderr;
    });
    let res = wal.after_pg_rewind(ctx, node, res, &said, sync).await;
    let temporary = passfile
        .into_iter()
        .chain(cert.into_iter().flat_map(|(c, k)| [c, k]));
    for f in temporary {
        let _ = t.remove_file(&f).await;
    }
    // Rewound or not, the directory must never come up as a primary.
    let fenced = write_standby_signal(ctx, node).await;
    if let Err(e) = res {
        return Err(rewind_failed(node, e));
    }
    fenced?;
    own_config::put_back(ctx, node, own.as_ref())
        .await
        .map_err(|e| own_config_not_back(node, e))?;
    t.remove_file(&marker).await.map_err(io)?;
    Ok(())
}

/// The target's control file, after pgtopo's own crash recovery when it was not stopped cleanly
/// (None when the control file cannot be read).
async fn recover_if_unclean(
    ctx: &StepContext,
    node: &str,
    n: &DesiredNode,
) -> Result<Option<control::ControlSnapshot>, StepError> {
    let ctl = control::read(ctx, node).await.ok();
    let clean = ctl.as_ref().is_some_and(|c| {
        crate::observe::shut_down_cleanly(&c.state, crate::observe::CleanAs::Either)
    });
    if clean {
        return Ok(ctl);
    }
    // Single-user crash recovery cannot run in standby mode.
    let signal = n.data_dir.join("standby.signal");
    if data_dir::file_exists(ctx, node, &signal).await? {
        ctx.transport(node)?
            .remove_file(&signal)
            .await
            .map_err(io)?;
    }
    // Crash recovery here, not pg_rewind's own: its end-of-recovery checkpoint would
    // recycle the WAL between the last checkpoint before the fork and the fork, which
    // pg_rewind then needs ("could not find previous WAL record"). wal_keep_size at its
    // maximum keeps every segment (wal_keep_segments before PostgreSQL 13).
    let keep = if data_dir::pg_major(ctx, node).await.is_some_and(|v| v < 13) {
        "wal_keep_segments=2147483647"
    } else {
        "wal_keep_size=2147483647"
    };
    let mut recover = ctx
        .tool(n, "postgres")
        .arg("--single")
        .arg("-F")
        .arg("-D")
        .arg(n.data_dir.as_os_str())
        .arg("-c")
        .arg(keep);
    if let Some(conf) = n.outside_config_file() {
        // A Debian cluster: its data directory holds no configuration.
        recover = recover
            .arg("-c")
            .arg(format!("config_file={}", conf.display()));
    }
    let recover = recover
        .arg("template1")
        .timeout(Duration::from_secs(6 * 3600));
    if let Err(mut e) = ctx.run_tool(node, &recover).await {
        let _ = write_standby_signal(ctx, node).await;
        e.message = format!(
            "{}: crash recovery (single-user) before pg_rewind failed; {node}'s data directory is marked unfinished and is never started: the next `pgtopo apply` clones {node} again",
            e.message
        );
        return Err(e);
    }
    // Recovery ended with a shutdown checkpoint: the control file changed.
    Ok(control::read(ctx, node).await.ok())
}

/// pg_rewind's `--source-server`: the new upstream as connect.user, without JIT.
/// pg_rewind's `--source-server`: the server is checked as the node's replication connections
/// check it; pg_rewind logs in as connect.user, so it offers connect.user's client certificate
/// (`cert`: the copies [`copy_client_cert`] made on the node's host), never the replication
/// role's.
fn source_conninfo(
    ctx: &StepContext,
    node: &str,
    src: &DesiredNode,
    cert: Option<&(PathBuf, PathBuf)>,
) -> String {
    let tls = ctx
        .desired
        .replication_tls(node)
        .map(|t| crate::config::ConninfoTls {
            sslcert: None,
            sslkey: None,
            ..t
        });
    let mut s = format!(
        "host={} port={} user={} dbname={} options='-c jit=off'{}{}",
        conf::conninfo_value(&src.host),
        src.port,
        conf::conninfo_value(&ctx.desired.connect.user),
        conf::conninfo_value(&ctx.desired.connect.dbname),
        conf::tls_keywords(tls.as_ref()),
        crate::pg::stall_keywords()
    );
    if let Some((crt, key)) = cert {
        for (k, path) in [("sslcert", crt), ("sslkey", key)] {
            let v = conf::conninfo_value(&path.display().to_string());
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// When the topology gives connect.user a client certificate (files where pgtopo runs): copies
/// of it and its key beside the rewound node's data directory, 0600 and owned by its os_user as
/// libpq requires, for pg_rewind's connection; removed after it ran, like the passfile.
async fn copy_client_cert(
    ctx: &StepContext,
    n: &DesiredNode,
    t: &DynTransport,
) -> Result<Option<(PathBuf, PathBuf)>, StepError> {
    let c = &ctx.desired.connect;
    let (Some(crt), Some(key)) = (&c.sslcert, &c.sslkey) else {
        return Ok(None);
    };
    let mut copies = Vec::new();
    for (from, suffix) in [(&crt.file, "crt"), (&key.file, "key")] {
        let bytes = std::fs::read(from).map_err(|e| {
            StepError::new(format!(
                "{}: cannot read connect's client certificate file for pg_rewind: {e}",
                from.display()
            ))
        })?;
        let mut to = n.data_dir.as_os_str().to_owned();
        to.push(format!(".pgtopo-rewind.{suffix}"));
        let to = PathBuf::from(to);
        t.write_file_atomic(&to, &bytes, 0o600).await.map_err(io)?;
        copies.push(to);
    }
    let key = copies.pop().expect("two copies");
    let crt = copies.pop().expect("two copies");
    Ok(Some((crt, key)))
}

/// How this rewind makes the directory durable.
async fn sync_method(ctx: &StepContext, node: &str) -> Sync {
    // pg_rewind's own sync fsyncs every file of the directory one by one, each a device flush
    // after a write (~70 ms of its ~230 ms here). One syncfs per file system does the same at
    // once — but it also flushes whatever else is dirty on that file system, so only when the
    // host has little of that (see `data_dir::little_dirty`): pg_rewind ≥ 17 then does it itself
    // (--sync-method=syncfs), older ones run with --no-sync and pgtopo syncs before it clears
    // the marker.
    if !data_dir::little_dirty(ctx, node).await {
        Sync::PgRewind
    } else if data_dir::pg_major(ctx, node).await >= Some(17) {
        Sync::PgRewindSyncfs
    } else {
        Sync::Syncfs
    }
}

/// The WAL moved out of pg_wal before pg_rewind runs.
struct WalAside {
    /// Segments recycled for future use ([`set_aside_recycled_wal`]).
    recycled: Option<PathBuf>,
    /// Links to the segments pg_rewind would remove ([`rewind_wal::keep`]).
    kept: Option<PathBuf>,
    seg_size: Option<u64>,
}

impl WalAside {
    /// After pg_rewind ran (`res`): put back what it removed, sync when pgtopo does, reuse the
    /// recycled segments, and leave both directories for removal after the last step.
    async fn after_pg_rewind(
        self,
        ctx: &StepContext,
        node: &str,
        mut res: Result<(), StepError>,
        said: &str,
        sync: Sync,
    ) -> Result<(), StepError> {
        if let (Ok(()), Some(dir), Some(seg_size)) = (&res, &self.kept, self.seg_size) {
            res = rewind_wal::restore(ctx, node, dir, said, seg_size)
                .await
                .map(|count| {
                    tracing::debug!(node, count, "WAL segments pg_rewind removed put back")
                });
        }
        if let Some(dir) = self.kept {
            ctx.remove_later(node, dir);
        }
        if res.is_ok() && sync == Sync::Syncfs {
            res = sync_data_dir(ctx, node).await;
        }
        if let Some(dir) = self.recycled {
            if let (Ok(()), Some(seg_size)) = (&res, self.seg_size) {
                match reuse_recycled_wal(ctx, node, &dir, seg_size).await {
                    Ok(count) => tracing::debug!(node, count, "recycled WAL segments reused"),
                    Err(e) => tracing::warn!(node, error = %e, "recycled WAL segments not reused"),
                }
            }
            // Whatever did not go back (after a failure: all of it) is removed after the last step.
            ctx.remove_later(node, dir);
        }
        res
    }
}

/// pg_rewind failed: its stderr without progress lines, and what happens to the directory.
fn rewind_failed(node: &str, mut e: StepError) -> StepError {
    // Without --progress's "12345/40862 kB (30%) copied" lines, each ended by a CR.
    e.stderr = e.stderr.map(|s| {
        s.split(['\r', '\n'])
            .filter(|l| {
                let progress = l.contains(" kB (") && l.ends_with("copied");
                !(l.trim().is_empty() || progress)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    // The marker stays: the next plan clones the node instead (its directory moved aside).
    let missing_wal = e
        .stderr
        .as_deref()
        .is_some_and(|s| s.contains("could not find previous WAL record") || s.contains("pg_wal/"));
    e.message = format!(
        "{}{}; {node}'s data directory is marked unfinished and is never started: the next `pgtopo apply` clones {node} again (its old directory moved aside)",
        e.message,
        if missing_wal {
            format!(" — {node} no longer has the WAL back to its last checkpoint before the fork (raise wal_keep_size to keep it)")
        } else {
            String::new()
        }
    );
    e
}

/// The directory stays marked until the node's own configuration is back.
fn own_config_not_back(node: &str, mut e: StepError) -> StepError {
    e.message = format!(
        "{}; {node}'s own configuration is not back after pg_rewind, so its data directory stays marked and is never started: the next `pgtopo apply` puts it back",
        e.message
    );
    e
}

/// The node's own configuration as it was before any rewind touched the directory: recorded
/// now, or, when an earlier rewind did not finish (the marker exists), the record it left.
async fn own_config_before(
    ctx: &StepContext,
    node: &str,
    marker: &Path,
) -> Result<Option<own_config::OwnConfig>, StepError> {
    if !data_dir::file_exists(ctx, node, marker).await? {
        return own_config::save(ctx, node).await.map(Some);
    }
    let own = own_config::load(ctx, node).await?;
    if own.is_none() {
        tracing::warn!(
            node,
            "an earlier rewind left no record of the node's own configuration: pg_rewind's copy of the source's stays"
        );
    }
    Ok(own)
}

/// How a rewound directory is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// pg_rewind's own: fsync of each file.
    PgRewind,
    /// pg_rewind ≥ 17 with `--sync-method=syncfs`.
    PgRewindSyncfs,
    /// pg_rewind `--no-sync`, then [`sync_data_dir`].
    Syncfs,
}

/// Make everything in the data directory durable with one syncfs(2) per file system it spans
/// (`sync -f`): the directory's own, pg_wal's and each tablespace's, should they be elsewhere.
/// What `recovery_init_sync_method=syncfs` and `pg_rewind --sync-method=syncfs` do; it reports
/// write-back errors on Linux ≥ 5.8.
async fn sync_data_dir(ctx: &StepContext, node: &str) -> Result<(), StepError> {
    let n = ctx.node(node)?;
    let t = ctx.transport(node)?;
    let tablespaces = t
        .list_dir(&n.data_dir.join("pg_tblspc"))
        .await
        .map_err(io)?
        .unwrap_or_default();
    let cmd = crate::transport::CommandSpec::new("sync")
        .arg("-f")
        .arg("--")
        .arg(n.data_dir.as_os_str())
        .arg(n.data_dir.join("pg_wal/.").as_os_str())
        .args(
            tablespaces
                .iter()
                .map(|ts| n.data_dir.join("pg_tblspc").join(ts).join(".")),
        )
        .timeout(Duration::from_secs(3600));
    ctx.run_tool(node, &cmd).await.map(|_| ())
}

/// Move the WAL segments of a cleanly shut down target that lie wholly after the segment of its
/// shutdown checkpoint (and the next one, which may hold the checkpoint record's tail) into
/// `<data_dir>.pgtopo-recycled-wal`; returns that directory for removal. Nothing is moved for a
/// target shut down in recovery (its WAL may go past its last restartpoint), nor when the segment
/// size or the control file cannot be read.
async fn set_aside_recycled_wal(
    ctx: &StepContext,
    node: &str,
    c: &control::ControlSnapshot,
) -> Result<Option<std::path::PathBuf>, StepError> {
    let n = ctx.node(node)?;
    let t = ctx.transport(node)?;
    let Some(seg_size) = c.wal_segment_size.filter(|_| c.shut_down()) else {
        return Ok(None);
    };
    let pg_wal = n.data_dir.join("pg_wal");
    let names = t.list_dir(&pg_wal).await.map_err(io)?.unwrap_or_default();
    let last_kept = c.latest_checkpoint.0 / seg_size + 1;
    let recycled: Vec<String> = names
        .into_iter()
        .filter(|name| {
            parse_wal_segment(name, seg_size)
                .is_some_and(|(tli, seg)| tli == c.checkpoint_timeline && seg > last_kept)
        })
        .collect();
    let mut dir = n.data_dir.as_os_str().to_owned();
    dir.push(".pgtopo-recycled-wal");
    let dir = std::path::PathBuf::from(dir);
    if recycled.is_empty() {
        // One left by a killed pgtopo is removed all the same.
        let left = t.list_dir(&dir).await.map_err(io)?.is_some();
        return Ok(left.then_some(dir));
    }
    t.create_dir(&dir, 0o700).await.map_err(io)?;
    let pairs: Vec<(String, String)> = recycled.iter().map(|n| (n.clone(), n.clone())).collect();
    let all = t.move_into(&pg_wal, &pairs, &dir).await.map_err(io)?;
    tracing::debug!(
        node,
        count = recycled.len(),
        all,
        "recycled WAL segments set aside"
    );
    Ok(Some(dir))
}

/// Give the segments set aside before pg_rewind back to pg_wal the way PostgreSQL recycles a
/// segment: renamed to future segments of the newest timeline there, past every segment pg_wal
/// now holds (pg_rewind made it the source's). The WAL receiver then writes into them instead of
/// creating and zero-filling new files, and nothing unlinks 16 MB files one by one (~4 ms each
/// here, ~300 ms for a rewind's 70). Their old content is never taken for WAL: every page header
/// names the position it was written for, which no longer matches its name. Returns how many
/// went back; the rest stays where it was, for removal.
async fn reuse_recycled_wal(
    ctx: &StepContext,
    node: &str,
    dir: &Path,
    seg_size: u64,
) -> Result<usize, StepError> {
    let n = ctx.node(node)?;
    let t = ctx.transport(node)?;
    let pg_wal = n.data_dir.join("pg_wal");
    let now = t.list_dir(&pg_wal).await.map_err(io)?.unwrap_or_default();
    let segs: Vec<(u32, u64)> = now
        .iter()
        .filter_map(|x| parse_wal_segment(x, seg_size))
        .collect();
    let (Some(tli), Some(last)) = (
        segs.iter().map(|s| s.0).max(),
        segs.iter().map(|s| s.1).max(),
    ) else {
        return Ok(0);
    };
    let mut aside: Vec<String> = t
        .list_dir(dir)
        .await
        .map_err(io)?
        .unwrap_or_default()
        .into_iter()
        .filter(|x| parse_wal_segment(x, seg_size).is_some())
        .collect();
    aside.sort();
    let pairs: Vec<(String, String)> = aside
        .into_iter()
        .zip(last + 1..)
        .map(|(a, seg)| (a, wal_segment_name(tli, seg, seg_size)))
        .collect();
    if t.move_into(dir, &pairs, &pg_wal).await.map_err(io)? {
        return Ok(pairs.len());
    }
    let left = t.list_dir(dir).await.map_err(io)?.unwrap_or_default();
    Ok(pairs.iter().filter(|(a, _)| !left.contains(a)).count())
}

pub async fn verify(ctx: &StepContext, node: &str, _p: &RewindParams) -> Result<(), StepError> {
    if data_dir::file_exists(ctx, node, &data_dir::rewind_marker(ctx, node)?).await? {
        return Err(StepError::new(format!("{node}: pg_rewind did not finish")));
    }
    control::read(ctx, node).await.map(|_| ())
}

/// `--restore-target-wal` (PostgreSQL 13+) when the topology declares an archive: WAL missing
/// from the node's pg_wal is read through its restore_command (pgtopo sets it on every node), so
/// recycled-but-archived WAL does not force a clone (SPEC §1c).
async fn restore_target_wal(ctx: &StepContext, node: &str) -> Option<&'static str> {
    ctx.desired.archive.as_ref()?;
    (data_dir::pg_major(ctx, node).await >= Some(13)).then_some("--restore-target-wal")
}
