//! Promotion preferences and what a switchover carries over, against real PostgreSQL servers
//! through the pgtopo binary: a delayed standby (`apply_delay`), `failover_priority`, and
//! prepared transactions across a switchover.

mod support;

use support::{show, TestCluster};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Plan (JSON, saved) and apply it; both must succeed. Returns the plan.
fn apply_ok(c: &TestCluster, extra: &[&str]) -> pgtopo::plan::Plan {
    let path = c.dir.join("plan.json");
    let path_s = path.display().to_string();
    let mut args = vec!["plan"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", &path_s, "--format", "json"]);
    let out = c.pgtopo(&args);
    assert_eq!(out.status.code(), Some(0), "plan: {}", show(&out));
    let plan = serde_json::from_str(&std::fs::read_to_string(&path).expect("plan file"))
        .expect("plan JSON");
    let out = c.pgtopo(&["apply", &path_s]);
    assert_eq!(out.status.code(), Some(0), "apply: {}", show(&out));
    std::fs::remove_file(&path).expect("plan file removed");
    plan
}

fn assert_no_changes(c: &TestCluster) {
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan after apply: {}",
        show(&out)
    );
}

fn has_step(p: &pgtopo::plan::Plan, kind: &str, node: &str) -> bool {
    p.steps
        .iter()
        .any(|s| s.node == node && s.action.kind() == kind)
}

/// n1 primary; n2 delayed by 10 minutes; n3 (priority 1, the default) and n4 (priority 2).
/// The delay is applied and watched for drift; the delayed standby receives WAL at once but
/// replays it late, and a restart of it still finishes (it waits on received WAL, not on replay);
/// the what-if takes n4, passing over n2 (delayed) and n3 (as advanced, lower priority); then the
/// failover to n4 with the delayed standby re-pointed.
#[test]
fn a_delayed_standby_replays_late_and_the_failover_takes_the_preferred_node() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    for n in ["n2", "n3", "n4"] {
        c.add_standby_basebackup(n, "n1");
    }
    // Every standby streams before the first plan (a loaded machine starts them slowly, and a
    // standby that does not stream yet is drift no step of this plan fixes).
    for n in ["n2", "n3", "n4"] {
        c.wait_streaming(n);
    }
    let mut topo = c.topology();
    topo.extra_yaml("nodes: {n2: {apply_delay: 10m}, n4: {failover_priority: 2}}");
    c.write_topology(&topo);
    let p = apply_ok(&c, &[]);
    assert!(has_step(&p, "alter_system", "n2"), "{:?}", p.steps);
    assert_eq!(c.psql("n2", "SHOW recovery_min_apply_delay"), "10min");
    assert_no_changes(&c);

    // The delayed standby receives the commit at once and does not replay it.
    c.psql("n1", "CREATE TABLE t(i int)");
    let lsn = c.psql("n1", "SELECT pg_current_wal_flush_lsn()");
    c.wait_replayed("n3", "n1");
    c.wait_for_sql(
        "n2",
        &format!("SELECT pg_last_wal_receive_lsn() >= '{lsn}'"),
        "t",
    );
    assert_eq!(c.psql("n2", "SELECT to_regclass('t') IS NULL"), "t");

    // A restart of the delayed standby: it catches up (received) before and after, in seconds.
    topo.extra_yaml("nodes: {n2: {settings: {max_wal_senders: 12}}}");
    c.write_topology(&topo);
    let started = std::time::Instant::now();
    let p = apply_ok(&c, &[]);
    assert!(has_step(&p, "restart", "n2"), "{:?}", p.steps);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(c.psql("n2", "SELECT to_regclass('t') IS NULL"), "t");

    // Drift: the delay changed behind pgtopo's back is found and set back.
    c.psql("n2", "ALTER SYSTEM SET recovery_min_apply_delay = '5min'");
    c.psql("n2", "SELECT pg_reload_conf()");
    c.wait_for_sql("n2", "SHOW recovery_min_apply_delay", "5min");
    let out = c.pgtopo(&["drift"]);
    assert!(
        stdout(&out).contains("recovery_min_apply_delay"),
        "{}",
        show(&out)
    );
    apply_ok(&c, &[]);
    assert_eq!(c.psql("n2", "SHOW recovery_min_apply_delay"), "10min");

    // The what-if names the choice and why the others were passed over (n3 and n4 equally
    // advanced: the priority decides).
    c.wait_replayed("n3", "n1");
    c.wait_replayed("n4", "n1");
    let out = c.pgtopo(&["plan", "--assume-down", "n1", "--allow-failover"]);
    let text = stdout(&out);
    assert!(
        text.contains("n4 (failover_priority 2, received")
            && text.contains("n2 (apply_delay 10m: a delayed standby is never promoted)")
            && text.contains("n3 (failover_priority 1, not above n4's 2 at the same position)"),
        "{}",
        show(&out)
    );

    // The failover itself, once the topology declares the choice: n2, still delayed, and n3
    // follow n4 (n2's catch-up waits on received WAL), n1 rejoins.
    c.crash("n1");
    topo.role("n4", "primary", None);
    for n in ["n1", "n2", "n3"] {
        topo.role(n, "standby", Some("n4"));
    }
    c.write_topology(&topo);
    let p = apply_ok(&c, &["--allow-failover"]);
    assert!(has_step(&p, "promote", "n4"), "{:?}", p.steps);
    assert_eq!(c.psql("n4", "SELECT pg_is_in_recovery()"), "f");
    let n4_port = c.node("n4").port;
    for n in ["n1", "n3"] {
        c.wait_for_sql(
            n,
            "SELECT sender_port FROM pg_stat_wal_receiver",
            &n4_port.to_string(),
        );
    }
    // The delayed n2 starts its WAL receiver only once it has applied, 10 minutes late, the WAL
    // it already has: until then it follows n4 in its conninfo, its startup process waiting on
    // the delay.
    c.wait_for_sql(
        "n2",
        &format!(
            "SELECT current_setting('primary_conninfo') LIKE '%port={n4_port}%' AND \
             (EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE sender_port = {n4_port}) OR \
              EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'startup' \
                      AND wait_event = 'RecoveryApplyDelay'))"
        ),
        "t",
    );
    assert_eq!(c.psql("n2", "SHOW recovery_min_apply_delay"), "10min");
    assert_no_changes(&c);
}

/// A transaction prepared on the primary is named by the switchover plan (text, markdown, JSON),
/// stays prepared on the new primary, and commits there.
#[test]
fn a_prepared_transaction_survives_a_switchover_and_commits_on_the_new_primary() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    let conf = c.node("n1").data_dir.join("postgresql.conf");
    c.append(&conf, "max_prepared_transactions = 5\n");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.wait_streaming("n2");
    let mut topo = c.topology();
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t(i int)");
    c.psql(
        "n1",
        "BEGIN; INSERT INTO t VALUES (7); PREPARE TRANSACTION 'pgtopo-px-1'",
    );

    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"));
    c.write_topology(&topo);
    for format in ["text", "markdown"] {
        let out = c.pgtopo(&["plan", "--format", format]);
        let text = stdout(&out);
        assert!(
            text.contains("n1 has 1 prepared transaction(s): 'pgtopo-px-1' (owner postgres, database postgres, prepared ")
                && text.contains("They survive the switchover: once promoted, n2 has them prepared"),
            "{format}: {}",
            show(&out)
        );
    }
    let p = apply_ok(&c, &[]);
    let gids: Vec<&str> = p
        .summary
        .prepared_transactions
        .iter()
        .map(|x| x.gid.as_str())
        .collect();
    assert_eq!(gids, ["pgtopo-px-1"]);
    assert!(has_step(&p, "promote", "n2"));
    assert_eq!(
        c.psql("n2", "SELECT gid FROM pg_prepared_xacts"),
        "pgtopo-px-1"
    );
    c.psql("n2", "COMMIT PREPARED 'pgtopo-px-1'");
    assert_eq!(c.psql("n2", "SELECT i FROM t"), "7");
    c.wait_replayed("n1", "n2");
    assert_eq!(c.psql("n1", "SELECT i FROM t"), "7");
    assert_eq!(c.psql("n1", "SELECT count(*) FROM pg_prepared_xacts"), "0");
    assert_no_changes(&c);
}
