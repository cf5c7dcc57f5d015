//! TLS everywhere against real PostgreSQL: a CA, server and client certificates made with rcgen;
//! a bootstrap, a switchover and a crash failover with rewind, with `verify-full` and client
//! certificates (`hostssl … cert`)
//! on both the replication connections and pgtopo's own; a wrong CA fails and changes nothing.
//!
//! Server TLS is the operator's (ssl, ssl_cert_file, ssl_key_file, ssl_ca_file in postgresql.conf before the
//! server starts; the clones copy it); pgtopo's own sessions log in as `pgtopo_admin`, which the
//! managed block lets in only over TLS with a certificate (a plain `host` rule rejects it), so an
//! apply that ends with an empty plan proves every session of pgtopo used TLS.

mod support;

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use support::scenario::cut_off;
use support::{show, TestCluster, Topology};

/// A CA and the certificates the test needs, written under `dir`.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    dir: PathBuf,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = p.self_signed(&key).unwrap().pem();
    (Issuer::new(p, key), pem)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, ips: &[&str]) -> (String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    // Each address as an iPAddress entry and, for libpq before 15 (which matches a host only
    // against dNSName entries and the CN), the same text as a dNSName entry, as certificates for
    // PostgreSQL 14 clients carry it.
    p.subject_alt_names = ips
        .iter()
        .flat_map(|ip| {
            [
                SanType::IpAddress(ip.parse().unwrap()),
                SanType::DnsName((*ip).try_into().unwrap()),
            ]
        })
        .collect();
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// CA, a server certificate naming every node's address, client certificates for the
    /// replication role and pgtopo's login; keys 0600 owned by the servers' OS user.
    fn new(c: &TestCluster, hosts: &[&str]) -> Pki {
        let dir = c.dir.join("tls");
        c.create_os_dir(&dir, 0o755);
        let (issuer, ca_pem) = ca("pgtopo test CA");
        let (_, other_pem) = ca("some other CA");
        let pki = Pki {
            ca: dir.join("root.crt"),
            other_ca: dir.join("other.crt"),
            dir: dir.clone(),
        };
        c.write_os_file(&pki.ca, &ca_pem);
        c.write_os_file(&pki.other_ca, &other_pem);
        for (name, cn, ips) in [
            ("server", "server", hosts),
            ("replicator", "replicator", &[][..]),
            ("admin", "pgtopo_admin", &[][..]),
        ] {
            let (cert, key) = leaf(&issuer, cn, ips);
            c.write_os_file(&dir.join(format!("{name}.crt")), &cert);
            c.write_os_file(&dir.join(format!("{name}.key")), &key);
        }
        pki
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The topology's TLS sections, pgtopo trusting `root`.
    fn yaml(&self, root: &Path) -> String {
        format!(
            "connect: {{user: pgtopo_admin, sslmode: verify-full, sslrootcert: {{file: {root}}}, \
             sslcert: {{file: {ac}}}, sslkey: {{file: {ak}}}}}\n\
             replication:\n  user: replicator\n  hba_method: cert\n  tls:\n    sslmode: verify-full\n\
             \x20   sslrootcert: {{file: {ca}}}\n    sslcert: {{file: {rc}}}\n    sslkey: {{file: {rk}}}\n\
             hba:\n  - {{type: hostssl, database: all, user: pgtopo_admin, address: 127.0.0.0/8, method: cert}}\n\
             \x20 - {{type: host, database: all, user: pgtopo_admin, address: 127.0.0.0/8, method: reject}}\n",
            root = root.display(),
            ca = self.ca.display(),
            ac = self.file("admin.crt"),
            ak = self.file("admin.key"),
            rc = self.file("replicator.crt"),
            rk = self.file("replicator.key"),
        )
    }
}

/// n1 initialised with server TLS on and pgtopo's login role; n2 and n3 declared.
fn cluster() -> (TestCluster, Pki) {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.declare_node("n2");
    c.declare_node("n3");
    let hosts: Vec<String> = c.nodes().iter().map(|n| n.host.clone()).collect();
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let pki = Pki::new(&c, &hosts);
    let conf = c.node("n1").data_dir.join("postgresql.conf");
    c.append(
        &conf,
        &format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
            pki.file("server.crt"),
            pki.file("server.key"),
            pki.ca.display()
        ),
    );
    // Certificates are how pgtopo logs in here, before its managed block says so too.
    let hba = c.node("n1").data_dir.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    c.write_os_file(
        &hba,
        &format!("hostssl all pgtopo_admin 127.0.0.0/8 cert\n{old}"),
    );
    c.start("n1");
    c.psql("n1", "CREATE ROLE pgtopo_admin SUPERUSER LOGIN");
    (c, pki)
}

fn apply(c: &TestCluster) {
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "plan not empty: {}", show(&out));
}

/// Every replication connection of the primary and every WAL receiver uses TLS with the
/// replication role's client certificate.
fn assert_replication_over_tls(c: &TestCluster, primary: &str, standbys: &[&str]) {
    let senders = c.psql(
        primary,
        "SELECT string_agg(r.application_name || ' ' || s.ssl || ' ' || coalesce(s.client_dn, '-'), ',' \
         ORDER BY r.application_name) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
    );
    let want: Vec<String> = standbys
        .iter()
        .filter(|s| {
            c.psql(s, "SELECT sender_host FROM pg_stat_wal_receiver") == c.node(primary).host
        })
        .map(|s| format!("{s} true /CN=replicator"))
        .collect();
    assert_eq!(senders, want.join(","), "walsenders of {primary}");
    for s in standbys {
        assert_eq!(
            // pg_stat_ssl lists the server's own backends; the WAL receiver is a client, so
            // its side shows in the conninfo it uses (the sender's side is checked above).
            c.psql(
                s,
                "SELECT conninfo LIKE '%sslmode=verify-full%' FROM pg_stat_wal_receiver"
            ),
            "t",
            "WAL receiver of {s}"
        );
        let conninfo = c.psql(s, "SHOW primary_conninfo");
        assert!(
            conninfo.contains("sslmode=verify-full") && conninfo.contains("sslcert="),
            "{conninfo}"
        );
    }
}

fn topology(c: &TestCluster, pki: &Pki, root: &Path) -> Topology {
    let mut topo = c.topology();
    // Certificates instead of the default world's passwords.
    topo.extra = vec![pki.yaml(root)];
    topo
}

/// Whether the PostgreSQL under test was built with TLS (every bin directory CI installs is).
fn ssl_build() -> bool {
    let bin = std::env::var_os("PGTOPO_TEST_BIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    let out = std::process::Command::new(bin.join("pg_config"))
        .arg("--configure")
        .output()
        .expect("pg_config runs");
    let configure = String::from_utf8_lossy(&out.stdout);
    let yes = configure.contains("--with-ssl") || configure.contains("--with-openssl");
    if !yes {
        support::missing_prerequisite(
            "tls",
            &format!(
                "the PostgreSQL under test ({}) is built without SSL",
                bin.display()
            ),
        );
    }
    yes
}

#[test]
fn bootstrap_switchover_and_rewind_with_verify_full_and_client_certificates() {
    if !ssl_build() {
        return;
    }
    let (c, pki) = cluster();
    let mut topo = topology(&c, &pki, &pki.ca);
    topo.role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    apply(&c);
    c.wait_streaming("n2");
    c.wait_streaming("n3");
    assert_replication_over_tls(&c, "n1", &["n2"]);
    assert_replication_over_tls(&c, "n2", &["n3"]);
    let hba = std::fs::read_to_string(c.node("n2").data_dir.join("pg_hba.conf")).unwrap();
    assert!(hba.contains("hostssl replication replicator"), "{hba}");

    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    apply(&c);
    c.wait_streaming("n1");
    assert_replication_over_tls(&c, "n2", &["n1", "n3"]);

    // A crash failover back to n1 with rows only n2 got: n2 is rewound against n1, and
    // pg_rewind logs in as pgtopo_admin, whom the hba lets in only with its client certificate.
    c.psql("n2", "CREATE TABLE t(i int)");
    c.wait_replayed("n1", "n2");
    c.wait_replayed("n3", "n2");
    cut_off(&c, "n3");
    cut_off(&c, "n1");
    c.psql("n2", "INSERT INTO t SELECT generate_series(1, 500)");
    c.crash("n2");
    topo.role("n1", "primary", None)
        .role("n2", "standby", Some("n1"))
        .role("n3", "standby", Some("n1"));
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve", "--allow-failover"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rewind"),
        "{}",
        show(&out)
    );
    c.wait_streaming("n2");
    c.wait_replayed("n2", "n1");
    assert_eq!(c.psql("n2", "SELECT count(*) FROM t"), "0");
    assert_replication_over_tls(&c, "n1", &["n2", "n3"]);
    let leftovers: Vec<_> = std::fs::read_dir(c.node("n2").data_dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.contains(".pgtopo-rewind."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "plan not empty: {}", show(&out));
}

#[test]
fn a_wrong_ca_fails_naming_the_node_and_changes_nothing() {
    if !ssl_build() {
        return;
    }
    let (c, pki) = cluster();
    c.write_topology(&topology(&c, &pki, &pki.other_ca));
    let before = std::fs::read_to_string(c.node("n1").data_dir.join("pg_hba.conf")).unwrap();
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("n1") && text.contains("UnknownIssuer"),
        "the error names the node and the cause: {text}"
    );
    assert!(!c.node("n2").data_dir.exists(), "n2 was not cloned");
    let after = std::fs::read_to_string(c.node("n1").data_dir.join("pg_hba.conf")).unwrap();
    assert_eq!(before, after, "pg_hba.conf unchanged");
}
