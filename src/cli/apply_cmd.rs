//! `pgtopo apply` and `pgtopo unlock`: the wiring of lock → observe → plan (or a saved plan,
//! checked for staleness) → approval → [`crate::apply::apply`] → report, with the exit codes of
//! SPEC §3 (3 stale plan, 4 locked, 5 not approved). No domain rule lives here.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use super::{exit, ApplyArgs, ApplyFormat, CmdResult, Failure, GlobalArgs};
use crate::apply::lock::{self, LockError};
use crate::apply::{ApplyEvents, ApplyOptions};
use crate::config::Desired;
use crate::observe::{self, ObserveOptions};
use crate::plan::{self, Action, Plan, PlanOptions};
use crate::render::{self, progress, OutputOptions};
use crate::steps::{Executor, StepContext};
use crate::transport::{self, DynTransport};

fn fail(code: u8, report: miette::Report) -> Failure {
    Failure { code, report }
}

fn lock_failure(e: LockError) -> Failure {
    let code = match e {
        LockError::Held { .. } | LockError::HolderAlive { .. } => exit::LOCKED,
        LockError::Io { .. } => exit::ERROR,
    };
    fail(code, miette::Report::new(e))
}

fn transports(d: &Desired) -> BTreeMap<String, DynTransport> {
    d.nodes
        .values()
        .map(|n| (n.name.clone(), transport::for_node(n)))
        .collect()
}

/// The events sink `--format` asks for. JSON keeps stdout for itself; it never asks for
/// approval (as Terraform's `-json`), so it needs a saved plan or --auto-approve.
fn events_for(
    a: &ApplyArgs,
    out: OutputOptions,
) -> Result<(Box<dyn ApplyEvents>, OutputOptions), Failure> {
    match a.format {
        ApplyFormat::Text => Ok((progress::for_stdout(), out)),
        ApplyFormat::Json if a.plan.is_none() && !a.auto_approve => Err(miette::miette!(
            help = "apply a saved plan (`pgtopo apply --format json plan.json`) or pass --auto-approve",
            "apply --format json cannot ask for approval; nothing was done"
        )
        .into()),
        ApplyFormat::Json => Ok((
            Box::new(render::json_events::JsonEvents::stdout()),
            out.reserving_stdout(),
        )),
    }
}

/// `pgtopo apply [PLAN]`.
pub async fn apply(g: &GlobalArgs, out: OutputOptions, a: ApplyArgs) -> CmdResult {
    let (events, out) = events_for(&a, out)?;
    let outcome = apply_with(g, out, &a, events.as_ref()).await;
    match &outcome {
        Ok(code) => events.outcome(*code, None),
        Err(f) => events.outcome(f.code, Some(&format!("{}", f.report))),
    }
    outcome
}

async fn apply_with(
    g: &GlobalArgs,
    out: OutputOptions,
    a: &ApplyArgs,
    events: &dyn ApplyEvents,
) -> CmdResult {
    let desired = Arc::new(crate::config::load(&g.one_file("apply")?)?);
    let ts = transports(&desired);
    // Every host at once (over SSH: its master and first session, the login shell's rc files
    // included): the lock, taken node by node in a fixed order, would otherwise connect them one
    // after another. A host that cannot be used is named by the lock or the preflight.
    futures::future::join_all(ts.values().map(|t| t.check_access())).await;
    let held = lock::acquire(&desired, &ts, a.lock_timeout.map(|d| d.0), events)
        .await
        .map_err(lock_failure)?;
    events.lock_changed(&desired.cluster, true);
    let outcome = apply_locked(a, out, desired.clone(), ts, events).await;
    match held.release().await {
        Ok(()) => events.lock_changed(&desired.cluster, false),
        Err(e) => events.message(&format!("warning: the lock was not fully released: {e}")),
    }
    outcome
}

/// Why a saved plan no longer fits, if it does not.
fn staleness(
    saved: &Plan,
    desired: &Desired,
    fresh: &BTreeMap<String, plan::NodeFingerprint>,
    fresh_poolers: &BTreeMap<String, String>,
) -> Option<String> {
    if saved.topology_sha256 != desired.sha256 {
        return Some(format!(
            "{} changed since the plan was made (sha256 {} → {})",
            desired.source_path.display(),
            short(&saved.topology_sha256),
            short(&desired.sha256)
        ));
    }
    if saved.cluster != desired.cluster {
        return Some(format!(
            "the plan is for cluster {}, not {}",
            saved.cluster, desired.cluster
        ));
    }
    let mut diffs = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        saved.fingerprint.keys().chain(fresh.keys()).collect();
    for n in names {
        match (saved.fingerprint.get(n), fresh.get(n)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let mut what = Vec::new();
                if a.system_identifier != b.system_identifier {
                    what.push("system identifier");
                }
                if a.timeline != b.timeline {
                    what.push("timeline");
                }
                if a.role != b.role {
                    what.push("role");
                }
                if a.upstream != b.upstream {
                    what.push("upstream");
                }
                if a.running != b.running {
                    what.push("running");
                }
                if a.settings_sha256 != b.settings_sha256 {
                    what.push("settings");
                }
                if a.hba_sha256 != b.hba_sha256 {
                    what.push("hba");
                }
                if a.slots_sha256 != b.slots_sha256 {
                    what.push("slots");
                }
                diffs.push(format!("{n}: {}", what.join(", ")));
            }
            _ => diffs.push(format!("{n}: not observed the same way")),
        }
    }
    diffs.extend(pooler_staleness(&saved.pooler_fingerprint, fresh_poolers));
    (!diffs.is_empty()).then(|| {
        format!(
            "the cluster changed since the plan was made ({})",
            diffs.join("; ")
        )
    })
}

/// How the poolers differ from when the plan was made.
fn pooler_staleness(
    saved: &BTreeMap<String, String>,
    fresh: &BTreeMap<String, String>,
) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = saved.keys().chain(fresh.keys()).collect();
    let seen = |m: &BTreeMap<String, String>, n: &String| {
        m.get(n).cloned().unwrap_or_else(|| "not declared".into())
    };
    names
        .into_iter()
        .filter(|n| saved.get(*n) != fresh.get(*n))
        .map(|n| format!("pooler {n}: was {}, now {}", seen(saved, n), seen(fresh, n)))
        .collect()
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// Ask for `yes` on the terminal. None when there is no terminal to ask.
fn ask_yes() -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let mut out = std::io::stdout().lock();
    let _ = write!(
        out,
        "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    );
    let _ = out.flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    Some(line.trim() == "yes")
}

async fn apply_locked(
    a: &ApplyArgs,
    out: OutputOptions,
    desired: Arc<Desired>,
    ts: BTreeMap<String, DynTransport>,
    events: &dyn ApplyEvents,
) -> CmdResult {
    let observed = observe::observe(&desired, &ObserveOptions::default()).await;
    let the_plan = match &a.plan {
        Some(path) => {
            let saved = super::plan_cmd::read_plan(path)?;
            let fresh = plan::fingerprint(&desired, &observed);
            let fresh_poolers = plan::fingerprint::poolers(&observed);
            if let Some(why) = staleness(&saved, &desired, &fresh, &fresh_poolers) {
                return Err(fail(
                    exit::STALE,
                    miette::miette!(
                        code = "pgtopo::apply::stale",
                        help = "run `pgtopo plan --out` again, review it, and apply the new plan",
                        "stale plan: {why}; nothing was done"
                    ),
                ));
            }
            saved
        }
        None => {
            let opts = PlanOptions {
                allow_failover: a.allow_failover,
                assume_down: Vec::new(),
                accept_data_loss: a.accept_data_loss,
            };
            plan::build(&desired, &observed, &opts)
                .map_err(|e| super::plan_cmd::plan_failure(e, &observed))?
        }
    };

    events.plan_ready(&the_plan, a.plan.is_some());
    if the_plan.steps.is_empty() {
        out.say(render::plan::text(&the_plan, out.color).trim_end());
        let left: Vec<String> = the_plan
            .summary
            .cannot_fix
            .iter()
            .map(|c| format!("{}: {} ({})", c.address, c.finding, c.why))
            .collect();
        events.end_state_checked(&left);
        return match left.is_empty() {
            true => Ok(exit::OK),
            false => Err(mismatch(
                left.into_iter(),
                "nothing to apply, but the cluster does not match",
            )),
        };
    }
    // A saved plan was reviewed when it was made (as in Terraform): it is applied without asking.
    let ask = a.plan.is_none() && !a.auto_approve;
    run_plan(a, out, &desired, &ts, &the_plan, events, ask).await?;

    // Converge: what one plan could not see (e.g. the slots of a node that was stopped when it
    // was observed) shows after it ran. Observe again; a plan made here (not a saved one) goes
    // on with a follow-up plan, shown and approved the same way, at most twice.
    let opts = PlanOptions {
        allow_failover: a.allow_failover,
        assume_down: Vec::new(),
        accept_data_loss: a.accept_data_loss,
    };
    let mut last = None;
    for _ in 0..2 {
        let observed = observe::observe(&desired, &ObserveOptions::default()).await;
        let next = match plan::build(&desired, &observed, &opts) {
            Ok(next) if !next.steps.is_empty() => next,
            _ => {
                last = Some(observed);
                break;
            }
        };
        if a.plan.is_some() {
            out.say(&format!(
                "The saved plan is applied, and the cluster, observed again, still differs from {} ({} more steps): run `pgtopo plan` to review them.",
                desired.source_path.display(),
                next.steps.len()
            ));
            break;
        }
        out.say("\nObserved again, the cluster still differs: a follow-up plan.\n");
        events.plan_ready(&next, false);
        run_plan(a, out, &desired, &ts, &next, events, ask).await?;
    }
    let observed = match last {
        Some(o) => o,
        None => observe::observe(&desired, &ObserveOptions::default()).await,
    };
    end_state(&desired, &observed, events).await?;
    Ok(exit::OK)
}

/// How long apply lets the cluster settle after its last step: a standby reconnects to an
/// upstream that restarted only after wal_retrieve_retry_interval (5 s by default).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(15);

/// Apply proves its end state (SPEC §5): observed again after the last step, the cluster must
/// have no drift from the topology file — at once, or within [`SETTLE`].
async fn end_state(
    desired: &Desired,
    first: &observe::ObservedCluster,
    events: &dyn ApplyEvents,
) -> Result<(), Failure> {
    let lines = |o: &observe::ObservedCluster| {
        let r = crate::diff::drift::drift(desired, o);
        let l: Vec<String> = r
            .items
            .iter()
            .map(|i| format!("{}: {}", i.node, i.detail))
            .collect();
        l.join("\n  ")
    };
    if lines(first).is_empty() {
        events.end_state_checked(&[]);
        return Ok(());
    }
    let spec = crate::apply::WaitSpec::new("the cluster to match topology.yaml", SETTLE)
        .max_interval(std::time::Duration::from_millis(100));
    let waited = crate::apply::wait_until(&spec, || async {
        let o = observe::observe(desired, &ObserveOptions::default()).await;
        match lines(&o) {
            l if l.is_empty() => crate::apply::Poll::Ready(()),
            l => crate::apply::Poll::Pending(l),
        }
    })
    .await;
    let mismatches: Vec<String> = match &waited {
        Ok(()) => Vec::new(),
        Err(crate::apply::WaitError::Timeout { last, .. }) => {
            last.split("\n  ").map(str::to_string).collect()
        }
        Err(e) => vec![e.to_string()],
    };
    events.end_state_checked(&mismatches);
    match waited {
        Ok(()) => Ok(()),
        Err(crate::apply::WaitError::Timeout { last, .. }) => Err(mismatch(
            std::iter::once(last),
            "apply finished but the cluster does not match",
        )),
        Err(e) => Err(mismatch(
            std::iter::once(e.to_string()),
            "apply finished, but",
        )),
    }
}

fn mismatch(lines: impl Iterator<Item = String>, head: &str) -> Failure {
    let lines: Vec<String> = lines.collect();
    fail(
        exit::ERROR,
        miette::miette!(
            code = "pgtopo::apply::end_state",
            help = "run `pgtopo drift` and `pgtopo plan` to see what is left",
            "{head} topology.yaml:\n  {}",
            lines.join("\n  ")
        ),
    )
}

/// Show a plan, get it approved when `ask`, walk it, report. Ok when every step succeeded.
async fn run_plan(
    a: &ApplyArgs,
    out: OutputOptions,
    desired: &Arc<Desired>,
    ts: &BTreeMap<String, DynTransport>,
    the_plan: &Plan,
    events: &dyn ApplyEvents,
    ask: bool,
) -> Result<(), Failure> {
    out.say(render::plan::text(the_plan, out.color).trim_end());
    crate::apply::preflight::preflight(the_plan, desired, ts)
        .await
        .map_err(miette::Report::new)?;
    if ask {
        match ask_yes() {
            Some(true) => {}
            Some(false) => {
                return Err(fail(exit::NOT_APPROVED, miette::miette!("Apply cancelled: the answer was not `yes`. Nothing was done.")))
            }
            None => {
                return Err(fail(
                    exit::NOT_APPROVED,
                    miette::miette!(
                        help = "pass --auto-approve, or save the plan with `pgtopo plan --out plan.json` and apply that",
                        "no terminal to ask for approval and no --auto-approve; nothing was done"
                    ),
                ))
            }
        }
    }

    let ctx = Arc::new(StepContext::new(desired.clone(), ts.clone()));
    // Open the connections a promotion needs now, outside the writes-unavailable window.
    if the_plan
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::Promote(_) | Action::WaitReplay(_)))
    {
        let names: Vec<String> = desired.nodes.keys().cloned().collect();
        ctx.prewarm(&names).await;
    }
    let opts = ApplyOptions {
        parallelism: a.parallelism,
        journal: a.journal.clone(),
    };
    let report = crate::apply::apply(
        the_plan,
        Arc::new(Executor::new(ctx.clone())),
        events,
        &opts,
    )
    .await
    .map_err(miette::Report::new);
    ctx.remove_set_aside().await;
    let report = report?;
    out.say(&progress::report(&report));
    if let Some(m) = the_plan
        .summary
        .write_unavailable
        .as_ref()
        .and_then(|w| report.measured_window(w))
    {
        let checkpoint_first = matches!(
            the_plan.steps.get(m.from_step as usize - 1).map(|s| &s.action),
            Some(Action::Stop(p)) if p.writes_unavailable && !p.checkpointed
        );
        out.say(&progress::window(&m, checkpoint_first));
        events.writes_unavailable(&m);
    }
    if report.succeeded() {
        Ok(())
    } else {
        let f = report
            .failures()
            .next()
            .expect("a failed apply has a failure");
        Err(fail(
            exit::ERROR,
            miette::miette!(
                help = "fix the cause and run `pgtopo apply` again: it plans from what is now and finishes the job",
                "apply failed at step {} ({} on {}): {}",
                f.id,
                f.kind,
                f.node,
                match &f.outcome {
                    crate::apply::Outcome::Failed(e) => e.message.clone(),
                    _ => String::new(),
                }
            ),
        ))
    }
}

/// `pgtopo unlock`.
pub async fn unlock(g: &GlobalArgs, out: OutputOptions) -> CmdResult {
    let desired = crate::config::load(&g.one_file("unlock")?)?;
    let ts = transports(&desired);
    let removed = lock::unlock(&desired, &ts).await.map_err(lock_failure)?;
    if removed.is_empty() {
        out.say(&format!("No lock held on cluster {}.", desired.cluster));
    } else {
        out.say(&format!(
            "Removed the lock of cluster {} on {}.",
            desired.cluster,
            removed.join(", ")
        ));
    }
    Ok(exit::OK)
}
