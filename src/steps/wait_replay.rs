//! `wait_replay`: the zero-data-loss gate of a planned switchover. The target is either a known
//! LSN or the shutdown checkpoint of the stopped old primary: its control file must say
//! "shut down" (a clean shutdown, so its walsender shipped everything up to and including the
//! shutdown checkpoint record), and its "Latest checkpoint location" is read at apply time.
//! The candidate must then have replayed *past* that location
//! ([`crate::units::replayed_past_checkpoint`], the rule the planner uses too), so the old
//! primary has no WAL the candidate lacks (it can follow without a rewind). Polled at
//! millisecond resolution over a connection opened before the stop; the wait gives up at once
//! when the candidate's postmaster is gone or it stops answering ([`server::Liveness`]).
//!
//! A known LSN target (all a failover candidate received) only has to be reached.
//!
//! When the target is not reached (in time, or ever: the candidate is gone; or the old primary
//! did not shut down cleanly) and
//! `on_failure_restart` names a node, that node — the old primary, still a primary — is started
//! again and the step fails: the switchover is rolled back and nothing was promoted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{control, data_dir, server, Freshness, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::observe::REPLAY_BLOCKERS;
use crate::plan::{ReplayTarget, WaitReplayParams};
use crate::units::{replayed_past_checkpoint, Lsn};

pub async fn check(
    _ctx: &StepContext,
    _node: &str,
    _p: &WaitReplayParams,
) -> Result<Freshness, StepError> {
    // A wait has no lasting result: it is cheap to look again, and act returns at the first
    // look when the location is already replayed.
    Ok(Freshness::Dirty("wait for replay".into()))
}

/// The location to reach.
async fn target(ctx: &StepContext, p: &WaitReplayParams) -> Result<Lsn, StepError> {
    match &p.target {
        ReplayTarget::Lsn { lsn } => Ok(*lsn),
        ReplayTarget::ShutdownCheckpointOf { node: old } => {
            if data_dir::pid_file_exists(ctx, old).await? {
                return Err(StepError::new(format!(
                    "{old} is still running (postmaster.pid exists): its shutdown checkpoint is not known"
                )));
            }
            let c = control::read(ctx, old).await?;
            if !c.shut_down() {
                return Err(StepError::new(format!(
                    "{old} did not shut down cleanly (control data: \"{}\"): the candidate cannot be proven to have all its WAL",
                    c.state
                )));
            }
            Ok(c.latest_checkpoint)
        }
    }
}

/// What a wait on a standby's replay reaches for.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplayGoal {
    pub lsn: Lsn,
    /// Past the shutdown checkpoint record at `lsn` ([`replayed_past_checkpoint`]), else at
    /// least `lsn`.
    pub strict: bool,
    /// The received position must reach `lsn` too (a live proof that the node receives now).
    pub received: bool,
    /// Cancel the sessions that block the node's replay while it is short of `lsn`, and
    /// terminate those still blocking after this grace.
    pub cancel_grace: Option<Duration>,
}

impl ReplayGoal {
    pub fn replayed(lsn: Lsn, strict: bool) -> Self {
        ReplayGoal {
            lsn,
            strict,
            received: false,
            cancel_grace: None,
        }
    }

    fn reached(&self, replay: Lsn, receive: Option<Lsn>) -> bool {
        let replayed = if self.strict {
            replayed_past_checkpoint(Some(replay), self.lsn)
        } else {
            replay >= self.lsn
        };
        replayed && (!self.received || receive.is_some_and(|r| r >= self.lsn))
    }
}

/// Cancels what blocks a standby's replay: `pg_cancel_backend` at first sight,
/// `pg_terminate_backend` once a session still blocks after the grace. Remembers every session
/// it ended, for the step's error and the apply's log.
#[derive(Default)]
struct Canceller {
    first_cancel: Mutex<HashMap<i32, Instant>>,
}

impl Canceller {
    /// One look at the blockers; returns what was done, for the wait's last-seen text.
    async fn look(&self, ctx: &StepContext, node: &str, grace: Duration) -> String {
        let Ok(rows) = ctx.query(node, REPLAY_BLOCKERS, &[]).await else {
            return String::new();
        };
        let mut said = Vec::new();
        for pid in rows.iter().filter_map(|r| r.get::<_, Option<i32>>(0)) {
            let first = *self
                .first_cancel
                .lock()
                .expect("cancel times")
                .entry(pid)
                .or_insert_with(Instant::now);
            let (f, verb) = if first.elapsed() >= grace {
                ("pg_terminate_backend", "terminated")
            } else {
                ("pg_cancel_backend", "cancelled")
            };
            let sql = format!("SELECT {f}($1)");
            if ctx.query(node, &sql, &[&pid]).await.is_ok() {
                tracing::info!(node, pid, "{verb} a session blocking replay");
                said.push(format!("{verb} pid {pid}"));
            }
        }
        if said.is_empty() {
            String::new()
        } else {
            format!("; {} (blocking replay)", said.join(", "))
        }
    }
}

/// Wait until the node's positions reach `goal`. Gives up early when the node's postmaster is
/// gone or it stops answering ([`server::Liveness`]).
pub(super) async fn wait_replayed(
    ctx: &StepContext,
    node: &str,
    goal: ReplayGoal,
    timeout: Duration,
) -> Result<(), StepError> {
    let what = match (goal.strict, goal.received) {
        (true, _) => "replay past",
        (false, true) => "receive and replay up to",
        (false, false) => "replay up to",
    };
    let spec = WaitSpec::new(format!("{node} to {what} {}", goal.lsn), timeout)
        .max_interval(Duration::from_millis(2));
    let live = &server::Liveness::new(ctx, node);
    let canceller = &Canceller::default();
    wait_until(&spec, || async move {
        let sql = "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text";
        let rows = match ctx.query(node, sql, &[]).await {
            Err(e) => return live.failed(&e.message).await,
            Ok(rows) => rows,
        };
        live.answered();
        let lsn_at = |i: usize| -> Option<Lsn> {
            rows.first()
                .and_then(|r| r.get::<_, Option<String>>(i))
                .and_then(|v| v.parse().ok())
        };
        let (Some(replay), receive) = (lsn_at(0), lsn_at(1)) else {
            return Poll::Pending("no replay location (not a standby?)".into());
        };
        if goal.reached(replay, receive) {
            return Poll::Ready(());
        }
        let cancelled = match goal.cancel_grace {
            Some(grace) if replay < goal.lsn => canceller.look(ctx, node, grace).await,
            _ => String::new(),
        };
        let received = receive
            .map(|r| format!(", received {r}"))
            .unwrap_or_default();
        Poll::Pending(format!("replayed {replay}{received}{cancelled}"))
    })
    .await?;
    Ok(())
}

pub async fn act(ctx: &StepContext, node: &str, p: &WaitReplayParams) -> Result<(), StepError> {
    // A shutdown checkpoint must itself be replayed; a known location (e.g. all a failover
    // candidate received) must be reached.
    let strict = matches!(p.target, ReplayTarget::ShutdownCheckpointOf { .. });
    let res = match target(ctx, p).await {
        Ok(lsn) => {
            let goal = ReplayGoal::replayed(lsn, strict);
            wait_replayed(ctx, node, goal, Duration::from_millis(p.timeout_ms)).await
        }
        Err(e) => Err(e),
    };
    let Err(e) = res else { return Ok(()) };
    let Some(old) = &p.on_failure_restart else {
        return Err(e);
    };
    Err(server::roll_back(ctx, old, e).await)
}

pub async fn verify(
    _ctx: &StepContext,
    _node: &str,
    _p: &WaitReplayParams,
) -> Result<(), StepError> {
    Ok(())
}
