//! `pgtopo watch` (SPEC §9): read every cluster on a schedule and serve the last round over
//! HTTP — `/metrics` (the OpenMetrics text of `drift --format prometheus`), `/healthz`, `/`
//! (an HTML overview) and `/cluster/NAME` (one cluster's status and findings). It never changes
//! anything: a round is the fleet reading `drift` does, passed in by `cli` as `read`. A round
//! starts `interval` after the previous one started (or at once when it took longer); requests
//! always see the last finished round. Layout is `render::metrics` and `render::html`; this
//! module prints nothing.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::fleet::{read_all, Drifted, Fleet};
use crate::render::html;

/// What to watch and how often.
#[derive(Debug, Clone)]
pub struct Options {
    pub files: Vec<PathBuf>,
    pub interval: Duration,
    pub parallelism: usize,
}

/// One finished round: every cluster's reading, its number (from 1) and when it finished.
#[derive(Debug)]
pub struct Round {
    pub number: u64,
    pub finished: SystemTime,
    pub fleet: Fleet<Drifted>,
}

type Latest = watch::Receiver<Option<Arc<Round>>>;

/// Serve on `listener` and read the clusters every `interval` until `shutdown` resolves; then
/// stop accepting, let requests in flight finish and return (a round in progress is dropped:
/// it only reads).
pub async fn serve<F, Fut>(
    listener: tokio::net::TcpListener,
    o: Options,
    read: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> miette::Result<()>
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = miette::Result<Drifted>>,
{
    let (tx, rx) = watch::channel(None);
    let app = Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/cluster/{name}", get(cluster))
        .with_state(rx);
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    tokio::select! {
        r = server.into_future() => r.map_err(|e| miette::miette!("the HTTP server failed: {e}")),
        never = rounds(&o, read, tx) => match never {},
    }
}

/// Read every cluster, publish the round, wait for the next tick; forever.
async fn rounds<F, Fut>(
    o: &Options,
    read: F,
    tx: watch::Sender<Option<Arc<Round>>>,
) -> std::convert::Infallible
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = miette::Result<Drifted>>,
{
    let mut tick = tokio::time::interval(o.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for number in 1.. {
        tick.tick().await;
        let fleet = read_all(&o.files, o.parallelism, &read).await;
        tx.send_replace(Some(Arc::new(Round {
            number,
            finished: SystemTime::now(),
            fleet,
        })));
    }
    unreachable!("a u64 of rounds does not run out")
}

fn last(rx: &Latest) -> Option<Arc<Round>> {
    rx.borrow().clone()
}

fn not_yet() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the first round of observation has not finished yet\n",
    )
        .into_response()
}

/// 200 once a round finished, 503 before.
async fn healthz(State(rx): State<Latest>) -> Response {
    match last(&rx) {
        Some(r) => format!("ok: round {} finished\n", r.number).into_response(),
        None => not_yet(),
    }
}

async fn metrics(State(rx): State<Latest>) -> Response {
    match last(&rx) {
        Some(r) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            crate::render::metrics::text(&r.fleet),
        )
            .into_response(),
        None => not_yet(),
    }
}

async fn index(State(rx): State<Latest>) -> Response {
    match last(&rx) {
        Some(r) => Html(html::index(&r.fleet, &header_of(&r))).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Html(html::waiting())).into_response(),
    }
}

async fn cluster(State(rx): State<Latest>, Path(name): Path<String>) -> Response {
    let Some(r) = last(&rx) else {
        return not_yet();
    };
    match r.fleet.members.iter().find(|m| m.name == name) {
        Some(m) => Html(html::cluster(m, &header_of(&r))).into_response(),
        None => (StatusCode::NOT_FOUND, Html(html::no_cluster(&name))).into_response(),
    }
}

fn header_of(r: &Round) -> html::RoundInfo {
    html::RoundInfo {
        number: r.number,
        finished: humantime::format_rfc3339_seconds(r.finished).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Before the first round finished every page says so with 503; the stop signal ends the
    /// server although the round never finishes.
    #[tokio::test]
    async fn before_the_first_round_the_pages_answer_503_and_stop_ends_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let o = Options {
            files: vec![PathBuf::from("a.yaml")],
            interval: Duration::from_millis(10),
            parallelism: 1,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, o, |_| std::future::pending(), async {
            let _ = stopped.await;
        }));
        for path in ["/healthz", "/metrics", "/", "/cluster/a"] {
            let r = get(addr, path).await;
            assert!(r.starts_with("HTTP/1.1 503"), "{path}: {r}");
            assert!(r.contains("has not finished yet"), "{path}: {r}");
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
