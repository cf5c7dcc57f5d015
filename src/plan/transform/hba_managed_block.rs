//! Rule: the pg_hba managed block written where it differs, and a reload.

use crate::diff::{self, observed};
use crate::plan::analysis::Fate;
use crate::plan::model::*;

use super::Ctx;

/// pg_hba: write the managed block (replication rules for every node's host, then `hba:`) on
/// every node where it differs, and reload running servers.
pub fn hba_managed_block(c: &mut Ctx) {
    let block = diff::hba::managed_block(c.eff);
    for n in c.eff.present() {
        let fate = c.fate(&n.name);
        let obs = observed(c.o, &n.name);
        if !crate::plan::analysis::hba_needs_write(c.eff, &obs, fate) {
            continue;
        }
        let mut last = c.dag.add(
            &n.name,
            Action::WriteHba(WriteHbaParams {
                managed_block: block.clone(),
            }),
            false,
            format!("managed block: {} rules", block.len()),
            &[],
        );
        let will_run = obs.running || fate == &Fate::StartPrimary;
        if obs.running || (will_run && c.anchors.primary_ready.is_some()) {
            last = c.dag.add(
                &n.name,
                Action::Reload(ReloadParams {
                    reason: "pg_hba.conf changed".into(),
                }),
                false,
                "pg_hba.conf changed",
                &[],
            );
        }
        c.anchors.hba_ready.insert(n.name.clone(), last);
    }
}
