//! `route_pooler`: the pooler's databases that follow the primary are sent to it. With a
//! `config_file`, their `[databases]` entries get the primary's host and port (the file is read
//! and written through the pooler's transport, atomically), then `RELOAD`. Admin console only:
//! pgbouncer cannot change a database's address from its console, so the step sends `RELOAD`
//! (for a config that something else, e.g. an `after_promotion` hook, rewrote) and then checks
//! the route, failing with what it sees. Already routing to the primary: nothing to do. A
//! pgbouncer that is down still gets its file rewritten (the step then fails): started again,
//! it routes to the primary.

use std::path::Path;
use std::time::Duration;

use super::pooler_admin::{command, console, declared, routes};
use super::{Freshness, StepContext};
use crate::apply::{wait_until, Poll, StepError, WaitSpec};
use crate::config::DesiredPooler;
use crate::plan::RoutePoolerParams;
use crate::transport::{DynTransport, LocalTransport, SshTransport};

/// The databases of `p` that do not route to its target, as `db → host:port`.
async fn off_route(
    ctx: &StepContext,
    name: &str,
    p: &RoutePoolerParams,
) -> Result<Vec<String>, StepError> {
    let pl = declared(ctx, name)?;
    let shown = routes(pl, &console(pl).await?, &p.databases).await?;
    Ok(p.databases
        .iter()
        .filter(|d| shown[*d].host != p.host || shown[*d].port != p.port)
        .map(|d| format!("{d} → {}:{}", shown[d].host, shown[d].port))
        .collect())
}

pub async fn check(
    ctx: &StepContext,
    name: &str,
    p: &RoutePoolerParams,
) -> Result<Freshness, StepError> {
    let off = match off_route(ctx, name, p).await {
        Ok(off) => off,
        // The console does not answer (pgbouncer down): its file is still rewritten, so it
        // routes to the primary once it is started again.
        Err(e) if p.config_file.is_some() => return Ok(Freshness::Dirty(e.message)),
        Err(e) => return Err(e),
    };
    Ok(match off.is_empty() {
        true => Freshness::Fresh,
        false => Freshness::Dirty(off.join(", ")),
    })
}

fn transport(pl: &DesiredPooler) -> DynTransport {
    match &pl.ssh {
        Some(s) => std::sync::Arc::new(SshTransport::new(s.clone(), pl.os_user.clone())),
        None => std::sync::Arc::new(LocalTransport::new(pl.os_user.clone())),
    }
}

async fn rewrite(pl: &DesiredPooler, file: &Path, p: &RoutePoolerParams) -> Result<(), StepError> {
    let t = transport(pl);
    let err =
        |e: crate::transport::TransportError| StepError::new(format!("pooler {}: {e}", pl.name));
    let Some(bytes) = t.read_file(file).await.map_err(err)? else {
        return Err(StepError::new(format!(
            "pooler {}: {} does not exist",
            pl.name,
            file.display()
        )));
    };
    let text = String::from_utf8_lossy(&bytes);
    let (new, missing) = crate::pooler::route_ini(&text, &p.databases, &p.host, p.port);
    if !missing.is_empty() {
        return Err(StepError::new(format!(
            "pooler {}: {} has no [databases] entry for {}",
            pl.name,
            file.display(),
            missing.join(", ")
        )));
    }
    if new != text {
        t.write_file_atomic(file, new.as_bytes(), 0o640)
            .await
            .map_err(err)?;
    }
    Ok(())
}

pub async fn act(ctx: &StepContext, name: &str, p: &RoutePoolerParams) -> Result<(), StepError> {
    let pl = declared(ctx, name)?;
    if let Some(f) = &p.config_file {
        rewrite(pl, Path::new(f), p).await?;
    }
    let admin = console(pl).await.map_err(|mut e| {
        if let Some(f) = &p.config_file {
            e.message = format!(
                "{}; {f} now routes {} to {}:{}, so pgbouncer goes there once it is started again",
                e.message,
                p.databases.join(", "),
                p.host,
                p.port
            );
        }
        e
    })?;
    command(pl, &admin, "RELOAD", Duration::from_secs(10)).await
}

pub async fn verify(ctx: &StepContext, name: &str, p: &RoutePoolerParams) -> Result<(), StepError> {
    let spec = WaitSpec::new(
        format!(
            "pooler {name} routing {} to {}:{}",
            p.databases.join(", "),
            p.host,
            p.port
        ),
        Duration::from_secs(5),
    );
    let admin_only = p.config_file.is_none();
    wait_until(&spec, || async {
        match off_route(ctx, name, p).await {
            Ok(off) if off.is_empty() => Poll::Ready(()),
            Ok(off) if admin_only => Poll::Failed(format!(
                "{}: pooler {name} has no config_file, so pgtopo cannot rewrite its [databases]; route it (e.g. with an after_promotion hook)",
                off.join(", ")
            )),
            Ok(off) => Poll::Pending(off.join(", ")),
            Err(e) => Poll::Pending(e.message),
        }
    })
    .await?;
    Ok(())
}
