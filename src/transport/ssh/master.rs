//! Master connections: one per destination for the whole process, kept alive while pgtopo runs
//! and opened again when one is found gone.
//!
//! Design:
//! - The master is the system `ssh` started by the `openssh` crate (`ControlMaster`, strict
//!   host-key checking, `BatchMode`; `ProxyJump` and `-F` when the node's `ssh` says so).
//!   Commands go over the long-lived remote sessions of its [`Pool`]s, one pool per remote
//!   user (`ssh -S SOCKET -T -p 9 -- none 'exec /bin/sh -c …'`, see [`super::session`]); the
//!   first session starts with the master.
//! - `ControlPersist` bounds how long a master outlives a killed pgtopo. While pgtopo runs, its
//!   sessions keep it from going idle: a keepalive runs `true` over them every
//!   [`SshOptions::keepalive`] (never a new login shell), and `ServerAliveInterval` finds a
//!   server that stopped answering.
//! - A session that could not reach the master (ssh then falls back to a connection of its own
//!   to the host `none`, which does not resolve) never started its command: the master is
//!   forgotten and the caller retries once over a new one. A session that ends while its command
//!   runs may have run part of it: the master is forgotten when it is found gone, and the command
//!   is not run again.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, SessionBuilder};

use super::cause::cause;
use super::session::{Outcome, Pool, StartError};
use crate::config::SshSpec;

/// How master connections are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshOptions {
    /// `ControlPersist`: how long a master with no session stays. It only matters once pgtopo
    /// is gone (killed): while it runs, the keepalive never lets the master go idle this long.
    pub master_idle: Duration,
    /// How often `true` runs over the sessions (a session found dead then is replaced before
    /// a command needs it); None: never (tests).
    pub keepalive: Option<Duration>,
    /// `ServerAliveInterval`.
    pub server_alive: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            master_idle: Duration::from_secs(60),
            keepalive: Some(Duration::from_secs(20)),
            server_alive: Duration::from_secs(15),
        }
    }
}

/// Masters of this process, per destination.
static MASTERS: LazyLock<Mutex<HashMap<SshSpec, Arc<Master>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The master of `spec`, created (not connected) on first use; `options` apply when it is new.
pub(super) fn master(spec: &SshSpec, options: SshOptions) -> Arc<Master> {
    MASTERS
        .lock()
        .expect("ssh master registry")
        .entry(spec.clone())
        .or_insert_with(|| {
            Arc::new(Master {
                spec: spec.clone(),
                options,
                conn: tokio::sync::Mutex::new(None),
                failed: Mutex::new(None),
            })
        })
        .clone()
}

/// Remove the masters of `specs` (every one when None) from the registry and close them.
pub(super) async fn close_masters(specs: Option<&SshSpec>) {
    let masters: Vec<Arc<Master>> = {
        let mut all = MASTERS.lock().expect("ssh master registry");
        match specs {
            Some(s) => all.remove(s).into_iter().collect(),
            None => all.drain().map(|(_, m)| m).collect(),
        }
    };
    for m in masters {
        if let Some(c) = m.conn.lock().await.take() {
            c.exit().await;
        }
    }
}

/// One destination's master connection, opened on first use and again after it was lost.
#[derive(Debug)]
pub(super) struct Master {
    spec: SshSpec,
    options: SshOptions,
    conn: tokio::sync::Mutex<Option<Arc<Connected>>>,
    /// When and why the last attempt to open a connection failed.
    failed: Mutex<Option<(std::time::Instant, String)>>,
}

/// A failed open is not tried again within this long: the next use gets the same cause (a host
/// cut off would otherwise cost the connect timeout again at once, e.g. apply's connecting every
/// host, then its lock).
const FAILED_OPEN_KEPT: Duration = Duration::from_secs(2);

impl Master {
    /// The open connection, opening one when there is none (with a first session as `user`).
    /// Err: the cause.
    pub(super) async fn connected(&self, user: &str) -> Result<Arc<Connected>, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let recent = self.failed.lock().expect("failed open").clone();
        if let Some((at, cause)) = recent.filter(|(at, _)| at.elapsed() < FAILED_OPEN_KEPT) {
            tracing::debug!(host = %self.spec.host, ago = ?at.elapsed(), "ssh: not reconnecting yet");
            return Err(cause);
        }
        match Connected::open(&self.spec, &self.options, user).await {
            Ok(c) => {
                let c = Arc::new(c);
                *slot = Some(c.clone());
                Ok(c)
            }
            Err(cause) => {
                *self.failed.lock().expect("failed open") =
                    Some((std::time::Instant::now(), cause.clone()));
                Err(cause)
            }
        }
    }

    /// Forget `dead` when it is still the current connection: the next use opens another.
    pub(super) async fn forget(&self, dead: &Arc<Connected>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, dead)) {
            slot.take();
            drop(slot);
            dead.exit().await;
        }
    }

    /// Forget `conn` when its master no longer answers.
    pub(super) async fn forget_if_dead(&self, conn: &Arc<Connected>) {
        if !conn.alive().await {
            self.forget(conn).await;
        }
    }

    /// The remote PIDs of the current connection's sessions (none when not connected).
    pub(super) async fn session_pids(&self) -> Vec<u32> {
        let c = self.conn.lock().await.clone();
        c.map(|c| c.session_pids()).unwrap_or_default()
    }

    /// The current connection, when one is open.
    pub(super) async fn current(&self) -> Option<Arc<Connected>> {
        self.conn.lock().await.clone()
    }

    /// The PID of the running master process, when there is one.
    pub(super) async fn pid(&self) -> Option<u32> {
        let c = self.conn.lock().await.clone()?;
        let out = c.control(&["-O", "check"]).await?;
        let text = String::from_utf8_lossy(&out.stderr);
        let rest = &text[text.find("pid=")? + 4..];
        rest.split(')').next()?.parse().ok()
    }
}

/// An open master connection.
#[derive(Debug)]
pub(super) struct Connected {
    /// Holds the control socket (`master`) and the master's log (`log`).
    dir: tempfile::TempDir,
    /// Who the master logged in as (the first session's greeting).
    pub(super) login_user: String,
    keepalive: Option<tokio::task::AbortHandle>,
    /// The sessions, per remote user.
    pools: Arc<Pools>,
}

type Pools = Mutex<HashMap<String, Arc<Pool>>>;

impl Drop for Connected {
    fn drop(&mut self) {
        if let Some(k) = &self.keepalive {
            k.abort();
        }
    }
}

impl Connected {
    async fn open(spec: &SshSpec, options: &SshOptions, user: &str) -> Result<Connected, String> {
        let idle = std::num::NonZeroUsize::new(options.master_idle.as_secs().max(1) as usize)
            .expect("at least 1");
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(Duration::from_secs(10))
            .server_alive_interval(options.server_alive)
            .control_persist(ControlPersist::IdleFor(idle));
        if let Some(u) = &spec.user {
            b.user(u.clone());
        }
        if let Some(p) = spec.port {
            b.port(p);
        }
        if let Some(k) = &spec.identity_file {
            b.keyfile(k);
        }
        if let Some(k) = &spec.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        // ssh passes `-F` on to the bastions' connections: their keys and known_hosts come from
        // the same file.
        if let Some(f) = &spec.config_file {
            b.config_file(f);
        }
        if let Some(j) = &spec.jump {
            b.jump_hosts(j.split(',').map(str::trim));
        }
        let began = std::time::Instant::now();
        let dir = b
            .launch_master(&spec.host)
            .await
            .map_err(|e| cause(spec, &error_text(&e)))?;
        tracing::debug!(host = %spec.host, took = ?began.elapsed(), "ssh master connected");
        let pools: Arc<Pools> = Arc::default();
        let first = Arc::new(Pool::new(dir.path().join("master"), user));
        pools
            .lock()
            .expect("pools")
            .insert(user.to_string(), first.clone());
        first
            .start_first()
            .await
            .map_err(|e: StartError| cause(spec, e.said()))?;
        let mut c = Connected {
            dir,
            login_user: first.login_user().unwrap_or_default(),
            keepalive: None,
            pools,
        };
        if let Some(period) = options.keepalive {
            let pools = Arc::downgrade(&c.pools);
            c.keepalive = Some(tokio::spawn(keepalive(pools, period)).abort_handle());
        }
        Ok(c)
    }

    /// The sessions running as `user`.
    pub(super) fn pool(&self, user: &str) -> Arc<Pool> {
        let ctl = self.ctl();
        self.pools
            .lock()
            .expect("pools")
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(Pool::new(ctl, user)))
            .clone()
    }

    fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools
            .lock()
            .expect("pools")
            .values()
            .cloned()
            .collect()
    }

    fn ctl(&self) -> PathBuf {
        self.dir.path().join("master")
    }

    /// Run `words` (a whole argv) with `stdin` as `user` over one of the sessions.
    pub(super) async fn run(
        &self,
        user: &str,
        words: &[OsString],
        stdin: Option<&[u8]>,
    ) -> Outcome {
        self.pool(user).run(words, stdin).await
    }

    /// Whether the master still answers.
    pub(super) async fn alive(&self) -> bool {
        self.control(&["-O", "check"])
            .await
            .is_some_and(|c| c.status.success())
    }

    /// The remote PIDs of this connection's sessions.
    pub(super) fn session_pids(&self) -> Vec<u32> {
        self.pools().iter().flat_map(|p| p.pids()).collect()
    }

    /// `ssh -S SOCKET ARGS none` (a control command such as `-O check`).
    async fn control(&self, args: &[&str]) -> Option<Output> {
        tokio::process::Command::new("ssh")
            .arg("-S")
            .arg(self.ctl())
            .args(args)
            .arg("none")
            .stdin(Stdio::null())
            .output()
            .await
            .ok()
    }

    /// Ask the master to exit (nothing when it is already gone); the idle sessions end with it.
    async fn exit(&self) {
        let _ = self.control(&["-O", "exit"]).await;
        for p in self.pools() {
            p.close();
        }
    }
}

/// The message of an `openssh` error with its source (ssh's own words are in the source).
fn error_text(e: &openssh::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push('\n');
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Run `true` over every pool that has sessions, every `period`, until the connection is gone.
async fn keepalive(pools: std::sync::Weak<Pools>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pools) = pools.upgrade() else { return };
        let live: Vec<Arc<Pool>> = pools.lock().expect("pools").values().cloned().collect();
        drop(pools);
        for p in live.iter().filter(|p| p.has_session()) {
            if let Outcome::Lost(e) | Outcome::NotStarted { cause: e, .. } =
                p.run(&[OsString::from("true")], None).await
            {
                tracing::debug!(error = %e, "ssh keepalive failed");
            }
        }
    }
}
