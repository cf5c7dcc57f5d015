//! Rule: a retired node leaves the synchronous set, then stops.

use crate::diff::observed;
use crate::plan::analysis::Fate;
use crate::plan::graph::Idx;
use crate::plan::model::*;

use super::draw::plain_stop;
use super::Ctx;

/// Retired node: out of the synchronous set first, then stopped; its data directory is kept.
pub fn retire(c: &mut Ctx) {
    let names: Vec<String> =
        c.a.fates
            .iter()
            .filter(|(_, f)| **f == Fate::Retire)
            .map(|(k, _)| k.clone())
            .collect();
    for x in names {
        let xo = observed(c.o, &x);
        if xo.running && !c.drawn.stopped.contains(&x) {
            let deps: Vec<Idx> = c.anchors.sync_step.into_iter().collect();
            let s = c.dag.add(
                &x,
                plain_stop(ShutdownMode::Fast),
                false,
                "retired: stop it; its data directory is kept",
                &deps,
            );
            c.drawn.stopped.insert(x.clone());
            c.anchors.retire_stop.insert(x, s);
        }
    }
}
