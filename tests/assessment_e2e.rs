//! The assessment against real PostgreSQL: what `status`, `drift` and `plan` say of a broken
//! node, and that `apply` repairs it and proves the end state — a second writer on the primary's
//! timeline (split brain), a standby diverged on one timeline, a lost slot, a running cluster of
//! another system (as primary and as standby), and a failover with synchronous replication.
//! After each repair `pgtopo plan --detailed-exitcode` exits 0.

mod support;

use std::process::Output;

use support::{show, TestCluster, Topology};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply_ok(c: &TestCluster, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    let out = c.pgtopo(&args);
    assert!(out.status.success(), "apply: {}", show(&out));
    out
}

fn assert_converged(c: &TestCluster) {
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = c.pgtopo(&["drift"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// n1 primary with the given standbys cloned by the harness; topology applied once.
fn cluster(standbys: &[&str]) -> (TestCluster, Topology) {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    for s in standbys {
        c.add_standby_basebackup(s, "n1");
        c.wait_streaming(s);
    }
    let topo = c.topology();
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    assert_converged(&c);
    (c, topo)
}

/// The text plan has a step of `kind` ("   3  clone   n2  …").
fn has_step(plan: &str, kind: &str) -> bool {
    plan.lines().any(|l| {
        l.split_whitespace().nth(1) == Some(kind) && l.trim_start().starts_with(char::is_numeric)
    })
}

fn in_recovery(c: &TestCluster, n: &str) -> String {
    c.psql(n, "SELECT pg_is_in_recovery()")
}

fn old_dirs(c: &TestCluster, n: &str) -> Vec<String> {
    let prefix = format!("{}.pgtopo-old-", c.node(n).data_dir.display());
    std::fs::read_dir(&c.dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path().display().to_string()))
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

/// `drift` exits 2 and says `what`; `status` says `tree`; the plan says `plan_says`.
fn assert_reported(c: &TestCluster, what: &str, tree: &str, plan_says: &str) -> String {
    let d = c.pgtopo(&["drift"]);
    assert_eq!(d.status.code(), Some(2), "{}", show(&d));
    assert!(stdout(&d).contains(what), "drift: {}", show(&d));
    let s = c.pgtopo(&["status"]);
    assert!(stdout(&s).contains(tree), "status: {}", show(&s));
    let p = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(p.status.code(), Some(2), "{}", show(&p));
    let text = stdout(&p);
    assert!(text.contains(plan_says), "plan: {text}");
    text
}

/// n2 leaves recovery by hand (no promotion: timeline 1 stays) and takes writes of its own.
fn second_writer(c: &TestCluster, rows: u32) {
    c.stop("n2", "fast");
    std::fs::remove_file(c.node("n2").data_dir.join("standby.signal")).unwrap();
    c.start("n2");
    assert_eq!(in_recovery(c, "n2"), "f");
    c.psql(
        "n2",
        &format!("INSERT INTO t SELECT -g FROM generate_series(1, {rows}) g"),
    );
}

#[test]
fn a_split_brain_on_one_timeline_is_named_fenced_and_cloned() {
    let (c, _) = cluster(&["n2"]);
    c.psql(
        "n1",
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 50)",
    );
    c.wait_for_sql("n2", "SELECT count(*) FROM t", "50");
    second_writer(&c, 10);
    c.psql("n1", "INSERT INTO t SELECT generate_series(51, 80)");
    assert_eq!(
        c.psql("n1", "SELECT timeline_id FROM pg_control_checkpoint()"),
        c.psql("n2", "SELECT timeline_id FROM pg_control_checkpoint()")
    );
    let plan = assert_reported(&c, "split brain", "SPLIT BRAIN", "split brain");
    assert!(has_step(&plan, "fence"), "{plan}");
    assert!(has_step(&plan, "clone"), "{plan}");
    assert!(!has_step(&plan, "rewind"), "{plan}");
    apply_ok(&c, &[]);
    assert_eq!(in_recovery(&c, "n2"), "t");
    c.wait_for_sql("n2", "SELECT count(*) FROM t", "80");
    assert_eq!(c.psql("n2", "SELECT count(*) FROM t WHERE x < 0"), "0");
    assert_eq!(old_dirs(&c, "n2").len(), 1);
    assert_converged(&c);

    // The same divergence, "repaired" by hand into a standby that receives n1's WAL but never
    // replays it.
    second_writer(&c, 5);
    c.stop("n2", "fast");
    c.write_os_file(&c.node("n2").data_dir.join("standby.signal"), "");
    c.psql("n1", "INSERT INTO t SELECT generate_series(81, 20000)");
    c.start("n2");
    assert_eq!(in_recovery(&c, "n2"), "t");
    // It takes the WAL n1 sends, and stalls where its own history differs.
    c.wait_for_sql(
        "n2",
        "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()",
        "t",
    );
    assert_reported(&c, "diverged", "DIVERGED", "cloned again");
    apply_ok(&c, &[]);
    c.wait_for_sql("n2", "SELECT count(*) FROM t", "20000");
    assert_eq!(c.psql("n2", "SELECT count(*) FROM t WHERE x < 0"), "0");
    assert_converged(&c);
}

#[test]
fn a_lost_slot_is_recreated_with_a_fresh_clone() {
    let (c, mut topo) = cluster(&["n2"]);
    topo.settings
        .insert("max_slot_wal_keep_size".into(), "48MB".into());
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.stop("n2", "fast");
    c.psql("n1", "CREATE TABLE t (x int)");
    // ~4 × 16 MB of WAL past what the slot may keep, each followed by a checkpoint.
    for _ in 0..6 {
        c.psql(
            "n1",
            "INSERT INTO t SELECT generate_series(1, 300000); SELECT pg_switch_wal(); CHECKPOINT",
        );
    }
    c.wait_for_sql(
        "n1",
        "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'n2'",
        "lost",
    );
    c.start("n2");
    let plan = assert_reported(&c, "slot lost", "wal_status lost", "lost");
    assert!(has_step(&plan, "drop_slot"), "{plan}");
    let json = c.pgtopo(&["status", "--format", "json"]);
    assert!(
        stdout(&json).contains("\"wal_status\": \"lost\""),
        "{}",
        show(&json)
    );
    apply_ok(&c, &[]);
    c.wait_for_sql(
        "n1",
        "SELECT wal_status || ' ' || active FROM pg_replication_slots WHERE slot_name = 'n2'",
        "reserved true",
    );
    c.wait_for_sql("n2", "SELECT count(*) FROM t", "1800000");
    assert_converged(&c);
}

/// n3: a separately initdb'ed cluster (another system identifier), running, declared a
/// standby of n1; `as_standby` starts it in recovery with primary_conninfo pointing at n1.
fn foreign_n3(as_standby: bool) {
    let (mut c, _) = cluster(&["n2"]);
    c.init_primary("n3");
    if as_standby {
        let n3 = c.node("n3").clone();
        c.append(
            &n3.data_dir.join("postgresql.auto.conf"),
            &format!("primary_conninfo = '{}'\n", c.standby_conninfo("n1", "n3")),
        );
        c.write_os_file(&n3.data_dir.join("standby.signal"), "");
    }
    c.start("n3");
    let mut topo = c.topology();
    topo.role("n3", "standby", Some("n1"));
    c.write_topology(&topo);
    c.psql("n1", "CREATE TABLE t AS SELECT generate_series(1, 42) x");
    let own = c.psql("n3", "SELECT system_identifier FROM pg_control_system()");
    let theirs = c.psql("n1", "SELECT system_identifier FROM pg_control_system()");
    let plan = assert_reported(
        &c,
        "another system",
        &format!("another system (id {own}, n1 has {theirs})"),
        "another system",
    );
    assert!(
        has_step(&plan, "fence") || has_step(&plan, "stop"),
        "{plan}"
    );
    apply_ok(&c, &[]);
    assert_eq!(in_recovery(&c, "n3"), "t");
    c.wait_for_sql("n3", "SELECT count(*) FROM t", "42");
    assert_eq!(
        c.psql("n3", "SELECT system_identifier FROM pg_control_system()"),
        theirs
    );
    assert_eq!(old_dirs(&c, "n3").len(), 1);
    assert_converged(&c);
}

#[test]
fn a_running_foreign_primary_is_fenced_moved_aside_and_cloned() {
    foreign_n3(false);
}

#[test]
fn a_running_foreign_standby_is_fenced_moved_aside_and_cloned() {
    foreign_n3(true);
}

#[test]
fn a_synchronous_failover_never_loses_acknowledged_commits() {
    let (c, mut topo) = cluster(&["n2", "n3"]);
    let sync = |topo: &mut Topology, members: &str| {
        topo.extra.retain(|e| !e.contains("synchronous"));
        topo.extra_yaml(&format!(
            "replication: {{synchronous: {{mode: quorum, count: 1, standbys: [{members}]}}}}"
        ));
    };
    sync(&mut topo, "n2, n3");
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t (x int)");
    c.wait_for_sql("n2", "SELECT count(*) FROM t", "0");
    // n2 falls behind; every commit below is acknowledged by n3 (ANY 1).
    c.stop("n2", "fast");
    for i in 0..20 {
        c.psql("n1", &format!("INSERT INTO t VALUES ({i})"));
    }
    c.crash("n1");
    c.start("n2");
    // Declaring the lagging standby primary is refused, with the bytes it would lose.
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"));
    sync(&mut topo, "n1, n3");
    c.write_topology(&topo);
    let out = c.pgtopo(&["plan", "--allow-failover"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("synchronous") && err.contains("n3"), "{err}");
    assert!(err.contains("bytes"), "{err}");
    assert!(err.contains("--accept-data-loss"), "{err}");
    // The most advanced one may be promoted: all 20 acknowledged rows survive.
    topo.role("n3", "primary", None)
        .role("n1", "standby", Some("n3"))
        .role("n2", "standby", Some("n3"));
    sync(&mut topo, "n1, n2");
    c.write_topology(&topo);
    apply_ok(&c, &["--allow-failover"]);
    assert_eq!(in_recovery(&c, "n3"), "f");
    assert_eq!(c.psql("n3", "SELECT count(*) FROM t"), "20");
    c.psql("n3", "INSERT INTO t VALUES (100)");
    for n in ["n1", "n2"] {
        c.wait_for_sql(n, "SELECT count(*) FROM t", "21");
    }
    assert_converged(&c);
}
