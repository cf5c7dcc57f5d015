//! A real pgbouncer (Debian's `/usr/sbin/pgbouncer`) for integration tests, beside a
//! [`TestCluster`]: its files in `DIR/pgb-<name>/` (the ini text is the sandbox's, see
//! `pgtopo::sandbox::pgbouncer`), listening on 127.0.0.1 and a claimed port of 26000–26999,
//! transaction pooling, admin console open to `postgres`. Started in daemon mode as the cluster's
//! OS user; ended on drop (also when the test panics) by the PID in its pidfile, checked to be a
//! pgbouncer first: SIGTERM, then SIGKILL after 5 s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{claim_port, is_root, psql_path, run_with_deadline, TestCluster};

/// A running pgbouncer.
pub struct TestPooler {
    pub name: String,
    pub dir: PathBuf,
    pub ini: PathBuf,
    pub host: String,
    pub port: u16,
    psql: PathBuf,
    pid: i32,
    claim: PathBuf,
}

impl TestPooler {
    /// Start a pgbouncer whose database `postgres` routes to node `target`.
    pub fn start(c: &TestCluster, name: &str, target: &str) -> TestPooler {
        let host = "127.0.0.1".to_string();
        let (port, claim) = claim_port(&host);
        let dir = c.dir.join(format!("pgb-{name}"));
        c.create_os_dir(&dir, 0o755);
        let t = c.node(target);
        let ini = dir.join("pgbouncer.ini");
        let text = pgtopo::sandbox::pgbouncer::ini_text(&dir, &host, port, (&t.host, t.port));
        c.write_os_file(&ini, &text);
        // pgbouncer logs in to the server with the password it keeps for the user.
        let pw = c.password().unwrap_or_default();
        c.write_os_file(
            &dir.join("userlist.txt"),
            &format!("\"postgres\" \"{pw}\"\n"),
        );
        let mut p = TestPooler {
            name: name.into(),
            dir,
            ini,
            host,
            port,
            psql: psql_path(&c.bin_dir),
            pid: 0,
            claim,
        };
        p.launch(c);
        p
    }

    /// Start pgbouncer (daemon mode, as the cluster's OS user) on the files in `dir`; wait until
    /// it listens and has written its pidfile.
    fn launch(&mut self, c: &TestCluster) {
        let (dir, ini, host, port) = (
            self.dir.clone(),
            self.ini.clone(),
            self.host.clone(),
            self.port,
        );
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", &c.os_user, "--"])
                .arg(pgtopo::sandbox::pgbouncer::PGBOUNCER);
            cmd
        } else {
            Command::new(pgtopo::sandbox::pgbouncer::PGBOUNCER)
        };
        cmd.arg("-d").arg("-q").arg(&ini).stdin(Stdio::null());
        let out = run_with_deadline(cmd, Duration::from_secs(10)).expect("pgbouncer runs");
        assert!(out.status.success(), "pgbouncer: {}", super::show(&out));
        let deadline = Instant::now() + Duration::from_secs(10);
        self.pid = loop {
            let ready = std::net::TcpStream::connect((host.as_str(), port)).is_ok();
            match pgtopo::sandbox::pgbouncer::pid(&dir) {
                Some(pid) if ready && super::pid_alive(pid) => break pid,
                _ if Instant::now() > deadline => panic!(
                    "pgbouncer did not start on {host}:{port}: {}",
                    std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
                ),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
    }

    /// Kill pgbouncer (SIGKILL: no shutdown of its own) and wait until it is gone.
    pub fn kill(&self) {
        kill_pid(self.pid);
    }

    /// The PID of the running pgbouncer.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Start pgbouncer again on its files, as a service manager would after it died.
    pub fn restart(&mut self, c: &TestCluster) {
        self.launch(c);
    }

    /// The topology's `poolers:` block for this pgbouncer.
    pub fn yaml(&self, pause: bool) -> String {
        let p = pgtopo::sandbox::pgbouncer::Pooler {
            dir: self.dir.clone(),
            ini: self.ini.clone(),
            host: self.host.clone(),
            port: self.port,
        };
        let spec = pgtopo::sandbox::pgbouncer::pooler_spec(&p, pause);
        let poolers = BTreeMap::from([(self.name.clone(), spec)]);
        serde_yaml::to_string(&BTreeMap::from([("poolers", poolers)])).expect("YAML renders")
    }

    /// A statement on the admin console (psql, simple protocol), rows as `|`-separated text.
    pub fn admin(&self, sql: &str) -> String {
        let mut c = Command::new(&self.psql);
        c.args([
            "-X",
            "-A",
            "-t",
            "-h",
            &self.host,
            "-p",
            &self.port.to_string(),
        ])
        .args(["-U", "postgres", "-d", "pgbouncer"])
        .arg(format!("--command={sql}"))
        .stdin(Stdio::null());
        let out = run_with_deadline(c, Duration::from_secs(30)).expect("psql runs");
        assert!(out.status.success(), "{sql}: {}", super::show(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Where database `postgres` routes, and whether it is paused: (host, port, paused).
    pub fn route(&self) -> (String, u16, bool) {
        let rows = self.admin("SHOW DATABASES");
        let row = rows
            .lines()
            .find(|l| l.starts_with("postgres|"))
            .unwrap_or_else(|| panic!("no database postgres in {rows}"));
        let f: Vec<&str> = row.split('|').collect();
        // name|host|port|database|force_user|pool_size|min_pool_size|reserve_pool|pool_mode|max_connections|current_connections|paused|disabled
        (f[1].to_string(), f[2].parse().expect("port"), f[11] == "1")
    }

    /// Send database `postgres` to `node` by hand (rewrite the ini, RELOAD): drift.
    pub fn route_to(&self, c: &TestCluster, node: &str) {
        let n = c.node(node);
        let text = std::fs::read_to_string(&self.ini).expect("ini");
        let (new, _) = pgtopo::pooler::route_ini(&text, &["postgres".into()], &n.host, n.port);
        c.write_os_file(&self.ini, &new);
        self.admin("RELOAD");
    }
}

/// SIGKILL a pgbouncer by PID and wait (up to 5 s) until it is gone.
pub fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while super::pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for TestPooler {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        for sig in [Signal::SIGTERM, Signal::SIGKILL] {
            if pgtopo::sandbox::pgbouncer::pid(&self.dir) != Some(self.pid) {
                break;
            }
            let _ = kill(nix::unistd::Pid::from_raw(self.pid), sig);
            let deadline = Instant::now() + Duration::from_secs(5);
            while super::pid_alive(self.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = std::fs::remove_file(&self.claim);
    }
}
