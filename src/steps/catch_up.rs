//! `catch_up`: the live proof right before the disruptive part of a promotion (SPEC §5c).
//!
//! In a switchover it runs on the candidate before any pooler pauses and before the old primary
//! stops: it reads the primary's current WAL position (`pg_current_wal_lsn()`) at that moment and
//! waits, within `switchover.catchup_timeout`, until the candidate has received *and* replayed it.
//! A candidate that does not hear from its primary (a partition, a frozen WAL receiver) or whose
//! replay waits on a recovery conflict fails the step, so the stop never runs: writes were never
//! interrupted. The error names the candidate, when its WAL receiver last heard from its
//! upstream, how far behind it is and what blocks its replay.
//!
//! With `cancel_conflicts` (a switchover with `switchover.cancel_conflicting_queries`, and every
//! failover: the candidate is about to become the primary), the sessions that block the
//! candidate's replay — `pg_blocking_pids` of its startup process, read as it waits — are
//! cancelled, and terminated when they still block after the grace. In a failover the target is
//! everything the candidate received, so its promotion does not wait on a conflict.
//!
//! First, the candidate must have room in pg_wal to promote ([`room_to_promote`]): a full
//! pg_wal stops its WAL receiver, and a promotion on it PANICs.
//!
//! The step reads one other node: the primary's current WAL position.

use std::time::Duration;

use super::position::{wait_position, CaughtUp, PositionGoal, Target};
use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::observe::conflict_now;
use crate::plan::CatchUpParams;
use crate::units::{ByteSize, Lsn};

pub async fn check(
    _ctx: &StepContext,
    _node: &str,
    _p: &CatchUpParams,
) -> Result<Freshness, StepError> {
    // A proof is about now: it always runs (and returns at its first look when caught up).
    Ok(Freshness::Dirty(
        "prove the candidate caught up, now".into(),
    ))
}

/// One LSN read from `node`.
async fn lsn(ctx: &StepContext, node: &str, sql: &str) -> Result<Option<Lsn>, StepError> {
    let rows = ctx.query(node, sql, &[]).await?;
    Ok(rows
        .first()
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|v| v.parse().ok()))
}

/// The position to reach: the primary's current WAL position, or all the node received.
async fn target(ctx: &StepContext, node: &str, p: &CatchUpParams) -> Result<Lsn, StepError> {
    let (at, sql, what) = match &p.primary {
        Some(primary) => (
            primary.as_str(),
            "SELECT pg_current_wal_lsn()::text",
            "its current WAL position",
        ),
        None => (
            node,
            "SELECT greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text",
            "the WAL it received",
        ),
    };
    lsn(ctx, at, sql)
        .await?
        .ok_or_else(|| StepError::new(format!("{at}: {what} is not known")))
}

pub async fn act(ctx: &StepContext, node: &str, p: &CatchUpParams) -> Result<(), StepError> {
    room_to_promote(ctx, node, p).await?;
    // A live proof: the candidate must have replayed (and, in a switchover, received) at least
    // that location; being exactly at it is enough.
    let goal = PositionGoal {
        target: Target::AtLeast(target(ctx, node, p).await?),
        received: p.primary.is_some(),
        cancel_grace: p
            .cancel_conflicts
            .then(|| Duration::from_millis(p.grace_ms)),
    };
    let timeout = Duration::from_millis(p.timeout_ms);
    let Err(e) = wait_position(ctx, node, CaughtUp::Replayed, goal, timeout).await else {
        return Ok(());
    };
    let mut message = format!(
        "{}; {}",
        e.message,
        why_behind(ctx, node, goal.target.lsn()).await
    );
    message.push_str(&nothing_stopped(p));
    Err(StepError {
        message,
        stderr: e.stderr,
    })
}

/// WAL segments a promotion writes at once: the first segment of the new timeline (a copy of
/// the last one) and the end-of-recovery checkpoint's.
const PROMOTION_SEGMENTS: u64 = 2;

/// A candidate whose pg_wal has no room for [`PROMOTION_SEGMENTS`] cannot receive more WAL,
/// and its promotion would fail writing the new timeline (PANIC: the node goes down, and with
/// it the last copy of the data that was to be primary): refuse before anything stops.
async fn room_to_promote(
    ctx: &StepContext,
    node: &str,
    p: &CatchUpParams,
) -> Result<(), StepError> {
    let free = super::data_dir::wal_free_bytes(ctx, node).await?;
    let rows = ctx
        .query(
            node,
            "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'",
            &[],
        )
        .await?;
    let segment = rows.first().map_or(16 << 20, |r| r.get::<_, i64>(0)) as u64;
    let need = PROMOTION_SEGMENTS * segment;
    if free >= need {
        return Ok(());
    }
    let mut message = format!(
        "{node}'s pg_wal has {} free, and promoting it needs at least {} ({PROMOTION_SEGMENTS} WAL \
         segments): free space on its file system first",
        ByteSize::human(free),
        ByteSize::human(need)
    );
    message.push_str(&nothing_stopped(p));
    Err(StepError::new(message))
}

/// In a switchover, the failed proof's reassurance.
fn nothing_stopped(p: &CatchUpParams) -> String {
    p.primary
        .as_ref()
        .map(|primary| {
            format!(
                ". Nothing was stopped: {primary} is still the primary and writes were never interrupted"
            )
        })
        .unwrap_or_default()
}

/// What the node says of itself when it did not catch up: when its WAL receiver last heard
/// from its upstream, its lag behind `target`, and what blocks its replay.
async fn why_behind(ctx: &StepContext, node: &str, target: Lsn) -> String {
    let sql = "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
        (SELECT last_msg_receipt_time::text FROM pg_stat_wal_receiver)";
    let Ok(rows) = ctx.query(node, sql, &[]).await else {
        return format!("{node} did not answer");
    };
    let at = |i: usize| -> Option<String> { rows.first().and_then(|r| r.get(i)) };
    let behind = |i: usize| {
        at(i)
            .and_then(|v| v.parse::<Lsn>().ok())
            .map(|l| format!("{l} ({} behind)", ByteSize::human(target.bytes_after(l))))
            .unwrap_or_else(|| "unknown".into())
    };
    let mut out = format!(
        "{node} received up to {}, replayed up to {}; its WAL receiver last heard from its upstream at {}",
        behind(0),
        behind(1),
        at(2).unwrap_or_else(|| "an unknown time (no WAL receiver)".into())
    );
    if let Ok(client) = ctx.client(node).await {
        if let Some(c) = conflict_now(&client).await {
            out.push_str(&format!("; its replay waits on {}", c.blocked_on()));
        }
    }
    out
}

pub async fn verify(_ctx: &StepContext, _node: &str, _p: &CatchUpParams) -> Result<(), StepError> {
    Ok(())
}
