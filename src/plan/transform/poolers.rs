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
//!
//! The rules are `hooks_before`, `pooler_drift` and `hooks_after` (a file each); the promotion
//! draws the pause, route and resume with the helpers here.

use crate::config::DesiredPooler;
use crate::pooler::ObservedPooler;

use super::{draw, Ctx};
use crate::plan::graph::Idx;
use crate::plan::model::*;

pub fn reachable<'a>(c: &Ctx<'a>) -> Vec<(&'a DesiredPooler, &'a ObservedPooler)> {
    c.eff
        .poolers
        .values()
        .filter_map(|p| Some((p, c.o.poolers.get(&p.name).filter(|o| o.reachable)?)))
        .collect()
}

/// Whether [`pause`] pauses any pooler.
pub fn pauses(c: &Ctx) -> bool {
    reachable(c).iter().any(|(p, _)| p.pause)
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

pub fn route(c: &mut Ctx, p: &DesiredPooler, deps: &[Idx]) -> Idx {
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

pub fn resume(c: &mut Ctx, p: &DesiredPooler, deps: &[Idx]) -> Idx {
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
    draw::hooks(c, HookPoint::AfterPromotion, &specs, &done);
}

#[cfg(test)]
mod tests {
    use crate::config::{Desired, DesiredPooler, HookSpec};
    use crate::observe::fixtures::{desired3, healthy};
    use crate::plan::{build, PlanOptions, Step};
    use crate::pooler::{ObservedPooler, PoolerRoute};
    use crate::units::Duration;

    fn with_pooler(mut d: Desired) -> Desired {
        let p = DesiredPooler {
            name: "pgb".into(),
            host: "127.0.0.1".into(),
            port: 6432,
            admin_user: "postgres".into(),
            admin_password: None,
            databases: vec!["app".into()],
            config_file: Some("/etc/pgbouncer/pgbouncer.ini".into()),
            ssh: None,
            os_user: "postgres".into(),
            pause: true,
            pause_timeout: Duration(std::time::Duration::from_secs(10)),
        };
        d.poolers.insert("pgb".into(), p);
        d.hooks.before_switchover = vec![HookSpec {
            command: vec!["/bin/true".into()],
            timeout: Duration(std::time::Duration::from_secs(5)),
        }];
        d
    }

    fn routed_to(d: &Desired, node: &str, paused: bool) -> ObservedPooler {
        let n = &d.nodes[node];
        let r = PoolerRoute {
            host: n.host.clone(),
            port: n.port,
            paused,
        };
        ObservedPooler {
            reachable: true,
            unreachable_reason: None,
            databases: [("app".to_string(), r)].into(),
        }
    }

    fn id(steps: &[Step], kind: &str, node: &str) -> u32 {
        steps
            .iter()
            .find(|s| s.action.kind() == kind && s.node == node)
            .unwrap_or_else(|| panic!("no {kind} on {node}"))
            .id
    }

    #[test]
    fn a_switchover_pauses_before_the_stop_and_routes_then_resumes_after_the_promotion() {
        let before = with_pooler(desired3());
        let mut o = healthy(&before);
        o.poolers
            .insert("pgb".into(), routed_to(&before, "n1", false));
        let mut d = before.clone();
        crate::observe::fixtures::set_primary(&mut d, "n2");
        let p = build(&d, &o, &PlanOptions::default()).unwrap();
        let s = &p.steps;
        let hook = id(s, "hook", "hook.before_switchover");
        assert_eq!(hook, 1, "the before hook is the first step");
        assert!(s[1..].iter().all(|x| x.id > hook));
        assert!(id(s, "pause_pooler", "pgb") < id(s, "stop", "n1"));
        assert!(s[id(s, "stop", "n1") as usize - 1]
            .after
            .contains(&id(s, "pause_pooler", "pgb")));
        assert!(id(s, "promote", "n2") < id(s, "route_pooler", "pgb"));
        assert!(id(s, "route_pooler", "pgb") < id(s, "resume_pooler", "pgb"));
        // The CHECKPOINT runs before the pause, while writes flow, not inside the stop; the live
        // proof of the candidate's catch-up comes after it, right before the pause.
        assert!(s[id(s, "catch_up", "n2") as usize - 1]
            .after
            .contains(&id(s, "checkpoint", "n1")));
        assert!(s[id(s, "pause_pooler", "pgb") as usize - 1]
            .after
            .contains(&id(s, "catch_up", "n2")));
        let stop = &s[id(s, "stop", "n1") as usize - 1].action;
        assert!(matches!(
            stop,
            crate::plan::Action::Stop(crate::plan::StopParams {
                checkpointed: true,
                ..
            })
        ));
        assert!(
            p.summary.cannot_fix.is_empty(),
            "{:?}",
            p.summary.cannot_fix
        );
    }

    #[test]
    fn a_pooler_on_a_standby_is_routed_and_a_paused_one_resumed() {
        let d = with_pooler(desired3());
        let mut o = healthy(&d);
        o.poolers.insert("pgb".into(), routed_to(&d, "n2", true));
        let report = crate::diff::drift::drift(&d, &o);
        assert_eq!(report.items.len(), 2, "{report:?}");
        let p = build(&d, &o, &PlanOptions::default()).unwrap();
        let kinds: Vec<&str> = p.steps.iter().map(|s| s.action.kind()).collect();
        assert_eq!(kinds, ["route_pooler", "resume_pooler"]);
        assert!(p.summary.cannot_fix.is_empty());
        // Routed and resumed: nothing left.
        o.poolers.insert("pgb".into(), routed_to(&d, "n1", false));
        assert!(build(&d, &o, &PlanOptions::default())
            .unwrap()
            .steps
            .is_empty());
    }
}
