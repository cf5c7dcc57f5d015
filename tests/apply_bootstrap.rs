//! Building standbys with `pgtopo apply` against real PostgreSQL: one primary becomes a cascade
//! n1 → n2 → n3 with slots; the second apply is a no-op; the journal records every step.

mod support;

use support::show;

#[test]
fn bootstrap_one_to_three_with_a_cascade_and_slots() {
    let c = support::scenario::primary_and_declared(&["n2", "n3"]);
    let mut topo = c.topology();
    topo.role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    let journal = c.dir.join("journal.jsonl");
    let out = c.pgtopo(&[
        "apply",
        "--auto-approve",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Apply complete!"), "{}", show(&out));

    // n2 streams from n1 through slot n2, n3 from n2 through slot n3.
    c.wait_streaming("n2");
    c.wait_streaming("n3");
    let n1 = c.node("n1").clone();
    let n2 = c.node("n2").clone();
    assert_eq!(
        c.psql(
            "n2",
            "SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver"
        ),
        format!("{}:{}", n1.host, n1.port)
    );
    assert_eq!(
        c.psql(
            "n3",
            "SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver"
        ),
        format!("{}:{}", n2.host, n2.port)
    );
    assert_eq!(
        c.psql(
            "n1",
            "SELECT slot_name || ' ' || active FROM pg_replication_slots"
        ),
        "n2 true"
    );
    assert_eq!(
        c.psql(
            "n2",
            "SELECT slot_name || ' ' || active FROM pg_replication_slots"
        ),
        "n3 true"
    );
    // Each node has its own identity after the clone.
    assert_eq!(c.psql("n3", "SHOW port"), c.node("n3").port.to_string());
    c.psql("n1", "CREATE TABLE t AS SELECT 1 AS x");
    c.wait_for_sql("n3", "SELECT count(*) FROM t", "1");

    // The journal has one line per step, all done.
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 4, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "done" || l["outcome"] == "already_done"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "clone" && l["node"] == "n3"),
        "{text}"
    );

    // Nothing left to do: plan and apply agree.
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No changes"),
        "{}",
        show(&out)
    );
    // The lock was released.
    assert!(!c.dir.join("n1.pgtopo.lock").exists());
}

/// A new standby whose data directory's parent its os_user cannot write: the apply stops in
/// its preflight, naming the directory (exit 1), before anything changed: n1's pg_hba.conf is
/// as it was, and it has no slot.
#[test]
fn a_clone_into_a_parent_the_os_user_cannot_write_is_refused_before_any_change() {
    let c = support::scenario::primary_and_declared(&["n2"]);
    let locked = c.dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    support::set_mode(&locked, 0o555);
    let mut topo = c.topology();
    topo.extra_yaml("replication: {user: postgres, hba_method: trust}");
    topo.extra_yaml(&format!(
        "nodes: {{n2: {{data_dir: {}}}}}",
        locked.join("n2").display()
    ));
    c.write_topology(&topo);
    let hba = c.node("n1").data_dir.join("pg_hba.conf");
    let before = std::fs::read_to_string(&hba).unwrap();
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The diagnostic is wrapped (a path may break at a hyphen): read it without the wrapping.
    let flat: String = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches("| "))
        .collect();
    assert!(
        flat.contains(&format!("{}is not writable", locked.display()))
            || flat.contains(&format!("{} is not writable", locked.display())),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&hba).unwrap(), before);
    assert_eq!(
        c.psql("n1", "SELECT count(*) FROM pg_replication_slots"),
        "0"
    );
}
