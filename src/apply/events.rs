//! The seam between the apply engine and whoever shows its progress (Terraform's hooks).
//! The engine calls these from its single coordinator; implementations live in
//! `crate::render::progress` (a live TTY view and plain timestamped lines) and in tests.

use std::time::Duration;

use super::Outcome;
use crate::plan::Step;

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
}

/// Events that go nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullEvents;

impl ApplyEvents for NullEvents {
    fn step_started(&self, _: &Step) {}
    fn step_finished(&self, _: &Step, _: &Outcome, _: Duration) {}
    fn message(&self, _: &str) {}
}
