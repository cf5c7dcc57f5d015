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

use std::time::Duration;

use super::position::{wait_position, CaughtUp, PositionGoal, Target};
use super::{control, data_dir, server, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::{ReplayTarget, WaitReplayParams};
use crate::units::Lsn;

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

pub async fn act(ctx: &StepContext, node: &str, p: &WaitReplayParams) -> Result<(), StepError> {
    // A shutdown checkpoint must itself be replayed; a known location (e.g. all a failover
    // candidate received) must be reached.
    let res = match target(ctx, p).await {
        Ok(lsn) => {
            let target = match p.target {
                ReplayTarget::ShutdownCheckpointOf { .. } => Target::PastCheckpoint(lsn),
                ReplayTarget::Lsn { .. } => Target::AtLeast(lsn),
            };
            let goal = PositionGoal::reach(target);
            let timeout = Duration::from_millis(p.timeout_ms);
            wait_position(ctx, node, CaughtUp::Replayed, goal, timeout).await
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
