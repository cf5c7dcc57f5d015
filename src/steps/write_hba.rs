//! `write_hba`: pgtopo's managed block of pg_hba.conf.
//!
//! The block (`# BEGIN pgtopo managed` … `# END pgtopo managed`) replaces the previous block
//! where it was, or goes before the first rule of the file, so pgtopo's replication rules are
//! matched before anything else; every other byte of the file is kept. The file is written
//! atomically. On a running server, `pg_hba_file_rules` is read *before* reloading: if the new
//! file has an error, the previous file is written back and the step fails with the errors —
//! the server never loads a broken pg_hba.conf. A stopped server checks the file when it starts.

use std::path::PathBuf;

use super::{data_dir, Freshness, StepContext};
use crate::apply::StepError;
use crate::observe::{HBA_BEGIN as BEGIN, HBA_END as END};
use crate::plan::WriteHbaParams;

/// The file with the managed block set to `block`, everything else byte for byte.
pub fn with_block(current: &str, block: &[String]) -> String {
    let managed = crate::observe::managed_text(block);

    let lines: Vec<&str> = current.split_inclusive('\n').collect();
    let begin = lines.iter().position(|l| l.trim_end() == BEGIN);
    let end = begin.and_then(|b| {
        lines[b..]
            .iter()
            .position(|l| l.trim_end() == END)
            .map(|e| b + e)
    });
    let mut out = String::with_capacity(current.len() + managed.len());
    match (begin, end) {
        (Some(b), Some(e)) => {
            out.extend(lines[..b].iter().copied());
            out.push_str(&managed);
            out.extend(lines[e + 1..].iter().copied());
        }
        _ => match lines.iter().position(|l| crate::observe::is_hba_rule(l)) {
            Some(first) => {
                out.extend(lines[..first].iter().copied());
                out.push_str(&managed);
                out.extend(lines[first..].iter().copied());
            }
            None => {
                out.push_str(current);
                if !current.is_empty() && !current.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&managed);
            }
        },
    }
    out
}

/// Where the node's pg_hba.conf is: `hba_file` when the server answers, else in its
/// configuration directory (the data directory unless SPEC §1d's service or `config_dir` says).
async fn hba_path(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    if data_dir::pid_file_exists(ctx, node).await? {
        let rows = ctx
            .query(node, "SELECT current_setting('hba_file')", &[])
            .await?;
        if let Some(r) = rows.first() {
            return Ok(PathBuf::from(r.get::<_, String>(0)));
        }
    }
    Ok(ctx.node(node)?.config_dir().join("pg_hba.conf"))
}

async fn read(
    ctx: &StepContext,
    node: &str,
    path: &std::path::Path,
) -> Result<Option<String>, StepError> {
    let b = ctx
        .transport(node)?
        .read_file(path)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &WriteHbaParams,
) -> Result<Freshness, StepError> {
    let path = hba_path(ctx, node).await?;
    let current = read(ctx, node, &path).await?.unwrap_or_default();
    Ok(if with_block(&current, &p.managed_block) == current {
        Freshness::Fresh
    } else {
        Freshness::Dirty("the managed block differs".into())
    })
}

pub async fn act(ctx: &StepContext, node: &str, p: &WriteHbaParams) -> Result<(), StepError> {
    let path = hba_path(ctx, node).await?;
    let t = ctx.transport(node)?;
    let previous = read(ctx, node, &path).await?;
    let current = previous.clone().unwrap_or_default();
    let new = with_block(&current, &p.managed_block);
    t.write_file_atomic(&path, new.as_bytes(), 0o600)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    if !data_dir::pid_file_exists(ctx, node).await? {
        return Ok(());
    }
    let check = ctx
        .query(
            node,
            "SELECT coalesce(line_number::text, '?') || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await;
    let errors: Vec<String> = match check {
        Ok(rows) => rows
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect(),
        Err(e) => vec![e.message],
    };
    if !errors.is_empty() {
        let restored = match &previous {
            Some(old) => t.write_file_atomic(&path, old.as_bytes(), 0o600).await,
            None => t.remove_file(&path).await,
        };
        let note = match restored {
            Ok(()) => "the previous file was restored and the server was not reloaded".to_string(),
            Err(e) => format!("restoring the previous file failed too: {e}"),
        };
        return Err(StepError::with_stderr(
            format!("{node}: the new {} has errors; {note}", path.display()),
            errors.join("\n"),
        ));
    }
    ctx.query(node, "SELECT pg_reload_conf()", &[]).await?;
    Ok(())
}

pub async fn verify(ctx: &StepContext, node: &str, p: &WriteHbaParams) -> Result<(), StepError> {
    match check(ctx, node, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(_) => Err(StepError::new(format!(
            "{node}: pg_hba.conf does not hold the managed block"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Vec<String> {
        vec!["host replication replicator 127.0.0.1/32 scram-sha-256".to_string()]
    }

    #[test]
    fn block_goes_before_the_first_rule_and_the_rest_is_kept_byte_for_byte() {
        let cur = "# comment\r\n\n# TYPE DATABASE\nlocal all all peer\nhost all all 0.0.0.0/0 md5";
        let out = with_block(cur, &block());
        assert_eq!(
            out,
            "# comment\r\n\n# TYPE DATABASE\n# BEGIN pgtopo managed\nhost replication replicator 127.0.0.1/32 scram-sha-256\n# END pgtopo managed\nlocal all all peer\nhost all all 0.0.0.0/0 md5"
        );
        // Idempotent: a second write changes nothing.
        assert_eq!(with_block(&out, &block()), out);
    }

    #[test]
    fn an_existing_block_is_replaced_in_place() {
        let cur = "local all all peer\n# BEGIN pgtopo managed\nold rule\n# END pgtopo managed\nhost all all ::1/128 trust\n";
        let out = with_block(cur, &block());
        assert_eq!(
            out,
            "local all all peer\n# BEGIN pgtopo managed\nhost replication replicator 127.0.0.1/32 scram-sha-256\n# END pgtopo managed\nhost all all ::1/128 trust\n"
        );
        let emptied = with_block(&out, &[]);
        assert_eq!(emptied, "local all all peer\n# BEGIN pgtopo managed\n# END pgtopo managed\nhost all all ::1/128 trust\n");
    }

    #[test]
    fn a_file_without_rules_gets_the_block_at_the_end() {
        assert_eq!(
            with_block("# only comments", &[]),
            "# only comments\n# BEGIN pgtopo managed\n# END pgtopo managed\n"
        );
    }
}
