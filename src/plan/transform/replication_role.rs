//! Rule: the replication role on the primary when the plan builds a standby.

use crate::plan::analysis::Fate;
use crate::plan::graph::Idx;
use crate::plan::model::*;

use super::Ctx;

/// The replication role, created on the primary when the plan builds a standby.
pub fn replication_role(c: &mut Ctx) {
    let builds = c.a.fates.values().any(Fate::copies_data);
    if !builds {
        return;
    }
    let p = c.primary();
    let deps: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
    let i = c.dag.add(
        p,
        Action::CreateRole(CreateRoleParams {
            role: c.eff.replication.user.clone(),
            with_password: c.eff.replication.password.is_some(),
        }),
        false,
        if c.eff.replication.password.is_some() {
            format!(
                "{} (REPLICATION LOGIN, replication.password), if missing or different",
                c.eff.replication.user
            )
        } else {
            format!("{} (REPLICATION LOGIN), if missing", c.eff.replication.user)
        },
        &deps,
    );
    c.anchors.role_step = Some(i);
}
