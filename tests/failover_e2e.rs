//! Failover and rejoin end to end, against real PostgreSQL servers started by the harness:
//! crash failover with writes only the old primary got (rewind), the clone fallback (no
//! wal_log_hints, no checksums), refusals (no consent, lagging candidate, two primaries the
//! topology does not arbitrate), a second primary fenced and rejoined, a cascade re-pointed, the
//! what-if of `plan --assume-down` touching nothing, and an apply killed during a rewind.
//!
//! Each test checks what a user checks: roles (pg_is_in_recovery), timelines, streaming state
//! (pg_stat_replication / pg_stat_wal_receiver), slots, row counts, exit codes and messages, and
//! that `pgtopo plan --detailed-exitcode` exits 0 after a successful apply.

mod support;

use support::show;

use std::process::Output;

use support::scenario::{assert_follows, assert_no_changes, catch_up, cut_off, in_recovery};
use support::{TestCluster, Topology};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What an apply did: the reviewed plan it ran, and its debug log (`-vv`, stderr).
struct Applied {
    plan: pgtopo::plan::Plan,
    log: String,
}

impl Applied {
    /// The plan's steps as (kind, node), in order.
    fn kinds(&self) -> Vec<(&str, &str)> {
        self.plan
            .steps
            .iter()
            .map(|s| (s.action.kind(), s.node.as_str()))
            .collect()
    }
}

/// The reviewed-plan flow: `pgtopo plan [extra] --out DIR/plan.json`, then `pgtopo apply
/// DIR/plan.json` (a saved plan is applied without a question). Panics with the output unless
/// both exit 0.
fn apply_ok(c: &TestCluster, extra: &[&str]) -> Applied {
    let path = c.dir.join("plan.json");
    let path_s = path.display().to_string();
    let mut args = vec!["plan"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", &path_s, "--format", "json"]);
    let out = c.pgtopo(&args);
    assert_eq!(out.status.code(), Some(0), "plan: {}", show(&out));
    let plan: pgtopo::plan::Plan =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("plan file"))
            .expect("plan JSON");
    let out = c.pgtopo(&["apply", &path_s, "-vv"]);
    assert_eq!(out.status.code(), Some(0), "apply: {}", show(&out));
    std::fs::remove_file(&path).expect("plan file removed");
    Applied {
        plan,
        log: stderr(&out),
    }
}

/// The timeline a node is on: the one it writes WAL on (primary) or receives (standby).
fn timeline(c: &TestCluster, n: &str) -> String {
    c.psql(
        n,
        "SELECT CASE WHEN pg_is_in_recovery() \
         THEN (SELECT received_tli FROM pg_stat_wal_receiver)::text \
         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text END",
    )
}

/// The node's WAL receiver: `status sender_port`.
fn receiver(c: &TestCluster, n: &str) -> String {
    c.psql(
        n,
        "SELECT coalesce((SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver), 'none')",
    )
}

fn slots(c: &TestCluster, n: &str) -> String {
    c.psql(
        n,
        "SELECT coalesce(string_agg(slot_name || ':' || active, ',' ORDER BY slot_name), '') \
         FROM pg_replication_slots",
    )
}

fn streaming_apps(c: &TestCluster, n: &str) -> String {
    c.psql(
        n,
        "SELECT coalesce(string_agg(application_name || ':' || state, ',' \
         ORDER BY application_name), '') FROM pg_stat_replication",
    )
}

/// Wait until every standby in `standbys` replayed what `primary` has written, then compare the
/// row count of `table` everywhere with `expected`.
fn assert_rows_everywhere(c: &TestCluster, primary: &str, standbys: &[&str], expected: u64) {
    let sql = "SELECT count(*) FROM t";
    assert_eq!(
        c.psql(primary, sql),
        expected.to_string(),
        "rows on {primary}"
    );
    for s in standbys {
        catch_up(c, s, primary);
        assert_eq!(c.psql(s, sql), expected.to_string(), "rows on {s}");
    }
}

/// n1 (running) and its standby n2 built by pgtopo, `shared` rows of t on both (then a CHECKPOINT
/// on n1 if asked); n2 is cut off, n1 runs the statements `only_n1` one by one and crashes; the
/// topology now declares n2 the primary, with failover consent. Returns that topology.
fn failed_over_pair(
    c: &mut TestCluster,
    shared: u32,
    checkpoint: bool,
    only_n1: &[&str],
) -> Topology {
    c.add_standby_basebackup("n2", "n1");
    let mut topo = c.topology();
    c.write_topology(&topo);
    apply_ok(c, &[]);
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.psql(
        "n1",
        &format!("INSERT INTO t SELECT g, 'x' FROM generate_series(1, {shared}) g"),
    );
    c.wait_replayed("n2", "n1");
    if checkpoint {
        c.psql("n1", "CHECKPOINT");
    }
    cut_off(c, "n2");
    for sql in only_n1 {
        c.psql("n1", sql);
    }
    c.crash("n1");
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .extra_yaml("failover: {allow: true}");
    c.write_topology(&topo);
    topo
}

/// n1 primary; n2 and n3 standbys of n1; n4 cascades below n3. n2 and n3 are cut off, n1
/// accepts rows only it has, then crashes. The topology now declares n2 primary.
/// Without consent the plan is refused; with it, n1 is fenced, n2 promoted, n1 rewound (its
/// extra rows are gone), n3 re-pointed to n2 and n4 still below n3, all on timeline 2.
#[test]
fn crash_failover_rewinds_the_old_primary_and_repoints_the_cascade() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n1");
    c.add_standby_basebackup("n4", "n3");
    let mut topo = c.topology();
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g",
    );
    for s in ["n2", "n3"] {
        c.wait_replayed(s, "n1");
    }
    catch_up(&c, "n4", "n3");
    cut_off(&c, "n2");
    cut_off(&c, "n3");
    // Rows only n1 gets (acknowledged to the client, never replicated), then a crash.
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series(101, 2100) g",
    );
    c.crash("n1");

    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"))
        .role("n4", "standby", Some("n3"));
    c.write_topology(&topo);

    // No consent: refused, exit 1, the reason and both ways to consent named.
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("failover"), "{err}");
    assert!(
        err.contains("--allow-failover") && err.contains("failover.allow: true"),
        "{err}"
    );

    // With consent: the plan names the fence, the promotion, the rewind with its LSNs, and the
    // data-loss exposure.
    let out = c.pgtopo(&["plan", "--allow-failover", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = stdout(&out);
    for want in ["fence", "promote", "rewind", "fork point", "Data loss"] {
        assert!(text.contains(want), "plan lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("clone "), "no clone expected:\n{text}");

    // Segments recycled for future use, as a busy primary keeps max_wal_size worth of them: old
    // WAL under names past n1's end of WAL. The rewind sets them aside rather than have
    // pg_rewind unlink them one by one, and gives them back as future segments of timeline 2.
    let pg_wal = c.node("n1").data_dir.join("pg_wal");
    let last = std::fs::read_dir(&pg_wal)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.starts_with("00000001"))
        .max()
        .expect("n1 has WAL on timeline 1");
    let seg = u64::from_str_radix(&last[16..], 16).unwrap();
    let recycled: Vec<String> = (seg + 3..seg + 5)
        .map(|s| format!("{}{s:08X}", &last[..16]))
        .collect();
    // Owned like the server's own files (the server writes into them once they are reused).
    let owner = std::fs::metadata(pg_wal.join(&last)).unwrap();
    for r in &recycled {
        std::fs::copy(pg_wal.join(&last), pg_wal.join(r)).unwrap();
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::chown(pg_wal.join(r), Some(owner.uid()), Some(owner.gid())).unwrap();
    }

    let a = apply_ok(&c, &["--allow-failover"]);
    assert!(
        a.log
            .contains("recycled WAL segments set aside node=\"n1\" count=2"),
        "{}",
        a.log
    );
    assert!(
        a.log
            .contains("recycled WAL segments reused node=\"n1\" count=2"),
        "{}",
        a.log
    );
    for r in &recycled {
        assert!(!pg_wal.join(r).exists(), "{r} is left in n1's pg_wal");
    }
    let set_aside = format!("{}.pgtopo-recycled-wal", c.node("n1").data_dir.display());
    assert!(
        !std::path::Path::new(&set_aside).exists(),
        "{set_aside} is removed after the apply"
    );
    let kinds = a.kinds();
    let pos = |k: &str, n: &str| kinds.iter().position(|x| *x == (k, n));
    assert!(pos("fence", "n1") < pos("promote", "n2"), "{kinds:?}");
    assert!(pos("checkpoint", "n2") < pos("rewind", "n1"), "{kinds:?}");
    assert!(pos("rewind", "n1").is_some(), "{kinds:?}");

    assert_eq!(in_recovery(&c, "n2"), "f");
    assert_eq!(timeline(&c, "n2"), "2");
    assert_follows(&c, "n1", "n2");
    assert_follows(&c, "n3", "n2");
    assert_follows(&c, "n4", "n3");
    c.psql("n2", "CHECKPOINT");
    c.psql("n2", "INSERT INTO t VALUES (1000000, 'after')");
    assert_rows_everywhere(&c, "n2", &["n1", "n3"], 101);
    // n1 goes on streaming into the segments it was given back (old WAL under new names): rows
    // over three segment switches reach it, and it still streams.
    for i in 0..3 {
        c.psql(
            "n2",
            &format!("INSERT INTO t VALUES ({}, 'later')", 1000001 + i),
        );
        c.psql("n2", "SELECT pg_switch_wal()");
    }
    assert_rows_everywhere(&c, "n2", &["n1", "n3"], 104);
    assert_follows(&c, "n1", "n2");
    catch_up(&c, "n4", "n3");
    assert_eq!(c.psql("n4", "SELECT count(*) FROM t"), "104");
    for n in ["n1", "n3", "n4"] {
        assert_eq!(
            c.psql(n, "SELECT received_tli FROM pg_stat_wal_receiver"),
            "2",
            "{n} receives timeline 2"
        );
    }
    assert_eq!(slots(&c, "n2"), "n1:true,n3:true");
    assert_eq!(slots(&c, "n3"), "n4:true");
    assert_eq!(streaming_apps(&c, "n2"), "n1:streaming,n3:streaming");
    // Started after its rewind with syncfs as its startup sync when the host had little else to
    // write back (pg_rewind had just synced it all), an option that a later `pg_ctl restart`
    // does not inherit.
    let one_off = a
        .log
        .contains("started with -c recovery_init_sync_method=syncfs");
    assert_eq!(
        c.psql(
            "n1",
            "SELECT setting || ' from ' || source FROM pg_settings \
             WHERE name = 'recovery_init_sync_method'"
        ),
        if one_off {
            "syncfs from command line"
        } else {
            "fsync from default"
        }
    );
    let opts = std::fs::read_to_string(c.node("n1").data_dir.join("postmaster.opts")).unwrap();
    assert!(!opts.contains("recovery_init_sync_method"), "{opts}");
    // The node's own identity survived the rewind (pg_rewind copied n2's configuration).
    assert_eq!(
        c.psql("n1", "SHOW port"),
        c.node("n1").port.to_string(),
        "n1 keeps its port"
    );
    assert_no_changes(&c);
}

/// Files of a node's own configuration, relative to its data directory, as [`own_configuration`]
/// makes them.
const OWN_FILES: [&str; 7] = [
    "postgresql.conf",
    "n1-own.conf",
    "n1-maybe.conf",
    "n1.conf.d/10-own.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "postgresql.auto.conf",
];

/// Give the stopped node `n` configuration nobody else has: a log_line_prefix, an include, an
/// include_if_exists and an include_dir (0750) each setting a `pgtopo_test.*` value, a comment
/// and a rule in pg_hba.conf, an ident map; pg_wal moved beside the data directory behind a
/// symlink; the data directory and the included file 0750 and 0640. Returns each file of
/// [`OWN_FILES`] with its bytes and mode.
fn own_configuration(c: &TestCluster, n: &str) -> Vec<(Vec<u8>, u32)> {
    let dir = c.node(n).data_dir.clone();
    c.append(
        &dir.join("postgresql.conf"),
        "\n# n1's own\nlog_line_prefix = '%m [%p] n1-own '\ninclude 'n1-own.conf'\n\
         include_if_exists 'n1-maybe.conf'\ninclude_dir 'n1.conf.d'\n",
    );
    c.write_os_file(&dir.join("n1-own.conf"), "pgtopo_test.included = 'n1'\n");
    support::set_mode(&dir.join("n1-own.conf"), 0o640);
    c.write_os_file(&dir.join("n1-maybe.conf"), "pgtopo_test.maybe = 'n1'\n");
    c.create_os_dir(&dir.join("n1.conf.d"), 0o750);
    c.write_os_file(
        &dir.join("n1.conf.d/10-own.conf"),
        "# n1's directory\npgtopo_test.dir = 'n1'\n",
    );
    c.append(
        &dir.join("pg_hba.conf"),
        "\n# n1's own rule, outside the managed block\nhost sameuser all 127.0.0.1/32 trust\n",
    );
    c.append(&dir.join("pg_ident.conf"), "n1map postgres postgres\n");
    let wal = c.dir.join(format!("{n}-wal"));
    std::fs::rename(dir.join("pg_wal"), &wal).unwrap();
    std::os::unix::fs::symlink(&wal, dir.join("pg_wal")).unwrap();
    support::set_mode(&dir, 0o750);
    own_files(c, n)
}

fn own_files(c: &TestCluster, n: &str) -> Vec<(Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &c.node(n).data_dir;
    OWN_FILES
        .iter()
        .map(|f| {
            let p = dir.join(f);
            let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                std::fs::read(&p).unwrap(),
                meta.permissions().mode() & 0o7777,
            )
        })
        .collect()
}

/// pg_hba.conf without pgtopo's managed block.
fn outside_managed_block(hba: &[u8]) -> String {
    let text = String::from_utf8_lossy(hba);
    let mut inside = false;
    let mut out = String::new();
    for l in text.split_inclusive('\n') {
        let t = l.trim_end();
        if t == pgtopo::observe::HBA_BEGIN || t == pgtopo::observe::HBA_END {
            inside = t == pgtopo::observe::HBA_BEGIN;
            continue;
        }
        if !inside {
            out.push_str(l);
        }
    }
    out
}

/// n1 has configuration of its own in every file (see [`own_configuration`]) and a node-own
/// ALTER SYSTEM entry. After a crash, the failover to n2 and the rewind of n1 (pg_rewind copies
/// n2's files over n1's), every one of them is what it was byte for byte (pg_hba.conf outside
/// the managed block, postgresql.auto.conf with its own entries), n1 runs with them, pg_wal is
/// the same symlink, the modes are n1's, and nothing is left to do.
#[test]
fn a_rewound_old_primary_keeps_its_own_configuration() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    failed_over_pair(
        &mut c,
        100,
        false,
        &[
            "ALTER SYSTEM SET work_mem = '7MB'",
            "INSERT INTO t SELECT g, 'y' FROM generate_series(101, 2000) g",
        ],
    );
    let before = own_configuration(&c, "n1");
    let wal_link = std::fs::read_link(c.node("n1").data_dir.join("pg_wal")).unwrap();

    let a = apply_ok(&c, &["--allow-failover"]);
    let kinds = a.kinds();
    assert!(kinds.contains(&("rewind", "n1")), "{kinds:?}");
    assert!(!kinds.contains(&("clone", "n1")), "{kinds:?}");
    assert_follows(&c, "n1", "n2");

    let after = own_files(&c, "n1");
    for ((f, (b, bm)), (a, am)) in OWN_FILES.iter().zip(&before).zip(&after) {
        assert_eq!(bm, am, "mode of {f}");
        match *f {
            "pg_hba.conf" => assert_eq!(outside_managed_block(b), outside_managed_block(a)),
            "postgresql.auto.conf" => {
                let text = String::from_utf8_lossy(a);
                assert!(text.contains("work_mem = '7MB'"), "{text}");
            }
            _ => assert_eq!(
                String::from_utf8_lossy(b),
                String::from_utf8_lossy(a),
                "{f}"
            ),
        }
    }
    for (setting, want) in [
        ("log_line_prefix", "%m [%p] n1-own "),
        ("pgtopo_test.included", "n1"),
        ("pgtopo_test.maybe", "n1"),
        ("pgtopo_test.dir", "n1"),
        ("work_mem", "7MB"),
        ("port", &c.node("n1").port.to_string()),
    ] {
        assert_eq!(c.psql("n1", &format!("SHOW {setting}")), want, "{setting}");
    }
    // The server reads its own pg_ident.conf (pg_ident_file_mappings exists from 15 on; on 14
    // the file the server names as its ident_file must still hold the map).
    let ident = if c
        .psql("n1", "SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        >= 150000
    {
        "SELECT count(*) FROM pg_ident_file_mappings WHERE map_name = 'n1map'"
    } else {
        "SELECT count(*) FROM regexp_matches(pg_read_file(current_setting('ident_file')), '^n1map ', 'gn')"
    };
    assert_eq!(c.psql("n1", ident), "1");
    let dir = &c.node("n1").data_dir;
    assert_eq!(std::fs::read_link(dir.join("pg_wal")).unwrap(), wal_link);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750, "n1's data directory mode");
    assert!(!std::path::Path::new(&format!("{}.pgtopo-own-config.json", dir.display())).exists());
    assert_no_changes(&c);
}

/// Everything a what-if must leave alone, per node: the postmaster's PID, role, timeline, slots,
/// the configuration files pgtopo writes, standby.signal; and the files beside the data
/// directories (no lock, no marker left behind).
fn snapshot(c: &TestCluster) -> Vec<String> {
    use sha2::Digest;
    let mut out = Vec::new();
    for n in c.nodes() {
        let name = n.name.as_str();
        out.push(format!(
            "{name} pid={:?} recovery={} tl={} slots={} receiver={}",
            support::postmaster_pid(&n.data_dir),
            in_recovery(c, name),
            timeline(c, name),
            slots(c, name),
            receiver(c, name)
        ));
        for f in ["postgresql.auto.conf", "pg_hba.conf", "standby.signal"] {
            let h = std::fs::read(n.data_dir.join(f))
                .map(|b| hex::encode(sha2::Sha256::digest(&b)))
                .unwrap_or_else(|_| "absent".into());
            out.push(format!("{name}/{f} {h}"));
        }
    }
    let mut beside: Vec<String> = std::fs::read_dir(&c.dir)
        .expect("cluster dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    out.push(beside.join(" "));
    out
}

/// What-if on a healthy cluster touches nothing. Then n2 is cut off and lags: a failover to n2
/// is refused past failover.max_lag with the bytes it is behind; with n1 still declared, n1 is
/// simply started again (stopped is not failed).
#[test]
fn what_if_touches_nothing_and_a_lagging_candidate_is_refused() {
    let c = support::scenario::primary_and_standbys(&["n2", "n3"]);
    let mut topo = c.topology();
    topo.extra_yaml("failover: {max_lag: 64kB}");
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.wait_replayed("n2", "n1");
    c.wait_replayed("n3", "n1");

    let before = snapshot(&c);
    let out = c.pgtopo(&["plan", "--assume-down", "n1", "--allow-failover"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("node.n2 will be promoted (failover from n1"),
        "{text}"
    );
    assert!(text.contains("Data loss: possible"), "{text}");
    assert!(
        text.contains("node.n3 will be re-pointed from n1 to n2"),
        "{text}"
    );
    // Without consent the what-if still shows the failover, and says what apply would need.
    let out = c.pgtopo(&["plan", "--assume-down", "n1"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--allow-failover"),
        "{}",
        show(&out)
    );
    assert_eq!(snapshot(&c), before, "a what-if changed the cluster");

    cut_off(&c, "n2");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, repeat('z', 500) FROM generate_series(1, 2000) g",
    );
    c.wait_replayed("n3", "n1");
    c.crash("n1");

    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"))
        .extra_yaml("failover: {allow: true}");
    c.write_topology(&topo);
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("failover candidate n2 is") && err.contains("bytes behind n3"),
        "{err}"
    );
    assert!(err.contains("failover.max_lag"), "{err}");

    // n1 still declared primary and its host answers: stopped is not failed, it is started;
    // nobody is promoted.
    let mut keep = c.topology();
    keep.extra_yaml("failover: {allow: true, max_lag: 64kB}");
    c.write_topology(&keep);
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("stopped is not failed"), "{text}");
    assert!(!text.contains("promote"), "{text}");
    assert_eq!(in_recovery(&c, "n3"), "t", "a plan promotes nobody");
}

/// wal_log_hints off and no data checksums: pg_rewind cannot work, so the old primary is cloned
/// again from the new one, its old directory moved aside to `<data_dir>.pgtopo-old-<ts>`.
#[test]
fn without_wal_log_hints_nor_checksums_the_old_primary_is_cloned() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    let conf = c.node("n1").data_dir.join("postgresql.conf");
    c.append(&conf, "wal_log_hints = off\n");
    // PostgreSQL 18's initdb turns data checksums on; turn them off (on 15 they are off already
    // and pg_checksums says so with a non-zero exit, which is fine).
    let mut off = std::process::Command::new("runuser");
    off.args(["-u", &c.os_user, "--"])
        .arg(c.bin_dir.join("pg_checksums"))
        .arg("--disable")
        .arg("-D")
        .arg(&c.node("n1").data_dir);
    let _ = support::run_with_deadline(off, std::time::Duration::from_secs(60));
    c.start("n1");
    assert_eq!(c.psql("n1", "SHOW data_checksums"), "off");
    failed_over_pair(
        &mut c,
        50,
        false,
        &["INSERT INTO t SELECT g, 'lost' FROM generate_series(51, 500) g"],
    );
    clones_n1_and_converges(&c, "pg_rewind needs wal_log_hints=on or data checksums", 50);
}

/// The plan clones n1 (not a rewind) and gives `why`; the apply leaves n2 primary with n1
/// streaming from it, on its own port, with the `rows` both had (n1's own rows gone), and n1's
/// old data directory moved aside whole, as `n1.pgtopo-old-<timestamp>`; a replan is empty.
fn clones_n1_and_converges(c: &TestCluster, why: &str, rows: u64) {
    let out = c.pgtopo(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("clone"), "{text}");
    assert!(text.contains(why), "{text}");
    assert!(!text.contains(" rewind "), "{text}");
    apply_ok(c, &[]);
    assert_eq!(in_recovery(c, "n2"), "f");
    assert_follows(c, "n1", "n2");
    assert_rows_everywhere(c, "n2", &["n1"], rows);
    assert_eq!(slots(c, "n2"), "n1:true");
    assert_eq!(c.psql("n1", "SHOW port"), c.node("n1").port.to_string());
    let aside: Vec<String> = std::fs::read_dir(&c.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("n1.pgtopo-old-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        c.dir.join(&aside[0]).join("PG_VERSION").exists(),
        "the old data directory is kept whole"
    );
    assert_eq!(
        std::fs::read_to_string(c.dir.join(&aside[0]).join("PG_VERSION")).unwrap(),
        std::fs::read_to_string(c.node("n1").data_dir.join("PG_VERSION")).unwrap()
    );
    assert_no_changes(c);
}

/// n1 went on alone after n2 was cut off: its slot for n2 dropped, three segments of WAL, each
/// followed by a checkpoint, which recycles the segments before it — the one holding the fork
/// point too. pg_rewind could not read n1's WAL back to the fork, so the plan clones n1 and says
/// why; the apply converges with n1's rows gone.
#[test]
fn an_old_primary_without_the_wal_back_to_the_fork_is_cloned() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    let mut only_n1 =
        vec!["SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots"];
    for _ in 0..3 {
        only_n1.extend([
            "INSERT INTO t SELECT g, 'lost' FROM generate_series(1001, 1100) g",
            "DELETE FROM t WHERE i > 1000",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        ]);
    }
    failed_over_pair(&mut c, 50, false, &only_n1);
    clones_n1_and_converges(
        &c,
        "n1's pg_wal no longer has the segment that starts at",
        50,
    );
}

/// n1 crashes and n2 is promoted by hand (outside pgtopo); n1 comes back as a primary on the
/// old timeline, n3 follows it there and it takes writes: two primaries. A topology that names
/// neither is refused; with n2 declared, n1 is stopped first (no step writes to it before), then
/// rewound with n3, both follow n2, and n1's rows are gone.
#[test]
fn a_returning_old_primary_is_fenced_and_rejoined() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n1");
    let topo = c.topology();
    c.write_topology(&topo);
    apply_ok(&c, &[]);
    c.psql("n1", "CREATE TABLE t(i int PRIMARY KEY, pad text)");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) g",
    );
    c.wait_replayed("n2", "n1");
    c.wait_replayed("n3", "n1");
    c.crash("n1");
    c.psql("n2", "SELECT pg_promote(true, 60)");
    c.psql(
        "n2",
        "INSERT INTO t SELECT g, 'n2' FROM generate_series(11, 20) g",
    );
    c.start("n1");
    assert_eq!(in_recovery(&c, "n1"), "f", "n1 came back as a primary");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'rogue' FROM generate_series(11, 1000) g",
    );
    c.wait_replayed("n3", "n1");
    // A restartpoint on n3 past the fork recycles the WAL pg_rewind would need to find n3's
    // last checkpoint before the fork.
    c.psql("n3", "CHECKPOINT");
    assert_eq!(timeline(&c, "n1"), "1");
    assert_eq!(timeline(&c, "n2"), "2");

    // The topology names neither of them: pgtopo refuses to pick.
    let mut neither = topo.clone();
    neither
        .role("n3", "primary", None)
        .role("n1", "standby", Some("n3"))
        .role("n2", "standby", Some("n3"));
    c.write_topology(&neither);
    let out = c.pgtopo(&["plan", "--allow-failover"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("n1, n2 are all running as primary")
            && err.contains("declare in topology.yaml which node is the primary"),
        "{err}"
    );

    let mut topo = topo;
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    let path = c.dir.join("plan.json");
    let path_s = path.display().to_string();
    let out = c.pgtopo(&["plan", "--out", &path_s, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let plan: pgtopo::plan::Plan =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let on = |n: &str| -> Vec<&str> {
        plan.steps
            .iter()
            .filter(|s| s.node == n)
            .map(|s| s.action.kind())
            .collect()
    };
    let on_n1 = on("n1");
    assert!(
        matches!(on_n1.first(), Some(&"stop") | Some(&"fence")),
        "the first thing done on n1 stops it: {on_n1:?}"
    );
    assert!(on_n1.contains(&"rewind"), "{on_n1:?}");
    assert!(on("n3").contains(&"rewind"), "n3 followed n1's rogue WAL");
    match &plan.summary.data_loss {
        pgtopo::plan::DataLoss::Possible { reason, .. } => {
            assert!(reason.contains("n1 runs as a second primary"), "{reason}")
        }
        other => panic!("the rogue writes are lost and the plan must say so: {other:?}"),
    }

    // n3's WAL before the fork is gone: its pg_rewind fails, clearly, and n3 stays down.
    let out = c.pgtopo(&["apply", &path_s]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("rewind on n3"), "{err}");
    assert!(
        err.contains("no longer has the WAL") && err.contains("clones n3 again"),
        "{err}"
    );
    assert!(!c.is_running("n3"), "a failed rewind never starts");
    // The next apply clones n3 (its old directory kept) and finishes n1.
    let a = apply_ok(&c, &[]);
    let kinds: Vec<String> = a
        .plan
        .steps
        .iter()
        .map(|s| format!("{} {}", s.action.kind(), s.node))
        .collect();
    assert!(kinds.contains(&"clone n3".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"rewind n3".to_string()), "{kinds:?}");
    assert!(std::fs::read_dir(&c.dir).unwrap().flatten().any(|e| e
        .file_name()
        .to_string_lossy()
        .starts_with("n3.pgtopo-old-")));

    assert_eq!(in_recovery(&c, "n2"), "f");
    assert_follows(&c, "n1", "n2");
    assert_follows(&c, "n3", "n2");
    for n in ["n1", "n3"] {
        assert_eq!(
            c.psql(n, "SELECT received_tli FROM pg_stat_wal_receiver"),
            "2",
            "{n} receives timeline 2"
        );
    }
    assert_rows_everywhere(&c, "n2", &["n1", "n3"], 20);
    assert_eq!(
        c.psql("n1", "SELECT count(*) FROM t WHERE pad = 'rogue'"),
        "0"
    );
    assert_eq!(slots(&c, "n2"), "n1:true,n3:true");
    assert_eq!(streaming_apps(&c, "n2"), "n1:streaming,n3:streaming");
    assert_no_changes(&c);
}

/// Processes whose command line names pg_rewind and `dir`.
fn pg_rewind_running(dir: &std::path::Path) -> bool {
    let d = dir.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .any(|cmd| cmd.contains("pg_rewind") && cmd.contains(&d) && !cmd.contains("runuser"))
}

/// `pgtopo apply` is SIGKILLed while pg_rewind works on the old primary (pg_rewind itself, in
/// its own process group, runs on). The next apply takes over the dead apply's lock, recognises
/// the finished rewind (or clones n1 when it did not finish), and converges: n1 follows n2
/// without its rows, with its own postgresql.conf back from the record the killed apply left.
#[test]
fn apply_killed_during_a_rewind_converges_on_the_next_apply() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    // Enough WAL after n1's last checkpoint that pg_rewind's crash recovery takes a moment.
    failed_over_pair(
        &mut c,
        100,
        true,
        &["INSERT INTO t SELECT g, repeat('r', 400) FROM generate_series(101, 60000) g"],
    );
    // A setting of n1's own, which the killed apply recorded before pg_rewind copied n2's file.
    let n1_conf = c.node("n1").data_dir.join("postgresql.conf");
    c.append(&n1_conf, "\nlog_line_prefix = 'n1-own '\n");
    let own_conf = std::fs::read(&n1_conf).unwrap();

    let n1_dir = c.node("n1").data_dir.clone();
    let mut child = support::cli::stray_pgtopo()
        .arg("-f")
        .arg(c.topology_file())
        .args(["apply", "--auto-approve"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgtopo runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = false;
    while Instant::now() < deadline {
        if pg_rewind_running(&n1_dir) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill pgtopo");
            killed = true;
            break;
        }
        if child.try_wait().expect("child").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = child.wait().expect("reaped");
    assert!(
        killed,
        "pg_rewind was never seen running; pgtopo ended with {status:?}"
    );
    // The orphaned pg_rewind runs to its end (an operator re-runs apply later).
    let deadline = Instant::now() + Duration::from_secs(120);
    while pg_rewind_running(&n1_dir) {
        assert!(Instant::now() < deadline, "pg_rewind never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!c.is_running("n1"), "a half-rewound directory was started");

    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "apply after the kill: {}",
        show(&out)
    );
    assert_eq!(in_recovery(&c, "n2"), "f");
    assert_eq!(timeline(&c, "n2"), "2");
    assert_follows(&c, "n1", "n2");
    assert_rows_everywhere(&c, "n2", &["n1"], 100);
    assert!(!c.dir.join("n1.pgtopo-rewinding").exists());
    assert_eq!(slots(&c, "n2"), "n1:true");
    assert_eq!(c.psql("n1", "SHOW port"), c.node("n1").port.to_string());
    assert_eq!(c.psql("n1", "SHOW log_line_prefix"), "n1-own ");
    assert_eq!(std::fs::read(&n1_conf).unwrap(), own_conf);
    assert_no_changes(&c);
}
