//! A pgbouncer for a sandbox, the demo, the benchmark and the test harness: Debian's
//! `/usr/sbin/pgbouncer`, run as the sandbox's OS user in daemon mode from `DIR/pgbouncer/`
//! (ini, userlist, log, pidfile), transaction pooling, trust authentication on loopback, the
//! admin console open to `postgres`. Ended by the PID in its pidfile (checked to be a pgbouncer
//! process first).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{failed, SandboxError};
use crate::apply::wait::{wait_until, Poll, WaitSpec};
use crate::config::PoolerSpec;
use crate::transport::{CommandSpec, LocalTransport, Transport};

/// Debian's pgbouncer.
pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A pgbouncer started by [`start`].
#[derive(Debug, Clone)]
pub struct Pooler {
    pub dir: PathBuf,
    pub ini: PathBuf,
    pub host: String,
    pub port: u16,
}

/// The ini text: `postgres` routed to `target`, pgbouncer listening on `host:port`.
pub fn ini_text(dir: &Path, host: &str, port: u16, target: (&str, u16)) -> String {
    let d = dir.display();
    format!(
        "[databases]\npostgres = host={} port={} dbname=postgres\n\n[pgbouncer]\n\
         listen_addr = {host}\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {d}/userlist.txt\nadmin_users = postgres\n\
         pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 20\n\
         server_login_retry = 0.1\nserver_connect_timeout = 2\n\
         ignore_startup_parameters = extra_float_digits,options\n\
         logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n",
        target.0, target.1
    )
}

/// The topology's `poolers:` entry for this pgbouncer.
pub fn pooler_spec(p: &Pooler, pause: bool) -> PoolerSpec {
    PoolerSpec {
        host: p.host.clone(),
        port: p.port,
        admin_user: "postgres".into(),
        admin_password: None,
        databases: vec!["postgres".into()],
        config_file: Some(p.ini.clone()),
        ssh: None,
        os_user: None,
        pause,
        pause_timeout: PoolerSpec::default_pause_timeout(),
    }
}

/// Fails unless Debian's pgbouncer is installed.
pub fn require() -> Result<(), SandboxError> {
    match Path::new(PGBOUNCER).exists() {
        true => Ok(()),
        false => Err(SandboxError::NoPgbouncer(PGBOUNCER)),
    }
}

/// Write the files and start pgbouncer as `os_user`; returns once its admin console answers.
pub async fn start(
    dir: &Path,
    os_user: &str,
    host: &str,
    port: u16,
    target: (&str, u16),
) -> Result<Pooler, SandboxError> {
    require()?;
    let t = LocalTransport::new(os_user);
    t.create_dir(dir, 0o755)
        .await
        .map_err(|e| failed("create the pgbouncer directory", e))?;
    let ini = dir.join("pgbouncer.ini");
    let write = |path: PathBuf, text: String| {
        let t = &t;
        async move {
            t.write_file_atomic(&path, text.as_bytes(), 0o640)
                .await
                .map_err(|e| failed(format!("write {}", path.display()), e))
        }
    };
    write(ini.clone(), ini_text(dir, host, port, target)).await?;
    write(dir.join("userlist.txt"), "\"postgres\" \"\"\n".into()).await?;
    let cmd = CommandSpec::new(PGBOUNCER)
        .arg("-d")
        .arg("-q")
        .arg(&ini)
        .timeout(Duration::from_secs(10));
    super::run_ok(&t, cmd, "start pgbouncer").await?;
    let p = Pooler {
        dir: dir.to_path_buf(),
        ini,
        host: host.into(),
        port,
    };
    wait_ready(&p).await?;
    Ok(p)
}

async fn wait_ready(p: &Pooler) -> Result<(), SandboxError> {
    let spec = WaitSpec::new(
        format!("pgbouncer on {}:{}", p.host, p.port),
        Duration::from_secs(10),
    );
    wait_until(&spec, || async {
        let addr = (p.host.as_str(), p.port);
        match (pid(&p.dir), tokio::net::TcpStream::connect(addr).await) {
            (Some(_), Ok(_)) => Poll::Ready(()),
            (None, _) => Poll::Pending("no pidfile yet".into()),
            (_, Err(e)) => Poll::Pending(e.to_string()),
        }
    })
    .await
    .map_err(|e| failed("start pgbouncer", e))
}

/// The PID in the pidfile, when it names a live pgbouncer.
pub fn pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("pgbouncer.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "pgbouncer").then_some(pid)
}

/// SIGTERM (then SIGKILL after 5 s) to the pgbouncer of `dir`; false when none ran.
pub async fn stop(dir: &Path) -> bool {
    use nix::sys::signal::{kill, Signal};
    let Some(p) = pid(dir) else {
        return false;
    };
    for sig in [Signal::SIGTERM, Signal::SIGKILL] {
        let _ = kill(nix::unistd::Pid::from_raw(p), sig);
        if super::wait_gone(p, Duration::from_secs(5)).await {
            return true;
        }
    }
    false
}
