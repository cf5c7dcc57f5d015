//! Debian clusters (SPEC §1d) on real postgresql-common tooling: clusters made with
//! `pg_createcluster 15 …` and run by `pg_ctlcluster`, their configuration in
//! /etc/postgresql/15/<name>. Debian's PostgreSQL 15 only (/usr/lib/postgresql/15/bin, whatever
//! PGTOPO_TEST_BIN_DIR says). Every cluster a test makes has a unique name and is dropped
//! (`pg_dropcluster --stop`) by a Drop guard, even when the test panics.

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

    /// `pg_createcluster 15 NAME` on 127.0.0.1 with trust for its own tests, started.
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
fn a_new_standby_of_a_debian_primary_becomes_a_debian_cluster_of_its_own() {
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
    let out = pgtopo(&file, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(d.status("n1"), "online,recovery");
    assert_eq!(d.status("n2"), "online");
    let out = pgtopo(&file, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
