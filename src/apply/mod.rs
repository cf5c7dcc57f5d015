//! Apply: walk the plan's step DAG concurrently and report what happened. Never prints.
//!
//! ## Overview
//! [`apply`] runs exactly the steps of a [`Plan`] — it never re-derives work from the topology
//! file (Terraform: "apply walks only the plan"). Each step is handed to a [`StepExecutor`]
//! (the real one is [`crate::steps::Executor`]; tests use a fake), which checks whether the
//! step's result already holds, acts, and verifies.
//!
//! ## Scheduling
//! One coordinator ([`apply`]'s loop over its `Walk`) owns all state. A step becomes ready when
//! every step in its `after` list finished `done` or `already done`; ready steps start in id
//! order while fewer than `parallelism` run. Workers run on a `JoinSet` and send back one typed message each
//! ([`Finished`]). Only the coordinator emits events ([`ApplyEvents`]) and writes the journal,
//! so the event order is the order the coordinator saw things happen.
//!
//! ## Failure
//! After the first failure no new step starts; steps already running finish (a half-done
//! `pg_basebackup` is not interrupted). Then every step that depends, directly or through
//! others, on a failed step is reported `skipped (upstream failed)`, and the rest `not started`.
//! One failure is one error, never a cascade of errors. Two kinds of steps run after a failure
//! all the same, one at a time ([`crate::plan::Action::when`]): a pooler's RESUME (a pooler
//! left paused is an outage), then the on-failure hooks (reported `not needed` when nothing
//! failed).
//!
//! Architecture invariant: nothing here knows PostgreSQL; nothing here prints.

pub mod events;
pub mod journal;
pub mod lock;
pub mod preflight;
pub mod wait;

pub use events::{ApplyEvents, NullEvents};
pub use journal::Journal;
pub use wait::{wait_until, Poll, WaitError, WaitSpec};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use crate::plan::{Plan, Step, StepId, When};

/// What a step did when it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executed {
    /// It acted, and its result was verified.
    Done,
    /// Its result already held; nothing was done.
    AlreadyDone,
}

/// Why a step failed: one line, plus the tool's own stderr when a tool failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// The failing tool's stderr (trimmed), verbatim.
    pub stderr: Option<String>,
}

impl StepError {
    /// A failure without tool output.
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            stderr: None,
        }
    }

    /// A failure with the tool's stderr.
    pub fn with_stderr(message: impl Into<String>, stderr: impl Into<String>) -> Self {
        let s: String = stderr.into();
        let s = s.trim().to_string();
        StepError {
            message: message.into(),
            stderr: (!s.is_empty()).then_some(s),
        }
    }
}

impl From<WaitError> for StepError {
    fn from(e: WaitError) -> Self {
        StepError::new(e.to_string())
    }
}

/// Runs one step: check, act, verify. The seam between the scheduler and the step kinds.
#[async_trait]
pub trait StepExecutor: Send + Sync {
    async fn execute(&self, step: &Step) -> Result<Executed, StepError>;
}

/// How a step ended, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    AlreadyDone,
    Failed(StepError),
    /// A step it depends on failed (or was itself skipped).
    SkippedUpstreamFailed,
    /// Not started because another step failed.
    NotStarted,
    /// An on-failure step when nothing failed.
    NotNeeded,
}

impl Outcome {
    /// Stable name, used in the journal: `done`, `already_done`, `failed`, `skipped`,
    /// `not_started`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::AlreadyDone => "already_done",
            Outcome::Failed(_) => "failed",
            Outcome::SkippedUpstreamFailed => "skipped",
            Outcome::NotStarted => "not_started",
            Outcome::NotNeeded => "not_needed",
        }
    }

    /// Words for people: `done`, `already done`, `failed`, `skipped (upstream failed)`,
    /// `not started`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::AlreadyDone => "already done",
            Outcome::Failed(_) => "failed",
            Outcome::SkippedUpstreamFailed => "skipped (upstream failed)",
            Outcome::NotStarted => "not started",
            Outcome::NotNeeded => "not needed (nothing failed)",
        }
    }

    /// Done or already done.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Done | Outcome::AlreadyDone | Outcome::NotNeeded
        )
    }
}

/// One step in the report.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub id: StepId,
    pub kind: &'static str,
    pub node: String,
    pub description: String,
    pub outcome: Outcome,
    /// When it started (None when it never ran).
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub elapsed: Option<Duration>,
}

/// What an apply did, step by step, in plan order.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub steps: Vec<StepReport>,
    pub elapsed: Duration,
}

impl ApplyReport {
    /// Every step done or already done.
    pub fn succeeded(&self) -> bool {
        self.steps.iter().all(|s| s.outcome.is_success())
    }

    /// How many steps ended with this outcome name (see [`Outcome::name`]).
    pub fn count(&self, name: &str) -> usize {
        self.steps
            .iter()
            .filter(|s| s.outcome.name() == name)
            .count()
    }

    /// Wall time from the start of step `from` to the end of step `to` (the writes-unavailable
    /// window of a switchover: the stop of the old primary → the promotion done). None when
    /// either did not run.
    pub fn window(&self, from: StepId, to: StepId) -> Option<Duration> {
        let a = self.steps.get(from as usize - 1)?.started_at?;
        let b = self.steps.get(to as usize - 1)?.finished_at?;
        b.duration_since(a).ok()
    }

    /// The plan's writes-unavailable window as this apply measured it (None when its steps did
    /// not both run).
    pub fn measured_window(&self, w: &crate::plan::WriteWindow) -> Option<MeasuredWindow> {
        Some(MeasuredWindow {
            from_step: w.from_step,
            to_step: w.to_step,
            measured: self.window(w.from_step, w.to_step)?,
            estimated_ms: w.estimated_ms,
        })
    }

    /// The failed steps.
    pub fn failures(&self) -> impl Iterator<Item = &StepReport> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
    }
}

/// A writes-unavailable window measured against the plan's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasuredWindow {
    pub from_step: StepId,
    pub to_step: StepId,
    pub measured: Duration,
    pub estimated_ms: u64,
}

impl MeasuredWindow {
    /// More than twice the estimate: the plan the reviewer approved was wrong about its risk
    /// (SPEC §5c), a warning.
    pub fn over_estimate(&self) -> bool {
        self.measured.as_millis() > 2 * u128::from(self.estimated_ms)
    }
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Steps running at once, at least 1.
    pub parallelism: usize,
    /// Append a JSON-lines journal here.
    pub journal: Option<PathBuf>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 4,
            journal: None,
        }
    }
}

/// Why an apply could not run at all (a step failing is not this: it is in the report).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error("the plan is malformed: step {step} waits for step {after}, which {why}")]
    #[diagnostic(code(pgtopo::apply::plan))]
    BadPlan {
        step: StepId,
        after: StepId,
        why: &'static str,
    },
    #[error("step ids must be 1, 2, 3 … in order; found {found} at position {position}")]
    #[diagnostic(code(pgtopo::apply::plan))]
    BadIds { position: usize, found: StepId },
    #[error(transparent)]
    #[diagnostic(code(pgtopo::apply::journal))]
    Journal(#[from] journal::JournalError),
}

/// The message a worker sends back to the coordinator.
struct Finished {
    index: usize,
    result: Result<Executed, StepError>,
    started_at: SystemTime,
    finished_at: SystemTime,
    elapsed: Duration,
}

/// Check the plan's shape: ids are positions, every `after` names an earlier step.
fn check_plan(plan: &Plan) -> Result<(), ApplyError> {
    for (i, s) in plan.steps.iter().enumerate() {
        if s.id as usize != i + 1 {
            return Err(ApplyError::BadIds {
                position: i + 1,
                found: s.id,
            });
        }
        for &a in &s.after {
            if a == 0 || a as usize > plan.steps.len() {
                return Err(ApplyError::BadPlan {
                    step: s.id,
                    after: a,
                    why: "does not exist",
                });
            }
            if a >= s.id {
                return Err(ApplyError::BadPlan {
                    step: s.id,
                    after: a,
                    why: "does not come before it",
                });
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Ended,
}

/// Walk the plan. Returns the report (a failed step is in the report, not an `Err`).
pub async fn apply(
    plan: &Plan,
    executor: Arc<dyn StepExecutor>,
    events: &dyn ApplyEvents,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    check_plan(plan)?;
    let journal = match &opts.journal {
        Some(p) => Some(Journal::open(p)?),
        None => None,
    };
    let t0 = Instant::now();
    let mut walk = Walk::new(plan, executor, events, journal, opts.parallelism.max(1));
    loop {
        if !walk.failed {
            walk.start_ready();
        }
        if walk.running == 0 {
            break;
        }
        let Some(fin) = walk.join_next().await else {
            break;
        };
        walk.ended(fin);
    }
    walk.run_after_failure().await;
    walk.record_not_run();
    events.apply_finished();
    Ok(walk.report(t0))
}

/// When a step started and ended, and how long it took.
type Times = (Option<SystemTime>, Option<SystemTime>, Option<Duration>);

/// The coordinator's state: every step's state, outcome and times, and the running workers.
struct Walk<'a> {
    plan: &'a Plan,
    executor: Arc<dyn StepExecutor>,
    events: &'a dyn ApplyEvents,
    journal: Option<Journal>,
    parallelism: usize,
    state: Vec<State>,
    outcome: Vec<Option<Outcome>>,
    times: Vec<Times>,
    running: usize,
    failed: bool,
    workers: tokio::task::JoinSet<Finished>,
    /// Which running task is which step, to report a panicking worker.
    task_index: BTreeMap<tokio::task::Id, usize>,
}

impl<'a> Walk<'a> {
    fn new(
        plan: &'a Plan,
        executor: Arc<dyn StepExecutor>,
        events: &'a dyn ApplyEvents,
        journal: Option<Journal>,
        parallelism: usize,
    ) -> Self {
        let n = plan.steps.len();
        Walk {
            plan,
            executor,
            events,
            journal,
            parallelism,
            state: vec![State::Waiting; n],
            outcome: vec![None; n],
            times: vec![(None, None, None); n],
            running: 0,
            failed: false,
            workers: tokio::task::JoinSet::new(),
            task_index: BTreeMap::new(),
        }
    }

    /// Start every ready step, in id order, while there is room.
    fn start_ready(&mut self) {
        for (i, step) in self.plan.steps.iter().enumerate() {
            if self.running >= self.parallelism {
                break;
            }
            if self.state[i] != State::Waiting || step.action.when() == When::OnFailure {
                continue;
            }
            let ready = step.after.iter().all(|&a| {
                self.outcome[a as usize - 1]
                    .as_ref()
                    .is_some_and(Outcome::is_success)
            });
            if !ready {
                continue;
            }
            self.state[i] = State::Running;
            self.running += 1;
            self.events.step_started(step);
            let exec = self.executor.clone();
            let step = step.clone();
            let handle = self.workers.spawn(async move {
                let started_at = SystemTime::now();
                let t = Instant::now();
                let result = exec.execute(&step).await;
                Finished {
                    index: i,
                    result,
                    started_at,
                    finished_at: SystemTime::now(),
                    elapsed: t.elapsed(),
                }
            });
            self.task_index.insert(handle.id(), i);
        }
    }

    /// The next worker to end; a task that panicked or was cancelled is its step's failure.
    async fn join_next(&mut self) -> Option<Finished> {
        Some(match self.workers.join_next_with_id().await? {
            Ok((id, fin)) => {
                self.task_index.remove(&id);
                fin
            }
            Err(e) => {
                let index = self.task_index.remove(&e.id()).unwrap_or(usize::MAX);
                Finished {
                    index,
                    result: Err(StepError::new(format!(
                        "the step's task ended abnormally: {e}"
                    ))),
                    started_at: SystemTime::now(),
                    finished_at: SystemTime::now(),
                    elapsed: Duration::ZERO,
                }
            }
        })
    }

    /// Record a worker's end.
    fn ended(&mut self, fin: Finished) {
        self.running -= 1;
        if fin.index == usize::MAX {
            // Unreachable in practice: every task is registered.
            self.failed = true;
            return;
        }
        let i = fin.index;
        self.state[i] = State::Ended;
        let o = match fin.result {
            Ok(Executed::Done) => Outcome::Done,
            Ok(Executed::AlreadyDone) => Outcome::AlreadyDone,
            Err(e) => {
                self.failed = true;
                Outcome::Failed(e)
            }
        };
        self.times[i] = (
            Some(fin.started_at),
            Some(fin.finished_at),
            Some(fin.elapsed),
        );
        let at = (Some(fin.started_at), Some(fin.finished_at));
        record(
            self.events,
            &mut self.journal,
            &self.plan.steps[i],
            &o,
            at,
            fin.elapsed,
        );
        self.outcome[i] = Some(o);
    }

    /// After a failure: the steps that run anyway (a pooler's RESUME), then the on-failure
    /// hooks, one at a time.
    async fn run_after_failure(&mut self) {
        let plan = self.plan;
        let mut finally: Vec<usize> = (0..plan.steps.len())
            .filter(|&i| self.outcome[i].is_none())
            .filter(|&i| match plan.steps[i].action.when() {
                When::Always => self.failed,
                When::OnFailure => self.failed,
                When::Normal => false,
            })
            .collect();
        finally.sort_by_key(|&i| (plan.steps[i].action.when() == When::OnFailure, i));
        for i in finally {
            let step = &plan.steps[i];
            self.events.step_started(step);
            let started_at = SystemTime::now();
            let t = Instant::now();
            let o = match self.executor.execute(step).await {
                Ok(Executed::Done) => Outcome::Done,
                Ok(Executed::AlreadyDone) => Outcome::AlreadyDone,
                Err(e) => Outcome::Failed(e),
            };
            self.times[i] = (Some(started_at), Some(SystemTime::now()), Some(t.elapsed()));
            let at = (self.times[i].0, self.times[i].1);
            record(self.events, &mut self.journal, step, &o, at, t.elapsed());
            self.outcome[i] = Some(o);
        }
    }

    /// Whatever did not run: skipped because of a failed dependency, or not started.
    fn record_not_run(&mut self) {
        let plan = self.plan;
        for i in 0..plan.steps.len() {
            if self.outcome[i].is_some() {
                continue;
            }
            let step = &plan.steps[i];
            let upstream_failed = step.after.iter().any(|&a| {
                matches!(
                    self.outcome[a as usize - 1],
                    Some(Outcome::Failed(_)) | Some(Outcome::SkippedUpstreamFailed)
                )
            });
            let o = if step.action.when() == When::OnFailure {
                Outcome::NotNeeded
            } else if upstream_failed {
                Outcome::SkippedUpstreamFailed
            } else {
                Outcome::NotStarted
            };
            record(
                self.events,
                &mut self.journal,
                step,
                &o,
                (None, None),
                Duration::ZERO,
            );
            self.outcome[i] = Some(o);
        }
    }

    fn report(self, t0: Instant) -> ApplyReport {
        let steps = self
            .plan
            .steps
            .iter()
            .zip(self.outcome)
            .zip(self.times)
            .map(|((s, o), (started_at, finished_at, elapsed))| StepReport {
                id: s.id,
                kind: s.action.kind(),
                node: s.node.clone(),
                description: s.description.clone(),
                outcome: o.expect("every step has an outcome"),
                started_at,
                finished_at,
                elapsed,
            })
            .collect();
        ApplyReport {
            steps,
            elapsed: t0.elapsed(),
        }
    }
}

/// Report a step's end to the events and the journal.
fn record(
    events: &dyn ApplyEvents,
    journal: &mut Option<Journal>,
    step: &Step,
    o: &Outcome,
    at: (Option<SystemTime>, Option<SystemTime>),
    elapsed: Duration,
) {
    events.step_finished(step, o, elapsed);
    if let Some(j) = journal.as_mut() {
        if let Err(e) = j.record(step, o, at.0, at.1) {
            events.message(&format!("journal: {e}"));
        }
    }
}

#[cfg(test)]
mod tests;
