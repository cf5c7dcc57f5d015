//! `pgtopo watch`: check the options, bind the address, run `crate::watch` with `drift`'s fleet
//! reading until Ctrl-C or SIGTERM (then exit 0).

use super::plan_cmd::{answered, drifted};
use super::{exit, CmdResult, GlobalArgs, WatchArgs};
use crate::fleet::{targets, Targets};
use crate::render::OutputOptions;

pub async fn watch(g: &GlobalArgs, out: OutputOptions, a: WatchArgs) -> CmdResult {
    let files = match targets(&g.file)? {
        Targets::One(f) => vec![f],
        Targets::Many(files) => files,
    };
    if a.interval.0.is_zero() {
        return Err(miette::miette!("--interval must be longer than zero").into());
    }
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| miette::miette!("cannot listen on {}: {e}", a.listen))?;
    let stop = stop_signal()?;
    out.say(&format!(
        "pgtopo watch: {} cluster(s) every {}, serving http://{}/",
        files.len(),
        a.interval,
        a.listen
    ));
    let o = crate::watch::Options {
        files,
        interval: a.interval.0,
        parallelism: a.fleet.parallelism.into(),
    };
    crate::watch::serve(
        listener,
        o,
        |f| async move { answered(drifted(&f, None).await) },
        stop,
    )
    .await?;
    out.say("pgtopo watch: stopped");
    Ok(exit::OK)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM; the handlers are installed before serving starts.
fn stop_signal() -> miette::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| miette::miette!("cannot handle SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| miette::miette!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
