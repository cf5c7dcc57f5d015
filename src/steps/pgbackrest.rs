//! The pgBackRest steps of SPEC §1c, on the primary, as its os_user:
//!
//! - `create_stanza`: `pgbackrest stanza-create` when `pgbackrest info` says the stanza is
//!   missing (fresh when it exists: with or without a backup);
//! - `check_archive`: `pgbackrest check` (a WAL switch pushed through archive_command and found
//!   in the repository), after the archive is first configured and after every promotion.
//!
//! Every command is `pgbackrest [--config=C] --stanza=S --pg1-path=DATA_DIR` (the same start as
//! the archive_command pgtopo writes, [`crate::config::archive::PgBackRestSpec::argv`]) plus the
//! server's port and socket directory, read from the server itself, so one operator-owned
//! pgbackrest.conf serves every node. A failure is the step's error with pgBackRest's own message.

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::config::archive::PgBackRestSpec;
use crate::observe::archive::{stanza_info, tool_message};
use crate::plan::StanzaParams;
use crate::transport::CommandSpec;

/// The declared pgBackRest archive, or why there is none.
fn spec<'a>(ctx: &'a StepContext, node: &str) -> Result<&'a PgBackRestSpec, StepError> {
    ctx.desired
        .archive
        .as_ref()
        .and_then(|a| a.pgbackrest())
        .ok_or_else(|| {
            StepError::new(format!(
                "{node}: the topology declares no `archive.pgbackrest`"
            ))
        })
}

/// `pgbackrest … --pg1-port=P --pg1-socket-path=DIR COMMAND` for the running server on `node`.
async fn command(ctx: &StepContext, node: &str, what: &str) -> Result<CommandSpec, StepError> {
    let p = spec(ctx, node)?;
    let n = ctx.node(node)?;
    let rows = ctx
        .query(
            node,
            "select current_setting('port'), \
             split_part(current_setting('unix_socket_directories'), ',', 1)",
            &[],
        )
        .await?;
    let (port, socket): (String, String) = rows
        .first()
        .map(|r| (r.get(0), r.get(1)))
        .ok_or_else(|| StepError::new(format!("{node}: no port and socket directory")))?;
    let socket = socket.trim().to_string();
    if socket.is_empty() {
        return Err(StepError::new(format!(
            "{node}: the server listens on no Unix socket (unix_socket_directories is empty): \
             pgBackRest connects to PostgreSQL only through one"
        )));
    }
    let mut argv = p.argv(&n.data_dir);
    argv.push(format!("--pg1-port={port}"));
    argv.push(format!("--pg1-socket-path={socket}"));
    argv.push(what.to_string());
    let mut cmd = CommandSpec::new(argv.remove(0)).args(argv);
    cmd.timeout = ctx.server_timeout.max(std::time::Duration::from_secs(60));
    Ok(cmd)
}

/// Run `pgbackrest … WHAT`; a failure carries pgBackRest's own message.
async fn run(ctx: &StepContext, node: &str, what: &str) -> Result<(), StepError> {
    let cmd = command(ctx, node, what).await?;
    let out = ctx
        .transport(node)?
        .run(&cmd)
        .await
        .map_err(|e| StepError::new(format!("{node}: pgbackrest could not be run: {e}")))?;
    if out.success() {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{node}: pgbackrest {what} failed: {}",
        tool_message(&out)
    )))
}

/// Whether the stanza exists, as `pgbackrest info` on `node` says.
pub async fn stanza_exists(ctx: &StepContext, node: &str) -> Result<bool, StepError> {
    let p = spec(ctx, node)?;
    let info = stanza_info(ctx.transport(node)?.as_ref(), ctx.node(node)?, p).await;
    if let Some(e) = info.error {
        return Err(StepError::new(format!(
            "{node}: pgbackrest info failed: {e}"
        )));
    }
    Ok(info.exists())
}

/// `create_stanza`: `pgbackrest stanza-create` when the stanza is missing.
pub mod create_stanza {
    use super::*;

    pub async fn check(
        ctx: &StepContext,
        node: &str,
        p: &StanzaParams,
    ) -> Result<Freshness, StepError> {
        Ok(if stanza_exists(ctx, node).await? {
            Freshness::Fresh
        } else {
            Freshness::Dirty(format!("the stanza {} does not exist", p.stanza))
        })
    }

    pub async fn act(ctx: &StepContext, node: &str, _p: &StanzaParams) -> Result<(), StepError> {
        run(ctx, node, "stanza-create").await
    }

    pub async fn verify(ctx: &StepContext, node: &str, p: &StanzaParams) -> Result<(), StepError> {
        if stanza_exists(ctx, node).await? {
            return Ok(());
        }
        Err(StepError::new(format!(
            "{node}: pgbackrest stanza-create finished but pgbackrest info does not show the \
             stanza {}",
            p.stanza
        )))
    }
}

/// `check_archive`: `pgbackrest check` — archive_command works end to end (always runs: it
/// proves a fact of now).
pub mod check_archive {
    use super::*;

    pub async fn check(
        _ctx: &StepContext,
        _node: &str,
        p: &StanzaParams,
    ) -> Result<Freshness, StepError> {
        Ok(Freshness::Dirty(format!(
            "prove that WAL reaches the stanza {}",
            p.stanza
        )))
    }

    pub async fn act(ctx: &StepContext, node: &str, _p: &StanzaParams) -> Result<(), StepError> {
        run(ctx, node, "check").await
    }

    pub async fn verify(
        _ctx: &StepContext,
        _node: &str,
        _p: &StanzaParams,
    ) -> Result<(), StepError> {
        // pgbackrest check returns once the switched segment is in the repository.
        Ok(())
    }
}
