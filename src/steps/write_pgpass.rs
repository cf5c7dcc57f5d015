//! `write_pgpass`: the replication password in the os_user's `~/.pgpass` (mode 0600), one line
//! `host:port:*:user:password` per entry, so that pg_basebackup, pg_rewind and the WAL receiver
//! find it without a password in any conninfo. The password comes from the topology's
//! `replication.password` reference, resolved now; it is written only into this file, never
//! logged, and the step's messages never include the file. Other lines are kept; lines for the
//! same host, port and user are replaced.

use std::path::PathBuf;
use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::config::Secret;
use crate::plan::{PgpassEntry, WritePgpassParams};
use crate::transport::CommandSpec;

/// Escape a .pgpass field (`:` and `\`).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// Split a .pgpass line into its fields, honouring escapes.
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut it = line.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                if let Some(n) = it.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

/// The file with our entries (at the end), other lines kept in order.
pub fn merge(current: &str, entries: &[PgpassEntry], password: &Secret) -> String {
    let ours = |f: &[String]| {
        f.len() >= 5
            && (f[2] == "*" || f[2] == "replication")
            && entries
                .iter()
                .any(|e| f[0] == e.host && f[1] == e.port.to_string() && f[3] == e.user)
    };
    let mut out = String::new();
    for line in current.lines() {
        if !line.trim_start().starts_with('#') && ours(&fields(line)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for e in entries {
        out.push_str(&format!(
            "{}:{}:*:{}:{}\n",
            esc(&e.host),
            e.port,
            esc(&e.user),
            esc(password.expose())
        ));
    }
    out
}

/// The os_user's home on the node's host (`getent passwd`).
async fn home(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    let user = ctx.node(node)?.os_user.clone();
    let out = ctx
        .run_tool(
            node,
            &CommandSpec::new("getent")
                .arg("passwd")
                .arg(&user)
                .timeout(Duration::from_secs(30)),
        )
        .await?;
    let text = out.stdout_text();
    let f: Vec<&str> = text.trim().split(':').collect();
    match f.get(5) {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => Err(StepError::new(format!(
            "{node}: no home directory for {user}"
        ))),
    }
}

/// Path of the os_user's .pgpass.
pub async fn pgpass_path(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    Ok(home(ctx, node).await?.join(".pgpass"))
}

fn password(ctx: &StepContext) -> Result<Secret, StepError> {
    let Some(r) = &ctx.desired.replication.password else {
        return Err(StepError::new(
            "replication.password is not set in the topology: there is no password to keep in .pgpass",
        ));
    };
    r.resolve().map_err(|e| StepError::new(e.to_string()))
}

async fn current(
    ctx: &StepContext,
    node: &str,
    path: &std::path::Path,
) -> Result<String, StepError> {
    let b = ctx
        .transport(node)?
        .read_file(path)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default())
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &WritePgpassParams,
) -> Result<Freshness, StepError> {
    if ctx.desired.replication.password.is_none() {
        // No password in the topology (trust, peer or certificates): nothing to keep.
        return Ok(Freshness::Fresh);
    }
    let path = pgpass_path(ctx, node).await?;
    let cur = current(ctx, node, &path).await?;
    Ok(if merge(&cur, &p.entries, &password(ctx)?) == cur {
        Freshness::Fresh
    } else {
        Freshness::Dirty(format!("{} lacks the replication entries", path.display()))
    })
}

/// Serialises the read-merge-write of .pgpass files within one apply: nodes that share a machine
/// and an os_user share one file, and two concurrent merges would lose one's entries.
static PGPASS_MERGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn act(ctx: &StepContext, node: &str, p: &WritePgpassParams) -> Result<(), StepError> {
    let path = pgpass_path(ctx, node).await?;
    let _merging = PGPASS_MERGE.lock().await;
    let cur = current(ctx, node, &path).await?;
    let new = merge(&cur, &p.entries, &password(ctx)?);
    ctx.transport(node)?
        .write_file_atomic(&path, new.as_bytes(), 0o600)
        .await
        .map_err(|e| StepError::new(format!("{node}: cannot write {}: {e}", path.display())))
}

pub async fn verify(ctx: &StepContext, node: &str, p: &WritePgpassParams) -> Result<(), StepError> {
    match check(ctx, node, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(why) => Err(StepError::new(format!("{node}: {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        std::env::set_var("PGTOPO_TEST_PGPASS_SECRET", s);
        crate::config::SecretRef::Env {
            env: "PGTOPO_TEST_PGPASS_SECRET".into(),
        }
        .resolve()
        .unwrap()
    }

    #[test]
    fn merge_replaces_our_lines_and_keeps_the_rest() {
        let e = vec![
            PgpassEntry {
                host: "127.0.0.1".into(),
                port: 5432,
                user: "replicator".into(),
            },
            PgpassEntry {
                host: "127.0.0.2".into(),
                port: 5433,
                user: "replicator".into(),
            },
        ];
        let pw = secret("s3:cr\\et");
        let cur = "# mine\nother:1:*:bob:x\n127.0.0.1:5432:*:replicator:old\n";
        let out = merge(cur, &e, &pw);
        assert_eq!(
            out,
            "# mine\nother:1:*:bob:x\n127.0.0.1:5432:*:replicator:s3\\:cr\\\\et\n127.0.0.2:5433:*:replicator:s3\\:cr\\\\et\n"
        );
        assert_eq!(merge(&out, &e, &pw), out);
        assert_eq!(fields("a\\:b:c"), ["a:b", "c"]);
    }
}
