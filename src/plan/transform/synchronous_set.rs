//! Rule: synchronous_standby_names on the primary after its members stream.

use crate::diff::{self, observed};
use crate::plan::graph::Idx;
use crate::plan::model::*;

use super::Ctx;

/// Synchronous standbys: synchronous_standby_names is set on the primary only after its members
/// stream to it.
pub fn synchronous_set(c: &mut Ctx) {
    let p = c.primary().to_string();
    let po = observed(c.o, &p);
    if !(po.reachable || c.anchors.primary_ready.is_some()) {
        return;
    }
    let want = c.eff.synchronous_standby_names();
    let have = if c.drawn.sync_cleared {
        String::new()
    } else {
        po.settings
            .get("synchronous_standby_names")
            .map(|s| s.value.clone())
            .unwrap_or_default()
    };
    if !diff::sync_differs(&want, &have) {
        return;
    }
    let mut deps: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
    if let Some(s) = &c.eff.replication.synchronous {
        for m in &s.standbys {
            deps.extend(c.anchors.streaming.get(m).copied());
        }
    }
    c.dag.add(
        &p,
        Action::AlterSystem(AlterSystemParams {
            set: [("synchronous_standby_names".to_string(), want.clone())].into(),
            reset: vec![],
        }),
        false,
        format!("synchronous_standby_names = '{want}' (after its members stream)"),
        &deps,
    );
    let r = c.dag.add(
        &p,
        Action::Reload(ReloadParams {
            reason: "synchronous_standby_names changed".into(),
        }),
        false,
        "synchronous_standby_names changed",
        &[],
    );
    c.anchors.sync_step = Some(r);
}
