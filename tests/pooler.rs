//! Poolers and hooks end to end, against real PostgreSQL servers and a real pgbouncer
//! (`support::pgbouncer`), through the pgtopo binary: a switchover through pgbouncer under the
//! probe writer fails no client transaction; a switchover that fails after the pause leaves the
//! pooler resumed; a pooler that routes to a standby is drift that apply fixes, and makes a saved
//! plan stale; a failing
//! before-hook changes nothing; after-hooks get their environment, never a secret, and a failing
//! one makes apply exit non-zero. A pgbouncer killed between pause and resume: the database
//! switchover completes, the next apply (pgbouncer started again) routes and resumes it.

mod support;

use std::time::Duration;

use pgtopo::demo::writer::Writer;
use support::pgbouncer::TestPooler;
use support::{show, TestCluster, Topology};

/// n1 primary, n2 standby, a pgbouncer routing to n1, declared in the topology (applied).
fn cluster(hooks: &str) -> (TestCluster, Topology, TestPooler) {
    let c = support::scenario::primary_and_standby();
    let pgb = TestPooler::start(&c, "pgb", "n1");
    let mut topo = c.topology();
    topo.extra_yaml("switchover: {timeout: 3s}")
        .extra_yaml(&pgb.yaml(true));
    if !hooks.is_empty() {
        topo.extra_yaml(hooks);
    }
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    (c, topo, pgb)
}

fn to_n2(c: &TestCluster, topo: &mut Topology) {
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"));
    c.write_topology(topo);
}

/// A writer through the pooler, once it has `acks` acknowledged writes.
async fn writing(pgb: &TestPooler, acks: u64) -> Writer {
    let w = Writer::start_through_pooler(&pgb.host, pgb.port, "postgres")
        .await
        .unwrap();
    w.wait_for_more_acks(acks, Duration::from_secs(30))
        .await
        .unwrap();
    w
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn blocking(c: &TestCluster, args: &'static [&'static str]) -> std::process::Output {
    let cmd = c.pgtopo_command(args);
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output().expect("pgtopo runs")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_through_pgbouncer_fails_no_client_transaction() {
    let (c, mut topo, pgb) = cluster("");
    let w = writing(&pgb, 300).await;
    to_n2(&c, &mut topo);

    // The plan: a checkpoint, then pause before the stop, route after the promotion, resume.
    let plan = c.pgtopo(&["plan", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    let kinds: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("{k} in {kinds:?}"))
    };
    assert!(at("checkpoint") < at("pause_pooler"), "{kinds:?}");
    assert!(at("pause_pooler") < at("stop"), "{kinds:?}");
    assert!(at("promote") < at("route_pooler"), "{kinds:?}");
    assert!(at("route_pooler") < at("resume_pooler"), "{kinds:?}");
    let dot = c.pgtopo(&["graph"]);
    assert!(text(&dot).contains("resume_pooler"), "{}", show(&dot));

    let out = blocking(&c, &["apply", "--auto-approve"]).await;
    assert!(out.status.success(), "{}", show(&out));
    w.wait_for_more_acks(300, Duration::from_secs(30))
        .await
        .unwrap();
    let log = w.stop().await;
    let n2 = c.node("n2");
    assert_eq!(pgb.route(), (n2.host.clone(), n2.port, false));
    // Through the harness's psql: the demo's lost_writes connects without a password.
    let lost = support::scenario::lost_writes(&c, "n2", log.acks.iter().map(|(id, _)| *id));
    assert!(lost.is_empty(), "lost {lost:?}");
    assert_eq!(
        log.errors, 0,
        "failed client transactions through pgbouncer"
    );
    // Re-running finds everything done.
    let again = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switchover_that_fails_after_the_pause_leaves_the_pooler_resumed() {
    let (c, mut topo, pgb) = cluster("");
    let w = writing(&pgb, 100).await;
    to_n2(&c, &mut topo);
    // The candidate never replays the old primary's shutdown checkpoint: the wait times out
    // (switchover.timeout 3s) and n1 is started again as primary.
    c.psql("n2", "SELECT pg_wal_replay_pause()");
    let out = blocking(&c, &["apply", "--auto-approve"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out).contains("resume_pooler"), "{}", show(&out));
    let n1 = c.node("n1");
    assert_eq!(
        pgb.route(),
        (n1.host.clone(), n1.port, false),
        "{}",
        show(&out)
    );
    // Clients go on writing through the pooler.
    w.wait_for_more_acks(100, Duration::from_secs(30))
        .await
        .unwrap();
    w.stop().await;
    c.psql("n2", "SELECT pg_wal_replay_resume()");
}

#[test]
fn a_pooler_routing_to_a_standby_is_drift_that_apply_fixes() {
    let (c, _topo, pgb) = cluster("");
    pgb.route_to(&c, "n2");
    let drift = c.pgtopo(&["drift"]);
    assert_ne!(drift.status.code(), Some(0), "{}", show(&drift));
    assert!(
        text(&drift).contains("routes postgres to n2"),
        "{}",
        show(&drift)
    );
    let status = c.pgtopo(&["status"]);
    assert!(
        text(&status).contains("n2, not the primary"),
        "{}",
        show(&status)
    );
    let plan = c.pgtopo(&["plan"]);
    assert!(text(&plan).contains("route_pooler"), "{}", show(&plan));
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    let n1 = c.node("n1");
    assert_eq!(pgb.route(), (n1.host.clone(), n1.port, false));
    let again = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
}

#[test]
fn a_saved_plan_is_stale_once_a_pooler_routes_elsewhere() {
    let (c, mut topo, pgb) = cluster("");
    to_n2(&c, &mut topo);
    let plan_file = c.dir.join("switchover.plan.json");
    let plan_path = plan_file.to_str().unwrap();
    let plan = c.pgtopo(&["plan", "--out", plan_path]);
    assert!(plan.status.success(), "{}", show(&plan));
    pgb.route_to(&c, "n2");
    let out = c.pgtopo(&["apply", "--auto-approve", plan_path]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text(&out).contains("pooler pgb: was"), "{}", show(&out));
    assert_eq!(c.psql("n1", "SELECT pg_is_in_recovery()"), "f");
    let n2 = c.node("n2");
    assert_eq!(pgb.route(), (n2.host.clone(), n2.port, false));
}

#[test]
fn a_failing_before_hook_aborts_with_nothing_changed() {
    let (c, mut topo, pgb) =
        cluster("hooks:\n  before_switchover:\n    - {command: [/bin/false], timeout: 5s}\n");
    to_n2(&c, &mut topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out).contains("before_switchover hook `/bin/false` exited with status 1"),
        "{}",
        show(&out)
    );
    assert_eq!(c.psql("n1", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(c.psql("n2", "SELECT pg_is_in_recovery()"), "t");
    let n1 = c.node("n1");
    assert_eq!(pgb.route(), (n1.host.clone(), n1.port, false));
}

#[test]
fn after_hooks_get_the_environment_and_a_failing_one_fails_the_apply() {
    let env_file = std::env::temp_dir().join(format!("pgtopo-hook-{}.env", std::process::id()));
    let failed_file = env_file.with_extension("failed");
    let hooks = format!(
        "connect: {{password: {{env: PGTOPO_TEST_HOOK_SECRET}}}}\nhooks:\n  after_promotion:\n    - command: [/usr/bin/python3, -c, \"import os,sys; open(sys.argv[1],'w').write(' '.join(os.environ.get(k,'-') for k in ['PGTOPO_CLUSTER','PGTOPO_OLD_PRIMARY','PGTOPO_NEW_PRIMARY','PGTOPO_NEW_PRIMARY_PORT','PGTOPO_TEST_HOOK_SECRET']))\", {}]\n  after_apply:\n    - command: [/usr/bin/python3, -c, \"import sys; print('the secret is s3cr3t' + '-hook-value', file=sys.stderr); sys.exit(4)\"]\n  on_failure:\n    - command: [/usr/bin/touch, {}]\n",
        env_file.display(),
        failed_file.display()
    );
    // The hook's secret is the connection password itself: the cluster's superuser has it.
    let mut c = TestCluster::with_password("s3cr3t-hook-value");
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    let mut topo = c.topology();
    topo.extra_yaml(&hooks);
    c.write_topology(&topo);
    let run = |c: &TestCluster| {
        let mut cmd = c.pgtopo_command(&["apply", "--auto-approve"]);
        cmd.env("PGTOPO_TEST_HOOK_SECRET", "s3cr3t-hook-value");
        cmd.output().expect("pgtopo runs")
    };
    let _ = run(&c); // build: fails on the after_apply hook, by design
    let _ = std::fs::remove_file(&failed_file);
    to_n2(&c, &mut topo);
    let out = run(&c);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let all = text(&out);
    assert!(all.contains("after_apply hook"), "{}", show(&out));
    assert!(all.contains("exited with status 4"), "{}", show(&out));
    assert!(!all.contains("s3cr3t-hook-value"), "a secret leaked: {all}");
    assert_eq!(
        c.psql("n2", "SELECT pg_is_in_recovery()"),
        "f",
        "the switchover happened"
    );
    let n2 = c.node("n2");
    let env = std::fs::read_to_string(&env_file).expect("the after_promotion hook ran");
    assert_eq!(env, format!("test n1 n2 {} -", n2.port));
    assert!(failed_file.exists(), "the on_failure hook ran");
    let _ = std::fs::remove_file(&env_file);
    let _ = std::fs::remove_file(&failed_file);
}

/// pgbouncer killed (SIGKILL) between the pause and the resume of a switchover, as the old
/// primary stops: the database switchover still completes (one primary, nothing acknowledged
/// lost) and the apply fails naming the pooler. Once pgbouncer is started again (a service
/// manager would), the next apply converges, the pooler routes to the new primary unpaused,
/// and clients write through it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pooler_killed_between_pause_and_resume_is_set_right_by_the_next_apply() {
    let (c, mut topo, mut pgb) = cluster("");
    let w = writing(&pgb, 100).await;
    to_n2(&c, &mut topo);
    let pid = pgb.pid();
    let (a, killed) = tokio::task::block_in_place(|| {
        support::inject::apply_injecting(&c, "stop", || support::pgbouncer::kill_pid(pid))
    });
    assert!(killed.is_some(), "{}", a.text);
    assert!(!a.ok, "the pooler is gone: {}", a.text);
    assert!(
        a.text.contains("pgb"),
        "the error names the pooler: {}",
        a.text
    );
    assert_eq!(support::scenario::in_recovery(&c, "n2"), "f", "{}", a.text);
    assert_ne!(
        c.try_psql("n1", "SELECT pg_is_in_recovery()").as_deref(),
        Ok("f"),
        "never two primaries: {}",
        a.text
    );

    // Its file was rewritten although it was down: started again, it routes to n2 at once.
    pgb.restart(&c);
    let n2 = c.node("n2");
    assert_eq!(pgb.route(), (n2.host.clone(), n2.port, false));
    let out = blocking(&c, &["apply", "--auto-approve"]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(pgb.route(), (n2.host.clone(), n2.port, false));
    w.wait_for_more_acks(100, Duration::from_secs(30))
        .await
        .unwrap();
    let log = w.stop().await;
    let lost = support::scenario::lost_writes(&c, "n2", log.acks.iter().map(|(id, _)| *id));
    assert!(lost.is_empty(), "lost {lost:?}");
    let again = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
}
