//! `create_role`: the replication role, `REPLICATION LOGIN`, with the password from the
//! topology's reference resolved now. The password leaves pgtopo only as a SCRAM-SHA-256
//! verifier computed here ([`crate::pg::scram`]), as libpq's `PQencryptPasswordConn` does: the
//! plaintext is never in a statement, so no server log, `pg_stat_activity` or
//! `pg_stat_statements` can hold it. Errors carry the server's message, never the statement.
//!
//! An existing role counts as done only when its stored verifier (`pg_authid.rolpassword`) is
//! the one the topology's password makes: StoredKey and ServerKey recomputed with the
//! verifier's own salt and iterations, compared with the stored ones, by pgtopo (no plaintext
//! sent). An md5 hash (deprecated) is replaced by a SCRAM-SHA-256 verifier; a stored form that
//! is neither cannot be checked and is left alone.

use super::{sql_ident, sql_literal, Freshness, StepContext};
use crate::apply::StepError;
use crate::pg::scram;
use crate::plan::CreateRoleParams;

/// (rolreplication, rolcanlogin, rolpassword) of the role, if it exists.
async fn state(
    ctx: &StepContext,
    node: &str,
    role: &str,
) -> Result<Option<(bool, bool, Option<String>)>, StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT rolreplication, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1",
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
    let (replication, login, verifier) = match state(ctx, node, &p.role).await? {
        None => return Ok(Freshness::Dirty(format!("role {} does not exist", p.role))),
        Some(s) => s,
    };
    if !(replication && login) {
        return Ok(Freshness::Dirty(format!(
            "role {} lacks REPLICATION or LOGIN",
            p.role
        )));
    }
    if !p.with_password {
        return Ok(Freshness::Fresh);
    }
    let Some(verifier) = verifier else {
        return Ok(Freshness::Dirty(format!("role {} has no password", p.role)));
    };
    let Some(r) = &ctx.desired.replication.password else {
        return Ok(Freshness::Fresh);
    };
    let secret = r.resolve().map_err(|e| StepError::new(e.to_string()))?;
    Ok(match scram::judge(&verifier, secret.expose()) {
        scram::Stored::Differs => Freshness::Dirty(format!(
            "role {} has another password than replication.password",
            p.role
        )),
        scram::Stored::Md5 => Freshness::Dirty(format!(
            "role {}'s password is an md5 hash (deprecated): it becomes a SCRAM-SHA-256 verifier",
            p.role
        )),
        scram::Stored::Matches | scram::Stored::Unknown => Freshness::Fresh,
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
        stmt.push_str(&sql_literal(&scram::verifier(secret.expose())));
    }
    ctx.execute_batch(node, &stmt, &format!("{verb} ROLE {}", p.role))
        .await
}

pub async fn verify(ctx: &StepContext, node: &str, p: &CreateRoleParams) -> Result<(), StepError> {
    match check(ctx, node, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(why) => Err(StepError::new(format!("{node}: {why}"))),
    }
}
