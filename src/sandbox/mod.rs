//! Local sandbox clusters for `sandbox up|down`, the demo and the benchmark (SPEC §7).
//!
//! `up` finds PostgreSQL's bin directory (explicit, else `pg_config --bindir`, else the highest
//! `/usr/lib/postgresql/*/bin`), creates DIR (owned by the `postgres` OS user when pgtopo runs as
//! root, else by the current user), checks that every node's address and port are free,
//! initialises the primary `n1` (trust for local and loopback connections — it is a sandbox;
//! replication rules are pgtopo's to write), starts it on 127.0.0.1:PORT and writes
//! DIR/topology.yaml declaring n1 and the standbys n2..nN on 127.0.0.2.. and PORT+1.., which
//! `pgtopo apply -f DIR/topology.yaml` then builds. Every command goes through the local
//! transport (argv, run as the OS user).
//!
//! `delay::DelayProxy` is a TCP proxy with a fixed delay (the fault suite, the SSH bench).
//!
//! `pgbouncer::start` adds a pgbouncer in DIR/pgbouncer (the demo and `bench switchover
//! --pooler` use it); `down` stops it by its pidfile's PID.
//!
//! `down` stops every server under DIR by the PID in its postmaster.pid (fast shutdown, then
//! immediate, then SIGKILL, each after a bounded wait; only a process whose working directory is
//! that data directory is signalled) and removes DIR — only when DIR carries the sandbox marker
//! file, so a mistyped `--dir` never deletes anything else.

pub mod delay;
pub mod pgbouncer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{NodeRole, NodeSpec, TopologyFile};
use crate::transport::{CommandSpec, LocalTransport, Transport};

/// Marker file that `up` writes and `down` requires before it removes a directory.
pub const MARKER: &str = ".pgtopo-sandbox";

/// What `sandbox up` is asked to build.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    /// Nodes declared in the topology (n1 is created and started, the rest are for apply).
    pub nodes: usize,
    /// Port of n1; node i uses port + i - 1.
    pub port: u16,
    pub bin_dir: Option<PathBuf>,
}

impl Default for UpOptions {
    /// The CLI's defaults: `./pgtopo-sandbox`, 3 nodes, port 54320, bin dir discovered.
    fn default() -> Self {
        UpOptions {
            dir: PathBuf::from("pgtopo-sandbox"),
            nodes: 3,
            port: 54320,
            bin_dir: None,
        }
    }
}

/// A node of a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxNode {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
}

/// A sandbox that `up` created.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Absolute directory of the sandbox.
    pub dir: PathBuf,
    pub topology: PathBuf,
    pub bin_dir: PathBuf,
    pub os_user: String,
    /// n1 (running primary) first, then the declared standbys.
    pub nodes: Vec<SandboxNode>,
}

impl Sandbox {
    /// Stop every server of this sandbox and remove its directory ([`down`]).
    pub async fn down(&self) -> Result<Vec<PathBuf>, SandboxError> {
        down(&self.dir).await
    }
}

/// Why a sandbox could not be created or removed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SandboxError {
    #[error("no PostgreSQL bin directory found")]
    #[diagnostic(
        code(pgtopo::sandbox::no_postgres),
        help("install PostgreSQL (e.g. apt-get install postgresql-15) or pass --bin-dir")
    )]
    NoBinDir,
    #[error("{} has no initdb, pg_ctl and postgres", .0.display())]
    #[diagnostic(code(pgtopo::sandbox::bad_bin_dir))]
    BadBinDir(PathBuf),
    #[error("no pgbouncer at {0}")]
    #[diagnostic(
        code(pgtopo::sandbox::no_pgbouncer),
        help("the demo's writer goes through pgbouncer: install it (apt-get install pgbouncer)")
    )]
    NoPgbouncer(&'static str),
    #[error("{} exists and is not empty", .0.display())]
    #[diagnostic(
        code(pgtopo::sandbox::dir_exists),
        help("run `pgtopo sandbox down --dir {}` first, or choose another --dir", .0.display())
    )]
    DirExists(PathBuf),
    #[error("the OS user {user} cannot use {}", dir.display())]
    #[diagnostic(
        code(pgtopo::sandbox::dir_access),
        help("choose a --dir that {user} can reach, e.g. /tmp/pgtopo-sandbox")
    )]
    DirAccess { user: String, dir: PathBuf },
    #[error("{addr} is in use")]
    #[diagnostic(code(pgtopo::sandbox::port_in_use), help("choose another --port"))]
    PortInUse { addr: String },
    #[error("--nodes must be between 1 and 200, not {0}")]
    #[diagnostic(code(pgtopo::sandbox::nodes))]
    Nodes(usize),
    #[error("ports {0}+ run past 65535")]
    #[diagnostic(code(pgtopo::sandbox::ports))]
    Ports(u16),
    #[error("{} is not a pgtopo sandbox (no {MARKER} file); nothing removed", dir.display())]
    #[diagnostic(code(pgtopo::sandbox::not_a_sandbox))]
    NotASandbox { dir: PathBuf },
    #[error("{what}: {message}")]
    #[diagnostic(code(pgtopo::sandbox::failed))]
    Failed { what: String, message: String },
}

fn failed(what: impl Into<String>, message: impl std::fmt::Display) -> SandboxError {
    SandboxError::Failed {
        what: what.into(),
        message: message.to_string(),
    }
}

/// The PostgreSQL bin directory: `explicit`, else `pg_config --bindir`, else the highest
/// `/usr/lib/postgresql/<major>/bin`.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf, SandboxError> {
    let ok = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| d.join(t).is_file())
    };
    if let Some(d) = explicit {
        return if ok(d) {
            Ok(d.to_path_buf())
        } else {
            Err(SandboxError::BadBinDir(d.to_path_buf()))
        };
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stderr(std::process::Stdio::null())
        .output()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && ok(&d) {
            return Ok(d);
        }
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            ok(&bin).then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, d)| d).ok_or(SandboxError::NoBinDir)
}

/// The OS user that owns the sandbox: `postgres` when pgtopo runs as root, else the current user.
pub fn os_user() -> String {
    if nix::unistd::geteuid().is_root() {
        "postgres".into()
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "postgres".into())
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, SandboxError> {
    if dir.is_absolute() {
        Ok(dir.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .map_err(|e| failed("current directory", e))
    }
}

async fn run_ok(t: &LocalTransport, cmd: CommandSpec, what: &str) -> Result<(), SandboxError> {
    let out = t.run(&cmd).await.map_err(|e| failed(what, e))?;
    if out.success() {
        Ok(())
    } else {
        Err(failed(
            what,
            format!(
                "{} failed: {}{}",
                cmd.display(),
                out.stdout_text(),
                out.stderr.trim()
            ),
        ))
    }
}

/// Create and start the sandbox's primary and write its topology file.
pub async fn up(opts: &UpOptions) -> Result<Sandbox, SandboxError> {
    if opts.nodes == 0 || opts.nodes > 200 {
        return Err(SandboxError::Nodes(opts.nodes));
    }
    if usize::from(opts.port) + opts.nodes - 1 > usize::from(u16::MAX) || opts.port == 0 {
        return Err(SandboxError::Ports(opts.port));
    }
    let bin_dir = find_bin_dir(opts.bin_dir.as_deref())?;
    let os_user = os_user();
    let t = LocalTransport::new(os_user.clone());
    let dir = absolute(&opts.dir)?;
    if let Ok(mut rd) = std::fs::read_dir(&dir) {
        if rd.next().is_some() {
            return Err(SandboxError::DirExists(dir));
        }
    }
    let nodes: Vec<SandboxNode> = (1..=opts.nodes)
        .map(|i| SandboxNode {
            name: format!("n{i}"),
            host: format!("127.0.0.{i}"),
            port: opts.port + (i as u16) - 1,
            data_dir: dir.join(format!("n{i}")),
        })
        .collect();
    for n in &nodes {
        if std::net::TcpListener::bind((n.host.as_str(), n.port)).is_err() {
            return Err(SandboxError::PortInUse {
                addr: format!("{}:{}", n.host, n.port),
            });
        }
    }
    t.create_dir(&dir, 0o755)
        .await
        .map_err(|e| failed("create the sandbox directory", e))?;
    // An empty directory that existed already is handed over too.
    if nix::unistd::geteuid().is_root() {
        if let Ok(Some(u)) = nix::unistd::User::from_name(&os_user) {
            nix::unistd::chown(&dir, Some(u.uid), Some(u.gid))
                .map_err(|e| failed(format!("chown {}", dir.display()), e))?;
        }
    }
    // The OS user must be able to reach and write the directory (e.g. not under /root).
    let probe = CommandSpec::new("test").args(["-w".into(), dir.clone().into_os_string()]);
    if !t.run(&probe).await.is_ok_and(|o| o.success()) {
        let _ = std::fs::remove_dir(&dir);
        return Err(SandboxError::DirAccess { user: os_user, dir });
    }
    t.write_file_atomic(&dir.join(MARKER), b"created by pgtopo sandbox up\n", 0o644)
        .await
        .map_err(|e| failed("write the sandbox marker", e))?;

    let n1 = &nodes[0];
    run_ok(
        &t,
        CommandSpec::new(bin_dir.join("initdb"))
            .arg("-D")
            .arg(&n1.data_dir)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .env("LC_ALL", "C")
            .timeout(Duration::from_secs(180)),
        "initdb",
    )
    .await?;
    let conf = format!(
        "\n# pgtopo sandbox\nlisten_addresses = '{}'\nport = {}\n\
         unix_socket_directories = '{}'\nwal_level = replica\nwal_log_hints = on\n\
         max_wal_senders = 10\nmax_replication_slots = 10\nhot_standby = on\n",
        n1.host,
        n1.port,
        dir.display()
    );
    append(&t, &n1.data_dir.join("postgresql.conf"), &conf).await?;
    let hba = "# pgtopo sandbox: trust on this machine only\n\
               local   all all                trust\n\
               host    all all 127.0.0.0/8    trust\n";
    t.write_file_atomic(&n1.data_dir.join("pg_hba.conf"), hba.as_bytes(), 0o600)
        .await
        .map_err(|e| failed("write pg_hba.conf", e))?;
    run_ok(
        &t,
        CommandSpec::new(bin_dir.join("pg_ctl"))
            .arg("-D")
            .arg(&n1.data_dir)
            .arg("-l")
            .arg(dir.join("n1.log"))
            .args(["-w", "-t", "120", "start"])
            .timeout(Duration::from_secs(150)),
        "start n1",
    )
    .await?;

    let topology = dir.join("topology.yaml");
    t.write_file_atomic(
        &topology,
        topology_yaml(&bin_dir, &os_user, &nodes).as_bytes(),
        0o644,
    )
    .await
    .map_err(|e| failed("write topology.yaml", e))?;
    Ok(Sandbox {
        dir,
        topology,
        bin_dir,
        os_user,
        nodes,
    })
}

async fn append(t: &LocalTransport, path: &Path, text: &str) -> Result<(), SandboxError> {
    let mut bytes = t
        .read_file(path)
        .await
        .map_err(|e| failed("read postgresql.conf", e))?
        .unwrap_or_default();
    bytes.extend_from_slice(text.as_bytes());
    t.write_file_atomic(path, &bytes, 0o600)
        .await
        .map_err(|e| failed("write postgresql.conf", e))
}

/// The sandbox's topology: the first node primary, the others its standbys, slots on, trust on
/// loopback for replication.
pub fn topology(bin_dir: &Path, os_user: &str, nodes: &[SandboxNode]) -> TopologyFile {
    let specs = nodes.iter().enumerate().map(|(i, n)| {
        let spec = NodeSpec {
            port: n.port,
            role: Some(if i == 0 {
                NodeRole::Primary
            } else {
                NodeRole::Standby
            }),
            upstream: (i > 0).then(|| nodes[0].name.clone()),
            ..NodeSpec::new(&n.host, n.data_dir.clone())
        };
        (n.name.clone(), spec)
    });
    let mut file = TopologyFile::new("sandbox", specs.collect());
    file.postgres.bin_dir = Some(bin_dir.to_path_buf());
    file.postgres.os_user = Some(os_user.to_string());
    file.replication.hba_method = "trust".into();
    file
}

/// The sandbox's topology file: [`topology`] below the sandbox's header.
pub fn topology_yaml(bin_dir: &Path, os_user: &str, nodes: &[SandboxNode]) -> String {
    let dir = nodes[0].data_dir.parent().unwrap_or(Path::new("."));
    topology(bin_dir, os_user, nodes).to_yaml_with_header(&header(dir))
}

/// The comment at the top of a sandbox's topology file.
fn header(dir: &Path) -> Vec<String> {
    vec![
        format!(
            "A pgtopo sandbox. `pgtopo apply -f {}` builds the standbys;",
            dir.join("topology.yaml").display()
        ),
        format!(
            "`pgtopo sandbox down --dir {}` removes everything.",
            dir.display()
        ),
        "hba_method: trust, loopback only: a sandbox needs no replication password.".into(),
    ]
}

/// Change the sandbox topology file at `path` (read, `edit`, written again with its header).
pub fn edit_topology(
    path: &Path,
    edit: impl FnOnce(&mut TopologyFile),
) -> Result<(), SandboxError> {
    let text = std::fs::read_to_string(path).map_err(|e| failed("read topology.yaml", e))?;
    let mut file: TopologyFile =
        serde_yaml::from_str(&text).map_err(|e| failed("read topology.yaml", e))?;
    edit(&mut file);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::write(path, file.to_yaml_with_header(&header(dir)))
        .map_err(|e| failed("write topology.yaml", e))
}

/// Stop every server of the sandbox at `dir` by the PID in its postmaster.pid and remove `dir`.
/// Returns the data directories whose server was stopped.
pub async fn down(dir: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let dir = absolute(dir)?;
    if !dir.join(MARKER).is_file() {
        return Err(SandboxError::NotASandbox { dir });
    }
    let mut stopped = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| failed("list the sandbox", e))?;
    for e in entries.flatten() {
        let data_dir = e.path();
        let Some(pid) = postmaster_pid(&data_dir) else {
            continue;
        };
        if stop_postmaster(pid, &data_dir).await {
            stopped.push(data_dir);
        }
    }
    pgbouncer::stop(&dir.join("pgbouncer")).await;
    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || std::fs::remove_dir_all(&dir)
    })
    .await
    .map_err(|e| failed("remove the sandbox", e))?
    .map_err(|e| failed(format!("remove {}", dir.display()), e))?;
    stopped.sort();
    Ok(stopped)
}

/// The PID in a data directory's postmaster.pid.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

/// SIGINT (fast shutdown), SIGQUIT (immediate) after 60 s, SIGKILL after 5 s more — only when
/// `pid` is the postmaster of `data_dir` (a postmaster's working directory is its data dir).
async fn stop_postmaster(pid: i32, data_dir: &Path) -> bool {
    use nix::sys::signal::{kill, Signal};
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let ours = match (cwd, std::fs::canonicalize(data_dir).ok()) {
        (Some(c), Some(d)) => c == d,
        _ => false,
    };
    if !ours || !alive(pid) {
        return false;
    }
    let p = nix::unistd::Pid::from_raw(pid);
    for (sig, limit) in [
        (Signal::SIGINT, Duration::from_secs(60)),
        (Signal::SIGQUIT, Duration::from_secs(5)),
        (Signal::SIGKILL, Duration::from_secs(5)),
    ] {
        let _ = kill(p, sig);
        if wait_gone(pid, limit).await {
            return true;
        }
    }
    false
}

async fn wait_gone(pid: i32, limit: Duration) -> bool {
    use crate::apply::wait::{wait_until, Poll, WaitSpec};
    let spec = WaitSpec::new(format!("postmaster {pid} to exit"), limit);
    wait_until(&spec, || async move {
        if alive(pid) {
            Poll::Pending("still running".to_string())
        } else {
            Poll::Ready(())
        }
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_declares_primary_and_standbys() {
        let nodes: Vec<SandboxNode> = (1..=3)
            .map(|i| SandboxNode {
                name: format!("n{i}"),
                host: format!("127.0.0.{i}"),
                port: 54319 + i,
                data_dir: PathBuf::from(format!("/tmp/sb/n{i}")),
            })
            .collect();
        let y = topology_yaml(Path::new("/usr/lib/postgresql/15/bin"), "postgres", &nodes);
        assert!(y.starts_with("# A pgtopo sandbox."), "{y}");
        let d = crate::config::load_str("topology.yaml", &y).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(d.cluster, "sandbox");
        assert_eq!(d.primary().name, "n1");
        assert_eq!(d.upstream_of("n3").map(|n| n.name.as_str()), Some("n1"));
        assert_eq!(d.nodes["n3"].port, 54322);
        assert_eq!(d.nodes["n2"].host, "127.0.0.2");
        assert!(d.replication.slots);
        assert_eq!(d.replication.hba_method, "trust");
    }

    #[tokio::test]
    async fn down_refuses_a_directory_that_is_not_a_sandbox() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("precious"), "x").unwrap();
        assert!(matches!(
            down(d.path()).await,
            Err(SandboxError::NotASandbox { .. })
        ));
        assert!(d.path().join("precious").exists());
    }
}
