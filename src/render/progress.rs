//! Progress of an apply: the two implementations of [`ApplyEvents`], and the final report.
//!
//! On a terminal ([`TtyProgress`]) each running step has one live line with a spinner and its
//! elapsed time (indicatif), and finished steps scroll above as one line each. Elsewhere (CI,
//! pipes: [`PlainProgress`]) every event is one plain line with an RFC 3339 UTC timestamp. Both
//! only render what the engine tells them; neither influences what is done.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{ApplyEvents, ApplyReport, Outcome};
use crate::plan::Step;

/// `  3  wait_replay        n2  description`
fn step_line(step: &Step) -> String {
    format!(
        "{:>3}  {:<17}  {}  {}",
        step.id,
        step.action.kind(),
        step.node,
        step.description
    )
}

/// Elapsed time for people: `12 ms`, `1.4 s`, `2m 3s`.
pub fn human_elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn finished_line(step: &Step, outcome: &Outcome, elapsed: Duration) -> String {
    let mut s = match outcome {
        Outcome::Done | Outcome::AlreadyDone | Outcome::Failed(_) => format!(
            "{}  {}  ({})",
            step_line(step),
            outcome.label(),
            human_elapsed(elapsed)
        ),
        _ => format!("{}  {}", step_line(step), outcome.label()),
    };
    if let Outcome::Failed(e) = outcome {
        s.push_str(&format!("\n       error: {}", e.message));
        if let Some(stderr) = &e.stderr {
            for l in stderr.lines() {
                s.push_str(&format!("\n       | {l}"));
            }
        }
    }
    s
}

/// Plain timestamped lines, for logs and CI.
#[derive(Debug, Default)]
pub struct PlainProgress {
    out: Mutex<()>,
}

impl PlainProgress {
    fn emit(&self, text: &str) {
        let _g = self.out.lock().expect("progress output");
        let ts = humantime::format_rfc3339_millis(SystemTime::now());
        let mut o = std::io::stdout().lock();
        for (i, l) in text.lines().enumerate() {
            if i == 0 {
                let _ = writeln!(o, "{ts}  {l}");
            } else {
                let _ = writeln!(o, "{:width$}  {l}", "", width = ts.to_string().len());
            }
        }
        let _ = o.flush();
    }
}

impl ApplyEvents for PlainProgress {
    fn step_started(&self, step: &Step) {
        self.emit(&format!("{}  started", step_line(step)));
    }
    fn step_finished(&self, step: &Step, outcome: &Outcome, elapsed: Duration) {
        self.emit(&finished_line(step, outcome, elapsed));
    }
    fn message(&self, text: &str) {
        self.emit(text);
    }
}

/// Live lines on a terminal.
#[derive(Debug)]
pub struct TtyProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<u32, ProgressBar>>,
}

impl Default for TtyProgress {
    fn default() -> Self {
        TtyProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl ApplyEvents for TtyProgress {
    fn step_started(&self, step: &Step) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}  [{elapsed}]").expect("static template"),
        );
        bar.set_message(step_line(step));
        bar.enable_steady_tick(Duration::from_millis(100));
        self.bars.lock().expect("bars").insert(step.id, bar);
    }
    fn step_finished(&self, step: &Step, outcome: &Outcome, elapsed: Duration) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(&step.id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let mark = match outcome {
            Outcome::Done => "✓",
            Outcome::AlreadyDone => "=",
            Outcome::Failed(_) => "✗",
            _ => "-",
        };
        let _ = self
            .multi
            .println(format!("{mark} {}", finished_line(step, outcome, elapsed)));
    }
    fn message(&self, text: &str) {
        let _ = self.multi.println(text);
    }
    fn apply_finished(&self) {
        for (_, bar) in self.bars.lock().expect("bars").drain() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// The events sink for this process: live lines when stdout is a terminal, else plain lines.
pub fn for_stdout() -> Box<dyn ApplyEvents> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        Box::new(TtyProgress::default())
    } else {
        Box::new(PlainProgress::default())
    }
}

/// The final report: counts, then what failed (with the tool's stderr), what was skipped and
/// what was not started.
/// "Steps 4–6 (writes unavailable) took 0.21 s." and, past twice the estimate, a warning line.
pub fn window(m: &crate::apply::MeasuredWindow, checkpoint_first: bool) -> String {
    let mut out = format!(
        "Steps {}–{} (writes unavailable) took {}{}.",
        m.from_step,
        m.to_step,
        human_elapsed(m.measured),
        if checkpoint_first {
            ", the CHECKPOINT before the stop (writes still possible) included"
        } else {
            ""
        }
    );
    if m.over_estimate() {
        out.push_str(&format!(
            "\nWarning: writes were unavailable for {}, more than twice the plan's estimate ({} ms).",
            human_elapsed(m.measured),
            m.estimated_ms
        ));
    }
    out
}

pub fn report(r: &ApplyReport) -> String {
    let mut s = String::new();
    let head = if r.succeeded() {
        "Apply complete!"
    } else {
        "Apply failed."
    };
    s.push_str(&format!(
        "{head} {} done, {} already done, {} failed, {} skipped (upstream failed), {} not started. ({})\n",
        r.count("done"),
        r.count("already_done"),
        r.count("failed"),
        r.count("skipped"),
        r.count("not_started"),
        human_elapsed(r.elapsed)
    ));
    let failed = !r.succeeded();
    for st in &r.steps {
        match &st.outcome {
            // After a failure, say exactly what was done too.
            Outcome::Done | Outcome::AlreadyDone if failed => s.push_str(&format!(
                "  {:<12} {:>3}  {} {}\n",
                st.outcome.label(),
                st.id,
                st.kind,
                st.node
            )),
            Outcome::Failed(e) => {
                s.push_str(&format!(
                    "  failed       {:>3}  {} {}: {}\n",
                    st.id, st.kind, st.node, e.message
                ));
                if let Some(stderr) = &e.stderr {
                    for l in stderr.lines() {
                        s.push_str(&format!("               | {l}\n"));
                    }
                }
            }
            Outcome::SkippedUpstreamFailed | Outcome::NotStarted => s.push_str(&format!(
                "  {:<12} {:>3}  {} {}\n",
                if st.outcome == Outcome::NotStarted {
                    "not started"
                } else {
                    "skipped"
                },
                st.id,
                st.kind,
                st.node
            )),
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{MeasuredWindow, StepError, StepReport};

    #[test]
    fn a_window_past_twice_the_estimate_is_a_warning() {
        let w = |ms| MeasuredWindow {
            from_step: 4,
            to_step: 6,
            measured: Duration::from_millis(ms),
            estimated_ms: 2_000,
        };
        let ok = window(&w(3_900), false);
        assert!(
            ok.starts_with("Steps 4–6 (writes unavailable) took"),
            "{ok}"
        );
        assert!(!ok.contains("Warning"), "{ok}");
        assert!(!w(4_000).over_estimate());
        let late = window(&w(27_500), false);
        assert!(
            late.contains("Warning: writes were unavailable for")
                && late.contains("more than twice the plan's estimate (2000 ms)"),
            "{late}"
        );
    }

    #[test]
    fn report_lists_failures_with_stderr_and_what_did_not_run() {
        let mk = |id, kind, outcome| StepReport {
            id,
            kind,
            node: "n1".into(),
            description: String::new(),
            outcome,
            started_at: None,
            finished_at: None,
            elapsed: None,
        };
        let r = ApplyReport {
            steps: vec![
                mk(1, "stop", Outcome::Done),
                mk(
                    2,
                    "start",
                    Outcome::Failed(StepError::with_stderr(
                        "n1: pg_ctl exited with status 1",
                        "FATAL: boom",
                    )),
                ),
                mk(3, "drop_slot", Outcome::SkippedUpstreamFailed),
                mk(4, "reload", Outcome::NotStarted),
            ],
            elapsed: Duration::from_millis(1500),
        };
        let text = report(&r);
        assert!(text.starts_with("Apply failed. 1 done, 0 already done, 1 failed, 1 skipped (upstream failed), 1 not started. (1.5 s)"), "{text}");
        assert!(text.contains("| FATAL: boom"));
        assert!(text.contains("  done           1  stop n1"), "{text}");
        assert!(text.contains("skipped        3  drop_slot n1"));
        assert!(text.contains("not started    4  reload n1"), "{text}");
    }
}
