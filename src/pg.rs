//! SQL connections to nodes: one place that turns the topology's `connect` section into a
//! tokio-postgres connection (connection task spawned, connect timeout, password from its
//! reference), so observation and steps connect the same way.

use std::time::Duration;

use crate::config::{Desired, DesiredNode, SslMode};

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
    cfg.ssl_mode(match desired.connect.sslmode {
        SslMode::Disable | SslMode::Prefer => tokio_postgres::config::SslMode::Disable,
        SslMode::Require => tokio_postgres::config::SslMode::Require,
    });
    if let Some(p) = &desired.connect.password {
        cfg.password(p.resolve()?.expose());
    }
    let addr = format!("{}:{}", node.host, node.port);
    let fut = cfg.connect(tokio_postgres::NoTls);
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ConnectError::Timeout {
            node: node.name.clone(),
            addr,
            timeout,
        }),
        Ok(Err(e)) => Err(ConnectError::Failed {
            node: node.name.clone(),
            addr,
            message: describe(&e),
        }),
        Ok(Ok((client, conn))) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
    }
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
