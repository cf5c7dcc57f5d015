//! The probe writer of the switchover tests: one autocommit insert into `probe` per round trip
//! through a multi-host `target_session_attrs=read-write` connection (so it always finds the
//! current primary), every acknowledged id recorded with its time; an id whose insert failed is
//! never reused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::config::TargetSessionAttrs;

use super::TestCluster;

/// What the writer saw: acknowledged ids with their time, and failed attempts.
#[derive(Default, Debug)]
pub struct WriterLog {
    pub acked: Vec<(i64, Instant)>,
    pub errors: u64,
}

impl WriterLog {
    /// The longest time between two consecutive acknowledgements.
    pub fn longest_gap(&self) -> Duration {
        self.acked
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default()
    }
}

/// One autocommit insert per round trip into `probe` through a multi-host read-write
/// connection (`cfg`, see [`TestCluster::sql_config`]), until `stop`; `acked` counts the
/// acknowledged inserts as they come (what a test waits on).
pub async fn writer(
    mut cfg: tokio_postgres::Config,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> WriterLog {
    cfg.target_session_attrs(TargetSessionAttrs::ReadWrite)
        .connect_timeout(Duration::from_secs(1));
    let mut log = WriterLog::default();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut id: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_ref() else {
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(conn);
                    client = Some(c);
                }
                Err(_) => {
                    log.errors += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            continue;
        };
        id += 1;
        match c.execute("INSERT INTO probe(id) VALUES ($1)", &[&id]).await {
            Ok(_) => {
                log.acked.push((id, Instant::now()));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                log.errors += 1;
                client = None;
            }
        }
    }
    log
}

/// A running [`writer`] task.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<WriterLog>,
}

impl Writer {
    pub fn start(c: &TestCluster, nodes: &[&str]) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(writer(c.sql_config(nodes), stop.clone(), acked.clone()));
        Writer { stop, acked, task }
    }

    /// Inserts acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Wait (up to 30 s) until `more` further inserts are acknowledged.
    pub async fn wait_more(&self, more: u64) {
        let goal = self.acked() + more;
        super::wait::until(
            "the writer's acknowledgements",
            Duration::from_secs(30),
            || {
                let n = self.acked();
                (n >= goal).then_some(()).ok_or(format!("{n} of {goal}"))
            },
        )
        .await
    }

    pub async fn finish(self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer")
    }
}
