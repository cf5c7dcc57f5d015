//! Rule: a plan with steps ends with the `after_apply` hooks and carries `on_failure`'s.

use crate::plan::model::HookPoint;

use super::draw::hooks;
use super::Ctx;

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
