//! The switchover's fast read of a stopped node's `global/pg_control` (no process spawned inside
//! the writes-unavailable window) agrees with `pg_controldata` on a real data directory, on
//! whichever PostgreSQL version the tests run — the WAL segment size too, which the rewind reads
//! to set recycled segments aside.

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
