//! Checks and moves the scenario tests share (failover_e2e.rs, switchover_interrupted.rs and
//! the same scenarios over SSH in ssh_netns.rs): a standby cut off from its upstream, waits for
//! replay and streaming, `plan` reporting no changes, an apply killed at a chosen step; and the
//! starting points most tests build: a primary with a streaming standby, a primary with nodes
//! declared for apply to build.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use super::{show, TestCluster};

/// n1, a started primary, and n2, its standby cloned with pg_basebackup, streaming.
pub fn primary_and_standby() -> TestCluster {
    primary_and_standbys(&["n2"])
}

/// n1, a started primary, and `standbys` cloned from it with pg_basebackup, streaming.
pub fn primary_and_standbys(standbys: &[&str]) -> TestCluster {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    for s in standbys {
        c.add_standby_basebackup(s, "n1");
    }
    c
}

/// n1, a started primary, and `declared` nodes (address, port and data directory only) for
/// `pgtopo apply` to build.
pub fn primary_and_declared(declared: &[&str]) -> TestCluster {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    for n in declared {
        c.declare_node(n);
    }
    c
}

/// `pgtopo plan --detailed-exitcode` exits 0: the cluster matches the topology.
pub fn assert_no_changes(c: &TestCluster) {
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan after apply: {}",
        show(&out)
    );
}

/// Stop a standby's WAL receiver (primary_conninfo emptied, reloaded) and wait until it is
/// gone: what it has not received by now it will never receive from its upstream.
pub fn cut_off(c: &TestCluster, standby: &str) {
    c.psql(standby, "ALTER SYSTEM SET primary_conninfo = ''");
    c.psql(standby, "SELECT pg_reload_conf()");
    c.wait_for_sql(standby, "SELECT count(*) FROM pg_stat_wal_receiver", "0");
}

/// The acknowledged ids (of a writer's log) that `node`'s table `probe` lacks.
pub fn lost_writes(c: &TestCluster, node: &str, acked: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let present: std::collections::HashSet<i64> = c
        .psql(node, "SELECT id FROM probe")
        .lines()
        .map(|l| l.parse().expect("an id"))
        .collect();
    acked
        .into_iter()
        .filter(|id| !present.contains(id))
        .collect()
}

/// `pg_is_in_recovery()` of a node: `t` or `f`.
pub fn in_recovery(c: &TestCluster, n: &str) -> String {
    c.psql(n, "SELECT pg_is_in_recovery()")
}

/// Wait until the standby streams from `upstream` (by port), and check it is a standby.
pub fn assert_follows(c: &TestCluster, standby: &str, upstream: &str) {
    let port = c.node(upstream).port;
    c.wait_for_sql(
        standby,
        "SELECT coalesce((SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver), 'none')",
        &format!("streaming {port}"),
    );
    assert_eq!(in_recovery(c, standby), "t", "{standby} is a standby");
}

/// Wait until `standby` replayed everything `source` has (written, or replayed when it is a
/// standby itself).
pub fn catch_up(c: &TestCluster, standby: &str, source: &str) {
    let lsn = c.psql(
        source,
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
         ELSE pg_current_wal_lsn() END",
    );
    c.wait_for_sql(
        standby,
        &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
        "t",
    );
}

/// Run `pgtopo apply --auto-approve` and SIGKILL it as soon as a step starts for which
/// `kill_at(number, kind)` holds. Returns `number:kind` of the step killed, or None when the
/// apply ended before such a step began.
pub fn apply_killed_at(c: &TestCluster, kill_at: impl Fn(u32, &str) -> bool) -> Option<String> {
    let mut cmd = c.pgtopo_command(&["apply", "--auto-approve"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgtopo runs");
    let stdout = child.stdout.take().expect("piped");
    let mut killed = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.split_whitespace().collect();
        let started = w.len() > 3 && w.last() == Some(&"started");
        let number = w.get(1).and_then(|n| n.parse::<u32>().ok());
        if let (true, Some(k)) = (started, number) {
            if kill_at(k, w[2]) {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .expect("kill pgtopo");
                killed = Some(format!("{k}:{}", w[2]));
                break;
            }
        }
    }
    child.wait().expect("reaped");
    killed
}
