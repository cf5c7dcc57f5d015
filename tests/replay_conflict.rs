//! A switchover never waits on the candidate's replay with writes stopped (SPEC §5c): against
//! real servers, a report session on the standby n2 holds `BEGIN; SELECT … FROM report` open
//! while `TRUNCATE report` commits on the primary n1, so n2's startup process waits on the
//! session's lock (n2 has `max_standby_streaming_delay = -1`: PostgreSQL never cancels it by
//! itself). Without `switchover.cancel_conflicting_queries` the plan refuses, naming the session,
//! and nothing stops; with it the switchover cancels the session first; a failover to n2 always
//! does. And a candidate whose WAL receiver hears nothing (SIGSTOP, undone by a guard) is refused
//! by the plan, and fails the apply of a plan made while it was healthy before anything stops.

mod support;

use std::time::Duration;

use support::scenario::in_recovery;
use support::writer::Writer;
use support::{show, TestCluster, Topology};

/// A report session on `node` inside `BEGIN; SELECT count(*) FROM report`, left open.
async fn report_session(c: &TestCluster, node: &str) -> (tokio_postgres::Client, i32) {
    let (client, conn) = c
        .sql_config(&[node])
        .application_name("nightly_report")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("report session connects");
    tokio::spawn(conn);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    client
        .batch_execute("BEGIN; SELECT count(*) FROM report")
        .await
        .expect("report query");
    (client, pid)
}

/// n1 primary, n2 its standby, applied from `topo` (with `extra` YAML), a `report` table and the
/// writer's `probe` table, n2 caught up.
fn cluster(extra: &[&str]) -> (TestCluster, Topology) {
    let c = support::scenario::primary_and_standby();
    let mut topo = c.topology();
    topo.nodes
        .get_mut("n2")
        .expect("n2")
        .settings
        .insert("max_standby_streaming_delay".into(), "-1".into());
    for e in extra {
        topo.extra_yaml(e);
    }
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    c.psql(
        "n1",
        "CREATE TABLE report(id int); INSERT INTO report SELECT generate_series(1, 1000); \
         CREATE TABLE probe(id bigint PRIMARY KEY)",
    );
    c.wait_replayed("n2", "n1");
    (c, topo)
}

/// `TRUNCATE report` on n1 while the report session holds its lock on n2: wait until n2's
/// startup process waits on it.
fn conflict(c: &TestCluster) {
    c.psql("n1", "TRUNCATE report");
    c.wait_for_sql(
        "n2",
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'startup' AND wait_event_type = 'Lock'",
        "1",
    );
}

/// Declare n2 the primary and n1 its standby.
fn switch_to_n2(c: &TestCluster, topo: &mut Topology) {
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"));
    c.write_topology(topo);
}

/// A pgtopo run as one line of words: the diagnostic's wrapping and margins (`|`) taken out.
fn flat(out: &std::process::Output) -> String {
    show(out)
        .split_whitespace()
        .filter(|w| *w != "|")
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run pgtopo off the runtime's threads (the writer keeps writing meanwhile).
async fn pgtopo(c: &TestCluster, args: &[&str]) -> std::process::Output {
    let cmd = c.pgtopo_command(args);
    tokio::task::spawn_blocking(move || {
        support::cli::run_with_deadline(cmd, Duration::from_secs(300)).expect("pgtopo ran")
    })
    .await
    .expect("pgtopo task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_query_blocking_the_candidates_replay_refuses_the_switchover_before_anything_stops(
) {
    let (c, mut topo) = cluster(&[]);
    let (_report, pid) = report_session(&c, "n2").await;
    let n1_pid = support::process::postmaster_pid(&c.node("n1").data_dir);
    let w = Writer::start(&c, &["n1"]);
    conflict(&c);

    let out = pgtopo(&c, &["status"]).await;
    let text = flat(&out);
    assert!(
        text.contains("REPLAY BLOCKED") && text.contains(&format!("pid {pid}")),
        "{text}"
    );
    let out = pgtopo(&c, &["drift"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("nightly_report"), "{}", show(&out));

    switch_to_n2(&c, &mut topo);
    let out = pgtopo(&c, &["plan"]).await;
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "switchover refused".to_string(),
        format!("pid {pid}"),
        "SELECT count(*) FROM report".into(),
        "cancel_conflicting_queries".into(),
    ] {
        assert!(text.contains(&want), "{want} missing: {text}");
    }
    let out = pgtopo(&c, &["apply", "--auto-approve"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    let log = w.finish().await;
    assert_eq!(log.errors, 0, "writes failed: {log:?}");
    assert!(!log.acked.is_empty());
    assert_eq!(in_recovery(&c, "n1"), "f", "n1 is still the primary");
    assert_eq!(
        support::process::postmaster_pid(&c.node("n1").data_dir),
        n1_pid,
        "n1 was never stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_cancel_conflicting_queries_the_switchover_cancels_the_report_and_switches_over() {
    let (c, mut topo) = cluster(&["switchover: {cancel_conflicting_queries: true}"]);
    let (report, pid) = report_session(&c, "n2").await;
    let w = Writer::start(&c, &["n1", "n2"]);
    conflict(&c);

    switch_to_n2(&c, &mut topo);
    let out = pgtopo(&c, &["plan"]).await;
    let text = flat(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("catch_up")
            && text.contains(&format!(
                "cancels the sessions that block its replay (now pid {pid}"
            )),
        "{text}"
    );
    let out = pgtopo(&c, &["apply", "--auto-approve"]).await;
    let text = flat(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("(writes unavailable) took"), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = w.finish().await;

    assert_eq!(in_recovery(&c, "n2"), "f", "n2 is the primary");
    assert!(
        report.query_one("SELECT 1", &[]).await.is_err(),
        "the report session was ended"
    );
    // Writes unavailable: the writer's longest wait (loosely: timing is the benchmark's job).
    let gap = log.longest_gap();
    assert!(
        gap < Duration::from_secs(5),
        "writes unavailable for {gap:?}"
    );
    let lost = support::scenario::lost_writes(&c, "n2", log.acked.iter().map(|(id, _)| *id));
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    support::scenario::assert_no_changes(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_to_a_conflict_blocked_candidate_cancels_the_blockers_and_promotes() {
    let (c, mut topo) = cluster(&[]);
    let (report, pid) = report_session(&c, "n2").await;
    conflict(&c);
    c.crash("n1");

    switch_to_n2(&c, &mut topo);
    let out = pgtopo(&c, &["plan", "--allow-failover"]).await;
    let text = flat(&out);
    assert!(
        text.contains("catch_up") && text.contains(&format!("pid {pid}")),
        "{text}"
    );
    let args = [
        "apply",
        "--auto-approve",
        "--allow-failover",
        "--format",
        "json",
    ];
    let out = pgtopo(&c, &args).await;
    assert!(out.status.success(), "{}", show(&out));
    // The measured window is an event of its own, against the plan's estimate.
    let window: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["type"] == "writes_unavailable")
        .unwrap_or_else(|| panic!("no writes_unavailable event: {}", show(&out)));
    assert!(window["measured_ms"].as_u64().is_some(), "{window}");
    assert!(window["estimated_ms"].as_u64() >= Some(4_000), "{window}");
    assert_eq!(in_recovery(&c, "n2"), "f", "n2 was promoted");
    assert!(
        report.query_one("SELECT 1", &[]).await.is_err(),
        "the report session was ended"
    );
    assert_eq!(c.psql("n2", "SELECT count(*) FROM report"), "0");
}

/// SIGSTOP to a process, SIGCONT when dropped (also when the test fails).
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn freeze(pid: i32) -> Frozen {
        let p = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        Frozen(p)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// Freeze n2's WAL receiver and wait until it has heard nothing for longer than twice its
/// `wal_receiver_status_interval` (1 s here).
fn freeze_receiver(c: &TestCluster) -> Frozen {
    let pid: i32 = c
        .psql("n2", "SELECT pid FROM pg_stat_wal_receiver")
        .parse()
        .expect("walreceiver pid");
    let f = Frozen::freeze(pid);
    c.wait_for_sql(
        "n2",
        "SELECT clock_timestamp() - last_msg_receipt_time > interval '3 s' FROM pg_stat_wal_receiver",
        "t",
    );
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_candidate_that_is_not_receiving_is_refused_and_fails_the_live_proof_before_the_stop() {
    let (c, mut topo) = cluster(&["switchover: {catchup_timeout: 2s}"]);
    topo.nodes
        .get_mut("n2")
        .expect("n2")
        .settings
        .insert("wal_receiver_status_interval".into(), "1s".into());
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    let n1_pid = support::process::postmaster_pid(&c.node("n1").data_dir);
    let w = Writer::start(&c, &["n1"]);

    // A plan made while n2 is healthy, saved for the apply below.
    switch_to_n2(&c, &mut topo);
    let plan = c.dir.join("plan.json");
    let out = pgtopo(&c, &["plan", "--out", plan.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", show(&out));

    let frozen = freeze_receiver(&c);
    let out = pgtopo(&c, &["plan"]).await;
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("switchover refused") && text.contains("n2 is not receiving"),
        "{text}"
    );

    let out = pgtopo(
        &c,
        &["apply", "--auto-approve", plan.to_str().expect("path")],
    )
    .await;
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "catch_up",
        "last heard from its upstream at",
        "Nothing was stopped",
    ] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    drop(frozen);

    let log = w.finish().await;
    assert_eq!(log.errors, 0, "writes failed: {log:?}");
    assert_eq!(in_recovery(&c, "n1"), "f", "n1 is still the primary");
    assert_eq!(
        support::process::postmaster_pid(&c.node("n1").data_dir),
        n1_pid,
        "n1 was never stopped"
    );
}
