//! Changing a live topology with `pgtopo apply` against real PostgreSQL: re-pointing a cascade,
//! adding and retiring a node, settings that reload or restart (in the rolling order), a
//! synchronous quorum, and an hba rule that PostgreSQL rejects.

mod support;

use support::show;

use std::process::Output;

use support::{TestCluster, Topology};

const SENDER: &str = "SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver";
const SLOTS: &str =
    "SELECT coalesce(string_agg(slot_name || ' ' || active, ',' ORDER BY slot_name), '') \
     FROM pg_replication_slots";
const STARTED: &str = "SELECT pg_postmaster_start_time()";

fn apply(c: &TestCluster, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "--auto-approve"];
    args.extend_from_slice(extra);
    c.pgtopo(&args)
}

fn apply_ok(c: &TestCluster, extra: &[&str]) -> Output {
    let out = apply(c, extra);
    assert!(out.status.success(), "{}", show(&out));
    out
}

/// `pgtopo plan --detailed-exitcode` exits 0: the live cluster is what the file says.
fn assert_converged(c: &TestCluster) {
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

fn sender_of(c: &TestCluster, node: &str) -> String {
    let n = c.node(node);
    format!("{}:{}", n.host, n.port)
}

/// A primary n1 and the given declared standbys, all built by `pgtopo apply` with slots.
fn built(standbys: &[&str]) -> (TestCluster, Topology) {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    for s in standbys {
        c.declare_node(s);
    }
    let topo = c.topology();
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    for s in standbys {
        c.wait_streaming(s);
    }
    (c, topo)
}

fn journal_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (node, start, end) of every `restart` step in the journal.
fn restarts(lines: &[serde_json::Value]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .filter(|l| l["kind"] == "restart" && l["outcome"] == "done")
        .map(|l| {
            (
                l["node"].as_str().unwrap().to_string(),
                l["start"].as_str().unwrap().to_string(),
                l["end"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The restarts in a journal of n1 and its two standbys, each restarted once: n1's, the
/// standbys', and all of them.
type Restart = (String, String, String);
fn one_restart_each(journal: &std::path::Path) -> (Restart, Vec<Restart>, Vec<Restart>) {
    let lines = journal_lines(journal);
    let r = restarts(&lines);
    let (primary, standbys): (Vec<_>, Vec<_>) = r.iter().cloned().partition(|x| x.0 == "n1");
    assert_eq!(primary.len(), 1, "{lines:#?}");
    assert_eq!(standbys.len(), 2, "{lines:#?}");
    (primary[0].clone(), standbys, r)
}

#[test]
fn repoint_a_standby_into_a_cascade() {
    let (c, mut topo) = built(&["n2", "n3"]);
    assert_eq!(c.psql("n1", SLOTS), "n2 true,n3 true");
    assert_eq!(c.psql("n3", SENDER), sender_of(&c, "n1"));
    let started: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| c.psql(n, STARTED))
        .collect();

    topo.role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    apply_ok(&c, &[]);

    c.wait_streaming("n3");
    assert_eq!(c.psql("n3", SENDER), sender_of(&c, "n2"));
    c.wait_for_sql("n2", SLOTS, "n3 true");
    assert_eq!(c.psql("n1", SLOTS), "n2 true");
    c.psql("n1", "CREATE TABLE t AS SELECT 1 AS x");
    c.wait_for_sql("n3", "SELECT count(*) FROM t", "1");
    // PostgreSQL 15 re-reads primary_conninfo on reload: nobody restarted.
    for (n, before) in ["n1", "n2", "n3"].iter().zip(&started) {
        assert_eq!(&c.psql(n, STARTED), before, "{n} restarted");
    }
    assert_converged(&c);
}

/// Standbys an operator built (the harness: their password through `passfile=` in
/// primary_conninfo, nothing in the os_user's ~/.pgpass) stay streaming when pgtopo points one
/// elsewhere: the conninfo it writes has no password, so it keeps the replication password in
/// ~/.pgpass first (the plan builds nothing, so no write_pgpass step is planned).
#[test]
fn a_standby_pgtopo_did_not_build_streams_after_it_is_repointed() {
    let c = support::scenario::primary_and_standbys(&["n2", "n3"]);
    let mut topo = c.topology();
    topo.role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    support::scenario::assert_follows(&c, "n3", "n2");
    assert!(
        !c.psql("n3", "SHOW primary_conninfo").contains("passfile"),
        "pgtopo's own conninfo"
    );
    assert_converged(&c);
}

#[test]
fn add_a_node_without_restarting_the_others() {
    let (mut c, _) = built(&["n2"]);
    let n1_started = c.psql("n1", STARTED);
    let n2_started = c.psql("n2", STARTED);

    c.declare_node("n3");
    let topo = c.topology();
    c.write_topology(&topo);
    apply_ok(&c, &[]);

    c.wait_streaming("n3");
    assert_eq!(c.psql("n3", SENDER), sender_of(&c, "n1"));
    c.wait_for_sql("n1", SLOTS, "n2 true,n3 true");
    assert_eq!(c.psql("n1", STARTED), n1_started);
    assert_eq!(c.psql("n2", STARTED), n2_started);
    c.psql("n1", "CREATE TABLE t AS SELECT 1 AS x");
    c.wait_for_sql("n3", "SELECT count(*) FROM t", "1");
    assert_converged(&c);
}

#[test]
fn retire_a_node_keeps_its_data_directory() {
    let (c, mut topo) = built(&["n2", "n3"]);
    let n1_started = c.psql("n1", STARTED);
    let n2_started = c.psql("n2", STARTED);

    let n3 = topo.nodes.get_mut("n3").unwrap();
    n3.state = Some("absent".into());
    n3.role = None;
    n3.upstream = None;
    c.write_topology(&topo);
    assert!(
        std::fs::read_to_string(c.topology_file())
            .unwrap()
            .contains("state: absent"),
        "the retirement is in the YAML"
    );
    apply_ok(&c, &[]);

    assert!(!c.is_running("n3"), "n3 still runs");
    assert!(c.try_psql("n3", "SELECT 1").is_err());
    let n3_dir = c.node("n3").data_dir.clone();
    assert!(n3_dir.join("PG_VERSION").is_file(), "n3's data is kept");
    assert_eq!(c.psql("n1", SLOTS), "n2 true");
    assert_eq!(c.psql("n1", STARTED), n1_started);
    assert_eq!(c.psql("n2", STARTED), n2_started);
    assert_eq!(c.psql("n2", "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(c.psql("n2", SENDER), sender_of(&c, "n1"));
    assert_converged(&c);
}

#[test]
fn settings_reload_or_restart_in_the_rolling_order() {
    let (c, mut topo) = built(&["n2", "n3"]);
    let before: u32 = c.psql("n1", "SHOW max_connections").parse().unwrap();
    let raised = (before + 50).to_string();
    topo.settings
        .insert("max_connections".into(), raised.clone());
    topo.settings.insert("work_mem".into(), "8MB".into());
    // A list setting: two schemas, not one schema named "pgtopo_a, public".
    topo.settings
        .insert("search_path".into(), "pgtopo_a, public".into());
    c.write_topology(&topo);
    let journal = c.dir.join("raise.jsonl");
    apply_ok(&c, &["--journal", journal.to_str().unwrap()]);

    for n in ["n1", "n2", "n3"] {
        assert_eq!(c.psql(n, "SHOW max_connections"), raised, "{n}");
        c.wait_for_sql(n, "SHOW work_mem", "8MB");
        c.wait_for_sql(n, "SHOW search_path", "pgtopo_a, public");
        assert_eq!(
            c.psql(n, "SELECT count(*) FROM pg_settings WHERE pending_restart"),
            "0",
            "{n}"
        );
    }
    let (primary, standbys, r) = one_restart_each(&journal);
    for s in &standbys {
        assert!(s.2 <= primary.1, "standby restart after primary's: {r:?}");
    }
    let (a, b) = (&standbys[0], &standbys[1]);
    assert!(a.2 <= b.1 || b.2 <= a.1, "standby restarts overlap: {r:?}");
    let lines = journal_lines(&journal);
    assert!(
        !lines
            .iter()
            .any(|l| l["kind"] == "restart" && l["node"] == "n1" && l["outcome"] != "done"),
        "{lines:#?}"
    );
    c.psql("n1", "CREATE TABLE t AS SELECT 1 AS x");
    c.wait_for_sql("n3", "SELECT count(*) FROM t", "1");
    assert_converged(&c);

    // A decrease: the primary restarts first, each standby once it replayed the primary's
    // lower value.
    let lowered = (before + 20).to_string();
    topo.settings
        .insert("max_connections".into(), lowered.clone());
    c.write_topology(&topo);
    let journal = c.dir.join("lower.jsonl");
    apply_ok(&c, &["--journal", journal.to_str().unwrap()]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(c.psql(n, "SHOW max_connections"), lowered, "{n}");
        assert_eq!(
            c.psql(n, "SELECT count(*) FROM pg_settings WHERE pending_restart"),
            "0",
            "{n}"
        );
    }
    let (primary, standbys, r) = one_restart_each(&journal);
    for s in &standbys {
        assert!(primary.2 <= s.1, "standby restart before primary's: {r:?}");
    }
    c.wait_streaming("n2");
    c.wait_streaming("n3");
    assert_converged(&c);
}

#[test]
fn synchronous_quorum_of_two() {
    let c = support::scenario::primary_and_declared(&["n2", "n3"]);
    let mut topo = c.topology();
    topo.extra_yaml("replication: {synchronous: {mode: quorum, count: 1, standbys: [n2, n3]}}");
    c.write_topology(&topo);
    apply_ok(&c, &[]);

    assert_eq!(
        c.psql("n1", "SHOW synchronous_standby_names"),
        r#"ANY 1 ("n2", "n3")"#
    );
    c.wait_for_sql(
        "n1",
        "SELECT string_agg(application_name || ' ' || sync_state, ',' ORDER BY application_name) \
         FROM pg_stat_replication",
        "n2 quorum,n3 quorum",
    );
    c.psql(
        "n1",
        "SET statement_timeout = '10s'; CREATE TABLE t AS SELECT 1 AS x",
    );
    c.wait_for_sql("n2", "SELECT count(*) FROM t", "1");
    assert_converged(&c);
}

#[test]
fn hba_rule_postgres_rejects_is_rolled_back() {
    let (c, mut topo) = built(&[]);
    let hba_path = c.node("n1").data_dir.join("pg_hba.conf");
    let before = std::fs::read(&hba_path).unwrap();

    topo.extra_yaml(
        "hba: [{type: host, database: all, user: app, address: 10.0.0.0/99, \
         method: scram-sha-256}]",
    );
    c.write_topology(&topo);
    let out = c.pgtopo(&["validate"]);
    assert!(out.status.success(), "validate accepts it: {}", show(&out));

    // The plan's diff of pg_hba.conf counts lines of the file, where the managed block is.
    let begin = String::from_utf8_lossy(&before)
        .lines()
        .position(|l| l == "# BEGIN pgtopo managed")
        .expect("a managed block")
        + 1;
    assert!(begin > 1);
    let out = c.pgtopo(&["plan"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("  @@ -{begin},3 +{begin},4 @@\n")),
        "block at line {begin}: {}",
        show(&out)
    );

    let out = apply(&c, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("invalid CIDR mask"), "{text}");
    assert_eq!(
        std::fs::read(&hba_path).unwrap(),
        before,
        "pg_hba.conf changed"
    );
    assert_eq!(c.psql("n1", "SELECT 1"), "1");
    assert_eq!(
        c.psql(
            "n1",
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
        ),
        "0"
    );
}

/// A replication role that already exists with another password than the topology's gets the
/// topology's, and the new standby authenticates with it (scram-sha-256: pgtopo's rule comes
/// before the harness's trust rules).
#[test]
fn an_existing_replication_role_with_another_password_gets_the_topologys() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.psql(
        "n1",
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE rep REPLICATION LOGIN PASSWORD 'old-pass'",
    );
    const VERIFIER: &str = "SELECT rolpassword FROM pg_authid WHERE rolname = 'rep'";
    let old = c.psql("n1", VERIFIER);
    let pw = c.dir.join("rep.pw");
    std::fs::write(&pw, "new-pass\n").unwrap();
    c.declare_node("n2");
    let mut topo = c.topology();
    topo.extra_yaml(&format!(
        "replication: {{user: rep, password: {{file: {}}}, hba_method: scram-sha-256}}",
        pw.display()
    ));
    c.write_topology(&topo);
    let out = apply_ok(&c, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("create_role"),
        "{}",
        show(&out)
    );
    c.wait_streaming("n2");
    assert_ne!(c.psql("n1", VERIFIER), old, "the password was not changed");
    assert_eq!(
        c.psql(
            "n1",
            "SELECT auth_method FROM pg_hba_file_rules WHERE 'rep' = ANY(user_name) LIMIT 1"
        ),
        "scram-sha-256"
    );
    for secret in ["new-pass", "old-pass"] {
        assert!(!show(&out).contains(secret), "a password in the output");
    }
    c.psql("n1", "CREATE TABLE t AS SELECT 1 AS x");
    c.wait_for_sql("n2", "SELECT count(*) FROM t", "1");
    assert_converged(&c);
}
