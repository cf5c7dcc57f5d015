//! Waiting for a standby's WAL position: the one polling loop ([`wait_position`]) behind
//! `wait_replay`, `catch_up` and a start's or restart's wait until a standby has caught up with
//! its upstream. Which position counts ([`CaughtUp`]: replayed, or received for a delayed
//! standby) and how far is far enough ([`Target`]: at least a location, or past a shutdown
//! checkpoint record) are the caller's rule, passed in; the comparison is made here only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{data_dir, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::observe::REPLAY_BLOCKERS;
use crate::units::{replayed_past_checkpoint, Lsn};

/// Which WAL position of a standby proves it has caught up with its upstream: the replay
/// position, or — for a delayed standby, which replays `apply_delay` late on purpose — the
/// position it received and flushed. The one place that decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaughtUp {
    Replayed,
    Received,
}

impl CaughtUp {
    pub fn of(n: &crate::config::DesiredNode) -> CaughtUp {
        if n.promotion.apply_delay.is_some() {
            CaughtUp::Received
        } else {
            CaughtUp::Replayed
        }
    }
    fn verb(self) -> &'static str {
        match self {
            CaughtUp::Replayed => "replay",
            CaughtUp::Received => "receive",
        }
    }
}

/// How far a position must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// At least this location (a known position: what a candidate received, an end of WAL).
    AtLeast(Lsn),
    /// Strictly past the shutdown checkpoint record at this location
    /// ([`replayed_past_checkpoint`]): the record itself must have been replayed.
    PastCheckpoint(Lsn),
}

impl Target {
    pub fn lsn(self) -> Lsn {
        match self {
            Target::AtLeast(l) | Target::PastCheckpoint(l) => l,
        }
    }

    fn reached(self, at: Lsn) -> bool {
        match self {
            Target::AtLeast(l) => at >= l,
            Target::PastCheckpoint(l) => replayed_past_checkpoint(Some(at), l),
        }
    }
}

/// What a wait on a standby's position reaches for.
#[derive(Debug, Clone, Copy)]
pub struct PositionGoal {
    pub target: Target,
    /// The received position must reach the target's location too (a live proof that the node
    /// receives now).
    pub received: bool,
    /// Cancel the sessions that block the node's replay while it is short of the target, and
    /// terminate those still blocking after this grace.
    pub cancel_grace: Option<Duration>,
}

impl PositionGoal {
    pub fn reach(target: Target) -> Self {
        PositionGoal {
            target,
            received: false,
            cancel_grace: None,
        }
    }
}

/// How long a node that a wait looks at may go without answering before the wait gives up.
pub const NO_ANSWER_GRACE: Duration = Duration::from_millis(1500);

/// For a wait whose condition depends on one node answering: decides when that condition has
/// become impossible — the node's postmaster is gone (no `postmaster.pid`), or the node has not
/// answered for longer than [`NO_ANSWER_GRACE`] (connections refused: a postmaster killed
/// without removing its pid file) — so the wait ends at once with why, not at its timeout.
pub struct Liveness<'a> {
    ctx: &'a StepContext,
    node: &'a str,
    failing_since: std::sync::Mutex<Option<Instant>>,
}

impl<'a> Liveness<'a> {
    pub fn new(ctx: &'a StepContext, node: &'a str) -> Self {
        Liveness {
            ctx,
            node,
            failing_since: std::sync::Mutex::new(None),
        }
    }

    /// A look at the node got an answer.
    pub fn answered(&self) {
        *self.failing_since.lock().expect("liveness clock") = None;
    }

    /// A look at the node failed with `err`: `Pending` while the node may still answer,
    /// `Failed` with the reason once it cannot.
    pub async fn failed<T>(&self, err: &str) -> Poll<T> {
        let since = *self
            .failing_since
            .lock()
            .expect("liveness clock")
            .get_or_insert_with(Instant::now);
        let node = self.node;
        match data_dir::pid_file_exists(self.ctx, node).await {
            Ok(false) => {
                return Poll::Failed(format!(
                    "{node}'s postmaster is gone (no postmaster.pid): {err}"
                ))
            }
            Err(e) => return Poll::Pending(format!("{err}; {}", e.message)),
            Ok(true) => {}
        }
        if since.elapsed() > NO_ANSWER_GRACE {
            return Poll::Failed(format!(
                "{node} has not answered for {} ms: {err}",
                since.elapsed().as_millis()
            ));
        }
        Poll::Pending(err.to_string())
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

/// Wait until the node's `kind` position reaches `goal`. Gives up early when the node's
/// postmaster is gone or it stops answering ([`Liveness`]).
pub async fn wait_position(
    ctx: &StepContext,
    node: &str,
    kind: CaughtUp,
    goal: PositionGoal,
    timeout: Duration,
) -> Result<(), StepError> {
    let lsn = goal.target.lsn();
    let what = match (goal.target, goal.received, kind) {
        (Target::PastCheckpoint(_), _, _) => format!("{} past", kind.verb()),
        (_, true, _) => "receive and replay up to".to_string(),
        (_, false, _) => format!("{} up to", kind.verb()),
    };
    let spec = WaitSpec::new(format!("{node} to {what} {lsn}"), timeout)
        .max_interval(Duration::from_millis(2));
    let live = &Liveness::new(ctx, node);
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
        let (replay, receive) = (lsn_at(0), lsn_at(1));
        let at = match kind {
            CaughtUp::Replayed => replay,
            CaughtUp::Received => receive,
        };
        let Some(at) = at else {
            return Poll::Pending(format!("no {} location (not a standby?)", kind.verb()));
        };
        let received_too = !goal.received || receive.is_some_and(|r| r >= lsn);
        if goal.target.reached(at) && received_too {
            return Poll::Ready(());
        }
        let cancelled = match (goal.cancel_grace, replay) {
            (Some(grace), Some(r)) if r < lsn => canceller.look(ctx, node, grace).await,
            _ => String::new(),
        };
        let replayed = replay.map(|r| format!("replayed {r}")).unwrap_or_default();
        let received = receive
            .map(|r| format!(", received {r}"))
            .unwrap_or_default();
        Poll::Pending(format!("{replayed}{received}{cancelled}"))
    })
    .await?;
    Ok(())
}
