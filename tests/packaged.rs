//! Debian clusters (SPEC §1d) on real postgresql-common tooling: clusters made with
//! `pg_createcluster 15 …` and run by `pg_ctlcluster`, their configuration in
//! /etc/postgresql/15/<name>. Debian's PostgreSQL 15 only (/usr/lib/postgresql/15/bin, whatever
//! PGTOPO_TEST_BIN_DIR says). Every cluster a test makes has a unique name and is dropped
//! (`pg_dropcluster --stop`) by a Drop guard, even when the test panics. One pair of clusters
//! walks bootstrap of a Debian standby, a switchover, import of the layout, and a failover with
//! pg_rewind, each checked with `pg_lsclusters` and an empty plan.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{claim_port, run_with_deadline, show};

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

fn run(program: &str, args: &[&str]) -> Output {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    run_with_deadline(c, Duration::from_secs(120)).expect("the command ran")
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Debian clusters of one test, their directory and port claims; all dropped on drop.
struct Debian {
    dir: PathBuf,
    clusters: Vec<String>,
    claims: Vec<PathBuf>,
}

impl Debian {
    fn new() -> Self {
        assert!(
            Path::new("/usr/bin/pg_createcluster").exists() && Path::new(BIN_DIR).exists(),
            "these tests need postgresql-common and Debian's PostgreSQL 15 (apt-get install postgresql-15)"
        );
        let dir = std::env::temp_dir().join(format!("pgtopo-packaged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        run_ok("chown", &["postgres:postgres", dir.to_str().unwrap()]);
        Debian {
            dir,
            clusters: Vec::new(),
            claims: Vec::new(),
        }
    }

    /// A unique cluster name for the node `node`.
    fn name(node: &str) -> String {
        format!("pgtopo-test-{}-{node}", std::process::id())
    }

    fn port(&mut self) -> u16 {
        let (port, claim) = claim_port("127.0.0.1");
        self.claims.push(claim);
        port
    }

    /// Claim the name (dropped on drop) before anything makes it.
    fn own(&mut self, node: &str) -> String {
        let name = Self::name(node);
        self.clusters.push(name.clone());
        name
    }

    /// `pg_createcluster 15 NAME` (data checksums: rewindable) on 127.0.0.1 with trust for its
    /// own tests, started.
    fn primary(&mut self, node: &str, port: u16) {
        let name = self.own(node);
        let data = self.dir.join(node);
        run_ok(
            "pg_createcluster",
            &[
                "15",
                &name,
                "-d",
                data.to_str().unwrap(),
                "-p",
                &port.to_string(),
                "-o",
                "listen_addresses=localhost",
                "--",
                "--data-checksums",
            ],
        );
        let hba = format!("/etc/postgresql/15/{name}/pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!(
                "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n{old}"
            ),
        )
        .unwrap();
        run_ok("pg_ctlcluster", &["15", &name, "start"]);
    }

    /// pg_lsclusters' status column of `node`.
    fn status(&self, node: &str) -> String {
        let name = Self::name(node);
        let out = run_ok("pg_lsclusters", &["--no-header", "15", &name]);
        out.split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string()
    }

    fn topology(&self, text: &str) -> PathBuf {
        let path = self.dir.join("topology.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Debian {
    fn drop(&mut self) {
        for name in &self.clusters {
            let _ = run("pg_dropcluster", &["--stop", "15", name]);
            // pg_dropcluster leaves the files it did not write (conf.d/pgtopo-node.conf).
            let _ = std::fs::remove_dir_all(format!("/etc/postgresql/15/{name}"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for c in &self.claims {
            let _ = std::fs::remove_file(c);
        }
    }
}

fn pgtopo(file: &Path, args: &[&str]) -> Output {
    let mut c = support::cli::stray_pgtopo();
    c.arg("-f").arg(file).args(args).env("NO_COLOR", "1");
    c.stdin(Stdio::null());
    run_with_deadline(c, Duration::from_secs(300)).expect("pgtopo ran")
}

#[test]
fn a_new_standby_of_a_debian_primary_becomes_a_debian_cluster_of_its_own_and_imports_back() {
    let mut d = Debian::new();
    let (p1, p2) = (d.port(), d.port());
    d.primary("n1", p1);
    let n2 = d.own("n2");
    let file = d.topology(&format!(
        "cluster: packaged\n\
         postgres: {{bin_dir: {BIN_DIR}, os_user: postgres}}\n\
         replication: {{hba_method: trust}}\n\
         nodes:\n\
         \x20 n1: {{host: 127.0.0.1, port: {p1}, data_dir: {dir}/n1, role: primary, service: {{pg_ctlcluster: \"15 {n1}\"}}}}\n\
         \x20 n2: {{host: 127.0.0.1, port: {p2}, data_dir: {dir}/n2, service: {{pg_ctlcluster: \"15 {n2}\"}}}}\n",
        dir = d.dir.display(),
        n1 = Debian::name("n1"),
    ));
    let out = pgtopo(&file, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(d.status("n2"), "online,recovery");
    assert!(Path::new(&format!("/etc/postgresql/15/{n2}/postgresql.conf")).exists());
    assert!(
        !d.dir.join("n2/postgresql.conf").exists(),
        "the config stays in /etc"
    );
    let out = pgtopo(&file, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // A switchover: n1's fast shutdown through pg_ctlcluster, n2 promoted, n1 its standby.
    let dir = d.dir.display();
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(", role: primary,", ",")
        .replace(
            &format!("data_dir: {dir}/n2,"),
            &format!("data_dir: {dir}/n2, role: primary,"),
        );
    std::fs::write(&file, text).unwrap();
    // The plan names the command that stops n1 (the one the step runs).
    let out = pgtopo(&file, &["plan"]);
    let stop = format!(
        "stopped by `/usr/bin/pg_ctlcluster 15 {} stop -m fast`",
        Debian::name("n1")
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&stop),
        "{}",
        show(&out)
    );
    let out = pgtopo(&file, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(d.status("n1"), "online,recovery");
    assert_eq!(d.status("n2"), "online");
    let out = pgtopo(&file, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Import reads the layout back: config_dir and the Debian cluster of each node; the first
    // plan of the imported file is empty.
    let imported = d.dir.join("imported.yaml");
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgtopo"));
    c.args(["import", "--cluster", "packaged", "--from"])
        .arg(format!("127.0.0.1:{p2}"))
        .arg("--out")
        .arg(&imported)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let out = run_with_deadline(c, Duration::from_secs(120)).expect("import ran");
    assert!(out.status.success(), "{}", show(&out));
    let yaml = std::fs::read_to_string(&imported).unwrap();
    for node in ["n1", "n2"] {
        let name = Debian::name(node);
        assert!(
            yaml.contains(&format!("pg_ctlcluster: 15 {name}")),
            "{yaml}"
        );
        assert!(
            yaml.contains(&format!("config_dir: /etc/postgresql/15/{name}")),
            "{yaml}"
        );
    }
    let out = pgtopo(&imported, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{yaml}\n{}", show(&out));

    // A failover with rewind: n2 (primary) crashes after a row only it has; n1 is declared
    // primary with consent; n2 is rewound (its configuration stays in /etc) and follows n1.
    let (n1, n2) = (Debian::name("n1"), Debian::name("n2"));
    run_ok("pg_ctlcluster", &["15", &n1, "stop"]);
    psql(p2, "CREATE TABLE only_n2 AS SELECT 1 AS i");
    run_ok("pg_ctlcluster", &["15", &n2, "stop", "-m", "immediate"]);
    run_ok("pg_ctlcluster", &["15", &n1, "start"]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(", role: primary,", ",")
        .replace(
            &format!("data_dir: {dir}/n1,"),
            &format!("data_dir: {dir}/n1, role: primary,"),
        );
    std::fs::write(&file, format!("{text}failover: {{allow: true}}\n")).unwrap();
    let out = pgtopo(&file, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    let kinds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert!(
        kinds.iter().any(|k| k == "rewind") && !kinds.iter().any(|k| k == "clone"),
        "{}",
        show(&out)
    );
    assert_eq!(d.status("n1"), "online");
    assert_eq!(d.status("n2"), "online,recovery");
    assert!(Path::new(&format!("/etc/postgresql/15/{n2}/postgresql.conf")).exists());
    assert!(!d.dir.join("n2/postgresql.conf").exists());
    assert_eq!(psql(p1, "SELECT to_regclass('only_n2') IS NULL"), "t");
    let out = pgtopo(&file, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// One value from the Debian cluster on `port` (as postgres, over TCP).
fn psql(port: u16, sql: &str) -> String {
    run_ok(
        "runuser",
        &[
            "-u",
            "postgres",
            "--",
            &format!("{BIN_DIR}/psql"),
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
            "postgres",
            "-c",
            sql,
        ],
    )
    .trim()
    .to_string()
}
