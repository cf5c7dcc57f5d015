//! `plan`, `show`, `graph` and `drift`: load the topology, observe (or read a recording), plan
//! or compare, render. The wiring only; the rules live in `diff` and `plan`, the layout in
//! `render`.

use std::path::Path;

use miette::{IntoDiagnostic, WrapErr};

use super::{
    exit, CmdResult, DriftArgs, GlobalArgs, GraphArgs, GraphFormat, PlanArgs, PlanFormat,
    PlanningArgs, ShowArgs,
};
use crate::config::Desired;
use crate::observe::{ObserveOptions, ObservedCluster};
use crate::plan::{Plan, PlanOptions};
use crate::render;

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

/// Render a plan in the chosen format.
pub fn render_plan(plan: &Plan, format: PlanFormat) -> String {
    match format {
        PlanFormat::Text => render::plan::text(plan, render::color()),
        PlanFormat::Json => render::plan::json(plan),
        PlanFormat::Markdown => render::plan::markdown(plan),
    }
}

fn has_changes(plan: &Plan) -> bool {
    !render::plan::is_no_change(plan)
}

async fn make_plan(
    g: &GlobalArgs,
    observed: Option<&Path>,
    opts: &PlanOptions,
) -> miette::Result<Plan> {
    let d = crate::config::load(&g.file)?;
    // The what-if nodes are observed like the others (read-only): `plan::build` then marks
    // them down and keeps what was last seen of them (role, WAL position), so the plan can say
    // whom it replaces and how much WAL is at risk.
    let o = observed_state(&d, observed, &[]).await?;
    crate::plan::build(&d, &o, opts).map_err(|e| plan_failure(e, &o))
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
async fn planned(g: &GlobalArgs, a: &PlanningArgs) -> miette::Result<Plan> {
    // A what-if answers "what would happen", so it plans with failover consent; the plan says
    // that apply would still need it. (A saved what-if plan cannot be applied anyway: its
    // fingerprint does not match a cluster whose nodes are up.)
    let what_if_consent = !a.assume_down.is_empty() && !a.allow_failover;
    let opts = PlanOptions {
        allow_failover: a.allow_failover || what_if_consent,
        assume_down: a.assume_down.clone(),
        accept_data_loss: a.accept_data_loss,
    };
    let mut plan = make_plan(g, a.observed.as_deref(), &opts).await?;
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
    Ok(plan)
}

/// `pgtopo plan`.
pub async fn plan(g: &GlobalArgs, a: PlanArgs) -> CmdResult {
    let plan = planned(g, &a.planning).await?;
    if let Some(out) = &a.out {
        std::fs::write(out, render::plan::json(&plan))
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the plan to {}", out.display()))?;
    }
    print!("{}", render_plan(&plan, a.format));
    if let Some(out) = &a.out {
        if a.format != PlanFormat::Json {
            render::say(&format!(
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
pub async fn show(_g: &GlobalArgs, a: ShowArgs) -> CmdResult {
    let plan = read_plan(&a.plan)?;
    print!("{}", render_plan(&plan, a.format));
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
        None => planned(g, &a.planning).await?,
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

/// `pgtopo drift`: exit 0 when nothing drifted, 2 when something did.
pub async fn drift(g: &GlobalArgs, a: DriftArgs) -> CmdResult {
    let d = crate::config::load(&g.file)?;
    let o = observed_state(&d, a.observed.as_deref(), &[]).await?;
    let r = crate::diff::drift::drift(&d, &o);
    let text = match a.format {
        PlanFormat::Text => render::drift::text(&r, render::color()),
        PlanFormat::Json => render::drift::json(&r),
        PlanFormat::Markdown => render::drift::markdown(&r),
    };
    print!("{text}");
    if r.is_empty() {
        Ok(exit::OK)
    } else {
        Ok(exit::CHANGES)
    }
}
