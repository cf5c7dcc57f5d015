//! Starting, stopping and watching a node's server — shared by stop, start, restart, fence,
//! configure_standby and the switchover rollback.
//!
//! `pg_ctl -w` polls only every 100 ms, so pg_ctl runs with `-W` and pgtopo waits itself, at
//! millisecond resolution: for `postmaster.pid` to disappear (stop; the postmaster removes it as
//! the very last thing it does, after the shutdown checkpoint is in the control file), and for
//! the server to accept SQL connections (start). The server is started with
//! `-l <data_dir>.log`, a file beside the data directory, so it holds no pipe of ours open.

use std::time::{Duration, Instant};

use super::position::{wait_position, PositionGoal, Target};
pub use super::position::{CaughtUp, Liveness, NO_ANSWER_GRACE};
use super::{data_dir, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::config::service;
use crate::config::Service;
use crate::plan::ShutdownMode;
use crate::transport::CommandSpec;
use crate::units::Lsn;

/// The last lines of the server log, for error messages.
pub async fn log_tail(ctx: &StepContext, node: &str) -> String {
    let Ok(path) = data_dir::log_file(ctx, node) else {
        return String::new();
    };
    let Ok(t) = ctx.transport(node) else {
        return String::new();
    };
    match t.read_file(&path).await {
        Ok(Some(b)) => {
            let text = String::from_utf8_lossy(&b);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        }
        _ => String::new(),
    }
}

pub use crate::config::service::Control;

/// The command that starts or stops `node` through its service (SPEC §1d): the argv of
/// [`crate::config::service::command`], the one function the plan's text names it from too
/// (`plan::name_stop_commands`), run through the node's transport as its os_user (systemctl
/// as the transport's own user: `service::as_login_user`).
pub fn control(ctx: &StepContext, node: &str, what: Control) -> Result<CommandSpec, StepError> {
    let n = ctx.node(node)?;
    let mut argv = service::command(n, what).into_iter();
    let program = argv.next().expect("a service command has a program");
    let cmd = CommandSpec::new(program)
        .args(argv)
        .timeout(Duration::from_secs(30));
    Ok(match service::as_login_user(n) {
        true => cmd.as_login_user(),
        false => cmd,
    })
}

/// Ask the server to stop (`pg_ctl stop -m MODE -W`); returns at once. A server that is not
/// running (no pid file, or a stale one) is not an error.
pub async fn request_stop(
    ctx: &StepContext,
    node: &str,
    mode: ShutdownMode,
) -> Result<(), StepError> {
    ctx.forget(node);
    let cmd = control(ctx, node, Control::Stop(mode.stop_mode()))?;
    match ctx.run_tool(node, &cmd).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.stderr.clone().unwrap_or_default();
            if text.contains("Is server running?")
                || text.contains("No such process")
                || text.contains("Cluster is not running")
            {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// Wait until `postmaster.pid` is gone (the server has stopped), at ms resolution.
pub async fn wait_stopped(
    ctx: &StepContext,
    node: &str,
    timeout: Duration,
) -> Result<(), StepError> {
    let t = ctx.transport(node)?;
    let pid = data_dir::pid_file(ctx, node)?;
    // A file look is cheap, and every millisecond after the postmaster is gone is a
    // millisecond of writes unavailable in a switchover: poll at most 2 ms apart. A pid file
    // that outlives a few seconds may be stale (a crashed server leaves it): then `pg_ctl
    // status` is asked, at most every 2 s.
    let spec =
        WaitSpec::new(format!("{node} to stop"), timeout).max_interval(Duration::from_millis(2));
    let t0 = Instant::now();
    let last_status = std::sync::Mutex::new(t0);
    let last_status = &last_status;
    let pid = &pid;
    wait_until(&spec, || async move {
        match t.read_file(pid).await {
            Ok(None) => Poll::Ready(()),
            Ok(Some(_)) => {
                let due = {
                    let mut l = last_status.lock().expect("status clock");
                    let due = l.elapsed() >= Duration::from_secs(2);
                    if due {
                        *l = Instant::now();
                    }
                    due
                };
                if due && matches!(data_dir::running_per_pg_ctl(ctx, node).await, Ok(false)) {
                    return Poll::Ready(());
                }
                Poll::Pending("postmaster.pid still exists".into())
            }
            Err(e) => Poll::Failed(e.to_string()),
        }
    })
    .await?;
    Ok(())
}

/// Stop and wait. A stale pid file (crashed server) counts as stopped once pg_ctl says so.
pub async fn stop(
    ctx: &StepContext,
    node: &str,
    mode: ShutdownMode,
    timeout: Duration,
) -> Result<(), StepError> {
    request_stop(ctx, node, mode).await?;
    match wait_stopped(ctx, node, timeout).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // A pid file left by a crash names no process: pg_ctl status says "no server running".
            if !data_dir::running_per_pg_ctl(ctx, node).await? {
                return Ok(());
            }
            Err(e)
        }
    }
}

/// Whether the server answers SQL now (a fresh check through the cached connection).
pub async fn accepting(ctx: &StepContext, node: &str) -> bool {
    ctx.query(node, "SELECT 1", &[]).await.is_ok()
}

/// Start the server (`pg_ctl start -W -l <data_dir>.log`) unless it already answers, then wait
/// until it accepts connections.
pub async fn start(ctx: &StepContext, node: &str, timeout: Duration) -> Result<(), StepError> {
    let n = ctx.node(node)?;
    if data_dir::file_exists(ctx, node, &data_dir::rewind_marker(ctx, node)?).await?
        && !super::rewind::finish_interrupted(ctx, node).await?
    {
        return Err(StepError::new(format!(
            "{node}: refusing to start a data directory that pg_rewind did not finish ({}); \
             rewind it again or clone it",
            data_dir::rewind_marker(ctx, node)?.display()
        )));
    }
    let mut one_off = false;
    if !(data_dir::pid_file_exists(ctx, node).await? && accepting(ctx, node).await) {
        let mut cmd = control(ctx, node, Control::Start)?;
        // A rewound directory is "in archive recovery", so the startup fsyncs every file in it
        // first — work pg_rewind has just done (~50 ms for 1 GB here). syncfs, one call per
        // file system, does the same job at once when little else is dirty on the host
        // (PostgreSQL ≥ 14; a one-off option, taken out
        // of postmaster.opts again once the server is up, so that a later `pg_ctl restart`
        // does not repeat it).
        if n.service == Service::PgCtl
            && data_dir::rewound(ctx, node).await?
            && data_dir::pg_major(ctx, node).await >= Some(14)
            && data_dir::little_dirty(ctx, node).await
        {
            tracing::debug!(
                node,
                "started with {ONE_OFF_SYNCFS}: pg_rewind synced it all"
            );
            cmd = cmd.arg("-o").arg(ONE_OFF_SYNCFS);
            one_off = true;
        }
        if let Err(mut e) = ctx.run_tool(node, &cmd).await {
            let stderr = e.stderr.clone().unwrap_or_default();
            if !stderr.contains("another server might be running")
                && !stderr.contains("Cluster is already running")
            {
                let tail = log_tail(ctx, node).await;
                if !tail.is_empty() {
                    e.stderr = Some(format!("{stderr}\n{tail}").trim().to_string());
                }
                return Err(e);
            }
        }
    }
    wait_accepting(ctx, node, timeout).await?;
    if one_off {
        forget_one_off_options(ctx, node).await;
    }
    Ok(())
}

const ONE_OFF_SYNCFS: &str = "-c recovery_init_sync_method=syncfs";

/// Drop [`ONE_OFF_SYNCFS`] from `postmaster.opts` (the postmaster's record of its command line,
/// which only `pg_ctl restart` reads). Best effort: it is a harmless setting if it stays.
async fn forget_one_off_options(ctx: &StepContext, node: &str) {
    let Ok(n) = ctx.node(node) else { return };
    let Ok(t) = ctx.transport(node) else { return };
    let path = n.data_dir.join("postmaster.opts");
    let Ok(Some(bytes)) = t.read_file(&path).await else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    let kept = text.replace(" \"-c\" \"recovery_init_sync_method=syncfs\"", "");
    if kept != text {
        if let Err(e) = t.write_file_atomic(&path, kept.as_bytes(), 0o600).await {
            tracing::warn!(node, "{e}");
        }
    }
}

/// Wait until the node accepts SQL connections. Fails early, with the server log, when the
/// postmaster has exited.
pub async fn wait_accepting(
    ctx: &StepContext,
    node: &str,
    timeout: Duration,
) -> Result<(), StepError> {
    ctx.forget(node);
    let t0 = Instant::now();
    let spec = WaitSpec::new(format!("{node} to accept connections"), timeout);
    let res = wait_until(&spec, || async move {
        match ctx.client_with_timeout(node, Duration::from_secs(2)).await {
            Ok(c) => match c.simple_query("SELECT 1").await {
                Ok(_) => Poll::Ready(()),
                Err(e) => {
                    ctx.forget(node);
                    Poll::Pending(crate::pg::describe(&e))
                }
            },
            Err(e) => {
                // The postmaster writes its pid file at once; give it a moment after pg_ctl.
                if t0.elapsed() > Duration::from_secs(2) {
                    match data_dir::pid_file_exists(ctx, node).await {
                        Ok(false) => {
                            return Poll::Failed(format!("the server exited ({})", e.message))
                        }
                        Err(e) => return Poll::Failed(e.message),
                        Ok(true) => {}
                    }
                }
                Poll::Pending(e.message)
            }
        }
    })
    .await;
    match res {
        Ok(()) => Ok(()),
        Err(e) => Err(StepError::with_stderr(
            e.to_string(),
            log_tail(ctx, node).await,
        )),
    }
}

/// The timeline a node writes (primary) or receives (standby); None when unknown.
async fn timeline_of(ctx: &StepContext, node: &str) -> Option<i64> {
    let rows = ctx
        .query(
            node,
            "SELECT CASE WHEN pg_is_in_recovery() \
                 THEN (SELECT received_tli::bigint FROM pg_stat_wal_receiver) \
                 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END",
            &[],
        )
        .await
        .ok()?;
    rows.first().and_then(|r| r.get::<_, Option<i64>>(0))
}

/// Wait until the node streams from `upstream` and has replayed the upstream's end of WAL as it
/// was when this wait began (SPEC §5: a `streaming` status alone is no proof — a standby whose
/// history differs from the upstream's on the same timeline can stream and never replay).
/// A delayed standby (`apply_delay`) replays late on purpose: it must have received and flushed
/// that WAL instead ([`CaughtUp`]).
pub async fn wait_streaming(
    ctx: &StepContext,
    node: &str,
    upstream: &str,
    timeout: Duration,
) -> Result<(), StepError> {
    let started = std::time::Instant::now();
    let target = wal_end_of(ctx, upstream).await;
    let by = CaughtUp::of(ctx.node(node)?);
    if by == CaughtUp::Received && !receiver_or_delay(ctx, node, timeout).await? {
        return Ok(());
    }
    wait_receiver(ctx, node, upstream, timeout).await?;
    let Some(target) = target else {
        return Ok(());
    };
    let goal = PositionGoal::reach(Target::AtLeast(target));
    wait_position(
        ctx,
        node,
        by,
        goal,
        timeout.saturating_sub(started.elapsed()),
    )
    .await
}

/// A delayed standby starts its WAL receiver only once it has applied, `apply_delay` late, the
/// WAL already in its pg_wal: until then a startup process waiting on `RecoveryApplyDelay` is
/// all there is to see. Waits for either; true when a WAL receiver runs.
async fn receiver_or_delay(
    ctx: &StepContext,
    node: &str,
    timeout: Duration,
) -> Result<bool, StepError> {
    let spec = WaitSpec::new(
        format!("{node} to stream or to wait for its apply_delay"),
        timeout,
    )
    .max_interval(Duration::from_millis(5));
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver), \
               EXISTS (SELECT 1 FROM pg_stat_activity \
                       WHERE backend_type = 'startup' AND wait_event = 'RecoveryApplyDelay')";
    let res = wait_until(&spec, || async move {
        match ctx.query(node, sql, &[]).await {
            Err(e) => Poll::Pending(e.message.clone()),
            Ok(rows) => match rows
                .first()
                .map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1)))
            {
                Some((true, _)) => Poll::Ready(true),
                Some((false, true)) => Poll::Ready(false),
                _ => Poll::Pending("no WAL receiver, startup not waiting for apply_delay".into()),
            },
        }
    })
    .await;
    res.map_err(|e| StepError::new(e.to_string()))
}

/// The end of WAL a standby of `node` can have now: the flush position of a primary, the
/// received (else replayed) position of a standby. None when it does not answer.
async fn wal_end_of(ctx: &StepContext, node: &str) -> Option<Lsn> {
    let rows = ctx
        .query(
            node,
            "SELECT (CASE WHEN pg_is_in_recovery() \
                 THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
                 ELSE pg_current_wal_flush_lsn() END)::text",
            &[],
        )
        .await
        .ok()?;
    rows.first()
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|v| v.parse().ok())
}

/// Wait until the node's WAL receiver streams from `upstream` (pg_stat_wal_receiver: status
/// `streaming`, sender host and port) and has received the upstream's timeline — a standby
/// whose history diverged streams the old timeline but never switches, and must not pass.
pub async fn wait_receiver(
    ctx: &StepContext,
    node: &str,
    upstream: &str,
    timeout: Duration,
) -> Result<(), StepError> {
    let up = ctx.node(upstream)?;
    let (host, port) = (up.host.clone(), up.port as i32);
    // A query on an open connection: cheap enough to look every 2 ms (a rejoin ends here).
    let spec = WaitSpec::new(format!("{node} to stream from {upstream}"), timeout)
        .max_interval(Duration::from_millis(2));
    let host = &host;
    let live = &Liveness::new(ctx, node);
    let res = wait_until(&spec, || async move {
        let rows = ctx
            .query(
                node,
                "SELECT status, sender_host, sender_port, received_tli::bigint FROM pg_stat_wal_receiver",
                &[],
            )
            .await;
        if rows.is_ok() {
            live.answered();
        }
        let r = match &rows {
            Err(e) => return live.failed(&e.message).await,
            Ok(rows) => match rows.first() {
                None => return Poll::Pending("no WAL receiver".into()),
                Some(r) => r,
            },
        };
        let status: String = r.get::<_, Option<String>>(0).unwrap_or_default();
        let shost: Option<String> = r.get(1);
        let sport: Option<i32> = r.get(2);
        let tli: Option<i64> = r.get(3);
        if !(status == "streaming" && shost.as_deref() == Some(host.as_str()) && sport == Some(port)) {
            return Poll::Pending(format!(
                "WAL receiver {status} from {}:{}",
                shost.unwrap_or_default(),
                sport.map(|p| p.to_string()).unwrap_or_default()
            ));
        }
        match (tli, timeline_of(ctx, upstream).await) {
            (Some(mine), Some(theirs)) if mine < theirs => Poll::Pending(format!(
                "streaming, but received timeline {mine} while {upstream} is on timeline {theirs}"
            )),
            _ => Poll::Ready(()),
        }
    })
    .await;
    match res {
        Ok(()) => Ok(()),
        Err(e) => Err(StepError::with_stderr(
            e.to_string(),
            log_tail(ctx, node).await,
        )),
    }
}

/// How long a look at a node (a trivial statement on an open connection) may take: a node cut
/// off without a reset would otherwise keep the statement waiting for ever.
pub const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Run a short statement on the node, failing after [`LOOK_TIMEOUT`] (the connection is
/// dropped then).
pub async fn look(
    ctx: &StepContext,
    node: &str,
    sql: &str,
) -> Result<Vec<tokio_postgres::Row>, StepError> {
    match tokio::time::timeout(LOOK_TIMEOUT, ctx.query(node, sql, &[])).await {
        Ok(r) => r,
        Err(_) => {
            ctx.forget(node);
            Err(StepError::new(format!(
                "{node}: no answer within {} s",
                LOOK_TIMEOUT.as_secs()
            )))
        }
    }
}

/// Whether the node is in recovery (a standby). Errors when it does not answer.
pub async fn in_recovery(ctx: &StepContext, node: &str) -> Result<bool, StepError> {
    let rows = look(ctx, node, "SELECT pg_is_in_recovery()").await?;
    Ok(rows.first().map(|r| r.get::<_, bool>(0)).unwrap_or(false))
}

/// Roll a switchover back after its failure `e`: the old primary — stopped, still a primary,
/// nothing promoted — is started again (a crash recovery when it did not shut down cleanly: it
/// loses nothing it acknowledged). Returns the step's error, saying what became of `old`. The
/// one way back of a switchover: used by `wait_replay` and by the escalated `stop`.
pub async fn roll_back(ctx: &StepContext, old: &str, e: StepError) -> StepError {
    match start(ctx, old, ctx.server_timeout).await {
        Ok(()) => StepError {
            message: format!(
                "{}; switchover rolled back: {old} was started again as primary",
                e.message
            ),
            stderr: e.stderr,
        },
        Err(e2) => StepError {
            message: format!(
                "{}; the rollback failed too: {old} could not be started again: {}",
                e.message, e2.message
            ),
            stderr: e2.stderr.or(e.stderr),
        },
    }
}

/// The postmaster's PID, from the first line of `postmaster.pid` (None: no such file).
async fn postmaster_pid(ctx: &StepContext, node: &str) -> Result<Option<i32>, StepError> {
    let text = ctx
        .transport(node)?
        .read_file(&data_dir::pid_file(ctx, node)?)
        .await
        .map_err(|e| StepError::new(e.to_string()))?
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok()))
}

/// `ps -o ARGS` on the node's host (no header); empty when ps fails.
async fn ps(ctx: &StepContext, node: &str, args: &[&str]) -> Result<String, StepError> {
    let cmd = crate::transport::CommandSpec::new("ps")
        .args(args)
        .timeout(Duration::from_secs(10));
    let out = ctx
        .transport(node)?
        .run(&cmd)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    Ok(out.stdout_text().into_owned())
}

/// The node's postmaster as its host's process list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Postmaster {
    /// No postmaster.pid, or no process with its PID (a stale file).
    Gone,
    /// Stopped by a signal (SIGSTOP, state `T`): no shutdown mode ends it, and pgtopo does not
    /// resume a process someone froze.
    Frozen,
    /// Running, with the PIDs of its walsenders (its children whose title says `walsender`):
    /// those that run, and those stopped by a signal (which act on no signal but SIGKILL).
    Running {
        walsenders: Vec<i32>,
        frozen_walsenders: Vec<i32>,
    },
}

/// One `ps` of the postmaster and its children on the node's host, through its transport.
pub async fn postmaster(ctx: &StepContext, node: &str) -> Result<Postmaster, StepError> {
    let Some(pm) = postmaster_pid(ctx, node).await? else {
        return Ok(Postmaster::Gone);
    };
    let pm_s = pm.to_string();
    let text = ps(
        ctx,
        node,
        &["-o", "pid=,ppid=,stat=,args=", "-p", &pm_s, "--ppid", &pm_s],
    )
    .await?;
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let Some(me) = rows.iter().find(|r| r.first() == Some(&pm_s.as_str())) else {
        return Ok(Postmaster::Gone);
    };
    if me.get(2).is_some_and(|st| st.starts_with('T')) {
        return Ok(Postmaster::Frozen);
    }
    let frozen = |r: &Vec<&str>| r.get(2).is_some_and(|st| st.starts_with('T'));
    let (frozen_walsenders, walsenders): (Vec<&Vec<&str>>, Vec<&Vec<&str>>) = rows
        .iter()
        .filter(|r| {
            r.get(1) == Some(&pm_s.as_str()) && r.iter().skip(3).any(|w| w.contains("walsender"))
        })
        .partition(|r| frozen(r));
    let pids = |v: Vec<&Vec<&str>>| v.iter().filter_map(|r| r.first()?.parse().ok()).collect();
    Ok(Postmaster::Running {
        walsenders: pids(walsenders),
        frozen_walsenders: pids(frozen_walsenders),
    })
}

/// End walsenders of the node by PID with `signal` (`TERM`, or `KILL` for one that does not
/// act on it — a frozen one): a walsender blocked writing to a peer that no longer answers
/// keeps a fast shutdown waiting until `wal_sender_timeout`.
pub async fn end_walsenders(
    ctx: &StepContext,
    node: &str,
    pids: &[i32],
    signal: &str,
) -> Result<(), StepError> {
    if pids.is_empty() {
        return Ok(());
    }
    let cmd = crate::transport::CommandSpec::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(i32::to_string))
        .timeout(Duration::from_secs(10));
    // A walsender that exited meanwhile makes kill fail for its PID only: not an error.
    let _ = ctx.transport(node)?.run(&cmd).await;
    Ok(())
}
