//! `create_role`: the replication role, `REPLICATION LOGIN`, with the password from the
//! topology's reference resolved now. The password travels only inside the statement, as an
//! escaped literal, in a transaction that first turns statement logging off for itself; errors
//! carry the server's message, never the statement.

use super::{sql_ident, sql_literal, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::CreateRoleParams;

async fn state(
    ctx: &StepContext,
    node: &str,
    role: &str,
) -> Result<Option<(bool, bool, bool)>, StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT rolreplication, rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1), r.get(2))))
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &CreateRoleParams,
) -> Result<Freshness, StepError> {
    Ok(match state(ctx, node, &p.role).await? {
        None => Freshness::Dirty(format!("role {} does not exist", p.role)),
        Some((true, true, has_pw)) if has_pw || !p.with_password => Freshness::Fresh,
        Some(_) => Freshness::Dirty(format!(
            "role {} lacks REPLICATION, LOGIN or a password",
            p.role
        )),
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &CreateRoleParams) -> Result<(), StepError> {
    let exists = state(ctx, node, &p.role).await?.is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    let mut stmt = format!("{verb} ROLE {} WITH REPLICATION LOGIN", sql_ident(&p.role));
    if p.with_password {
        let Some(r) = &ctx.desired.replication.password else {
            return Err(StepError::new(
                "replication.password is not set in the topology, so the role cannot get one",
            ));
        };
        let secret = r.resolve().map_err(|e| StepError::new(e.to_string()))?;
        stmt.push_str(" PASSWORD ");
        stmt.push_str(&sql_literal(secret.expose()));
    }
    let batch = format!(
        "BEGIN; SET LOCAL log_statement = 'none'; SET LOCAL log_min_duration_statement = -1; {stmt}; COMMIT;"
    );
    let res = ctx
        .execute_batch(node, &batch, &format!("{verb} ROLE {}", p.role))
        .await;
    if res.is_err() {
        let _ = ctx.execute_batch(node, "ROLLBACK", "ROLLBACK").await;
    }
    res
}

pub async fn verify(ctx: &StepContext, node: &str, p: &CreateRoleParams) -> Result<(), StepError> {
    match check(ctx, node, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(why) => Err(StepError::new(format!("{node}: {why}"))),
    }
}
