//! The scenarios of the local end-to-end tests a second time, with every node on a host of its
//! own: a network namespace with its own address, its own sshd and its own PostgreSQL server
//! (support/netns.rs), every node declared with `ssh:`. pgtopo runs in the test's namespace and
//! reaches a node only through its SSH port and its PostgreSQL port, so no step can silently
//! take the local path (a server started outside its namespace could not even bind its address).
//!
//! One cluster walks them all in turn, checking roles, streaming, rows and an empty `plan` after
//! each: bootstrap of a cascade (apply_bootstrap.rs), switchover and switch-back (switchover.rs),
//! crash failover with a rewind (failover_e2e.rs, apply_failover_rewind.rs), failover with the
//! clone fallback, and switchovers whose apply is killed at the promotion and at the stop of the
//! old primary (switchover_interrupted.rs). n3's SSH is reachable only through n2's host (a
//! bastion: `ssh.jump` and `ssh.config_file`). Without root (no namespaces) the test says so and
//! passes. Each phase's wall time is printed.

mod support;

use std::time::Instant;

use support::netns::{self, Hosts, SSH_PORT};
use support::scenario::{
    apply_killed_at, assert_follows, assert_no_changes, catch_up, cut_off, in_recovery,
};
use support::{show, TestCluster, Topology};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// `pgtopo apply --auto-approve`; panics unless it exits 0. Returns stdout.
fn apply(c: &TestCluster) -> String {
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "apply: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pgtopo plan`'s text; panics unless it exits 0.
fn plan(c: &TestCluster) -> String {
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "plan: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Declare `primary` the primary and `standbys` (standby, upstream) in `topo`, and write it.
fn declare(c: &TestCluster, topo: &mut Topology, primary: &str, standbys: &[(&str, &str)]) {
    topo.role(primary, "primary", None);
    for (s, up) in standbys {
        topo.role(s, "standby", Some(up));
    }
    c.write_topology(topo);
}

/// `primary` is the primary, every other node follows it directly and has replayed the `rows`
/// rows of t it holds; nothing is left to do.
fn converged(c: &TestCluster, primary: &str, rows: u64) {
    assert_eq!(in_recovery(c, primary), "f", "{primary} is the primary");
    let sql = "SELECT count(*) FROM t";
    assert_eq!(c.psql(primary, sql), rows.to_string(), "rows on {primary}");
    for s in NODES.iter().filter(|n| **n != primary) {
        assert_follows(c, s, primary);
        catch_up(c, s, primary);
        assert_eq!(c.psql(s, sql), rows.to_string(), "rows on {s}");
    }
    assert_no_changes(c);
}

/// In every namespace only sshd and the node's PostgreSQL server listen.
fn only_ssh_and_postgres_listen(c: &TestCluster, hosts: &Hosts) {
    for n in c.nodes() {
        let ports: Vec<String> = hosts
            .listeners(n.index)
            .iter()
            .filter_map(|l| l.rsplit(':').next().map(str::to_string))
            .collect();
        let mut want = vec![SSH_PORT.to_string(), n.port.to_string()];
        want.sort();
        let mut got = ports.clone();
        got.sort();
        got.dedup();
        assert_eq!(got, want, "listeners in {}'s namespace: {ports:?}", n.name);
    }
}

/// Wall time of each phase, printed at the end.
struct Clock {
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, f64)>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    fn lap(&mut self, phase: &'static str) {
        self.phases.push((phase, self.last.elapsed().as_secs_f64()));
        self.last = Instant::now();
    }

    fn report(&self) {
        let parts: Vec<String> = self
            .phases
            .iter()
            .map(|(p, s)| format!("{p} {s:.1} s"))
            .collect();
        eprintln!(
            "ssh_netns phases: {}; total {:.1} s",
            parts.join(", "),
            self.start.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn every_scenario_over_ssh_between_network_namespaces() {
    if let Some(why) = netns::unavailable() {
        support::missing_prerequisite("every_scenario_over_ssh_between_network_namespaces", &why);
        return;
    }
    let mut clock = Clock::new();
    // n3's sshd is reachable only through n2's (ssh.jump, the bastion's key and known_hosts
    // from ssh.config_file).
    let (hosts, c, mut topo) = netns::cluster_on_hosts_with_bastion(&NODES);
    clock.lap("namespaces, sshd and n1");

    // Bootstrap: n1 → n2 → n3, both standbys built by pgtopo over SSH.
    declare(&c, &mut topo, "n1", &[("n2", "n1"), ("n3", "n2")]);
    assert!(apply(&c).contains("Apply complete!"));
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g",
    );
    assert_follows(&c, "n2", "n1");
    assert_follows(&c, "n3", "n2");
    assert_eq!(
        c.psql("n3", "SELECT sender_host FROM pg_stat_wal_receiver"),
        c.node("n2").host,
        "n3 streams from n2's namespace address"
    );
    catch_up(&c, "n3", "n1");
    assert_eq!(c.psql("n3", "SELECT count(*) FROM t"), "100");
    assert_no_changes(&c);
    only_ssh_and_postgres_listen(&c, &hosts);
    let hidden = format!("10.232.{}.2:{SSH_PORT}", hosts.net);
    assert!(
        hosts.listeners(3).contains(&hidden),
        "n3's sshd listens on its link to n2's host only: {:?}",
        hosts.listeners(3)
    );
    clock.lap("bootstrap");

    // Switchover to n2, then back to n1.
    let mut rows = 100;
    for (new, old) in [("n2", "n1"), ("n1", "n2")] {
        declare(&c, &mut topo, new, &[(old, new), ("n3", new)]);
        apply(&c);
        rows += 1;
        c.psql(new, &format!("INSERT INTO t VALUES ({rows}, 'after')"));
        converged(&c, new, rows);
    }
    clock.lap("switchover and switch-back");

    // Crash failover to n2: n1 had rows nobody else got, so it is rewound.
    catch_up(&c, "n2", "n1");
    catch_up(&c, "n3", "n1");
    cut_off(&c, "n2");
    cut_off(&c, "n3");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series(1001, 3000) g",
    );
    c.crash("n1");
    topo.extra_yaml("failover: {allow: true}");
    declare(&c, &mut topo, "n2", &[("n1", "n2"), ("n3", "n2")]);
    let text = plan(&c);
    assert!(
        text.contains("rewind") && !text.contains("clone "),
        "{text}"
    );
    apply(&c);
    rows += 1;
    c.psql("n2", &format!("INSERT INTO t VALUES ({rows}, 'after')"));
    converged(&c, "n2", rows);
    clock.lap("failover with rewind");

    // Crash failover back to n1: n2 went on alone until the WAL back to the fork was recycled,
    // so it cannot be rewound and is cloned.
    catch_up(&c, "n1", "n2");
    catch_up(&c, "n3", "n2");
    cut_off(&c, "n1");
    cut_off(&c, "n3");
    c.wait_for_sql(
        "n2",
        "SELECT count(*) FROM pg_replication_slots WHERE active",
        "0",
    );
    c.psql(
        "n2",
        "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots",
    );
    for _ in 0..3 {
        for sql in [
            "INSERT INTO t SELECT g, 'lost' FROM generate_series(5001, 5100) g",
            "DELETE FROM t WHERE i > 5000",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        ] {
            c.psql("n2", sql);
        }
    }
    c.crash("n2");
    declare(&c, &mut topo, "n1", &[("n2", "n1"), ("n3", "n1")]);
    let text = plan(&c);
    assert!(
        text.contains("clone") && text.contains("n2's pg_wal no longer has the segment"),
        "{text}"
    );
    apply(&c);
    rows += 1;
    c.psql("n1", &format!("INSERT INTO t VALUES ({rows}, 'after')"));
    converged(&c, "n1", rows);
    let aside = std::fs::read_dir(&c.dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("n2.pgtopo-old-")
        })
        .count();
    assert_eq!(aside, 1, "n2's old data directory is kept aside");
    clock.lap("failover with clone");

    // Switchovers whose apply is killed: at the promotion of n2, then at the stop of n2 on the
    // way back. The next apply converges.
    for (new, old, at) in [("n2", "n1", "promote"), ("n1", "n2", "stop")] {
        declare(&c, &mut topo, new, &[(old, new), ("n3", new)]);
        let killed = apply_killed_at(&c, |_, kind| kind == at);
        assert!(killed.is_some(), "the switchover to {new} has a {at} step");
        apply(&c);
        rows += 1;
        c.psql(new, &format!("INSERT INTO t VALUES ({rows}, 'after')"));
        converged(&c, new, rows);
        eprintln!("killed at {killed:?}, converged on {new}");
    }
    only_ssh_and_postgres_listen(&c, &hosts);
    clock.lap("killed switchovers");
    clock.report();
}
