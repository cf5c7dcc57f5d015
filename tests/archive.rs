//! The WAL archive with pgBackRest (SPEC §1c) against real PostgreSQL and pgBackRest: one
//! primary and one streaming standby, a repository on local disk (`repo1-path`) in a
//! pgbackrest.conf the test writes (operator-owned: pgtopo reads it through pgBackRest, never
//! writes it). One cluster serves every check, in order:
//!
//! 1. a pgBackRest it cannot run (a config that does not exist) refuses the plan with
//!    pgBackRest's own message, nothing changed;
//! 2. `archive:` applied: archive_mode (restart), archive_command and restore_command on both
//!    nodes, the stanza created, `pgbackrest check` run; WAL reaches the repository; the next
//!    plan has nothing to do; `import` reads the archive back into `archive:`;
//!    (with a pgBackRest too old for the cluster's major — Debian 12's 2.45 stops at 15 — the
//!    stanza-create that gates the plan fails with pgBackRest's own message, nothing changed);
//! 3. archiving that fails (the repository unwritable) is drift naming the node, and once the
//!    repository is back the archive catches up and the drift is gone;
//! 4. a standby whose restore_command was reset is drift, and apply sets it again.

mod support;

use std::path::PathBuf;
use std::process::Output;

use support::show;
use support::TestCluster;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The archive section of the topology for `config`.
fn archive_yaml(config: &std::path::Path) -> String {
    format!(
        "archive:\n  pgbackrest:\n    stanza: shop\n    config: {}\n  mode: 'on'\n",
        config.display()
    )
}

/// pgbackrest.conf with the repository, lock and log directories inside the test's directory.
fn write_pgbackrest_conf(c: &TestCluster) -> (PathBuf, PathBuf) {
    let base = c.dir.join("pgbackrest");
    c.create_os_dir(&base, 0o750);
    for d in ["repo", "lock", "log"] {
        c.create_os_dir(&base.join(d), 0o750);
    }
    let conf = base.join("pgbackrest.conf");
    c.write_os_file(
        &conf,
        &format!(
            "[global]\nrepo1-path={b}/repo\nlock-path={b}/lock\nlog-path={b}/log\n\
             log-level-file=off\nlog-level-console=warn\narchive-timeout=30\n",
            b = base.display()
        ),
    );
    (conf, base.join("repo"))
}

fn plan_json(c: &TestCluster) -> serde_json::Value {
    let out = c.pgtopo(&["plan", "--format", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kinds(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan.get("plan").unwrap_or(plan)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or_default().to_string(),
                s["node"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn pgbackrest_archive_is_configured_checked_and_watched() {
    assert!(
        std::process::Command::new("pgbackrest")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "pgbackrest is not installed (Debian package `pgbackrest`)"
    );
    let c = support::scenario::primary_and_standbys(&["n2"]);
    let (conf, repo) = write_pgbackrest_conf(&c);
    let t0 = std::time::Instant::now();

    // 1. pgBackRest cannot run with a config that does not exist: refused, nothing changed.
    let mut topo = c.topology();
    topo.extra_yaml(&archive_yaml(std::path::Path::new(
        "/nonexistent/pgbackrest.conf",
    )));
    c.write_topology(&topo);
    let before = c.psql("n1", "SHOW archive_command");
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pgBackRest fails on") && err.contains("/nonexistent/pgbackrest.conf"),
        "{err}"
    );
    assert_eq!(c.psql("n1", "SHOW archive_command"), before);
    assert_eq!(c.psql("n1", "SHOW archive_mode"), "off");

    // 2. The archive applied.
    let mut topo = c.topology();
    topo.extra_yaml(&archive_yaml(&conf));
    c.write_topology(&topo);
    if !pgbackrest_supports(&c) {
        // pgBackRest refuses this major: the stanza-create that gates the plan fails with
        // pgBackRest's own message and nothing else is changed.
        let out = c.pgtopo(&["apply", "--auto-approve"]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(
            all.contains("n1: pgbackrest stanza-create failed: ") && all.contains("ERROR: ["),
            "{}",
            show(&out)
        );
        for n in ["n1", "n2"] {
            assert_eq!(c.psql(n, "SHOW archive_mode"), "off", "{n}");
            assert_eq!(c.psql(n, "SHOW restore_command"), "", "{n}");
        }
        eprintln!("archive test (unsupported major) total: {:?}", t0.elapsed());
        return;
    }
    let plan = plan_json(&c);
    let k = kinds(&plan);
    for want in [
        ("create_stanza", "n1"),
        ("check_archive", "n1"),
        ("restart", "n1"),
        ("restart", "n2"),
    ] {
        assert!(
            k.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {k:?}"
        );
    }
    let pos = |kind: &str, node: &str| k.iter().position(|(a, b)| a == kind && b == node).unwrap();
    assert!(pos("restart", "n1") < pos("check_archive", "n1"), "{k:?}");
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    c.wait_streaming("n2");
    for n in ["n1", "n2"] {
        assert_eq!(c.psql(n, "SHOW archive_mode"), "on");
        let data = c.node(n).data_dir.display().to_string();
        let cmd = c.psql(n, "SHOW archive_command");
        assert!(
            cmd.contains("--stanza=shop")
                && cmd.contains(&format!("--pg1-path={data}"))
                && cmd.ends_with("archive-push %p"),
            "{n}: {cmd}"
        );
        let restore = c.psql(n, "SHOW restore_command");
        assert!(restore.ends_with("archive-get %f \"%p\""), "{n}: {restore}");
    }
    // pgbackrest check pushed a segment: it is in the repository and pg_stat_archiver says so.
    assert_ne!(
        c.psql("n1", "SELECT archived_count FROM pg_stat_archiver"),
        "0"
    );
    assert!(repo.join("archive").join("shop").is_dir());
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let observed = c.pgtopo(&["observe"]);
    let o: serde_json::Value = serde_json::from_slice(&observed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", show(&observed)));
    let stanza = &o["nodes"]["n1"]["archive"]["pgbackrest"];
    assert_eq!(
        stanza["system_id"].as_str(),
        o["nodes"]["n1"]["system_identifier"].as_str(),
        "{stanza}"
    );
    eprintln!("archive configured and checked: {:?}", t0.elapsed());
    // import reads the archive back into `archive:` (the three settings are pgtopo's then).
    let imported = c.dir.join("imported.yaml");
    let from = format!("{}:{}", c.node("n1").host, c.node("n1").port);
    let secrets = c.auth.secrets().expect("a password cluster");
    let connect_file = secrets.connect_file().display().to_string();
    let out = c.pgtopo(&[
        "import",
        "--cluster",
        "shop",
        "--out",
        imported.to_str().unwrap(),
        "--from",
        &from,
        "--password-file",
        &connect_file,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let file: pgtopo::config::TopologyFile =
        serde_yaml::from_str(&std::fs::read_to_string(&imported).unwrap()).unwrap();
    let a = file.archive.expect("import wrote `archive:`");
    let p = a.pgbackrest.expect("as pgbackrest");
    assert_eq!(p.stanza, "shop");
    assert_eq!(p.config.as_deref(), Some(conf.as_path()));
    assert!(
        !file.settings.contains_key("archive_command")
            && file
                .nodes
                .values()
                .all(|n| !n.settings.contains_key("restore_command")),
        "{:?}",
        file.settings
    );

    // 3. Archiving fails while the repository is unwritable: drift names n1.
    let archive_dir = repo.join("archive");
    set_mode(&archive_dir, 0o000);
    c.psql(
        "n1",
        "CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS x; SELECT pg_switch_wal()",
    );
    c.wait_for_sql("n1", "SELECT failed_count > 0 FROM pg_stat_archiver", "t");
    let drift = c.pgtopo(&["drift", "--format", "json"]);
    let text = stdout(&drift);
    assert!(
        text.contains("archive.n1.failing") && text.contains("archiving fails on n1"),
        "{}",
        show(&drift)
    );
    set_mode(&archive_dir, 0o750);
    c.wait_for_sql(
        "n1",
        "SELECT last_archived_time > last_failed_time FROM pg_stat_archiver",
        "t",
    );
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // 4. A standby without the restore_command is drift; apply puts it back (a reload).
    c.psql("n2", "ALTER SYSTEM RESET restore_command");
    c.psql("n2", "SELECT pg_reload_conf()");
    c.wait_for_sql("n2", "SELECT current_setting('restore_command') = ''", "t");
    let drift = c.pgtopo(&["drift", "--format", "json"]);
    assert!(
        stdout(&drift).contains("archive.n2.restore_command"),
        "{}",
        show(&drift)
    );
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(c
        .psql("n2", "SHOW restore_command")
        .ends_with("archive-get %f \"%p\""));
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    eprintln!("archive test total: {:?}", t0.elapsed());
}

/// Whether the installed pgBackRest serves the cluster's major (Debian 12's 2.45 stops at 15).
fn pgbackrest_supports(c: &TestCluster) -> bool {
    let out = std::process::Command::new("pgbackrest")
        .arg("version")
        .output()
        .expect("pgbackrest runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u32> = text
        .trim()
        .trim_start_matches("pgBackRest ")
        .split('.')
        .filter_map(|x| x.parse().ok())
        .collect();
    let have = (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
    );
    let major: u32 = c
        .psql("n1", "SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        / 10000;
    let needs = match major {
        ..=15 => (2, 0),
        16 => (2, 47),
        17 => (2, 53),
        _ => (2, 56),
    };
    have >= needs
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
