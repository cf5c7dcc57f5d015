//! Rule: without a promotion, a pooler off the primary is routed and a paused one resumed.

use crate::plan::graph::Idx;

use super::poolers::{reachable, resume, route};
use super::Ctx;

/// Transform: without a promotion, a pooler that does not route to the primary is routed, and a
/// paused one resumed.
pub fn pooler_drift(c: &mut Ctx) {
    if c.a.promotion.is_some() {
        return;
    }
    let primary = c.eff.primary();
    let ready: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
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
