//! Scheduler tests with a fake executor: ordering, concurrency limit, failure handling, journal.

use super::*;
use crate::plan::{Action, CheckpointParams, Summary};
use std::collections::HashMap;
use std::sync::Mutex;

pub(super) fn step(id: StepId, node: &str, after: &[StepId]) -> Step {
    Step {
        id,
        node: node.into(),
        action: Action::Checkpoint(CheckpointParams {
            timeout_ms: None,
            reason: "test".into(),
        }),
        after: after.to_vec(),
        destructive: false,
        description: format!("step {id}"),
    }
}

pub(super) fn plan(steps: Vec<Step>) -> Plan {
    Plan {
        pgtopo_version: "test".into(),
        cluster: "t".into(),
        topology_sha256: String::new(),
        fingerprint: Default::default(),
        pooler_fingerprint: Default::default(),
        changes: vec![],
        steps,
        file_diffs: vec![],
        topology: None,
        summary: Summary {
            add: 0,
            change: 0,
            remove: 0,
            steps: 0,
            restarts: vec![],
            write_unavailable: None,
            data_loss: crate::plan::DataLoss::None {
                reason: String::new(),
            },
            notes: vec![],
            cannot_fix: vec![],
            prepared_transactions: vec![],
        },
    }
}

/// The fake's work: a pause of `ms` on tokio's paused test clock (every test here starts paused),
/// so the scheduler's overlap is deterministic and no real time passes.
async fn wait_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[derive(Clone)]
enum Behaviour {
    Ok(u64),
    Already,
    Fail(u64),
}

#[derive(Default)]
struct Fake {
    behaviour: HashMap<StepId, Behaviour>,
    log: Mutex<Vec<String>>,
    running: Mutex<(usize, usize)>,
}

#[async_trait]
impl StepExecutor for Fake {
    async fn execute(&self, step: &Step) -> Result<Executed, StepError> {
        {
            let mut r = self.running.lock().unwrap();
            r.0 += 1;
            r.1 = r.1.max(r.0);
        }
        self.log.lock().unwrap().push(format!("start {}", step.id));
        let b = self
            .behaviour
            .get(&step.id)
            .cloned()
            .unwrap_or(Behaviour::Ok(1));
        let res = match b {
            Behaviour::Ok(ms) => {
                wait_ms(ms).await;
                Ok(Executed::Done)
            }
            Behaviour::Already => Ok(Executed::AlreadyDone),
            Behaviour::Fail(ms) => {
                wait_ms(ms).await;
                Err(StepError::with_stderr("tool failed", "pg_ctl: boom\n"))
            }
        };
        self.log.lock().unwrap().push(format!("end {}", step.id));
        self.running.lock().unwrap().0 -= 1;
        res
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl ApplyEvents for Recorder {
    fn step_started(&self, s: &Step) {
        self.0.lock().unwrap().push(format!("started {}", s.id));
    }
    fn step_finished(&self, s: &Step, o: &Outcome, _: Duration) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", s.id, o.label()));
    }
    fn message(&self, t: &str) {
        self.0.lock().unwrap().push(t.into());
    }
}

fn outcomes(r: &ApplyReport) -> Vec<(StepId, &'static str)> {
    r.steps.iter().map(|s| (s.id, s.outcome.name())).collect()
}

#[tokio::test(start_paused = true)]
async fn dependencies_run_in_order() {
    let fake = Arc::new(Fake::default());
    let p = plan(vec![
        step(1, "n1", &[]),
        step(2, "n1", &[1]),
        step(3, "n2", &[2]),
    ]);
    let r = apply(&p, fake.clone(), &NullEvents, &ApplyOptions::default())
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(
        *fake.log.lock().unwrap(),
        ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    );
}

#[tokio::test(start_paused = true)]
async fn independent_steps_run_concurrently_up_to_parallelism() {
    let mut fake = Fake::default();
    for i in 1..=6 {
        fake.behaviour.insert(i, Behaviour::Ok(30));
    }
    let fake = Arc::new(fake);
    let p = plan((1..=6).map(|i| step(i, "n", &[])).collect());
    let opts = ApplyOptions {
        parallelism: 2,
        journal: None,
    };
    let r = apply(&p, fake.clone(), &NullEvents, &opts).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(fake.running.lock().unwrap().1, 2);

    let fake4 = Arc::new(Fake {
        behaviour: (1..=6).map(|i| (i, Behaviour::Ok(30))).collect(),
        ..Default::default()
    });
    apply(&p, fake4.clone(), &NullEvents, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(fake4.running.lock().unwrap().1, 4);
}

#[tokio::test(start_paused = true)]
async fn failure_skips_dependents_lets_running_finish_and_starts_nothing_new() {
    // 1 fails fast; 2 (independent) is running and finishes; 3 depends on 1 → skipped;
    // 4 depends on 3 → skipped; 5 is independent but not started (parallelism 2, after failure).
    let mut fake = Fake::default();
    fake.behaviour.insert(1, Behaviour::Fail(5));
    fake.behaviour.insert(2, Behaviour::Ok(50));
    let fake = Arc::new(fake);
    let p = plan(vec![
        step(1, "n1", &[]),
        step(2, "n2", &[]),
        step(3, "n1", &[1]),
        step(4, "n3", &[3]),
        step(5, "n3", &[]),
    ]);
    let ev = Recorder::default();
    let opts = ApplyOptions {
        parallelism: 2,
        journal: None,
    };
    let r = apply(&p, fake.clone(), &ev, &opts).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(
        outcomes(&r),
        [
            (1, "failed"),
            (2, "done"),
            (3, "skipped"),
            (4, "skipped"),
            (5, "not_started")
        ]
    );
    let f = r.failures().next().unwrap();
    match &f.outcome {
        Outcome::Failed(e) => assert_eq!(e.stderr.as_deref(), Some("pg_ctl: boom")),
        o => panic!("{o:?}"),
    }
    let events = ev.0.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            "started 1",
            "started 2",
            "1 failed",
            "2 done",
            "3 skipped (upstream failed)",
            "4 skipped (upstream failed)",
            "5 not started"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn already_done_counts_as_success_for_dependents() {
    let mut fake = Fake::default();
    fake.behaviour.insert(1, Behaviour::Already);
    let fake = Arc::new(fake);
    let p = plan(vec![step(1, "n1", &[]), step(2, "n1", &[1])]);
    let r = apply(&p, fake, &NullEvents, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(outcomes(&r), [(1, "already_done"), (2, "done")]);
    assert_eq!(r.count("already_done"), 1);
}

#[tokio::test(start_paused = true)]
async fn malformed_plans_are_refused_before_anything_runs() {
    let fake = Arc::new(Fake::default());
    let p = plan(vec![step(1, "n1", &[2]), step(2, "n1", &[])]);
    let e = apply(&p, fake.clone(), &NullEvents, &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not come before it"), "{e}");
    let p = plan(vec![step(2, "n1", &[])]);
    assert!(
        apply(&p, fake.clone(), &NullEvents, &ApplyOptions::default())
            .await
            .is_err()
    );
    assert!(fake.log.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn journal_has_one_line_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let mut fake = Fake::default();
    fake.behaviour.insert(2, Behaviour::Fail(1));
    let fake = Arc::new(fake);
    let p = plan(vec![
        step(1, "n1", &[]),
        step(2, "n2", &[1]),
        step(3, "n2", &[2]),
    ]);
    let opts = ApplyOptions {
        parallelism: 4,
        journal: Some(path.clone()),
    };
    apply(&p, fake, &NullEvents, &opts).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<journal::JournalEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].outcome, "done");
    assert_eq!(lines[0].kind, "checkpoint");
    assert!(lines[0].start.as_deref().unwrap().ends_with('Z'));
    assert_eq!(lines[1].outcome, "failed");
    assert_eq!(lines[1].error.as_deref(), Some("tool failed\npg_ctl: boom"));
    assert_eq!(lines[2].outcome, "skipped");
    assert_eq!(lines[2].start, None);
}

fn with_action(mut s: Step, action: Action) -> Step {
    s.action = action;
    s
}

fn resume(id: StepId, after: &[StepId]) -> Step {
    let a = Action::ResumePooler(crate::plan::ResumePoolerParams {
        databases: vec!["app".into()],
    });
    with_action(step(id, "pgb", after), a)
}

fn on_failure_hook(id: StepId) -> Step {
    let a = Action::Hook(crate::plan::HookParams {
        point: crate::plan::HookPoint::OnFailure,
        command: vec!["/bin/true".into()],
        timeout_ms: 1000,
        env: Default::default(),
    });
    with_action(step(id, "hook.on_failure", &[]), a)
}

#[tokio::test(start_paused = true)]
async fn a_pooler_resume_runs_after_a_failure_then_the_on_failure_hooks() {
    let mut fake = Fake::default();
    fake.behaviour.insert(2, Behaviour::Fail(1));
    let fake = Arc::new(fake);
    // 1 pause, 2 stop (fails), 3 promote, 4 resume after 3, 5 on-failure hook.
    let p = plan(vec![
        step(1, "pgb", &[]),
        step(2, "n1", &[1]),
        step(3, "n2", &[2]),
        resume(4, &[3]),
        on_failure_hook(5),
    ]);
    let r = apply(&p, fake.clone(), &NullEvents, &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        outcomes(&r),
        [
            (1, "done"),
            (2, "failed"),
            (3, "skipped"),
            (4, "done"),
            (5, "done")
        ]
    );
    let log = fake.log.lock().unwrap();
    assert_eq!(
        log[log.len() - 4..],
        ["start 4", "end 4", "start 5", "end 5"]
    );
}

#[tokio::test(start_paused = true)]
async fn on_failure_hooks_are_not_needed_when_nothing_failed() {
    let fake = Arc::new(Fake::default());
    let p = plan(vec![
        step(1, "n1", &[]),
        resume(2, &[1]),
        on_failure_hook(3),
    ]);
    let r = apply(&p, fake.clone(), &NullEvents, &ApplyOptions::default())
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(outcomes(&r), [(1, "done"), (2, "done"), (3, "not_needed")]);
}
