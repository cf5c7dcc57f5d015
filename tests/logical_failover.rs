//! Failover-safe logical replication end to end (PostgreSQL 17+: on an older server the test
//! fails under `PGTOPO_REQUIRE_ALL=1`, which is why `scripts/test.sh` runs it on 17 and 18 only,
//! and says SKIPPED otherwise): a real subscriber — a second PostgreSQL server with `CREATE SUBSCRIPTION … WITH
//! (create_slot = false, slot_name = 'orders_sub')` — receives every row across a pgtopo
//! switchover and a pgtopo failover, none lost and none twice.
//!
//! The subscriber connects through a host list of every node with
//! `target_session_attrs=read-write`, so after a role change its apply worker reconnects to
//! whichever node is primary, without an ALTER SUBSCRIPTION; its `wal_retrieve_retry_interval`
//! is lowered so it retries quickly. A writer inserts ids one at a time through the same kind of
//! host list and records every acknowledged id. After the switchover (n1 → n2, under writes) and
//! the failover (n2 crashed with the writer paused and n3 caught up, → n3), the subscriber's
//! table must equal the final primary's (same count, no id twice) and hold every acknowledged id;
//! after each role change the new primary's `synchronized_standby_slots` names its standbys'
//! slots and `pgtopo plan` reports no changes.

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{show, TestCluster};
use tokio_postgres::config::TargetSessionAttrs;

/// The major version of the servers under test (`postgres --version`).
fn major() -> u32 {
    let bin = std::env::var("PGTOPO_TEST_BIN_DIR").unwrap_or(support::DEFAULT_BIN_DIR.into());
    let out = Command::new(format!("{bin}/postgres"))
        .arg("--version")
        .output()
        .expect("postgres --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2).unwrap_or("0");
    version
        .split('.')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0)
}

fn pgtopo(c: &TestCluster, args: &[&str]) -> Output {
    support::cli::stray_pgtopo()
        .arg("-f")
        .arg(c.topology_file())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("pgtopo runs")
}

fn host_list(c: &TestCluster, names: &[&str]) -> (String, String) {
    let hosts: Vec<String> = names.iter().map(|n| c.node(n).host.clone()).collect();
    let ports: Vec<String> = names.iter().map(|n| c.node(n).port.to_string()).collect();
    (hosts.join(","), ports.join(","))
}

/// Inserts ids 1, 2, … one autocommit statement at a time into `orders` on whichever node
/// accepts writes; returns every acknowledged id. Paused while `pause` is set; `idle` says it
/// saw the pause with no statement in flight.
async fn writer(
    mut cfg: tokio_postgres::Config,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
) -> Vec<i64> {
    cfg.target_session_attrs(TargetSessionAttrs::ReadWrite)
        .connect_timeout(Duration::from_secs(1));
    let mut acked = Vec::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut id: i64 = 0;
    // A steady trickle, not a flood (the subscriber's lag stays small): one attempt per tick.
    // After a stall (a switchover), the next tick comes 2 ms later: no burst of missed ticks.
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        let paused = pause.load(Ordering::Relaxed);
        idle.store(paused, Ordering::Relaxed);
        if paused {
            continue;
        }
        let Some(c) = client.as_ref() else {
            if let Ok((c, conn)) = cfg.connect(tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                client = Some(c);
            }
            continue;
        };
        id += 1;
        match c
            .execute("INSERT INTO orders(id) VALUES ($1)", &[&id])
            .await
        {
            Ok(_) => acked.push(id),
            Err(_) => client = None,
        }
    }
    acked
}

/// How long a standby's synced copy may take to become persistent: the slot sync worker naps up
/// to 30 s between cycles when the last one changed nothing (PostgreSQL's
/// MAX_SLOTSYNC_WORKER_NAPTIME_MS), so on a loaded machine 30 s is not always enough.
const SYNC_LIMIT: Duration = Duration::from_secs(120);

const SLOT_ROW: &str =
    "SELECT coalesce(string_agg(synced::text || '/' || temporary::text, ','), 'none') \
     FROM pg_replication_slots WHERE slot_name = 'orders_sub'";

/// count, distinct count and sum of the ids in `orders`.
fn summary(c: &TestCluster, node: &str) -> String {
    c.psql(
        node,
        "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || coalesce(sum(id), 0) FROM orders",
    )
}

fn apply(c: &TestCluster, what: &str) {
    let out = pgtopo(c, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{what}: {}", show(&out));
    let out = pgtopo(c, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}, plan again: {}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_loses_nothing_across_switchover_and_failover() {
    let major = major();
    if major < 17 {
        support::missing_prerequisite(
            "a_subscriber_loses_nothing_across_switchover_and_failover",
            &format!(
                "failover logical slots need PostgreSQL 17 or later; the servers under test are \
                 PostgreSQL {major} (set PGTOPO_TEST_BIN_DIR to a 17+ bin directory)"
            ),
        );
        return;
    }
    let mut c = TestCluster::new();
    c.init_primary("n1");
    let conf = c.node("n1").data_dir.join("postgresql.conf");
    c.append(&conf, "wal_level = logical\n");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n1");
    c.wait_streaming("n2");
    c.wait_streaming("n3");
    c.psql(
        "n1",
        "CREATE TABLE orders(id bigint PRIMARY KEY); CREATE PUBLICATION orders_pub FOR TABLE orders",
    );

    let mut topo = c.topology();
    topo.extra_yaml(
        "failover: {allow: true}\n\
         switchover: {timeout: 120s}\n\
         logical_slots:\n  - {name: orders_sub, plugin: pgoutput, database: postgres, failover: true}\n",
    );
    c.write_topology(&topo);
    apply(&c, "first apply");
    assert_eq!(c.psql("n1", "SHOW synchronized_standby_slots"), "n2,n3");
    for n in ["n2", "n3"] {
        assert_eq!(c.psql(n, "SHOW sync_replication_slots"), "on");
        assert_eq!(c.psql(n, "SHOW hot_standby_feedback"), "on");
    }
    assert_eq!(
        c.psql(
            "n1",
            "SELECT failover FROM pg_replication_slots WHERE slot_name = 'orders_sub'"
        ),
        "t"
    );

    // The subscriber: another server, the table without a key so that a duplicate shows.
    let mut s = TestCluster::new();
    s.init_primary("sub");
    s.start("sub");
    s.psql(
        "sub",
        "ALTER SYSTEM SET wal_retrieve_retry_interval = '100ms'",
    );
    s.psql("sub", "SELECT pg_reload_conf()");
    s.psql("sub", "CREATE TABLE orders(id bigint)");
    let (hosts, ports) = host_list(&c, &["n1", "n2", "n3"]);
    let passfile = c.auth.conninfo_passfile();
    s.psql(
        "sub",
        &format!(
            "CREATE SUBSCRIPTION orders_sub CONNECTION 'host={hosts} port={ports} user=postgres \
             dbname=postgres target_session_attrs=read-write connect_timeout=2{passfile}' \
             PUBLICATION orders_pub WITH (create_slot = false, slot_name = 'orders_sub', \
             copy_data = false)"
        ),
    );

    let nodes = c.sql_config(&["n1", "n2", "n3"]);
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Arc::new(AtomicBool::new(false));
    let idle = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(nodes, stop.clone(), pause.clone(), idle.clone()));
    // The standbys' copies become persistent once the subscriber moves the slot on.
    c.wait_for_sql_within("n2", SLOT_ROW, "true/false", SYNC_LIMIT);
    c.wait_for_sql_within("n3", SLOT_ROW, "true/false", SYNC_LIMIT);

    // Switchover to n2, under writes.
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    let c = tokio::task::spawn_blocking(move || {
        apply(&c, "switchover");
        c
    })
    .await
    .unwrap();
    assert_eq!(c.psql("n2", "SHOW synchronized_standby_slots"), "n1,n3");
    assert_eq!(c.psql("n1", "SHOW synchronized_standby_slots"), "");
    c.wait_for_sql_within("n1", SLOT_ROW, "true/false", SYNC_LIMIT);
    c.wait_for_sql_within("n3", SLOT_ROW, "true/false", SYNC_LIMIT);
    let after_switchover = c.psql("n2", "SELECT max(id) FROM orders");
    s.wait_for_sql(
        "sub",
        &format!("SELECT count(*) > 0 FROM orders WHERE id > {after_switchover}"),
        "t",
    );

    // Failover to n3: writes paused and n3 caught up (asynchronous replication may lose what
    // a crashed primary acknowledged last; that is not what this test is about), n2 crashed.
    pause.store(true, Ordering::Relaxed);
    support::wait::until("the writer pauses", Duration::from_secs(10), || {
        idle.load(Ordering::Relaxed)
            .then_some(())
            .ok_or("a statement in flight".to_string())
    })
    .await;
    c.wait_replayed("n3", "n2");
    c.wait_for_sql_within("n3", SLOT_ROW, "true/false", SYNC_LIMIT);
    c.crash("n2");
    topo.role("n3", "primary", None)
        .role("n1", "standby", Some("n3"))
        .role("n2", "standby", Some("n3"));
    c.write_topology(&topo);
    let c = tokio::task::spawn_blocking(move || {
        apply(&c, "failover");
        c
    })
    .await
    .unwrap();
    pause.store(false, Ordering::Relaxed);
    assert_eq!(c.psql("n3", "SHOW synchronized_standby_slots"), "n1,n2");
    assert_eq!(c.psql("n2", "SHOW synchronized_standby_slots"), "");
    let after_failover = c.psql("n3", "SELECT max(id) FROM orders");
    s.wait_for_sql(
        "sub",
        &format!("SELECT count(*) > 0 FROM orders WHERE id > {after_failover}"),
        "t",
    );

    stop.store(true, Ordering::Relaxed);
    let acked = w.await.unwrap();
    let want = summary(&c, "n3");
    s.wait_for_sql(
        "sub",
        "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || coalesce(sum(id), 0) FROM orders",
        &want,
    );
    // In chunks: one psql argument may not exceed the kernel's 128 KiB (MAX_ARG_STRLEN).
    for chunk in acked.chunks(5000) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let missing = s.psql(
            "sub",
            &format!(
                "SELECT count(*) FROM unnest(ARRAY[{list}]::bigint[]) a(id) \
                 WHERE NOT EXISTS (SELECT FROM orders o WHERE o.id = a.id)"
            ),
        );
        assert_eq!(missing, "0", "acknowledged ids missing on the subscriber");
    }
    assert!(
        acked.len() > 100,
        "the writer wrote too little: {}",
        acked.len()
    );
    eprintln!(
        "subscriber: {want} (count, distinct, sum) = the final primary's; {} acknowledged ids",
        acked.len()
    );
}
