//! Waiting for a node's state: a query's answer, streaming, replay (polled with a deadline; the
//! panic says what was last seen).

use std::time::{Duration, Instant};

use super::cluster::TestCluster;

impl TestCluster {
    /// Wait (up to 30 s) until `sql` on `name` returns `expected`; panics with the last value.
    pub fn wait_for_sql(&self, name: &str, sql: &str, expected: &str) {
        self.wait_for_sql_within(name, sql, expected, Duration::from_secs(30));
    }

    /// [`Self::wait_for_sql`] with another limit.
    pub fn wait_for_sql_within(&self, name: &str, sql: &str, expected: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last;
        loop {
            last = self.try_psql(name, sql);
            if last.as_deref() == Ok(expected) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{name}: {sql:?} never returned {expected:?}; last: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the standby's WAL receiver is streaming.
    pub fn wait_streaming(&self, standby: &str) {
        self.wait_for_sql(
            standby,
            "select coalesce((select status from pg_stat_wal_receiver), 'none')",
            "streaming",
        );
    }

    /// Wait until `standby` has replayed everything `primary` has written so far.
    pub fn wait_replayed(&self, standby: &str, primary: &str) {
        let lsn = self.psql(primary, "select pg_current_wal_lsn()");
        self.wait_for_sql(
            standby,
            &format!("select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            "t",
        );
    }
}

/// Wait (from async code) until `probe` returns `Ok`, looking every millisecond for at most
/// `limit`; panics with `what` and the last thing `probe` saw.
pub async fn until<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {limit:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}
