//! `sandbox up|down` on real PostgreSQL: the library functions and the CLI.

mod support;

use std::path::Path;
use std::process::Command;

use pgtopo::sandbox::{self, SandboxError, UpOptions};
use support::{claim_port_block, pid_alive, postmaster_pid, run_with_deadline};

fn bin_dir() -> std::path::PathBuf {
    std::env::var_os("PGTOPO_TEST_BIN_DIR")
        .map(Into::into)
        .unwrap_or_else(|| support::DEFAULT_BIN_DIR.into())
}

fn psql(port: u16, sql: &str) -> String {
    let psql = [
        bin_dir().join("psql"),
        Path::new(support::DEFAULT_BIN_DIR).join("psql"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap();
    let mut c = Command::new(psql);
    c.args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres"])
        .arg(format!("--command={sql}"));
    let out = run_with_deadline(c, std::time::Duration::from_secs(30)).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the sandbox when a test fails half-way (down is idempotent enough for that).
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if self.0.exists() {
            // Its own thread and runtime: this may run inside a test's runtime.
            let dir = self.0.to_path_buf();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _ = rt.block_on(sandbox::down(&dir));
            })
            .join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_primary_and_down_removes_everything() {
    let ports = claim_port_block(3);
    let parent = tempfile::Builder::new()
        .prefix("pgtopo-sandbox-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = parent.path().join("sb");
    let _cleanup = Cleanup(&dir);
    let opts = UpOptions {
        dir: dir.clone(),
        port: ports.base,
        bin_dir: Some(bin_dir()),
        ..UpOptions::default()
    };
    let sb = sandbox::up(&opts).await.unwrap();
    assert_eq!(sb.nodes.len(), 3);
    assert_eq!(sb.nodes[2].host, "127.0.0.3");
    assert_eq!(sb.nodes[2].port, ports.base + 2);
    assert_eq!(psql(ports.base, "show wal_level"), "replica");
    assert_eq!(psql(ports.base, "show wal_log_hints"), "on");
    assert_eq!(psql(ports.base, "show listen_addresses"), "127.0.0.1");
    assert_eq!(psql(ports.base, "select pg_is_in_recovery()"), "f");
    let topo: pgtopo::config::TopologyFile =
        serde_yaml::from_str(&std::fs::read_to_string(&sb.topology).unwrap()).unwrap();
    assert_eq!(topo.nodes.len(), 3);
    assert_eq!(topo.nodes["n2"].port, ports.base + 1);
    assert_eq!(topo.nodes["n3"].upstream.as_deref(), Some("n1"));
    assert!(topo.replication.slots);
    let desired = pgtopo::config::load(&sb.topology).expect("the sandbox topology is valid");
    assert_eq!(desired.primary().name, "n1");

    // A second `up` on the same directory or ports refuses and touches nothing.
    assert!(matches!(
        sandbox::up(&opts).await,
        Err(SandboxError::DirExists(_))
    ));
    let other = UpOptions {
        dir: parent.path().join("other"),
        ..opts.clone()
    };
    assert!(matches!(
        sandbox::up(&other).await,
        Err(SandboxError::PortInUse { .. })
    ));
    assert!(!parent.path().join("other").exists());

    let pid = postmaster_pid(&sb.nodes[0].data_dir).unwrap();
    assert!(pid_alive(pid));
    let stopped = sb.down().await.unwrap();
    assert_eq!(stopped, vec![sb.nodes[0].data_dir.clone()]);
    assert!(!pid_alive(pid));
    assert!(!dir.exists());
}

#[test]
fn cli_up_and_down() {
    let ports = claim_port_block(2);
    let parent = tempfile::Builder::new()
        .prefix("pgtopo-sandbox-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = parent.path().join("sb");
    let _cleanup = Cleanup(&dir);
    let exe = env!("CARGO_BIN_EXE_pgtopo");
    let mut c = Command::new(exe);
    c.args([
        "sandbox",
        "up",
        "--nodes",
        "2",
        "--port",
        &ports.base.to_string(),
    ])
    .arg("--dir")
    .arg(&dir)
    .arg("--bin-dir")
    .arg(bin_dir());
    let out = run_with_deadline(c, std::time::Duration::from_secs(120)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pgtopo apply -f"), "{stdout}");
    assert!(dir.join("topology.yaml").exists());
    let pid = postmaster_pid(&dir.join("n1")).unwrap();

    // status on the fresh sandbox: n1 runs; the standbys are declared, not built yet.
    let mut c = Command::new(exe);
    c.arg("-f")
        .arg(dir.join("topology.yaml"))
        .args(["status", "--format", "json"]);
    let out = run_with_deadline(c, std::time::Duration::from_secs(60)).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cluster"], "sandbox");
    assert_eq!(v["nodes"]["n1"]["role"], "primary");
    assert_eq!(v["nodes"]["n1"]["reachable"], true);
    assert_eq!(v["nodes"]["n2"]["reachable"], false);
    assert_eq!(v["nodes"]["n2"]["data_dir"]["exists"], false);

    let mut c = Command::new(exe);
    c.args(["sandbox", "down", "--dir"]).arg(&dir);
    let out = run_with_deadline(c, std::time::Duration::from_secs(120)).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pid_alive(pid));
    assert!(!dir.exists());

    // Not a sandbox: refused, exit 1, nothing removed.
    let mut c = Command::new(exe);
    c.args(["sandbox", "down", "--dir"]).arg(parent.path());
    let out = run_with_deadline(c, std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(parent.path().exists());
}
