//! The throw-away cluster itself: its directory, its nodes (address, port, data directory), and
//! their servers — initdb, pg_basebackup, start, stop, crash — run as the OS user; on drop every
//! postmaster of the directory is ended by its PID.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::auth::{generated_password, Auth, Secrets, REPLICATION_USER};
use super::cli::run_with_deadline;
use super::os::{chown_to, current_user, is_root, path_str, set_mode};
use super::ports::claim_port;
use super::process::{end_postmaster, find_pid_files, pid_alive, postmaster_pid};

/// Default PostgreSQL bin directory of the tests.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// How a node came to be, which decides its default role in [`TestCluster::topology`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Initialised with initdb.
    Primary,
    /// Cloned with pg_basebackup from this upstream.
    Standby { upstream: String },
    /// Declared only: address, port and data directory reserved, nothing on disk.
    Declared,
}

/// One node of a test cluster.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// 1-based creation index; the node listens on `127.0.0.<index>`.
    pub index: u8,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub kind: NodeKind,
}

/// Where the nodes live when not on this host's loopback (netns.rs: a network namespace each):
/// node `index`'s address, the argv prefix that runs a command on its host, and the pg_hba.conf
/// lines that let the addresses the nodes and the tests connect from in with `method`.
pub trait Placement: Send + Sync {
    fn address(&self, index: u8) -> String;
    fn run_on(&self, index: u8) -> Vec<String>;
    fn hba(&self, method: &str) -> String;
}

/// A throw-away PostgreSQL cluster. See the module docs.
pub struct TestCluster {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    /// OS user that owns the data directories and runs the servers.
    pub os_user: String,
    pub cluster_name: String,
    /// How the servers authenticate (support/auth.rs): by password, production's way, unless
    /// the cluster was made with [`TestCluster::trusting`].
    pub auth: Auth,
    /// Variables set on every pgtopo run, after the stray libpq environment every run gets
    /// (support/cli.rs): secrets a test's topology names by `{env: …}`, more strays.
    pub pgtopo_env: Vec<(String, String)>,
    pub(super) nodes: Vec<Node>,
    claims: Vec<PathBuf>,
    /// Dropped after the servers are ended (fields drop after `Drop::drop`).
    placement: Option<Box<dyn Placement>>,
    _tmp: tempfile::TempDir,
}

impl Default for TestCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCluster {
    /// A new, empty cluster directory; its servers will ask every TCP connection for a
    /// password (support/auth.rs), generated for it.
    pub fn new() -> Self {
        Self::with_password(&generated_password("super"))
    }

    /// A new, empty cluster whose servers trust every connection, with no password anywhere:
    /// only for tests that need it (tests/support/mod.rs says which, and why).
    pub fn trusting() -> Self {
        Self::with_auth(|_| Auth::Trust)
    }

    /// A new, empty cluster whose superuser `postgres` has `password` (the replication role's
    /// is generated).
    pub fn with_password(password: &str) -> Self {
        Self::with_auth(|os_user| Auth::Password(Secrets::new(password.to_string(), os_user)))
    }

    fn with_auth(auth: impl FnOnce(&str) -> Auth) -> Self {
        let bin_dir = std::env::var_os("PGTOPO_TEST_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN_DIR));
        assert!(
            bin_dir.join("postgres").exists(),
            "no PostgreSQL at {} (set PGTOPO_TEST_BIN_DIR)",
            bin_dir.display()
        );
        let tmp = tempfile::Builder::new()
            .prefix("pgtopo-test-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let os_user = if is_root() {
            "postgres".to_string()
        } else {
            current_user()
        };
        if is_root() {
            chown_to(&dir, &os_user);
        }
        set_mode(&dir, 0o755);
        TestCluster {
            dir,
            bin_dir,
            auth: auth(&os_user),
            os_user,
            cluster_name: "test".into(),
            pgtopo_env: Vec::new(),
            nodes: Vec::new(),
            claims: Vec::new(),
            placement: None,
            _tmp: tmp,
        }
    }

    /// The superuser's password (None with [`TestCluster::trusting`]).
    pub fn password(&self) -> Option<&str> {
        self.auth.secrets().map(|s| s.superuser.as_str())
    }

    /// A new, empty cluster whose nodes live where `placement` says (node `i` at its
    /// `address(i)`, started through its `run_on(i)`), ended before `placement` is dropped.
    pub fn placed(placement: Box<dyn Placement>) -> Self {
        let mut c = Self::new();
        c.placement = Some(placement);
        c
    }

    /// A node by name (panics when unknown).
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the test cluster"))
    }

    /// Every node, in creation order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Reserve an address, a port and a data directory path for `name`, without creating
    /// anything on disk (a standby that `pgtopo apply` is to build).
    pub fn declare_node(&mut self, name: &str) -> &Node {
        self.new_node(name, NodeKind::Declared)
    }

    fn new_node(&mut self, name: &str, kind: NodeKind) -> &Node {
        assert!(
            self.nodes.iter().all(|n| n.name != name),
            "node {name} exists"
        );
        let index = u8::try_from(self.nodes.len() + 1).expect("at most 254 nodes");
        let (host, probe) = match &self.placement {
            Some(p) => (p.address(index), "127.0.0.1".to_string()),
            None => (format!("127.0.0.{index}"), format!("127.0.0.{index}")),
        };
        let (port, claim) = claim_port(&probe);
        self.claims.push(claim);
        self.nodes.push(Node {
            name: name.to_string(),
            index,
            host,
            port,
            data_dir: self.dir.join(name),
            log: self.dir.join(format!("{name}.log")),
            kind,
        });
        self.nodes.last().expect("just pushed")
    }

    /// initdb a primary (not started): scram-sha-256 for every TCP connection from 127.0.0.0/8
    /// (replication included; trust with [`TestCluster::trusting`]), peer on the Unix socket,
    /// `log_statement = 'all'`, wal_level=replica, wal_log_hints=on, max_wal_senders=10, its
    /// own address, port and socket directory.
    pub fn init_primary(&mut self, name: &str) -> &Node {
        self.init_primary_with(name, &[])
    }

    /// [`TestCluster::init_primary`] with more initdb options (`--wal-segsize=32`, …).
    pub fn init_primary_with(&mut self, name: &str, initdb_options: &[&str]) -> &Node {
        let node = self.new_node(name, NodeKind::Primary).clone();
        let pwfile = self.dir.join(format!("{name}.initdb-password"));
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        let method = self.auth.method();
        let auth_host = format!("--auth-host={method}");
        let auth_local = match self.auth {
            Auth::Password(_) => "--auth-local=peer",
            Auth::Trust => "--auth-local=trust",
        };
        let mut args = vec![
            "-D",
            path_str(&node.data_dir),
            "-U",
            "postgres",
            auth_local,
            &auth_host,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        // initdb stores the superuser's password as a SCRAM verifier itself (never in SQL).
        if let Some(pw) = self.password() {
            self.write_os_file(&pwfile, pw);
            args.push(&pwfile_arg);
        }
        args.extend_from_slice(initdb_options);
        self.os_cmd(&self.bin("initdb"), &args, Duration::from_secs(120));
        let _ = std::fs::remove_file(&pwfile);
        self.append(
            &node.data_dir.join("pg_hba.conf"),
            &format!(
                "\n# test harness\nhost all all 127.0.0.0/8 {method}\n\
                 host replication all 127.0.0.0/8 {method}\n"
            ),
        );
        if let Some(p) = &self.placement {
            self.append(&node.data_dir.join("pg_hba.conf"), &p.hba(method));
        }
        self.append(
            &node.data_dir.join("postgresql.conf"),
            &format!(
                "\n# test harness\nwal_level = replica\nwal_log_hints = on\nmax_wal_senders = 10\n\
                 max_replication_slots = 10\nhot_standby = on\nlog_statement = 'all'\n\
                 unix_socket_directories = '{}'\n{}",
                self.dir.display(),
                own_identity(&node)
            ),
        );
        self.node(name)
    }

    /// The replication role of the default world on a running primary, as an operator creates
    /// it: its password sent as a SCRAM verifier (no plaintext in the server log). Nothing with
    /// [`TestCluster::trusting`] (standbys stream as `postgres`) or when it exists.
    pub fn create_replication_role(&self, primary: &str) {
        let Some(s) = self.auth.secrets() else {
            return;
        };
        let exists = format!("SELECT count(*) FROM pg_roles WHERE rolname = '{REPLICATION_USER}'");
        if self.psql(primary, &exists) == "0" {
            let verifier = pgtopo::pg::scram::verifier(&s.replication);
            self.psql(
                primary,
                &format!(
                    "CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD '{verifier}'"
                ),
            );
        }
    }

    /// A conninfo to `upstream` for a standby named `name` that the harness (or a test, by
    /// hand) configures: the replication role, and the harness's passfile.
    pub fn standby_conninfo(&self, upstream: &str, name: &str) -> String {
        let up = self.node(upstream);
        format!(
            "host={} port={} user={}{} application_name={name}",
            up.host,
            up.port,
            self.auth.replication_user(),
            self.auth.conninfo_passfile()
        )
    }

    /// Clone a standby of `upstream` (running) with pg_basebackup (-X stream, physical slot named
    /// after the standby on the upstream), give it its own address and port, write standby.signal
    /// with primary_conninfo (application_name = its name) and primary_slot_name, start it, and wait until it streams.
    pub fn add_standby_basebackup(&mut self, name: &str, upstream: &str) -> &Node {
        let up = self.node(upstream).clone();
        let node = self
            .new_node(
                name,
                NodeKind::Standby {
                    upstream: upstream.to_string(),
                },
            )
            .clone();
        let port = up.port.to_string();
        if up.kind == NodeKind::Primary {
            self.create_replication_role(upstream);
        }
        self.os_cmd(
            &self.bin("pg_basebackup"),
            &[
                "-h",
                &up.host,
                "-p",
                &port,
                "-U",
                self.auth.replication_user(),
                "-D",
                path_str(&node.data_dir),
                "-X",
                "stream",
                "-C",
                "-S",
                name,
                "--no-sync",
                "--checkpoint=fast",
            ],
            Duration::from_secs(120),
        );
        self.append(
            &node.data_dir.join("postgresql.conf"),
            &format!("\n# test harness: {name}\n{}", own_identity(&node)),
        );
        self.append(
            &node.data_dir.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = '{}'\nprimary_slot_name = '{name}'\n",
                self.standby_conninfo(upstream, name)
            ),
        );
        self.write_os_file(&node.data_dir.join("standby.signal"), "");
        self.start(name);
        // A standby whose WAL receiver has not connected yet is drift ("not streaming") that a
        // plan cannot fix: every test starts from a standby that streams.
        self.wait_streaming(name);
        self.node(name)
    }

    /// Start a node and wait until it accepts connections (pg_ctl -w).
    pub fn start(&self, name: &str) {
        let n = self.node(name);
        let on = self.placement.as_ref().map(|p| p.run_on(n.index));
        self.os_cmd_on(
            on.as_deref().unwrap_or_default(),
            &self.bin("pg_ctl"),
            &[
                "-D",
                path_str(&n.data_dir),
                "-l",
                path_str(&n.log),
                "-w",
                "-t",
                "60",
                "start",
            ],
            Duration::from_secs(90),
        );
    }

    /// Stop a node with `mode`: `smart`, `fast` or `immediate`; waits until it is down.
    pub fn stop(&self, name: &str, mode: &str) {
        let n = self.node(name);
        self.os_cmd(
            &self.bin("pg_ctl"),
            &[
                "-D",
                path_str(&n.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ],
            Duration::from_secs(90),
        );
    }

    /// Crash a node: immediate shutdown (no shutdown checkpoint; "in production" on disk).
    pub fn crash(&self, name: &str) {
        self.stop(name, "immediate");
    }

    /// Whether the node's postmaster runs (by the PID in its postmaster.pid).
    pub fn is_running(&self, name: &str) -> bool {
        postmaster_pid(&self.node(name).data_dir).is_some_and(pid_alive)
    }

    fn bin(&self, tool: &str) -> PathBuf {
        self.bin_dir.join(tool)
    }

    /// Run a server tool as the OS user; panics with its output when it fails.
    fn os_cmd(&self, program: &Path, args: &[&str], limit: Duration) {
        self.os_cmd_on(&[], program, args, limit)
    }

    /// [`TestCluster::os_cmd`] through the argv `prefix` (a node's [`Placement::run_on`]).
    fn os_cmd_on(&self, prefix: &[String], program: &Path, args: &[&str], limit: Duration) {
        let mut argv: Vec<std::ffi::OsString> = prefix.iter().map(Into::into).collect();
        if is_root() {
            argv.extend(["runuser", "-u", self.os_user.as_str(), "--"].map(Into::into));
        }
        argv.push(program.into());
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .args(args)
            .current_dir(&self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        // A server never gets the passfile: its WAL receiver must find its password where its
        // primary_conninfo (or pgtopo's .pgpass) says.
        let client = program.file_name().is_some_and(|f| f == "pg_basebackup");
        self.harness_env(&mut c, client);
        match run_with_deadline(c, limit) {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "{} {args:?} failed ({}):\n{}{}{}",
                program.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                server_log_tail(args)
            ),
            Err(e) => panic!("{} {args:?}: {e}", program.display()),
        }
    }

    /// The environment of the harness's own tools (never pgtopo's): no libpq variable of the
    /// test's caller, and for a client (`passfile`) the harness's passfile.
    pub fn harness_env(&self, c: &mut Command, passfile: bool) {
        for (k, _) in std::env::vars_os() {
            if k.to_str()
                .is_some_and(|k| k.starts_with("PG") && !k.starts_with("PGTOPO"))
            {
                c.env_remove(k);
            }
        }
        if let (true, Some(s)) = (passfile, self.auth.secrets()) {
            c.env("PGPASSFILE", s.passfile());
        }
    }

    /// Append text to a file of a data directory.
    pub fn append(&self, path: &Path, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        f.write_all(text.as_bytes()).expect("append");
    }

    /// Create (or replace) a file owned by the OS user.
    pub fn write_os_file(&self, path: &Path, text: &str) {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        if is_root() {
            chown_to(path, &self.os_user);
        }
        set_mode(path, 0o600);
    }

    /// Create a directory owned by the OS user, with `mode`.
    pub fn create_os_dir(&self, path: &Path, mode: u32) {
        std::fs::create_dir(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        if is_root() {
            chown_to(path, &self.os_user);
        }
        set_mode(path, mode);
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for pid_file in find_pid_files(&self.dir) {
            let data_dir = pid_file.parent().expect("pid file in a dir").to_path_buf();
            if let Some(pid) = postmaster_pid(&data_dir) {
                end_postmaster(pid, &data_dir);
            }
        }
        if self.auth.secrets().is_some() {
            let ours: Vec<(String, u16)> = self
                .nodes
                .iter()
                .map(|n| (n.host.clone(), n.port))
                .collect();
            super::auth::forget_pgpass_blocks(&self.os_user, &ours);
        }
        for c in &self.claims {
            let _ = std::fs::remove_file(c);
        }
        // The TempDir field removes the directory.
    }
}

/// `port = …` and `listen_addresses = …` of a node, as postgresql.conf lines. (No
/// `cluster_name`: a standby that pgtopo clones would inherit its source's.)
fn own_identity(n: &Node) -> String {
    format!("port = {}\nlisten_addresses = '{}'\n", n.port, n.host)
}

/// The last lines of the server log named by `-l LOG` in a pg_ctl command line, for its failure
/// message (the log is removed with the test's directory).
fn server_log_tail(args: &[&str]) -> String {
    let Some(log) = args.windows(2).find(|w| w[0] == "-l").map(|w| w[1]) else {
        return String::new();
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("--- last lines of {log}:\n{tail}\n")
}
