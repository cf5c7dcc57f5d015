//! SQL connections to nodes: one place that turns the topology's `connect` section into a
//! tokio-postgres connection (connection task spawned, connect timeout, password from its
//! reference, TLS per `connect.sslmode` / `sslrootcert` / `sslcert` / `sslkey` through [`tls`]),
//! so observation, steps, import and the probe writer connect the same way.

pub mod scram;
pub mod tls;

use std::time::Duration;

use crate::config::{ConnectSpec, Desired, DesiredNode};

/// Why a connection failed, in words that name the node but never a secret.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConnectError {
    #[error("{node} ({addr}): {message}")]
    Failed {
        node: String,
        addr: String,
        message: String,
    },
    #[error("{node} ({addr}): no answer within {timeout:?}")]
    Timeout {
        node: String,
        addr: String,
        timeout: Duration,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Secret(#[from] crate::config::secret::SecretError),
    #[error("{node}: {source}")]
    Tls {
        node: String,
        #[source]
        source: tls::TlsError,
    },
}

/// The TLS settings of pgtopo's own connections.
pub fn tls_settings(c: &ConnectSpec) -> tls::TlsSettings<'_> {
    tls::TlsSettings {
        sslmode: c.sslmode,
        sslrootcert: c.sslrootcert.as_ref().map(|f| f.file.as_path()),
        sslcert: c.sslcert.as_ref().map(|f| f.file.as_path()),
        sslkey: c.sslkey.as_ref().map(|f| f.file.as_path()),
    }
}

/// Open `cfg` with `tls` (sslmode set on `cfg` here) and spawn its connection task: the one place
/// a tokio-postgres connection is made.
pub async fn open(
    cfg: &mut tokio_postgres::Config,
    tls: &tls::TlsSettings<'_>,
) -> Result<tokio_postgres::Client, OpenError> {
    cfg.ssl_mode(tls.negotiation())
        .keepalives(true)
        .keepalives_idle(stall::IDLE)
        .keepalives_interval(stall::INTERVAL)
        .keepalives_retries(stall::COUNT)
        .tcp_user_timeout(stall::USER_TIMEOUT);
    let connector = tls::connector(tls)?;
    let (client, conn) = cfg.connect(connector).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Why [`open`] failed: the TLS files, or the connection.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{}", describe(.0))]
    Pg(#[from] tokio_postgres::Error),
}

/// How long a connection may stay silent before it is declared dead: keepalive probes after
/// `IDLE` of silence, every `INTERVAL`, `COUNT` unanswered ones; data sent and not acknowledged
/// for `USER_TIMEOUT`. A peer behind a partition that sends no reset then breaks the connection
/// within ~15 s instead of the kernel's hours, for pgtopo's own connections ([`open`]) and the
/// tools' ([`stall_keywords`]). A long statement is not cut: its request was acknowledged.
pub mod stall {
    use std::time::Duration;
    pub const IDLE: Duration = Duration::from_secs(5);
    pub const INTERVAL: Duration = Duration::from_secs(2);
    pub const COUNT: u32 = 3;
    pub const USER_TIMEOUT: Duration = Duration::from_secs(15);
}

/// [`stall`] as conninfo keywords (with a leading space), for pg_basebackup, pg_rewind and
/// primary_conninfo-style strings.
pub fn stall_keywords() -> String {
    format!(
        " keepalives=1 keepalives_idle={} keepalives_interval={} keepalives_count={} tcp_user_timeout={}",
        stall::IDLE.as_secs(),
        stall::INTERVAL.as_secs(),
        stall::COUNT,
        stall::USER_TIMEOUT.as_millis()
    )
}

/// Connect to `node` as the topology's `connect.user`, giving up after `timeout`.
pub async fn connect(
    desired: &Desired,
    node: &DesiredNode,
    timeout: Duration,
) -> Result<tokio_postgres::Client, ConnectError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&node.host)
        .port(node.port)
        .user(&desired.connect.user)
        .dbname(&desired.connect.dbname)
        .application_name("pgtopo")
        .connect_timeout(timeout);
    if let Some(p) = &desired.connect.password {
        cfg.password(p.resolve()?.expose());
    }
    let addr = format!("{}:{}", node.host, node.port);
    let tls = tls_settings(&desired.connect);
    match tokio::time::timeout(timeout, open(&mut cfg, &tls)).await {
        Err(_) => Err(ConnectError::Timeout {
            node: node.name.clone(),
            addr,
            timeout,
        }),
        Ok(Err(OpenError::Tls(source))) => Err(ConnectError::Tls {
            node: node.name.clone(),
            source,
        }),
        Ok(Err(OpenError::Pg(e))) => Err(ConnectError::Failed {
            node: node.name.clone(),
            addr,
            message: describe(&e),
        }),
        Ok(Ok(client)) => Ok(client),
    }
}

/// The rows of a simple-query answer (command completions and the like left out).
pub fn rows(msgs: Vec<tokio_postgres::SimpleQueryMessage>) -> Vec<tokio_postgres::SimpleQueryRow> {
    msgs.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// A tokio-postgres error in one line: the server's message when there is one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}
