//! `configure_standby`: make a node a standby of its upstream, and re-assert its own identity.
//!
//! Writes `standby.signal` and sets, in postgresql.auto.conf, `primary_conninfo` (host, port and
//! user of the replication role, application_name = node name; no password — libpq finds it in
//! the os_user's ~/.pgpass), `primary_slot_name` (or resets it), `recovery_target_timeline =
//! 'latest'`, and the node's own `port` and `listen_addresses` (a clone or rewind copied the
//! source's). On a running server through ALTER SYSTEM, on a stopped one by editing the file;
//! then, per the plan, a reload (PostgreSQL ≥ 13), a restart (12) or nothing (stopped).
//! The plan puts a `write_pgpass` step before every `configure_standby` when the topology has a
//! replication password. Already done when the file and standby.signal say so and, on a running
//! server that the plan reloads or restarts, the live values match too.

use std::collections::BTreeMap;

use super::{conf, data_dir, server, settings, Freshness, StepContext};
use crate::apply::StepError;
use crate::plan::{ConfigApply, ConfigureStandbyParams, RestartParams, ShutdownMode};

/// The conninfo pgtopo writes.
pub fn primary_conninfo(p: &ConfigureStandbyParams) -> String {
    let mut s = format!(
        "host={} port={} user={} application_name={}{}",
        conf::conninfo_value(&p.upstream_host),
        p.upstream_port,
        conf::conninfo_value(&p.user),
        conf::conninfo_value(&p.application_name),
        conf::tls_keywords(p.tls.as_ref())
    );
    if let Some(db) = &p.dbname {
        s.push_str(" dbname=");
        s.push_str(&conf::conninfo_value(db));
    }
    s
}

fn wanted(p: &ConfigureStandbyParams) -> (BTreeMap<String, String>, Vec<String>) {
    let mut set = BTreeMap::new();
    set.insert("primary_conninfo".to_string(), primary_conninfo(p));
    set.insert("recovery_target_timeline".to_string(), "latest".to_string());
    set.insert("port".to_string(), p.port.to_string());
    set.insert("listen_addresses".to_string(), p.listen_addresses.clone());
    let mut reset = Vec::new();
    match &p.slot {
        Some(s) => {
            set.insert("primary_slot_name".to_string(), s.clone());
        }
        None => reset.push("primary_slot_name".to_string()),
    }
    (set, reset)
}

fn signal_path(ctx: &StepContext, node: &str) -> Result<std::path::PathBuf, StepError> {
    Ok(ctx.node(node)?.data_dir.join("standby.signal"))
}

async fn live_matches(
    ctx: &StepContext,
    node: &str,
    p: &ConfigureStandbyParams,
) -> Result<bool, StepError> {
    let rows = ctx
        .query(
            node,
            "SELECT current_setting('primary_conninfo'), current_setting('primary_slot_name'), pg_is_in_recovery()",
            &[],
        )
        .await?;
    let Some(r) = rows.first() else {
        return Ok(false);
    };
    let conninfo: String = r.get(0);
    let slot: String = r.get(1);
    let recovery: bool = r.get(2);
    Ok(recovery && conninfo == primary_conninfo(p) && slot == p.slot.clone().unwrap_or_default())
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &ConfigureStandbyParams,
) -> Result<Freshness, StepError> {
    let (set, reset) = wanted(p);
    let current = conf::values(&settings::read_auto_conf(ctx, node).await?);
    if !conf::satisfied(&current, &set, &reset) {
        return Ok(Freshness::Dirty("postgresql.auto.conf differs".into()));
    }
    if !data_dir::file_exists(ctx, node, &signal_path(ctx, node)?).await? {
        return Ok(Freshness::Dirty("standby.signal is missing".into()));
    }
    if p.apply != ConfigApply::None
        && data_dir::pid_file_exists(ctx, node).await?
        && !live_matches(ctx, node, p).await.unwrap_or(false)
    {
        return Ok(Freshness::Dirty(
            "the running server does not use these settings yet".into(),
        ));
    }
    Ok(Freshness::Fresh)
}

pub async fn act(
    ctx: &StepContext,
    node: &str,
    p: &ConfigureStandbyParams,
) -> Result<(), StepError> {
    let (set, reset) = wanted(p);
    let signal = signal_path(ctx, node)?;
    ctx.transport(node)?
        .write_file_atomic(&signal, b"", 0o600)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    settings::apply_settings(ctx, node, &set, &reset).await?;
    let running = data_dir::pid_file_exists(ctx, node).await?;
    match (p.apply, running) {
        (_, false) | (ConfigApply::None, _) => Ok(()),
        (ConfigApply::Reload, true) => {
            ctx.query(node, "SELECT pg_reload_conf()", &[]).await?;
            Ok(())
        }
        (ConfigApply::Restart, true) => {
            let r = RestartParams {
                mode: ShutdownMode::Fast,
                reason: "primary_conninfo changed".into(),
                wait_streaming_from: None,
            };
            super::restart::act(ctx, node, &r).await
        }
    }
}

pub async fn verify(
    ctx: &StepContext,
    node: &str,
    p: &ConfigureStandbyParams,
) -> Result<(), StepError> {
    let (set, reset) = wanted(p);
    let current = conf::values(&settings::read_auto_conf(ctx, node).await?);
    if !conf::satisfied(&current, &set, &reset) {
        return Err(StepError::new(format!(
            "{node}: postgresql.auto.conf does not hold the standby settings"
        )));
    }
    if p.apply != ConfigApply::None
        && data_dir::pid_file_exists(ctx, node).await?
        && server::in_recovery(ctx, node).await?
    {
        // The WAL receiver restarts with the new conninfo: wait until it streams from there.
        server::wait_streaming(ctx, node, &p.upstream, ctx.server_timeout).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_has_no_password_and_names_the_node() {
        let p = ConfigureStandbyParams {
            upstream: "n2".into(),
            upstream_host: "127.0.0.2".into(),
            upstream_port: 5433,
            user: "replicator".into(),
            application_name: "n1".into(),
            slot: Some("n1".into()),
            dbname: None,
            port: 5432,
            listen_addresses: "127.0.0.1".into(),
            apply: ConfigApply::None,
            tls: None,
        };
        assert_eq!(
            primary_conninfo(&p),
            "host=127.0.0.2 port=5433 user=replicator application_name=n1"
        );
        let (set, reset) = wanted(&p);
        assert_eq!(set["primary_slot_name"], "n1");
        assert_eq!(set["recovery_target_timeline"], "latest");
        assert!(reset.is_empty());
        let tls = crate::config::ConninfoTls {
            sslmode: crate::config::SslMode::VerifyFull,
            sslrootcert: Some("/etc/tls/root.crt".into()),
            sslcert: Some("/etc/tls/rep lica.crt".into()),
            sslkey: Some("/etc/tls/replica.key".into()),
        };
        let p = ConfigureStandbyParams {
            tls: Some(tls),
            ..p
        };
        assert_eq!(
            primary_conninfo(&p),
            "host=127.0.0.2 port=5433 user=replicator application_name=n1 sslmode=verify-full \
             sslrootcert=/etc/tls/root.crt sslcert='/etc/tls/rep lica.crt' \
             sslkey=/etc/tls/replica.key"
        );
    }
}
