//! Rule: the `before_switchover` hooks first, as the gate of every later step of a promotion.

use crate::plan::model::HookPoint;

use super::draw::hooks;
use super::Ctx;

/// Transform: the `before_switchover` hooks gate every other step of a promotion plan.
pub fn hooks_before(c: &mut Ctx) {
    if c.a.promotion.is_none() {
        return;
    }
    let specs = c.eff.hooks.before_switchover.clone();
    c.dag.gate = hooks(c, HookPoint::BeforeSwitchover, &specs, &[]);
}
