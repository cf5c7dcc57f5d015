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
//! Design — the world production has, by default:
//! - Password authentication (support/auth.rs): scram-sha-256 on every TCP line of pg_hba.conf,
//!   normal and replication, peer on the Unix socket (nothing uses it); generated passwords for
//!   `postgres` and the replication role `replicator`, in a secrets directory outside `DIR`. The
//!   default topology names them by `{file: …}` reference; the harness's psql and pg_basebackup
//!   find them through `PGPASSFILE` (set for those children only), the standbys it clones through
//!   `passfile=` in primary_conninfo. The servers the harness starts get no PG* variable.
//!   `TestCluster::trusting()` is the old world (trust, no password) for the tests that need it:
//!   none today.
//! - `log_statement = 'all'` on every server.
//! - A stray libpq environment on every pgtopo run (`cli::STRAY_LIBPQ_ENV`: a closed loopback
//!   port, a wrong user, password and database, `PGSSLMODE=require`, …), which pgtopo ignores.
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

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod faults;
pub mod inject;
pub mod netns;
pub mod os;
pub mod pgbouncer;
pub mod ports;
pub mod process;
pub mod scenario;
pub mod sql;
pub mod ssh;
pub mod topology;
pub mod wait;
pub mod writer;

// The index: every test names these as `support::…` (each test crate uses some of them).
#[allow(unused_imports)]
pub use cli::{run_with_deadline, show};
#[allow(unused_imports)]
pub use cluster::{Node, NodeKind, Placement, TestCluster, DEFAULT_BIN_DIR};
#[allow(unused_imports)]
pub use os::{is_root, missing_prerequisite, set_mode};
#[allow(unused_imports)]
pub use ports::{claim_port, claim_port_block, PortBlock};
#[allow(unused_imports)]
pub use process::{pid_alive, postmaster_pid};
#[allow(unused_imports)]
pub use sql::psql_path;
#[allow(unused_imports)]
pub use topology::{TopoNode, Topology};
