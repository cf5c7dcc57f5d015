//! How pgtopo reaches a node's host: run a program (argv, never a shell string), read and write
//! files, look at directories. One trait with a local implementation (tokio::process, switching
//! to the node's os_user when pgtopo is root and that is another user), an SSH one (the `openssh` crate) and a
//! fake for unit tests. Planner and steps never know which one they hold.

mod fake;
mod local;
pub mod ssh;

pub use fake::FakeTransport;
pub use local::LocalTransport;
pub use ssh::{SshOptions, SshTransport};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// The environment variables no tool or server that pgtopo starts may take from the caller (or,
/// over SSH, from the remote user's rc files): every variable libpq reads (libpq's
/// "Environment Variables", PostgreSQL 14 to 18, checked against the strings in libpq.so) and
/// those the server programs read (`PGDATA`, `PGPORT`, `PGCTLTIMEOUT`, …). What a tool needs is
/// passed explicitly ([`CommandSpec::env`]): conninfo on its command line, `PGPASSFILE`.
pub const CALLER_ENV_REMOVED: [&str; 48] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGREQUIREAUTH",
    "PGCHANNELBINDING",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGSSLCOMPRESSION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGSSLNEGOTIATION",
    "PGREQUIREPEER",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGMINPROTOCOLVERSION",
    "PGMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
    "PGSYSCONFDIR",
    "PGLOCALEDIR",
    "PGOAUTHDEBUG",
    "PGOAUTHCAFILE",
    "PGDATA",
    "PGCTLTIMEOUT",
    "PG_OOM_ADJUST_FILE",
    "PG_OOM_ADJUST_VALUE",
];

/// Take the caller's libpq and server variables out of `c`'s environment (before the command's
/// own variables are set): every `PG…` variable, the list above and any other (a libpq newer
/// than the list, pgtopo's own `PGTOPO_…`, where secrets are usually kept).
pub fn clean_env(c: &mut tokio::process::Command) {
    for (k, _) in std::env::vars_os() {
        if k.as_encoded_bytes().starts_with(b"PG") {
            c.env_remove(k);
        }
    }
}

/// A command to run on the node's host, as the node's os_user (unless `as_login_user`).
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Environment set for this command, on top of a clean one (see [`CALLER_ENV_REMOVED`]):
    /// e.g. `PGPASSFILE`; never a password.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Run as the transport's own user — root, or the SSH login user — without the switch to
    /// os_user: a service manager's command that gets its privilege through `sudo -n` (SPEC
    /// §1d: systemctl as root, or through sudo as the node's ssh user).
    pub as_login_user: bool,
}

impl CommandSpec {
    /// `program` with no arguments and a 60 s timeout.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(60),
            as_login_user: false,
        }
    }

    /// Run as the transport's own user, not os_user (see [`CommandSpec::as_login_user`]).
    pub fn as_login_user(mut self) -> Self {
        self.as_login_user = true;
        self
    }

    /// Append one argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Set the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The argv as one line, for messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished command returned.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Exit code; None when killed by a signal.
    pub code: Option<i32>,
    /// The bytes the program wrote, unchanged (a file read with `cat` is binary).
    pub stdout: Vec<u8>,
    /// Decoded lossily: it is only ever read as a message.
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout as text, for callers that parse a tool's printed output (invalid UTF-8 becomes
    /// U+FFFD).
    pub fn stdout_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }
}

/// Why the transport could not do what was asked.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TransportError {
    #[error("{host}: cannot run {command}: {message}")]
    Spawn {
        host: String,
        command: String,
        message: String,
    },
    #[error("{host}: {command} did not finish within {timeout:?}")]
    Timeout {
        host: String,
        command: String,
        timeout: Duration,
    },
    #[error("{host}: {op} {path}: {message}")]
    Io {
        host: String,
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("{host}: unreachable: {message}")]
    Unreachable { host: String, message: String },
    /// The host answers, but commands cannot run as the node's os_user (e.g. a sudo that wants a
    /// password).
    #[error("{host}: cannot act as {user}: {message}")]
    Denied {
        host: String,
        user: String,
        message: String,
    },
}

impl TransportError {
    /// The host cannot be used at all: not reached, or not as the node's os_user.
    pub fn host_unusable(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable { .. } | TransportError::Denied { .. }
        )
    }
}

/// File and process access to one node's host, acting as the node's os_user.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Where this transport goes (`local`, `ssh root@db2:22`), for messages.
    fn describe(&self) -> String;

    /// Check, before anything is changed, that the host can be used as the node's os_user:
    /// connected (host key, authentication) and commands run as os_user. The default has nothing
    /// to check.
    async fn check_access(&self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Run a command to completion (or until its timeout, when it is killed).
    async fn run(&self, cmd: &CommandSpec) -> Result<CommandOutput, TransportError>;

    /// Read a whole file; `Ok(None)` when it does not exist.
    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError>;

    /// Write a file atomically (temp file beside it, fsync, rename) with `mode`, owned by os_user.
    async fn write_file_atomic(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), TransportError>;

    /// Remove a file; no error when it is already gone.
    async fn remove_file(&self, path: &Path) -> Result<(), TransportError>;

    /// Entry names of a directory; `Ok(None)` when it does not exist.
    async fn list_dir(&self, path: &Path) -> Result<Option<Vec<String>>, TransportError>;

    /// Rename a directory (used to move an old data directory aside; never to delete one).
    async fn rename(&self, from: &Path, to: &Path) -> Result<(), TransportError>;

    /// Create a directory (and parents) owned by os_user with `mode`.
    async fn create_dir(&self, path: &Path, mode: u32) -> Result<(), TransportError>;

    /// Move entries of directory `from` into the existing directory `to`, each `(name, new_name)`
    /// from `from/name` to `to/new_name` by rename(2) — never by copying: nothing is moved when
    /// the two are on different filesystems — and never over an existing `to/new_name`.
    /// `Ok(false)` when not all of them were (whatever could not be moved stays where it was).
    /// Not durable: used for files whose content is garbage wherever they end up (recycled WAL
    /// segments).
    async fn move_into(
        &self,
        from: &Path,
        names: &[(String, String)],
        to: &Path,
    ) -> Result<bool, TransportError>;

    /// Remove a directory tree that pgtopo created for garbage it moved aside (see `move_into`);
    /// never used on a data directory. No error when it is already gone.
    async fn remove_tree(&self, path: &Path) -> Result<(), TransportError>;

    /// Create `path` holding `contents` only if nothing exists there, atomically: `Ok(true)`
    /// when this call created it, `Ok(false)` when it already existed (used for the apply lock).
    ///
    /// The default writes a temporary file beside it and hard-links it into place with
    /// `ln -T` (link(2) never replaces an existing name), so every transport gets a race-free
    /// version from `write_file_atomic` and `run`; a transport may override it (O_EXCL).
    async fn create_new(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<bool, TransportError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}-{nanos}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        self.write_file_atomic(&tmp, contents, mode).await?;
        let out = self
            .run(
                &CommandSpec::new("ln")
                    .arg("-T")
                    .arg("--")
                    .arg(tmp.as_os_str())
                    .arg(path.as_os_str())
                    .timeout(Duration::from_secs(30)),
            )
            .await;
        let removed = self.remove_file(&tmp).await;
        let out = out?;
        removed?;
        if out.success() {
            return Ok(true);
        }
        if self.read_file(path).await?.is_some() {
            return Ok(false);
        }
        Err(TransportError::Io {
            host: self.describe(),
            op: "create",
            path: path.display().to_string(),
            message: out.stderr.trim().to_string(),
        })
    }
}

/// A shared transport.
pub type DynTransport = Arc<dyn Transport>;

/// The transport for a node: SSH when the node has `ssh`, else this machine.
pub fn for_node(node: &crate::config::DesiredNode) -> DynTransport {
    match &node.ssh {
        Some(spec) => Arc::new(SshTransport::new(spec.clone(), node.os_user.clone())),
        None => Arc::new(LocalTransport::new(node.os_user.clone())),
    }
}
