//! `config::load` on the fixtures of `tests/fixtures/invalid/`: one test per validation rule,
//! each snapshotting the diagnostic exactly as a person reads it (miette's graphical handler,
//! unicode without colour, 100 columns), plus resolution of a valid file.

use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme};
use pgtopo::config::{self, DesiredRole};

fn render(report: &miette::Report) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false)
        .render_report(&mut out, report.as_ref())
        .expect("render");
    out
}

/// Load `tests/fixtures/invalid/NAME.yaml`, expect it to be refused, snapshot the diagnostic.
fn check(name: &str) -> String {
    let path = format!("tests/fixtures/invalid/{name}.yaml");
    let report = config::load(Path::new(&path)).expect_err("the fixture must be invalid");
    let rendered = render(&report);
    insta::assert_snapshot!(name, rendered);
    rendered
}

macro_rules! rules {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check(stringify!($name));
        }
    )*};
}

rules! {
    unknown_key,
    wrong_type,
    missing_key,
    malformed_yaml,
    bad_enum,
    bad_size_and_duration,
    duplicate_key,
    empty,
    not_a_mapping,
    empty_value,
    no_primary,
    two_primaries,
    retired_primary,
    unknown_upstream,
    self_upstream,
    retired_upstream,
    upstream_cycle,
    primary_upstream,
    duplicate_address,
    duplicate_data_dir,
    sync_unknown_standby,
    sync_retired_standby,
    sync_primary_standby,
    sync_count_too_large,
    sync_count_zero,
    owned_settings,
    hba_trust,
    hba_address_missing,
    hba_method,
    hba_md5,
    cluster_name,
    node_name,
    port_zero,
    never_promoted_primary,
    delayed_primary,
    catchup_timeout_zero,
    service_malformed,
    archive_two_tools,
    archive_mode_unknown,
    archive_owned_settings,
    clone_backup_without_pgbackrest,
}

#[test]
fn inline_password_is_refused_without_showing_it() {
    let out = check("inline_password");
    assert!(out.contains("connect.password"));
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn every_error_is_reported_at_once() {
    let out = check("many_errors");
    for expected in [
        "unknown key `colour`",
        "2 nodes are declared primary",
        "upstream `n9`",
        "`primary_conninfo` in `settings`",
        "connect.password",
        "5 problems",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert!(!out.contains("hunter2"));
}

#[test]
fn two_primaries_label_both_role_lines() {
    let text = std::fs::read_to_string("tests/fixtures/invalid/two_primaries.yaml").unwrap();
    let report = config::load_str("t.yaml", &text).unwrap_err();
    let labels: Vec<String> = report
        .labels()
        .unwrap()
        .map(|l| text[l.offset()..l.offset() + l.len()].to_string())
        .collect();
    assert_eq!(labels, ["role: primary", "role: primary"]);
}

#[test]
fn unknown_upstream_labels_the_value() {
    let text = std::fs::read_to_string("tests/fixtures/invalid/unknown_upstream.yaml").unwrap();
    let report = config::load_str("t.yaml", &text).unwrap_err();
    let l = report.labels().unwrap().next().unwrap();
    assert_eq!(&text[l.offset()..l.offset() + l.len()], "n9");
    assert_eq!(
        report.code().unwrap().to_string(),
        "pgtopo::config::unknown_upstream"
    );
}

#[test]
fn a_missing_file_says_so() {
    let report = config::load(Path::new("tests/fixtures/no-such-file.yaml")).unwrap_err();
    let out = render(&report);
    assert!(out.contains("cannot read the topology file tests/fixtures/no-such-file.yaml"));
    assert!(out.contains("does not exist"));
    assert!(out.contains("-f/--file"));
}

const SPEC_EXAMPLE: &str = "tests/fixtures/valid/spec_example.yaml";

#[test]
fn the_spec_example_resolves_with_defaults() {
    let d = config::load(Path::new(SPEC_EXAMPLE)).unwrap();
    assert_eq!(d.cluster, "shop");
    assert_eq!(d.source_path, Path::new(SPEC_EXAMPLE));
    let bytes = std::fs::read(SPEC_EXAMPLE).unwrap();
    use sha2::Digest;
    assert_eq!(d.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(d.primary().name, "n1");
    assert_eq!(
        d.nodes["n2"].role,
        DesiredRole::Standby {
            upstream: "n1".into()
        }
    );
    assert_eq!(
        d.nodes["n3"].role,
        DesiredRole::Standby {
            upstream: "n2".into()
        }
    );
    assert_eq!(d.nodes["n4"].role, DesiredRole::Absent);
    assert_eq!(d.nodes["n1"].os_user, "postgres");
    assert_eq!(
        d.nodes["n1"].bin_dir,
        Path::new("/usr/lib/postgresql/15/bin")
    );
    assert_eq!(d.nodes["n3"].settings["hot_standby_feedback"], "on");
    assert_eq!(d.nodes["n3"].settings["max_wal_senders"], "10");
    assert_eq!(d.nodes["n3"].settings["wal_log_hints"], "on");
    assert!(!d.nodes["n1"].settings.contains_key("hot_standby_feedback"));
    assert_eq!(d.nodes["n2"].ssh.as_ref().unwrap().host, "db2.internal");
    assert_eq!(d.synchronous_standby_names(), "ANY 1 (\"n2\", \"n3\")");
    assert_eq!(d.failover.max_lag.0, 16 << 20);
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let text = "cluster: c\npostgres: { os_user: pg }\nsettings: { a: 1, b: x }\nnodes:\n  \
                n1: { host: h1, data_dir: /d1, role: primary, settings: { a: 2 } }\n  \
                n2: { host: h2, data_dir: /d2, bin_dir: /opt/pg/bin, os_user: me }\n";
    fn probe() -> std::path::PathBuf {
        "/probed/bin".into()
    }
    let d = config::load_str_with("t.yaml", text, probe).unwrap();
    let (n1, n2) = (&d.nodes["n1"], &d.nodes["n2"]);
    assert_eq!(n1.port, 5432);
    assert_eq!(n1.bin_dir, Path::new("/probed/bin"));
    assert_eq!(n2.bin_dir, Path::new("/opt/pg/bin"));
    assert_eq!((n1.os_user.as_str(), n2.os_user.as_str()), ("pg", "me"));
    assert_eq!(n1.settings["a"], "2");
    assert_eq!(n2.settings["a"], "1");
    assert_eq!(n2.settings["b"], "x");
    assert_eq!(
        n2.role,
        DesiredRole::Standby {
            upstream: "n1".into()
        }
    );
    assert_eq!(d.connect.user, "postgres");
    assert_eq!(d.replication.user, "replicator");
    assert!(d.replication.slots);
    assert_eq!(d.source_path, Path::new("t.yaml"));
    assert_eq!(d.sha256.len(), 64);
}

#[test]
fn a_directory_or_non_utf8_file_is_refused_clearly() {
    let report = config::load(Path::new("tests/fixtures")).unwrap_err();
    assert!(render(&report).contains("cannot read the topology file tests/fixtures"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"cluster: caf\xe9\nnodes: {}\n").unwrap();
    let out = render(&config::load(&path).unwrap_err());
    assert!(out.contains("is not UTF-8 text"), "{out}");
    assert!(out.contains("latin1.yaml:1:13"), "{out}");
}

#[test]
fn load_str_hashes_the_text() {
    let text = std::fs::read_to_string(SPEC_EXAMPLE).unwrap();
    let from_str = config::load_str("x.yaml", &text).unwrap();
    let from_file = config::load(Path::new(SPEC_EXAMPLE)).unwrap();
    assert_eq!(from_str.sha256, from_file.sha256);
    assert_eq!(from_str.nodes, from_file.nodes);
}

#[test]
fn a_packaged_topology_resolves_each_nodes_service() {
    use pgtopo::config::Service;
    let d = config::load(Path::new("tests/fixtures/valid/packaged.yaml")).unwrap();
    assert_eq!(
        d.nodes["n1"].service,
        Service::PgCtlcluster {
            major: 15,
            name: "n1".into()
        }
    );
    assert_eq!(
        d.nodes["n1"].config_dir.as_deref(),
        Some(Path::new("/etc/postgresql/15/n1"))
    );
    assert_eq!(
        d.nodes["n2"].service,
        Service::Systemd {
            unit: "postgresql-15".into()
        }
    );
    assert_eq!(d.nodes["n2"].config_dir, None);
}
