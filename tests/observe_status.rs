//! `pgtopo status` and `pgtopo observe` through the binary, on real clusters: the JSON fields
//! match what psql reports, down nodes are facts (exit 0), a bad topology exits 1, and no
//! secret ever reaches the output.

mod support;

use pgtopo::units::Lsn;
use serde_json::Value;
use support::TestCluster;

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn status_json_and_tree_of_a_cascade() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n2");
    c.wait_streaming("n3");
    c.wait_replayed("n3", "n1");
    let topo = c.topology();
    c.write_topology(&topo);

    let lsn_sql = |name: &str| {
        if name == "n1" {
            "select pg_current_wal_lsn()"
        } else {
            "select pg_last_wal_replay_lsn()"
        }
    };
    let lsn_of = |name: &str| -> Lsn { c.psql(name, lsn_sql(name)).parse().unwrap() };
    let before: Vec<Lsn> = ["n1", "n2", "n3"].iter().map(|n| lsn_of(n)).collect();
    let v = json_of(&c.pgtopo(&["status", "--format", "json"]));
    let after: Vec<Lsn> = ["n1", "n2", "n3"].iter().map(|n| lsn_of(n)).collect();
    assert_eq!(v["cluster"], "test");
    let sysid = c.psql("n1", "select system_identifier from pg_control_system()");
    let version: u64 = c.psql("n1", "show server_version_num").parse().unwrap();
    for (i, (name, role, upstream, slots)) in [
        ("n1", "primary", Value::Null, vec!["n2"]),
        ("n2", "standby", Value::from("n1"), vec!["n3"]),
        ("n3", "standby", Value::from("n2"), vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        let n = &v["nodes"][name];
        assert_eq!(n["reachable"], true, "{name}: {n}");
        assert_eq!(n["running"], true);
        assert_eq!(n["role"], role);
        assert_eq!(n["upstream"], upstream);
        assert_eq!(n["streaming"], role == "standby");
        assert_eq!(n["timeline"], 1);
        assert_eq!(n["system_identifier"], sysid.as_str());
        assert_eq!(n["version"], version);
        assert_eq!(n["slots"], Value::from(slots));
        // The position psql reports before and after brackets the observed one (the server
        // may write a record of its own meanwhile).
        let lsn: Lsn = n["lsn"].as_str().unwrap().parse().unwrap();
        assert!(before[i] <= lsn && lsn <= after[i], "{name}: {lsn}");
    }

    let out = c.pgtopo(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("cluster test"), "{text}");
    assert!(lines[1].starts_with("n1  primary"), "{text}");
    assert!(lines[2].starts_with("└─ n2  standby"), "{text}");
    assert!(lines[3].starts_with("   └─ n3  standby"), "{text}");
    assert!(
        lines[2].contains("streaming") && lines[2].contains("lag "),
        "{text}"
    );
    assert!(lines[2].contains("slot active on n1 retains"), "{text}");
}

#[test]
fn status_marks_down_nodes_and_still_exits_0() {
    let mut c = support::scenario::primary_and_standby();
    c.declare_node("n3");
    c.stop("n2", "fast");
    // n1's walsender notices the disconnection on its own time.
    c.wait_for_sql(
        "n1",
        "select active from pg_replication_slots where slot_name = 'n2'",
        "f",
    );
    let topo = c.topology();
    c.write_topology(&topo);

    let v = json_of(&c.pgtopo(&["status", "--format", "json"]));
    let n2 = &v["nodes"]["n2"];
    assert_eq!(n2["reachable"], false);
    assert_eq!(n2["running"], false);
    assert_eq!(n2["role"], "standby");
    assert_eq!(n2["upstream"], "n1");
    assert_eq!(n2["control"]["cluster_state"], "shut down in recovery");
    assert!(n2["unreachable_reason"]
        .as_str()
        .unwrap()
        .contains("refused"));
    let n3 = &v["nodes"]["n3"];
    assert_eq!(n3["reachable"], false);
    assert_eq!(n3["role"], Value::Null);
    assert_eq!(n3["data_dir"]["exists"], false);
    // n1 still holds n2's slot, inactive now.
    assert_eq!(v["nodes"]["n1"]["replication_slots"][0]["active"], false);

    let out = c.pgtopo(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("n2  ") && text.contains("DOWN standby: stopped (shut down in recovery"),
        "{text}"
    );
    assert!(
        text.contains("n3  ") && text.contains("DOWN: no data directory"),
        "{text}"
    );
    assert!(text.contains("slot inactive on n1"), "{text}");
}

#[test]
fn invalid_topology_exits_1() {
    let mut c = TestCluster::new();
    c.declare_node("n1");
    let mut topo = c.topology();
    topo.role("n1", "standby", None); // no primary
    c.write_topology(&topo);
    let out = c.pgtopo(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.pgtopo(&["observe"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn observe_records_the_versioned_state() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    let topo = c.topology();
    c.write_topology(&topo);
    let v = json_of(&c.pgtopo(&["observe"]));
    assert_eq!(
        v["format_version"],
        pgtopo::observe::OBSERVED_FORMAT_VERSION
    );
    assert_eq!(v["nodes"]["n1"]["role"], "primary");
    let file = c.dir.join("observed.json");
    let out = c.pgtopo(&["observe", "--out", file.to_str().unwrap()]);
    assert!(out.status.success());
    let rec: pgtopo::observe::ObservedCluster =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(rec.cluster, "test");
    assert!(rec.nodes["n1"].reachable);
    assert_eq!(
        rec.nodes["n1"].settings["wal_level"].value,
        c.psql("n1", "show wal_level")
    );
}

#[test]
fn wrong_password_is_reported_without_the_secret() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    let hba = c.node("n1").data_dir.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    c.write_os_file(
        &hba,
        &format!("host all pwuser 127.0.0.0/8 scram-sha-256\n{old}"),
    );
    c.start("n1");
    c.psql(
        "n1",
        "create role pwuser login superuser password 'right-pass'",
    );
    let mut topo = c.topology();
    topo.extra_yaml("connect: {user: pwuser, password: {env: PGTOPO_TEST_STATUS_PW}}");
    c.write_topology(&topo);

    let run = |pw: &str| {
        let mut cmd = support::cli::stray_pgtopo();
        cmd.arg("-f")
            .arg(c.dir.join("topology.yaml"))
            .args(["status", "--format", "json"])
            .env("PGTOPO_TEST_STATUS_PW", pw);
        support::run_with_deadline(cmd, std::time::Duration::from_secs(60)).unwrap()
    };
    let out = run("Wrong-Secret-42");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("Wrong-Secret-42"), "{all}");
    let v = json_of(&out);
    let n1 = &v["nodes"]["n1"];
    assert_eq!(n1["reachable"], false);
    assert_eq!(n1["running"], true);
    assert!(
        n1["unreachable_reason"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{n1}"
    );
    let v = json_of(&run("right-pass"));
    assert_eq!(v["nodes"]["n1"]["reachable"], true);
}

/// Nodes that answer on different PostgreSQL majors outside an upgrade (each runs its declared
/// bin_dir's major) are drift that names both versions (SPEC §10).
#[test]
fn nodes_on_different_majors_are_named_as_drift() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    let own = c
        .psql("n1", "SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        / 10000;
    let other = if own == 16 { 17 } else { 16 };
    let wheels = std::env::var("PGTOPO_PG_WHEELS").unwrap_or_else(|_| "/opt/pgbin".into());
    let other_bin = std::path::Path::new(&wheels).join(format!("{other}/bin"));
    if !other_bin.join("postgres").is_file()
        && support::missing_prerequisite(
            "nodes_on_different_majors_are_named_as_drift",
            &format!("no PostgreSQL {other} at {}", other_bin.display()),
        )
    {
        return;
    }
    let own_bin = std::mem::replace(&mut c.bin_dir, other_bin.clone());
    c.init_primary("n2");
    c.start("n2");
    c.bin_dir = own_bin;
    let mut topo = c.topology();
    topo.role("n2", "standby", Some("n1"));
    topo.extra_yaml(&format!(
        "nodes: {{n2: {{bin_dir: '{}'}}}}",
        other_bin.display()
    ));
    c.write_topology(&topo);

    let out = c.pgtopo(&["drift"]);
    let text = support::show(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("mixed majors"), "{text}");
    assert!(text.contains(&format!("n2 runs {other}.")), "{text}");
    assert!(text.contains(&format!("n1 runs {own}.")), "{text}");
}
