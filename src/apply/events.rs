//! The seam between the apply engine and whoever shows its progress (Terraform's hooks).
//! The engine calls these from its single coordinator; implementations live in
//! `crate::render::progress` (a live TTY view and plain timestamped lines),
//! `crate::render::json_events` (one JSON object per line) and in tests.
//!
//! The engine reports steps; `cli::apply_cmd` reports what surrounds the walk (the plan, the
//! lock, the end-state check, the outcome) through the methods with a default, which only the
//! JSON stream needs: people see those as the plan text, messages and the final diagnostic.

use std::time::Duration;

use super::Outcome;
use crate::plan::{Plan, Step};

/// Progress of an apply, as it happens.
pub trait ApplyEvents: Send + Sync {
    /// A step starts (its check, act and verify follow).
    fn step_started(&self, step: &Step);
    /// A step ended: done, already done, failed, skipped (upstream failed) or not started.
    fn step_finished(&self, step: &Step, outcome: &Outcome, elapsed: Duration);
    /// A free-form note (lock taken, journal problem, …).
    fn message(&self, text: &str);
    /// The walk is over (every step has its outcome): a live view clears itself.
    fn apply_finished(&self) {}
    /// The plan about to be applied (`saved`: a reviewed plan file, else made now).
    fn plan_ready(&self, _plan: &Plan, _saved: bool) {}
    /// The cluster lock was taken (`true`) or released (`false`).
    fn lock_changed(&self, _cluster: &str, _held: bool) {}
    /// The writes-unavailable window as measured, against the plan's estimate.
    fn writes_unavailable(&self, _window: &super::MeasuredWindow) {}
    /// The end-state proof: the cluster observed after the last step, and what still differs.
    fn end_state_checked(&self, _mismatches: &[String]) {}
    /// The command is over: its exit code, and the diagnostic when it failed.
    fn outcome(&self, _exit_code: u8, _error: Option<&str>) {}
}

/// Events that go nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullEvents;

impl ApplyEvents for NullEvents {
    fn step_started(&self, _: &Step) {}
    fn step_finished(&self, _: &Step, _: &Outcome, _: Duration) {}
    fn message(&self, _: &str) {}
}
