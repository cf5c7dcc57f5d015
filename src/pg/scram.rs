//! SCRAM-SHA-256 password verifiers (RFC 5802, RFC 7677), the form PostgreSQL keeps in
//! `pg_authid.rolpassword`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! pgtopo sends a role's password only as a verifier it computes here, the way libpq's
//! `PQencryptPasswordConn` and psql's `\password` do, so no statement, server log,
//! `pg_stat_activity` or `pg_stat_statements` ever holds the plaintext. Whether a stored
//! verifier is the one a password makes is decided here too, from the verifier's own salt and
//! iteration count, without the server.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A new verifier for `password`: random 16-byte salt, 4096 iterations (libpq's defaults).
pub fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// What a stored password is, compared with the one the topology names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A SCRAM-SHA-256 verifier made from this password.
    Matches,
    /// A SCRAM-SHA-256 verifier made from another password.
    Differs,
    /// An md5 hash (deprecated): replaced by a SCRAM-SHA-256 verifier.
    Md5,
    /// Something else (a plaintext password stored by a very old server, a form unknown here).
    Unknown,
}

/// Compare a stored `rolpassword` with `password`: StoredKey and ServerKey are recomputed with
/// the verifier's salt and iterations and compared with the stored ones.
pub fn judge(stored: &str, password: &str) -> Stored {
    if stored.starts_with("md5") && stored.len() == 35 {
        return Stored::Md5;
    }
    let Some((iterations, salt)) = parse(stored) else {
        return Stored::Unknown;
    };
    match keys(password, &salt, iterations) == stored {
        true => Stored::Matches,
        false => Stored::Differs,
    }
}

/// Iterations and salt of a well-formed verifier.
fn parse(stored: &str) -> Option<(u32, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok().filter(|&i| i > 0)?;
    let ok = |k: &str| b64.decode(k).ok().filter(|k| k.len() == 32);
    ok(stored_key)?;
    ok(server_key)?;
    Some((iterations, b64.decode(salt).ok()?))
}

/// The verifier `password` makes with `salt` and `iterations`.
fn keys(password: &str, salt: &[u8], iterations: u32) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
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
    let mut u = mac(prepped.as_bytes(), &[salt, &[0, 0, 0, 1]]);
    let mut salted = u;
    for _ in 1..iterations {
        u = mac(prepped.as_bytes(), &[&u]);
        salted.iter_mut().zip(u.iter()).for_each(|(s, x)| *s ^= x);
    }
    let stored_key = Sha256::digest(mac(&salted, &[b"Client Key"]));
    let server_key = mac(&salted, &[b"Server Key"]);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_are_made_and_judged_as_libpq_makes_them() {
        let v = verifier("s3cret pass");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("s3cret"));
        // The same salt and iterations give libpq's verifier, byte for byte.
        let (i, salt) = parse(&v).unwrap();
        assert_eq!(keys("s3cret pass", &salt, i), v);
        assert_eq!(judge(&v, "s3cret pass"), Stored::Matches);
        assert_eq!(judge(&v, "s3cret pas"), Stored::Differs);
        // Two verifiers of one password differ (random salt), and both match it.
        let w = verifier("s3cret pass");
        assert_ne!(v, w);
        assert_eq!(judge(&w, "s3cret pass"), Stored::Matches);
        // Another ServerKey with the right StoredKey is not the verifier the password makes.
        let (head, _) = v.rsplit_once(':').unwrap();
        let forged = format!("{head}:{}", "A".repeat(43) + "=");
        assert_eq!(judge(&forged, "s3cret pass"), Stored::Differs);
        let md5 = postgres_protocol::password::md5(b"s3cret", "rep");
        assert_eq!(judge(&md5, "s3cret"), Stored::Md5);
        assert_eq!(judge("plain-or-unknown", "x"), Stored::Unknown);
        assert_eq!(judge("SCRAM-SHA-256$x:y$z", "x"), Stored::Unknown);
    }
}
