//! The security suite (SPEC §5d), against real PostgreSQL with password authentication
//! (scram-sha-256 over TCP), `log_statement = 'all'`, `log_min_duration_statement = 0` and
//! pg_stat_statements loaded. pgtopo bootstraps three nodes, switches over, fails over with a
//! rewind, clones a fourth node, then reports (status, observe, drift, plan, apply as JSON)
//! while a sampler reads every process's argv every 10 ms. No secret may appear in any argv,
//! output, server log, pg_stat_statements, plan file, journal, event or file under the test's
//! directory (data directories included); the os_user's `.pgpass` holds it, 0600. Every pgtopo
//! run of the harness has a stray libpq environment (support/cli.rs); the second pass adds more
//! (a host that does not resolve, `PGCHANNELBINDING`, `PGREQUIREAUTH=md5`, …) and must behave
//! the same: no server pgtopo started inherits it.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::scenario::{assert_follows, assert_no_changes, cut_off};
use support::{show, TestCluster};

const CONNECT_VAR: &str = "PGTOPO_SECURITY_CONNECT_PASSWORD";
const REPLICATION_VAR: &str = "PGTOPO_SECURITY_REPLICATION_PASSWORD";

/// A caller's libpq environment pointing everywhere but at the cluster.
const STRAY: &[(&str, &str)] = &[
    ("PGHOST", "wrong.invalid"),
    ("PGHOSTADDR", "192.0.2.1"),
    ("PGPORT", "1"),
    ("PGUSER", "wrong"),
    ("PGDATABASE", "wrong"),
    ("PGPASSWORD", "wrong"),
    ("PGPASSFILE", "/nonexistent/pgpass"),
    ("PGSSLMODE", "require"),
    ("PGOPTIONS", "-c statement_timeout=1"),
    ("PGAPPNAME", "wrong"),
    ("PGSERVICE", "wrong"),
    ("PGCONNECT_TIMEOUT", "1"),
    ("PGTARGETSESSIONATTRS", "standby"),
    ("PGCHANNELBINDING", "require"),
    ("PGREQUIREAUTH", "md5"),
    ("PGDATA", "/nonexistent/pgdata"),
];

/// Every process's argv, read every 10 ms until stopped; the argvs that held a secret.
struct Sampler {
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<String>>>,
    rounds: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(secrets: Vec<String>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let rounds = Arc::new(Mutex::new(0));
        let (s, h, r) = (stop.clone(), hits.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for pid in pids() {
                    let Ok(argv) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                        continue;
                    };
                    if secrets.iter().any(|x| found(&argv, x)) {
                        let name = argv.split(|&b| b == 0).next().unwrap_or_default();
                        h.lock()
                            .unwrap()
                            .push(format!("pid {pid}: {}", String::from_utf8_lossy(name)));
                    }
                }
                *r.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler {
            stop,
            hits,
            rounds,
            thread: Some(thread),
        }
    }

    /// Stop sampling: the argvs that held a secret, and how many rounds were taken.
    fn finish(mut self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let hits = self.hits.lock().unwrap().clone();
        let rounds = *self.rounds.lock().unwrap();
        (hits, rounds)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn found(hay: &[u8], secret: &str) -> bool {
    memchr::memmem::find(hay, secret.as_bytes()).is_some()
}

/// Every regular file under `dir` (symlinks not followed).
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// The environment of a node's postmaster, from the PID in its postmaster.pid.
fn postmaster_env(c: &TestCluster, node: &str) -> Vec<String> {
    let pidfile = c.node(node).data_dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let pid = text.lines().next().unwrap_or_default().trim().to_string();
    let env = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("environ of {node}'s postmaster ({pid}): {e}"));
    env.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// One pgtopo run that must succeed; kept for the secret check.
fn ok(c: &TestCluster, outputs: &mut Vec<Output>, args: &[&str]) -> String {
    let out = c.pgtopo(args);
    assert!(out.status.success(), "pgtopo {args:?}: {}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    outputs.push(out);
    stdout
}

/// The step kinds an `apply --format json` run did, in order.
fn steps_done(events: &str) -> Vec<String> {
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "step_done" && e["already_done"] == false)
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The whole story; returns the step kinds each apply did (the passes compare them).
fn story(stray: bool) -> Vec<Vec<String>> {
    let tag = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    // Distinctive, and with characters that need quoting in SQL, conninfo and .pgpass.
    let connect_pw = format!("Conn'{tag}:x\\y");
    let replication_pw = format!("Repl'{tag}:z\\w");
    let secrets = vec![connect_pw.clone(), replication_pw.clone()];

    let mut c = TestCluster::with_password(&connect_pw);
    c.pgtopo_env = vec![
        (CONNECT_VAR.into(), connect_pw.clone()),
        (REPLICATION_VAR.into(), replication_pw.clone()),
    ];
    if stray {
        c.pgtopo_env
            .extend(STRAY.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }
    c.init_primary("n1");
    c.append(
        &c.node("n1").data_dir.join("postgresql.conf"),
        "log_min_duration_statement = 0\nshared_preload_libraries = 'pg_stat_statements'\n",
    );
    c.start("n1");
    c.psql("n1", "CREATE EXTENSION pg_stat_statements");
    c.declare_node("n2");
    c.declare_node("n3");
    let mut topo = c.topology();
    topo.settings.insert("wal_keep_size".into(), "256MB".into());
    topo.extra_yaml(&format!(
        "connect: {{user: postgres, password: {{env: {CONNECT_VAR}}}}}\n\
         replication: {{user: replicator, password: {{env: {REPLICATION_VAR}}}, hba_method: scram-sha-256}}\n\
         failover: {{allow: true}}"
    ));
    c.write_topology(&topo);
    let journal = c.dir.join("journal.jsonl");
    let journal_arg = journal.display().to_string();
    let apply = [
        "apply",
        "--auto-approve",
        "--format",
        "json",
        "--journal",
        &journal_arg,
    ];
    let sampler = Sampler::start(secrets.clone());
    let mut outputs = Vec::new();
    let mut applied = Vec::new();

    // Bootstrap: the role, .pgpass on a host the three nodes share, two clones.
    applied.push(steps_done(&ok(&c, &mut outputs, &apply)));
    assert_follows(&c, "n2", "n1");
    assert_follows(&c, "n3", "n1");
    assert_no_changes(&c);

    // Switchover to n2.
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"));
    c.write_topology(&topo);
    applied.push(steps_done(&ok(&c, &mut outputs, &apply)));
    assert_follows(&c, "n1", "n2");

    // Failover back to n1 after n2 crashed with rows only it has: n2 is rewound.
    cut_off(&c, "n1");
    cut_off(&c, "n3");
    c.psql(
        "n2",
        "CREATE TABLE only_n2 AS SELECT generate_series(1, 1000) g",
    );
    c.crash("n2");
    topo.role("n1", "primary", None)
        .role("n2", "standby", Some("n1"))
        .role("n3", "standby", Some("n1"));
    c.write_topology(&topo);
    let mut failover = apply.to_vec();
    failover.push("--allow-failover");
    let events = ok(&c, &mut outputs, &failover);
    assert!(events.contains("rewind"), "no rewind in {events}");
    applied.push(steps_done(&events));
    assert_follows(&c, "n2", "n1");

    // A clone of n1.
    c.declare_node("n4");
    let mut topo4 = c.topology();
    topo4.settings = topo.settings.clone();
    topo4.extra = topo.extra.clone();
    topo4
        .role("n1", "primary", None)
        .role("n2", "standby", Some("n1"))
        .role("n3", "standby", Some("n1"))
        .role("n4", "standby", Some("n1"));
    c.write_topology(&topo4);
    applied.push(steps_done(&ok(&c, &mut outputs, &apply)));
    assert_follows(&c, "n4", "n1");

    // Everything that reports.
    let plan_file = c.dir.join("plan.json");
    let plan_arg = plan_file.display().to_string();
    ok(&c, &mut outputs, &["status", "--format", "json"]);
    ok(&c, &mut outputs, &["observe"]);
    ok(&c, &mut outputs, &["drift", "--format", "json"]);
    ok(
        &c,
        &mut outputs,
        &["plan", "--format", "json", "--out", &plan_arg],
    );
    applied.push(steps_done(&ok(&c, &mut outputs, &apply)));
    let (argv_hits, rounds) = sampler.finish();

    // No secret in any argv, output, or pg_stat_statements.
    assert!(rounds > 100, "the sampler took only {rounds} rounds");
    assert!(argv_hits.is_empty(), "a secret in argv: {argv_hits:?}");
    for out in &outputs {
        for s in &secrets {
            assert!(!found(&out.stdout, s) && !found(&out.stderr, s));
        }
    }
    for n in ["n1", "n2", "n3", "n4"] {
        let statements = c.psql(n, "SELECT string_agg(query, ' ') FROM pg_stat_statements");
        assert!(
            secrets.iter().all(|s| !statements.contains(s.as_str())),
            "{n}"
        );
    }
    // The log did record statements, the role's among them (a verifier, never the password).
    let log = std::fs::read_to_string(&c.node("n1").log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("ROLE \"replicator\"") && l.contains("PASSWORD E'SCRAM-SHA-256$")),
        "n1's log has no statement that set the role's verifier"
    );
    // No secret in any file under the test's directory: server logs, data directories, the
    // journal, the plan file, the topology.
    let mut files = Vec::new();
    files_under(&c.dir, &mut files);
    assert!(files.iter().any(|f| f.ends_with("journal.jsonl")));
    assert!(files.iter().any(|f| f.ends_with("plan.json")));
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        for s in &secrets {
            assert!(!found(&bytes, s), "a secret in {}", f.display());
        }
    }
    // The os_user's .pgpass holds the replication password, 0600, owned by os_user.
    let home = nix::unistd::User::from_name(&c.os_user)
        .unwrap()
        .unwrap()
        .dir;
    let pgpass = home.join(".pgpass");
    let meta = std::fs::metadata(&pgpass).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let owner = nix::unistd::User::from_uid(meta.uid().into())
        .unwrap()
        .unwrap();
    assert_eq!(owner.name, c.os_user);
    let text = std::fs::read(&pgpass).unwrap();
    let escaped = replication_pw.replace('\\', "\\\\").replace(':', "\\:");
    assert!(found(&text, &escaped));
    // The servers pgtopo started have none of the caller's PG variables, and no secret.
    for n in ["n2", "n3", "n4"] {
        for var in postmaster_env(&c, n) {
            // pg_ctl itself sets PGDATA (to the data directory) and PG_GRANDPARENT_PID.
            let name = var.split('=').next().unwrap_or_default();
            let stray = STRAY.iter().any(|(k, v)| *k == name && var.ends_with(v));
            assert!(
                !stray && !name.starts_with("PGTOPO"),
                "{n}'s postmaster has the caller's {name}"
            );
            assert!(secrets.iter().all(|s| !var.contains(s.as_str())), "{n}");
        }
    }
    applied
}

/// The story's step kinds: the same in both passes.
fn expected(applied: &[Vec<String>]) {
    let has = |i: usize, kind: &str| applied[i].iter().any(|k| k == kind);
    assert!(
        has(0, "create_role") && has(0, "write_pgpass") && has(0, "clone"),
        "{applied:?}"
    );
    assert!(has(2, "rewind"), "{applied:?}");
    assert!(has(3, "clone"), "{applied:?}");
    assert!(applied[4].is_empty(), "{applied:?}");
}

#[test]
fn no_secret_reaches_argv_logs_outputs_or_files() {
    expected(&story(false));
}

#[test]
fn a_stray_libpq_environment_changes_nothing() {
    expected(&story(true));
}

/// Three nodes that share a host and an os_user (one `.pgpass`) are built 20 times in a row,
/// each time with a new replication password: their three write_pgpass steps run together on
/// the one file, and every step succeeds the first time (each clone then authenticates with
/// the new password from that file).
#[test]
fn three_nodes_sharing_one_pgpass_build_20_times_without_a_failed_step() {
    let mut c = TestCluster::with_password("superuser-password");
    c.init_primary("n1");
    c.start("n1");
    for n in ["n2", "n3", "n4"] {
        c.declare_node(n);
    }
    let mut topo = c.topology();
    topo.extra_yaml(&format!(
        "connect: {{user: postgres, password: {{env: {CONNECT_VAR}}}}}\n\
         replication: {{user: replicator, password: {{env: {REPLICATION_VAR}}}}}"
    ));
    c.write_topology(&topo);
    for round in 0..20 {
        c.pgtopo_env = vec![
            (CONNECT_VAR.into(), "superuser-password".into()),
            (REPLICATION_VAR.into(), format!("rotated-{round}")),
        ];
        let out = c.pgtopo(&["apply", "--auto-approve", "--format", "json"]);
        let events = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "round {round}: {}", show(&out));
        assert!(!events.contains("step_failed"), "round {round}: {events}");
        // Done, or already done when another node's write had brought its lines too.
        let writers = events
            .lines()
            .filter(|l| l.contains("\"type\":\"step_done\",") && l.contains("write_pgpass"))
            .count();
        assert_eq!(writers, 3, "round {round}: {events}");
        for n in ["n2", "n3", "n4"] {
            assert_follows(&c, n, "n1");
            c.stop(n, "immediate");
            std::fs::remove_dir_all(&c.node(n).data_dir).unwrap();
        }
    }
}
