//! Rejoin through pg_rewind, against real PostgreSQL: a second primary whose WAL went past the
//! fork point (split brain made by hand) is stopped, rewound onto the declared primary's timeline
//! and made to follow it; a row written on the primary then reaches it, and nothing is left to
//! do.

mod support;

use support::show;

#[test]
fn diverged_second_primary_is_rewound_and_follows() {
    let c = support::scenario::primary_and_standby();
    let mut topo = c.topology();
    // pg_rewind reads the target's WAL back to the last checkpoint before the fork.
    topo.settings.insert("wal_keep_size".into(), "256MB".into());
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    c.psql("n1", "CREATE TABLE t(i int); INSERT INTO t VALUES (1)");
    c.wait_replayed("n2", "n1");

    // Split brain made by hand: n2 is promoted while n1 still runs, and n1 goes on writing
    // what n2 never receives. The topology declares n2 the primary.
    c.psql("n2", "SELECT pg_promote(true, 60)");
    c.psql("n1", "INSERT INTO t SELECT generate_series(2, 1000)");
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"));
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rewind"), "{stdout}");
    assert_eq!(c.psql("n2", "SELECT pg_is_in_recovery()"), "f");
    c.wait_streaming("n1");
    c.psql("n2", "INSERT INTO t VALUES (5000)");
    c.wait_for_sql("n1", "SELECT count(*) FROM t WHERE i = 5000", "1");
    assert!(!c.dir.join("n1.pgtopo-rewinding").exists());
    // n1's own rows past the fork are gone: it is a copy of n2 now.
    assert_eq!(c.psql("n1", "SELECT count(*) FROM t"), "2");
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
