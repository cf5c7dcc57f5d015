//! `create_role`: the replication role, `REPLICATION LOGIN`, with the password from the
//! topology's reference resolved now. The password travels only inside the statement, as an
//! escaped literal, in a transaction that first turns statement logging off for itself; errors
//! carry the server's message, never the statement.
//!
//! An existing role counts as done only when its stored verifier (`pg_authid.rolpassword`) is
//! the one the topology's password makes: for SCRAM-SHA-256 the StoredKey is recomputed from the
//! password and the verifier's own salt and iteration count (RFC 5802), for md5 the hash of
//! password and role name. A verifier in neither form cannot be checked and is left alone.

use super::{sql_ident, sql_literal, Freshness, StepContext};
use crate::apply::StepError;
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
    Ok(
        match password_matches(&verifier, &p.role, secret.expose()) {
            Some(false) => Freshness::Dirty(format!(
                "role {} has another password than replication.password",
                p.role
            )),
            Some(true) | None => Freshness::Fresh,
        },
    )
}

/// Whether a stored verifier is the one `password` makes for `role`; None for a form this does
/// not know.
fn password_matches(verifier: &str, role: &str, password: &str) -> Option<bool> {
    if verifier.starts_with("md5") && verifier.len() == 35 {
        return Some(postgres_protocol::password::md5(password.as_bytes(), role) == verifier);
    }
    scram_matches(verifier, password)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64): StoredKey =
/// SHA-256(HMAC(SaltedPassword, "Client Key")), SaltedPassword = Hi(SASLprep(password), salt, i).
fn scram_matches(verifier: &str, password: &str) -> Option<bool> {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let b64 = base64::engine::general_purpose::STANDARD;
    let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, _server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok().filter(|&i| i > 0)?;
    let salt = b64.decode(salt).ok()?;
    let stored_key = b64.decode(stored_key).ok()?;
    // SASLprep as PostgreSQL applies it: a password it cannot normalise is used as it is.
    let prepped = stringprep::saslprep(password)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| password.to_string());
    let mac = |key: &[u8], data: &[&[u8]]| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        for d in data {
            m.update(d);
        }
        m.finalize().into_bytes()
    };
    // Hi(): PBKDF2-HMAC-SHA-256 with a single output block.
    let mut u = mac(prepped.as_bytes(), &[&salt, &[0, 0, 0, 1]]);
    let mut salted = u;
    for _ in 1..iterations {
        u = mac(prepped.as_bytes(), &[&u]);
        salted.iter_mut().zip(u.iter()).for_each(|(s, x)| *s ^= x);
    }
    let client_key = mac(&salted, &[b"Client Key"]);
    Some(Sha256::digest(client_key).as_slice() == stored_key.as_slice())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_are_checked_against_the_password() {
        // As PostgreSQL stores them: scram_sha_256 with a random salt, md5 of password + role.
        let scram = postgres_protocol::password::scram_sha_256(b"s3cret pass");
        assert!(scram.starts_with("SCRAM-SHA-256$4096:"), "{scram}");
        assert_eq!(password_matches(&scram, "rep", "s3cret pass"), Some(true));
        assert_eq!(password_matches(&scram, "rep", "s3cret pas"), Some(false));
        let md5 = postgres_protocol::password::md5(b"s3cret", "rep");
        assert_eq!(password_matches(&md5, "rep", "s3cret"), Some(true));
        assert_eq!(password_matches(&md5, "other", "s3cret"), Some(false));
        assert_eq!(password_matches("plain-or-unknown", "rep", "x"), None);
        assert_eq!(password_matches("SCRAM-SHA-256$x:y$z", "rep", "x"), None);
    }
}
