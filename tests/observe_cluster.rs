//! `observe::observe` against real PostgreSQL clusters built by the harness: every fact is
//! checked against what psql (or the data directory) reports.

mod support;

use pgtopo::config::SecretRef;
use pgtopo::observe::{observe, ObserveOptions, Role};
use support::TestCluster;

fn opts() -> ObserveOptions {
    ObserveOptions::default()
}

#[tokio::test]
async fn primary_standby_and_cascade() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n2");
    c.wait_streaming("n2");
    c.wait_streaming("n3");
    c.psql("n1", "create table t as select 1 as i");
    c.wait_replayed("n3", "n1");

    let mut topo = c.topology();
    topo.settings.insert("work_mem".into(), "8MB".into());
    let obs = observe(&c.desired_of(&topo), &opts()).await;
    assert_eq!(obs.cluster, "test");
    assert_eq!(obs.nodes.len(), 3);
    let sysid = c.psql("n1", "select system_identifier from pg_control_system()");
    for (name, role, upstream) in [
        ("n1", Role::Primary, None),
        ("n2", Role::Standby, Some("n1")),
        ("n3", Role::Standby, Some("n2")),
    ] {
        let n = &obs.nodes[name];
        assert!(
            n.reachable && n.running && n.host_reachable,
            "{name}: {n:?}"
        );
        assert_eq!(n.role, Some(role), "{name}");
        assert_eq!(n.upstream.as_deref(), upstream, "{name}");
        assert_eq!(n.streaming, upstream.is_some(), "{name}");
        assert_eq!(n.timeline, Some(1), "{name}");
        assert_eq!(
            n.system_identifier.as_deref(),
            Some(sysid.as_str()),
            "{name}"
        );
        assert_eq!(
            n.version.unwrap().to_string(),
            c.psql(name, "show server_version_num"),
            "{name}"
        );
        assert_eq!(n.standby_signal, role == Role::Standby, "{name}");
        assert!(n.data_dir.exists && !n.data_dir.empty);
        let hba = n.hba.as_ref().expect("hba read");
        assert_eq!(hba.path, c.psql(name, "show hba_file"));
        assert_eq!(hba.managed_block, None);
        assert!(hba.errors.is_empty());
        assert_eq!(n.settings["wal_level"].value, "replica");
        // A setting the topology names is observed (as it is, not as it should be).
        assert_eq!(n.settings["work_mem"].value, c.psql(name, "show work_mem"));
        assert_eq!(
            n.settings["work_mem"].raw.as_deref(),
            Some(
                c.psql(
                    name,
                    "select setting from pg_settings where name = 'work_mem'"
                )
                .as_str()
            )
        );
        assert_eq!(n.settings["max_wal_senders"].context, "postmaster");
        assert!(n.settings.contains_key("synchronous_standby_names"));
        assert_eq!(
            n.settings["port"].value,
            c.node(name).port.to_string(),
            "{name}"
        );
    }
    let (n1, n2, n3) = (&obs.nodes["n1"], &obs.nodes["n2"], &obs.nodes["n3"]);
    // LSNs: n1's insert position; the standbys have replayed it (nothing written since).
    let cur: pgtopo::units::Lsn = c.psql("n1", "select pg_current_wal_lsn()").parse().unwrap();
    assert!(n1.lsn.unwrap() <= cur);
    assert_eq!(n2.lsn, n2.replay_lsn);
    assert!(n2.receive_lsn.is_some() && n3.replay_lsn.is_some());
    // Slots with their retention, and the senders' view of their standbys.
    assert_eq!(n1.slots, vec!["n2"]);
    assert_eq!(n2.slots, vec!["n3"]);
    assert!(n3.slots.is_empty());
    let s = &n1.replication_slots[0];
    assert!(s.active && s.slot_type == "physical");
    let restart_now: pgtopo::units::Lsn = c
        .psql("n1", "select restart_lsn from pg_replication_slots")
        .parse()
        .unwrap();
    assert!(s.restart_lsn.unwrap() <= restart_now);
    assert!(s.wal_retained_bytes.is_some());
    assert_eq!(n1.replication.len(), 1);
    let r = &n1.replication[0];
    assert_eq!(r.application_name, "n2");
    assert_eq!(r.state, "streaming");
    assert_eq!(r.sync_state, "async");
    assert!(r.lag_bytes.is_some());
    assert_eq!(n2.replication[0].application_name, "n3");
    // Recovery settings, password-free.
    let ci = n3.primary_conninfo.as_ref().unwrap();
    assert_eq!(ci.host.as_deref(), Some(c.node("n2").host.as_str()));
    assert_eq!(ci.port, Some(c.node("n2").port));
    assert_eq!(ci.application_name.as_deref(), Some("n3"));
    assert_eq!(n3.primary_slot_name.as_deref(), Some("n3"));
    assert_eq!(
        n3.upstream_addr,
        Some(format!("{}:{}", c.node("n2").host, c.node("n2").port))
    );
    assert!(n1.primary_conninfo.is_none() && n1.primary_slot_name.is_none());
    // The recording round-trips.
    let json = serde_json::to_string(&obs).unwrap();
    let back: pgtopo::observe::ObservedCluster = serde_json::from_str(&json).unwrap();
    assert_eq!(back, obs);

    // A password in primary_conninfo never reaches the observed state.
    let n2 = c.node("n2").clone();
    c.psql(
        "n3",
        &format!(
            "alter system set primary_conninfo = 'host={} port={} user=postgres \
             password=Sekret-99 application_name=n3'",
            n2.host, n2.port
        ),
    );
    c.psql("n3", "select pg_reload_conf()");
    c.wait_for_sql(
        "n3",
        "select position('Sekret' in current_setting('primary_conninfo')) > 0",
        "t",
    );
    let obs = observe(&c.desired_of(&topo), &opts()).await;
    let n3 = &obs.nodes["n3"];
    assert!(!n3.settings.contains_key("primary_conninfo"));
    assert_eq!(n3.primary_conninfo.as_ref().unwrap().port, Some(n2.port));
    assert!(!serde_json::to_string(&obs).unwrap().contains("Sekret"));
}

#[tokio::test]
async fn stopped_and_crashed_nodes_are_read_from_disk() {
    let c = support::scenario::primary_and_standby();
    let sysid = c.psql("n1", "select system_identifier from pg_control_system()");
    c.stop("n2", "fast");
    c.crash("n1");
    let obs = observe(&c.desired(), &opts()).await;
    let (n1, n2) = (&obs.nodes["n1"], &obs.nodes["n2"]);
    for n in [n1, n2] {
        assert!(!n.reachable && !n.running && n.host_reachable, "{n:?}");
        assert!(
            n.unreachable_reason.as_ref().unwrap().contains("refused"),
            "{n:?}"
        );
        assert_eq!(n.system_identifier.as_deref(), Some(sysid.as_str()));
        assert_eq!(n.timeline, Some(1));
        assert_eq!(n.data_dir.pg_version.map(|v| v * 10000), {
            let v: u32 = std::fs::read_to_string(c.node("n1").data_dir.join("PG_VERSION"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            Some(v * 10000)
        });
        assert!(n.files_error.is_none(), "{:?}", n.files_error);
    }
    assert_eq!(n1.role, Some(Role::Primary));
    assert_eq!(n2.role, Some(Role::Standby));
    assert!(n2.standby_signal && !n1.standby_signal);
    // Settings as written in the node's configuration files.
    assert_eq!(n2.settings["port"].value, c.node("n2").port.to_string());
    assert_eq!(n1.settings["wal_level"].value, "replica");
    assert_eq!(n1.settings["wal_level"].context, "");
    let c1 = n1.control.as_ref().unwrap();
    let c2 = n2.control.as_ref().unwrap();
    assert_eq!(c1.cluster_state, "in production");
    assert!(!c1.shut_down_cleanly());
    assert_eq!(c2.cluster_state, "shut down in recovery");
    assert!(c1.wal_log_hints);
    // A stopped standby's upstream comes from its primary_conninfo on disk.
    assert_eq!(n2.upstream.as_deref(), Some("n1"));
    assert_eq!(n2.primary_slot_name.as_deref(), Some("n2"));
    assert!(n2.hba.is_some());
}

#[tokio::test]
async fn unreachable_address_missing_data_dir_and_assume_down() {
    let c = support::scenario::primary_and_declared(&["n2"]);
    let mut o = opts();
    o.assume_down = vec!["n1".into()];
    let obs = observe(&c.desired(), &o).await;
    let n1 = &obs.nodes["n1"];
    assert!(!n1.reachable && !n1.host_reachable && !n1.running);
    assert!(n1.unreachable_reason.as_ref().unwrap().contains("assume"));
    assert!(n1.role.is_none() && n1.control.is_none());
    let n2 = &obs.nodes["n2"];
    assert!(!n2.reachable && !n2.running && n2.host_reachable);
    let reason = n2.unreachable_reason.as_ref().unwrap();
    assert!(
        reason.contains(&format!("{}:{}", c.node("n2").host, c.node("n2").port)),
        "{reason}"
    );
    assert!(!n2.data_dir.exists);
    assert!(n2.role.is_none() && n2.timeline.is_none());
}

#[tokio::test]
async fn wrong_password_is_an_observed_fact_without_the_secret() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    let hba = c.node("n1").data_dir.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    c.write_os_file(
        &hba,
        &format!(
            "# BEGIN pgtopo managed\nhost all pwuser 127.0.0.0/8 scram-sha-256\n\
             # END pgtopo managed\n{old}"
        ),
    );
    c.start("n1");
    c.psql(
        "n1",
        "create role pwuser login superuser password 'right-pass'",
    );
    let mut d = c.desired();
    d.connect.user = "pwuser".into();
    let var = format!("PGTOPO_TEST_PW_{}", std::process::id());
    d.connect.password = Some(SecretRef::Env { env: var.clone() });

    std::env::set_var(&var, "Wrong-Secret-42");
    let obs = observe(&d, &opts()).await;
    let n1 = &obs.nodes["n1"];
    assert!(!n1.reachable, "{n1:?}");
    assert!(n1.running, "the postmaster runs: {n1:?}");
    let reason = n1.unreachable_reason.as_ref().unwrap();
    assert!(
        reason.contains("password authentication failed"),
        "{reason}"
    );
    let json = serde_json::to_string(&obs).unwrap();
    assert!(!json.contains("Wrong-Secret-42"));
    assert_eq!(n1.role, Some(Role::Primary));
    assert_eq!(
        n1.system_identifier.as_deref(),
        Some(
            c.psql("n1", "select system_identifier from pg_control_system()")
                .as_str()
        )
    );
    assert_eq!(n1.control.as_ref().unwrap().cluster_state, "in production");

    std::env::set_var(&var, "right-pass");
    let obs = observe(&d, &opts()).await;
    let n1 = &obs.nodes["n1"];
    assert!(n1.reachable, "{n1:?}");
    assert_eq!(
        n1.hba.as_ref().unwrap().managed_block.as_deref(),
        Some(&["host all pwuser 127.0.0.0/8 scram-sha-256".to_string()][..])
    );
    std::env::remove_var(&var);
    let obs = observe(&d, &opts()).await;
    let reason = obs.nodes["n1"].unreachable_reason.clone().unwrap();
    assert!(
        reason.contains(&var) && reason.contains("not set"),
        "{reason}"
    );
}

#[tokio::test]
async fn promoted_standby_reports_its_new_timeline_and_history() {
    let c = support::scenario::primary_and_standby();
    c.stop("n1", "fast");
    c.psql("n2", "select pg_promote(true, 60)");
    let obs = c.observe().await;
    let n2 = &obs.nodes["n2"];
    assert_eq!(n2.role, Some(Role::Primary));
    assert!(!n2.standby_signal);
    assert_eq!(n2.timeline, Some(2));
    let history = c.psql("n2", "select pg_read_file('pg_wal/00000002.history')");
    let fork = history.split_whitespace().nth(1).unwrap();
    assert_eq!(n2.timeline_history.len(), 1);
    assert_eq!(n2.timeline_history[0].timeline, 1);
    assert_eq!(n2.timeline_history[0].fork_lsn.to_string(), fork);
    let n1 = &obs.nodes["n1"];
    assert_eq!(n1.timeline, Some(1));
    assert!(n1.control.as_ref().unwrap().shut_down_cleanly());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let mut c = TestCluster::new();
    c.declare_node("n1");
    // Something accepts TCP connections on n1's address but never speaks PostgreSQL.
    let n1 = c.node("n1").clone();
    let _silent = std::net::TcpListener::bind((n1.host.as_str(), n1.port)).unwrap();
    let mut topo = c.topology();
    topo.role("n1", "primary", None);
    let o = ObserveOptions {
        timeout: std::time::Duration::from_millis(300),
        ..opts()
    };
    let start = std::time::Instant::now();
    let obs = observe(&c.desired_of(&topo), &o).await;
    assert!(start.elapsed() < std::time::Duration::from_secs(3));
    let n = &obs.nodes["n1"];
    assert!(!n.reachable && !n.running && n.host_reachable, "{n:?}");
    assert!(
        n.unreachable_reason
            .as_ref()
            .unwrap()
            .contains("no answer within"),
        "{n:?}"
    );
}

#[tokio::test]
async fn a_connect_user_without_superuser_still_observes_the_basics() {
    let c = support::scenario::primary_and_standby();
    // The topology's connect password is the superuser's: watcher gets the same (its verifier).
    let verifier = pgtopo::pg::scram::verifier(c.password().unwrap_or_default());
    c.psql(
        "n1",
        &format!("create role watcher login password '{verifier}'"),
    );
    c.wait_for_sql(
        "n2",
        "select count(*) from pg_roles where rolname = 'watcher'",
        "1",
    );
    let mut d = c.desired();
    d.connect.user = "watcher".into();
    let obs = observe(&d, &opts()).await;
    for (name, role) in [("n1", Role::Primary), ("n2", Role::Standby)] {
        let n = &obs.nodes[name];
        assert!(n.reachable, "{name}: {n:?}");
        assert_eq!(n.role, Some(role));
        assert!(n.version.is_some() && n.timeline.is_some() && n.lsn.is_some());
        assert!(n.settings.contains_key("wal_level"));
    }
    // What such a role may not see stays unknown rather than failing the node: the WAL
    // receiver's sender and primary_conninfo (pg_read_all_stats / superuser), pg_control, hba.
    let n2 = &obs.nodes["n2"];
    assert!(n2.upstream.is_none() && n2.primary_conninfo.is_none());
    assert!(obs.nodes["n1"].hba.is_none());
    // Granting pg_read_all_stats and pg_read_all_settings reveals the upstream.
    c.psql(
        "n1",
        "grant pg_read_all_stats, pg_read_all_settings to watcher",
    );
    c.wait_replayed("n2", "n1");
    let obs = observe(&d, &opts()).await;
    let n2 = &obs.nodes["n2"];
    assert_eq!(n2.upstream.as_deref(), Some("n1"), "{n2:?}");
    assert!(n2.streaming);
}

#[tokio::test]
async fn a_stale_pid_file_naming_another_process_is_not_a_running_server() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.stop("n1", "fast");
    // As after a SIGKILL and a reboot: the pid file names a live process that is no postmaster
    // (this test itself). Neither observe nor the harness's cleanup may take it for one.
    let pid_file = c.node("n1").data_dir.join("postmaster.pid");
    c.write_os_file(&pid_file, &format!("{}\n", std::process::id()));
    let obs = c.observe().await;
    let n1 = &obs.nodes["n1"];
    assert!(!n1.running, "{n1:?}");
    assert_eq!(n1.control.as_ref().unwrap().cluster_state, "shut down");
}
