//! The shared integration-test harness: real PostgreSQL clusters in throw-away directories.
//!
//! Every integration test of the project uses it with `mod support;`:
//!
//! ```text
//! mod support;
//! use support::TestCluster;
//!
//! #[test]
//! fn standby_streams() {
//!     let mut c = TestCluster::new();
//!     c.init_primary("n1");
//!     c.start("n1");
//!     c.add_standby_basebackup("n2", "n1"); // cloned, configured and started
//!     c.wait_streaming("n2");
//!     c.declare_node("n3");                 // address, port, data_dir only: for apply to build
//!     let mut topo = c.topology();          // n1 primary, n2 standby of n1, n3 standby of n1
//!     topo.role("n3", "standby", Some("n2"));
//!     topo.extra_yaml("replication: {user: postgres, hba_method: trust}");
//!     c.write_topology(&topo);              // DIR/topology.yaml
//!     let out = c.pgtopo(&["status", "--format", "json"]); // runs with -f DIR/topology.yaml
//!     assert!(out.status.success());
//!     let desired = c.desired_of(&topo);    // through config::load
//!     assert_eq!(c.psql("n2", "select pg_is_in_recovery()"), "t");
//! }
//! ```
//!
//! Async tests (`#[tokio::test]`) may call these blocking helpers directly; `c.observe().await`
//! observes the default topology in-process.
//!
//! Design:
//! - One [`TestCluster`] owns one temp directory `/tmp/pgtopo-test-XXXX` (owned by the OS user that
//!   runs the servers: `postgres` when the tests run as root, else the current user). Node `i`
//!   (1-based, in creation order) listens on `127.0.0.<i>` and its own port; its data directory is
//!   `DIR/<name>`, its server log `DIR/<name>.log`, the unix socket directory is `DIR`.
//! - Ports come from 26000–26999, below the kernel's ephemeral range (32768–60999 on Debian):
//!   a port in that range can be taken between the probe and the server's bind by the source
//!   port of any client connection on the same loopback address. A random start, then for each candidate an exclusive claim file
//!   in `/tmp/pgtopo-test-ports/` (so concurrent test processes never pick the same port) and a
//!   bind probe on the node's address. Claims are released on drop; claims older than an hour are
//!   considered left behind by a killed test and reused.
//! - The PostgreSQL bin directory is `$PGTOPO_TEST_BIN_DIR`, default `/usr/lib/postgresql/15/bin`.
//!   `psql` is taken from there, else from Debian's PostgreSQL 15 or `PATH`.
//! - Servers are started with `pg_ctl -w` (it waits for them to accept connections) as the OS
//!   user; nothing here sleeps for a fixed time: waits poll a condition with a deadline.
//! - On drop, also when a test panics, every postmaster whose `postmaster.pid` is inside the
//!   directory gets SIGQUIT (immediate shutdown), then SIGKILL after 5 s, identified by its PID and
//!   checked to be the postmaster of that data directory (its working directory) before any signal
//!   is sent; then the directory is removed and the port claims released.

#![allow(dead_code)]

pub mod netns;
pub mod pgbouncer;
pub mod scenario;
pub mod ssh;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgtopo::config::{Desired, NodeSpec, SettingValue, TopologyFile};

/// Default PostgreSQL bin directory of the tests.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const PORT_RANGE: std::ops::Range<u16> = 26000..27000;
const CLAIM_DIR: &str = "/tmp/pgtopo-test-ports";

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

/// A topology file under construction; [`TestCluster::topology`] gives the default one.
#[derive(Debug, Clone)]
pub struct Topology {
    pub cluster: String,
    pub bin_dir: PathBuf,
    pub os_user: String,
    pub slots: bool,
    pub nodes: BTreeMap<String, TopoNode>,
    /// Cluster-wide `settings:`.
    pub settings: BTreeMap<String, String>,
    /// YAML merged (deeply, mappings only) into the rendered document last: any key the file
    /// allows, e.g. `connect: {password: {env: X}}` or `failover: {allow: true}`.
    pub extra: Vec<String>,
}

/// One node of a [`Topology`].
#[derive(Debug, Clone)]
pub struct TopoNode {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// `primary`, `standby`, or None (not written).
    pub role: Option<String>,
    pub upstream: Option<String>,
    /// `absent` to retire.
    pub state: Option<String>,
    pub settings: BTreeMap<String, String>,
}

impl Topology {
    /// Set a node's role (`"primary"` or `"standby"`) and upstream.
    pub fn role(&mut self, node: &str, role: &str, upstream: Option<&str>) -> &mut Self {
        let n = self.nodes.get_mut(node).expect("node in topology");
        n.role = Some(role.to_string());
        n.upstream = upstream.map(str::to_string);
        self
    }

    /// Add YAML to merge into the document (see [`Topology::extra`]).
    pub fn extra_yaml(&mut self, yaml: &str) -> &mut Self {
        self.extra.push(yaml.to_string());
        self
    }

    /// The topology file: the fields above, then every [`Topology::extra`] merged in.
    pub fn to_file(&self) -> TopologyFile {
        let nodes = self.nodes.iter().map(|(name, n)| {
            let spec = NodeSpec {
                port: n.port,
                role: n.role.as_deref().map(from_word),
                upstream: n.upstream.clone(),
                state: n.state.as_deref().map(from_word).unwrap_or_default(),
                settings: settings(&n.settings),
                ..NodeSpec::new(&n.host, n.data_dir.clone())
            };
            (name.clone(), spec)
        });
        let mut file = TopologyFile::new(&self.cluster, nodes.collect());
        file.postgres.bin_dir = Some(self.bin_dir.clone());
        file.postgres.os_user = Some(self.os_user.clone());
        file.replication.slots = self.slots;
        file.settings = settings(&self.settings);
        let mut doc = serde_yaml::to_value(&file).expect("a topology serialises");
        for e in &self.extra {
            let v: serde_yaml::Value = serde_yaml::from_str(e).expect("extra YAML parses");
            merge(&mut doc, v);
        }
        serde_yaml::from_value(doc)
            .unwrap_or_else(|e| panic!("the test topology does not read: {e}\n{:?}", self.extra))
    }

    /// The YAML text of the topology file (through the one writer, `TopologyFile::to_yaml`).
    pub fn to_yaml(&self) -> String {
        self.to_file().to_yaml()
    }
}

/// A YAML word (`primary`, `absent`) as the model's enum.
fn from_word<T: serde::de::DeserializeOwned>(word: &str) -> T {
    serde_yaml::from_str(word).unwrap_or_else(|e| panic!("`{word}`: {e}"))
}

fn settings(m: &BTreeMap<String, String>) -> BTreeMap<String, SettingValue> {
    m.iter()
        .map(|(k, v)| (k.clone(), SettingValue(v.clone())))
        .collect()
}

fn merge(into: &mut serde_yaml::Value, from: serde_yaml::Value) {
    use serde_yaml::Value;
    match (into, from) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Where the nodes live when not on this host's loopback (netns.rs: a network namespace each):
/// node `index`'s address, the argv prefix that runs a command on its host, and the pg_hba.conf
/// lines that trust the addresses the nodes and the tests connect from.
pub trait Placement: Send + Sync {
    fn address(&self, index: u8) -> String;
    fn run_on(&self, index: u8) -> Vec<String>;
    fn hba(&self) -> String;
}

/// A throw-away PostgreSQL cluster. See the module docs.
pub struct TestCluster {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    /// OS user that owns the data directories and runs the servers.
    pub os_user: String,
    pub cluster_name: String,
    nodes: Vec<Node>,
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
    /// A new, empty cluster directory.
    pub fn new() -> Self {
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
            os_user,
            cluster_name: "test".into(),
            nodes: Vec::new(),
            claims: Vec::new(),
            placement: None,
            _tmp: tmp,
        }
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

    /// initdb a primary (not started): trust for local and 127.0.0.0/8 (replication included),
    /// wal_level=replica, wal_log_hints=on, max_wal_senders=10, its own address, port and socket
    /// directory.
    pub fn init_primary(&mut self, name: &str) -> &Node {
        self.init_primary_with(name, &[])
    }

    /// [`TestCluster::init_primary`] with more initdb options (`--wal-segsize=32`, …).
    pub fn init_primary_with(&mut self, name: &str, initdb_options: &[&str]) -> &Node {
        let node = self.new_node(name, NodeKind::Primary).clone();
        let mut args = vec![
            "-D",
            path_str(&node.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        args.extend_from_slice(initdb_options);
        self.os_cmd(&self.bin("initdb"), &args, Duration::from_secs(120));
        self.append(
            &node.data_dir.join("pg_hba.conf"),
            "\n# test harness\nlocal all all trust\nhost all all 127.0.0.0/8 trust\n\
             local replication all trust\nhost replication all 127.0.0.0/8 trust\n",
        );
        if let Some(p) = &self.placement {
            self.append(&node.data_dir.join("pg_hba.conf"), &p.hba());
        }
        self.append(
            &node.data_dir.join("postgresql.conf"),
            &format!(
                "\n# test harness\nwal_level = replica\nwal_log_hints = on\nmax_wal_senders = 10\n\
                 max_replication_slots = 10\nhot_standby = on\n\
                 unix_socket_directories = '{}'\n{}",
                self.dir.display(),
                own_identity(&node)
            ),
        );
        self.node(name)
    }

    /// Clone a standby of `upstream` (running) with pg_basebackup (-X stream, physical slot named
    /// after the standby on the upstream), give it its own address and port, write standby.signal
    /// with primary_conninfo (application_name = its name) and primary_slot_name, and start it.
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
        self.os_cmd(
            &self.bin("pg_basebackup"),
            &[
                "-h",
                &up.host,
                "-p",
                &port,
                "-U",
                "postgres",
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
                "primary_conninfo = 'host={} port={} user=postgres application_name={name}'\n\
                 primary_slot_name = '{name}'\n",
                up.host, up.port
            ),
        );
        self.write_os_file(&node.data_dir.join("standby.signal"), "");
        self.start(name);
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

    /// Run SQL on a node as postgres over TCP (`psql -X -At -v ON_ERROR_STOP=1`); panics with
    /// psql's stderr on failure. Returns stdout with the final newline removed.
    pub fn psql(&self, name: &str, sql: &str) -> String {
        match self.try_psql(name, sql) {
            Ok(s) => s,
            Err(e) => panic!("psql on {name} failed for {sql:?}: {e}"),
        }
    }

    /// [`TestCluster::psql`] that returns psql's stderr as the error.
    pub fn try_psql(&self, name: &str, sql: &str) -> Result<String, String> {
        let n = self.node(name);
        let mut c = Command::new(psql_path(&self.bin_dir));
        c.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", &n.host])
            .args([
                "-p",
                &n.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg(format!("--command={sql}"))
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null());
        let out = run_with_deadline(c, Duration::from_secs(60))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Wait (up to 30 s) until `sql` on `name` returns `expected`; panics with the last value.
    pub fn wait_for_sql(&self, name: &str, sql: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last;
        loop {
            last = self.try_psql(name, sql);
            if last.as_deref() == Ok(expected) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{name}: {sql:?} never returned {expected:?}; last: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the standby's WAL receiver is streaming.
    pub fn wait_streaming(&self, standby: &str) {
        self.wait_for_sql(
            standby,
            "select coalesce((select status from pg_stat_wal_receiver), 'none')",
            "streaming",
        );
    }

    /// Wait until `standby` has replayed everything `primary` has written so far.
    pub fn wait_replayed(&self, standby: &str, primary: &str) {
        let lsn = self.psql(primary, "select pg_current_wal_lsn()");
        self.wait_for_sql(
            standby,
            &format!("select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            "t",
        );
    }

    /// The default topology: every node with its address, port and data directory; initdb'ed
    /// nodes are primaries, cloned ones standbys of their upstream, declared ones standbys of the
    /// first primary; slots on.
    pub fn topology(&self) -> Topology {
        let first_primary = self
            .nodes
            .iter()
            .find(|n| n.kind == NodeKind::Primary)
            .map(|n| n.name.clone());
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let (role, upstream) = match &n.kind {
                    NodeKind::Primary => ("primary", None),
                    NodeKind::Standby { upstream } => ("standby", Some(upstream.clone())),
                    NodeKind::Declared => ("standby", first_primary.clone()),
                };
                (
                    n.name.clone(),
                    TopoNode {
                        host: n.host.clone(),
                        port: n.port,
                        data_dir: n.data_dir.clone(),
                        role: Some(role.to_string()),
                        upstream,
                        state: None,
                        settings: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Topology {
            cluster: self.cluster_name.clone(),
            bin_dir: self.bin_dir.clone(),
            os_user: self.os_user.clone(),
            slots: true,
            nodes,
            settings: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    /// `DIR/topology.yaml`: the file [`TestCluster::write_topology`] writes and
    /// [`TestCluster::pgtopo`] passes with `-f`.
    pub fn topology_file(&self) -> PathBuf {
        self.dir.join("topology.yaml")
    }

    /// Write `topo` to `DIR/topology.yaml`; later [`TestCluster::pgtopo`] calls use it.
    pub fn write_topology(&self, topo: &Topology) -> PathBuf {
        let path = self.topology_file();
        std::fs::write(&path, topo.to_yaml()).expect("write topology");
        path
    }

    /// Run the pgtopo binary with `-f DIR/topology.yaml` (`NO_COLOR` set), e.g.
    /// `c.pgtopo(&["plan", "--format", "json"])`.
    pub fn pgtopo(&self, args: &[&str]) -> Output {
        run_with_deadline(self.pgtopo_command(args), Duration::from_secs(300)).expect("pgtopo ran")
    }

    /// The command [`TestCluster::pgtopo`] runs, for a test that runs it in the background.
    pub fn pgtopo_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgtopo"));
        c.arg("-f").arg(self.topology_file());
        c.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
        c
    }

    /// The validated topology of `topo`: written to `DIR/topology.yaml` (as
    /// [`TestCluster::write_topology`]) and loaded with `config::load`; panics with the
    /// diagnostics when the file is invalid.
    pub fn desired_of(&self, topo: &Topology) -> Desired {
        let path = self.topology_file();
        std::fs::write(&path, topo.to_yaml()).expect("write topology");
        pgtopo::config::load(&path).unwrap_or_else(|e| panic!("invalid test topology: {e:?}"))
    }

    /// Observe the default topology now (`observe::observe` with default options).
    pub async fn observe(&self) -> pgtopo::observe::ObservedCluster {
        pgtopo::observe::observe(&self.desired(), &Default::default()).await
    }

    /// The validated default topology ([`TestCluster::topology`]).
    pub fn desired(&self) -> Desired {
        self.desired_of(&self.topology())
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

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// A finished pgtopo run for an assertion message: exit status, stdout and stderr.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("current user has a name")
}

fn chown_to(path: &Path, user: &str) {
    let u = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no OS user {user}"));
    nix::unistd::chown(path, Some(u.uid), Some(u.gid)).expect("chown");
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn psql_path(bin_dir: &Path) -> PathBuf {
    [
        bin_dir.join("psql"),
        Path::new(DEFAULT_BIN_DIR).join("psql"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from("psql"))
}

/// Run a command to completion, killing it after `limit`.
pub fn run_with_deadline(mut c: Command, limit: Duration) -> Result<Output, String> {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {c:?}: {e}"))?;
    wait_child_with_deadline(child, limit)
}

fn wait_child_with_deadline(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<Output, String> {
    use std::io::Read;
    // Drain the pipes in threads so a chatty child never blocks on a full pipe.
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// A random number (std's randomly seeded hasher; no extra dependency).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Claim a free port for `host`: exclusive claim file, then a bind probe. Returns the port and
/// the claim file to remove when done.
pub fn claim_port(host: &str) -> (u16, PathBuf) {
    let _ = std::fs::create_dir_all(CLAIM_DIR);
    set_mode(Path::new(CLAIM_DIR), 0o777);
    let span = (PORT_RANGE.end - PORT_RANGE.start) as u64;
    let start = random_u64() % span;
    for i in 0..span {
        let port = PORT_RANGE.start + ((start + i) % span) as u16;
        let claim = Path::new(CLAIM_DIR).join(port.to_string());
        if !take_claim(&claim) {
            continue;
        }
        let free = [host, "127.0.0.1"]
            .iter()
            .all(|h| std::net::TcpListener::bind((*h, port)).is_ok());
        if free {
            return (port, claim);
        }
        let _ = std::fs::remove_file(&claim);
    }
    panic!("no free port in {PORT_RANGE:?}");
}

/// `count` consecutive ports, port `base + i` free on `127.0.0.<i+1>` (the sandbox layout),
/// claimed until the block is dropped.
pub struct PortBlock {
    pub base: u16,
    claims: Vec<PathBuf>,
}

impl Drop for PortBlock {
    fn drop(&mut self) {
        for c in &self.claims {
            let _ = std::fs::remove_file(c);
        }
    }
}

/// Claim a [`PortBlock`] of `count` ports in 26000–26999.
pub fn claim_port_block(count: u16) -> PortBlock {
    let _ = std::fs::create_dir_all(CLAIM_DIR);
    set_mode(Path::new(CLAIM_DIR), 0o777);
    let span = (PORT_RANGE.end - PORT_RANGE.start - count) as u64;
    let start = random_u64() % span;
    'candidates: for i in 0..span {
        let base = PORT_RANGE.start + ((start + i) % span) as u16;
        let mut claims = Vec::new();
        for k in 0..count {
            let port = base + k;
            let claim = Path::new(CLAIM_DIR).join(port.to_string());
            let host = format!("127.0.0.{}", k + 1);
            if !take_claim(&claim) {
                drop(PortBlock { base, claims });
                continue 'candidates;
            }
            claims.push(claim);
            if std::net::TcpListener::bind((host.as_str(), port)).is_err() {
                drop(PortBlock { base, claims });
                continue 'candidates;
            }
        }
        return PortBlock { base, claims };
    }
    panic!("no block of {count} free ports in {PORT_RANGE:?}");
}

fn take_claim(claim: &Path) -> bool {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(claim)
    };
    if create().is_ok() {
        return true;
    }
    let stale = std::fs::metadata(claim)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(3600));
    stale && std::fs::remove_file(claim).is_ok() && create().is_ok()
}

/// The PID in a data directory's postmaster.pid.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// postmaster.pid files under `dir` (data directories up to two levels deep).
fn find_pid_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == "postmaster.pid" {
                found.push(p);
            } else if depth < 2 && e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
                stack.push((p, depth + 1));
            }
        }
    }
    found
}

/// SIGQUIT, then SIGKILL after 5 s, to the postmaster `pid` of `data_dir` — only when that
/// process's working directory is `data_dir` (a postmaster chdirs into its data directory), so a
/// stale pid file never gets another process killed.
fn end_postmaster(pid: i32, data_dir: &Path) {
    use nix::sys::signal::{kill, Signal};
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let ours = match (cwd, std::fs::canonicalize(data_dir).ok()) {
        (Some(c), Some(d)) => c == d,
        _ => false,
    };
    if !ours || !pid_alive(pid) {
        return;
    }
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGQUIT);
    if !wait_pid_gone(pid, Duration::from_secs(5)) {
        let _ = kill(p, Signal::SIGKILL);
        wait_pid_gone(pid, Duration::from_secs(5));
    }
}

fn wait_pid_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !pid_alive(pid)
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
