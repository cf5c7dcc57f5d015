//! `plan`, `show`, `graph` and `drift`: load the topology, observe (or read a recording), plan
//! or compare, render. The wiring only; the rules live in `diff` and `plan`, the layout in
//! `render`.

use std::path::Path;
use std::time::Instant;

use miette::{IntoDiagnostic, WrapErr};

use super::{
    exit, fleet_exit, CmdResult, DriftArgs, DriftFormat, GlobalArgs, GraphArgs, GraphFormat,
    PlanArgs, PlanFormat, PlanningArgs, ShowArgs,
};
use crate::config::Desired;
use crate::fleet::{read_all, targets, Drifted, Fleet, Observation, Planned, Targets};
use crate::observe::{ObserveOptions, ObservedCluster};
use crate::plan::{Plan, PlanOptions};
use crate::render::{self, OutputOptions};

/// Read an observed-state recording (`pgtopo observe --out`).
pub fn read_observed(path: &Path) -> miette::Result<ObservedCluster> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the recording {}", path.display()))?;
    serde_json::from_str(&text)
        .into_diagnostic()
        .wrap_err_with(|| format!("{} is not an observed-state recording", path.display()))
}

/// Read a saved plan (`pgtopo plan --out`), refusing another format version (exit 1).
pub fn read_plan(path: &Path) -> miette::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the plan {}", path.display()))?;
    crate::plan::wire::read(&text).map_err(|e| miette::miette!("{}: {e}", path.display()))
}

async fn observed_state(
    d: &Desired,
    recording: Option<&Path>,
    assume_down: &[String],
) -> miette::Result<ObservedCluster> {
    match recording {
        Some(p) => read_observed(p),
        None => {
            let opts = ObserveOptions {
                assume_down: assume_down.to_vec(),
                ..Default::default()
            };
            Ok(crate::observe::observe(d, &opts).await)
        }
    }
}

/// One cluster read: its topology, observed live (or read from a recording), and how long
/// observing took. The one reading of a cluster the single and the fleet forms share.
pub(super) async fn observed(file: &Path, recording: Option<&Path>) -> miette::Result<Observation> {
    let desired = crate::config::load(file)?;
    let start = Instant::now();
    let observed = observed_state(&desired, recording, &[]).await?;
    Ok(Observation {
        desired,
        observed,
        took: start.elapsed(),
    })
}

/// One cluster read and compared with its topology (`drift`, the metrics).
pub(super) async fn drifted(file: &Path, recording: Option<&Path>) -> miette::Result<Drifted> {
    let observation = observed(file, recording).await?;
    let report = crate::diff::drift::drift(&observation.desired, &observation.observed);
    Ok(Drifted {
        observation,
        report,
    })
}

/// In the fleet form, a cluster none of whose nodes answered is an error under its name.
pub(super) fn answered<T: AsRef<Observation>>(r: miette::Result<T>) -> miette::Result<T> {
    let r = r?;
    crate::fleet::require_answer(r.as_ref())?;
    Ok(r)
}

/// Options that read or write one cluster's files are refused with several clusters.
fn one_cluster_only(option: &str, given: bool) -> miette::Result<()> {
    match given {
        true => Err(miette::miette!(
            help = "give one topology file with -f, or drop the option",
            "{option} concerns one cluster; -f names several"
        )),
        false => Ok(()),
    }
}

/// Render a plan in the chosen format.
pub fn render_plan(plan: &Plan, format: PlanFormat, out: OutputOptions) -> String {
    match format {
        PlanFormat::Text => render::plan::text(plan, out.color),
        PlanFormat::Json => render::plan::json(plan),
        PlanFormat::Markdown => render::plan::markdown(plan),
    }
}

fn has_changes(plan: &Plan) -> bool {
    !render::plan::is_no_change(plan)
}

async fn make_plan(
    file: &Path,
    observed: Option<&Path>,
    opts: &PlanOptions,
) -> miette::Result<Planned> {
    let d = crate::config::load(file)?;
    // The what-if nodes are observed like the others (read-only): `plan::build` then marks
    // them down and keeps what was last seen of them (role, WAL position), so the plan can say
    // whom it replaces and how much WAL is at risk.
    let o = observed_state(&d, observed, &[]).await?;
    let plan = crate::plan::build(&d, &o, opts).map_err(|e| plan_failure(e, &o))?;
    Ok(Planned {
        plan,
        nodes: d.nodes.len(),
    })
}

/// A plan that could not be made, with the cause of every node whose transport failed although
/// its server answered: the plan's own message says only that such a node is unreachable.
pub(super) fn plan_failure(e: crate::plan::PlanError, o: &ObservedCluster) -> miette::Report {
    let causes: Vec<&str> = o
        .nodes
        .values()
        .filter(|n| n.running && !n.host_reachable)
        .filter_map(|n| n.files_error.as_deref())
        .collect();
    let report = miette::Report::new(e);
    match causes.is_empty() {
        true => report,
        false => report.wrap_err(format!(
            "pgtopo cannot act on every node: {}",
            causes.join("; ")
        )),
    }
}

/// The plan `plan` and `graph` show, computed with their shared options.
async fn planned(file: &Path, a: &PlanningArgs) -> miette::Result<Planned> {
    // A what-if answers "what would happen", so it plans with failover consent; the plan says
    // that apply would still need it. (A saved what-if plan cannot be applied anyway: its
    // fingerprint does not match a cluster whose nodes are up.)
    let what_if_consent = !a.assume_down.is_empty() && !a.allow_failover;
    let opts = PlanOptions {
        allow_failover: a.allow_failover || what_if_consent,
        assume_down: a.assume_down.clone(),
        accept_data_loss: a.accept_data_loss,
    };
    let mut planned = make_plan(file, a.observed.as_deref(), &opts).await?;
    let plan = &mut planned.plan;
    if what_if_consent
        && plan
            .steps
            .iter()
            .any(|s| matches!(s.action, crate::plan::Action::Promote(_)))
    {
        plan.summary.notes.push(format!(
            "what-if: planned as if {} were down, with failover consent assumed; a real apply would \
             need --allow-failover or failover.allow: true",
            a.assume_down.join(", ")
        ));
    }
    Ok(planned)
}

/// `pgtopo plan`.
pub async fn plan(g: &GlobalArgs, out: OutputOptions, a: PlanArgs) -> CmdResult {
    let files = match targets(&g.file)? {
        Targets::One(f) => return plan_one(&f, out, a).await,
        Targets::Many(files) => files,
    };
    one_cluster_only("--out", a.out.is_some())?;
    one_cluster_only("--observed", a.planning.observed.is_some())?;
    let planning = &a.planning;
    let fleet = read_all(&files, a.fleet.parallelism.into(), |f| async move {
        planned(&f, planning).await
    })
    .await;
    print!(
        "{}",
        match a.format {
            PlanFormat::Text => render::fleet::text(&fleet, out.color),
            PlanFormat::Json => render::fleet::json(&fleet),
            PlanFormat::Markdown => render::fleet::markdown(&fleet, "plan"),
        }
    );
    Ok(fleet_exit(&fleet))
}

/// `pgtopo plan` on one topology file.
async fn plan_one(file: &Path, output: OutputOptions, a: PlanArgs) -> CmdResult {
    let plan = planned(file, &a.planning).await?.plan;
    if let Some(out) = &a.out {
        std::fs::write(out, render::plan::json(&plan))
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the plan to {}", out.display()))?;
    }
    print!("{}", render_plan(&plan, a.format, output));
    if let Some(out) = &a.out {
        if a.format != PlanFormat::Json {
            output.say(&format!(
                "\nSaved the plan to {}. Apply exactly this plan with `pgtopo apply {}`.",
                out.display(),
                out.display()
            ));
        }
    }
    Ok(if !plan.summary.cannot_fix.is_empty() {
        eprintln!(
            "Error: the plan cannot fix {} finding(s) of drift (listed under \"Cannot fix\").",
            plan.summary.cannot_fix.len()
        );
        exit::ERROR
    } else if a.detailed_exitcode && has_changes(&plan) {
        exit::CHANGES
    } else {
        exit::OK
    })
}

/// `pgtopo show PLAN`.
pub async fn show(_g: &GlobalArgs, out: OutputOptions, a: ShowArgs) -> CmdResult {
    let plan = read_plan(&a.plan)?;
    print!("{}", render_plan(&plan, a.format, out));
    Ok(exit::OK)
}

/// `pgtopo graph [PLAN]`.
pub async fn graph(g: &GlobalArgs, a: GraphArgs) -> CmdResult {
    let plan = match &a.plan {
        Some(p) if a.planning.any() => {
            return Err(miette::miette!(
                help = "drop the option to draw the saved plan, or the plan file to draw a new plan",
                "--observed, --allow-failover and --assume-down plan anew; they cannot change the saved plan {}",
                p.display()
            )
            .into())
        }
        Some(p) => read_plan(p)?,
        None => planned(&g.one_file("graph")?, &a.planning).await?.plan,
    };
    print!(
        "{}",
        match a.format {
            GraphFormat::Dot => render::plan::dot(&plan),
            GraphFormat::Mermaid => render::mermaid::steps(&plan),
        }
    );
    Ok(exit::OK)
}

/// `pgtopo drift`: exit 0 when nothing drifted, 2 when something did; with several clusters, 1
/// when one could not be read.
pub async fn drift(g: &GlobalArgs, out: OutputOptions, a: DriftArgs) -> CmdResult {
    let fleet = match targets(&g.file)? {
        Targets::One(f) => {
            let d = drifted(&f, a.observed.as_deref()).await?;
            let code = match d.report.is_empty() {
                true => exit::OK,
                false => exit::CHANGES,
            };
            let r = &d.report;
            let text = match a.format {
                DriftFormat::Text => render::drift::text(r, out.color),
                DriftFormat::Json => render::drift::json(r),
                DriftFormat::Markdown => render::drift::markdown(r),
                DriftFormat::Prometheus => render::metrics::text(&Fleet::one(f, d)),
            };
            print!("{text}");
            return Ok(code);
        }
        Targets::Many(files) => {
            one_cluster_only("--observed", a.observed.is_some())?;
            read_all(&files, a.fleet.parallelism.into(), |f| async move {
                answered(drifted(&f, None).await)
            })
            .await
        }
    };
    print!(
        "{}",
        match a.format {
            DriftFormat::Text => render::fleet::text(&fleet, out.color),
            DriftFormat::Json => render::fleet::json(&fleet),
            DriftFormat::Markdown => render::fleet::markdown(&fleet, "drift"),
            DriftFormat::Prometheus => render::metrics::text(&fleet),
        }
    );
    Ok(fleet_exit(&fleet))
}
