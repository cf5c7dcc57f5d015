//! Failover and rejoin end to end, against real PostgreSQL servers started by the harness:
//! crash failover with writes only the old primary got (rewind), the clone fallback (no
//! wal_log_hints, no checksums), refusals (no consent, lagging candidate, two primaries the
//! topology does not arbitrate), a second primary fenced and rejoined, a cascade re-pointed, the
//! what-if of `plan --assume-down` touching nothing, and an apply killed during a rewind.
//!
//! Each test checks what a user checks: roles (pg_is_in_recovery), timelines, streaming state
//! (pg_stat_replication / pg_stat_wal_receiver), slots, row counts, exit codes and messages, and
//! that `pgtopo plan --detailed-exitcode` exits 0 after a successful apply.

mod support;

use std::process::Output;

use support::{TestCluster, Topology};

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The harness topology with the replication role `postgres` (trusted on loopback by the
/// harness' pg_hba.conf), so plans hold only what the tests are about.
fn base_topology(c: &TestCluster) -> Topology {
    let mut t = c.topology();
    t.extra_yaml("replication: {user: postgres, hba_method: trust}");
    t
}

/// What an apply did: the plan it ran and each step's outcome.
struct Applied {
    plan: pgtopo::plan::Plan,
    report: pgtopo::apply::ApplyReport,
}

impl Applied {
    /// `kind node outcome` per step, one a line.
    fn lines(&self) -> String {
        self.report
            .steps
            .iter()
            .map(|s| format!("{} {} {} {}\n", s.id, s.kind, s.node, s.outcome.label()))
            .collect()
    }
}

/// Observe, plan and apply `DIR/topology.yaml` through the library (what `pgtopo apply
/// --auto-approve [--allow-failover]` does); panics with the report unless every step succeeded.
fn apply_ok(c: &TestCluster, extra: &[&str]) -> Applied {
    let a = apply_lib(c, extra);
    assert!(
        a.report.succeeded(),
        "apply failed:\n{}\n{:#?}",
        a.lines(),
        a.report.failures().collect::<Vec<_>>()
    );
    a
}

fn apply_lib(c: &TestCluster, extra: &[&str]) -> Applied {
    use std::sync::Arc;
    let d = pgtopo::config::load(&c.topology_file()).expect("valid topology");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let o = pgtopo::observe::observe(&d, &Default::default()).await;
        let opts = pgtopo::plan::PlanOptions {
            allow_failover: extra.contains(&"--allow-failover"),
            assume_down: vec![],
        };
        let plan = pgtopo::plan::build(&d, &o, &opts)
            .unwrap_or_else(|e| panic!("plan refused: {:?}", miette::Report::new(e)));
        let transports = d
            .nodes
            .values()
            .map(|n| (n.name.clone(), pgtopo::transport::for_node(n)))
            .collect();
        let ctx = Arc::new(pgtopo::steps::StepContext::new(
            Arc::new(d.clone()),
            transports,
        ));
        let exec = Arc::new(pgtopo::steps::Executor::new(ctx));
        let report =
            pgtopo::apply::apply(&plan, exec, &pgtopo::apply::NullEvents, &Default::default())
                .await
                .expect("apply runs");
        Applied { plan, report }
    })
}

/// `pgtopo plan --detailed-exitcode` exits 0: the cluster matches the topology.
fn assert_no_changes(c: &TestCluster) {
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
fn cut_off(c: &TestCluster, standby: &str) {
    c.psql(standby, "ALTER SYSTEM SET primary_conninfo = ''");
    c.psql(standby, "SELECT pg_reload_conf()");
    c.wait_for_sql(standby, "SELECT count(*) FROM pg_stat_wal_receiver", "0");
}

fn in_recovery(c: &TestCluster, n: &str) -> String {
    c.psql(n, "SELECT pg_is_in_recovery()")
}

fn timeline(c: &TestCluster, n: &str) -> String {
    c.psql(n, "SELECT timeline_id FROM pg_control_checkpoint()")
}

/// The node's WAL receiver: `status sender_port`.
fn receiver(c: &TestCluster, n: &str) -> String {
    c.psql(
        n,
        "SELECT coalesce((SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver), 'none')",
    )
}

fn slots(c: &TestCluster, n: &str) -> String {
    c.psql(
        n,
        "SELECT coalesce(string_agg(slot_name || ':' || active, ',' ORDER BY slot_name), '') \
         FROM pg_replication_slots",
    )
}

fn streaming_apps(c: &TestCluster, n: &str) -> String {
    c.psql(
        n,
        "SELECT coalesce(string_agg(application_name || ':' || state, ',' \
         ORDER BY application_name), '') FROM pg_stat_replication",
    )
}

/// Wait until the standby streams from `upstream` (by port) and replayed all it has written.
fn assert_follows(c: &TestCluster, standby: &str, upstream: &str) {
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
fn catch_up(c: &TestCluster, standby: &str, source: &str) {
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

/// Wait until every standby in `standbys` replayed what `primary` has written, then compare the
/// row count of `table` everywhere with `expected`.
fn assert_rows_everywhere(c: &TestCluster, primary: &str, standbys: &[&str], expected: u64) {
    let sql = "SELECT count(*) FROM t";
    assert_eq!(
        c.psql(primary, sql),
        expected.to_string(),
        "rows on {primary}"
    );
    for s in standbys {
        catch_up(c, s, primary);
        assert_eq!(c.psql(s, sql), expected.to_string(), "rows on {s}");
    }
}

/// n1 primary; n2 and n3 standbys of n1; n4 cascades below n3. n2 and n3 are cut off, n1
/// accepts rows only it has, then crashes. The topology now declares n2 primary.
/// Without consent the plan is refused; with it, n1 is fenced, n2 promoted, n1 rewound (its
/// extra rows are gone), n3 re-pointed to n2 and n4 still below n3, all on timeline 2.
#[test]
fn crash_failover_rewinds_the_old_primary_and_repoints_the_cascade() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n1");
    c.add_standby_basebackup("n4", "n3");
    let mut topo = base_topology(&c);
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g",
    );
    for s in ["n2", "n3"] {
        c.wait_replayed(s, "n1");
    }
    catch_up(&c, "n4", "n3");
    cut_off(&c, "n2");
    cut_off(&c, "n3");
    // Rows only n1 gets (acknowledged to the client, never replicated), then a crash.
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series(101, 2100) g",
    );
    c.crash("n1");

    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"))
        .role("n4", "standby", Some("n3"));
    c.write_topology(&topo);

    // No consent: refused, exit 1, the reason and both ways to consent named.
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("failover"), "{err}");
    assert!(
        err.contains("--allow-failover") && err.contains("failover.allow: true"),
        "{err}"
    );

    // With consent: the plan names the fence, the promotion, the rewind with its LSNs, and the
    // data-loss exposure.
    let out = c.pgtopo(&["plan", "--allow-failover", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = stdout(&out);
    for want in ["fence", "promote", "rewind", "fork point", "Data loss"] {
        assert!(text.contains(want), "plan lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("clone "), "no clone expected:\n{text}");

    let a = apply_ok(&c, &["--allow-failover"]);
    let kinds: Vec<(&str, &str)> = a
        .plan
        .steps
        .iter()
        .map(|s| (s.action.kind(), s.node.as_str()))
        .collect();
    let pos = |k: &str, n: &str| kinds.iter().position(|x| *x == (k, n));
    assert!(pos("fence", "n1") < pos("promote", "n2"), "{kinds:?}");
    assert!(pos("checkpoint", "n2") < pos("rewind", "n1"), "{kinds:?}");
    assert!(pos("rewind", "n1").is_some(), "{kinds:?}");

    assert_eq!(in_recovery(&c, "n2"), "f");
    assert_eq!(timeline(&c, "n2"), "2");
    assert_follows(&c, "n1", "n2");
    assert_follows(&c, "n3", "n2");
    assert_follows(&c, "n4", "n3");
    c.psql("n2", "CHECKPOINT");
    c.psql("n2", "INSERT INTO t VALUES (1000000, 'after')");
    assert_rows_everywhere(&c, "n2", &["n1", "n3"], 101);
    catch_up(&c, "n4", "n3");
    assert_eq!(c.psql("n4", "SELECT count(*) FROM t"), "101");
    for n in ["n1", "n3", "n4"] {
        assert_eq!(
            c.psql(n, "SELECT received_tli FROM pg_stat_wal_receiver"),
            "2",
            "{n} receives timeline 2"
        );
    }
    assert_eq!(slots(&c, "n2"), "n1:true,n3:true");
    assert_eq!(slots(&c, "n3"), "n4:true");
    assert_eq!(streaming_apps(&c, "n2"), "n1:streaming,n3:streaming");
    // The node's own identity survived the rewind (pg_rewind copied n2's configuration).
    assert_eq!(
        c.psql("n1", "SHOW port"),
        c.node("n1").port.to_string(),
        "n1 keeps its port"
    );
    assert_no_changes(&c);
}

/// Everything a what-if must leave alone, per node: the postmaster's PID, role, timeline, slots,
/// the configuration files pgtopo writes, standby.signal; and the files beside the data
/// directories (no lock, no marker left behind).
fn snapshot(c: &TestCluster) -> Vec<String> {
    use sha2::Digest;
    let mut out = Vec::new();
    for n in c.nodes() {
        let name = n.name.as_str();
        out.push(format!(
            "{name} pid={:?} recovery={} tl={} slots={} receiver={}",
            support::postmaster_pid(&n.data_dir),
            in_recovery(c, name),
            timeline(c, name),
            slots(c, name),
            receiver(c, name)
        ));
        for f in ["postgresql.auto.conf", "pg_hba.conf", "standby.signal"] {
            let h = std::fs::read(n.data_dir.join(f))
                .map(|b| hex::encode(sha2::Sha256::digest(&b)))
                .unwrap_or_else(|_| "absent".into());
            out.push(format!("{name}/{f} {h}"));
        }
    }
    let mut beside: Vec<String> = std::fs::read_dir(&c.dir)
        .expect("cluster dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    out.push(beside.join(" "));
    out
}

/// What-if on a healthy cluster touches nothing. Then n2 is cut off and lags: a failover to n2
/// is refused past failover.max_lag with the bytes it is behind; with n1 still declared, n1 is
/// simply started again (stopped is not failed).
#[test]
fn what_if_touches_nothing_and_a_lagging_candidate_is_refused() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n1");
    let mut topo = base_topology(&c);
    topo.extra_yaml("failover: {max_lag: 64kB}");
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.wait_replayed("n2", "n1");
    c.wait_replayed("n3", "n1");

    let before = snapshot(&c);
    let out = c.pgtopo(&["plan", "--assume-down", "n1", "--allow-failover"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("node.n2 will be promoted (failover from n1"),
        "{text}"
    );
    assert!(text.contains("Data loss: possible"), "{text}");
    assert!(
        text.contains("node.n3 will be re-pointed from n1 to n2"),
        "{text}"
    );
    // Without consent the what-if says what it would take.
    let out = c.pgtopo(&["plan", "--assume-down", "n1"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("--allow-failover"), "{}", show(&out));
    assert_eq!(snapshot(&c), before, "a what-if changed the cluster");

    cut_off(&c, "n2");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, repeat('z', 500) FROM generate_series(1, 2000) g",
    );
    c.wait_replayed("n3", "n1");
    c.crash("n1");

    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"))
        .extra_yaml("failover: {allow: true}");
    c.write_topology(&topo);
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("failover candidate n2 is") && err.contains("bytes behind n3"),
        "{err}"
    );
    assert!(err.contains("failover.max_lag"), "{err}");

    // n1 still declared primary and its host answers: stopped is not failed, it is started;
    // nobody is promoted.
    let mut keep = base_topology(&c);
    keep.extra_yaml("failover: {allow: true, max_lag: 64kB}");
    c.write_topology(&keep);
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("stopped is not failed"), "{text}");
    assert!(!text.contains("promote"), "{text}");
    assert_eq!(in_recovery(&c, "n3"), "t", "a plan promotes nobody");
}

/// wal_log_hints off and no data checksums: pg_rewind cannot work, so the old primary is cloned
/// again from the new one, its old directory moved aside to `<data_dir>.pgtopo-old-<ts>`.
#[test]
fn without_wal_log_hints_nor_checksums_the_old_primary_is_cloned() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    let conf = c.node("n1").data_dir.join("postgresql.conf");
    c.append(&conf, "wal_log_hints = off\n");
    c.start("n1");
    let checksums = c.psql("n1", "SHOW data_checksums") == "on";
    c.add_standby_basebackup("n2", "n1");
    let mut topo = base_topology(&c);
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 50) g",
    );
    c.wait_replayed("n2", "n1");
    cut_off(&c, "n2");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'lost' FROM generate_series(51, 500) g",
    );
    c.crash("n1");

    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .extra_yaml("failover: {allow: true}");
    c.write_topology(&topo);
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    if checksums {
        // PostgreSQL 18 initialises with data checksums: pg_rewind works there.
        assert!(text.contains("rewind"), "{text}");
    } else {
        assert!(text.contains("clone"), "{text}");
        assert!(
            text.contains("pg_rewind needs wal_log_hints=on or data checksums"),
            "{text}"
        );
        assert!(!text.contains(" rewind "), "{text}");
    }
    apply_ok(&c, &[]);
    assert_eq!(in_recovery(&c, "n2"), "f");
    assert_follows(&c, "n1", "n2");
    assert_rows_everywhere(&c, "n2", &["n1"], 50);
    assert_eq!(slots(&c, "n2"), "n1:true");
    assert_eq!(c.psql("n1", "SHOW port"), c.node("n1").port.to_string());
    if !checksums {
        let aside: Vec<String> = std::fs::read_dir(&c.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with("n1.pgtopo-old-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert!(
            c.dir.join(&aside[0]).join("PG_VERSION").exists(),
            "the old data directory is kept whole"
        );
    }
    assert_no_changes(&c);
}
