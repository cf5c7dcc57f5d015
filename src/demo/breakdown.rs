//! Where an apply's time went, for the benchmarks: the apply runs with `--format json` and its
//! events' timestamps place each step on the benchmark's clock.

use std::time::{Duration, SystemTime};

use crate::render::json_events::{Event, EventLine};

/// Where an apply's time went, read from its `--format json` events: milliseconds after the
/// apply started (the events' timestamps have millisecond resolution).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Breakdown {
    /// The plan was made (process start, lock, observation, planning).
    pub plan_ready_ms: u64,
    /// The steps that started before `until` (the first write acknowledged after the apply began,
    /// or the end of the longest gap between writes): `kind node`, when it started
    /// and how long it took.
    pub steps: Vec<(String, u64, u64)>,
}

impl Breakdown {
    pub fn from_events(stdout: &str, t0: SystemTime, until: Duration) -> Breakdown {
        let mut b = Breakdown::default();
        for line in stdout.lines() {
            let Ok(ev) = serde_json::from_str::<EventLine>(line) else {
                continue;
            };
            let at = humantime::parse_rfc3339(&ev.timestamp)
                .ok()
                .and_then(|t| t.duration_since(t0).ok())
                .unwrap_or_default();
            let ms = at.as_millis() as u64;
            match ev.event {
                Event::Plan { .. } => b.plan_ready_ms = ms,
                Event::StepDone {
                    kind,
                    node,
                    elapsed_ms,
                    ..
                } => {
                    let started = ms.saturating_sub(elapsed_ms);
                    if started <= until.as_millis() as u64 {
                        b.steps
                            .push((format!("{kind} {node}"), started, elapsed_ms));
                    }
                }
                _ => {}
            }
        }
        b
    }

    pub fn describe(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(what, at, took)| format!("{what} at {at} ms took {took} ms"))
            .collect();
        format!(
            "plan ready at {} ms; {}",
            self.plan_ready_ms,
            steps.join("; ")
        )
    }
}
