//! A major-version upgrade as a plan, against real PostgreSQL: a primary with two standbys on an
//! old major, `postgres.bin_dir` changed to a newer one, `pgtopo apply` (pg_upgrade --check,
//! stops, pg_upgrade --link, start, analyze, standbys cloned again), rows written before and
//! after on every node, and `plan --detailed-exitcode` empty afterwards. Each test sets its own
//! old and new bin directories (it does not follow PGTOPO_TEST_BIN_DIR) and skips, saying so,
//! when one of them is missing.

mod support;

use std::path::{Path, PathBuf};

use support::{show, TestCluster};

const PG15: &str = "/usr/lib/postgresql/15/bin";
const PG16: &str = "/opt/pgtopo-pg16/pgserver/pginstall/bin";
const PG18_ROOT: &str = "/opt/pgtopo-pg18";

/// `dirname $(find /opt/pgtopo-pg18 -path '*/bin/postgres')`.
fn find_bin_dir(root: &Path, depth: u32) -> Option<PathBuf> {
    if root.join("bin/postgres").is_file() {
        return Some(root.join("bin"));
    }
    if depth == 0 {
        return None;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .find_map(|p| find_bin_dir(&p, depth - 1))
}

fn bin_dir(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    p.join("postgres").is_file().then_some(p)
}

/// The two bin directories, or None after saying why the test is skipped.
fn bin_dirs(test: &str, old: Option<PathBuf>, old_name: &str) -> Option<(PathBuf, PathBuf)> {
    let new = find_bin_dir(Path::new(PG18_ROOT), 6);
    match (old, new) {
        (Some(o), Some(n)) => Some((o, n)),
        (o, n) => {
            eprintln!(
                "SKIPPED {test}: {}{}",
                if o.is_none() {
                    format!("no PostgreSQL at {old_name}; ")
                } else {
                    String::new()
                },
                if n.is_none() {
                    format!("no PostgreSQL bin/postgres under {PG18_ROOT}")
                } else {
                    String::new()
                }
            );
            None
        }
    }
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
    let mut topo = support::scenario::trusted_topology(&c);
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
    if let Some((old, new)) = bin_dirs("upgrade_15_to_18", bin_dir(PG15), PG15) {
        upgrade(old, new);
    }
}

#[test]
fn upgrade_16_wheel_to_18_with_two_standbys() {
    if let Some((old, new)) = bin_dirs("upgrade_16_to_18", bin_dir(PG16), PG16) {
        upgrade(old, new);
    }
}
