//! `pgtopo apply --format json`: the machine-readable UI, one JSON object per line on stdout
//! (Terraform's `-json`). Every line is an [`EventLine`]: the stream's `format_version`, an RFC
//! 3339 UTC timestamp and one [`Event`], told apart by `type`. `schemas/apply-events.schema.json`
//! is generated from these types and a test keeps it current.
//!
//! A stream is: `plan`, `lock` (acquired), per step `step_started` then one of `step_done`,
//! `step_failed`, `step_skipped` (a step that never started has only the latter), `message`s
//! anywhere, `end_state`, `lock` (released) and always a last `outcome` with the exit code.
//! Nothing secret reaches an event: step errors never carry secrets, and the plan carries none.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::apply::{ApplyEvents, Outcome};
use crate::plan::{Plan, Step, StepId};

/// Version of the event stream; bump on an incompatible change.
pub const EVENTS_FORMAT_VERSION: u32 = 1;

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "pgtopo apply event")]
pub struct EventLine {
    pub format_version: u32,
    /// RFC 3339, UTC, milliseconds.
    pub timestamp: String,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The plan about to be applied.
    Plan {
        cluster: String,
        /// A reviewed plan file (`apply PLAN`), or a plan made by this apply.
        saved: bool,
        add: u32,
        change: u32,
        remove: u32,
        steps: u32,
        /// Nodes that restart.
        restarts: Vec<String>,
        /// `Writes unavailable: … Data loss: …`, as the text plan says it.
        risk: String,
    },
    /// The cluster lock was acquired or released.
    Lock { cluster: String, state: LockState },
    /// A step began.
    StepStarted {
        step: StepId,
        kind: String,
        node: String,
        description: String,
    },
    /// A step succeeded (`already_done`: its check found nothing to do).
    StepDone {
        step: StepId,
        kind: String,
        node: String,
        already_done: bool,
        elapsed_ms: u64,
    },
    /// A step failed.
    StepFailed {
        step: StepId,
        kind: String,
        node: String,
        elapsed_ms: u64,
        error: String,
        /// The failing tool's stderr, verbatim.
        stderr: Option<String>,
    },
    /// A step did not run.
    StepSkipped {
        step: StepId,
        kind: String,
        node: String,
        reason: SkipReason,
    },
    /// A note (a stale lock removed, a journal problem, …).
    Message { text: String },
    /// The plan's writes-unavailable window as the apply measured it (from the start of its first
    /// step to the end of its last); `over_estimate` (a warning): more than twice the plan's
    /// estimate.
    WritesUnavailable {
        from_step: StepId,
        to_step: StepId,
        measured_ms: u64,
        estimated_ms: u64,
        over_estimate: bool,
    },
    /// The end-state proof: the cluster observed after the last step; `matches` when nothing
    /// differs from the topology file.
    EndState {
        matches: bool,
        mismatches: Vec<String>,
    },
    /// The last event: the exit code (SPEC §3) and, when it is not 0, why.
    Outcome {
        exit_code: u8,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    Acquired,
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A step it depends on failed or was skipped.
    UpstreamFailed,
    /// An on-failure step (hook) when nothing failed.
    NotNeeded,
    /// Another step failed before it could start.
    NotStarted,
}

/// The event a finished step makes.
fn finished(step: &Step, outcome: &Outcome, elapsed: Duration) -> Event {
    let (step_id, kind, node) = (step.id, step.action.kind().to_string(), step.node.clone());
    let elapsed_ms = elapsed.as_millis() as u64;
    match outcome {
        Outcome::Done | Outcome::AlreadyDone => Event::StepDone {
            step: step_id,
            kind,
            node,
            already_done: *outcome == Outcome::AlreadyDone,
            elapsed_ms,
        },
        Outcome::Failed(e) => Event::StepFailed {
            step: step_id,
            kind,
            node,
            elapsed_ms,
            error: e.message.clone(),
            stderr: e.stderr.clone(),
        },
        Outcome::SkippedUpstreamFailed | Outcome::NotStarted | Outcome::NotNeeded => {
            Event::StepSkipped {
                step: step_id,
                kind,
                node,
                reason: match outcome {
                    Outcome::NotStarted => SkipReason::NotStarted,
                    Outcome::NotNeeded => SkipReason::NotNeeded,
                    _ => SkipReason::UpstreamFailed,
                },
            }
        }
    }
}

/// Writes each event as one line and flushes it at once, so a reader sees it as it happens.
pub struct JsonEvents {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for JsonEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonEvents")
    }
}

impl JsonEvents {
    /// A stream to `out` (the CLI passes stdout).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonEvents {
            out: Mutex::new(out),
        }
    }

    /// A stream to stdout.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }

    fn emit(&self, event: Event) {
        let line = EventLine {
            format_version: EVENTS_FORMAT_VERSION,
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
        };
        let text = serde_json::to_string(&line).expect("an event serialises");
        let mut out = self.out.lock().expect("event output");
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

impl ApplyEvents for JsonEvents {
    fn step_started(&self, step: &Step) {
        self.emit(Event::StepStarted {
            step: step.id,
            kind: step.action.kind().to_string(),
            node: step.node.clone(),
            description: step.description.clone(),
        });
    }
    fn step_finished(&self, step: &Step, outcome: &Outcome, elapsed: Duration) {
        self.emit(finished(step, outcome, elapsed));
    }
    fn message(&self, text: &str) {
        self.emit(Event::Message { text: text.into() });
    }
    fn plan_ready(&self, plan: &Plan, saved: bool) {
        let s = &plan.summary;
        self.emit(Event::Plan {
            cluster: plan.cluster.clone(),
            saved,
            add: s.add,
            change: s.change,
            remove: s.remove,
            steps: s.steps,
            restarts: s.restarts.clone(),
            risk: super::plan::risk_line(plan),
        });
    }
    fn lock_changed(&self, cluster: &str, held: bool) {
        self.emit(Event::Lock {
            cluster: cluster.into(),
            state: if held {
                LockState::Acquired
            } else {
                LockState::Released
            },
        });
    }
    fn writes_unavailable(&self, w: &crate::apply::MeasuredWindow) {
        self.emit(Event::WritesUnavailable {
            from_step: w.from_step,
            to_step: w.to_step,
            measured_ms: w.measured.as_millis() as u64,
            estimated_ms: w.estimated_ms,
            over_estimate: w.over_estimate(),
        });
    }
    fn end_state_checked(&self, mismatches: &[String]) {
        self.emit(Event::EndState {
            matches: mismatches.is_empty(),
            mismatches: mismatches.to_vec(),
        });
    }
    fn outcome(&self, exit_code: u8, error: Option<&str>) {
        self.emit(Event::Outcome {
            exit_code,
            error: error.map(str::to_string),
        });
    }
}

/// The JSON Schema of one line, pretty-printed with a trailing newline: the content of
/// `schemas/apply-events.schema.json`.
pub fn schema_text() -> String {
    let root = schemars::schema_for!(EventLine);
    let mut s = serde_json::to_string_pretty(&root).expect("a schema serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::StepError;
    use crate::plan::{Action, ReloadParams};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_outcome_is_one_parseable_line_of_its_type() {
        let buf = Shared::default();
        let ev = JsonEvents::new(Box::new(buf.clone()));
        let step = Step {
            id: 2,
            node: "n1".into(),
            action: Action::Reload(ReloadParams {
                reason: "settings".into(),
            }),
            after: vec![1],
            destructive: false,
            description: "reload n1".into(),
        };
        let ms = Duration::from_millis(1234);
        ev.step_started(&step);
        ev.step_finished(&step, &Outcome::AlreadyDone, ms);
        ev.step_finished(
            &step,
            &Outcome::Failed(StepError::with_stderr("boom", "FATAL: x")),
            ms,
        );
        ev.step_finished(&step, &Outcome::NotStarted, Duration::ZERO);
        ev.outcome(1, Some("apply failed"));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<EventLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let types: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
            .collect();
        assert_eq!(
            types,
            [
                "\"step_started\"",
                "\"step_done\"",
                "\"step_failed\"",
                "\"step_skipped\"",
                "\"outcome\""
            ]
        );
        assert!(matches!(
            &lines[1].event,
            Event::StepDone {
                already_done: true,
                elapsed_ms: 1234,
                ..
            }
        ));
        assert!(matches!(
            &lines[2].event,
            Event::StepFailed { stderr: Some(s), .. } if s == "FATAL: x"
        ));
        assert!(matches!(
            &lines[3].event,
            Event::StepSkipped {
                reason: SkipReason::NotStarted,
                ..
            }
        ));
        assert!(lines.iter().all(|l| l.format_version == 1));
    }
}
