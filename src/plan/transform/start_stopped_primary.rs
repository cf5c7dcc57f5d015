//! Rule: a declared primary that is merely stopped is started (no promotion).

use crate::plan::analysis::Fate;
use crate::plan::model::*;

use super::Ctx;

/// Stopped is not failed: a declared primary that is merely stopped is started; no promotion.
pub fn start_stopped_primary(c: &mut Ctx) {
    let p = c.primary();
    if c.fate(p) == &Fate::StartPrimary {
        let s = c.dag.add(
            p,
            Action::Start(StartParams {
                wait_streaming_from: None,
            }),
            false,
            "the declared primary is stopped, not failed: start it (no promotion, timeline unchanged)",
            &[],
        );
        c.anchors.primary_ready = Some(s);
        c.drawn.restarts.insert(p.to_string());
    }
}
