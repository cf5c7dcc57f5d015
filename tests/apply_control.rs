//! The switchover's fast read of a stopped node's `global/pg_control` (no process spawned inside
//! the writes-unavailable window) agrees with `pg_controldata` on a real data directory, on
//! whichever PostgreSQL version the tests run.

mod support;

use pgtopo::transport::LocalTransport;
use support::TestCluster;

#[tokio::test]
async fn fast_control_read_matches_pg_controldata() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
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
}
