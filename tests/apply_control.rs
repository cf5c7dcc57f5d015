//! The switchover's fast read of a stopped node's `global/pg_control` (no process spawned inside
//! the writes-unavailable window) agrees with `pg_controldata` on a real data directory, on
//! whichever PostgreSQL version the tests run — the WAL segment size too, which the rewind reads
//! to set recycled segments aside. And a node whose configuration is outside its data directory
//! (`config_dir`, no service) is started by pgtopo from its config file.

mod support;

use pgtopo::transport::LocalTransport;
use support::TestCluster;

#[tokio::test]
async fn fast_control_read_matches_pg_controldata() {
    let mut c = TestCluster::new();
    // A segment size other than the default, so the value cannot come out right by chance.
    c.init_primary_with("n1", &["--wal-segsize=32"]);
    c.start("n1");
    c.psql("n1", "CREATE TABLE t AS SELECT 1 AS x");
    c.stop("n1", "fast");
    let desired = c.desired();
    let node = &desired.nodes["n1"];
    let bytes = std::fs::read(node.data_dir.join("global/pg_control")).unwrap();
    let fast = pgtopo::steps::control::parse(&bytes).expect("a known pg_control layout");
    let t = LocalTransport::new(node.os_user.clone());
    let slow = pgtopo::observe::read_control_data(&t, node).await.unwrap();
    assert_eq!(fast.state, slow.cluster_state);
    assert!(fast.shut_down());
    assert_eq!(fast.latest_checkpoint, slow.latest_checkpoint);
    assert_eq!(fast.checkpoint_timeline, slow.checkpoint_timeline);
    assert_eq!(fast.system_identifier, slow.system_identifier);
    let controldata = std::process::Command::new(c.bin_dir.join("pg_controldata"))
        .arg(&node.data_dir)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&controldata.stdout);
    let bytes_per_segment: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Bytes per WAL segment:"))
        .expect("pg_controldata prints the segment size")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(bytes_per_segment, 32 << 20);
    assert_eq!(fast.wal_segment_size, Some(bytes_per_segment));
}

/// A node without a service whose configuration lives outside its data directory (`config_dir`,
/// SPEC §1d): pgtopo starts it with `pg_ctl … -o "-c config_file='CONFIG_DIR/postgresql.conf'"`
/// (`config::service::command`), so the server reads the file there (the data directory has
/// none), and the next plan is empty.
#[test]
fn a_pg_ctl_node_with_its_configuration_elsewhere_starts_from_its_config_file() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    let data = c.node("n1").data_dir.clone();
    let conf = c.dir.join("n1 conf");
    std::fs::create_dir_all(&conf).unwrap();
    for f in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        std::fs::rename(data.join(f), conf.join(f)).unwrap();
    }
    let file = conf.join("postgresql.conf");
    c.append(
        &file,
        &format!(
            "hba_file = '{0}/pg_hba.conf'\nident_file = '{0}/pg_ident.conf'\n",
            conf.display()
        ),
    );
    let chown = std::process::Command::new("chown")
        .args(["-R", &c.os_user])
        .arg(&conf)
        .status()
        .unwrap();
    assert!(chown.success());
    let mut topo = c.topology();
    topo.extra_yaml(&format!(
        "nodes: {{n1: {{config_dir: '{}'}}}}",
        conf.display()
    ));
    let path = c.write_topology(&topo);
    let pgtopo = |args: &[&str]| {
        support::cli::stray_pgtopo()
            .arg("-f")
            .arg(&path)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", support::show(&out));
    assert_eq!(c.psql("n1", "SHOW config_file"), file.display().to_string());
    let out = pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::show(&out));
}
