//! The probe writer of the demo and the switchover benchmark, the same probe as the shared
//! benchmark's `writer.py`: one autocommit `INSERT` per round trip through a multi-host connection
//! with `target_session_attrs=read-write` (so it always finds the current primary), recording the
//! moment each id was acknowledged. On any error it drops the connection and reconnects; an id
//! whose insert failed is never reused (the client cannot know whether it committed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::config::TargetSessionAttrs;

use crate::apply::wait::{wait_until, Poll, WaitSpec};
use crate::config::ConnectSpec;

/// A running writer.
pub struct Writer {
    stop: watch::Sender<bool>,
    acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<WriterLog>,
}

/// What the writer saw.
#[derive(Debug, Clone, Default)]
pub struct WriterLog {
    /// Acknowledged ids with the moment of acknowledgement, in order.
    pub acks: Vec<(i64, Instant)>,
    /// Failed statements and connection attempts.
    pub errors: u64,
}

/// The longest pause between two acknowledged writes.
#[derive(Debug, Clone, Copy)]
pub struct Gap {
    pub length: Duration,
    pub start: Instant,
    pub end: Instant,
}

impl WriterLog {
    /// The longest gap between two consecutive acknowledgements (writes unavailable).
    pub fn max_gap(&self) -> Option<Gap> {
        self.acks
            .windows(2)
            .map(|w| Gap {
                length: w[1].1 - w[0].1,
                start: w[0].1,
                end: w[1].1,
            })
            .max_by_key(|g| g.length)
    }
}

fn config(hosts: &[(String, u16)], user: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    for (h, p) in hosts {
        cfg.host(h).port(*p);
    }
    cfg.user(user)
        .dbname("postgres")
        .application_name("pgtopo-probe")
        .connect_timeout(Duration::from_secs(1))
        .target_session_attrs(TargetSessionAttrs::ReadWrite);
    cfg
}

/// Through `pg::open`, with the topology's `connect` TLS settings when the writer has them.
async fn connect(
    cfg: &tokio_postgres::Config,
    tls: Option<&ConnectSpec>,
) -> Result<tokio_postgres::Client, crate::pg::OpenError> {
    let plain = ConnectSpec {
        sslmode: crate::config::SslMode::Disable,
        ..ConnectSpec::default()
    };
    let spec = tls.unwrap_or(&plain);
    crate::pg::open(&mut cfg.clone(), &crate::pg::tls_settings(spec)).await
}

impl Writer {
    /// Create the probe table on the current primary and start writing.
    pub async fn start(hosts: &[(String, u16)], user: &str) -> Result<Writer, String> {
        Self::start_inner(hosts, user, None, false).await
    }

    /// The same writer through a pgbouncer in transaction pooling: each INSERT is one simple
    /// query with the id as a literal (a prepared statement would not survive a change of
    /// server connection between its Parse and its Execute).
    pub async fn start_through_pooler(host: &str, port: u16, user: &str) -> Result<Writer, String> {
        Self::start_inner(&[(host.to_string(), port)], user, None, true).await
    }

    /// [`Writer::start`] with the TLS settings (and user) of a topology's `connect` section.
    pub async fn start_with(
        hosts: &[(String, u16)],
        user: &str,
        tls: Option<ConnectSpec>,
    ) -> Result<Writer, String> {
        Self::start_inner(hosts, user, tls, false).await
    }

    async fn start_inner(
        hosts: &[(String, u16)],
        user: &str,
        tls: Option<ConnectSpec>,
        simple: bool,
    ) -> Result<Writer, String> {
        let cfg = config(hosts, user);
        let c = connect(&cfg, tls.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS probe (id bigint PRIMARY KEY, t timestamptz DEFAULT now())",
        )
        .await
        .map_err(|e| crate::pg::describe(&e))?;
        let rows = c
            .simple_query("SELECT coalesce(max(id), 0) + 1 FROM probe")
            .await
            .map_err(|e| crate::pg::describe(&e))?;
        let start_id: i64 = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                _ => None,
            })
            .ok_or("no start id")?;
        let (stop, stop_rx) = watch::channel(false);
        let acked = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(
            cfg,
            tls,
            Some(c),
            start_id,
            stop_rx,
            acked.clone(),
            simple,
        ));
        Ok(Writer { stop, acked, task })
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Wait until `n` more writes than now have been acknowledged (the writer is healthy).
    pub async fn wait_for_more_acks(&self, n: u64, timeout: Duration) -> Result<(), String> {
        let target = self.acked() + n;
        wait_until(
            &WaitSpec::new(format!("{n} more acknowledged writes"), timeout),
            || {
                let seen = self.acked();
                async move {
                    if seen >= target {
                        Poll::Ready(())
                    } else {
                        Poll::Pending(format!("{seen} acknowledged"))
                    }
                }
            },
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Stop and return the log.
    pub async fn stop(self) -> WriterLog {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn run(
    cfg: tokio_postgres::Config,
    tls: Option<ConnectSpec>,
    mut client: Option<tokio_postgres::Client>,
    mut id: i64,
    stop: watch::Receiver<bool>,
    acked: Arc<AtomicU64>,
    simple: bool,
) -> WriterLog {
    let mut log = WriterLog::default();
    while !*stop.borrow() {
        let c = match client.take() {
            Some(c) => c,
            None => {
                let reconnect = wait_until(
                    &WaitSpec::new("a writable primary", Duration::from_secs(120))
                        .max_interval(Duration::from_millis(5)),
                    || {
                        let (cfg, tls) = (&cfg, tls.as_ref());
                        let stopped = *stop.borrow();
                        async move {
                            if stopped {
                                return Poll::Failed("stopped".into());
                            }
                            match connect(cfg, tls).await {
                                Ok(c) => Poll::Ready(c),
                                Err(e) => Poll::Pending(e.to_string()),
                            }
                        }
                    },
                )
                .await;
                match reconnect {
                    Ok(c) => c,
                    Err(_) => break,
                }
            }
        };
        let this = id;
        id += 1;
        let insert = if simple {
            c.simple_query(&format!("INSERT INTO probe (id) VALUES ({this})"))
                .await
                .map(drop)
        } else {
            c.execute("INSERT INTO probe (id) VALUES ($1)", &[&this])
                .await
                .map(drop)
        };
        match insert {
            Ok(_) => {
                log.acks.push((this, Instant::now()));
                acked.fetch_add(1, Ordering::Relaxed);
                client = Some(c);
            }
            Err(_) => log.errors += 1,
        }
    }
    log
}

/// Acknowledged ids missing on the server at `host:port` (which must be the current primary).
pub async fn lost_writes(
    host: &str,
    port: u16,
    user: &str,
    log: &WriterLog,
) -> Result<Vec<i64>, String> {
    let c = connect(&config(&[(host.to_string(), port)], user), None)
        .await
        .map_err(|e| e.to_string())?;
    let rows = c
        .query("SELECT id FROM probe", &[])
        .await
        .map_err(|e| crate::pg::describe(&e))?;
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    Ok(log
        .acks
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !present.contains(id))
        .collect())
}
