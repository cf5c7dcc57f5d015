//! Debian clusters (SPEC §1d): a new node run by `pg_ctlcluster MAJOR NAME` becomes a cluster of
//! postgresql-common's own before its data directory is cloned, so that its configuration
//! directory in /etc exists and `pg_lsclusters` knows it.

use super::StepContext;
use crate::apply::StepError;
use crate::config::Service;
use crate::transport::CommandSpec;

/// When `node` is a Debian cluster whose configuration directory does not exist yet:
/// `pg_createcluster MAJOR NAME -d DATA_DIR -p PORT` (as the os_user, which owns
/// /etc/postgresql on Debian), `listen_addresses` = its host in `conf.d/pgtopo-node.conf`, then
/// remove the data directory initdb just made so the
/// clone fills it. The configuration in /etc is kept; its pg_hba.conf is the source's, as a
/// clone of a data directory that holds its pg_hba.conf would have it.
pub async fn ensure_cluster(ctx: &StepContext, node: &str, source: &str) -> Result<(), StepError> {
    let n = ctx.node(node)?;
    let Service::PgCtlcluster { major, name } = &n.service else {
        return Ok(());
    };
    let t = ctx.transport(node)?;
    let io = |e: crate::transport::TransportError| StepError::new(e.to_string());
    let conf = n.config_dir().join("postgresql.conf");
    if t.read_file(&conf).await.map_err(io)?.is_some() {
        return Ok(());
    }
    if t.list_dir(&n.data_dir)
        .await
        .map_err(io)?
        .is_some_and(|l| !l.is_empty())
    {
        return Err(StepError::new(format!(
            "{node}: {} has no {} but its data directory {} is not empty; \
             make it a cluster of its own with pg_createcluster or empty the directory",
            n.config_dir().display(),
            conf.display(),
            n.data_dir.display()
        )));
    }
    let cmd = CommandSpec::new("/usr/bin/pg_createcluster")
        .args([major.to_string(), name.clone(), "-d".into()])
        .arg(n.data_dir.as_os_str())
        .args(["-p".to_string(), n.port.to_string()]);
    ctx.run_tool(node, &cmd).await?;
    // Debian's postgresql.conf ends with `include_dir = 'conf.d'`: this file wins over its
    // `listen_addresses = 'localhost'` (pg_createcluster -o would write an address unquoted).
    let listen = format!(
        "# written by pgtopo: the node's address (SPEC §1d)\nlisten_addresses = '{}'\n",
        n.host.replace('\'', "''")
    );
    let own = n.config_dir().join("conf.d").join("pgtopo-node.conf");
    t.write_file_atomic(&own, listen.as_bytes(), 0o644)
        .await
        .map_err(io)?;
    copy_hba(ctx, node, source).await?;
    t.remove_tree(&n.data_dir).await.map_err(io)?;
    Ok(())
}

/// The source's pg_hba.conf (its `hba_file`) becomes `node`'s.
async fn copy_hba(ctx: &StepContext, node: &str, source: &str) -> Result<(), StepError> {
    let io = |e: crate::transport::TransportError| StepError::new(e.to_string());
    let rows = ctx
        .query(source, "SELECT current_setting('hba_file')", &[])
        .await?;
    let Some(path) = rows.first().map(|r| r.get::<_, String>(0)) else {
        return Ok(());
    };
    let from = ctx.transport(source)?;
    let Some(text) = from
        .read_file(std::path::Path::new(&path))
        .await
        .map_err(io)?
    else {
        return Ok(());
    };
    let to = ctx.node(node)?.config_dir().join("pg_hba.conf");
    ctx.transport(node)?
        .write_file_atomic(&to, &text, 0o640)
        .await
        .map_err(io)
}
