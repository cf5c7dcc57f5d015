//! The shared harness itself: clusters come up on their own addresses and ports, standbys
//! stream, cascades work, and every postmaster is gone after the cluster is dropped — also when
//! the test panics.

mod support;

use support::{pid_alive, postmaster_pid, TestCluster};

#[test]
fn harness_builds_a_cascade_and_cleans_up() {
    let (pids, dir) = {
        let mut c = TestCluster::new();
        c.init_primary("n1");
        c.start("n1");
        c.add_standby_basebackup("n2", "n1");
        c.add_standby_basebackup("n3", "n2");
        c.wait_streaming("n2");
        c.wait_streaming("n3");
        assert_eq!(c.node("n2").host, "127.0.0.2");
        assert_eq!(c.psql("n1", "select pg_is_in_recovery()"), "f");
        assert_eq!(c.psql("n3", "select pg_is_in_recovery()"), "t");
        assert_eq!(
            c.psql("n1", "select application_name from pg_stat_replication"),
            "n2"
        );
        assert_eq!(
            c.psql("n2", "select slot_name from pg_replication_slots"),
            "n3"
        );
        c.psql("n1", "create table t(i int); insert into t values (1)");
        c.wait_replayed("n3", "n1");
        assert_eq!(c.psql("n3", "select count(*) from t"), "1");
        c.stop("n3", "fast");
        assert!(!c.is_running("n3"));
        let pids: Vec<i32> = ["n1", "n2"]
            .iter()
            .map(|n| postmaster_pid(&c.node(n).data_dir).unwrap())
            .collect();
        assert!(pids.iter().all(|p| pid_alive(*p)));
        (pids, c.dir.clone())
    };
    assert!(pids.iter().all(|p| !pid_alive(*p)), "postmasters survived");
    assert!(!dir.exists(), "temp dir left behind");
}

#[test]
fn harness_ends_postmasters_when_a_test_panics() {
    let seen = std::sync::Mutex::new(None);
    let r = std::panic::catch_unwind(|| {
        let mut c = TestCluster::new();
        c.init_primary("n1");
        c.start("n1");
        *seen.lock().unwrap() = postmaster_pid(&c.node("n1").data_dir);
        panic!("test failure");
    });
    assert!(r.is_err());
    let pid = seen.lock().unwrap().expect("server was started");
    assert!(
        !pid_alive(pid),
        "postmaster {pid} survived a panicking test"
    );
}
