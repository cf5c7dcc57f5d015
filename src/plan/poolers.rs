//! The planning rules of poolers and hooks (SPEC §4 does not cover them; issue 11 does):
//!
//! - a plan that promotes a node runs the `before_switchover` hooks first; every later step waits
//!   for them, so a failing hook aborts with nothing changed;
//! - each reachable pooler with `pause` is paused just before the old primary stops (a failover:
//!   just before the promotion), routed to the new primary after the promotion, then resumed
//!   (`resume_pooler` runs even when a step failed: [`Action::when`]); then the
//!   `after_promotion` hooks run;
//! - without a promotion, a pooler that routes a database elsewhere than the primary is routed,
//!   and a paused one resumed (drift);
//! - a plan with steps ends with the `after_apply` hooks and carries the `on_failure` hooks.

use std::collections::BTreeMap;

use crate::config::{DesiredPooler, HookSpec};
use crate::pooler::ObservedPooler;

use super::graph::Idx;
use super::model::*;
use super::transforms::Ctx;

fn reachable<'a>(c: &Ctx<'a>) -> Vec<(&'a DesiredPooler, &'a ObservedPooler)> {
    c.eff
        .poolers
        .values()
        .filter_map(|p| Some((p, c.o.poolers.get(&p.name).filter(|o| o.reachable)?)))
        .collect()
}

/// The environment of every hook of the plan.
fn hook_env(c: &Ctx) -> BTreeMap<String, String> {
    let new = c.eff.primary();
    let old =
        c.a.promotion
            .as_ref()
            .and_then(|p| p.old.clone())
            .and_then(|o| c.eff.nodes.get(&o))
            .unwrap_or(new);
    [
        ("PGTOPO_CLUSTER", c.eff.cluster.clone()),
        ("PGTOPO_OLD_PRIMARY", old.name.clone()),
        ("PGTOPO_OLD_PRIMARY_HOST", old.host.clone()),
        ("PGTOPO_OLD_PRIMARY_PORT", old.port.to_string()),
        ("PGTOPO_NEW_PRIMARY", new.name.clone()),
        ("PGTOPO_NEW_PRIMARY_HOST", new.host.clone()),
        ("PGTOPO_NEW_PRIMARY_PORT", new.port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Add the hooks of one point, one after the other; returns the last.
fn hooks(c: &mut Ctx, point: HookPoint, specs: &[HookSpec], deps: &[Idx]) -> Option<Idx> {
    let env = hook_env(c);
    let mut last = None;
    for h in specs {
        let timeout_ms = h.timeout.0.as_millis() as u64;
        let desc = format!(
            "{}: {} (timeout {})",
            point.name(),
            h.command.join(" "),
            h.timeout
        );
        let action = Action::Hook(HookParams {
            point,
            command: h.command.clone(),
            timeout_ms,
            env: env.clone(),
        });
        let node = format!("hook.{}", point.name());
        last = Some(c.dag.add(&node, action, false, desc, deps));
    }
    last
}

/// Transform: the `before_switchover` hooks gate every other step of a promotion plan.
pub fn hooks_before(c: &mut Ctx) {
    if c.a.promotion.is_none() {
        return;
    }
    let specs = c.eff.hooks.before_switchover.clone();
    c.dag.gate = hooks(c, HookPoint::BeforeSwitchover, &specs, &[]);
}

/// PAUSE every reachable pooler that pauses, after `deps`; the steps the stop (or the
/// promotion) must wait for.
pub fn pause(c: &mut Ctx, deps: &[Idx]) -> Vec<Idx> {
    let mut out = Vec::new();
    for (p, _) in reachable(c) {
        if !p.pause {
            continue;
        }
        let timeout_ms = p.pause_timeout.0.as_millis() as u64;
        let desc = format!(
            "PAUSE {} (clients wait instead of failing; running transactions get {})",
            p.databases.join(", "),
            p.pause_timeout
        );
        let action = Action::PausePooler(PausePoolerParams {
            databases: p.databases.clone(),
            timeout_ms,
        });
        out.push(c.dag.add(&p.name, action, false, desc, deps));
    }
    out
}

fn route(c: &mut Ctx, p: &DesiredPooler, deps: &[Idx]) -> Idx {
    let new = c.eff.primary();
    let how = match &p.config_file {
        Some(f) => format!("rewrite [databases] of {}, RELOAD", f.display()),
        None => "admin console only: RELOAD, then check the route".to_string(),
    };
    let desc = format!(
        "{} → {} {}:{} ({how})",
        p.databases.join(", "),
        new.name,
        new.host,
        new.port
    );
    let action = Action::RoutePooler(RoutePoolerParams {
        databases: p.databases.clone(),
        primary: new.name.clone(),
        host: new.host.clone(),
        port: new.port,
        config_file: p.config_file.as_ref().map(|f| f.display().to_string()),
    });
    c.dag.add(&p.name, action, false, desc, deps)
}

fn resume(c: &mut Ctx, p: &DesiredPooler, deps: &[Idx]) -> Idx {
    let desc = format!(
        "RESUME {} (always, even when a step failed)",
        p.databases.join(", ")
    );
    let action = Action::ResumePooler(ResumePoolerParams {
        databases: p.databases.clone(),
    });
    c.dag.add(&p.name, action, false, desc, deps)
}

/// After the promotion: route and resume every reachable pooler, then the `after_promotion`
/// hooks.
pub fn after_promotion(c: &mut Ctx, promote: Idx) {
    let mut done = vec![promote];
    for (p, _) in reachable(c) {
        let r = route(c, p, &[promote]);
        done.push(if p.pause { resume(c, p, &[r]) } else { r });
    }
    let specs = c.eff.hooks.after_promotion.clone();
    hooks(c, HookPoint::AfterPromotion, &specs, &done);
}

/// Transform: without a promotion, a pooler that does not route to the primary is routed, and a
/// paused one resumed.
pub fn pooler_drift(c: &mut Ctx) {
    if c.a.promotion.is_some() {
        return;
    }
    let primary = c.eff.primary();
    let ready: Vec<Idx> = c.primary_ready.into_iter().collect();
    for (p, o) in reachable(c) {
        let off = o
            .databases
            .values()
            .any(|r| r.host != primary.host || r.port != primary.port);
        let paused = o.databases.values().any(|r| r.paused);
        let mut deps = ready.clone();
        if off {
            deps = vec![route(c, p, &ready)];
        }
        if paused {
            resume(c, p, &deps);
        }
    }
}

/// Transform: a plan with steps ends with the `after_apply` hooks and carries `on_failure`'s.
pub fn hooks_after(c: &mut Ctx) {
    if c.dag.is_empty() {
        return;
    }
    let sinks = c.dag.sinks();
    let after = c.eff.hooks.after_apply.clone();
    hooks(c, HookPoint::AfterApply, &after, &sinks);
    let on_failure = c.eff.hooks.on_failure.clone();
    hooks(c, HookPoint::OnFailure, &on_failure, &[]);
}
