//! The apply lock (SPEC §5): one file beside each node's data directory,
//! `<data_dir>.pgtopo.lock` — not inside it, where pg_basebackup would copy it to a new standby.
//!
//! It is taken on every node whose host answers, in node-name order, each with an atomic
//! create-new through the node's transport ([`crate::transport::Transport::create_new`]), so two
//! applies racing for the same cluster cannot both win, and the fixed order means they cannot
//! deadlock. The file records who holds it: user, host, process id (and the process's start
//! time, so a reused pid is not mistaken for the holder), since when (RFC 3339), and a random
//! token that release checks before removing anything.
//!
//! A lock whose holder ran on this host and is gone (killed apply) is stale: acquisition takes it
//! over and says so. A holder on another host cannot be checked from here: the lock is held until
//! `pgtopo unlock` is run there, or here once that apply is known to be gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::events::ApplyEvents;
use super::wait::{wait_until, Poll, WaitSpec};
use crate::config::{Desired, DesiredNode};
use crate::transport::DynTransport;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub cluster: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// The holder process's start time in clock ticks after boot (/proc/PID/stat), when known.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// RFC 3339 UTC.
    pub since: String,
    pub token: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}) since {}",
            self.user, self.host, self.pid, self.since
        )
    }
}

/// Why the lock could not be taken or removed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("another apply holds the lock of cluster {cluster}: {holder} ({node}: {path})")]
    #[diagnostic(
        code(pgtopo::lock::held),
        help("wait for it with --lock-timeout 30s; if that apply is gone, run `pgtopo unlock`")
    )]
    Held {
        cluster: String,
        holder: String,
        node: String,
        path: String,
    },
    #[error("the lock of cluster {cluster} is still held by a running process: {holder} ({node}: {path})")]
    #[diagnostic(
        code(pgtopo::lock::alive),
        help("that apply is still running; let it finish")
    )]
    HolderAlive {
        cluster: String,
        holder: String,
        node: String,
        path: String,
    },
    #[error("{node}: cannot handle the lock file {path}: {message}")]
    #[diagnostic(code(pgtopo::lock::io))]
    Io {
        node: String,
        path: String,
        message: String,
    },
}

/// The lock file of a node: `<data_dir>.pgtopo.lock`.
pub fn lock_path(node: &DesiredNode) -> PathBuf {
    let mut p = node.data_dir.as_os_str().to_owned();
    p.push(".pgtopo.lock");
    PathBuf::from(p)
}

/// This host's name.
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

fn this_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

/// Start time of a process on this host (field 22 of /proc/PID/stat), when it exists.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the holder is a live process on this host. `None` when it ran on another host.
pub fn holder_alive(h: &LockHolder) -> Option<bool> {
    if h.host != this_host() {
        return None;
    }
    let alive = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.pid as i32), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    if !alive {
        return Some(false);
    }
    // A pid reused by another process is not the holder.
    match (h.pid_start, process_start(h.pid)) {
        (Some(a), Some(b)) => Some(a == b),
        _ => Some(true),
    }
}

fn new_holder(cluster: &str) -> LockHolder {
    let pid = std::process::id();
    let now = std::time::SystemTime::now();
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = sha2::Sha256::default();
    sha2::Digest::update(&mut h, format!("{pid}:{nanos}:{}", this_host()));
    let token = hex::encode(&sha2::Digest::finalize(h)[..12]);
    LockHolder {
        cluster: cluster.to_string(),
        user: this_user(),
        host: this_host(),
        pid,
        pid_start: process_start(pid),
        since: humantime::format_rfc3339_seconds(now).to_string(),
        token,
    }
}

/// Locks held by this process; release them with [`ClusterLock::release`].
#[derive(Debug)]
pub struct ClusterLock {
    pub holder: LockHolder,
    /// (node, transport, path) of every lock file taken.
    held: Vec<(String, DynTransport, PathBuf)>,
}

impl ClusterLock {
    /// Nodes whose lock this holds, in name order.
    pub fn nodes(&self) -> Vec<&str> {
        self.held.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    /// Remove every lock file this holds (only those that still carry this holder's token).
    pub async fn release(self) -> Result<(), LockError> {
        release_files(&self.holder, &self.held).await
    }
}

async fn release_files(
    holder: &LockHolder,
    held: &[(String, DynTransport, PathBuf)],
) -> Result<(), LockError> {
    let mut first_err = None;
    for (node, t, path) in held.iter().rev() {
        let io = |message: String| LockError::Io {
            node: node.clone(),
            path: path.display().to_string(),
            message,
        };
        let res = match t.read_file(path).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<LockHolder>(&bytes) {
                Ok(h) if h.token == holder.token => {
                    t.remove_file(path).await.map_err(|e| io(e.to_string()))
                }
                _ => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(io(e.to_string())),
        };
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

enum Attempt {
    Got(ClusterLock),
    Busy(LockError),
}

async fn read_holder(t: &DynTransport, path: &Path) -> Option<LockHolder> {
    let bytes = t.read_file(path).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// One pass over the nodes in name order.
async fn try_acquire(
    desired: &Desired,
    transports: &BTreeMap<String, DynTransport>,
    holder: &LockHolder,
    events: &dyn ApplyEvents,
) -> Result<Attempt, LockError> {
    let body = serde_json::to_vec_pretty(holder).expect("holder serialises");
    let mut held: Vec<(String, DynTransport, PathBuf)> = Vec::new();
    for node in desired.nodes.values() {
        let Some(t) = transports.get(&node.name) else {
            continue;
        };
        let path = lock_path(node);
        let mut tries = 0;
        loop {
            tries += 1;
            match t.create_new(&path, &body, 0o644).await {
                Ok(true) => {
                    held.push((node.name.clone(), t.clone(), path.clone()));
                    break;
                }
                Ok(false) => {
                    let other = read_holder(t, &path).await;
                    let stale = other
                        .as_ref()
                        .is_some_and(|h| holder_alive(h) == Some(false));
                    if stale && tries == 1 {
                        let h = other.expect("checked");
                        events.message(&format!(
                            "{}: removing a stale lock of {h}: that process is gone",
                            node.name
                        ));
                        if let Err(e) = t.remove_file(&path).await {
                            release_files(holder, &held).await.ok();
                            return Err(LockError::Io {
                                node: node.name.clone(),
                                path: path.display().to_string(),
                                message: e.to_string(),
                            });
                        }
                        continue;
                    }
                    release_files(holder, &held).await?;
                    let who = other
                        .map(|h| h.to_string())
                        .unwrap_or_else(|| "an unreadable lock file".into());
                    return Ok(Attempt::Busy(LockError::Held {
                        cluster: desired.cluster.clone(),
                        holder: who,
                        node: node.name.clone(),
                        path: path.display().to_string(),
                    }));
                }
                Err(e) => {
                    // The host does not answer, or the directory beside which the lock would go
                    // does not exist yet (a node still to be built): nothing to lock there.
                    tracing::debug!(node = %node.name, error = %e, "no lock taken on this node");
                    break;
                }
            }
        }
    }
    Ok(Attempt::Got(ClusterLock {
        holder: holder.clone(),
        held,
    }))
}

/// Take the cluster's lock. Without `timeout` a held lock fails at once ([`LockError::Held`]);
/// with one, keep trying until it passes.
pub async fn acquire(
    desired: &Desired,
    transports: &BTreeMap<String, DynTransport>,
    timeout: Option<Duration>,
    events: &dyn ApplyEvents,
) -> Result<ClusterLock, LockError> {
    let holder = new_holder(&desired.cluster);
    let Some(timeout) = timeout else {
        return match try_acquire(desired, transports, &holder, events).await? {
            Attempt::Got(l) => Ok(l),
            Attempt::Busy(e) => Err(e),
        };
    };
    let last_busy: std::sync::Mutex<Option<LockError>> = std::sync::Mutex::new(None);
    let spec = WaitSpec::new(format!("the lock of cluster {}", desired.cluster), timeout)
        .max_interval(Duration::from_millis(100));
    let res = wait_until(&spec, || {
        let attempt = try_acquire(desired, transports, &holder, events);
        let last_busy = &last_busy;
        async move {
            match attempt.await {
                Ok(Attempt::Got(l)) => Poll::Ready(Ok(l)),
                Ok(Attempt::Busy(e)) => {
                    let seen = e.to_string();
                    *last_busy.lock().expect("not poisoned") = Some(e);
                    Poll::Pending(seen)
                }
                Err(e) => Poll::Ready(Err(e)),
            }
        }
    })
    .await;
    match res {
        Ok(r) => r,
        Err(e) => Err(last_busy
            .into_inner()
            .expect("not poisoned")
            .unwrap_or(LockError::Io {
                node: String::new(),
                path: String::new(),
                message: e.to_string(),
            })),
    }
}

/// `pgtopo unlock`: remove every node's lock file whose holder is gone. Refuses (and removes
/// nothing) when a holder is a live process on this host. Returns the nodes unlocked.
pub async fn unlock(
    desired: &Desired,
    transports: &BTreeMap<String, DynTransport>,
) -> Result<Vec<String>, LockError> {
    let mut found = Vec::new();
    for node in desired.nodes.values() {
        let Some(t) = transports.get(&node.name) else {
            continue;
        };
        let path = lock_path(node);
        let bytes = match t.read_file(&path).await {
            Ok(Some(b)) => b,
            Ok(None) | Err(_) => continue,
        };
        if let Ok(h) = serde_json::from_slice::<LockHolder>(&bytes) {
            if holder_alive(&h) == Some(true) {
                return Err(LockError::HolderAlive {
                    cluster: desired.cluster.clone(),
                    holder: h.to_string(),
                    node: node.name.clone(),
                    path: path.display().to_string(),
                });
            }
        }
        found.push((node.name.clone(), t.clone(), path));
    }
    let mut removed = Vec::new();
    for (node, t, path) in found {
        t.remove_file(&path).await.map_err(|e| LockError::Io {
            node: node.clone(),
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        removed.push(node);
    }
    Ok(removed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::apply::NullEvents;
    use crate::config::{DesiredRole, ReplicationSpec};
    use crate::transport::{CommandOutput, CommandSpec, Transport, TransportError};
    use async_trait::async_trait;
    use std::sync::Arc;

    /// Files of this machine, as the current user; `run` knows only `ln -T -- A B` (through
    /// `hard_link`), which is all the default `create_new` needs.
    #[derive(Debug)]
    pub(crate) struct DirTransport;

    fn io(op: &'static str, p: &Path, e: std::io::Error) -> TransportError {
        TransportError::Io {
            host: "test".into(),
            op,
            path: p.display().to_string(),
            message: e.to_string(),
        }
    }

    #[async_trait]
    impl Transport for DirTransport {
        fn describe(&self) -> String {
            "test".into()
        }
        async fn run(&self, cmd: &CommandSpec) -> Result<CommandOutput, TransportError> {
            let a: Vec<String> = cmd
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(cmd.program, Path::new("ln"));
            assert_eq!(&a[..2], ["-T", "--"]);
            Ok(match std::fs::hard_link(&a[2], &a[3]) {
                Ok(()) => CommandOutput {
                    code: Some(0),
                    stdout: Vec::new(),
                    stderr: String::new(),
                },
                Err(e) => CommandOutput {
                    code: Some(1),
                    stdout: Vec::new(),
                    stderr: format!("ln: {e}"),
                },
            })
        }
        async fn read_file(&self, p: &Path) -> Result<Option<Vec<u8>>, TransportError> {
            match std::fs::read(p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io("read", p, e)),
            }
        }
        async fn write_file_atomic(
            &self,
            p: &Path,
            c: &[u8],
            _mode: u32,
        ) -> Result<(), TransportError> {
            std::fs::write(p, c).map_err(|e| io("write", p, e))
        }
        async fn remove_file(&self, p: &Path) -> Result<(), TransportError> {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", p, e)),
                _ => Ok(()),
            }
        }
        async fn list_dir(&self, p: &Path) -> Result<Option<Vec<String>>, TransportError> {
            match std::fs::read_dir(p) {
                Ok(rd) => Ok(Some(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect(),
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io("list", p, e)),
            }
        }
        async fn rename(&self, f: &Path, t: &Path) -> Result<(), TransportError> {
            std::fs::rename(f, t).map_err(|e| io("rename", f, e))
        }
        async fn create_dir(&self, p: &Path, _mode: u32) -> Result<(), TransportError> {
            std::fs::create_dir_all(p).map_err(|e| io("mkdir", p, e))
        }
        async fn move_into(
            &self,
            _: &Path,
            _: &[(String, String)],
            _: &Path,
        ) -> Result<bool, TransportError> {
            unreachable!("the lock moves no files")
        }
        async fn remove_tree(&self, _: &Path) -> Result<(), TransportError> {
            unreachable!("the lock removes no directories")
        }
    }

    /// A topology of `names` (the first primary) with data directories under `dir`.
    pub(crate) fn desired(dir: &Path, names: &[&str]) -> Desired {
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    DesiredNode {
                        name: n.to_string(),
                        host: "127.0.0.1".into(),
                        port: 55000 + i as u16,
                        data_dir: dir.join(n),
                        bin_dir: "/usr/lib/postgresql/15/bin".into(),
                        os_user: "postgres".into(),
                        ssh: None,
                        role: if i == 0 {
                            DesiredRole::Primary
                        } else {
                            DesiredRole::Standby {
                                upstream: names[0].to_string(),
                            }
                        },
                        settings: Default::default(),
                        promotion: Default::default(),
                        tls: Default::default(),
                        service: Default::default(),
                        config_dir: None,
                    },
                )
            })
            .collect();
        Desired {
            cluster: "shop".into(),
            source_path: dir.join("topology.yaml"),
            sha256: String::new(),
            connect: Default::default(),
            replication: ReplicationSpec::default(),
            hba: vec![],
            failover: Default::default(),
            switchover: Default::default(),
            poolers: Default::default(),
            hooks: Default::default(),
            logical_slots: vec![],
            nodes,
            upgrade: Default::default(),
            archive: None,
            clone_policy: Default::default(),
        }
    }

    fn transports(d: &Desired) -> BTreeMap<String, DynTransport> {
        d.nodes
            .keys()
            .map(|n| (n.clone(), Arc::new(DirTransport) as DynTransport))
            .collect()
    }

    #[tokio::test]
    async fn second_apply_is_refused_naming_the_holder_then_lock_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let d = desired(dir.path(), &["n1", "n2", "n3"]);
        let t = transports(&d);
        let lock = acquire(&d, &t, None, &NullEvents).await.unwrap();
        assert_eq!(lock.nodes(), ["n1", "n2", "n3"]);
        let f = std::fs::read_to_string(dir.path().join("n1.pgtopo.lock")).unwrap();
        let h: LockHolder = serde_json::from_str(&f).unwrap();
        assert_eq!(h.pid, std::process::id());
        assert!(h.since.ends_with('Z'));

        let err = acquire(&d, &t, None, &NullEvents).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Held { .. }));
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&this_host()), "{msg}");
        // The failed attempt left the holder's files alone.
        assert!(dir.path().join("n3.pgtopo.lock").exists());

        lock.release().await.unwrap();
        assert!(!dir.path().join("n1.pgtopo.lock").exists());
        let again = acquire(&d, &t, None, &NullEvents).await.unwrap();
        again.release().await.unwrap();
    }

    #[tokio::test]
    async fn lock_timeout_waits_for_the_holder_to_finish() {
        let dir = tempfile::tempdir().unwrap();
        let d = desired(dir.path(), &["n1", "n2"]);
        let t = transports(&d);
        let first = acquire(&d, &t, None, &NullEvents).await.unwrap();
        let releaser = tokio::spawn(async move {
            let spec = WaitSpec::new("a while", Duration::from_millis(80));
            let _ = wait_until::<(), _, _>(&spec, || async { Poll::Pending("…".into()) }).await;
            first.release().await.unwrap();
        });
        let t0 = std::time::Instant::now();
        let second = acquire(&d, &t, Some(Duration::from_secs(10)), &NullEvents)
            .await
            .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(70));
        releaser.await.unwrap();
        second.release().await.unwrap();

        // And a timeout that passes reports the holder.
        let held = acquire(&d, &t, None, &NullEvents).await.unwrap();
        let err = acquire(&d, &t, Some(Duration::from_millis(50)), &NullEvents)
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        held.release().await.unwrap();
    }

    fn dead_holder() -> LockHolder {
        // A child that has exited and been reaped: its pid names no live process.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut h = new_holder("shop");
        h.pid = pid;
        h.pid_start = None;
        h
    }

    #[tokio::test]
    async fn stale_lock_of_a_dead_process_is_taken_over_and_unlock_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = desired(dir.path(), &["n1", "n2"]);
        let t = transports(&d);
        let stale = serde_json::to_vec(&dead_holder()).unwrap();
        std::fs::write(dir.path().join("n2.pgtopo.lock"), &stale).unwrap();
        let lock = acquire(&d, &t, None, &NullEvents).await.unwrap();
        assert_eq!(lock.nodes(), ["n1", "n2"]);

        // unlock refuses while the holder (this very process) is alive.
        let err = unlock(&d, &t).await.unwrap_err();
        assert!(matches!(err, LockError::HolderAlive { .. }), "{err}");
        lock.release().await.unwrap();

        std::fs::write(dir.path().join("n1.pgtopo.lock"), &stale).unwrap();
        assert_eq!(unlock(&d, &t).await.unwrap(), ["n1"]);
        assert!(!dir.path().join("n1.pgtopo.lock").exists());
    }

    #[tokio::test]
    async fn nodes_whose_directory_is_missing_are_not_locked() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = desired(dir.path(), &["n1", "n2"]);
        d.nodes.get_mut("n2").unwrap().data_dir = dir.path().join("missing/n2");
        let t = transports(&d);
        let lock = acquire(&d, &t, None, &NullEvents).await.unwrap();
        assert_eq!(lock.nodes(), ["n1"]);
        lock.release().await.unwrap();
    }
}
